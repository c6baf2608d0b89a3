package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/geneve"
	"github.com/hanat/hanat/internal/vpcsim"
	"github.com/hanat/hanat/internal/vpcsim/ec2sim"
	"github.com/hanat/hanat/internal/vpcsim/gwlbsim"
)

// A hanat fleet behind the lab's GWLB: three NAT instances (nat-a, nat-c,
// nat-a2), each running a real hanatd with gwlb.enabled and the lab GWLB's
// addresses, registered as the target group's targets (cross-zone on,
// TCP health check on port 8080 every 250 ms, thresholds 3/3, the
// default no_rebalance); the private route tables point at the GWLB
// endpoints. 300 UDP flows from app-a and app-c to the internet's echo
// server. Each flow's target is the member whose conntrack has it
// (hanatctl flows), its public IP the source the echo server saw.
//
// Logged figures:
//
//	FLEET-SPREAD nat-a=<n> nat-c=<n> nat-a2=<n>
//	FLEET-CRASH unhealthy_ms=<n> crashed_flows=<n> answered=<n> (no_rebalance)
//	FLEET-DRAIN unhealthy_ms=<n> exit_ms=<n> delay_ms=<n> flows=<n> answered_during=<n>
//	FLEET-SCALEIN unhealthy_ms=<n> completed_ms=<n> delay_ms=<n> flows=<n> answered_during=<n>
//
// The members are the Auto Scaling group fleetGroup with the scale-in
// hook fleetHook, and watch their target lifecycle state (IMDS, every
// 5 s).

const (
	fleetCheckPort     = 8080
	fleetCheckInterval = 250 * time.Millisecond
	fleetDrainDelay    = 3 * time.Second
	fleetFlows         = 300
	fleetGroup         = "hanat-fleet"
	fleetHook          = "hanat-drain"
)

var fleetMembers = []string{"nat-a", "nat-c", "nat-a2"}

// fleetDiscovers is the member whose config names no GWLB address.
const fleetDiscovers = "nat-a2"

type fleetLab struct {
	lab     *vpcsim.Lab
	nodes   map[string]*labNAT
	publics map[netip.Addr]string // EIP → member
	pins    map[string]string     // member → its --pin-path
}

// fleetConfig is a member's config: with the lab GWLB's addresses, or
// with none (discover), so hanatd finds them in EC2 (cloud.GWLBAddrs).
func fleetConfig(lab *vpcsim.Lab, discover bool) string {
	return "log:\n  level: debug\n" + lab.FleetConfig(vpcsim.FleetMember{CheckPort: fleetCheckPort, DeregistrationDelay: fleetDrainDelay, Discover: discover,
		LifecycleHook: true})
}

// setupFleet is the fleet's lab with the target group's failover mode
// (gwlbsim.NoRebalance or Rebalance) and three healthy members.
func setupFleet(t *testing.T, failover gwlbsim.Failover) *fleetLab {
	t.Helper()
	lab := upLabWith(t, vpcsim.Options{NATInstances: 3, GWLB: &vpcsim.GWLBOptions{
		Config: gwlbsim.Config{CrossZone: true, HealthCheck: gwlbsim.HealthCheck{Port: fleetCheckPort, Interval: fleetCheckInterval,
			Timeout: 200 * time.Millisecond, HealthyThreshold: 3, UnhealthyThreshold: 3},
			OnUnhealthy: failover, OnDeregistration: failover},
		PointPrivateRoutes: true, RegisterNATs: true}})
	if err := lab.FleetGroup(fleetGroup, fleetHook, time.Hour, fleetMembers...); err != nil {
		t.Fatal(err)
	}
	f := &fleetLab{lab: lab, nodes: map[string]*labNAT{}, publics: map[netip.Addr]string{}, pins: map[string]string{}}
	bpffs := mountBPFFS(t)
	for _, name := range fleetMembers {
		// nat-a2 is configured with no gwlb.addresses: it must find them in
		// EC2 (the GWLB's ENIs) to become healthy and carry its share.
		cfg := fleetConfig(lab, name == fleetDiscovers)
		if err := lab.PrepareFleetMember(context.Background(), name); err != nil {
			t.Fatal(err)
		}
		// Each member pins its programs in its own directory: bpffs is
		// the host's, not the namespace's.
		f.pins[name] = filepath.Join(bpffs, name)
		f.nodes[name] = startLabHanatd(t, lab, name, cfg, "--pin-path", f.pins[name])
		f.publics[lab.Instance(name).PublicIP] = name
	}
	for _, name := range fleetMembers {
		f.waitState(t, name, gwlbsim.StateHealthy, 15*time.Second)
	}
	return f
}

// targetFlows is the GWLB's flow count of target name.
func (f *fleetLab) targetFlows(name string) int {
	if tg, ok := f.lab.Status().GWLB.Target(name); ok {
		return tg.Flows
	}
	return -1
}

func (f *fleetLab) state(name string) gwlbsim.TargetState {
	if tg, ok := f.lab.Status().GWLB.Target(name); ok {
		return tg.State
	}
	return "absent"
}

// waitState waits (bounded) for target name to reach want; it returns how
// long that took.
func (f *fleetLab) waitState(t *testing.T, name string, want gwlbsim.TargetState, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for i := 0; i < 10000 && time.Since(start) < limit; i++ {
		if f.state(name) == want {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	st, _ := f.nodes[name].client.Status(context.Background())
	t.Fatalf("target %s: %s after %v, want %s (member: %+v)", name, f.state(name), limit, want, st.Fleet)
	return 0
}

// fleetFlow is one private host's UDP flow to the echo server.
type fleetFlow = vpcsim.UDPFlow

func (f *fleetLab) openFlows(t *testing.T, n int) []fleetFlow {
	t.Helper()
	out, err := f.lab.OpenUDPFlows(n, "app-a", "app-c")
	t.Cleanup(func() {
		for _, fl := range out {
			fl.Conn.Close()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var ask = vpcsim.AskUDP

// why says which hosts' flows went unanswered, what the GWLB counted
// and what each member's datapath counted.
func (f *fleetLab) why(flows []fleetFlow, ok []bool) string {
	lost := map[string]int{}
	for i, fl := range flows {
		if !ok[i] {
			lost[netip.MustParseAddrPort(fl.Src).Addr().String()]++
		}
	}
	g := f.lab.Status().GWLB
	out := fmt.Sprintf("unanswered by private host %v; GWLB forwarded %d returned %d drops %v", lost, g.Forwarded, g.Returned, g.Drops)
	for _, tg := range g.Targets {
		out += fmt.Sprintf("; target %s %s flows %d", tg.Instance, tg.State, tg.Flows)
	}
	for _, name := range fleetMembers {
		if st, err := f.nodes[name].client.Status(context.Background()); err == nil && st.Fleet != nil {
			out += fmt.Sprintf("; %s counters %v", name, st.Fleet.Datapath)
		}
	}
	for _, host := range []string{"app-a", "app-c"} {
		snmp, _ := f.lab.Instance(host).NS.Run(context.Background(), "sh", "-c", "grep -E '^(Udp|Ip):' /proc/net/snmp")
		out += fmt.Sprintf("; %s snmp %q", host, snmp)
	}
	return out
}

var answered = vpcsim.Answered

// owner is where a flow is NATed: the member whose conntrack has it, and
// its translated source.
type owner struct {
	member string
	natSrc string
}

// owners asks the members in names for their UDP flows, by private source.
func (f *fleetLab) owners(t *testing.T, names ...string) map[string][]owner {
	t.Helper()
	out := map[string][]owner{}
	for _, name := range names {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := f.nodes[name].client.Flows(ctx, admin.FlowsQuery{Protocol: "udp"})
		cancel()
		if err != nil {
			t.Fatalf("flows of %s: %v", name, err)
		}
		for _, fl := range r.Flows {
			out[fl.Src] = append(out[fl.Src], owner{member: name, natSrc: fl.NATSrc})
		}
	}
	return out
}

// ownerOf is each flow's one member; a flow on none or on several fails.
func ownerOf(t *testing.T, flows []fleetFlow, all map[string][]owner) []owner {
	t.Helper()
	out := make([]owner, len(flows))
	for i, fl := range flows {
		o := all[fl.Src]
		if len(o) != 1 {
			t.Fatalf("flow %s is NATed by %d members (%+v), want exactly one", fl.Src, len(o), o)
		}
		out[i] = o[0]
	}
	return out
}

func perMember(os []owner) map[string]int {
	m := map[string]int{}
	for _, o := range os {
		m[o.member]++
	}
	return m
}

func (f *fleetLab) counters(t *testing.T, name string) map[string]uint64 {
	t.Helper()
	st, err := f.nodes[name].client.Status(context.Background())
	if err != nil || st.Fleet == nil {
		t.Fatalf("status of %s: %v %+v", name, err, st.Fleet)
	}
	return st.Fleet.Datapath
}

// TestGWLBFleet: spread, stickiness, bad GENEVE, a crash and a drain of a
// real hanat fleet behind the lab's GWLB.
func TestGWLBFleet(t *testing.T) {
	f := setupFleet(t, gwlbsim.NoRebalance)
	lab := f.lab

	flows := f.openFlows(t, fleetFlows)
	first := ask(flows, 2*time.Second)
	if n := answered(first); n != fleetFlows {
		t.Fatalf("%d of %d flows echoed through the fleet (%s)", n, fleetFlows, f.why(flows, first))
	}
	owners := ownerOf(t, flows, f.owners(t, fleetMembers...))
	per := perMember(owners)

	// Spread: the GWLB's own per-target counts, and the members' conntrack.
	st := lab.Status().GWLB
	line := "FLEET-SPREAD"
	for _, tg := range st.Targets {
		line += fmt.Sprintf(" %s=%d", tg.Instance, tg.Flows)
		if tg.Flows*5 < fleetFlows {
			t.Errorf("target %s carries %d of %d flows, under 20%%", tg.Instance, tg.Flows, fleetFlows)
		}
		if tg.Flows != per[tg.Instance] {
			t.Errorf("the GWLB says %s has %d flows, its conntrack %d", tg.Instance, tg.Flows, per[tg.Instance])
		}
	}
	t.Log(line)
	// Each member counts its live flows per GWLB endpoint (hanatctl
	// status): the GWLB's remembered flows that conntrack still has. And
	// each shows the GWLB addresses it takes GENEVE from: the discovering
	// member the ones it found in EC2, the same as the others' configured.
	var configured []string
	for _, name := range fleetMembers {
		st, err := f.nodes[name].client.Status(context.Background())
		if err != nil || st.Fleet == nil {
			t.Fatalf("status of %s: %v", name, err)
		}
		from := "configured"
		if name == fleetDiscovers {
			from = "EC2"
		} else if configured == nil {
			configured = st.Fleet.GWLBAddrs
		}
		if st.Fleet.GWLBAddrsFrom != from || len(st.Fleet.GWLBAddrs) == 0 || (configured != nil && !slices.Equal(st.Fleet.GWLBAddrs, configured)) {
			t.Errorf("%s shows GWLB addresses %v from %q, want %v from %q", name, st.Fleet.GWLBAddrs, st.Fleet.GWLBAddrsFrom, configured, from)
		}
		total := 0
		for _, n := range st.Fleet.FlowsPerEndpoint {
			total += n
		}
		if total != per[name] || len(st.Fleet.FlowsPerEndpoint) != 2 || st.Fleet.FlowsError != "" {
			t.Errorf("%s counts flows per endpoint %v (%q), want %d over both endpoints", name, st.Fleet.FlowsPerEndpoint, st.Fleet.FlowsError, per[name])
		}
	}

	// Stickiness: a second round keeps every flow on its member and its
	// public source; the echo server saw each flow from one source only,
	// the EIP of the member that NATs it.
	if n := answered(ask(flows, 2*time.Second)); n != fleetFlows {
		t.Fatalf("second round: %d of %d flows echoed", n, fleetFlows)
	}
	again := ownerOf(t, flows, f.owners(t, fleetMembers...))
	for i := range flows {
		if again[i] != owners[i] {
			t.Fatalf("flow %s moved from %+v to %+v while the fleet was stable", flows[i].Src, owners[i], again[i])
		}
	}
	seen := lab.ServerSources().UDPEcho
	if len(seen) != fleetFlows {
		t.Errorf("the echo server saw %d sources, want one per flow (%d)", len(seen), fleetFlows)
	}
	for i, o := range owners {
		nat := netip.MustParseAddrPort(o.natSrc)
		pub := lab.Instance(o.member).PublicIP
		if seen[netip.AddrPortFrom(pub, nat.Port())] < 2 {
			t.Fatalf("flow %s: the echo server did not see both datagrams from %s's EIP %s port %d: %v", flows[i].Src, o.member, pub, nat.Port(), seen)
		}
	}
	for src := range seen {
		if _, ok := f.publics[src.Addr()]; !ok {
			t.Errorf("the echo server saw %s, no member's EIP", src)
		}
	}

	t.Run("bad GENEVE dropped and counted", func(t *testing.T) { f.badGeneve(t) })

	// Crash nat-c's hanatd (SIGKILL): it stops answering the health
	// check; its pinned programs and the kernel's NAT stay.
	crashed := "nat-c"
	f.nodes[crashed].proc.Kill()
	<-f.nodes[crashed].proc.Done()
	took := f.waitState(t, crashed, gwlbsim.StateUnhealthy, 4*time.Second)
	// 3 failed checks 250 ms apart (the first up to one interval after
	// the crash), plus a poll.
	if took < 2*fleetCheckInterval || took > 4*fleetCheckInterval+200*time.Millisecond {
		t.Errorf("crashed %s unhealthy after %v, want 3 failed checks (%v apart)", crashed, took, fleetCheckInterval)
	}
	crashedBefore := f.targetFlows(crashed)
	fresh := f.openFlows(t, 60)
	if n := answered(ask(fresh, 2*time.Second)); n != len(fresh) {
		t.Errorf("new flows after the crash: %d of %d echoed", n, len(fresh))
	}
	freshOwners := ownerOf(t, fresh, f.owners(t, "nat-a", "nat-a2"))
	t.Logf("new flows after the crash: %v", perMember(freshOwners))
	if n := f.targetFlows(crashed); n != crashedBefore {
		t.Errorf("the GWLB gave unhealthy %s new flows: %d → %d", crashed, crashedBefore, n)
	}
	after := ask(flows, 2*time.Second)
	lostOthers, crashedN, crashedOK := 0, 0, 0
	for i, o := range owners {
		switch {
		case o.member == crashed:
			crashedN++
			if after[i] {
				crashedOK++
			}
		case !after[i]:
			lostOthers++
		}
	}
	if lostOthers > 0 {
		t.Errorf("%d flows of the surviving members lost their echo after %s crashed", lostOthers, crashed)
	}
	now := f.owners(t, "nat-a", "nat-a2")
	for i, o := range owners {
		if o.member != crashed && (len(now[flows[i].Src]) != 1 || now[flows[i].Src][0] != o) {
			t.Errorf("survivor flow %s moved from %+v to %+v after %s crashed", flows[i].Src, o, now[flows[i].Src], crashed)
		}
	}
	t.Logf("FLEET-CRASH unhealthy_ms=%d crashed_flows=%d answered=%d (no_rebalance: the GWLB keeps sending them to %s, whose pinned GWLB programs and kernel NAT outlive hanatd)",
		took.Milliseconds(), crashedN, crashedOK, crashed)

	t.Run("drain", func(t *testing.T) { f.drain(t, flows, owners) })
	t.Run("scale-in completes the lifecycle action", func(t *testing.T) { f.scaleIn(t, flows, owners) })
	t.Run("cleanup detaches the GWLB programs", func(t *testing.T) { f.cleanup(t, "nat-a") })
}

// tcxPrograms counts the tcx ingress and egress programs on the eth0 of
// instance, asked inside its namespace.
func (f *fleetLab) tcxPrograms(t *testing.T, instance string) int {
	t.Helper()
	n := 0
	err := f.lab.Instance(instance).NS.Do(func() error {
		l, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		for _, hook := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
			r, err := link.QueryPrograms(link.QueryOptions{Target: l.Index, Attach: hook})
			if err != nil {
				return fmt.Errorf("query %v of eth0: %w", hook, err)
			}
			n += len(r.Programs)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("tcx programs in %s: %v", instance, err)
	}
	return n
}

// cleanup stops member's hanatd, whose GWLB programs (and fast path)
// stay attached through their pins, and runs hanatd --cleanup: no program
// is left on eth0 and no pin under the pin path.
func (f *fleetLab) cleanup(t *testing.T, member string) {
	n := f.nodes[member]
	n.proc.Kill()
	<-n.proc.Done()
	if got := f.tcxPrograms(t, member); got < 2 {
		t.Fatalf("%d tcx programs on %s's eth0 after SIGKILL, want the pinned GWLB ingress and egress at least", got, member)
	}
	cfg := filepath.Join(filepath.Dir(n.socket), "hanat.yaml")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := f.lab.Instance(member).NS.Run(ctx, bins.hanatd, "--cleanup", "--config", cfg, "--pin-path", f.pins[member])
	if err != nil {
		t.Fatalf("hanatd --cleanup in %s: %v\n%s", member, err, out)
	}
	if got := f.tcxPrograms(t, member); got != 0 {
		t.Errorf("%d tcx programs on %s's eth0 after hanatd --cleanup", got, member)
	}
	if left, _ := filepath.Glob(filepath.Join(f.pins[member], "*", "*")); len(left) != 0 {
		t.Errorf("pins left after hanatd --cleanup: %v", left)
	}
}

// badGeneve sends nat-a GENEVE from a host that is no GWLB, a truncated
// header and a non-IPv4 protocol from a GWLB address: each is dropped and
// counted by the member's datapath, and answered by nothing.
func (f *fleetLab) badGeneve(t *testing.T) {
	member := "nat-a"
	to := netip.AddrPortFrom(f.lab.Instance(member).PrivateIP, geneve.Port)
	gwlbAddr := f.lab.Status().GWLB.Nodes[0].Addr
	opts := geneve.Options{EndpointID: 0x1234, AttachmentID: 0x5678, FlowCookie: 0x9abc}
	inner := make([]byte, 28)
	inner[0], inner[8], inner[9] = 0x45, 64, 17
	good := append(geneve.Append(nil, geneve.Header{Protocol: geneve.ProtoIPv4, Options: opts}), inner...)
	ether := append(geneve.Append(nil, geneve.Header{Protocol: 0x6558, Options: opts}), inner...)
	send := func(ns interface{ Do(func() error) error }, from netip.Addr, b []byte) {
		t.Helper()
		err := ns.Do(func() error {
			var laddr *net.UDPAddr
			if from.IsValid() {
				laddr = &net.UDPAddr{IP: from.AsSlice()}
			}
			c, err := net.DialUDP("udp4", laddr, net.UDPAddrFromAddrPort(to))
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write(b)
			return err
		})
		if err != nil {
			t.Fatalf("send GENEVE to %s: %v", to, err)
		}
	}
	before := f.counters(t, member)
	send(f.lab.Instance("app-c").NS, netip.Addr{}, good)
	send(f.lab.GWLBNS(), gwlbAddr, good[:6])
	send(f.lab.GWLBNS(), gwlbAddr, ether)
	want := map[string]uint64{"foreign_source": 1, string(geneve.ReasonTruncated): 1, string(geneve.ReasonProtocol): 1}
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; ; i++ {
		after := f.counters(t, member)
		var missing []string
		for k, n := range want {
			if after[k] < before[k]+n {
				missing = append(missing, fmt.Sprintf("%s %d→%d", k, before[k], after[k]))
			}
		}
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) || i > 300 {
			sort.Strings(missing)
			t.Fatalf("%s's datapath did not count the bad GENEVE: %s (counters %v)", member, strings.Join(missing, ", "), after)
		}
		time.Sleep(20 * time.Millisecond)
	}
	out, err := runCtl(f.nodes[member].socket, "status")
	if err != nil || !strings.Contains(out, "foreign_source") {
		t.Errorf("hanatctl status does not show the drops: %v\n%s", err, out)
	}
}

// flowsOf are the flows whose owner is member.
func flowsOf(member string, flows []fleetFlow, owners []owner) []fleetFlow {
	var mine []fleetFlow
	for i, o := range owners {
		if o.member == member {
			mine = append(mine, flows[i])
		}
	}
	return mine
}

// drain stops nat-a2 with SIGTERM: it fails its health check at once,
// keeps its flows echoed for the deregistration delay and exits only after
// it.
func (f *fleetLab) drain(t *testing.T, flows []fleetFlow, owners []owner) {
	member := "nat-a2"
	mine := flowsOf(member, flows, owners)
	p := f.nodes[member].proc
	start := time.Now()
	if err := syscall.Kill(p.Cmd.Process.Pid, syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s's hanatd: %v", member, err)
	}
	unhealthy := f.waitState(t, member, gwlbsim.StateUnhealthy, 4*time.Second)
	during := answered(ask(mine, time.Second))
	if during != len(mine) {
		t.Errorf("while draining, %d of %s's %d flows echoed", during, member, len(mine))
	}
	select {
	case <-p.Done():
		t.Fatalf("hanatd in %s exited %v after SIGTERM, before the deregistration delay %v:\n%s", member, time.Since(start), fleetDrainDelay, p.Output())
	case <-time.After(time.Until(start.Add(fleetDrainDelay - 300*time.Millisecond))):
	}
	select {
	case <-p.Done():
	case <-time.After(time.Until(start.Add(fleetDrainDelay + 5*time.Second))):
		t.Fatalf("hanatd in %s still running %v after SIGTERM (delay %v)", member, time.Since(start), fleetDrainDelay)
	}
	exit := time.Since(start)
	if exit < fleetDrainDelay {
		t.Errorf("hanatd in %s exited after %v, before the delay %v", member, exit, fleetDrainDelay)
	}
	if !strings.Contains(p.Output(), "drain") {
		t.Errorf("hanatd in %s logged no drain:\n%s", member, p.Output())
	}
	// A shutdown is no scale-in: the lifecycle action is not hanatd's.
	if acts, state := f.lab.LifecycleActions(member); len(acts) != 0 || state != ec2sim.ASGInService {
		t.Errorf("a SIGTERM drain of %s completed lifecycle actions %+v (state %s)", member, acts, state)
	}
	t.Logf("FLEET-DRAIN unhealthy_ms=%d exit_ms=%d delay_ms=%d flows=%d answered_during=%d",
		unhealthy.Milliseconds(), exit.Milliseconds(), fleetDrainDelay.Milliseconds(), len(mine), during)
}

// scaleIn has Auto Scaling terminate nat-a: its target lifecycle state
// turns Terminated (Terminating:Wait on the group's hook), the member
// fails its check, keeps its flows for the deregistration delay, then
// completes the hook's lifecycle action CONTINUE (the lab moves it to
// Terminating:Proceed) and keeps running until the instance goes.
func (f *fleetLab) scaleIn(t *testing.T, flows []fleetFlow, owners []owner) {
	member := "nat-a"
	mine := flowsOf(member, flows, owners)
	start := time.Now()
	if err := f.lab.ScaleIn(member); err != nil {
		t.Fatal(err)
	}
	// The lifecycle state is read every 5 s; then 3 failed checks.
	unhealthy := f.waitState(t, member, gwlbsim.StateUnhealthy, 5*time.Second+4*fleetCheckInterval+time.Second)
	during := answered(ask(mine, time.Second))
	if during != len(mine) {
		t.Errorf("while draining, %d of %s's %d flows echoed", during, member, len(mine))
	}
	var acts []ec2sim.CompletedAction
	var state string
	for i := 0; i < 1000 && time.Since(start) < 5*time.Second+fleetDrainDelay+5*time.Second; i++ {
		if acts, state = f.lab.LifecycleActions(member); len(acts) > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	completed := time.Since(start)
	if len(acts) != 1 || acts[0].Group != fleetGroup || acts[0].Hook != fleetHook || acts[0].Result != ec2sim.ResultContinue {
		st, _ := f.nodes[member].client.Status(context.Background())
		t.Fatalf("%s: lifecycle actions completed %+v after %v, want one %s of %s/%s (status %+v)", member, acts, completed,
			ec2sim.ResultContinue, fleetGroup, fleetHook, st.Fleet)
	}
	if state != ec2sim.ASGTerminatingProceed {
		t.Errorf("%s is %s after its completion, want %s", member, state, ec2sim.ASGTerminatingProceed)
	}
	st, err := f.nodes[member].client.Status(context.Background())
	if err != nil || st.Fleet == nil {
		t.Fatalf("status of %s: %v", member, err)
	}
	d := st.Fleet.Drain
	if d.Ended == "" || time.Duration(d.TookMS)*time.Millisecond < fleetDrainDelay-50*time.Millisecond && d.FlowsLeft > 0 {
		t.Errorf("%s completed before its drain ended: %+v", member, d)
	}
	if a := st.Fleet.LifecycleAction; a == nil || a.Error != "" || !strings.Contains(a.Action, fleetHook) {
		t.Errorf("%s's status shows the lifecycle action as %+v", member, a)
	}
	select {
	case <-f.nodes[member].proc.Done():
		t.Errorf("hanatd in %s exited after a scale-in drain (the instance's termination stops it)", member)
	default:
	}
	t.Logf("FLEET-SCALEIN unhealthy_ms=%d completed_ms=%d delay_ms=%d flows=%d answered_during=%d drain=%q after %d ms",
		unhealthy.Milliseconds(), completed.Milliseconds(), fleetDrainDelay.Milliseconds(), len(mine), during, d.Ended, d.TookMS)
}

// TestGWLBFleetRebalanceCrash: with rebalance, a crashed member's flows
// are rehashed to the two others once it is unhealthy. Their conntrack
// never saw those flows, so each continues as a new NAT flow: echoed
// again, but from another EIP (the internet sees a new source; a TCP
// connection would be reset instead).
//
//	FLEET-REBALANCE unhealthy_ms=<n> crashed_flows=<n> answered=<n> new_source=<n>
func TestGWLBFleetRebalanceCrash(t *testing.T) {
	f := setupFleet(t, gwlbsim.Rebalance)
	flows := f.openFlows(t, 90)
	if n := answered(ask(flows, 2*time.Second)); n != len(flows) {
		t.Fatalf("%d of %d flows echoed (%s)", n, len(flows), f.why(flows, make([]bool, len(flows))))
	}
	owners := ownerOf(t, flows, f.owners(t, fleetMembers...))
	crashed := "nat-c"
	f.nodes[crashed].proc.Kill()
	<-f.nodes[crashed].proc.Done()
	took := f.waitState(t, crashed, gwlbsim.StateUnhealthy, 4*time.Second)
	after := ask(flows, 2*time.Second)
	now := f.owners(t, "nat-a", "nat-a2")
	crashedN, ok, moved := 0, 0, 0
	for i, o := range owners {
		if o.member != crashed {
			if !after[i] || len(now[flows[i].Src]) != 1 || now[flows[i].Src][0] != o {
				t.Errorf("survivor flow %s (%+v): echoed %v, now %+v", flows[i].Src, o, after[i], now[flows[i].Src])
			}
			continue
		}
		crashedN++
		if after[i] {
			ok++
		}
		if len(now[flows[i].Src]) == 1 {
			moved++
		}
	}
	if ok != crashedN || moved != crashedN {
		t.Errorf("rebalance: of %s's %d flows %d echoed after the crash, %d NATed by a survivor; want all", crashed, crashedN, ok, moved)
	}
	t.Logf("FLEET-REBALANCE unhealthy_ms=%d crashed_flows=%d answered=%d new_source=%d", took.Milliseconds(), crashedN, ok, moved)
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/internal/vpcsim"
	"github.com/hanat/hanat/internal/vpcsim/gwlbsim"
)

// The fleet demo: three hanatd behind the lab's GWLB.
const (
	gwlbDemoCheckPort = 8080
	// gwlbDemoInterval is the target group's health check interval: with
	// thresholds of 3, a crashed target is unhealthy within about a second.
	gwlbDemoInterval = 250 * time.Millisecond
	gwlbDemoDelay    = 3 * time.Second // gwlb.deregistration_delay
	gwlbDemoFlows    = 240
	gwlbDemoFresh    = 60 // new flows after the crash
	gwlbDemoCrashed  = "nat-c"
	gwlbDemoDrained  = "nat-a2"
)

var gwlbDemoMembers = []string{"nat-a", "nat-c", "nat-a2"}

// gwlbDemo is one run of the fleet's story.
type gwlbDemo struct {
	*demo
	pins    string // the demo's own bpffs
	members map[string]*gwlbMember
	flows   []vpcsim.UDPFlow
}

type gwlbMember struct {
	proc   *vpcsim.Process
	client *admin.Client
}

// cmdDemoGWLB is `make demo DEMO_ARGS=--gwlb`: the seed's VPC with a
// Gateway Load Balancer (cross-zone, TCP health check every 250 ms) whose
// targets nat-a, nat-c and nat-a2 run hanatd with gwlb.enabled, the
// private route tables pointing at the GWLB endpoints; UDP flows from
// app-a and app-c are shared by the three; nat-c's hanatd crashes and new
// flows go to the two others; nat-a2 drains (SIGTERM) and exits after
// its deregistration delay. Torn down at the end, or on Ctrl-C.
func cmdDemoGWLB(ctx context.Context, d *demo, prefix string, hold bool) (err error) {
	d.step("building the seed's VPC with a Gateway Load Balancer in network namespaces (prefix %q)", prefix)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	lab, err := vpcsim.Up(ctx, log, vpcsim.Options{Prefix: prefix, NATInstances: 3, GWLB: &vpcsim.GWLBOptions{
		Config: gwlbsim.Config{CrossZone: true, HealthCheck: gwlbsim.HealthCheck{Port: gwlbDemoCheckPort, Interval: gwlbDemoInterval,
			Timeout: 200 * time.Millisecond, HealthyThreshold: 3, UnhealthyThreshold: 3}},
		PointPrivateRoutes: true, RegisterNATs: true}})
	if err != nil {
		return fmt.Errorf("demo --gwlb: lab up: %w", err)
	}
	d.lab = lab
	g := &gwlbDemo{demo: d, members: map[string]*gwlbMember{}}
	defer func() {
		err = errors.Join(err, d.teardown(func() {
			for _, fl := range g.flows {
				fl.Conn.Close()
			}
			for _, m := range g.members {
				m.proc.Kill()
			}
		}, func() error {
			if g.pins == "" {
				return nil
			}
			if err := unix.Unmount(g.pins, unix.MNT_DETACH); err != nil {
				return fmt.Errorf("unmount the demo's bpffs %s: %w", g.pins, err)
			}
			return os.Remove(g.pins)
		}))
	}()
	if d.dir, err = os.MkdirTemp("", "hanat-demo-gwlb-"); err != nil {
		return err
	}
	defer os.RemoveAll(d.dir)
	if err := g.run(ctx); err != nil {
		d.say("FAILED: %v", err)
		return fmt.Errorf("demo --gwlb: %w", err)
	}
	if hold {
		d.say("\nThe lab stays up until Ctrl-C.")
		<-ctx.Done()
	}
	return nil
}

func (g *gwlbDemo) run(ctx context.Context) error {
	lab := g.lab
	st := lab.Status().GWLB
	d := g.demo
	d.say("GWLB %s, target group: %s, cross-zone %v, failover %s", st.Name, st.Attributes.HealthCheck, st.Attributes.CrossZone, st.Attributes.OnUnhealthy)
	for _, n := range st.Nodes {
		d.say("GWLB node AZ %s %s %s", n.AZ, n.ENIID, n.Addr)
	}
	for _, rt := range lab.Status().RouteTables {
		for _, r := range rt.Routes {
			if strings.HasPrefix(rt.Name, "private-") && r.Destination.Bits() == 0 {
				d.say("route table %s %s: 0.0.0.0/0 -> %s", rt.Name, rt.ID, endpointOf(st, r.VpcEndpointID))
			}
		}
	}

	// Phase 1: three real hanatd, healthy behind the GWLB.
	// The members pin their programs in a bpffs of the demo's own (each
	// in its directory), never in the host's /sys/fs/bpf; outside g.dir,
	// which is removed before the teardown unmounts it.
	pins, err := os.MkdirTemp("", "hanat-demo-bpf-")
	if err != nil {
		return err
	}
	if err := unix.Mount("bpf", pins, "bpf", 0, "mode=0700"); err != nil {
		os.Remove(pins)
		return fmt.Errorf("mount a bpffs for the members' pins on %s: %w", pins, err)
	}
	g.pins = pins
	d.step("starting hanatd with gwlb.enabled on %s (health check TCP:%d, deregistration delay %v)", strings.Join(gwlbDemoMembers, ", "), gwlbDemoCheckPort, gwlbDemoDelay)
	t0 := time.Now()
	for _, name := range gwlbDemoMembers {
		if err := g.startMember(ctx, name); err != nil {
			return err
		}
	}
	for _, name := range gwlbDemoMembers {
		if _, err := g.waitState(ctx, name, gwlbsim.StateHealthy); err != nil {
			return err
		}
		in := lab.Instance(name)
		tg, _ := lab.Status().GWLB.Target(name)
		d.say("target %-6s %-10s AZ %s: healthy (public IP %s)", name, tg.IP, tg.AZ, in.PublicIP)
	}
	d.say("all three targets healthy (%.1fs)", time.Since(t0).Seconds())

	// Phase 2: the flows are shared.
	d.step("%d UDP flows from app-a and app-c to the internet's echo server %s", gwlbDemoFlows, lab.Internet().UDPEchoAddr)
	flows, err := g.openFlows(gwlbDemoFlows)
	if err != nil {
		return err
	}
	if n := vpcsim.Answered(vpcsim.AskUDP(flows, 2*time.Second)); n != len(flows) {
		return fmt.Errorf("%d of %d flows echoed through the fleet", n, len(flows))
	}
	d.say("%d of %d flows echoed", len(flows), len(flows))
	owners, err := g.owners(ctx, flows, gwlbDemoMembers...)
	if err != nil {
		return err
	}
	if err := g.counts(ctx, owners); err != nil {
		return err
	}

	// Phase 3: a crash.
	d.step("crashing %s's hanatd (SIGKILL): it stops answering the health check", gwlbDemoCrashed)
	crashed := g.members[gwlbDemoCrashed]
	crashAt := time.Now()
	crashed.proc.Kill()
	<-crashed.proc.Done()
	unhealthyAt, err := g.waitState(ctx, gwlbDemoCrashed, gwlbsim.StateUnhealthy)
	if err != nil {
		return err
	}
	d.at(crashAt, unhealthyAt, "the GWLB marks %s unhealthy (3 failed checks %v apart)", gwlbDemoCrashed, gwlbDemoInterval)
	before, _ := lab.Status().GWLB.Target(gwlbDemoCrashed)
	fresh, err := g.openFlows(gwlbDemoFresh)
	if err != nil {
		return err
	}
	if n := vpcsim.Answered(vpcsim.AskUDP(fresh, 2*time.Second)); n != len(fresh) {
		return fmt.Errorf("after the crash: %d of %d new flows echoed", n, len(fresh))
	}
	freshOwners, err := g.owners(ctx, fresh, "nat-a", "nat-a2")
	if err != nil {
		return err
	}
	after, _ := lab.Status().GWLB.Target(gwlbDemoCrashed)
	per := perMember(freshOwners)
	d.say("%d new flows, all echoed: nat-a %d, nat-a2 %d, %s %d (the GWLB counts %d flows on it, as before the crash)",
		len(fresh), per["nat-a"], per["nat-a2"], gwlbDemoCrashed, after.Flows-before.Flows, after.Flows)
	if after.Flows != before.Flows || per["nat-a"]+per["nat-a2"] != len(fresh) {
		return fmt.Errorf("after the crash: the GWLB gave unhealthy %s new flows (%d -> %d)", gwlbDemoCrashed, before.Flows, after.Flows)
	}
	old := vpcsim.AskUDP(flows, 2*time.Second)
	survivors, survived, crashedN, crashedOK := 0, 0, 0, 0
	for i, o := range owners {
		if o.member == gwlbDemoCrashed {
			crashedN++
			if old[i] {
				crashedOK++
			}
			continue
		}
		survivors++
		if old[i] {
			survived++
		}
	}
	d.say("the survivors' %d flows: %d still echoed", survivors, survived)
	d.say("%s's %d flows (no_rebalance: the GWLB keeps them on it): %d still echoed by its pinned GWLB programs and kernel NAT", gwlbDemoCrashed, crashedN, crashedOK)
	if survived != survivors {
		return fmt.Errorf("after the crash: %d of the survivors' %d flows lost their echo", survivors-survived, survivors)
	}
	all := append(append([]vpcsim.UDPFlow{}, flows...), fresh...)
	if err := g.counts(ctx, append(append([]owner{}, owners...), freshOwners...)); err != nil {
		return err
	}

	// Phase 4: a drain.
	if err := g.drain(ctx, all, append(owners, freshOwners...)); err != nil {
		return err
	}
	d.step("after the drain")
	for _, tg := range lab.Status().GWLB.Targets {
		d.say("target %-6s %-9s %3d flows", tg.Instance, tg.State, tg.Flows)
	}

	d.step("what to try next")
	d.say("hanat-lab up --gwlb --gwlb-cross-zone --gwlb-interval 1s   # the fleet's lab, yours to try")
	d.say("go test ./internal/e2e/ -run TestGWLBFleet -v               # the story as a test, 300 flows")
	return nil
}

// drain stops gwlbDemoDrained with SIGTERM: it fails its check at once,
// keeps its flows echoed until the deregistration delay and exits after.
func (g *gwlbDemo) drain(ctx context.Context, flows []vpcsim.UDPFlow, owners []owner) error {
	d, name := g.demo, gwlbDemoDrained
	var mine []vpcsim.UDPFlow
	for i, o := range owners {
		if o.member == name {
			mine = append(mine, flows[i])
		}
	}
	d.step("draining %s (SIGTERM, gwlb.deregistration_delay %v): %d flows on it", name, gwlbDemoDelay, len(mine))
	p := g.members[name].proc
	start := time.Now()
	if err := syscall.Kill(p.Cmd.Process.Pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("SIGTERM %s's hanatd: %w", name, err)
	}
	unhealthyAt, err := g.waitState(ctx, name, gwlbsim.StateUnhealthy)
	if err != nil {
		return err
	}
	d.at(start, unhealthyAt, "%s fails its health check: the GWLB sends it no new flows", name)
	// Its flows are asked for at once and again halfway through the
	// delay (each ask bounded by a second, done before the delay ends).
	for _, at := range []time.Time{time.Now(), start.Add(gwlbDemoDelay / 2)} {
		if err := sleep(ctx, time.Until(at)); err != nil {
			return err
		}
		during := vpcsim.Answered(vpcsim.AskUDP(mine, time.Second))
		d.at(start, time.Now(), "%d of its %d flows still echoed while it drains", during, len(mine))
		if during != len(mine) {
			return fmt.Errorf("while %s drains: %d of its %d flows echoed", name, during, len(mine))
		}
	}
	select {
	case <-p.Done():
		return fmt.Errorf("hanatd on %s exited %v after SIGTERM, before the delay %v", name, time.Since(start).Round(time.Millisecond), gwlbDemoDelay)
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(start.Add(gwlbDemoDelay - 300*time.Millisecond))):
	}
	d.at(start, time.Now(), "%s still running, its flows kept", name)
	select {
	case <-p.Done():
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(start.Add(gwlbDemoDelay + 5*time.Second))):
		return fmt.Errorf("hanatd on %s still running %v after SIGTERM (delay %v)", name, time.Since(start).Round(time.Millisecond), gwlbDemoDelay)
	}
	exit := time.Since(start)
	d.at(start, start.Add(exit), "hanatd on %s exits, after the %v delay", name, gwlbDemoDelay)
	if exit < gwlbDemoDelay {
		return fmt.Errorf("hanatd on %s exited after %v, before the delay %v", name, exit, gwlbDemoDelay)
	}
	return nil
}

// startMember writes name's config and starts its hanatd, ready when it
// returns.
func (g *gwlbDemo) startMember(ctx context.Context, name string) error {
	lab := g.lab
	if err := lab.PrepareFleetMember(ctx, name); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(g.dir, name+"-")
	if err != nil {
		return err
	}
	sock, cfg := filepath.Join(dir, "admin.sock"), filepath.Join(dir, "hanat.yaml")
	body := fmt.Sprintf("admin:\n  socket: %s\nstate_dir: %s\n%s", sock, filepath.Join(dir, "state"),
		lab.FleetConfig(vpcsim.FleetMember{CheckPort: gwlbDemoCheckPort, DeregistrationDelay: gwlbDemoDelay}))
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		return err
	}
	p, err := lab.Start(ctx, name, g.hanatd, "--config", cfg, "--pin-path", filepath.Join(g.pins, name))
	if err != nil {
		return fmt.Errorf("start hanatd on %s: %w", name, err)
	}
	g.members[name] = &gwlbMember{proc: p, client: admin.NewClient(sock)}
	if err := waitSocket(ctx, g.hanatctl, sock, p); err != nil {
		return fmt.Errorf("hanatd on %s: %w\n%s", name, err, lastLines(p.Output(), 20))
	}
	return nil
}

// endpointOf describes the GWLB endpoint id (what it is not, as is).
func endpointOf(st *vpcsim.StatusGWLB, id string) string {
	for _, e := range st.Endpoints {
		if e.ID == id {
			return fmt.Sprintf("GWLB endpoint %s (AZ %s, %s %s)", e.ID, e.AZ, e.ENIID, e.Addr)
		}
	}
	return fmt.Sprintf("%q, no GWLB endpoint", id)
}

// waitState waits (bounded by demoWithin) for name's target to reach
// want; it returns when it saw it.
func (g *gwlbDemo) waitState(ctx context.Context, name string, want gwlbsim.TargetState) (time.Time, error) {
	var got gwlbsim.TargetState
	var at time.Time
	err := g.poll(ctx, fmt.Sprintf("target %s %s", name, want), func() (bool, error) {
		tg, ok := g.lab.Status().GWLB.Target(name)
		got, at = tg.State, time.Now()
		if !ok {
			return false, fmt.Errorf("no target %s", name)
		}
		return got == want, fmt.Errorf("target %s is %s", name, got)
	})
	return at, err
}

// openFlows opens n UDP flows, alternately from app-a and app-c; the
// teardown closes them.
func (g *gwlbDemo) openFlows(n int) ([]vpcsim.UDPFlow, error) {
	out, err := g.lab.OpenUDPFlows(n, demoApp, "app-c")
	g.flows = append(g.flows, out...)
	return out, err
}

// owner is the member whose conntrack has a flow, and the flow's
// translated source.
type owner struct {
	member string
	natSrc string
}

// owners asks members for their UDP flows and returns each of flows'
// one member; a flow on none or on several is an error.
func (g *gwlbDemo) owners(ctx context.Context, flows []vpcsim.UDPFlow, members ...string) ([]owner, error) {
	all := map[string][]owner{}
	for _, name := range members {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		r, err := g.members[name].client.Flows(cctx, admin.FlowsQuery{Protocol: "udp"})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("flows of %s: %w", name, err)
		}
		for _, fl := range r.Flows {
			all[fl.Src] = append(all[fl.Src], owner{member: name, natSrc: fl.NATSrc})
		}
	}
	out := make([]owner, len(flows))
	for i, fl := range flows {
		o := all[fl.Src]
		if len(o) != 1 {
			return nil, fmt.Errorf("flow %s is NATed by %d members (%v), want exactly one", fl.Src, len(o), o)
		}
		out[i] = o[0]
	}
	return out, nil
}

func perMember(os []owner) map[string]int {
	m := map[string]int{}
	for _, o := range os {
		m[o.member]++
	}
	return m
}

// counts prints each target's flows as the GWLB counts them, the
// members' conntrack agreeing, and the public IP the echo server saw each
// target's flows from.
func (g *gwlbDemo) counts(ctx context.Context, owners []owner) error {
	per := perMember(owners)
	seen := g.lab.ServerSources().UDPEcho
	fromEIP := map[netip.Addr]int{}
	for src := range seen {
		fromEIP[src.Addr()]++
	}
	for _, tg := range g.lab.Status().GWLB.Targets {
		pub := g.lab.Instance(tg.Instance).PublicIP
		g.say("target %-6s %-9s %3d flows (its conntrack: %3d), NATed under %s (the echo server saw %d sources from it)",
			tg.Instance, tg.State, tg.Flows, per[tg.Instance], pub, fromEIP[pub])
	}
	for i, o := range owners {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		nat, err := netip.ParseAddrPort(o.natSrc)
		if err != nil {
			return fmt.Errorf("flow %d on %s: NAT source %q: %w", i, o.member, o.natSrc, err)
		}
		if pub := g.lab.Instance(o.member).PublicIP; seen[netip.AddrPortFrom(pub, nat.Port())] == 0 {
			return fmt.Errorf("the echo server never saw %s's flow from its EIP %s port %d", o.member, pub, nat.Port())
		}
	}
	return nil
}

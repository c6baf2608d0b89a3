package vpcsim

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/hanat/hanat/geneve"
	"github.com/hanat/hanat/internal/vpcsim/gwlbsim"
)

// The GWLB tests' targets are test-only GENEVE responders in the NAT
// instances' namespaces: each decapsulates what the GWLB sends, answers
// every inner UDP datagram with a reply from the inner destination
// (payload "<target> <request>"), encapsulated back with the same
// options, as a two-arm NAT's return path would, and accepts TCP on the
// health check port.

const (
	gwlbTestCheckPort = 8080
	gwlbTestInterval  = 200 * time.Millisecond
)

type responder struct {
	name string
	udp  *net.UDPConn
	hc   net.Listener
	wg   sync.WaitGroup

	mu      sync.Mutex
	cookies map[uint32]geneve.Options // options seen, by cookie
}

func startResponder(t *testing.T, lab *Lab, name string) *responder {
	t.Helper()
	in := lab.Instance(name)
	r := &responder{name: name, cookies: map[uint32]geneve.Options{}}
	err := in.NS.Do(func() (err error) {
		if r.udp, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(in.PrivateIP, geneve.Port))); err != nil {
			return err
		}
		r.hc, err = net.Listen("tcp4", netip.AddrPortFrom(in.PrivateIP, gwlbTestCheckPort).String())
		return err
	})
	if err != nil {
		t.Fatalf("responder in %s: %v", name, err)
	}
	r.wg.Add(2)
	go func() {
		defer r.wg.Done()
		for {
			c, err := r.hc.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	go func() {
		defer r.wg.Done()
		buf := make([]byte, 1<<16)
		for {
			n, from, err := r.udp.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			h, inner, err := geneve.Parse(buf[:n])
			if err != nil {
				continue
			}
			reply, ok := udpReply(inner, name)
			if !ok {
				continue
			}
			r.mu.Lock()
			r.cookies[h.Options.FlowCookie] = h.Options
			r.mu.Unlock()
			runt := h
			runt.Protocol = 0x6558 // Ethernet inside: not GWLB's
			_, _ = r.udp.WriteToUDPAddrPort(append(geneve.Append(nil, runt), reply...), from)
			out := append(geneve.Append(nil, h), reply...)
			_, _ = r.udp.WriteToUDPAddrPort(out, from)
		}
	}()
	t.Cleanup(r.stop)
	return r
}

// stop closes the responder's sockets: a crashed target.
func (r *responder) stop() {
	r.udp.Close()
	r.hc.Close()
	r.wg.Wait()
}

func (r *responder) anyCookie() (geneve.Options, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.cookies {
		return o, true
	}
	return geneve.Options{}, false
}

// udpReply is the reply to an inner IPv4/UDP packet: addresses and ports
// swapped, payload prefixed with the target's name, IP checksum right,
// UDP checksum 0.
func udpReply(p []byte, name string) ([]byte, bool) {
	if len(p) < 28 || p[0] != 0x45 || p[9] != 17 {
		return nil, false
	}
	payload := append([]byte(name+" "), p[28:]...)
	out := make([]byte, 28+len(payload))
	copy(out, p[:20])
	binary.BigEndian.PutUint16(out[2:4], uint16(len(out)))
	copy(out[12:16], p[16:20])
	copy(out[16:20], p[12:16])
	out[8] = 64
	out[10], out[11] = 0, 0
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(out[i : i+2]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(out[10:12], ^uint16(sum))
	copy(out[20:22], p[22:24])
	copy(out[22:24], p[20:22])
	binary.BigEndian.PutUint16(out[24:26], uint16(8+len(payload)))
	copy(out[28:], payload)
	return out, true
}

// flowConn is one UDP flow of a private host to the internet's echo port.
type flowConn struct {
	c  net.Conn
	id int
}

func openFlows(t *testing.T, lab *Lab, host string, n int) []flowConn {
	t.Helper()
	ns := lab.Instance(host).NS
	echo := lab.Internet().UDPEchoAddr.String()
	out := make([]flowConn, 0, n)
	for i := range n {
		var c net.Conn
		if err := ns.Do(func() (err error) { c, err = net.Dial("udp4", echo); return err }); err != nil {
			t.Fatalf("flow %d from %s: %v", i, host, err)
		}
		t.Cleanup(func() { c.Close() })
		out = append(out, flowConn{c: c, id: i})
	}
	return out
}

// ask sends one datagram on each flow and returns which target answered
// each ("" for no answer within wait).
func ask(t *testing.T, flows []flowConn, wait time.Duration) []string {
	t.Helper()
	out := make([]string, len(flows))
	var wg sync.WaitGroup
	for i, f := range flows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := fmt.Sprintf("flow-%d", f.id)
			for attempt := 0; attempt < 3; attempt++ {
				if _, err := f.c.Write([]byte(msg)); err != nil {
					return
				}
				_ = f.c.SetReadDeadline(time.Now().Add(wait / 3))
				buf := make([]byte, 256)
				n, err := f.c.Read(buf)
				if err != nil {
					continue
				}
				name, rest, _ := strings.Cut(string(buf[:n]), " ")
				if rest == msg {
					out[i] = name
					return
				}
			}
		}()
	}
	wg.Wait()
	return out
}

func count(names []string) map[string]int {
	m := map[string]int{}
	for _, n := range names {
		m[n]++
	}
	return m
}

func targetState(lab *Lab, name string) gwlbsim.TargetState {
	for _, tg := range lab.Status().GWLB.Targets {
		if tg.Instance == name {
			return tg.State
		}
	}
	return "absent"
}

// waitState waits (bounded) for target name to reach state and returns
// how long it took.
func waitState(t *testing.T, lab *Lab, name string, want gwlbsim.TargetState, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		if targetState(lab, name) == want {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("target %s: %s after %v, want %s", name, targetState(lab, name), limit, want)
	return 0
}

func upGWLBLab(t *testing.T, cfg gwlbsim.Config) (*Lab, map[string]*responder) {
	t.Helper()
	cfg.HealthCheck.Port, cfg.HealthCheck.Interval = gwlbTestCheckPort, gwlbTestInterval
	lab := upLab(t, Options{NATInstances: 3, GWLB: &GWLBOptions{Config: cfg, PointPrivateRoutes: true, RegisterNATs: true}})
	rs := map[string]*responder{}
	for _, n := range []string{"nat-a", "nat-c", "nat-a2"} {
		rs[n] = startResponder(t, lab, n)
	}
	for _, n := range []string{"nat-a", "nat-c", "nat-a2"} {
		waitState(t, lab, n, gwlbsim.StateHealthy, 20*gwlbTestInterval)
	}
	return lab, rs
}

// TestGWLBRoutesInTheAPI: the lab's endpoints are route targets the real
// SDK sees, and the GWLB's ENIs are found by their description.
func TestGWLBRoutesInTheAPI(t *testing.T) {
	lab := upLab(t, Options{NATInstances: -1, GWLB: &GWLBOptions{PointPrivateRoutes: true}})
	ctx := context.Background()
	c := ec2Client(lab)
	eps := lab.GWLBEndpoints()
	out, err := c.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{RouteTableIds: []string{lab.RouteTableID("private-a")}})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range out.RouteTables[0].Routes {
		if aws.ToString(r.DestinationCidrBlock) == "0.0.0.0/0" && aws.ToString(r.GatewayId) == eps[0].ID {
			found = true
		}
	}
	if !found {
		t.Fatalf("private-a has no 0.0.0.0/0 → %s: %+v", eps[0].ID, out.RouteTables[0].Routes)
	}
	enis, err := c.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{Filters: []types.Filter{
		{Name: aws.String("description"), Values: []string{"ELB gwy/" + GWLBName + "/*"}}}})
	if err != nil || len(enis.NetworkInterfaces) != 2 || aws.ToString(enis.NetworkInterfaces[0].PrivateIpAddress) != "10.0.1.5" {
		t.Fatalf("GWLB ENIs by description: %v %+v", err, enis)
	}
	// ReplaceRoute through the API moves private-c's traffic to AZ a's
	// endpoint, in the router's kernel table too.
	if _, err := c.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{RouteTableId: aws.String(lab.RouteTableID("private-c")),
		DestinationCidrBlock: aws.String("0.0.0.0/0"), VpcEndpointId: aws.String(eps[0].ID)}); err != nil {
		t.Fatal(err)
	}
	kt, err := lab.RouterNS().Run(ctx, "ip", "route", "show", "table", fmt.Sprint(firstKernelTable+3))
	if err != nil || !strings.Contains(kt, "default via 10.0.11.5") {
		t.Fatalf("router table of private-c after ReplaceRoute: %q %v", kt, err)
	}
}

// TestGWLBSpreadStickinessAndCrash: 300 flows from app-a spread over
// three targets (cross-zone on), each keeps its target; a crashed target
// is unhealthy after 3 failed checks and gets no new flows, the others'
// flows are untouched, and with no_rebalance its own flows get no answer.
// Malformed and foreign GENEVE back is dropped and counted.
func TestGWLBSpreadStickinessAndCrash(t *testing.T) {
	lab, rs := upGWLBLab(t, gwlbsim.Config{CrossZone: true})
	flows := openFlows(t, lab, "app-a", 300)
	first := ask(t, flows, time.Second)
	per := count(first)
	for _, n := range []string{"nat-a", "nat-c", "nat-a2"} {
		if per[n] < 60 {
			t.Fatalf("target %s answered %d of 300 flows, want at least 20%%: %v", n, per[n], per)
		}
	}
	st := lab.Status().GWLB
	for _, tg := range st.Targets {
		if tg.Flows != per[tg.Instance] {
			t.Fatalf("status says %s has %d flows, %d answered through it", tg.Instance, tg.Flows, per[tg.Instance])
		}
	}
	t.Logf("300 flows: %v", per)
	if again := ask(t, flows, time.Second); fmt.Sprint(again) != fmt.Sprint(first) {
		t.Fatalf("flows changed target while the fleet was stable:\n%v\n%v", count(again), per)
	}
	// The Ethernet-in-GENEVE each responder sends before its reply was
	// dropped and counted.
	if d := st.Drops[string(geneve.ReasonProtocol)]; d == 0 {
		t.Fatalf("drops %v: the header-only packets were not counted", st.Drops)
	}

	// Foreign and malformed GENEVE to the GWLB's address.
	opts, ok := rs["nat-a"].anyCookie()
	if !ok {
		t.Fatal("nat-a saw no flow")
	}
	gw := netip.MustParseAddrPort("10.0.1.5:6081")
	sendFrom := func(host string, b []byte) {
		t.Helper()
		err := lab.Instance(host).NS.Do(func() error {
			c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(gw))
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write(b)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	before := lab.Status().GWLB.Drops
	reply, _ := udpReply(udpPacketForTest(), "x")
	forged := append(geneve.Append(nil, geneve.Header{Protocol: geneve.ProtoIPv4, Options: opts}), reply...)
	sendFrom("app-c", forged)                            // a live cookie from a host that is no target
	sendFrom("nat-a", []byte{0x00, 0x00, 0x08, 0x00, 1}) // truncated
	badCookie := opts
	badCookie.FlowCookie ^= 0xffffffff
	sendFrom("nat-a", append(geneve.Append(nil, geneve.Header{Protocol: geneve.ProtoIPv4, Options: badCookie}), reply...))
	deadline := time.Now().Add(2 * time.Second)
	want := map[string]uint64{gwlbsim.DropForeignSource: 1, string(geneve.ReasonTruncated): 1, gwlbsim.DropUnknownFlow: 1}
	for {
		after := lab.Status().GWLB.Drops
		missing := ""
		for k, n := range want {
			if after[k] < before[k]+n {
				missing += fmt.Sprintf(" %s %d→%d", k, before[k], after[k])
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("drop counters not raised:%s", missing)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Crash nat-c.
	start := time.Now()
	rs["nat-c"].stop()
	waitState(t, lab, "nat-c", gwlbsim.StateUnhealthy, 20*gwlbTestInterval)
	took := time.Since(start)
	if took < 2*gwlbTestInterval {
		t.Fatalf("nat-c unhealthy after %v, sooner than 3 checks %v apart", took, gwlbTestInterval)
	}
	t.Logf("crashed nat-c unhealthy after %v (interval %v, threshold 3)", took, gwlbTestInterval)
	newFlows := openFlows(t, lab, "app-a", 60)
	if n := count(ask(t, newFlows, time.Second)); n["nat-c"] != 0 || n[""] != 0 {
		t.Fatalf("new flows after the crash: %v, want all on the two others", n)
	}
	after := ask(t, flows, 600*time.Millisecond)
	lost := 0
	for i := range flows {
		switch {
		case first[i] != "nat-c" && after[i] != first[i]:
			t.Fatalf("flow %d of %s changed to %q after nat-c crashed", i, first[i], after[i])
		case first[i] == "nat-c" && after[i] != "":
			t.Fatalf("no_rebalance: crashed nat-c's flow %d was answered by %s", i, after[i])
		case first[i] == "nat-c":
			lost++
		}
	}
	t.Logf("no_rebalance: %d of nat-c's %d flows get no answer after the crash (the GWLB keeps sending them to it)", lost, per["nat-c"])
}

// TestGWLBRebalanceAndDrain: with rebalance, a draining target keeps its
// flows for the deregistration delay and loses them to the others after
// it; a crashed target's flows are answered by the others once it is
// unhealthy.
func TestGWLBRebalanceAndDrain(t *testing.T) {
	const delay = 1500 * time.Millisecond
	lab, rs := upGWLBLab(t, gwlbsim.Config{CrossZone: true, OnUnhealthy: gwlbsim.Rebalance, OnDeregistration: gwlbsim.Rebalance,
		DeregistrationDelay: delay})
	flows := openFlows(t, lab, "app-a", 90)
	first := ask(t, flows, time.Second)
	per := count(first)
	if per["nat-a2"] == 0 || per["nat-c"] == 0 || per[""] != 0 {
		t.Fatalf("90 flows: %v", per)
	}
	start := time.Now()
	if err := lab.DeregisterTarget("nat-a2"); err != nil {
		t.Fatal(err)
	}
	if s := targetState(lab, "nat-a2"); s != gwlbsim.StateDraining {
		t.Fatalf("deregistered nat-a2: %s, want draining", s)
	}
	during := ask(t, flows, time.Second)
	if time.Since(start) > delay {
		t.Fatalf("asking took past the delay (%v); the test cannot tell draining from done", time.Since(start))
	}
	for i := range flows {
		if during[i] != first[i] {
			t.Fatalf("during the delay flow %d moved from %s to %q", i, first[i], during[i])
		}
	}
	if n := count(ask(t, openFlows(t, lab, "app-a", 30), time.Second)); n["nat-a2"] != 0 {
		t.Fatalf("new flows went to draining nat-a2: %v", n)
	}
	waitState(t, lab, "nat-a2", "absent", 2*delay)
	after := ask(t, flows, time.Second)
	for i := range flows {
		if first[i] == "nat-a2" && (after[i] == "nat-a2" || after[i] == "") || first[i] != "nat-a2" && after[i] != first[i] {
			t.Fatalf("after the delay flow %d of %s is answered by %q", i, first[i], after[i])
		}
	}
	t.Logf("rebalance: nat-a2's %d flows kept for %v, then moved: %v", per["nat-a2"], delay, count(after))

	// Crash nat-c: once unhealthy its flows are rehashed to nat-a.
	crash := time.Now()
	rs["nat-c"].stop()
	waitState(t, lab, "nat-c", gwlbsim.StateUnhealthy, 20*gwlbTestInterval)
	moved := ask(t, flows, time.Second)
	for i := range flows {
		if moved[i] != "nat-a" {
			t.Fatalf("after nat-c crashed, flow %d (first %s) is answered by %q, want nat-a", i, first[i], moved[i])
		}
	}
	t.Logf("rebalance: nat-c's %d flows answered by nat-a %v after the crash", per["nat-c"], time.Since(crash))
}

func udpPacketForTest() []byte {
	p := make([]byte, 32)
	p[0], p[8], p[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(p[2:4], 32)
	copy(p[12:16], []byte{10, 0, 11, 10})
	copy(p[16:20], []byte{203, 0, 113, 10})
	binary.BigEndian.PutUint16(p[20:22], 40000)
	binary.BigEndian.PutUint16(p[22:24], 7)
	binary.BigEndian.PutUint16(p[24:26], 12)
	return p
}

package gwlbsim

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hanat/hanat/geneve"
)

var (
	gwA   = netip.MustParseAddr("10.0.1.5")
	gwC   = netip.MustParseAddr("10.0.2.5")
	tA1   = netip.MustParseAddr("10.0.1.10")
	tA2   = netip.MustParseAddr("10.0.1.11")
	tC1   = netip.MustParseAddr("10.0.2.10")
	host  = netip.MustParseAddr("10.0.11.10")
	inet  = netip.MustParseAddr("203.0.113.10")
	epA   = Endpoint{ID: 0x0abc, AttachmentID: 0x1a, AZ: "a"}
	epC   = Endpoint{ID: 0x0def, AttachmentID: 0x1c, AZ: "c"}
	allTs = []netip.Addr{tA1, tA2, tC1}
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// udpPacket is an IPv4/UDP packet (checksums zero: the GWLB reads only
// the tuple).
func udpPacket(src, dst netip.Addr, sport, dport uint16, payload string) []byte {
	p := make([]byte, 28+len(payload))
	p[0], p[8], p[9] = 0x45, 64, protoUDP
	binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
	copy(p[12:16], src.AsSlice())
	copy(p[16:20], dst.AsSlice())
	binary.BigEndian.PutUint16(p[20:22], sport)
	binary.BigEndian.PutUint16(p[22:24], dport)
	binary.BigEndian.PutUint16(p[24:26], uint16(8+len(payload)))
	copy(p[28:], payload)
	return p
}

// newTestGWLB has targets tA1, tA2 (AZ a) and tC1 (AZ c), all healthy.
func newTestGWLB(t *testing.T, cfg Config) (*GWLB, *clock) {
	t.Helper()
	c := &clock{t: time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)}
	g, err := New(cfg, map[string]netip.Addr{"a": gwA, "c": gwC}, c.now, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []Endpoint{epA, epC} {
		if err := g.AddEndpoint(e); err != nil {
			t.Fatal(err)
		}
	}
	for _, ip := range allTs {
		az := "a"
		if ip == tC1 {
			az = "c"
		}
		if err := g.Register(ip, az); err != nil {
			t.Fatal(err)
		}
		for range g.cfg.HealthCheck.HealthyThreshold {
			g.ReportCheck(ip, true, "")
		}
		if st := g.state(ip); st != StateHealthy {
			t.Fatalf("%s after %d good checks: %s", ip, g.cfg.HealthCheck.HealthyThreshold, st)
		}
	}
	return g, c
}

func (g *GWLB) state(ip netip.Addr) TargetState {
	for _, ts := range g.Status().Targets {
		if ts.IP == ip {
			return ts.State
		}
	}
	return "absent"
}

func forward(t *testing.T, g *GWLB, ep Endpoint, sport uint16) Delivery {
	t.Helper()
	d, err := g.Forward(ep.ID, udpPacket(host, inet, sport, 7, "ping"))
	if err != nil {
		t.Fatalf("forward flow from port %d: %v", sport, err)
	}
	return d
}

// flows sends n new flows (source ports from base) through ep and counts
// them per target.
func flows(t *testing.T, g *GWLB, ep Endpoint, base, n int) (map[netip.Addr]int, map[uint16]Delivery) {
	t.Helper()
	per, by := map[netip.Addr]int{}, map[uint16]Delivery{}
	for i := range n {
		sport := uint16(base + i)
		d := forward(t, g, ep, sport)
		per[d.Target]++
		by[sport] = d
	}
	return per, by
}

func TestSpreadAndStickiness(t *testing.T) {
	g, _ := newTestGWLB(t, Config{CrossZone: true})
	per, by := flows(t, g, epA, 10000, 300)
	for _, ip := range allTs {
		if per[ip] < 60 {
			t.Errorf("target %s got %d of 300 flows, want at least 20%%: %v", ip, per[ip], per)
		}
	}
	for sport, d := range by {
		again := forward(t, g, epA, sport)
		if again.Target != d.Target || again.Cookie != d.Cookie || again.Source != gwA {
			t.Fatalf("flow %d: first %s cookie %#x, again %s cookie %#x from %s", sport, d.Target, d.Cookie, again.Target, again.Cookie, again.Source)
		}
	}
	// The encapsulation carries the endpoint, attachment and cookie.
	h, inner, err := geneve.Parse(by[10000].Payload)
	if err != nil || h.Options != (geneve.Options{EndpointID: epA.ID, AttachmentID: epA.AttachmentID, FlowCookie: by[10000].Cookie}) {
		t.Fatalf("encapsulation: %+v %v", h, err)
	}
	if k, _ := parseTuple(inner); k.sport != 10000 || k.dst != inet {
		t.Fatalf("inner packet tuple %s", k)
	}
	t.Logf("300 flows over 3 targets: %v", per)
}

func TestThreeAndTwoTupleStickiness(t *testing.T) {
	for _, s := range []Stickiness{ThreeTuple, TwoTuple} {
		g, _ := newTestGWLB(t, Config{CrossZone: true, Stickiness: s})
		per, _ := flows(t, g, epA, 20000, 50)
		if len(per) != 1 {
			t.Fatalf("%s: 50 flows between one host pair went to %d targets %v, want one", s, len(per), per)
		}
	}
}

func TestCrossZoneOffKeepsTheAZ(t *testing.T) {
	g, _ := newTestGWLB(t, Config{})
	per, _ := flows(t, g, epA, 30000, 100)
	if per[tC1] != 0 || per[tA1] == 0 || per[tA2] == 0 {
		t.Fatalf("AZ a's endpoint with cross-zone off: %v, want both AZ a targets and none of AZ c", per)
	}
	per, _ = flows(t, g, epC, 32000, 20)
	if per[tC1] != 20 {
		t.Fatalf("AZ c's endpoint: %v, want all on %s", per, tC1)
	}
}

func TestUnhealthyTarget(t *testing.T) {
	for _, fo := range []Failover{NoRebalance, Rebalance} {
		t.Run(string(fo), func(t *testing.T) {
			g, _ := newTestGWLB(t, Config{CrossZone: true, OnUnhealthy: fo, OnDeregistration: fo})
			_, by := flows(t, g, epA, 40000, 90)
			for i := range 2 {
				if st := g.ReportCheck(tA2, false, "refused"); st != StateHealthy {
					t.Fatalf("after %d failed checks: %s, want still healthy", i+1, st)
				}
			}
			if st := g.ReportCheck(tA2, false, "refused"); st != StateUnhealthy {
				t.Fatalf("after 3 failed checks: %s, want unhealthy", st)
			}
			per, _ := flows(t, g, epA, 50000, 60)
			if per[tA2] != 0 {
				t.Fatalf("new flows went to the unhealthy target: %v", per)
			}
			stayed, moved := 0, 0
			for sport, d := range by {
				again := forward(t, g, epA, sport)
				switch {
				case d.Target != tA2 && again.Target != d.Target:
					t.Fatalf("a healthy target's flow %d moved from %s to %s", sport, d.Target, again.Target)
				case d.Target == tA2 && again.Target == tA2:
					stayed++
				case d.Target == tA2:
					moved++
				}
			}
			if fo == NoRebalance && (stayed == 0 || moved != 0) || fo == Rebalance && (moved == 0 || stayed != 0) {
				t.Fatalf("%s: of the failed target's flows %d stayed, %d moved", fo, stayed, moved)
			}
			// Back to healthy after HealthyThreshold good checks.
			for range 3 {
				g.ReportCheck(tA2, true, "")
			}
			if st := g.state(tA2); st != StateHealthy {
				t.Fatalf("after 3 good checks: %s", st)
			}
		})
	}
}

func TestDeregistrationDelay(t *testing.T) {
	for _, fo := range []Failover{NoRebalance, Rebalance} {
		t.Run(string(fo), func(t *testing.T) {
			g, c := newTestGWLB(t, Config{CrossZone: true, OnUnhealthy: fo, OnDeregistration: fo, DeregistrationDelay: 30 * time.Second})
			_, by := flows(t, g, epA, 40000, 90)
			if err := g.Deregister(tA1); err != nil {
				t.Fatal(err)
			}
			if st := g.state(tA1); st != StateDraining {
				t.Fatalf("deregistered: %s, want draining", st)
			}
			if per, _ := flows(t, g, epA, 50000, 60); per[tA1] != 0 {
				t.Fatalf("new flows went to a draining target: %v", per)
			}
			c.add(29 * time.Second)
			g.Tick()
			onA1 := 0
			for sport, d := range by {
				if d.Target == tA1 {
					onA1++
					if again := forward(t, g, epA, sport); again.Target != tA1 {
						t.Fatalf("within the delay flow %d left the draining target for %s", sport, again.Target)
					}
				}
			}
			if onA1 == 0 {
				t.Fatal("no flow was on the drained target")
			}
			c.add(2 * time.Second)
			g.Tick()
			left := 0
			for sport, d := range by {
				if d.Target == tA1 && forward(t, g, epA, sport).Target == tA1 {
					left++
				}
			}
			switch {
			case fo == Rebalance && (left != 0 || g.state(tA1) != "absent"):
				t.Fatalf("rebalance: %d flows still on %s (%s) after the delay", left, tA1, g.state(tA1))
			case fo == NoRebalance && (left != onA1 || g.state(tA1) != StateUnused):
				t.Fatalf("no_rebalance: %d of %d flows still on %s (%s) after the delay", left, onA1, tA1, g.state(tA1))
			}
		})
	}
}

func TestIdleTimeout(t *testing.T) {
	g, c := newTestGWLB(t, Config{CrossZone: true})
	d := forward(t, g, epA, 1234)
	c.add(DefaultOtherIdleTimeout - time.Second)
	if again := forward(t, g, epA, 1234); again.Cookie != d.Cookie {
		t.Fatal("a UDP flow idle under 120 s was forgotten")
	}
	c.add(DefaultOtherIdleTimeout + time.Second)
	g.Tick()
	if g.Status().Flows != 0 {
		t.Fatalf("a UDP flow idle over 120 s is still in the table: %d flows", g.Status().Flows)
	}
}

func TestReturnPath(t *testing.T) {
	g, _ := newTestGWLB(t, Config{CrossZone: true})
	d := forward(t, g, epA, 5555)
	h := geneve.Header{Options: geneve.Options{EndpointID: epA.ID, AttachmentID: epA.AttachmentID, FlowCookie: d.Cookie}}
	reply := udpPacket(inet, host, 7, 5555, "pong")
	enc := func(h geneve.Header, p []byte) []byte {
		b, err := geneve.Encap(h, p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ep, inner, err := g.Return(d.Target, enc(h, reply))
	if err != nil || ep != epA.ID || string(inner) != string(reply) {
		t.Fatalf("the flow's reply: endpoint %#x, %v", ep, err)
	}
	other := tA1
	if d.Target == tA1 {
		other = tA2
	}
	wrongEP, wrongCookie := h, h
	wrongEP.Options.EndpointID = epC.ID
	wrongCookie.Options.FlowCookie = d.Cookie + 1
	truncated := enc(h, reply)[:geneve.HeaderLen-3]
	unknownOpt := append([]byte{}, enc(h, reply)...)
	unknownOpt[8+2] = 9 // the first option's type
	for _, tc := range []struct {
		name, reason string
		from         netip.Addr
		payload      []byte
	}{
		{"another target", DropForeignSource, other, enc(h, reply)},
		{"not a target", DropForeignSource, netip.MustParseAddr("10.0.1.99"), enc(h, reply)},
		{"wrong endpoint", DropOptionMismatch, d.Target, enc(wrongEP, reply)},
		{"unknown cookie", DropUnknownFlow, d.Target, enc(wrongCookie, reply)},
		{"truncated", string(geneve.ReasonTruncated), d.Target, truncated},
		{"unknown option", string(geneve.ReasonUnknownOption), d.Target, unknownOpt},
		{"one-arm", DropOneArm, d.Target, enc(h, udpPacket(host, inet, 5555, 7, "ping"))},
		{"another flow's reply", DropTupleMismatch, d.Target, enc(h, udpPacket(inet, host, 7, 5556, "x"))},
		{"bad inner", DropBadInner, d.Target, enc(h, []byte{0x45, 0, 0, 99, 0, 0, 0, 0, 64, 17})},
	} {
		before := g.Status().Drops[tc.reason]
		_, _, err := g.Return(tc.from, tc.payload)
		var de *DropError
		if geneve.ReasonOf(err) == "" && !errors.As(err, &de) {
			t.Fatalf("%s: %v, want a drop", tc.name, err)
		}
		if after := g.Status().Drops[tc.reason]; after != before+1 {
			t.Fatalf("%s: drop counter %s went %d → %d (err %v)", tc.name, tc.reason, before, after, err)
		}
	}
}

func TestConfigDefaultsAndRefusals(t *testing.T) {
	c, err := Config{}.WithDefaults()
	if err != nil {
		t.Fatal(err)
	}
	hc := c.HealthCheck
	if hc.Protocol != CheckTCP || hc.Port != 80 || hc.Interval != 10*time.Second || hc.HealthyThreshold != 3 ||
		hc.UnhealthyThreshold != 3 || c.Stickiness != FiveTuple || c.OnUnhealthy != NoRebalance ||
		c.DeregistrationDelay != 300*time.Second || c.TCPIdleTimeout != 350*time.Second || c.CrossZone {
		t.Fatalf("defaults: %+v", c)
	}
	for _, bad := range []Config{
		{OnUnhealthy: Rebalance},
		{Stickiness: "4-tuple"},
		{HealthCheck: HealthCheck{Protocol: "HTTPS"}},
		{HealthCheck: HealthCheck{Protocol: CheckTCP, Path: "/x"}},
		{HealthCheck: HealthCheck{HealthyThreshold: 1}},
		{HealthCheck: HealthCheck{Interval: time.Second, Timeout: 2 * time.Second}},
	} {
		if _, err := bad.WithDefaults(); err == nil {
			t.Errorf("config %+v accepted", bad)
		}
	}
}

func TestTargetQuota(t *testing.T) {
	g, err := New(Config{}, map[string]netip.Addr{"a": gwA}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	base := netip.MustParseAddr("10.1.0.0")
	for i := range MaxTargetsPerAZ {
		base = base.Next()
		if err := g.Register(base, "a"); err != nil {
			t.Fatalf("target %d: %v", i+1, err)
		}
	}
	if err := g.Register(base.Next(), "a"); err == nil {
		t.Fatalf("target %d in one AZ accepted", MaxTargetsPerAZ+1)
	}
	if err := g.Register(base.Next(), "c"); err != nil {
		t.Fatalf("the first target in another AZ: %v", err)
	}
	if err := g.Register(base, "c"); err == nil {
		t.Fatal("a target registered twice")
	}
}

func TestNoTargetAndFailOpen(t *testing.T) {
	c := &clock{t: time.Now()}
	g, err := New(Config{}, map[string]netip.Addr{"a": gwA}, c.now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.AddEndpoint(epA); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Forward(epA.ID, udpPacket(host, inet, 1, 7, "")); !strings.Contains(fmt.Sprint(err), DropNoTarget) {
		t.Fatalf("no targets: %v", err)
	}
	if _, err := g.Forward(0x99, udpPacket(host, inet, 1, 7, "")); !strings.Contains(fmt.Sprint(err), DropUnknownEndpoint) {
		t.Fatalf("unknown endpoint: %v", err)
	}
	// A target still initial gets flows when none is healthy (fail open).
	if err := g.Register(tA1, "a"); err != nil {
		t.Fatal(err)
	}
	if d, err := g.Forward(epA.ID, udpPacket(host, inet, 1, 7, "")); err != nil || d.Target != tA1 {
		t.Fatalf("fail open: %v %v", d.Target, err)
	}
}

// TestHealthChecks runs the checker against loopback listeners: an HTTP
// server answering 200 on /healthz and 503 elsewhere, and a closed port.
func TestHealthChecks(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	lo := netip.MustParseAddr("127.0.0.1")
	dial := func(ctx context.Context, local netip.Addr, remote netip.AddrPort) (net.Conn, error) {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: local.AsSlice()}}
		return d.DialContext(ctx, "tcp", remote.String())
	}
	for _, tc := range []struct {
		hc   HealthCheck
		want bool
	}{
		{HealthCheck{Protocol: CheckTCP, Port: port}, true},
		{HealthCheck{Protocol: CheckHTTP, Port: port, Path: "/healthz"}, true},
		{HealthCheck{Protocol: CheckHTTP, Port: port, Path: "/other"}, false},
		{HealthCheck{Protocol: CheckTCP, Port: 1}, false},
	} {
		tc.hc.Interval, tc.hc.Timeout = 20*time.Millisecond, 20*time.Millisecond
		g, err := New(Config{HealthCheck: tc.hc}, map[string]netip.Addr{"a": lo}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Register(lo, "a"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		done := make(chan struct{})
		go func() { g.RunHealthChecks(ctx, dial); close(done) }()
		want := StateUnhealthy
		if tc.want {
			want = StateHealthy
		}
		for g.state(lo) != want && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-done
		if st := g.Status().Targets[0]; st.State != want {
			t.Fatalf("%+v: state %s (%s), want %s", tc.hc, st.State, st.LastError, want)
		}
	}
}

func FuzzReturnAndForward(f *testing.F) {
	f.Add(udpPacket(inet, host, 7, 5555, "pong"))
	f.Add([]byte{0x45})
	f.Add(make([]byte, geneve.HeaderLen+20))
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := New(Config{CrossZone: true}, map[string]netip.Addr{"a": gwA}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = g.AddEndpoint(epA)
		_ = g.Register(tA1, "a")
		if d, err := g.Forward(epA.ID, b); err == nil {
			if _, _, err := geneve.Parse(d.Payload); err != nil {
				t.Fatalf("Forward built GENEVE that Parse refuses: %v", err)
			}
		}
		if _, inner, err := g.Return(tA1, b); err == nil && len(inner) == 0 {
			t.Fatal("Return accepted an empty inner packet")
		}
	})
}

// TestRebalanceWaitsForAHealthyTarget: with rebalance, a failed target's
// flows move only to a healthy target; when there is none they stay, and
// move with their next packet once one is healthy again.
func TestRebalanceWaitsForAHealthyTarget(t *testing.T) {
	g, _ := newTestGWLB(t, Config{OnUnhealthy: Rebalance, OnDeregistration: Rebalance})
	_, by := flows(t, g, epA, 60000, 40)
	fail := func(ip netip.Addr, ok bool) {
		for range 3 {
			g.ReportCheck(ip, ok, "test")
		}
	}
	fail(tA2, false)
	fail(tA1, false) // AZ a has no healthy target left
	for _, ts := range g.Status().Targets {
		if ts.IP == tA1 && ts.Flows != 40 {
			t.Fatalf("with no healthy target left %s holds %d of the 40 flows, want all", tA1, ts.Flows)
		}
	}
	for sport := range by {
		if d := forward(t, g, epA, sport); d.Target != tA1 {
			t.Fatalf("with no healthy target flow %d went to %s, want it to stay on %s", sport, d.Target, tA1)
		}
	}
	fail(tA2, true)
	for sport := range by {
		if d := forward(t, g, epA, sport); d.Target != tA2 {
			t.Fatalf("once %s is healthy again flow %d is on %s", tA2, sport, d.Target)
		}
	}
}

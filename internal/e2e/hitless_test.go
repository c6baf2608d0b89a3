package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hanat/hanat/internal/vpcsim"
	"github.com/hanat/hanat/internal/vpcsim/ec2sim"
)

// chargenPattern is what the lab's chargen server repeats.
func chargenPattern() []byte {
	line := make([]byte, 0, 74*95)
	for i := range 95 {
		for j := range 72 {
			line = append(line, byte(' '+(i+j)%95))
		}
		line = append(line, '\r', '\n')
	}
	return line
}

// stream is one long-lived download from a private host, checked byte by
// byte against the server's pattern.
type stream struct {
	mu       sync.Mutex
	conn     net.Conn
	read     int64
	last     time.Time
	worst    time.Duration // longest wait for data
	worstAt  time.Time
	err      error
	corrupt  bool
	finished chan struct{}
}

func (s *stream) run(pattern []byte) {
	defer close(s.finished)
	buf := make([]byte, 32<<10)
	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := s.conn.Read(buf)
		now := time.Now()
		s.mu.Lock()
		if n > 0 {
			for i := range n {
				if buf[i] != pattern[(s.read+int64(i))%int64(len(pattern))] {
					s.corrupt = true
					break
				}
			}
			s.read += int64(n)
			if gap := now.Sub(s.last); gap > s.worst {
				s.worst, s.worstAt = gap, now
			}
			s.last = now
		}
		if err != nil {
			s.err = err
		}
		done := err != nil || s.corrupt
		s.mu.Unlock()
		if done {
			return
		}
		// Pace the download so the flows stay long-lived but light.
		time.Sleep(20 * time.Millisecond)
	}
}

// worstSince is the longest wait for data since t (including the wait
// going on now).
func (s *stream) worstSince(t time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := time.Duration(0)
	if s.worstAt.After(t) {
		w = s.worst
	}
	if cur := time.Since(s.last); cur > w {
		w = cur
	}
	return w
}

// TestHitlessCrashFailover: with the pair configured only with its peer
// and key, the state sync (ha.sync, on by default) and the zones' EIPs
// (found in EC2, no ha.eips) make established connections from app-a
// survive every failover: nat-c injects nat-a's synced flows, moves
// nat-a's EIP to its standby address and then the route, and every
// stream continues byte-exact, the server seeing the same public
// IP:port (a changed address or a missing conntrack entry would reset
// or stall them). The events: a crash, the failback, hanatctl failover
// and takeover, a planned stop (handover) and the failback, maintenance
// on and off, and a crash with 30 % of EC2 calls throttled.
func TestHitlessCrashFailover(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the HA lab needs root (network namespaces)")
	}
	p := setupHAPair(t, "")
	allocA := p.lab.EIPAllocationID(p.lab.Instance("nat-a").PublicIP)
	allocC := p.lab.EIPAllocationID(p.lab.Instance("nat-c").PublicIP)
	if allocA == "" || allocC == "" {
		t.Fatalf("no allocation ids for the NATs' EIPs (%q, %q)", allocA, allocC)
	}
	p.waitEIPsFound(t, 30*time.Second, map[string]string{allocA: p.rtbA, allocC: p.rtbC})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	syncUp := func(what string, ok func(a, c syncView) bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		var a, c syncView
		for time.Now().Before(deadline) {
			a, c = p.syncOf(ctx, t, "nat-a"), p.syncOf(ctx, t, "nat-c")
			if ok(a, c) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("%s: not within 30s; nat-a %+v, nat-c %+v", what, a, c)
	}
	syncUp("the sync connected both ways", func(a, c syncView) bool {
		return a.Enabled && c.Enabled && a.SentConnected && c.HeldConnected && c.Standby != ""
	})

	const n = 20
	pattern := chargenPattern()
	chargen := p.lab.Internet().ChargenAddr.String()
	var streams []*stream
	for i := range n {
		c, err := p.lab.Dial(ctx, "app-a", "tcp4", chargen)
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		s := &stream{conn: c, last: time.Now(), finished: make(chan struct{})}
		streams = append(streams, s)
		go s.run(pattern)
	}
	udp := startUDPFlow(ctx, t, p, "app-a")
	// What the servers see: every stream and the UDP flow from nat-a's
	// EIP, one public IP:port each, for good.
	publicA := p.lab.Instance("nat-a").PublicIP
	var sources sourcesSeen
	sources.first(ctx, t, p, publicA, n)
	defer func() {
		for _, s := range streams {
			s.conn.Close()
			<-s.finished
		}
		udp.stop()
	}()

	// Each event: the flows are held by the node about to take them, the
	// event, the routes where they should be, then no stream ends and the
	// worst wait for data is within the bound.
	held := func(what, taker string) {
		t.Helper()
		syncUp(taker+" holds app-a's flows before "+what, func(va, vc syncView) bool {
			v := va
			if taker == "nat-c" {
				v = vc
			}
			return v.HeldConnected && v.HeldFlows >= n+1
		})
	}
	// startsTaker: do starts the taking node (a failback), which must
	// hold the flows before it takes its tables back; else they are held
	// before the event.
	event := func(what, taker string, bound time.Duration, do func() time.Time, a, c string, startsTaker bool) {
		t.Helper()
		var at time.Time
		if startsTaker {
			at = do()
			held(what, taker)
		} else {
			held(what, taker)
			at = do()
		}
		p.waitRoutes(t, what, 45*time.Second, a, c)
		time.Sleep(3 * time.Second)
		var worst time.Duration
		for i, s := range streams {
			s.mu.Lock()
			err, corrupt, read := s.err, s.corrupt, s.read
			s.mu.Unlock()
			worst = max(worst, s.worstSince(at))
			if err != nil || corrupt {
				t.Fatalf("%s: stream %d ended after %d bytes: err %v, corrupt %v", what, i, read, err, corrupt)
			}
		}
		uw, uerr := udp.worstSince(at)
		if uerr != nil {
			t.Fatalf("%s: the UDP flow: %v", what, uerr)
		}
		sources.same(t, p, what)
		v := p.syncOf(ctx, t, taker)
		t.Logf("HITLESS %s: worst TCP stall %v over %d streams, UDP %v; %s's takeover %s", what,
			worst.Round(time.Millisecond), n, uw.Round(time.Millisecond), taker, v.LastTakeover)
		// Injected or already there (an earlier takeover's entries).
		if v.TakeoverAt.Before(at) || v.Injected < n {
			t.Errorf("%s: %s's last takeover (at %v) put %d flows in the kernel, want at least %d after the event", what, taker, v.TakeoverAt, v.Injected, n)
		}
		// The targets are reported, not gated (a loaded CI machine slows
		// the lab's EC2 calls); a stall past hitlessCeiling is a broken
		// takeover, whatever the load.
		w := max(worst, uw)
		t.Logf("HITLESS-TARGET %s: %v against a target of %v: met=%v", what, w.Round(time.Millisecond), bound, w <= bound)
		if w > bound {
			// Where the time went: the taker's HA and sync log since the event.
			t.Logf("HITLESS-MISS %s: %s's log since the event:\n%s", what, taker, logSince(p.nodes[taker].proc.Output(), at))
		}
		if w > hitlessCeiling {
			t.Errorf("%s: worst stall %v, beyond %v", what, w, hitlessCeiling)
		}
	}
	event("crash of nat-a", "nat-c", haCrashBound, func() time.Time { return p.stopNAT(t, "nat-a", true, false) }, p.eniC, p.eniC, false)
	// hanatctl status says where each EIP is: nat-c's own on its primary
	// IP, nat-a's on nat-c's standby address.
	if st, err := p.nodes["nat-c"].client.Status(ctx); err != nil || st.HA == nil || st.HA.Sync == nil {
		t.Errorf("nat-c's status: %v", err)
	} else {
		on := map[string]string{}
		for _, e := range st.HA.EIPs {
			on[e.AllocationID] = e.ENI + " " + e.Address
		}
		primary := p.lab.Instance("nat-c").PrivateIP.String()
		if on[allocA] != p.eniC+" "+st.HA.Sync.Standby || on[allocC] != p.eniC+" "+primary {
			t.Errorf("nat-c's status after the crash: EIPs on %v, want %s on %s %s and %s on %s %s", on,
				allocA, p.eniC, st.HA.Sync.Standby, allocC, p.eniC, primary)
		}
	}
	event("nat-a's return and failback", "nat-a", hitlessPlannedBound, func() time.Time {
		at := time.Now()
		p.startNAT(t, "nat-a")
		return at
	}, p.eniA, p.eniC, true)
	event("hanatctl failover on nat-a", "nat-c", hitlessPlannedBound, func() time.Time {
		at := time.Now()
		if out, err := runCtl(p.nodes["nat-a"].socket, "failover"); err != nil {
			t.Fatalf("hanatctl failover: %v\n%s", err, out)
		}
		return at
	}, p.eniC, p.eniC, false)
	event("hanatctl takeover on nat-a", "nat-a", hitlessPlannedBound, func() time.Time {
		at := time.Now()
		if out, err := runCtl(p.nodes["nat-a"].socket, "takeover", "--table", p.rtbA); err != nil {
			t.Fatalf("hanatctl takeover: %v\n%s", err, out)
		}
		return at
	}, p.eniA, p.eniC, false)
	event("planned stop of nat-a (handover)", "nat-c", hitlessPlannedBound, func() time.Time { return p.stopNAT(t, "nat-a", false, false) }, p.eniC, p.eniC, false)
	event("nat-a's start after the stop and failback", "nat-a", hitlessPlannedBound, func() time.Time {
		at := time.Now()
		p.startNAT(t, "nat-a")
		return at
	}, p.eniA, p.eniC, true)
	maintenance := func(on string) func() time.Time {
		return func() time.Time {
			at := time.Now()
			if out, err := runCtl(p.nodes["nat-a"].socket, "maintenance", on); err != nil {
				t.Fatalf("hanatctl maintenance %s: %v\n%s", on, err, out)
			}
			return at
		}
	}
	event("maintenance on on nat-a", "nat-c", hitlessPlannedBound, maintenance("on"), p.eniC, p.eniC, false)
	event("maintenance off on nat-a", "nat-a", hitlessPlannedBound, maintenance("off"), p.eniA, p.eniC, false)
	p.lab.SetAPIFaults(ec2sim.Faults{Latency: haAPILatency, ThrottleRate: 0.3, Seed: 7})
	defer p.lab.SetAPIFaults(ec2sim.Faults{Latency: haAPILatency})
	event("crash of nat-a, 30% of EC2 calls throttled", "nat-c", hitlessThrottledBound, func() time.Time { return p.stopNAT(t, "nat-a", true, false) }, p.eniC, p.eniC, false)
}

// logSince is the HA, EC2 and sync lines of a hanatd log (slog text, time=
// first) written at or after at.
func logSince(out string, at time.Time) string {
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		ts, _, ok := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		if !ok {
			continue
		}
		when, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || when.Before(at) {
			continue
		}
		if strings.Contains(line, "component=ha") || strings.Contains(line, "component=ec2") || strings.Contains(line, "component=sync") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// hitlessThrottledBound is the target stall of a crash while 30 % of the
// EC2 calls are throttled.
const hitlessThrottledBound = 3 * time.Second

// sourcesSeen are the public sources the internet's servers see of the
// workload: the streams' (chargen) and the UDP flow's.
type sourcesSeen struct {
	chargen []netip.AddrPort
	udp     netip.AddrPort
	udpKeys int // UDP sources the echo server had seen, the flow's included
}

// first waits until the servers see the n streams and the UDP flow, all
// from public, and records them.
func (s *sourcesSeen) first(ctx context.Context, t *testing.T, p *haPair, public netip.Addr, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var got vpcsim.ServerSources
	for time.Now().Before(deadline) && ctx.Err() == nil {
		got = p.lab.ServerSources()
		var from []netip.AddrPort
		for _, ap := range got.Chargen {
			if ap.Addr() == public {
				from = append(from, ap)
			}
		}
		var udp []netip.AddrPort
		for ap := range got.UDPEcho {
			if ap.Addr() == public {
				udp = append(udp, ap)
			}
		}
		if len(from) == n && len(udp) == 1 {
			s.chargen, s.udp, s.udpKeys = from, udp[0], len(got.UDPEcho)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the servers do not see %d streams and a UDP flow from %s: %+v", n, public, got)
}

// same fails the test unless the servers still see every stream from the
// public IP:port it had, and the UDP flow from no other source.
func (s *sourcesSeen) same(t *testing.T, p *haPair, what string) {
	t.Helper()
	got := p.lab.ServerSources()
	for _, ap := range s.chargen {
		if !slices.Contains(got.Chargen, ap) {
			t.Errorf("%s: the chargen server no longer has the connection from %s (open: %v)", what, ap, got.Chargen)
		}
	}
	if len(got.UDPEcho) != s.udpKeys || got.UDPEcho[s.udp] == 0 {
		t.Errorf("%s: the UDP echo server saw new sources: %v, the flow's was %s", what, got.UDPEcho, s.udp)
	}
}

// waitEIPsFound waits until both nodes' status shows the zones' EIPs,
// discovered, following their route tables (allocation id → table).
func (p *haPair) waitEIPsFound(t *testing.T, within time.Duration, want map[string]string) {
	t.Helper()
	deadline := time.Now().Add(within)
	var last string
	for time.Now().Before(deadline) {
		ok := true
		for _, name := range []string{"nat-a", "nat-c"} {
			st, err := p.nodes[name].client.Status(context.Background())
			if err != nil || st.HA == nil {
				ok, last = false, fmt.Sprintf("%s: %v", name, err)
				break
			}
			found := 0
			for _, e := range st.HA.EIPs {
				if tbl, known := want[e.AllocationID]; known && slices.Contains(e.RouteTables, tbl) {
					found++
				}
			}
			if found != len(want) {
				ok, last = false, fmt.Sprintf("%s: EIPs %+v", name, st.HA.EIPs)
				break
			}
		}
		if ok {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("the zones' EIPs were not discovered within %v: %s", within, last)
}

// hitlessPlannedBound is the target stall of a planned handover or
// failback: the takeover and the EIP move before the routes, and the
// giving node forwards until the routes moved.
const hitlessPlannedBound = 300 * time.Millisecond

// hitlessCeiling fails the test: without the takeover the streams stall
// for the whole observation window (7 s and more).
const hitlessCeiling = 5 * time.Second

// udpFlow sends a datagram to the lab's UDP echo server every 20 ms from
// one socket (one flow) and records the longest wait for an echo.
type udpFlow struct {
	mu     sync.Mutex
	conn   net.Conn
	last   time.Time
	gaps   []gapAt
	err    error
	cancel context.CancelFunc
	done   chan struct{}
}

type gapAt struct {
	at  time.Time
	gap time.Duration
}

func startUDPFlow(ctx context.Context, t *testing.T, p *haPair, from string) *udpFlow {
	t.Helper()
	c, err := p.lab.Dial(ctx, from, "udp4", p.lab.Internet().UDPEchoAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	u := &udpFlow{conn: c, last: time.Now(), cancel: cancel, done: make(chan struct{})}
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for ctx.Err() == nil {
			<-tick.C
			_, _ = c.Write([]byte("hanat hitless"))
		}
	}()
	go func() {
		defer close(u.done)
		buf := make([]byte, 64)
		for ctx.Err() == nil {
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			_, err := c.Read(buf)
			now := time.Now()
			u.mu.Lock()
			if err == nil {
				u.gaps = append(u.gaps, gapAt{now, now.Sub(u.last)})
				u.last = now
			} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				if ctx.Err() == nil {
					u.err = err
				}
			}
			u.mu.Unlock()
		}
	}()
	return u
}

func (u *udpFlow) worstSince(t time.Time) (time.Duration, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	var w time.Duration
	for _, g := range u.gaps {
		if g.at.After(t) {
			w = max(w, g.gap)
		}
	}
	return max(w, time.Since(u.last)), u.err
}

func (u *udpFlow) stop() {
	u.cancel()
	u.conn.Close()
	<-u.done
}

// syncView is what a node's status says of its state sync.
type syncView struct {
	Enabled, SentConnected, HeldConnected bool
	Standby                               string
	HeldFlows, Injected                   int
	LastTakeover                          string
	TakeoverAt                            time.Time
}

func (p *haPair) syncOf(ctx context.Context, t *testing.T, name string) syncView {
	t.Helper()
	n := p.nodes[name]
	if n == nil {
		return syncView{}
	}
	st, err := n.client.Status(ctx)
	if err != nil || st.HA == nil || st.HA.Sync == nil {
		return syncView{}
	}
	s := st.HA.Sync
	v := syncView{Enabled: s.Enabled, SentConnected: s.Sent.Connected, HeldConnected: s.Held.Connected, Standby: s.Standby, HeldFlows: s.Held.Flows}
	if lt := s.LastTakeover; lt != nil {
		v.Injected, v.TakeoverAt = lt.Injected+lt.Existed, lt.At
		v.LastTakeover = fmt.Sprintf("%+v", *lt)
	}
	return v
}

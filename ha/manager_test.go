package ha

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeCloud struct {
	mu        sync.Mutex
	calls     []string // "route rtb-…", "eip eipalloc-…", in order
	routes    map[string]string
	eips      map[string]string // allocation → ENI
	onStandby map[string]bool   // allocation → on its ENI's standby address
	writes    int
	fallbacks int
	fail      bool
}

var errThrottled = errors.New("RequestLimitExceeded")

func (c *fakeCloud) DefaultRoutes(ctx context.Context, ids []string) (map[string]Observation, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail {
		return nil, errThrottled
	}
	out := map[string]Observation{}
	for _, id := range ids {
		out[id] = Observation{Target: c.routes[id]}
	}
	return out, nil
}

func (c *fakeCloud) EnsureDefaultRoute(ctx context.Context, id, eni string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail {
		return false, errThrottled
	}
	if c.routes[id] == eni {
		return false, nil
	}
	c.routes[id] = eni
	c.writes++
	c.calls = append(c.calls, "route "+id)
	return true, nil
}

// SetDefaultRoute: a wrong belief about the route costs the other call.
func (c *fakeCloud) SetDefaultRoute(ctx context.Context, id, eni string, exists bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail {
		return errThrottled
	}
	if exists != (c.routes[id] != "") {
		c.fallbacks++
	}
	c.routes[id] = eni
	c.writes++
	c.calls = append(c.calls, "route "+id)
	return nil
}

func (c *fakeCloud) EIPOn(ctx context.Context, alloc, eni string, home bool) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.eips[alloc] == eni && c.onStandby[alloc] == !home, nil
}

func (c *fakeCloud) AssociateEIP(ctx context.Context, alloc, eni string, home bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.eips[alloc] = eni
	if c.onStandby == nil {
		c.onStandby = map[string]bool{}
	}
	c.onStandby[alloc] = !home
	c.calls = append(c.calls, "eip "+alloc)
	return nil
}

func (c *fakeCloud) IsThrottled(err error) bool { return errors.Is(err, errThrottled) }

func (c *fakeCloud) get(id string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.routes[id]
}

func freeUDPPort(t *testing.T) uint16 {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return uint16(c.LocalAddr().(*net.UDPAddr).Port)
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Two managers over UDP on loopback with a fake cloud: the survivor takes
// the dead node's table and its EIP; the restarted node gets its table
// back by handshake after the hold-down.
func TestManagersOverLoopback(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	pa, pc := freeUDPPort(t), freeUDPPort(t)
	fc := &fakeCloud{routes: map[string]string{"rtb-a": "eni-a", "rtb-c": "eni-c"}, eips: map[string]string{"eipalloc-a": "eni-a"}}
	key := []byte("0123456789abcdef0123")
	opts := func(id, eni string, self, peer uint16, home string) Options {
		return Options{NodeID: id, ENI: func() string { return eni }, Listen: netip.AddrPortFrom(lo, self),
			Peer: netip.AddrPortFrom(lo, peer), Key: key, Interval: 50 * time.Millisecond, DeadAfter: 4,
			Preempt: true, HoldDown: 300 * time.Millisecond, Home: []string{home}, Resync: 100 * time.Millisecond,
			EIPs: []EIPGroup{{AllocationID: "eipalloc-a", RouteTables: []string{"rtb-a"}}}}
	}
	start := func(o Options) (*Manager, context.CancelFunc, chan error) {
		m, err := New(slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", o.NodeID), fc, o)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		return m, cancel, done
	}
	a, stopA, doneA := start(opts("i-a", "eni-a", pa, pc, "rtb-a"))
	c, stopC, doneC := start(opts("i-c", "eni-c", pc, pa, "rtb-c"))
	defer func() { stopC(); <-doneC }()

	waitFor(t, "both see the peer", 5*time.Second, func() bool {
		return a.Status().Peer.State == "alive" && c.Status().Peer.State == "alive"
	})
	waitFor(t, "each claims its home", 5*time.Second, func() bool {
		sa, sc := a.Status(), c.Status()
		return len(sa.Tables) == 2 && len(sc.Tables) == 2 && sa.Tables[0].Claim == "held" && sc.Tables[1].Claim == "held"
	})

	stopA()
	<-doneA
	waitFor(t, "rtb-a fails over to i-c", 5*time.Second, func() bool { return fc.get("rtb-a") == "eni-c" })
	waitFor(t, "the EIP follows rtb-a", 5*time.Second, func() bool {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		return fc.eips["eipalloc-a"] == "eni-c"
	})
	st := c.Status()
	if st.Peer.State != "dead" || st.Counters.RouteWrites != 1 || st.Counters.EIPAssociations != 1 {
		t.Errorf("after failover: peer %s, writes %d, eip moves %d", st.Peer.State, st.Counters.RouteWrites, st.Counters.EIPAssociations)
	}

	// Throttled API: the restarted node waits, then gets rtb-a back once
	// the hold-down has passed and the peer released it.
	a, stopA, doneA = start(opts("i-a", "eni-a", pa, pc, "rtb-a"))
	defer func() { stopA(); <-doneA }()
	waitFor(t, "rtb-a returns to i-a", 5*time.Second, func() bool { return fc.get("rtb-a") == "eni-a" })
	waitFor(t, "the EIP returns", 5*time.Second, func() bool {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		return fc.eips["eipalloc-a"] == "eni-a"
	})
	for _, tb := range a.Status().Tables {
		if tb.ID == "rtb-a" && tb.Last.Reason.String() == "" {
			t.Errorf("rtb-a returned without a reason")
		}
	}
	if got := fc.get("rtb-c"); got != "eni-c" {
		t.Errorf("rtb-c moved to %s", got)
	}

	// Operator failover and takeover through the managers.
	if _, err := a.Failover(nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "failover moves rtb-a to i-c", 5*time.Second, func() bool {
		if fc.get("rtb-a") == "eni-c" {
			return true
		}
		t.Logf("a: %+v\nc: %+v", a.Status().Tables, c.Status().Tables)
		return false
	})
	if _, err := a.Takeover([]string{"rtb-a"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "takeover brings rtb-a back", 5*time.Second, func() bool { return fc.get("rtb-a") == "eni-a" })
	c.SetMaintenance(true)
	waitFor(t, "maintenance hands rtb-c to i-a", 5*time.Second, func() bool { return fc.get("rtb-c") == "eni-a" })
	if _, err := a.Takeover([]string{"rtb-nope"}); err == nil {
		t.Error("takeover of an unknown table accepted")
	}
}

// runManager runs m until the test ends.
func runManager(t *testing.T, m *Manager) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestManagerSingleInstance(t *testing.T) {
	fc := &fakeCloud{routes: map[string]string{"rtb-a": ""}, eips: map[string]string{}}
	m, err := New(nil, fc, Options{NodeID: "i-a", ENI: func() string { return "eni-a" }, Resync: 50 * time.Millisecond,
		Discover: func(ctx context.Context, eni, peerENI string) (Discovered, error) {
			return Discovered{Home: []string{"rtb-a"}}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	runManager(t, m)
	waitFor(t, "a lone node creates its default route", 5*time.Second, func() bool { return fc.get("rtb-a") == "eni-a" })
	if st := m.Status(); st.Peer.State != "none" || st.Tables[0].Last.Reason.String() == "" {
		t.Errorf("status %+v", st)
	}
	if _, err := New(nil, fc, Options{NodeID: "i-a", Peer: netip.MustParseAddrPort("127.0.0.1:1")}); err == nil {
		t.Error("a peer without a key accepted")
	}
}

// A node starting while its peer is down takes the peer's tables that
// discovery found (nothing configured as backup, no heartbeat to learn
// them from).
func TestManagerDiscoveredBackupWithPeerDown(t *testing.T) {
	fc := &fakeCloud{routes: map[string]string{"rtb-a": "eni-a", "rtb-c": "eni-c"}, eips: map[string]string{}}
	lo := netip.MustParseAddr("127.0.0.1")
	m, err := New(nil, fc, Options{NodeID: "i-a", ENI: func() string { return "eni-a" }, Resync: 50 * time.Millisecond,
		Listen: netip.AddrPortFrom(lo, freeUDPPort(t)), Peer: netip.AddrPortFrom(lo, freeUDPPort(t)),
		Key: []byte("0123456789abcdef0123"), Interval: 50 * time.Millisecond, DeadAfter: 4,
		Discover: func(ctx context.Context, eni, peerENI string) (Discovered, error) {
			return Discovered{Home: []string{"rtb-a"}, Backup: []string{"rtb-c"}}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	runManager(t, m)
	waitFor(t, "the discovered backup table is taken", 5*time.Second, func() bool { return fc.get("rtb-c") == "eni-a" })
	st := m.Status()
	for _, tb := range st.Tables {
		if tb.ID == "rtb-c" && (tb.Home || !strings.Contains(tb.Last.Reason.String(), "no heartbeat from the peer")) {
			t.Errorf("rtb-c: home=%v reason %q", tb.Home, tb.Last.Reason)
		}
	}
}

// A Manager built long before it runs, before its ENI is known (hanatd
// builds it before the first reconcile binds the outside ENI): Run reads
// the ENI again, so the first discovery finds the tables without waiting
// for a resync, and the start grace for the peer's first heartbeat counts
// from Run, so a node whose peer is down takes nothing before it ends.
func TestManagerBuiltBeforeItRuns(t *testing.T) {
	fc := &fakeCloud{routes: map[string]string{"rtb-a": "", "rtb-c": "eni-c"}, eips: map[string]string{}}
	lo := netip.MustParseAddr("127.0.0.1")
	var eni atomic.Value
	eni.Store("")
	var skew atomic.Int64 // the clock of New: an hour ago
	skew.Store(int64(-time.Hour))
	const grace = 5 * 100 * time.Millisecond // DeadAfter × Interval
	m, err := New(nil, fc, Options{NodeID: "i-a", ENI: func() string { return eni.Load().(string) },
		Now:    func() time.Time { return time.Now().Add(time.Duration(skew.Load())) },
		Resync: time.Hour, Listen: netip.AddrPortFrom(lo, freeUDPPort(t)), Peer: netip.AddrPortFrom(lo, freeUDPPort(t)),
		Key: []byte("0123456789abcdef0123"), Interval: 100 * time.Millisecond, DeadAfter: 5,
		Discover: func(ctx context.Context, eni, peerENI string) (Discovered, error) {
			return Discovered{Home: []string{"rtb-a"}, Backup: []string{"rtb-c"}}, nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	eni.Store("eni-a")
	skew.Store(0)
	start := time.Now()
	runManager(t, m)
	waitFor(t, "home and backup tables taken once the grace is over", 5*time.Second, func() bool {
		return fc.get("rtb-a") == "eni-a" && fc.get("rtb-c") == "eni-a"
	})
	if took := time.Since(start); took < grace*4/5 {
		t.Errorf("tables taken %v after Run, before the start grace of %v ended", took, grace)
	}
}

// A correctly keyed heartbeat that claims to be the peer but comes from
// another address is dropped and counted as unexpected_source: it never
// reaches the engine (the peer stays unheard, nothing is accepted). The
// same frames from the peer's address are accepted, so the source
// address is the only thing that kept them out.
func TestManagerDropsHeartbeatFromNonPeerAddress(t *testing.T) {
	peerAddr, foreignAddr := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.3")
	key := []byte("0123456789abcdef0123")
	fc := &fakeCloud{routes: map[string]string{"rtb-a": "eni-a", "rtb-c": "eni-c"}, eips: map[string]string{}}
	listen := netip.AddrPortFrom(peerAddr, freeUDPPort(t))
	m, err := New(nil, fc, Options{NodeID: "i-c", ENI: func() string { return "eni-c" }, Listen: listen,
		Peer: netip.AddrPortFrom(peerAddr, freeUDPPort(t)), Key: key, Interval: 50 * time.Millisecond, DeadAfter: 4,
		Home: []string{"rtb-c"}, Resync: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runManager(t, m)
	waitFor(t, "the node claims its home table", 5*time.Second, func() bool {
		for _, tb := range m.Status().Tables {
			if tb.ID == "rtb-c" && tb.Claim == "held" {
				return true
			}
		}
		return false
	})
	before := m.Status()

	// The peer's node id and ENI, signed with the shared key, asking for
	// the node's home table: accepted, it would make the peer alive.
	seq := uint64(0)
	frame := func() []byte {
		seq++
		b, err := (&Message{NodeID: "i-a", ENI: "eni-a", Epoch: 1, Seq: seq, Time: time.Now(), Healthy: true,
			Home: []string{"rtb-a"}, Owned: []string{"rtb-a"}, Wanted: []string{"rtb-c"}}).Marshal(key)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	send := func(from netip.Addr, frames int) {
		t.Helper()
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0)))
		if err != nil {
			t.Fatalf("bind a sender on %s: %v", from, err)
		}
		defer c.Close()
		for range frames {
			if _, err := c.WriteToUDPAddrPort(frame(), listen); err != nil {
				t.Fatalf("send a heartbeat from %s: %v", from, err)
			}
		}
	}
	const frames = 5
	send(foreignAddr, frames)
	waitFor(t, "heartbeats from a non-peer address counted as unexpected_source", 5*time.Second, func() bool {
		return m.Status().Received.Dropped[DropForeign] == frames
	})
	time.Sleep(200 * time.Millisecond) // a few ticks and reconciles
	st := m.Status()
	if st.Received.Accepted != 0 || st.Peer.State != before.Peer.State || st.Peer.NodeID != "" {
		t.Errorf("after %d frames from %s: accepted %d, peer %q state %q (was %q), want none accepted and the peer unchanged",
			frames, foreignAddr, st.Received.Accepted, st.Peer.NodeID, st.Peer.State, before.Peer.State)
	}
	for id, want := range map[string]string{"rtb-a": "eni-a", "rtb-c": "eni-c"} {
		if got := fc.get(id); got != want {
			t.Errorf("%s points at %s after frames from a non-peer address, want %s", id, got, want)
		}
	}
	tables := func(s Status) map[string]string {
		out := map[string]string{}
		for _, tb := range s.Tables {
			out[tb.ID] = tb.Claim + " (" + tb.Last.Reason.String() + ")"
		}
		return out
	}
	if got, want := tables(st), tables(before); !maps.Equal(got, want) {
		t.Errorf("tables changed after frames from a non-peer address: %v, were %v", got, want)
	}
	for k, v := range st.Received.Dropped {
		if k != DropForeign && v != 0 {
			t.Errorf("dropped as %s: %d (the frames are well formed and keyed)", k, v)
		}
	}

	// The control: the same frames from the peer's address are accepted.
	send(peerAddr, 1)
	waitFor(t, "a heartbeat from the peer's address accepted", 5*time.Second, func() bool {
		st := m.Status()
		return st.Received.Accepted == 1 && st.Peer.State == "alive"
	})
	if got := m.Status().Received.Dropped[DropForeign]; got != frames {
		t.Errorf("unexpected_source drops %d after a frame from the peer, want still %d", got, frames)
	}
}

// TestManagerTakeoverOrder: a node about to point tables at itself runs
// the takeover hook first (hanatd injects the synced flows), then moves
// the EIP, then the routes; a failing hook is counted and the routes
// move anyway.
func TestManagerTakeoverOrder(t *testing.T) {
	for _, fail := range []bool{false, true} {
		fc := &fakeCloud{routes: map[string]string{"rtb-a": ""}, eips: map[string]string{}}
		var mu sync.Mutex
		var took [][]string
		m, err := New(nil, fc, Options{NodeID: "i-a", ENI: func() string { return "eni-a" }, Resync: 50 * time.Millisecond,
			Home: []string{"rtb-a"}, EIPs: []EIPGroup{{AllocationID: "eipalloc-a", RouteTables: []string{"rtb-a"}}},
			Takeover: func(ctx context.Context, tables []string) error {
				fc.mu.Lock()
				fc.calls = append(fc.calls, "takeover")
				fc.mu.Unlock()
				mu.Lock()
				took = append(took, tables)
				mu.Unlock()
				if _, ok := ctx.Deadline(); !ok {
					t.Error("takeover without a deadline")
				}
				if fail {
					return errors.New("inject failed")
				}
				return nil
			}})
		if err != nil {
			t.Fatal(err)
		}
		runManager(t, m)
		waitFor(t, "the home table points here", 5*time.Second, func() bool { return fc.get("rtb-a") == "eni-a" })
		fc.mu.Lock()
		calls := strings.Join(fc.calls, ", ")
		fc.mu.Unlock()
		if !strings.HasPrefix(calls, "takeover, eip eipalloc-a, route rtb-a") {
			t.Errorf("fail=%v: calls %q, want the takeover, then the EIP, then the route", fail, calls)
		}
		mu.Lock()
		if len(took) == 0 || len(took[0]) != 1 || took[0][0] != "rtb-a" {
			t.Errorf("fail=%v: takeover got %v", fail, took)
		}
		mu.Unlock()
		if n := m.Status().Counters.TakeoverErrors; (n > 0) != fail {
			t.Errorf("fail=%v: takeover_errors %d", fail, n)
		}
	}
}

// TestManagerEIPsWithStandby: with a standby address a node serving its
// peer's zone holds both EIPs, its own on its primary address and the
// peer's on the standby one; without, the first group wins the primary.
func TestManagerEIPsWithStandby(t *testing.T) {
	for _, standby := range []bool{true, false} {
		fc := &fakeCloud{routes: map[string]string{"rtb-a": "eni-a", "rtb-c": ""}, eips: map[string]string{}}
		lo := netip.MustParseAddr("127.0.0.1")
		m, err := New(nil, fc, Options{NodeID: "i-c", ENI: func() string { return "eni-c" }, Resync: 50 * time.Millisecond,
			Listen: netip.AddrPortFrom(lo, freeUDPPort(t)), Peer: netip.AddrPortFrom(lo, freeUDPPort(t)),
			Key: []byte("0123456789abcdef0123"), Interval: 50 * time.Millisecond, DeadAfter: 4,
			Home: []string{"rtb-c"}, Standby: standby,
			Discover: func(ctx context.Context, eni, peerENI string) (Discovered, error) {
				return Discovered{Home: []string{"rtb-c"}, Backup: []string{"rtb-a"}}, nil
			},
			EIPs: []EIPGroup{{AllocationID: "eipalloc-a", RouteTables: []string{"rtb-a"}}, {AllocationID: "eipalloc-c", RouteTables: []string{"rtb-c"}}}})
		if err != nil {
			t.Fatal(err)
		}
		takeBothTables(t, fc, m, func() bool {
			if standby {
				return fc.eips["eipalloc-a"] == "eni-c" && fc.onStandby["eipalloc-a"] && fc.eips["eipalloc-c"] == "eni-c" && !fc.onStandby["eipalloc-c"]
			}
			return fc.eips["eipalloc-a"] == "eni-c" && !fc.onStandby["eipalloc-a"] && fc.eips["eipalloc-c"] == ""
		})
	}
}

// takeBothTables runs node c (whose peer never answers) until it serves
// rtb-a and rtb-c and settled() holds for the EIPs (fc.mu held).
func takeBothTables(t *testing.T, fc *fakeCloud, m *Manager, settled func() bool) {
	t.Helper()
	runManager(t, m)
	waitFor(t, "both tables point here (the peer never answers)", 5*time.Second, func() bool {
		return fc.get("rtb-a") == "eni-c" && fc.get("rtb-c") == "eni-c"
	})
	waitFor(t, "the EIPs settle", 5*time.Second, func() bool {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		return settled()
	})
}

// TestManagerDiscoveredEIPs: with no EIPs configured, the zones' EIPs
// discovery finds follow the home and the backup tables (the home one on
// the primary address, the peer's on the standby one), and the status
// says so; configured EIPs win over discovered ones.
func TestManagerDiscoveredEIPs(t *testing.T) {
	for _, configured := range []bool{false, true} {
		fc := &fakeCloud{routes: map[string]string{"rtb-a": "eni-a", "rtb-c": ""}, eips: map[string]string{}}
		lo := netip.MustParseAddr("127.0.0.1")
		o := Options{NodeID: "i-c", ENI: func() string { return "eni-c" }, Resync: 50 * time.Millisecond,
			Listen: netip.AddrPortFrom(lo, freeUDPPort(t)), Peer: netip.AddrPortFrom(lo, freeUDPPort(t)),
			Key: []byte("0123456789abcdef0123"), Interval: 50 * time.Millisecond, DeadAfter: 4, Standby: true,
			Discover: func(ctx context.Context, eni, peerENI string) (Discovered, error) {
				return Discovered{Home: []string{"rtb-c"}, Backup: []string{"rtb-a"}}, nil
			},
			DiscoverEIPs: func(ctx context.Context, eni, peerENI string) (string, string, error) {
				return "eipalloc-c", "eipalloc-a", nil
			}}
		want := map[string][]string{"eipalloc-a": {"rtb-a"}, "eipalloc-c": {"rtb-c"}}
		if configured {
			o.EIPs = []EIPGroup{{AllocationID: "eipalloc-x", RouteTables: []string{"rtb-c"}}}
			want = map[string][]string{"eipalloc-x": {"rtb-c"}}
		}
		m, err := New(nil, fc, o)
		if err != nil {
			t.Fatal(err)
		}
		takeBothTables(t, fc, m, func() bool {
			if configured {
				return fc.eips["eipalloc-x"] == "eni-c" && fc.eips["eipalloc-a"] == "" && fc.eips["eipalloc-c"] == ""
			}
			return fc.eips["eipalloc-a"] == "eni-c" && fc.onStandby["eipalloc-a"] && fc.eips["eipalloc-c"] == "eni-c" && !fc.onStandby["eipalloc-c"]
		})
		got := map[string][]string{}
		for _, e := range m.Status().EIPs {
			got[e.AllocationID] = e.RouteTables
			if e.ENI != "eni-c" {
				t.Errorf("configured=%v: status says %s is on %q", configured, e.AllocationID, e.ENI)
			}
			if want := e.AllocationID != "eipalloc-a"; e.Primary != want {
				t.Errorf("configured=%v: status says %s on the primary IP: %v, want %v", configured, e.AllocationID, e.Primary, want)
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("configured=%v: status EIPs %v, want %v", configured, got, want)
		}
	}
}

// TestManagerHandoverRightAfterPreempt: nat-a gets its table back by
// the preempt handshake and goes into maintenance before nat-c describes
// the table again (its resync is long here, 1 s in hanatd). nat-c must
// point rtb-a at itself at once, its EIP immediately followed by the
// route: not move the EIP and leave the route at nat-a until its next
// describe (CI's TestHAPair graceful stop: outage up to 1.05 s).
func TestManagerHandoverRightAfterPreempt(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	pa, pc := freeUDPPort(t), freeUDPPort(t)
	fc := &fakeCloud{routes: map[string]string{"rtb-a": "eni-a", "rtb-c": "eni-c"}, eips: map[string]string{"eipalloc-a": "eni-a"}}
	key := []byte("0123456789abcdef0123")
	opts := func(id, eni string, self, peer uint16, home, backup string) Options {
		return Options{NodeID: id, ENI: func() string { return eni }, Listen: netip.AddrPortFrom(lo, self),
			Peer: netip.AddrPortFrom(lo, peer), Key: key, Interval: 50 * time.Millisecond, DeadAfter: 4,
			Preempt: true, HoldDown: 300 * time.Millisecond, Home: []string{home}, Backup: []string{backup}, Resync: time.Hour,
			EIPs: []EIPGroup{{AllocationID: "eipalloc-a", RouteTables: []string{"rtb-a"}}}}
	}
	start := func(o Options) (*Manager, func()) {
		m, err := New(slog.New(slog.NewTextHandler(testWriter{t}, nil)).With("node", o.NodeID), fc, o)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- m.Run(ctx) }()
		return m, func() { cancel(); <-done }
	}
	c, stopC := start(opts("i-c", "eni-c", pc, pa, "rtb-c", "rtb-a"))
	defer stopC()
	// nat-a is down: nat-c takes rtb-a, and its verifying describe shows
	// rtb-a at nat-c.
	waitFor(t, "rtb-a fails over to i-c", 10*time.Second, func() bool { return fc.get("rtb-a") == "eni-c" })
	waitFor(t, "i-c holds rtb-a", 5*time.Second, func() bool {
		for _, tb := range c.Status().Tables {
			if tb.ID == "rtb-a" {
				return tb.Claim == "held" && tb.Owner == "eni-c"
			}
		}
		return false
	})
	a, stopA := start(opts("i-a", "eni-a", pa, pc, "rtb-a", "rtb-c"))
	defer stopA()
	waitFor(t, "rtb-a returns to i-a by preempt", 10*time.Second, func() bool { return fc.get("rtb-a") == "eni-a" })
	fc.mu.Lock()
	from := len(fc.calls)
	fc.mu.Unlock()
	at := time.Now()
	a.SetMaintenance(true)
	waitFor(t, "rtb-a back at i-c after nat-a's maintenance", 2*time.Second, func() bool { return fc.get("rtb-a") == "eni-c" })
	took := time.Since(at)
	fc.mu.Lock()
	calls := strings.Join(fc.calls[from:], ", ")
	fc.mu.Unlock()
	if !strings.HasPrefix(calls, "eip eipalloc-a, route rtb-a") {
		t.Errorf("calls after nat-a's maintenance: %q, want the EIP then at once the route", calls)
	}
	if n := c.Status().Counters.HandoverRewrites; n != 0 {
		t.Errorf("handover_rewrites %d: rtb-a was written only after a describe caught up", n)
	}
	t.Logf("handover took %v, calls %q", took.Round(time.Millisecond), calls)
}

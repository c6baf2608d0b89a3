//go:build linux

package conntrack

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/hanat/hanat/internal/netns"
)

// fakeFeedSocket plays events handed to it through ch, in order.
type fakeFeedSocket struct {
	ch     chan func(emit func(Event), overflow func())
	mu     sync.Mutex
	groups map[netfilter.NetlinkGroup]bool
	joins  int
	closed bool
}

func newFakeFeedSocket() *fakeFeedSocket {
	return &fakeFeedSocket{ch: make(chan func(func(Event), func()), 16), groups: map[netfilter.NetlinkGroup]bool{netfilter.GroupCTDestroy: true}}
}

func (s *fakeFeedSocket) run(ctx context.Context, emit func(Event), overflow func()) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case f, ok := <-s.ch:
			if !ok {
				return errors.New("socket broke")
			}
			f(emit, overflow)
		}
	}
}

func (s *fakeFeedSocket) join(g netfilter.NetlinkGroup) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups[g] = true
	s.joins++
	return nil
}

func (s *fakeFeedSocket) leave(g netfilter.NetlinkGroup) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.groups, g)
	return nil
}

func (s *fakeFeedSocket) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *fakeFeedSocket) inUpdates() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.groups[netfilter.GroupCTUpdate]
}

// TestEventFeedFanOut: every subscriber gets DESTROY events, only those
// that asked get UPDATE events, all in socket order; overflows reach all;
// the socket is in the UPDATE group exactly while someone wants updates;
// a stopped feed refuses subscribers.
func TestEventFeedFanOut(t *testing.T) {
	sock := newFakeFeedSocket()
	feed := newEventFeed(slog.New(slog.DiscardHandler), sock)

	type rec struct {
		mu        sync.Mutex
		kinds     []EventKind
		overflows int
	}
	var ends, engine rec
	add := func(r *rec) func(Event) {
		return func(ev Event) { r.mu.Lock(); r.kinds = append(r.kinds, ev.Kind); r.mu.Unlock() }
	}
	over := func(r *rec) func() { return func() { r.mu.Lock(); r.overflows++; r.mu.Unlock() } }
	unEnds, err := feed.Subscribe(false, add(&ends), over(&ends))
	if err != nil {
		t.Fatal(err)
	}
	if sock.inUpdates() {
		t.Fatal("joined the UPDATE group with no subscriber wanting updates")
	}
	unEngine, err := feed.Subscribe(true, add(&engine), over(&engine))
	if err != nil {
		t.Fatal(err)
	}
	if !sock.inUpdates() {
		t.Fatal("not in the UPDATE group after an update subscriber came")
	}

	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- feed.Run(ctx) }()
	played := make(chan struct{})
	sock.ch <- func(emit func(Event), overflow func()) {
		for _, k := range []EventKind{EventUpdate, EventDestroy, EventUpdate, EventUpdate, EventDestroy} {
			emit(Event{Kind: k})
		}
		overflow()
		close(played)
	}
	<-played
	engine.mu.Lock()
	if want := []EventKind{EventUpdate, EventDestroy, EventUpdate, EventUpdate, EventDestroy}; !slices.Equal(engine.kinds, want) || engine.overflows != 1 {
		t.Errorf("engine got %v, %d overflows; want %v, 1", engine.kinds, engine.overflows, want)
	}
	engine.mu.Unlock()
	ends.mu.Lock()
	if want := []EventKind{EventDestroy, EventDestroy}; !slices.Equal(ends.kinds, want) || ends.overflows != 1 {
		t.Errorf("end watcher got %v, %d overflows; want %v, 1", ends.kinds, ends.overflows, want)
	}
	ends.mu.Unlock()

	unEngine()
	unEngine() // harmless
	if sock.inUpdates() {
		t.Error("still in the UPDATE group after the last update subscriber left")
	}
	played = make(chan struct{})
	sock.ch <- func(emit func(Event), _ func()) { emit(Event{Kind: EventDestroy}); close(played) }
	<-played
	engine.mu.Lock()
	if len(engine.kinds) != 5 {
		t.Errorf("an unsubscribed engine got events: %v", engine.kinds)
	}
	engine.mu.Unlock()
	unEnds()

	// A second update subscriber joins again.
	un2, err := feed.Subscribe(true, func(Event) {}, func() {})
	if err != nil || !sock.inUpdates() || sock.joins != 2 {
		t.Errorf("resubscribe: %v, in updates %v, joins %d", err, sock.inUpdates(), sock.joins)
	}
	// Wait reports the feed ending under its subscribers.
	srcErr := make(chan error, 1)
	go func() { srcErr <- feed.Wait(context.Background()) }()
	close(sock.ch) // the socket fails for good
	if err := <-runErr; err == nil || !strings.Contains(err.Error(), "socket broke") {
		t.Errorf("Run = %v, want the socket's error", err)
	}
	if err := <-srcErr; err == nil {
		t.Error("Wait did not report the feed stopping")
	}
	un2()
	cancel()
	if !sock.closed {
		t.Error("Run did not close the socket")
	}
	if _, err := feed.Subscribe(false, func(Event) {}, func() {}); !errors.Is(err, ErrFeedStopped) {
		t.Errorf("subscribe to a stopped feed: %v, want ErrFeedStopped", err)
	}
}

// conntrackListeners returns the group masks of the conntrack event
// sockets in ns.
func conntrackListeners(t *testing.T, ns *netns.NS) []uint64 {
	t.Helper()
	m, err := ns.ListenerGroups(unix.NETLINK_NETFILTER)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestEventFeedInNamespace: one feed serves the end watcher and an
// UPDATE subscriber (the offload engine's place) in a real NAT namespace:
// the subscriber sees a connection's UPDATE events, deleting its conntrack
// entry reaches both (one DESTROY event, decoded once), and only one
// conntrack event socket exists, in the UPDATE group while the subscriber
// is there and out of it after.
func TestEventFeedInNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lab := newNATLab(t, ctx)
	mustRun(t, ctx, lab.nat, "sysctl", "-w", "net.netfilter.nf_conntrack_events=1")
	serveTCPEcho(t, lab.inet, "198.51.100.100:7")
	log := slog.New(slog.NewTextHandler(testLogWriter{T: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	filter := Filter{PrivateCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.11.0/24")}, NATAddrs: []netip.Addr{tNatOut}}

	feed, err := NewEventFeed(log, NetNSFD(lab.nat.FD()))
	if err != nil {
		t.Fatal(err)
	}
	feedCtx, stopFeed := context.WithCancel(ctx)
	feedErr := make(chan error, 1)
	go func() { feedErr <- feed.Run(feedCtx) }()
	defer func() {
		stopFeed()
		if err := <-feedErr; err != nil {
			t.Errorf("feed Run: %v", err)
		}
	}()
	w := NewEndWatcher(log, feed)
	w.SetFilter(filter)
	watchErr := make(chan error, 1)
	go func() { watchErr <- w.Run(feedCtx) }()

	var mu sync.Mutex
	seen := map[netip.AddrPort]map[EventKind]int{} // by original source
	var local netip.AddrPort
	unsubscribe, err := feed.Subscribe(true, func(ev Event) {
		mu.Lock()
		defer mu.Unlock()
		if seen[ev.Flow.Original.Src] == nil {
			seen[ev.Flow.Original.Src] = map[EventKind]int{}
		}
		seen[ev.Flow.Original.Src][ev.Kind]++
	}, func() {})
	if err != nil {
		t.Fatal(err)
	}
	const updateBit, destroyBit = 1 << (uint(netfilter.GroupCTUpdate) - 1), 1 << (uint(netfilter.GroupCTDestroy) - 1)
	if m := conntrackListeners(t, lab.nat); len(m) != 1 || m[0] != updateBit|destroyBit {
		t.Errorf("conntrack event sockets with an UPDATE subscriber: group masks %x, want one socket in UPDATE and DESTROY (%x)", m, updateBit|destroyBit)
	}
	count := func(k EventKind) int { mu.Lock(); defer mu.Unlock(); return seen[local][k] }
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for i := 0; i < 200 && ctx.Err() == nil; i++ {
			if cond() {
				return
			}
			time.Sleep(25 * time.Millisecond)
		}
		t.Fatalf("timed out waiting for %s; seen %v, watcher %+v", what, seen, w.Stats())
	}
	var c net.Conn
	if err := lab.private.Do(func() (err error) {
		c, err = net.DialTimeout("tcp4", "198.51.100.100:7", 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mu.Lock()
	local = c.LocalAddr().(*net.TCPAddr).AddrPort()
	mu.Unlock()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	waitFor("the connection's UPDATE events", func() bool { return count(EventUpdate) > 0 })

	// An operator deletes the established entry: one DESTROY event.
	mustRun(t, ctx, lab.nat, "conntrack", "-D", "-p", "tcp", "--orig-src", local.Addr().String(), "--orig-port-src", strconv.Itoa(int(local.Port())))
	waitFor("the subscriber to see the DESTROY", func() bool { return count(EventDestroy) == 1 })
	waitFor("the watcher to count it", func() bool { return w.Stats().Destroyed == 1 })
	if s := w.Stats(); s.IdleTimeouts != 1 {
		t.Errorf("watcher %+v, want the established flow counted as ended idle", s)
	}

	unsubscribe()
	if m := conntrackListeners(t, lab.nat); len(m) != 1 || m[0] != destroyBit {
		t.Errorf("conntrack event sockets after the UPDATE subscriber left: group masks %x, want one socket in DESTROY only (%x)", m, destroyBit)
	}
	stopFeed()
	if err := <-watchErr; err != nil {
		t.Errorf("watcher Run: %v", err)
	}
}

package flowsync

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/hanat/hanat/conntrack"
)

// fakeTable is the sender's kernel table.
type fakeTable struct {
	mu    sync.Mutex
	flows map[conntrack.Tuple]conntrack.Flow
	dumps int
}

func newFakeTable(n int) *fakeTable {
	t := &fakeTable{flows: make(map[conntrack.Tuple]conntrack.Flow, n)}
	for i := range n {
		f := testFlow(i)
		t.flows[f.Original] = f
	}
	return t
}

func (t *fakeTable) Flows(ctx context.Context, f conntrack.Filter) ([]conntrack.Flow, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.dumps++
	out := make([]conntrack.Flow, 0, len(t.flows))
	for _, fl := range t.flows {
		if f.Match(fl) {
			out = append(out, fl)
		}
	}
	return out, nil
}

func (t *fakeTable) all() []conntrack.Flow {
	flows, _ := t.Flows(context.Background(), testFilter)
	return flows
}

// loopbackPair runs a Receiver on 127.0.0.1 and a Sender dialling it,
// both stopped when the test ends.
type loopbackPair struct {
	recv       *Receiver
	send       *Sender
	table      *fakeTable
	stopSender context.CancelFunc
	senderDone chan struct{}
}

func fastTimers() (keepalive, dead time.Duration) { return 50 * time.Millisecond, 2 * time.Second }

func startReceiver(t testing.TB, key []byte, peer netip.Addr) (*Receiver, netip.AddrPort) {
	t.Helper()
	ka, dead := fastTimers()
	r, err := NewReceiver(ReceiverConfig{Key: key, Peer: peer, Keepalive: ka, DeadAfter: dead})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return r, ln.Addr().(*net.TCPAddr).AddrPort()
}

func startSender(t testing.TB, key []byte, peer netip.AddrPort, table *fakeTable, queue int) (*Sender, context.CancelFunc) {
	t.Helper()
	ka, dead := fastTimers()
	s, err := NewSender(SenderConfig{Key: key, Peer: peer, Filter: testFilter, Source: table, QueueLen: queue,
		Keepalive: ka, DeadAfter: dead, MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = s.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return s, stop
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSyncOverLoopback: a snapshot on connect, changes after it, a
// reconnect's fresh snapshot, and the held flows kept when the sender is
// gone.
func TestSyncOverLoopback(t *testing.T) {
	recv, addr := startReceiver(t, testKey, netip.MustParseAddr("127.0.0.1"))
	table := newFakeTable(3000)
	send, stop := startSender(t, testKey, addr, table, 0)
	converged := func() bool { return canon(recv.Held()) == canon(table.all()) }
	waitFor(t, "the first snapshot", func() bool { return recv.Status().Snapshots == 1 && converged() })

	// Changes: new flows, a flow closing, a flow ending, a foreign flow.
	table.mu.Lock()
	var changed []conntrack.Flow
	for i := 3000; i < 3100; i++ {
		f := testFlow(i)
		table.flows[f.Original] = f
		changed = append(changed, f)
	}
	closing := testFlow(7)
	closing.TCPState = "TIME_WAIT"
	table.flows[closing.Original] = closing
	ended := testFlow(8)
	delete(table.flows, ended.Original)
	table.mu.Unlock()
	for _, f := range changed {
		send.Upsert(f)
	}
	send.Upsert(closing)
	send.Delete(ended.Original)
	foreign := testFlow(9000)
	foreign.Original.Src = netip.MustParseAddrPort("192.168.1.1:999")
	send.Upsert(foreign)
	want := canon(syncable(table.all()))
	waitFor(t, "the changes", func() bool { return canon(recv.Held()) == want })
	if st := recv.Status(); !st.Connected || st.Flows != 3098 || st.Snapshots != 1 || st.LastFullSync.IsZero() || st.Counters != (Counters{Sessions: 1}) {
		t.Errorf("receiver status %+v", st)
	}
	waitFor(t, "an acknowledgement", func() bool { return send.Status().Lag > 0 })
	if st := send.Status(); !st.Connected || st.Flows != 3098 || st.Snapshots != 1 || st.Counters.QueueDrops != 0 {
		t.Errorf("sender status %+v", st)
	}

	// The sender goes; the receiver keeps the flows. A new one
	// snapshots again.
	stop()
	waitFor(t, "the receiver to see the sender gone", func() bool { return !recv.Status().Connected })
	if got := canon(recv.Held()); got != want {
		t.Fatal("the receiver lost flows when the sender went")
	}
	startSender(t, testKey, addr, table, 0)
	waitFor(t, "the second snapshot", func() bool { return recv.Status().Snapshots == 2 && canon(recv.Held()) == want })
}

func syncable(flows []conntrack.Flow) []conntrack.Flow {
	var out []conntrack.Flow
	for _, f := range flows {
		if Syncable(f) {
			out = append(out, f)
		}
	}
	return out
}

// TestReceiverDropsStrangers: a connection from another address than the
// peer's, and a sender with another key, are dropped and counted, and
// nothing of theirs is held.
func TestReceiverDropsStrangers(t *testing.T) {
	t.Run("not the peer", func(t *testing.T) {
		recv, addr := startReceiver(t, testKey, netip.MustParseAddr("127.0.0.2"))
		startSender(t, testKey, addr, newFakeTable(10), 0)
		waitFor(t, "the connection counted", func() bool { return recv.Status().Counters.NotPeer >= 2 })
		if st := recv.Status(); len(recv.Held()) != 0 || st.Counters.Sessions != 0 {
			t.Errorf("held %d flows, status %+v", len(recv.Held()), st)
		}
	})
	t.Run("another key", func(t *testing.T) {
		recv, addr := startReceiver(t, testKey, netip.MustParseAddr("127.0.0.1"))
		startSender(t, []byte("another pair key of 32 bytes!!!!"), addr, newFakeTable(10), 0)
		waitFor(t, "the forged message counted", func() bool { return recv.Status().Counters.AuthFailed >= 2 })
		if st := recv.Status(); len(recv.Held()) != 0 || st.Snapshots != 0 {
			t.Errorf("held %d flows, status %+v", len(recv.Held()), st)
		}
	})
}

// TestSenderNeverBlocks: with a tiny queue, a burst of changes returns at
// once, drops are counted, and the forced snapshot heals the peer.
func TestSenderNeverBlocks(t *testing.T) {
	recv, addr := startReceiver(t, testKey, netip.MustParseAddr("127.0.0.1"))
	table := newFakeTable(0)
	send, _ := startSender(t, testKey, addr, table, 4)
	waitFor(t, "the first snapshot", func() bool { return recv.Status().Snapshots == 1 })
	table.mu.Lock()
	burst := make([]conntrack.Flow, 20000)
	for i := range burst {
		burst[i] = testFlow(i)
		table.flows[burst[i].Original] = burst[i]
	}
	table.mu.Unlock()
	for _, f := range burst {
		send.Upsert(f)
	}
	if send.Status().Counters.QueueDrops == 0 {
		t.Fatal("20000 changes into a queue of 4: none dropped")
	}
	want := canon(table.all())
	waitFor(t, "the forced snapshot", func() bool { return canon(recv.Held()) == want })
	if st := send.Status(); st.Counters.Resyncs == 0 || st.Snapshots < 2 {
		t.Errorf("sender status %+v: want a forced snapshot", st)
	}
}

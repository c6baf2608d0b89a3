package flowsync

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/hanat/hanat/conntrack"
)

// syncWorld is a sender and a receiver joined by a fake link that loses,
// duplicates and reorders nothing but what the test says, driven step by
// step: no goroutines, no clock. The protocol cores and the real sealing
// run as in a session.
type syncWorld struct {
	rng    *rand.Rand
	kernel map[conntrack.Tuple]conntrack.Flow // the sender's table
	filter conntrack.Filter
	sender *senderCore
	recv   *receiverCore

	connected    bool
	s, r         *session
	s2r, r2s     [][]byte // messages in flight
	wantSnapshot bool     // the sender owes a snapshot (connect, drops, request)
	lossPct      int
	dupPct       int
	stats        struct{ sessions, snapshots, lost, dup, refused, injected int }
}

func (w *syncWorld) connect(t *testing.T) {
	s, r, err := sessionPair(testKey, testKey, func() io.Reader {
		var seed [32]byte
		for i := range seed {
			seed[i] = byte(w.rng.Uint32())
		}
		return rand.NewChaCha8(seed)
	})
	if err != nil {
		t.Fatal(err)
	}
	w.s, w.r, w.s2r, w.r2s = s, r, nil, nil
	w.connected, w.wantSnapshot = true, true
	w.stats.sessions++
}

// send seals a sender frame onto the wire.
func (w *syncWorld) send(f *frame) error {
	w.s2r = append(w.s2r, w.s.out.seal(appendFrame(nil, f)))
	return nil
}

// senderStep is one turn of the sender: a snapshot if owed, else the
// pending changes, and now and then a keepalive.
func (w *syncWorld) senderStep() {
	if !w.connected {
		return
	}
	if w.wantSnapshot {
		w.wantSnapshot = false
		w.stats.snapshots++
		flows := make([]conntrack.Flow, 0, len(w.kernel))
		for _, f := range w.kernel {
			flows = append(flows, f)
		}
		slices.SortFunc(flows, func(a, b conntrack.Flow) int { return a.Original.Src.Compare(b.Original.Src) })
		_ = w.sender.takeSnapshot(flows, w.send)
		return
	}
	if w.sender.pending() {
		_ = w.sender.flush(w.send)
	}
	if w.rng.IntN(4) == 0 {
		_ = w.send(&frame{kind: kindKeepalive})
	}
}

// deliver moves the messages in flight, each lost or duplicated at the
// world's rates.
func (w *syncWorld) deliver(t *testing.T, lossy bool) {
	msgs := w.s2r
	w.s2r = nil
	for _, m := range msgs {
		if lossy && w.rng.IntN(100) < w.lossPct {
			w.stats.lost++
			continue
		}
		w.receive(t, m)
		if lossy && w.rng.IntN(100) < w.dupPct {
			w.stats.dup++
			w.receive(t, m)
		}
	}
	back := w.r2s
	w.r2s = nil
	for _, m := range back {
		if lossy && w.rng.IntN(100) < w.lossPct {
			continue
		}
		plain, _, _, err := w.s.in.open(m)
		if err != nil {
			continue
		}
		if f, err := decodeFrame(plain); err == nil && f.kind == kindResync {
			w.wantSnapshot = true
		}
	}
}

// receive is the receiver's reader loop for one message.
func (w *syncWorld) receive(t *testing.T, m []byte) {
	plain, _, lost, err := w.r.in.open(m)
	if errors.Is(err, errReplay) {
		return // a duplicate: dropped, never applied
	}
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	if lost > 0 {
		w.recv.lost()
	}
	f, err := decodeFrame(plain)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	_ = w.recv.apply(&f)
}

// receiverTick is a keepalive interval of the receiver.
func (w *syncWorld) receiverTick() {
	if w.connected && w.recv.tick() {
		w.r2s = append(w.r2s, w.r.out.seal(appendFrame(nil, &frame{kind: kindResync})))
	}
}

// mutate changes the kernel table and hands the change to the sender,
// unless the change is lost on the way (the event socket overflowed),
// which forces a snapshot as the daemon's Resync would.
func (w *syncWorld) mutate(n int) {
	var f conntrack.Flow
	i := w.rng.IntN(n)
	f = testFlow(i)
	switch w.rng.IntN(10) {
	case 0: // a flow of someone else: outside the private CIDRs
		f.Original.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte{172, 16, 0, byte(i)}), f.Original.Src.Port())
	case 1: // translated to an address that is not the peer's
		f.Reply.Dst = netip.AddrPortFrom(netip.MustParseAddr("198.51.100.66"), f.Reply.Dst.Port())
	case 2:
		f.TCPState = "SYN_SENT"
		f.Assured = false
	case 3:
		f.TCPState = "TIME_WAIT"
	case 4:
		f.Original.Proto, f.Reply.Proto, f.TCPState = protoUDP, protoUDP, ""
	}
	f.Mark = uint32(w.rng.IntN(3))
	del := w.rng.IntN(4) == 0
	if del {
		delete(w.kernel, f.Original)
	} else {
		w.kernel[f.Original] = f
	}
	if w.rng.IntN(100) < 3 {
		w.wantSnapshot = w.connected // the change is lost: Resync
		return
	}
	if del {
		_ = w.sender.apply(change{rec: record{orig: f.Original}, gone: true})
	} else {
		_ = w.sender.apply(changeOf(w.filter, f))
	}
}

// expected is what the receiver should hold: the kernel's flows the
// sender's filter matches that are syncable.
func (w *syncWorld) expected() []conntrack.Flow {
	var out []conntrack.Flow
	for _, f := range w.kernel {
		if w.filter.Match(f) && Syncable(f) {
			r, _ := recordOf(f)
			out = append(out, r.flow())
		}
	}
	return out
}

// checkTakeover: whatever the receiver holds, nothing outside the private
// CIDRs or translated to another address than the survivor's reaches the
// injection, and no flow twice.
// The receiver's own takeover (Receiver.Takeover, InjectTakeover's
// flows), made from its compact view, is held to the same and must be
// Rewrite's of Held, timeouts included.
func (w *syncWorld) checkTakeover(t *testing.T) {
	res := testTakeover.Rewrite(w.recv.heldFlows())
	fast := w.recv.takeover(testTakeover)
	for _, rw := range []TakeoverResult{res, fast} {
		seen := map[conntrack.Tuple]bool{}
		for _, f := range rw.Flows {
			if !testPrivate.Contains(f.Original.Src.Addr()) || f.Reply.Dst.Addr() != testOwnNAT || seen[f.Original] {
				t.Fatalf("takeover would inject %+v", f)
			}
			seen[f.Original] = true
		}
	}
	if got, want := canonTimed(fast.Flows), canonTimed(res.Flows); got != want || fast.Refused != res.Refused {
		t.Fatalf("the receiver's takeover (%d refused) differs from Rewrite of Held (%d refused):\n%s", fast.Refused, res.Refused, lineDiff(got, want))
	}
	w.stats.refused += res.Refused
	w.stats.injected += len(res.Flows)
}

// canonTimed is canon with each flow's timeout.
func canonTimed(flows []conntrack.Flow) string {
	lines := strings.Split(canon(flows), "\n")
	timeouts := make([]string, 0, len(flows))
	for _, f := range flows {
		timeouts = append(timeouts, fmt.Sprintf("%s %s", f.Original, f.Timeout))
	}
	slices.Sort(timeouts)
	return strings.Join(append(lines, timeouts...), "\n")
}

// TestSyncConverges: after any sequence of changes, lost and duplicated
// messages, lost changes and reconnects, once the link is clean again the
// receiver holds exactly the sender's syncable flows. Half the seeds run
// a confused sender whose filter lets everything through: its receiver
// still never produces an injection outside the private CIDRs or the
// peer's SNAT address.
func TestSyncConverges(t *testing.T) {
	const seeds, steps, flows = 120, 400, 64
	var total syncWorld
	for seed := range uint64(seeds) {
		rng := rand.New(rand.NewPCG(seed, 0x5eed))
		w := &syncWorld{
			rng: rng, kernel: map[conntrack.Tuple]conntrack.Flow{}, filter: testFilter,
			recv:    newReceiverCore(),
			lossPct: rng.IntN(25), dupPct: rng.IntN(15),
		}
		if seed%2 == 1 {
			w.filter = conntrack.Filter{PrivateCIDRs: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")},
				NATAddrs: []netip.Addr{testPeerNAT, netip.MustParseAddr("198.51.100.66")}}
		}
		w.sender = newSenderCore(w.filter)
		for step := 0; step < steps; step++ {
			switch op := rng.IntN(100); {
			case op < 45:
				w.mutate(flows)
			case op < 65:
				w.senderStep()
			case op < 85:
				if w.connected {
					w.deliver(t, true)
				}
			case op < 92:
				w.receiverTick()
			case op < 95:
				w.connected = false // the link breaks; what is in flight is gone
				w.s2r, w.r2s = nil, nil
			default:
				if !w.connected {
					w.connect(t)
				}
			}
			if step%20 == 0 {
				w.checkTakeover(t)
			}
		}
		// A clean link: the receiver must converge.
		if !w.connected {
			w.connect(t)
		}
		for round := 0; round < 4*askEvery; round++ {
			w.senderStep()
			_ = w.send(&frame{kind: kindKeepalive}) // reveals a lost tail
			w.deliver(t, false)
			w.receiverTick()
			w.deliver(t, false)
		}
		w.checkTakeover(t)
		if got, want := canon(w.recv.heldFlows()), canon(w.expected()); got != want {
			t.Fatalf("seed %d (loss %d%%, dup %d%%): receiver and sender differ:\n%s", seed, w.lossPct, w.dupPct, lineDiff(got, want))
		}
		if w.recv.want {
			t.Fatalf("seed %d: receiver still wants a snapshot after the clean rounds", seed)
		}
		total.stats.sessions += w.stats.sessions
		total.stats.snapshots += w.stats.snapshots
		total.stats.lost += w.stats.lost
		total.stats.dup += w.stats.dup
		total.stats.refused += w.stats.refused
		total.stats.injected += w.stats.injected
	}
	t.Logf("%d seeds: %+v", seeds, total.stats)
	if total.stats.lost == 0 || total.stats.dup == 0 || total.stats.refused == 0 || total.stats.sessions < seeds*2 {
		t.Errorf("the runs did not exercise loss, duplication, refusals and reconnects: %+v", total.stats)
	}
}

// lineDiff lists the lines only in got (-) or only in want (+).
func lineDiff(got, want string) string {
	in := func(s string) map[string]bool {
		m := map[string]bool{}
		for _, l := range strings.Split(s, "\n") {
			m[l] = true
		}
		return m
	}
	g, w := in(got), in(want)
	var out []string
	for l := range g {
		if !w[l] {
			out = append(out, "- "+l)
		}
	}
	for l := range w {
		if !g[l] {
			out = append(out, "+ "+l)
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// TestReceiverKeepsViewOnShortSnapshot: a snapshot that ends with fewer
// flows than it announced does not replace the view, and a snapshot is
// asked for.
func TestReceiverKeepsViewOnShortSnapshot(t *testing.T) {
	c := newReceiverCore()
	r, _ := recordOf(testFlow(1))
	_ = c.apply(&frame{kind: kindUpsert, records: []record{r}})
	_ = c.apply(&frame{kind: kindSnapshotBegin, snapshot: 3})
	if err := c.apply(&frame{kind: kindSnapshotEnd, snapshot: 3, total: 5}); err == nil {
		t.Error("a snapshot of 0 flows announced as 5 was accepted")
	}
	if c.flows() != 1 || !c.tick() || c.snapshots != 0 {
		t.Errorf("after a short snapshot: %d flows held, snapshots %d; want the view kept and a snapshot asked for", c.flows(), c.snapshots)
	}
}

//go:build linux

package conntrack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
)

// EndWatcher counts how hanat's flows end, from the kernel's conntrack
// DESTROY events on the daemon's EventFeed. A flow that is destroyed while still established — a TCP flow in
// ESTABLISHED, a UDP flow that was answered — was not closed: it ended
// because it stayed idle past its timeout (the NAT gateway's
// IdleTimeoutCount). That includes flows the fast path's sweep expires
// with the same idle semantics, and entries an operator deletes by hand
// (conntrack -D / -F), which the kernel reports the same way.
//
// Events are only generated for entries created while a listener exists
// (nf_conntrack_events=2, the default) or for all of them
// (nf_conntrack_events=1); flows older than the watcher may go uncounted.
type EndWatcher struct {
	log  *slog.Logger
	feed *EventFeed

	mu     sync.Mutex
	filter Filter

	destroyed atomic.Uint64 // hanat's flows destroyed
	idle      atomic.Uint64 // of which ended idle (IdleTimeouts)
	overflows atomic.Uint64 // socket overruns: events lost
}

// EndStats are the watcher's counters since it started.
type EndStats struct {
	// Destroyed counts hanat's flows the kernel destroyed.
	Destroyed uint64
	// IdleTimeouts counts those that were still established: they timed
	// out idle (the NAT gateway's IdleTimeoutCount).
	IdleTimeouts uint64
	// Overflows counts socket overruns; events were lost and the counters
	// above are low by an unknown amount.
	Overflows uint64
}

// NewEndWatcher returns a watcher of the DESTROY events of feed. It counts
// nothing until Run runs and SetFilter names hanat's flows.
func NewEndWatcher(log *slog.Logger, feed *EventFeed) *EndWatcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &EndWatcher{log: log, feed: feed}
}

// SetFilter sets which flows are hanat's (the daemon calls it after each
// reconcile).
func (w *EndWatcher) SetFilter(f Filter) {
	w.mu.Lock()
	w.filter = f
	w.mu.Unlock()
}

// Stats returns the counters.
func (w *EndWatcher) Stats() EndStats {
	return EndStats{Destroyed: w.destroyed.Load(), IdleTimeouts: w.idle.Load(), Overflows: w.overflows.Load()}
}

// Run counts the feed's DESTROY events until ctx is done or the feed
// stops; it returns an error when the feed failed.
func (w *EndWatcher) Run(ctx context.Context) error {
	unsubscribe, err := w.feed.Subscribe(false, w.observeEvent, w.overflowed)
	if err != nil {
		return fmt.Errorf("conntrack end watcher: %w", err)
	}
	defer unsubscribe()
	if err := w.feed.Wait(ctx); err != nil && !errors.Is(err, ErrFeedStopped) {
		return fmt.Errorf("conntrack end watcher: %w", err)
	}
	return nil
}

func (w *EndWatcher) observeEvent(ev Event) {
	if ev.Kind == EventDestroy {
		w.observe(ev.Flow)
	}
}

func (w *EndWatcher) overflowed() {
	if w.overflows.Add(1) == 1 {
		w.log.Warn("conntrack end watcher: socket overrun, flow ends were not counted")
	}
}

// observe counts one destroyed flow.
func (w *EndWatcher) observe(f Flow) {
	w.mu.Lock()
	filter := w.filter
	w.mu.Unlock()
	if !filter.matchEnded(f) {
		return
	}
	w.destroyed.Add(1)
	if EndedIdle(f) {
		w.idle.Add(1)
	}
}

// matchEnded is Match without the NAT status bits, which a DESTROY event
// may lack: SNAT when the original source is private and the reply goes to
// a NAT address; DNAT when the original destination is a NAT address and
// the reply comes from a private host.
func (f Filter) matchEnded(fl Flow) bool {
	if f.Private(fl.Original.Src.Addr()) && f.IsNATAddr(fl.Reply.Dst.Addr()) {
		return true
	}
	return f.IsNATAddr(fl.Original.Dst.Addr()) && f.Private(fl.Reply.Src.Addr())
}

// EndedIdle reports whether a destroyed flow ended idle rather than
// closed: TCP still in ESTABLISHED, or UDP that had been answered (reply
// packets, or ASSURED when the kernel does not count packets).
func EndedIdle(f Flow) bool {
	switch f.Original.Proto {
	case protoTCP:
		return f.TCPState == "ESTABLISHED"
	case protoUDP, protoUDPLite:
		return f.ReplyPackets > 0 || f.Assured
	}
	return false
}

// KernelStats are the kernel's conntrack statistics summed over CPUs (what
// `conntrack -S` prints), for the namespace.
type KernelStats struct {
	// InsertFailed counts new entries the kernel could not insert because
	// their (NATed) tuple clashed with an existing one. When the SNAT port
	// range is exhausted, nf_nat's port search gives up and keeps a
	// clashing tuple, so the entry fails here and the packet is dropped:
	// this is the NAT gateway's ErrorPortAllocation (rare clashes of
	// racing packets count too).
	InsertFailed uint64
	// Drop counts packets conntrack dropped (insert failures among them).
	Drop uint64
	// EarlyDrop counts unassured entries evicted because the table was
	// full.
	EarlyDrop uint64
	// Invalid counts packets conntrack could not track.
	Invalid uint64
}

// ReadKernelStats reads the per-CPU conntrack statistics over ctnetlink in
// the namespace ns.
func ReadKernelStats(ctx context.Context, ns NetNS) (KernelStats, error) {
	if err := ctx.Err(); err != nil {
		return KernelStats{}, fmt.Errorf("conntrack stats: %w", err)
	}
	c, err := dialCT(ns)
	if err != nil {
		return KernelStats{}, err
	}
	defer c.Close()
	per, err := c.Stats()
	if err != nil {
		return KernelStats{}, fmt.Errorf("conntrack stats (%s): %w", ns, err)
	}
	var s KernelStats
	for _, p := range per {
		s.InsertFailed += uint64(p.InsertFailed)
		s.Drop += uint64(p.Drop)
		s.EarlyDrop += uint64(p.EarlyDrop)
		s.Invalid += uint64(p.Invalid)
	}
	return s, nil
}

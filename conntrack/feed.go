//go:build linux

package conntrack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/ti-mo/netfilter"
)

// EventFeed is one conntrack event socket in a namespace shared by the
// daemon's event consumers: the end watcher (DESTROY events, always) and
// the offload engine (UPDATE and DESTROY, while the fast path runs). Each
// event is received and decoded once and handed to every subscriber in
// socket order. The socket is joined to the DESTROY group from the start
// and to the UPDATE group only while a subscriber wants updates, so the
// kernel builds no UPDATE messages for it when the fast path is off. A
// socket overrun (ENOBUFS) is reported to every subscriber: the engine
// resyncs, the watcher counts it.
type EventFeed struct {
	log  *slog.Logger
	sock feedSocket

	mu      sync.RWMutex
	subs    []*feedSub
	updates int  // subscribers that want UPDATE events
	joined  bool // the socket is in the UPDATE group
	stopped bool
	err     error         // why Run ended
	done    chan struct{} // closed when Run ends
}

// feedSocket is the event socket as the feed uses it (nlEvents; a fake in
// tests).
type feedSocket interface {
	run(ctx context.Context, emit func(Event), overflow func()) error
	join(g netfilter.NetlinkGroup) error
	leave(g netfilter.NetlinkGroup) error
	close() error
}

type feedSub struct {
	updates  bool
	emit     func(Event)
	overflow func()
}

// feedReadBuffer is the event socket's receive buffer in bytes (set with
// SO_RCVBUFFORCE, which ignores net.core.rmem_max): a connection storm's
// ends and offload events arrive in bursts.
const feedReadBuffer = 16 << 20

// ErrFeedStopped is returned to subscribers of a feed whose Run has ended.
var ErrFeedStopped = errors.New("conntrack event feed stopped")

// NewEventFeed opens the event socket in the namespace ns, joined to the DESTROY group. Events are read once Run
// runs; subscribe before that to miss none.
func NewEventFeed(log *slog.Logger, ns NetNS) (*EventFeed, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sock, err := dialEvents(ns, feedReadBuffer, log, netfilter.GroupCTDestroy)
	if err != nil {
		return nil, fmt.Errorf("conntrack event feed: %w", err)
	}
	return newEventFeed(log, sock), nil
}

func newEventFeed(log *slog.Logger, sock feedSocket) *EventFeed {
	return &EventFeed{log: log, sock: sock, done: make(chan struct{})}
}

// Run reads events until ctx is done or the socket fails for good, then
// closes the socket; subscribers still attached see ErrFeedStopped.
func (f *EventFeed) Run(ctx context.Context) error {
	err := f.sock.run(ctx, f.dispatch, f.overflowed)
	if err != nil {
		err = fmt.Errorf("conntrack event feed: %w", err)
	}
	f.mu.Lock()
	f.stopped, f.err = true, err
	f.mu.Unlock()
	close(f.done)
	if cerr := f.sock.close(); cerr != nil {
		f.log.Debug("close conntrack event socket", "err", cerr)
	}
	return err
}

// Wait blocks until ctx is done (nil) or Run has ended: then it returns
// why, or ErrFeedStopped when Run ended without an error.
func (f *EventFeed) Wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case <-f.done:
		if f.err != nil {
			return f.err
		}
		return ErrFeedStopped
	}
}

// dispatch hands one event to the subscribers that want it. Subscribers
// must not block (the engine's enqueue drops and resyncs when full).
func (f *EventFeed) dispatch(ev Event) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, s := range f.subs {
		if ev.Kind == EventDestroy || s.updates {
			s.emit(ev)
		}
	}
}

func (f *EventFeed) overflowed() {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, s := range f.subs {
		s.overflow()
	}
}

// Subscribe adds a subscriber: DESTROY events, and UPDATE events too when
// updates is set (the socket joins the UPDATE group before Subscribe
// returns, so a dump taken afterwards misses no change). emit and overflow
// run on the feed's goroutine and must not block. The returned function
// removes the subscriber (and leaves the UPDATE group with the last one
// that wanted updates); calling it twice is harmless.
func (f *EventFeed) Subscribe(updates bool, emit func(Event), overflow func()) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return nil, ErrFeedStopped
	}
	if updates && !f.joined {
		if err := f.sock.join(netfilter.GroupCTUpdate); err != nil {
			return nil, fmt.Errorf("conntrack event feed: join the UPDATE group: %w", err)
		}
		f.joined = true
	}
	s := &feedSub{updates: updates, emit: emit, overflow: overflow}
	f.subs = append(f.subs, s)
	if updates {
		f.updates++
	}
	var once sync.Once
	return func() { once.Do(func() { f.unsubscribe(s) }) }, nil
}

func (f *EventFeed) unsubscribe(s *feedSub) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, x := range f.subs {
		if x == s {
			f.subs = append(f.subs[:i:i], f.subs[i+1:]...)
			break
		}
	}
	if !s.updates {
		return
	}
	f.updates--
	if f.updates == 0 && f.joined && !f.stopped {
		if err := f.sock.leave(netfilter.GroupCTUpdate); err != nil {
			f.log.Warn("conntrack event feed: leave the UPDATE group", "err", err)
			return
		}
		f.joined = false
	}
}

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
	run(ctx context.Context, emit func(ctEvent), overflow func()) error
	join(g netfilter.NetlinkGroup) error
	leave(g netfilter.NetlinkGroup) error
	close() error
}

type feedSub struct {
	updates  bool
	emit     func(ctEvent)
	overflow func()
}

// ErrFeedStopped is returned to subscribers of a feed whose Run has ended.
var ErrFeedStopped = errors.New("conntrack event feed stopped")

// NewEventFeed opens the event socket in the namespace netnsFD refers to
// (-1: the caller's), joined to the DESTROY group. Events are read once Run
// runs; subscribe before that to miss none.
func NewEventFeed(log *slog.Logger, netnsFD int) (*EventFeed, error) {
	if netnsFD == 0 {
		return nil, errors.New("conntrack event feed: fd 0 is not usable as a namespace fd, pass -1 for the current namespace")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The offload engine's buffer: a connection storm's ends and offload
	// events arrive in bursts.
	sock, err := dialEvents(netnsFD, defaultReadBuffer, log, netfilter.GroupCTDestroy)
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

// wait blocks until ctx is done (nil) or Run has ended: then it returns
// why, or ErrFeedStopped when Run ended without an error.
func (f *EventFeed) wait(ctx context.Context) error {
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
func (f *EventFeed) dispatch(ev ctEvent) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	for _, s := range f.subs {
		if ev.kind == evDestroy || s.updates {
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

// subscribe adds a subscriber: DESTROY events, and UPDATE events too when
// updates is set (the socket joins the UPDATE group before subscribe
// returns, so a dump taken afterwards misses no change). The returned
// function removes it (and leaves the UPDATE group with the last one that
// wanted updates); calling it twice is harmless.
func (f *EventFeed) subscribe(updates bool, emit func(ctEvent), overflow func()) (func(), error) {
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

// feedSource is the offload engine's event source on a shared feed: the
// subscription is made when the engine is built (before its first dump);
// run only waits, and reports the feed stopping under the engine.
type feedSource struct {
	feed        *EventFeed
	unsubscribe func()
}

func (s *feedSource) run(ctx context.Context, _ func(ctEvent), _ func()) error {
	return s.feed.wait(ctx)
}

func (s *feedSource) close() error {
	s.unsubscribe()
	return nil
}

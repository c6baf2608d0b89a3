package flowsync

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hanat/hanat/conntrack"
)

// askEvery is how many keepalive intervals a receiver waits for the
// snapshot it asked for before asking again (the request may be lost).
const askEvery = 5

// receiverCore is the receiver's protocol without I/O or clocks: the
// peer's flows as last synced.
type receiverCore struct {
	held *flowTable // the last complete view, changed by increments since
	// next is the snapshot being received (nil: none); its flows replace
	// held when its end arrives with the total it announced.
	next   *flowTable
	nextID uint32
	// want is set when frames were lost or broke the protocol: the view
	// may be wrong until a snapshot begun after that completes.
	want      bool
	askedAgo  int // ticks since the last request; 0: not asked
	snapshots uint64
}

func newReceiverCore() *receiverCore { return &receiverCore{held: newFlowTable(0)} }

// lost notes that messages were lost: a snapshot under way is missing
// some of its records, the view may miss changes.
func (c *receiverCore) lost() {
	c.next = nil
	c.want = true
}

// apply applies one frame; an error is a frame that breaks the protocol
// (it changes nothing, and a snapshot is wanted).
func (c *receiverCore) apply(f *frame) error {
	err := c.applyFrame(f)
	if err != nil {
		c.want = true
	}
	return err
}

func (c *receiverCore) applyFrame(f *frame) error {
	switch f.kind {
	case kindSnapshotBegin:
		c.next, c.nextID, c.askedAgo = newFlowTable(0), f.snapshot, 0
	case kindSnapshotRecords:
		if c.next == nil || c.nextID != f.snapshot {
			return c.stray(f)
		}
		for _, r := range f.records {
			c.next.put(r)
		}
	case kindSnapshotEnd:
		if c.next == nil || c.nextID != f.snapshot {
			return c.stray(f)
		}
		if got := uint32(c.next.len()); got != f.total {
			c.next = nil
			return fmt.Errorf("snapshot %d ended with %d flows, %d announced", f.snapshot, got, f.total)
		}
		c.held, c.next = c.next, nil
		c.want, c.askedAgo = false, 0
		c.snapshots++
	case kindUpsert:
		for _, r := range f.records {
			c.held.put(r)
			if c.next != nil {
				c.next.put(r)
			}
		}
	case kindDelete:
		for _, k := range f.keys {
			c.held.del(k)
			if c.next != nil {
				c.next.del(k)
			}
		}
	case kindKeepalive:
	default:
		return fmt.Errorf("%s frame: not sent by a sender", kindName(f.kind))
	}
	return nil
}

// stray handles a snapshot frame of no snapshot under way: one that lost
// frames abandoned (expected after a loss, ignored) or a protocol break.
func (c *receiverCore) stray(f *frame) error {
	if c.want {
		return nil
	}
	return fmt.Errorf("%s frame of snapshot %d, none under way", kindName(f.kind), f.snapshot)
}

// tick is called once a keepalive interval; it reports whether to ask the
// sender for a snapshot now.
func (c *receiverCore) tick() bool {
	if !c.want || c.next != nil {
		return false
	}
	if c.askedAgo == 0 || c.askedAgo >= askEvery {
		c.askedAgo = 1
		return true
	}
	c.askedAgo++
	return false
}

// eachHeld calls fn for every flow of the view to take over: the last
// complete view, overlaid with a snapshot under way (its flows are
// newer). Each original tuple comes once.
func (c *receiverCore) eachHeld(fn func(record)) {
	c.held.each(func(r record) bool {
		if c.next == nil || !c.next.has(r.orig) {
			fn(r)
		}
		return true
	})
	if c.next != nil {
		c.next.each(func(r record) bool {
			fn(r)
			return true
		})
	}
}

// heldLen is an upper bound of the flows eachHeld visits.
func (c *receiverCore) heldLen() int {
	n := c.held.len()
	if c.next != nil {
		n += c.next.len()
	}
	return n
}

// heldFlows is the view as flows to take over.
func (c *receiverCore) heldFlows() []conntrack.Flow {
	out := make([]conntrack.Flow, 0, c.heldLen())
	c.eachHeld(func(r record) { out = append(out, r.flow()) })
	return out
}

// takeover is t.Rewrite(c.heldFlows()) without the copy in between, and
// without Rewrite's check that no original tuple comes twice: eachHeld's
// come once by construction.
func (c *receiverCore) takeover(t Takeover) TakeoverResult {
	res := TakeoverResult{Flows: make([]conntrack.Flow, 0, c.heldLen())}
	for f := range c.takeoverSeq(t, &res) {
		res.Flows = append(res.Flows, f)
	}
	return res
}

// takeoverSeq yields takeover's flows one at a time and counts the
// refused ones in res.
func (c *receiverCore) takeoverSeq(t Takeover, res *TakeoverResult) iter.Seq[conntrack.Flow] {
	return func(yield func(conntrack.Flow) bool) {
		done := false
		c.eachHeld(func(r record) {
			if done {
				return
			}
			out, err := t.rewriteRecord(r)
			if err != nil {
				res.refuse(r.orig, err)
				return
			}
			done = !yield(out)
		})
	}
}

func (c *receiverCore) flows() int { return c.held.len() }

// ReceiverConfig configures a Receiver. Zero durations take the defaults.
type ReceiverConfig struct {
	Log *slog.Logger
	// Key is the pair's shared key (the ha.key_file content).
	Key []byte
	// Listen is where the receiver listens: this node's private IP and
	// the sync port (Run only).
	Listen netip.AddrPort
	// Peer is the peer's private IP: connections from any other address
	// are closed and counted.
	Peer netip.Addr
	// Keepalive is the interval of keepalives (default 1 s); DeadAfter
	// the silence after which the sender is taken for gone (default 5 s).
	Keepalive, DeadAfter time.Duration
	// AckInterval bounds how long an applied change waits for its
	// acknowledgement (default 50 ms): the sender's lag.
	AckInterval time.Duration
}

// Receiver holds the peer's synced flows in memory until a takeover.
type Receiver struct {
	cfg ReceiverConfig
	ctr counters

	mu       sync.Mutex
	core     *receiverCore
	current  context.CancelCauseFunc // the session running, nil: none
	session  uint64                  // bumped by each session
	lastFull time.Time
}

// errReplaced ends a session that a newer one from the peer replaced.
var errReplaced = errors.New("replaced by a newer session")

// NewReceiver checks cfg and returns a Receiver holding nothing yet.
func NewReceiver(cfg ReceiverConfig) (*Receiver, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Keepalive <= 0 {
		cfg.Keepalive = time.Second
	}
	if cfg.DeadAfter <= 0 {
		cfg.DeadAfter = 5 * time.Second
	}
	if cfg.AckInterval <= 0 {
		cfg.AckInterval = 50 * time.Millisecond
	}
	if len(cfg.Key) < MinKeyLen {
		return nil, fmt.Errorf("flowsync receiver: shared key of %d bytes, at least %d", len(cfg.Key), MinKeyLen)
	}
	if !cfg.Peer.IsValid() {
		return nil, errors.New("flowsync receiver: no peer address")
	}
	return &Receiver{cfg: cfg, core: newReceiverCore()}, nil
}

// Held is the peer's flows as held now, for a takeover. The peer's
// disconnect keeps them: that is when they are needed.
func (r *Receiver) Held() []conntrack.Flow {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.core.heldFlows()
}

// Takeover is t.Rewrite(r.Held()), the held flows checked and rewritten
// for injection, made straight from the receiver's compact view: at a
// takeover of 250 k flows it saves the copy of every flow and the check
// for a tuple held twice, most of Held and Rewrite's time (the flows come
// in another order, and FirstRefusal is the first in that order).
func (r *Receiver) Takeover(t Takeover) TakeoverResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.core.takeover(t)
}

// NATAddrs is the distinct NAT addresses of the held flows
// (conntrack.Flow.NATAddr's), what a takeover maps to addresses of this
// node (Takeover.Addrs), without the copy of every flow Held makes.
func (r *Receiver) NATAddrs() []netip.Addr {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[netip.Addr]struct{}{}
	var out []netip.Addr
	r.core.eachHeld(func(rec record) {
		var a netip.Addr
		switch {
		case rec.snat:
			a = rec.reply.Dst.Addr()
		case rec.dnat:
			a = rec.orig.Dst.Addr()
		default:
			return
		}
		if _, ok := seen[a]; !ok {
			seen[a] = struct{}{}
			out = append(out, a)
		}
	})
	return out
}

// SeqInjector writes flows as an iterator yields them:
// conntrack.Injector.
type SeqInjector interface {
	InjectSeq(ctx context.Context, n int, flows iter.Seq[conntrack.Flow]) (conntrack.InjectResult, error)
}

// InjectTakeover is a takeover's rewrite and injection in one:
// Takeover's flows, each checked and rewritten as the injector's encoder
// asks for it, so that the rewrite runs while the kernel creates the
// entries before (on another CPU) instead of ahead of them all. The
// result's Flows is nil: the flows went to in. The receiver's lock is
// held until in is done, so frames from the peer (a planned handover's)
// wait for the injection, and no flow changes under it.
func (r *Receiver) InjectTakeover(ctx context.Context, t Takeover, in SeqInjector) (TakeoverResult, conntrack.InjectResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var res TakeoverResult
	ir, err := in.InjectSeq(ctx, r.core.heldLen(), r.core.takeoverSeq(t, &res))
	return res, ir, err
}

// Status is the receiver's state now.
func (r *Receiver) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Status{
		Connected: r.current != nil, Peer: r.cfg.Peer.String(), Flows: r.core.flows(),
		LastFullSync: r.lastFull, Snapshots: r.core.snapshots, Counters: r.ctr.snapshot(),
	}
}

// Run listens on cfg.Listen and serves the peer until ctx ends.
func (r *Receiver) Run(ctx context.Context) error {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", r.cfg.Listen.String())
	if err != nil {
		return fmt.Errorf("flowsync receiver: listen on %s: %w", r.cfg.Listen, err)
	}
	return r.Serve(ctx, ln)
}

// Serve accepts the peer's connections on ln until ctx ends, then closes
// ln. A new session from the peer replaces the one running.
func (r *Receiver) Serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("flowsync receiver: accept on %s: %w", ln.Addr(), err)
		}
		from, _ := netip.ParseAddrPort(conn.RemoteAddr().String())
		if from.Addr().Unmap() != r.cfg.Peer.Unmap() {
			r.ctr.notPeer.Add(1)
			r.cfg.Log.Warn("flowsync: connection from an address that is not the peer's; closed", "from", conn.RemoteAddr(), "peer", r.cfg.Peer)
			conn.Close()
			continue
		}
		wg.Go(func() {
			if err := r.serveConn(ctx, conn); err != nil && ctx.Err() == nil && !errors.Is(err, errReplaced) {
				r.ctr.failures.Add(1)
				r.cfg.Log.Warn("flowsync: session from the peer ended", "from", conn.RemoteAddr(), "err", err)
			}
		})
	}
}

func (r *Receiver) serveConn(ctx context.Context, conn net.Conn) error {
	l := newTCPLink(conn, r.cfg.DeadAfter, r.cfg.DeadAfter)
	defer l.close()
	hctx, cancel := context.WithTimeout(ctx, r.cfg.DeadAfter)
	sess, err := handshake(hctx, l, r.cfg.Key, roleReceiver, rand.Reader)
	cancel()
	if err != nil {
		r.ctr.handshake.Add(1)
		return fmt.Errorf("session from %s: %w", conn.RemoteAddr(), err)
	}
	return r.serve(ctx, l, sess)
}

// serve runs one session: this goroutine applies the sender's frames, a
// second one acknowledges them, sends keepalives and asks for snapshots.
func (r *Receiver) serve(ctx context.Context, l link, sess *session) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r.mu.Lock()
	if r.current != nil {
		r.current(errReplaced)
	}
	r.current = cancel
	r.session++
	id := r.session
	r.mu.Unlock()
	r.ctr.sessions.Add(1)
	defer func() {
		r.mu.Lock()
		if r.session == id {
			r.current = nil
		}
		r.mu.Unlock()
	}()

	var applied sync.Mutex // guards ack, dirty
	var ack uint64
	dirty := false
	go func() {
		cancel(r.writePeer(ctx, l, sess, func() (uint64, bool) {
			applied.Lock()
			defer applied.Unlock()
			d := dirty
			dirty = false
			return ack, d
		}))
	}()
	accepted := false
	for {
		msg, err := l.recv(ctx)
		if err != nil {
			if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
				return c
			}
			return err
		}
		plain, seq, lost, err := sess.in.open(msg)
		switch {
		case errors.Is(err, errAuth):
			r.ctr.authFailed.Add(1)
			if !accepted {
				// The first message already fails: another key.
				return fmt.Errorf("first message fails authentication: the peer has another key")
			}
			continue
		case errors.Is(err, errReplay):
			r.ctr.replayed.Add(1)
			continue
		}
		accepted = true
		r.handle(plain, lost)
		applied.Lock()
		ack, dirty = seq, true
		applied.Unlock()
	}
}

// handle applies one authentic frame.
func (r *Receiver) handle(plain []byte, lost uint64) {
	f, err := decodeFrame(plain)
	r.mu.Lock()
	defer r.mu.Unlock()
	if lost > 0 {
		r.ctr.lost.Add(lost)
		r.core.lost()
	}
	if err == nil {
		before := r.core.snapshots
		err = r.core.apply(&f)
		if r.core.snapshots != before {
			r.lastFull = time.Now()
		}
	} else {
		r.core.want = true
	}
	if err != nil {
		r.ctr.malformed.Add(1)
		r.cfg.Log.Warn("flowsync: frame from the peer dropped", "peer", r.cfg.Peer, "err", err)
	}
}

// writePeer acknowledges applied frames within AckInterval, sends a
// keepalive each Keepalive and asks for snapshots when the core wants one.
func (r *Receiver) writePeer(ctx context.Context, l link, sess *session, take func() (uint64, bool)) error {
	t := time.NewTicker(r.cfg.AckInterval)
	defer t.Stop()
	var last, lastTick time.Time
	var ack uint64
	send := func(f *frame) error { return l.send(ctx, sess.out.seal(appendFrame(nil, f))) }
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			a, dirty := take()
			if dirty {
				ack = a
			}
			if dirty || now.Sub(last) >= r.cfg.Keepalive {
				if err := send(&frame{kind: kindKeepalive, ack: ack}); err != nil {
					return err
				}
				last = now
			}
			if now.Sub(lastTick) >= r.cfg.Keepalive {
				lastTick = now
				r.mu.Lock()
				ask := r.core.tick()
				r.mu.Unlock()
				if ask {
					r.ctr.resyncs.Add(1)
					if err := send(&frame{kind: kindResync}); err != nil {
						return err
					}
				}
			}
		}
	}
}

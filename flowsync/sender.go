package flowsync

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hanat/hanat/conntrack"
)

// Source is the table a sender snapshots: conntrack.Table satisfies it.
type Source interface {
	Flows(ctx context.Context, f conntrack.Filter) ([]conntrack.Flow, error)
}

// snapshotChunk is the records per snapshot frame (about 36 KiB of IPv4
// records): large enough to amortise sealing, small enough to pipeline.
const snapshotChunk = 1024

// senderCore is the sender's protocol without I/O or clocks: the peer's
// view as this sender made it, and the changes not yet framed.
type senderCore struct {
	filter   conntrack.Filter
	sent     *flowTable
	snapshot uint32 // id of the last snapshot begun

	// dirty lists the flows changed since the last flush, each once, in
	// the order they first changed; the frame carries their state now.
	dirty   []conntrack.Tuple
	inDirty map[conntrack.Tuple]struct{}
}

func newSenderCore(filter conntrack.Filter) *senderCore {
	return &senderCore{filter: filter, sent: newFlowTable(0), inDirty: map[conntrack.Tuple]struct{}{}}
}

// change is one change handed to the sender: a syncable flow's state, or
// a flow gone (deleted, or no longer syncable).
type change struct {
	rec  record
	gone bool
}

// changeOf turns a flow into the change a sender queues: its state if the
// filter matches it (hanat's) and it is syncable, else its end (a no-op
// for a flow the peer does not hold).
func changeOf(filter conntrack.Filter, f conntrack.Flow) change {
	if filter.Match(f) && Syncable(f) {
		if r, err := recordOf(f); err == nil {
			return change{rec: r}
		}
	}
	return change{rec: record{orig: f.Original}, gone: true}
}

func (c *senderCore) markDirty(t conntrack.Tuple) {
	if _, ok := c.inDirty[t]; !ok {
		c.inDirty[t] = struct{}{}
		c.dirty = append(c.dirty, t)
	}
}

// apply records a change; it reports whether the peer's view changes.
func (c *senderCore) apply(ch change) bool {
	var changed bool
	if ch.gone {
		changed = c.sent.del(ch.rec.orig)
	} else {
		changed = c.sent.put(ch.rec)
	}
	if changed {
		c.markDirty(ch.rec.orig)
	}
	return changed
}

// pending reports whether changes wait for flush.
func (c *senderCore) pending() bool { return len(c.dirty) > 0 }

// flush frames the changes since the last flush: upserts for flows the
// peer should hold, deletes for the others.
func (c *senderCore) flush(emit func(*frame) error) error {
	var ups []record
	var dels []conntrack.Tuple
	out := func(force bool) error {
		if len(ups) > 0 && (force || len(ups) == snapshotChunk) {
			if err := emit(&frame{kind: kindUpsert, records: ups}); err != nil {
				return err
			}
			ups = ups[:0]
		}
		if len(dels) > 0 && (force || len(dels) == snapshotChunk) {
			if err := emit(&frame{kind: kindDelete, keys: dels}); err != nil {
				return err
			}
			dels = dels[:0]
		}
		return nil
	}
	for _, t := range c.dirty {
		if r, ok := c.sent.get(t); ok {
			ups = append(ups, r)
		} else {
			dels = append(dels, t)
		}
		if err := out(false); err != nil {
			return err
		}
	}
	if err := out(true); err != nil {
		return err
	}
	c.dirty = c.dirty[:0]
	clear(c.inDirty)
	return nil
}

// takeSnapshot makes flows the peer's whole view and frames it: begin,
// the records in chunks, end with the total. Changes not yet flushed are
// part of it.
func (c *senderCore) takeSnapshot(flows []conntrack.Flow, emit func(*frame) error) error {
	c.sent = newFlowTable(len(flows))
	for _, f := range flows {
		if ch := changeOf(c.filter, f); !ch.gone {
			c.sent.put(ch.rec)
		}
	}
	c.dirty = c.dirty[:0]
	clear(c.inDirty)
	c.snapshot++
	if err := emit(&frame{kind: kindSnapshotBegin, snapshot: c.snapshot}); err != nil {
		return err
	}
	chunk := make([]record, 0, snapshotChunk)
	var err error
	c.sent.each(func(r record) bool {
		chunk = append(chunk, r)
		if len(chunk) == snapshotChunk {
			err = emit(&frame{kind: kindSnapshotRecords, snapshot: c.snapshot, records: chunk})
			chunk = chunk[:0]
		}
		return err == nil
	})
	if err != nil {
		return err
	}
	if len(chunk) > 0 {
		if err := emit(&frame{kind: kindSnapshotRecords, snapshot: c.snapshot, records: chunk}); err != nil {
			return err
		}
	}
	return emit(&frame{kind: kindSnapshotEnd, snapshot: c.snapshot, total: uint32(c.sent.len())})
}

// SenderConfig configures a Sender. Zero durations take the defaults.
type SenderConfig struct {
	Log *slog.Logger
	// Key is the pair's shared key (the ha.key_file content).
	Key []byte
	// Peer is the peer's receiver, on its private IP.
	Peer netip.AddrPort
	// Filter selects hanat's flows; only flows it matches are synced.
	Filter conntrack.Filter
	// Source is dumped for each snapshot.
	Source Source
	// QueueLen bounds the changes waiting for the sender (default 16384);
	// when it is full a change is dropped and a snapshot follows.
	QueueLen int
	// Keepalive is the interval of keepalives when nothing else is sent
	// (default 1 s); DeadAfter is the silence after which the peer is
	// taken for gone and the connection closed (default 5 s).
	Keepalive, DeadAfter time.Duration
	// Backoff bounds the reconnect delay (default 100 ms doubling up to 5 s).
	MinBackoff, MaxBackoff time.Duration
	// Dial connects to the peer (default a net.Dialer).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (c *SenderConfig) defaults() {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.QueueLen <= 0 {
		c.QueueLen = 16384
	}
	if c.Keepalive <= 0 {
		c.Keepalive = time.Second
	}
	if c.DeadAfter <= 0 {
		c.DeadAfter = 5 * time.Second
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = 100 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	if c.Dial == nil {
		c.Dial = (&net.Dialer{Timeout: c.DeadAfter}).DialContext
	}
}

// Sender streams this node's synced flows to the peer: a snapshot on each
// (re)connect, then the changes. Upsert and Delete never block: a full
// queue drops the change and forces a snapshot.
type Sender struct {
	cfg     SenderConfig
	changes chan change
	kick    chan struct{} // a snapshot is wanted (drops, Resync)
	// overflow is set when a change was dropped; the sender then snapshots.
	overflow atomic.Bool
	want     atomic.Bool // Resync asked
	ctr      counters

	mu        sync.Mutex
	connected bool
	flows     int
	lag       time.Duration
	lastFull  time.Time
	snapshots uint64
	inflight  []inflight // frames sent and not yet acknowledged, oldest first
}

// inflight is a sent frame whose acknowledgement gives the lag.
type inflight struct {
	seq   uint64
	since time.Time // when its oldest change was handed over
}

const maxInflight = 4096

// NewSender checks cfg and returns a Sender; Run connects it.
func NewSender(cfg SenderConfig) (*Sender, error) {
	cfg.defaults()
	if len(cfg.Key) < MinKeyLen {
		return nil, fmt.Errorf("flowsync sender: shared key of %d bytes, at least %d", len(cfg.Key), MinKeyLen)
	}
	if !cfg.Peer.IsValid() {
		return nil, errors.New("flowsync sender: no peer address")
	}
	if cfg.Source == nil {
		return nil, errors.New("flowsync sender: no source to snapshot")
	}
	return &Sender{cfg: cfg, changes: make(chan change, cfg.QueueLen), kick: make(chan struct{}, 1)}, nil
}

// Upsert hands over a flow's new state (from a conntrack event or a dump).
// A flow that is not syncable, or that the filter does not match, leaves
// the peer's view if it was there. It never blocks.
func (s *Sender) Upsert(f conntrack.Flow) {
	s.enqueue(changeOf(s.cfg.Filter, f))
}

// Delete hands over the end of the flow with original tuple orig. It never
// blocks.
func (s *Sender) Delete(orig conntrack.Tuple) {
	s.enqueue(change{rec: record{orig: orig}, gone: true})
}

// Resync asks for a snapshot, e.g. after the daemon's event socket
// overflowed and changes were lost before they reached the sender.
func (s *Sender) Resync() {
	s.want.Store(true)
	s.poke()
}

func (s *Sender) enqueue(ch change) {
	select {
	case s.changes <- ch:
	default:
		s.ctr.queueDrops.Add(1)
		if !s.overflow.Swap(true) {
			s.poke()
		}
	}
}

func (s *Sender) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Status is the sender's state now.
func (s *Sender) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Status{
		Connected: s.connected, Peer: s.cfg.Peer.String(), Flows: s.flows, Lag: s.lag,
		LastFullSync: s.lastFull, Snapshots: s.snapshots, Counters: s.ctr.snapshot(),
	}
}

// Run connects to the peer and keeps the session up, reconnecting with
// backoff, until ctx ends.
func (s *Sender) Run(ctx context.Context) error {
	bo := backoff{min: s.cfg.MinBackoff, max: s.cfg.MaxBackoff}
	core := newSenderCore(s.cfg.Filter)
	for ctx.Err() == nil {
		started := time.Now()
		err := s.connect(ctx, core)
		s.setConnected(false)
		if ctx.Err() != nil {
			break
		}
		s.ctr.failures.Add(1)
		if time.Since(started) > s.cfg.DeadAfter {
			bo.reset()
		}
		wait := bo.next()
		s.cfg.Log.Warn("flowsync: session to the peer ended; reconnecting", "peer", s.cfg.Peer, "err", err, "retry_in", wait)
		// While no session runs, changes are moot: the next one starts
		// with a snapshot.
		t := time.NewTimer(wait)
	discard:
		for {
			select {
			case <-s.changes:
			case <-t.C:
				break discard
			case <-ctx.Done():
				t.Stop()
				break discard
			}
		}
	}
	return nil
}

func (s *Sender) setConnected(c bool) {
	s.mu.Lock()
	s.connected = c
	s.mu.Unlock()
}

func (s *Sender) connect(ctx context.Context, core *senderCore) error {
	conn, err := s.cfg.Dial(ctx, "tcp", s.cfg.Peer.String())
	if err != nil {
		return fmt.Errorf("dial %s: %w", s.cfg.Peer, err)
	}
	l := newTCPLink(conn, s.cfg.DeadAfter, s.cfg.DeadAfter)
	defer l.close()
	hctx, cancel := context.WithTimeout(ctx, s.cfg.DeadAfter)
	sess, err := handshake(hctx, l, s.cfg.Key, roleSender, rand.Reader)
	cancel()
	if err != nil {
		s.ctr.handshake.Add(1)
		return fmt.Errorf("session with %s: %w", s.cfg.Peer, err)
	}
	s.ctr.sessions.Add(1)
	s.setConnected(true)
	s.cfg.Log.Info("flowsync: connected to the peer", "peer", s.cfg.Peer)
	return s.serve(ctx, l, sess, core)
}

// serve runs one session: a snapshot, then changes and keepalives, while
// a second goroutine reads the receiver's acknowledgements and requests.
func (s *Sender) serve(ctx context.Context, l link, sess *session, core *senderCore) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	resync := make(chan struct{}, 1)
	go func() { cancel(s.readPeer(ctx, l, sess, resync)) }()
	s.mu.Lock()
	s.inflight = s.inflight[:0]
	s.mu.Unlock()

	send := func(f *frame, since time.Time) error {
		msg := sess.out.seal(appendFrame(nil, f))
		if err := l.send(ctx, msg); err != nil {
			return err
		}
		if !since.IsZero() {
			s.track(sess.out.seq, since)
		}
		return nil
	}
	snapshot := func() error {
		start := time.Now()
		// What is queued now is older than the dump, which shows it.
	drain:
		for {
			select {
			case <-s.changes:
			default:
				break drain
			}
		}
		s.overflow.Store(false)
		s.want.Store(false)
		flows, err := s.cfg.Source.Flows(ctx, s.cfg.Filter)
		if err != nil {
			return fmt.Errorf("snapshot: read the table: %w", err)
		}
		err = core.takeSnapshot(flows, func(f *frame) error {
			var since time.Time
			if f.kind == kindSnapshotEnd {
				since = start
			}
			return send(f, since)
		})
		if err != nil {
			return fmt.Errorf("snapshot %d: %w", core.snapshot, err)
		}
		s.mu.Lock()
		s.flows, s.lastFull = core.sent.len(), time.Now()
		s.snapshots++
		s.mu.Unlock()
		s.cfg.Log.Info("flowsync: snapshot sent", "peer", s.cfg.Peer, "flows", core.sent.len(), "took", time.Since(start))
		return nil
	}
	fail := func(err error) error {
		if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
			return c // the reader's error says why the session ended
		}
		return err
	}

	if err := snapshot(); err != nil {
		return fail(err)
	}
	keepalive := time.NewTicker(s.cfg.Keepalive)
	defer keepalive.Stop()
	for {
		var err error
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case ch := <-s.changes:
			since := time.Now()
			core.apply(ch)
			// Take what else is queued, up to a few frames' worth.
		more:
			for n := 0; n < 4*snapshotChunk; n++ {
				select {
				case ch := <-s.changes:
					core.apply(ch)
				default:
					break more
				}
			}
			if core.pending() {
				err = core.flush(func(f *frame) error { return send(f, since) })
				s.mu.Lock()
				s.flows = core.sent.len()
				s.mu.Unlock()
			}
		case <-keepalive.C:
			err = send(&frame{kind: kindKeepalive}, time.Time{})
		case <-resync:
			s.ctr.resyncs.Add(1)
			err = snapshot()
		case <-s.kick:
			if s.overflow.Load() || s.want.Load() {
				s.ctr.resyncs.Add(1)
				err = snapshot()
			}
		}
		if err != nil {
			return fail(err)
		}
	}
}

// readPeer reads the receiver's frames: acknowledgements (the lag) and
// snapshot requests.
func (s *Sender) readPeer(ctx context.Context, l link, sess *session, resync chan<- struct{}) error {
	for {
		msg, err := l.recv(ctx)
		if err != nil {
			return err
		}
		plain, _, _, err := sess.in.open(msg)
		switch {
		case errors.Is(err, errAuth):
			s.ctr.authFailed.Add(1)
			continue
		case errors.Is(err, errReplay):
			s.ctr.replayed.Add(1)
			continue
		}
		f, err := decodeFrame(plain)
		if err != nil {
			s.ctr.malformed.Add(1)
			s.cfg.Log.Warn("flowsync: undecodable frame from the peer", "peer", s.cfg.Peer, "err", err)
			continue
		}
		switch f.kind {
		case kindKeepalive:
			s.acked(f.ack)
		case kindResync:
			select {
			case resync <- struct{}{}:
			default:
			}
		default:
			s.ctr.malformed.Add(1)
		}
	}
}

func (s *Sender) track(seq uint64, since time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.inflight) == maxInflight {
		s.inflight = append(s.inflight[:0], s.inflight[1:]...)
	}
	s.inflight = append(s.inflight, inflight{seq: seq, since: since})
}

func (s *Sender) acked(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for n < len(s.inflight) && s.inflight[n].seq <= seq {
		n++
	}
	if n == 0 {
		return
	}
	s.lag = time.Since(s.inflight[n-1].since)
	s.inflight = append(s.inflight[:0], s.inflight[n:]...)
}

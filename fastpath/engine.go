//go:build linux

package fastpath

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hanat/hanat/bpf"
	"github.com/hanat/hanat/conntrack"
)

// The offload engine: conntrack decides, the XDP fast path forwards.
//
// It follows the kernel's conntrack events in the NAT's namespace. A TCP
// flow that is ASSURED and ESTABLISHED, or a UDP flow that is ASSURED, and
// that hanat NATs (conntrack.Filter) is written into the fast path's flow map in both
// directions: the original direction (private host → internet) with the
// SNAT rewrite, the reply direction (internet → NAT address) with the
// un-NAT rewrite. A flow leaves the map when the kernel destroys it, when
// it stops being offloadable (a TCP FIN or RST moved it out of ESTABLISHED:
// the fast path passes those to the kernel, which reports the new state),
// or when the flow map evicted it.
//
// The kernel sees none of an offloaded flow's packets, so its timer would
// expire the entry under a busy flow. A periodic sweep reads the fast
// path's per-flow packet counters; a flow whose counter moved since the
// previous sweep was active (the fast path reads no clock per packet, so
// the sweep's own time stands for its last packet). While the flow is
// active the sweep pushes the kernel entry's timeout out (ctnetlink update)
// so it expires one idle timeout after the last fast-path packet, late by
// at most one SweepInterval and never early: the NAT gateway's semantics
// (350 s for established TCP). An idle flow is left to expire; its DESTROY
// event removes it. The sweep also folds the fast-path
// counters into what Lookup reports, retries flows whose path was not
// resolvable, and deletes map entries no flow owns (left by an earlier run
// or a lost event).
//
// Events are decoded on their own goroutine into a bounded queue; the
// engine applies them in batches (the last event of a flow in a batch
// wins). When the queue is full, or the kernel reports that the event
// socket overflowed (ENOBUFS), events are lost: they are counted and a full
// resync (a dump of the table, compared with what is offloaded) follows. A
// resync also runs at start, which is how a restarted daemon takes over the
// flows its predecessor left in the pinned map without disturbing them.

// FlowMap is the fast path's flow table; *bpf.Objects implements it.
type FlowMap interface {
	PutFlow(bpf.FlowKey, bpf.FlowAction) error
	DeleteFlow(bpf.FlowKey) error
	LookupFlow(bpf.FlowKey) (bpf.FlowAction, bpf.FlowStats, error)
	// IterateFlowStats reads every entry's key and counters (the sweep).
	IterateFlowStats(func(bpf.FlowKey, bpf.FlowStats) bool) error
}

// engineConfig tunes the engine. Zero values mean the defaults.
type engineConfig struct {
	// Filter selects hanat's flows; only those are offloaded. SetFilter
	// changes it later.
	Filter conntrack.Filter
	// TCPTimeout is the idle timeout of an offloaded established TCP flow
	// (nf_conntrack_tcp_timeout_established, 350 s by default like the NAT
	// gateway); UDPTimeout that of an offloaded UDP flow
	// (nf_conntrack_udp_timeout_stream, 120 s by default).
	TCPTimeout, UDPTimeout time.Duration
	// SweepInterval is the period of the sweep; default a quarter of the
	// shorter timeout, between 250 ms and 5 s.
	SweepInterval time.Duration
	// RetryInterval is how soon a flow whose path could not be resolved is
	// tried again; default 1 s.
	RetryInterval time.Duration
	// MaxFlows bounds the offloaded connections (each uses two map
	// entries); default bpf.DefaultMaxFlows/2. Beyond it flows stay on the
	// slow path (counted as Full) instead of making the LRU map evict
	// busy flows.
	MaxFlows int
	// QueueLen is the number of decoded events buffered between the
	// netlink reader and the engine; default 65536.
	QueueLen int
	// BatchSize is the most events applied in one go; default 512.
	BatchSize int
	// OffloadMark, when not 0, is the conntrack mark bit the kernel sets
	// on an SNAT flow once it is worth offloading (datapath.NAT.Offload's
	// rule, datapath.CtMarkOffload): SNAT flows without it stay in the
	// slow path. The event announcing it carries no TCP state (the rule
	// lets only label, assured, protoinfo and destroy events through, and only
	// established flows get the mark), so a marked flow without one counts
	// as established. 0 offloads every ASSURED, ESTABLISHED hanat flow.
	// Port-forwarded (DNAT) flows never need the mark.
	OffloadMark uint32
	// Clock is the engine's monotonic clock (timeouts, retries, aging);
	// default bpf.KtimeNow (CLOCK_MONOTONIC_COARSE). Tests inject their
	// own.
	Clock func() (time.Duration, error)
}

// Defaults of engineConfig.
const (
	DefaultTCPTimeout    = 350 * time.Second
	DefaultUDPTimeout    = 120 * time.Second
	defaultRetryInterval = time.Second
	defaultQueueLen      = 1 << 16
	defaultBatchSize     = 512
	pathCacheTTL         = 2 * time.Second
	pathCacheMax         = 1 << 16
	// minResyncGap spaces resyncs triggered by lost events, so a storm
	// that keeps overflowing cannot keep the engine dumping.
	minResyncGap = 2 * time.Second
	// retriesPerSweep bounds the path retries per tick.
	retriesPerSweep = 4096
	// pathRecheckAge is how old a flow's resolved path may get before a
	// sweep re-resolves it (a next hop's MAC may change); at most
	// recheckPerSweep flows per tick.
	pathRecheckAge  = 60 * time.Second
	recheckPerSweep = 256
)

func (c engineConfig) withDefaults() engineConfig {
	if c.TCPTimeout <= 0 {
		c.TCPTimeout = DefaultTCPTimeout
	}
	if c.UDPTimeout <= 0 {
		c.UDPTimeout = DefaultUDPTimeout
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = min(c.TCPTimeout, c.UDPTimeout) / 4
		c.SweepInterval = max(min(c.SweepInterval, 5*time.Second), 250*time.Millisecond)
	}
	if c.RetryInterval <= 0 {
		c.RetryInterval = defaultRetryInterval
	}
	if c.MaxFlows <= 0 {
		c.MaxFlows = bpf.DefaultMaxFlows / 2
	}
	if c.QueueLen <= 0 {
		c.QueueLen = defaultQueueLen
	}
	if c.BatchSize <= 0 {
		c.BatchSize = defaultBatchSize
	}
	if c.Clock == nil {
		c.Clock = bpf.KtimeNow
	}
	return c
}

// EngineStats counts what the engine did since it started.
type EngineStats struct {
	Offloaded int `json:"offloaded"` // connections in the fast path now
	Pending   int `json:"pending"`   // offloadable, waiting for a path
	// Events decoded; EventsDropped lost to a full queue; Overflows are
	// ENOBUFS reports of the event socket (an unknown number of events
	// lost each); Resyncs full dumps.
	Events        uint64 `json:"events"`
	EventsDropped uint64 `json:"events_dropped"`
	// EventsSkipped of Events were DESTROY events of SNAT flows the kernel
	// never marked for offloading (short flows): not queued, the engine
	// never woke for them.
	EventsSkipped uint64 `json:"events_skipped"`
	Overflows     uint64 `json:"overflows"`
	Resyncs       uint64 `json:"resyncs"`
	// Offloads and Removals of connections; Refreshes of kernel
	// timeouts; Expired flows found gone by the sweep (their DESTROY
	// event was lost); Evicted flows the LRU map dropped; Full flows not
	// offloaded because MaxFlows were; PathErrors failed path lookups;
	// MapErrors failed map writes; StaleEntries map entries no flow owned;
	// IdleHandbacks idle flows handed back to the slow path just before
	// their kernel entry expired (so the expiry is the kernel's own).
	Offloads      uint64 `json:"offloads"`
	Removals      uint64 `json:"removals"`
	Refreshes     uint64 `json:"refreshes"`
	Expired       uint64 `json:"expired"`
	Evicted       uint64 `json:"evicted"`
	Full          uint64 `json:"full"`
	PathErrors    uint64 `json:"path_errors"`
	MapErrors     uint64 `json:"map_errors"`
	StaleEntries  uint64 `json:"stale_entries"`
	IdleHandbacks uint64 `json:"idle_handbacks"`
	// Sweeps done; SweepMicros the last one's duration (reading the map,
	// refreshing the kernel's timeouts, retries), in µs: what the sweep
	// costs a CPU every SweepInterval at this many flows.
	Sweeps      uint64 `json:"sweeps"`
	SweepMicros uint64 `json:"sweep_last_us"`
}

// FastCounters are the fast path's counters of one connection: packets and
// bytes it forwarded in the original and the reply direction, which the
// kernel's own conntrack counters do not include.
type FastCounters struct {
	Offloaded                                        bool // in the flow map now
	OrigPackets, OrigBytes, ReplyPackets, ReplyBytes uint64
}

type recState uint8

const (
	stPending   recState = iota + 1 // offloadable, path not resolved yet
	stOffloaded                     // both directions in the map
	stDone                          // was offloaded, no longer offloadable; kept for its counters until DESTROY
)

// record is the engine's view of one connection.
type record struct {
	id          uint32
	orig, reply conntrack.Tuple
	state       recState
	timeout     time.Duration // idle timeout of the protocol
	keys        [2]bpf.FlowKey
	acts        [2]bpf.FlowAction
	// kernelDeadline is a lower bound of when the kernel entry expires
	// (engine clock): it is at least what the kernel last told us or what
	// we last set.
	kernelDeadline time.Duration
	lastSeen       time.Duration    // sweep that last saw fast-path activity (or offload time)
	lastPackets    [2]uint64        // per-direction packet counters at that sweep
	fast           [2]bpf.FlowStats // current map entries, as last read
	folded         [2]bpf.FlowStats // of earlier map entries of this connection
	retryAt        time.Duration
	idleHandback   bool // handed back to the slow path idle, before its kernel deadline
	resolvedAt     time.Duration
	seenGen        uint64
	// sweepGen[i] is the sweep that last read direction i's map entry,
	// whose counters it left in sweepStats[i].
	sweepGen   [2]uint64
	sweepStats [2]bpf.FlowStats
}

type pathKey struct{ src, dst netip.Addr }

type cachedPath struct {
	p   Path
	err error
	at  time.Duration
}

// engine is the offload engine. Its state belongs to the goroutine running
// Run (or, in unit tests, the test's); Stats and Lookup read what it
// publishes and are safe to call from any goroutine.
type engine struct {
	log    *slog.Logger
	cfg    engineConfig
	fm     FlowMap
	paths  resolver
	kernel kernelTable
	events chan conntrack.Event
	// feed delivers the kernel's events; nil in unit tests.
	feed        *conntrack.EventFeed
	unsubscribe func()

	resyncReq  chan struct{}
	needResync atomic.Bool
	nextFilter atomic.Pointer[conntrack.Filter] // set by SetFilter, taken by the engine

	// counters updated by the feed's goroutine
	nEvents, nDropped, nSkipped, nOverflows atomic.Uint64

	// Owned by the engine's goroutine.
	filter     conntrack.Filter
	recs       map[conntrack.Tuple]*record
	byKey      map[bpf.FlowKey]*record
	sweeps     uint64 // sweeps started (the stamp of record.sweepGen)
	offloaded  int
	pending    int
	cache      map[pathKey]cachedPath
	gen        uint64
	synced     bool // a resync completed: map entries without a record are stale
	lastResync time.Duration
	stats      EngineStats

	// What readers see; viewMu is held for map updates only, never
	// around a netlink call or a map walk.
	viewMu sync.Mutex
	view   map[conntrack.Tuple]FastCounters
	shown  EngineStats
}

// resolver finds the Path of packets from src to dst as the kernel routes
// them (src before SNAT, dst after DNAT); *PathResolver is the real one.
// An error means "do not offload now": the flow stays on the slow path and
// is retried later (for instance while the next hop's neighbour entry is
// unresolved). It must never answer with a guessed MAC.
type resolver interface {
	Resolve(ctx context.Context, src, dst netip.Addr) (Path, error)
}

// kernelTable is what the engine asks of the kernel's conntrack table;
// *conntrack.Table is the real one.
type kernelTable interface {
	// Walk visits every IPv4 entry; reset is called before each attempt.
	Walk(ctx context.Context, reset func(), visit func(conntrack.Event)) error
	// SetTimeout sets the entry's remaining timeout; an error wrapping
	// conntrack.ErrFlowGone means the entry does not exist.
	SetTimeout(ctx context.Context, orig conntrack.Tuple, timeout time.Duration) error
	// Get returns the entry as an update event would carry it, or
	// conntrack.ErrFlowGone.
	Get(ctx context.Context, orig conntrack.Tuple) (conntrack.Event, error)
	Close() error
}

// openEngine opens the engine's conntrack socket in ns and subscribes to
// feed's UPDATE and DESTROY events, before the first dump (Run's resync),
// so no change falls between them: events queue until Run drains them. It
// needs CAP_NET_ADMIN in that namespace. Nothing is offloaded before Run.
func openEngine(log *slog.Logger, ns conntrack.NetNS, feed *conntrack.EventFeed, fm FlowMap, paths resolver, cfg engineConfig) (*engine, error) {
	if feed == nil {
		return nil, errors.New("conntrack offload: no conntrack event feed")
	}
	t, err := conntrack.Open(log, ns)
	if err != nil {
		return nil, fmt.Errorf("conntrack offload: %w", err)
	}
	o := newEngine(log, fm, paths, t, cfg)
	unsubscribe, err := feed.Subscribe(true, o.enqueue, o.overflowed)
	if err != nil {
		_ = t.Close()
		return nil, fmt.Errorf("conntrack offload: %w", err)
	}
	o.feed, o.unsubscribe = feed, unsubscribe
	return o, nil
}

func newEngine(log *slog.Logger, fm FlowMap, paths resolver, k kernelTable, cfg engineConfig) *engine {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	o := &engine{
		log:       log,
		cfg:       cfg,
		fm:        fm,
		paths:     paths,
		kernel:    k,
		events:    make(chan conntrack.Event, cfg.QueueLen),
		resyncReq: make(chan struct{}, 1),
		filter:    cfg.Filter,
		recs:      make(map[conntrack.Tuple]*record),
		byKey:     make(map[bpf.FlowKey]*record),
		cache:     make(map[pathKey]cachedPath),
		view:      make(map[conntrack.Tuple]FastCounters),
	}
	o.nextFilter.Store(&cfg.Filter)
	return o
}

// SetFilter changes which flows are hanat's (after a reload) and resyncs:
// flows that no longer match leave the fast path.
func (o *engine) SetFilter(f conntrack.Filter) {
	o.nextFilter.Store(&f)
	o.requestResync()
}

// takeFilter makes the latest SetFilter the engine's (at the start of
// each batch, sweep and resync).
func (o *engine) takeFilter() { o.filter = *o.nextFilter.Load() }

func (o *engine) requestResync() {
	o.needResync.Store(true)
	select {
	case o.resyncReq <- struct{}{}:
	default:
	}
}

func (o *engine) close() {
	if o.unsubscribe != nil {
		o.unsubscribe()
	}
	if o.kernel != nil {
		if err := o.kernel.Close(); err != nil {
			o.log.Debug("close conntrack socket", "err", err)
		}
	}
}

// Run resyncs with the kernel table, then applies events and sweeps until
// ctx is done. It closes the engine's sockets when it returns; the flow map
// keeps its entries, so the fast path keeps forwarding them.
func (o *engine) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var reader sync.WaitGroup
	defer func() {
		cancel()
		reader.Wait() // the reader returns once ctx is done
		o.close()
	}()
	var readerDone chan error // nil (never ready) without a feed (unit tests)
	if o.feed != nil {
		readerDone = make(chan error, 1)
		reader.Go(func() { readerDone <- o.feed.Wait(ctx) })
	}
	o.requestResync()
	tick := time.NewTicker(min(o.cfg.SweepInterval, o.cfg.RetryInterval))
	defer tick.Stop()
	var lastSweep time.Duration
	batch := make([]conntrack.Event, 0, o.cfg.BatchSize)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-readerDone:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("conntrack offload: event feed: %w", err)
		case <-o.resyncReq:
			o.maybeResync(ctx)
		case ev := <-o.events:
			batch = append(batch[:0], ev)
		drain:
			for len(batch) < cap(batch) {
				select {
				case ev := <-o.events:
					batch = append(batch, ev)
				default:
					break drain
				}
			}
			o.apply(ctx, batch)
		case <-tick.C:
			now := o.now()
			if o.needResync.Load() {
				o.maybeResync(ctx)
			}
			if now-lastSweep >= o.cfg.SweepInterval {
				lastSweep = now
				o.sweep(ctx)
			} else {
				o.retry(ctx)
			}
		}
	}
}

// enqueue hands an event to the engine without ever blocking the reader: a
// full queue loses the event (counted) and schedules a resync.
func (o *engine) enqueue(ev conntrack.Event) {
	o.nEvents.Add(1)
	if o.unmarkedEnd(ev) {
		o.nSkipped.Add(1)
		return
	}
	select {
	case o.events <- ev:
	default:
		if o.nDropped.Add(1) == 1 {
			o.log.Warn("conntrack offload: event queue full, dropping events; a resync follows", "queue", cap(o.events))
		}
		o.requestResync()
	}
}

// unmarkedEnd reports whether ev is the DESTROY of an SNAT flow without
// the offload mark: the engine never offloads such a flow (offloadable),
// so it has no record of it. In a connection storm that is every event the
// engine gets (the ruleset limits a new flow's events to DESTROY), and the
// feed's goroutine drops it here instead of waking the engine for it. A
// record left behind by a lost DESTROY whose tuple a new, unmarked flow
// reuses (whose own DESTROY is dropped here) is forgotten by the resync
// that every lost event brings, or when the sweep reads the kernel entry
// and finds another connection's ID (sweep.go's verify).
func (o *engine) unmarkedEnd(ev conntrack.Event) bool {
	m := o.cfg.OffloadMark
	return m != 0 && ev.Kind == conntrack.EventDestroy && ev.Flow.SNAT && ev.Flow.Mark&m == 0
}

func (o *engine) overflowed() {
	n := o.nOverflows.Add(1)
	o.log.Warn("conntrack offload: event socket overflowed (ENOBUFS); resyncing", "overflows", n)
	o.requestResync()
}

func (o *engine) now() time.Duration {
	t, err := o.cfg.Clock()
	if err != nil {
		o.log.Error("conntrack offload: clock", "err", err)
	}
	return t
}

// publish makes rec's counters what Lookup answers for its connection:
// those of a connection that is or was offloaded, none for one that never
// was. Called by the engine's goroutine after each change of rec.
func (o *engine) publish(rec *record) {
	o.viewMu.Lock()
	defer o.viewMu.Unlock()
	if rec.state == 0 || (rec.state == stPending && rec.folded == [2]bpf.FlowStats{}) {
		delete(o.view, rec.orig)
		return
	}
	o.view[rec.orig] = FastCounters{
		Offloaded:    rec.state == stOffloaded,
		OrigPackets:  rec.folded[0].Packets + rec.fast[0].Packets,
		OrigBytes:    rec.folded[0].Bytes + rec.fast[0].Bytes,
		ReplyPackets: rec.folded[1].Packets + rec.fast[1].Packets,
		ReplyBytes:   rec.folded[1].Bytes + rec.fast[1].Bytes,
	}
}

// publishStats makes the engine's counters what Stats answers (at the end
// of each batch, sweep, retry and resync).
func (o *engine) publishStats() {
	o.viewMu.Lock()
	defer o.viewMu.Unlock()
	o.shown = o.stats
	o.shown.Offloaded, o.shown.Pending = o.offloaded, o.pending
}

// Stats returns the engine's counters as of its last batch, sweep or
// resync. It never waits for one to finish.
func (o *engine) Stats() EngineStats {
	o.viewMu.Lock()
	s := o.shown
	o.viewMu.Unlock()
	s.Events = o.nEvents.Load()
	s.EventsDropped = o.nDropped.Load()
	s.EventsSkipped = o.nSkipped.Load()
	s.Overflows = o.nOverflows.Load()
	return s
}

// Lookup returns the fast-path counters of the connection whose original
// tuple is orig, as of the last sweep (at most SweepInterval old), and
// false for a connection the engine never offloaded. It never waits for a
// sweep or a netlink call.
func (o *engine) Lookup(orig conntrack.Tuple) (FastCounters, bool) {
	o.viewMu.Lock()
	defer o.viewMu.Unlock()
	c, ok := o.view[orig]
	return c, ok
}

//go:build linux

package conntrack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	ct "github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/hanat/hanat/bpf"
)

// The offload engine: conntrack decides, the XDP fast path forwards.
//
// It follows the kernel's conntrack events in the NAT's namespace. A TCP
// flow that is ASSURED and ESTABLISHED, or a UDP flow that is ASSURED, and
// that hanat NATs (Filter) is written into the fast path's flow map in both
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
	IterateFlows(func(bpf.FlowKey, bpf.FlowAction, bpf.FlowStats) bool) error
}

// Path is how the NAT forwards one direction of a flow: where its packets
// arrive, where they leave, the MACs to write and the egress MTU.
type Path struct {
	InIfindex, OutIfindex uint32
	SrcMAC, DstMAC        net.HardwareAddr
	MTU                   uint16
}

// PathResolver finds the Path of packets from src to dst as the kernel
// routes them (src before SNAT, dst after DNAT). An error means "do not
// offload now": the flow stays on the slow path and is retried later (for
// instance while the next hop's neighbour entry is unresolved). It must
// never answer with a guessed MAC.
type PathResolver interface {
	Resolve(ctx context.Context, src, dst netip.Addr) (Path, error)
}

// OffloadConfig tunes the engine. Zero values mean the defaults.
type OffloadConfig struct {
	// Filter selects hanat's flows; only those are offloaded. SetFilter
	// changes it later.
	Filter Filter
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
	// BatchSize is the most events applied under one lock; default 512.
	BatchSize int
	// ReadBuffer is the event socket's receive buffer in bytes (set with
	// SO_RCVBUFFORCE, which ignores net.core.rmem_max); default 16 MiB.
	ReadBuffer int
	// Events, when set, is the daemon's shared conntrack event socket:
	// the engine subscribes to it (UPDATE and DESTROY) instead of opening
	// a socket of its own, and ReadBuffer does not apply.
	Events *EventFeed
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

// Defaults of OffloadConfig.
const (
	DefaultOffloadTCPTimeout = 350 * time.Second
	DefaultOffloadUDPTimeout = 120 * time.Second
	defaultRetryInterval     = time.Second
	defaultQueueLen          = 1 << 16
	defaultBatchSize         = 512
	defaultReadBuffer        = 16 << 20
	pathCacheTTL             = 2 * time.Second
	pathCacheMax             = 1 << 16
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

func (c OffloadConfig) withDefaults() OffloadConfig {
	if c.TCPTimeout <= 0 {
		c.TCPTimeout = DefaultOffloadTCPTimeout
	}
	if c.UDPTimeout <= 0 {
		c.UDPTimeout = DefaultOffloadUDPTimeout
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
	if c.ReadBuffer <= 0 {
		c.ReadBuffer = defaultReadBuffer
	}
	if c.Clock == nil {
		c.Clock = bpf.KtimeNow
	}
	return c
}

// OffloadStats counts what the engine did since it started.
type OffloadStats struct {
	Offloaded int `json:"offloaded"` // connections in the fast path now
	Pending   int `json:"pending"`   // offloadable, waiting for a path
	// Events decoded; EventsDropped lost to a full queue; Overflows are
	// ENOBUFS reports of the event socket (an unknown number of events
	// lost each); Resyncs full dumps.
	Events        uint64 `json:"events"`
	EventsDropped uint64 `json:"events_dropped"`
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
}

// FastCounters are the fast path's counters of one connection: packets and
// bytes it forwarded in the original and the reply direction, which the
// kernel's own conntrack counters do not include.
type FastCounters struct {
	Offloaded                                        bool // in the flow map now
	OrigPackets, OrigBytes, ReplyPackets, ReplyBytes uint64
}

// ctKernel is what the engine asks of the kernel's conntrack table.
type ctKernel interface {
	// dump visits every IPv4 entry; reset is called before each attempt.
	dump(ctx context.Context, reset func(), visit func(*ct.Flow)) error
	// setTimeout sets the entry's remaining timeout; an error wrapping
	// errFlowGone means the entry does not exist.
	setTimeout(orig Tuple, timeout time.Duration) error
	// lookup returns the entry as an update event would carry it, or
	// errFlowGone.
	lookup(orig Tuple) (ctEvent, error)
	close() error
}

var errFlowGone = errors.New("conntrack entry gone")

type evKind uint8

const (
	evNew evKind = iota + 1
	evUpdate
	evDestroy
)

// ctEvent is one decoded conntrack event.
type ctEvent struct {
	kind evKind
	flow Flow
	// plain: no helper, no sequence adjustment, zone 0, IPv4 — a flow the
	// fast path can forward without the kernel's help.
	plain bool
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
	orig, reply Tuple
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
}

type pathKey struct{ src, dst netip.Addr }

type cachedPath struct {
	p   Path
	err error
	at  time.Duration
}

// Offloader is the offload engine. Create it with NewOffloader and run it
// with Run; Stats and Lookup are safe to call from other goroutines.
type Offloader struct {
	log    *slog.Logger
	cfg    OffloadConfig
	fm     FlowMap
	paths  PathResolver
	kernel ctKernel
	events chan ctEvent
	// source reads the kernel's events; nil in unit tests.
	source eventSource

	resyncReq  chan struct{}
	needResync atomic.Bool

	// counters updated by the reader goroutine
	nEvents, nDropped, nOverflows atomic.Uint64

	mu         sync.Mutex // guards everything below
	filter     Filter
	recs       map[Tuple]*record
	byKey      map[bpf.FlowKey]*record
	offloaded  int
	pending    int
	cache      map[pathKey]cachedPath
	gen        uint64
	synced     bool // a resync completed: map entries without a record are stale
	lastResync time.Duration
	stats      OffloadStats
}

// eventSource delivers the kernel's conntrack events.
type eventSource interface {
	// run reads events until ctx is done, handing each to emit and
	// reporting socket overflows (ENOBUFS) to overflow.
	run(ctx context.Context, emit func(ctEvent), overflow func()) error
	close() error
}

// NewOffloader subscribes to the conntrack events of the network namespace
// netnsFD (-1: the caller's) and prepares the engine that keeps fm in step
// with them. It needs CAP_NET_ADMIN in that namespace. Nothing is offloaded
// before Run.
func NewOffloader(log *slog.Logger, netnsFD int, fm FlowMap, paths PathResolver, cfg OffloadConfig) (*Offloader, error) {
	cfg = cfg.withDefaults()
	if netnsFD == 0 {
		return nil, fmt.Errorf("conntrack offload (netns fd 0): fd 0 is not usable as a namespace fd, pass -1 for the current namespace")
	}
	k, err := openKernel(log, netnsFD)
	if err != nil {
		return nil, fmt.Errorf("conntrack offload: %w", err)
	}
	o := newOffloader(log, fm, paths, k, cfg)
	// Subscribe before the first dump (Run's resync), so no change falls
	// between them: to the shared feed (events queue until Run drains
	// them) or on a socket of the engine's own.
	if cfg.Events != nil {
		unsubscribe, err := cfg.Events.subscribe(true, o.enqueue, o.overflowed)
		if err != nil {
			k.close()
			return nil, fmt.Errorf("conntrack offload: %w", err)
		}
		o.source = &feedSource{feed: cfg.Events, unsubscribe: unsubscribe}
		return o, nil
	}
	src, err := dialEvents(netnsFD, cfg.ReadBuffer, log, ctGroups...)
	if err != nil {
		k.close()
		return nil, fmt.Errorf("conntrack offload: %w", err)
	}
	o.source = src
	return o, nil
}

func newOffloader(log *slog.Logger, fm FlowMap, paths PathResolver, k ctKernel, cfg OffloadConfig) *Offloader {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.withDefaults()
	return &Offloader{
		log:       log,
		cfg:       cfg,
		fm:        fm,
		paths:     paths,
		kernel:    k,
		events:    make(chan ctEvent, cfg.QueueLen),
		resyncReq: make(chan struct{}, 1),
		filter:    cfg.Filter,
		recs:      make(map[Tuple]*record),
		byKey:     make(map[bpf.FlowKey]*record),
		cache:     make(map[pathKey]cachedPath),
	}
}

// SetFilter changes which flows are hanat's (after a reload) and resyncs:
// flows that no longer match leave the fast path.
func (o *Offloader) SetFilter(f Filter) {
	o.mu.Lock()
	o.filter = f
	o.mu.Unlock()
	o.requestResync()
}

func (o *Offloader) requestResync() {
	o.needResync.Store(true)
	select {
	case o.resyncReq <- struct{}{}:
	default:
	}
}

// Run resyncs with the kernel table, then applies events and sweeps until
// ctx is done. It closes the engine's sockets when it returns; the flow map
// keeps its entries, so the fast path keeps forwarding them.
func (o *Offloader) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var reader sync.WaitGroup
	defer func() {
		cancel()
		reader.Wait() // the reader returns once ctx is done
		o.closeSockets()
	}()
	var readerDone chan error // nil (never ready) without a source
	if o.source != nil {
		readerDone = make(chan error, 1)
		reader.Add(1)
		go func() {
			defer reader.Done()
			readerDone <- o.source.run(ctx, o.enqueue, o.overflowed)
		}()
	}
	o.requestResync()
	tick := time.NewTicker(min(o.cfg.SweepInterval, o.cfg.RetryInterval))
	defer tick.Stop()
	var lastSweep time.Duration
	batch := make([]ctEvent, 0, o.cfg.BatchSize)
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-readerDone:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("conntrack offload: event reader: %w", err)
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

func (o *Offloader) closeSockets() {
	if o.source != nil {
		if err := o.source.close(); err != nil {
			o.log.Debug("close conntrack event socket", "err", err)
		}
	}
	if o.kernel != nil {
		if err := o.kernel.close(); err != nil {
			o.log.Debug("close conntrack socket", "err", err)
		}
	}
}

// enqueue hands an event to the engine without ever blocking the reader: a
// full queue loses the event (counted) and schedules a resync.
func (o *Offloader) enqueue(ev ctEvent) {
	o.nEvents.Add(1)
	select {
	case o.events <- ev:
	default:
		if o.nDropped.Add(1) == 1 {
			o.log.Warn("conntrack offload: event queue full, dropping events; a resync follows", "queue", cap(o.events))
		}
		o.requestResync()
	}
}

func (o *Offloader) overflowed() {
	n := o.nOverflows.Add(1)
	o.log.Warn("conntrack offload: event socket overflowed (ENOBUFS); resyncing", "overflows", n)
	o.requestResync()
}

func (o *Offloader) now() time.Duration {
	t, err := o.cfg.Clock()
	if err != nil {
		o.log.Error("conntrack offload: clock", "err", err)
	}
	return t
}

// maybeResync runs a resync unless one ran very recently (then the tick
// retries it).
func (o *Offloader) maybeResync(ctx context.Context) {
	if !o.needResync.Load() {
		return
	}
	now := o.now()
	o.mu.Lock()
	recent := o.synced && now-o.lastResync < minResyncGap
	o.mu.Unlock()
	if recent {
		return
	}
	o.needResync.Store(false)
	if err := o.resync(ctx); err != nil {
		if ctx.Err() != nil {
			return
		}
		o.log.Error("conntrack offload: resync failed; retrying", "err", err)
		o.needResync.Store(true)
	}
}

// apply processes a batch of events; the last event of each connection
// wins (which is the kernel's latest word on it).
func (o *Offloader) apply(ctx context.Context, batch []ctEvent) {
	last := make(map[Tuple]int, len(batch))
	for i := range batch {
		last[batch[i].flow.Original] = i
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.now()
	for i := range batch {
		if last[batch[i].flow.Original] != i {
			continue
		}
		o.handle(ctx, now, batch[i])
	}
}

// offloadable reports whether the fast path may carry f.
func (o *Offloader) offloadable(ev ctEvent) bool {
	f := &ev.flow
	if !ev.plain || !f.Assured {
		return false
	}
	marked := o.cfg.OffloadMark != 0 && f.Mark&o.cfg.OffloadMark != 0
	if o.cfg.OffloadMark != 0 && f.SNAT && !marked {
		return false
	}
	switch f.Original.Proto {
	case protoTCP:
		if f.TCPState != "ESTABLISHED" && !(marked && f.TCPState == "") {
			return false
		}
	case protoUDP:
	default:
		return false
	}
	return o.filter.Match(*f)
}

// handle applies one event; o.mu is held.
func (o *Offloader) handle(ctx context.Context, now time.Duration, ev ctEvent) {
	key := ev.flow.Original
	rec := o.recs[key]
	if rec != nil && ev.flow.ID != 0 && rec.id != ev.flow.ID {
		// The tuple belongs to a new connection: the old one is gone
		// (its DESTROY was lost or is still queued).
		o.forget(rec)
		rec = nil
	}
	if ev.kind == evDestroy {
		if rec != nil {
			o.forget(rec)
		}
		return
	}
	if !o.offloadable(ev) {
		if rec == nil {
			return
		}
		switch rec.state {
		case stOffloaded:
			o.unoffload(rec)
			o.setState(rec, stDone)
		case stPending:
			o.forget(rec)
		}
		return
	}
	if rec == nil {
		if o.offloaded+o.pending >= o.cfg.MaxFlows {
			o.stats.Full++
			return
		}
		rec = &record{id: ev.flow.ID, orig: ev.flow.Original, reply: ev.flow.Reply, timeout: o.timeoutFor(ev.flow.Original.Proto)}
		o.recs[key] = rec
		o.setState(rec, stPending)
	}
	if d := now + ev.flow.Timeout; d > rec.kernelDeadline {
		rec.kernelDeadline = d
	}
	switch rec.state {
	case stPending:
		o.tryOffload(ctx, now, rec)
	case stDone:
		// Offloadable again (seen in a resync after a restart, say).
		o.setState(rec, stPending)
		o.tryOffload(ctx, now, rec)
	}
}

func (o *Offloader) timeoutFor(proto uint8) time.Duration {
	if proto == protoTCP {
		return o.cfg.TCPTimeout
	}
	return o.cfg.UDPTimeout
}

// tryOffload resolves both directions' paths and writes them; on failure
// the record stays pending and is retried after RetryInterval.
func (o *Offloader) tryOffload(ctx context.Context, now time.Duration, rec *record) {
	keys, acts, err := o.entries(ctx, now, rec)
	if err != nil {
		o.stats.PathErrors++
		rec.retryAt = now + o.cfg.RetryInterval
		o.log.Debug("conntrack offload: not offloading yet", "flow", rec.orig.String(), "err", err)
		return
	}
	if err := o.put(keys, acts); err != nil {
		o.stats.MapErrors++
		rec.retryAt = now + o.cfg.RetryInterval
		o.log.Warn("conntrack offload: flow map write failed", "flow", rec.orig.String(), "err", err)
		return
	}
	rec.keys, rec.acts = keys, acts
	rec.resolvedAt = now
	rec.lastSeen = now
	rec.lastPackets = [2]uint64{}
	rec.fast = [2]bpf.FlowStats{}
	o.byKey[keys[0]] = rec
	o.byKey[keys[1]] = rec
	o.setState(rec, stOffloaded)
	o.stats.Offloads++
}

// setState moves rec to st (0: being forgotten), keeping the offloaded and
// pending counts; o.mu is held.
func (o *Offloader) setState(rec *record, st recState) {
	switch rec.state {
	case stOffloaded:
		o.offloaded--
	case stPending:
		o.pending--
	}
	switch st {
	case stOffloaded:
		o.offloaded++
	case stPending:
		o.pending++
	}
	rec.state = st
}

// entries computes both map entries of a connection (o.mu held):
//
//	original: Original.Src → Original.Dst  becomes  Reply.Dst → Reply.Src
//	reply:    Reply.Src → Reply.Dst        becomes  Original.Dst → Original.Src
//
// which is SNAT out / un-SNAT back for a private host's flow and DNAT in /
// un-DNAT back for a port forward. The kernel routes the original
// direction from Original.Src to Reply.Src (after DNAT, before SNAT) and
// the reply direction from Reply.Src to Original.Src.
func (o *Offloader) entries(ctx context.Context, now time.Duration, rec *record) ([2]bpf.FlowKey, [2]bpf.FlowAction, error) {
	var keys [2]bpf.FlowKey
	var acts [2]bpf.FlowAction
	po, err := o.path(ctx, now, rec.orig.Src.Addr(), rec.reply.Src.Addr())
	if err != nil {
		return keys, acts, err
	}
	pr, err := o.path(ctx, now, rec.reply.Src.Addr(), rec.orig.Src.Addr())
	if err != nil {
		return keys, acts, err
	}
	if in := max(po.InIfindex, pr.InIfindex); in > bpf.MaxIfindex {
		// Beyond what the fast path's key holds: such flows stay on
		// the slow path (a path error, retried quietly).
		return keys, acts, fmt.Errorf("flow %s: ingress ifindex %d above %d, the fast path's limit", rec.orig, in, bpf.MaxIfindex)
	}
	proto := rec.orig.Proto
	keys[0] = bpf.FlowKey{Ifindex: po.InIfindex, Proto: proto, Src: rec.orig.Src, Dst: rec.orig.Dst}
	acts[0] = bpf.FlowAction{NewSrc: rec.reply.Dst, NewDst: rec.reply.Src, EgressIfindex: po.OutIfindex, SrcMAC: po.SrcMAC, DstMAC: po.DstMAC, MTU: po.MTU}
	keys[1] = bpf.FlowKey{Ifindex: pr.InIfindex, Proto: proto, Src: rec.reply.Src, Dst: rec.reply.Dst}
	acts[1] = bpf.FlowAction{NewSrc: rec.orig.Dst, NewDst: rec.orig.Src, EgressIfindex: pr.OutIfindex, SrcMAC: pr.SrcMAC, DstMAC: pr.DstMAC, MTU: pr.MTU}
	// Outbound (private host → internet) is the direction whose packets
	// come from a private host: the original one of an SNAT flow, the
	// reply of a port forward. It only picks the fast path's direction
	// totals.
	acts[0].Outbound = o.filter.private(rec.orig.Src.Addr())
	acts[1].Outbound = o.filter.private(rec.reply.Src.Addr())
	if keys[0] == keys[1] {
		return keys, acts, fmt.Errorf("flow %s: both directions have the same key", rec.orig)
	}
	return keys, acts, nil
}

// path resolves through a short-lived cache: a connection storm between
// the same hosts resolves each pair once per pathCacheTTL. Failures are
// cached for RetryInterval/2 so one unresolved next hop does not cost a
// netlink round trip per flow.
func (o *Offloader) path(ctx context.Context, now time.Duration, src, dst netip.Addr) (Path, error) {
	k := pathKey{src, dst}
	if c, ok := o.cache[k]; ok {
		ttl := pathCacheTTL
		if c.err != nil {
			ttl = o.cfg.RetryInterval / 2
		}
		if now-c.at < ttl {
			return c.p, c.err
		}
	}
	p, err := o.paths.Resolve(ctx, src, dst)
	if len(o.cache) >= pathCacheMax {
		clear(o.cache)
	}
	o.cache[k] = cachedPath{p: p, err: err, at: now}
	return p, err
}

// put writes both directions, or neither.
func (o *Offloader) put(keys [2]bpf.FlowKey, acts [2]bpf.FlowAction) error {
	if err := o.fm.PutFlow(keys[0], acts[0]); err != nil {
		return err
	}
	if err := o.fm.PutFlow(keys[1], acts[1]); err != nil {
		if derr := o.fm.DeleteFlow(keys[0]); derr != nil && !errors.Is(derr, bpf.ErrFlowNotFound) {
			return errors.Join(err, derr)
		}
		return err
	}
	return nil
}

// unoffload deletes the connection's map entries and folds their counters
// into the record; the caller then sets its state. o.mu is held.
func (o *Offloader) unoffload(rec *record) {
	if rec.state != stOffloaded {
		return
	}
	for i, k := range rec.keys {
		// The entry's final counters, newer than the last sweep's.
		if _, st, err := o.fm.LookupFlow(k); err == nil && st.Packets >= rec.fast[i].Packets {
			rec.fast[i] = st
		}
		if err := o.fm.DeleteFlow(k); err != nil && !errors.Is(err, bpf.ErrFlowNotFound) {
			o.stats.MapErrors++
			o.log.Warn("conntrack offload: flow map delete failed", "flow", rec.orig.String(), "err", err)
		}
		rec.folded[i].Packets += rec.fast[i].Packets
		rec.folded[i].Bytes += rec.fast[i].Bytes
		if o.byKey[k] == rec {
			delete(o.byKey, k)
		}
	}
	rec.fast = [2]bpf.FlowStats{}
	o.stats.Removals++
}

// forget drops the record (the kernel entry is gone); o.mu is held.
func (o *Offloader) forget(rec *record) {
	o.unoffload(rec)
	o.setState(rec, 0)
	delete(o.recs, rec.orig)
}

// resync compares the whole kernel table with the engine's records:
// offloadable flows are offloaded (already offloaded ones keep their map
// entries and counters), records of vanished flows are dropped.
func (o *Offloader) resync(ctx context.Context) error {
	var found []ctEvent
	var gen uint64
	o.mu.Lock()
	filter := o.filter
	o.mu.Unlock()
	err := o.kernel.dump(ctx, func() {
		found = found[:0]
		o.mu.Lock()
		o.gen++
		gen = o.gen
		o.mu.Unlock()
	}, func(c *ct.Flow) {
		f := FlowFrom(c)
		if !filter.Match(f) {
			return
		}
		// Mark under the lock only what we already know; collect the
		// rest (bounded: beyond MaxFlows nothing more is offloaded).
		o.mu.Lock()
		if rec := o.recs[f.Original]; rec != nil && rec.id == f.ID {
			rec.seenGen = gen
		}
		o.mu.Unlock()
		if len(found) < o.cfg.MaxFlows*2 {
			found = append(found, ctEvent{kind: evUpdate, flow: f, plain: plainFlow(c)})
		}
	})
	if err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	now := o.now()
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, rec := range o.recs {
		if rec.seenGen != gen {
			o.forget(rec)
		}
	}
	for i := range found {
		o.handle(ctx, now, found[i])
	}
	o.synced = true
	o.lastResync = now
	o.stats.Resyncs++
	o.log.Info("conntrack offload: resynced with the kernel table", "offloaded", o.offloaded, "pending", o.pending)
	return nil
}

// sweep refreshes the kernel timeouts of active offloaded flows, notices
// flows the kernel dropped without telling us and entries the map evicted,
// folds counters, removes stale entries, retries pending flows and
// rechecks old paths.
func (o *Offloader) sweep(ctx context.Context) {
	o.mu.Lock()
	defer o.mu.Unlock()
	now := o.now()
	seen := make(map[bpf.FlowKey]bpf.FlowStats, len(o.byKey))
	var stale []bpf.FlowKey
	err := o.fm.IterateFlows(func(k bpf.FlowKey, _ bpf.FlowAction, s bpf.FlowStats) bool {
		if _, ok := o.byKey[k]; ok {
			seen[k] = s
		} else if len(stale) < 1<<16 {
			stale = append(stale, k)
		}
		return true
	})
	if err != nil {
		o.stats.MapErrors++
		o.log.Warn("conntrack offload: read flow map", "err", err)
		return
	}
	if o.synced {
		for _, k := range stale {
			if err := o.fm.DeleteFlow(k); err == nil {
				o.stats.StaleEntries++
			}
		}
	}
	refreshAhead := 2*o.cfg.SweepInterval + time.Second
	for _, rec := range o.recs {
		if rec.state != stOffloaded {
			continue
		}
		s0, ok0 := seen[rec.keys[0]]
		s1, ok1 := seen[rec.keys[1]]
		if !ok0 || !ok1 {
			// The LRU map evicted a direction (or someone deleted it):
			// take out the other one too and offload again later.
			if ok0 {
				rec.fast[0] = s0
			}
			if ok1 {
				rec.fast[1] = s1
			}
			o.unoffload(rec)
			o.setState(rec, stPending)
			rec.retryAt = now + o.cfg.RetryInterval
			o.stats.Evicted++
			continue
		}
		rec.fast = [2]bpf.FlowStats{s0, s1}
		// Activity is a packet counter that moved (compared per
		// direction with !=: the fast path's plain adds may lose an
		// increment or, rarely, step back, but a busy counter never
		// stands still). Its last packet came after the previous sweep
		// and by now; taking now keeps the flow at most one sweep
		// longer than its idle timeout, never shorter.
		if pk := [2]uint64{s0.Packets, s1.Packets}; pk != rec.lastPackets {
			rec.lastSeen = now
			rec.lastPackets = pk
		}
		desired := rec.lastSeen + rec.timeout
		switch {
		case desired > rec.kernelDeadline+time.Second && rec.kernelDeadline-now <= refreshAhead:
			// Busy on the fast path and the kernel entry expires soon.
			// Look at it first: an entry that left ESTABLISHED without
			// telling us (entries created before anyone listened carry
			// no events) must not be kept alive, only unoffloaded.
			if !o.verify(ctx, now, rec) {
				continue
			}
			left := desired - now
			if err := o.kernel.setTimeout(rec.orig, left); err != nil {
				if errors.Is(err, errFlowGone) {
					o.stats.Expired++
					o.forget(rec)
					continue
				}
				o.log.Warn("conntrack offload: refresh kernel timeout", "flow", rec.orig.String(), "err", err)
				continue
			}
			rec.kernelDeadline = now + left.Truncate(time.Second)
			o.stats.Refreshes++
		case now >= desired && now >= rec.kernelDeadline:
			// Idle longer than the timeout: the kernel should have
			// dropped it. If it did and we missed the event, forget
			// the flow; if the slow path kept it alive, believe it.
			o.verify(ctx, now, rec)
		case rec.kernelDeadline-now <= o.cfg.SweepInterval+time.Second:
			// Idle, and the kernel entry expires before the next
			// sweep. Hand the flow back to the slow path now: the
			// kernel's own expiry then applies to the second, and a
			// segment after it gets the NAT gateway's answer (a RST,
			// rule reset_no_flow) instead of being forwarded by the
			// fast path until a sweep or the kernel's late DESTROY
			// notices. A flow the slow path keeps alive meanwhile is
			// offloaded again after the deadline (retryLocked).
			o.unoffload(rec)
			o.setState(rec, stPending)
			rec.idleHandback = true
			rec.retryAt = rec.kernelDeadline + time.Second
			o.stats.IdleHandbacks++
		}
	}
	o.recheckPaths(ctx, now)
	o.retryLocked(ctx, now)
	for k, c := range o.cache {
		if now-c.at >= pathCacheTTL {
			delete(o.cache, k)
		}
	}
	o.syncCounts()
}

// verify reads the kernel entry of an offloaded flow and applies it as an
// update event would; it reports whether the flow is still offloaded.
// o.mu is held.
func (o *Offloader) verify(ctx context.Context, now time.Duration, rec *record) bool {
	ev, err := o.kernel.lookup(rec.orig)
	switch {
	case errors.Is(err, errFlowGone):
		o.stats.Expired++
		o.forget(rec)
		return false
	case err != nil:
		o.log.Warn("conntrack offload: read kernel entry", "flow", rec.orig.String(), "err", err)
		return true
	}
	o.handle(ctx, now, ev) // also moves kernelDeadline to what the kernel says
	return o.recs[rec.orig] == rec && rec.state == stOffloaded
}

// recheckPaths re-resolves the paths of up to recheckPerSweep flows
// resolved more than pathRecheckAge ago and rewrites those that changed (a
// next hop's new MAC, a new route); o.mu is held.
func (o *Offloader) recheckPaths(ctx context.Context, now time.Duration) {
	n := 0
	for _, rec := range o.recs {
		if n >= recheckPerSweep {
			return
		}
		if rec.state != stOffloaded || now-rec.resolvedAt < pathRecheckAge {
			continue
		}
		n++
		keys, acts, err := o.entries(ctx, now, rec)
		if err != nil {
			// The path went away: back to the slow path, retry later.
			o.unoffload(rec)
			o.setState(rec, stPending)
			rec.retryAt = now + o.cfg.RetryInterval
			o.stats.PathErrors++
			continue
		}
		rec.resolvedAt = now
		if keys == rec.keys && sameActions(acts, rec.acts) {
			continue
		}
		o.unoffload(rec)
		o.setState(rec, stPending)
		o.tryOffload(ctx, now, rec)
	}
}

func sameActions(a, b [2]bpf.FlowAction) bool {
	for i := range a {
		if a[i].NewSrc != b[i].NewSrc || a[i].NewDst != b[i].NewDst || a[i].EgressIfindex != b[i].EgressIfindex ||
			a[i].MTU != b[i].MTU || a[i].Outbound != b[i].Outbound || a[i].SrcMAC.String() != b[i].SrcMAC.String() || a[i].DstMAC.String() != b[i].DstMAC.String() {
			return false
		}
	}
	return true
}

// retry tries pending flows whose retry time has come.
func (o *Offloader) retry(ctx context.Context) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.retryLocked(ctx, o.now())
}

func (o *Offloader) retryLocked(ctx context.Context, now time.Duration) {
	n := 0
	for _, rec := range o.recs {
		if n >= retriesPerSweep {
			return
		}
		if rec.state != stPending || rec.retryAt > now {
			continue
		}
		n++
		if rec.idleHandback {
			o.retryHandedBack(ctx, now, rec)
			continue
		}
		o.tryOffload(ctx, now, rec)
	}
}

// retryHandedBack looks at the kernel entry of a flow the sweep handed
// back to the slow path when it went idle: gone (expired), it is
// forgotten; still expiring before the next sweep, it stays on the slow
// path; kept alive by slow-path traffic, it is offloaded again. o.mu is
// held.
func (o *Offloader) retryHandedBack(ctx context.Context, now time.Duration, rec *record) {
	ev, err := o.kernel.lookup(rec.orig)
	switch {
	case errors.Is(err, errFlowGone):
		o.stats.Expired++
		o.forget(rec)
		return
	case err != nil:
		o.log.Warn("conntrack offload: read kernel entry", "flow", rec.orig.String(), "err", err)
		rec.retryAt = now + o.cfg.RetryInterval
		return
	}
	if left := ev.flow.Timeout; left <= o.cfg.SweepInterval+time.Second {
		rec.retryAt = now + left + time.Second
		return
	}
	rec.idleHandback = false
	o.handle(ctx, now, ev)
}

func (o *Offloader) syncCounts() {
	o.stats.Offloaded = o.offloaded
	o.stats.Pending = o.pending
}

// Stats returns the engine's counters.
func (o *Offloader) Stats() OffloadStats {
	o.mu.Lock()
	s := o.stats
	s.Offloaded, s.Pending = o.offloaded, o.pending
	o.mu.Unlock()
	s.Events = o.nEvents.Load()
	s.EventsDropped = o.nDropped.Load()
	s.Overflows = o.nOverflows.Load()
	return s
}

// Lookup returns the fast-path counters of the connection whose original
// tuple is orig, as of the last sweep (at most SweepInterval old), and
// false for a connection the engine never offloaded.
func (o *Offloader) Lookup(orig Tuple) (FastCounters, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	rec := o.recs[orig]
	if rec == nil || (rec.state == stPending && rec.folded == [2]bpf.FlowStats{}) {
		return FastCounters{}, false
	}
	return FastCounters{
		Offloaded:    rec.state == stOffloaded,
		OrigPackets:  rec.folded[0].Packets + rec.fast[0].Packets,
		OrigBytes:    rec.folded[0].Bytes + rec.fast[0].Bytes,
		ReplyPackets: rec.folded[1].Packets + rec.fast[1].Packets,
		ReplyBytes:   rec.folded[1].Bytes + rec.fast[1].Bytes,
	}, true
}

// plainFlow reports whether the kernel needs to see the flow's packets for
// reasons beyond tracking: a helper (FTP, SIP, …) reads payloads, sequence
// adjustment rewrites TCP sequence numbers, zones and IPv6 are not what the
// fast path's keys describe.
func plainFlow(c *ct.Flow) bool {
	if c.Helper.Name != "" || c.Zone != 0 {
		return false
	}
	if c.SeqAdjOrig != (ct.SequenceAdjust{}) || c.SeqAdjReply != (ct.SequenceAdjust{}) {
		return false
	}
	return c.TupleOrig.IP.SourceAddress.Unmap().Is4() && c.TupleReply.IP.SourceAddress.Unmap().Is4()
}

// eventFrom converts a decoded ti-mo event; ok is false for events that
// carry no flow (expectations).
func eventFrom(ev *ct.Event) (ctEvent, bool) {
	if ev.Flow == nil {
		return ctEvent{}, false
	}
	var kind evKind
	switch ev.Type {
	case ct.EventNew:
		kind = evNew
	case ct.EventUpdate:
		kind = evUpdate
	case ct.EventDestroy:
		kind = evDestroy
	default:
		return ctEvent{}, false
	}
	return ctEvent{kind: kind, flow: FlowFrom(ev.Flow), plain: plainFlow(ev.Flow)}, true
}

// nlKernel is ctKernel over ctnetlink.
type nlKernel struct {
	table *Table
	conn  *ct.Conn
}

func openKernel(log *slog.Logger, netnsFD int) (*nlKernel, error) {
	t, err := Open(log, netnsFD)
	if err != nil {
		return nil, err
	}
	c, err := dialCT(netnsFD)
	if err != nil {
		t.Close()
		return nil, err
	}
	return &nlKernel{table: t, conn: c}, nil
}

func (k *nlKernel) dump(ctx context.Context, reset func(), visit func(*ct.Flow)) error {
	return k.table.walk(ctx, netfilter.ProtoIPv4, reset, visit)
}

func ctTupleOf(t Tuple) ct.Tuple {
	return ct.Tuple{
		IP: ct.IPTuple{SourceAddress: t.Src.Addr(), DestinationAddress: t.Dst.Addr()},
		Proto: ct.ProtoTuple{
			Protocol:        t.Proto,
			SourcePort:      t.Src.Port(),
			DestinationPort: t.Dst.Port(),
		},
	}
}

func (k *nlKernel) setTimeout(orig Tuple, timeout time.Duration) error {
	secs := uint32((timeout + time.Second - 1) / time.Second)
	if secs == 0 {
		secs = 1
	}
	err := k.conn.Update(ct.Flow{TupleOrig: ctTupleOf(orig), Timeout: secs})
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("update %s: %w", orig, errFlowGone)
	}
	if err != nil {
		return fmt.Errorf("conntrack update %s timeout %ds: %w", orig, secs, err)
	}
	return nil
}

func (k *nlKernel) lookup(orig Tuple) (ctEvent, error) {
	f, err := k.conn.Get(ct.Flow{TupleOrig: ctTupleOf(orig)})
	if errors.Is(err, unix.ENOENT) {
		return ctEvent{}, fmt.Errorf("get %s: %w", orig, errFlowGone)
	}
	if err != nil {
		return ctEvent{}, fmt.Errorf("conntrack get %s: %w", orig, err)
	}
	return ctEvent{kind: evUpdate, flow: FlowFrom(&f), plain: plainFlow(&f)}, nil
}

func (k *nlKernel) close() error {
	return errors.Join(k.table.Close(), k.conn.Close())
}

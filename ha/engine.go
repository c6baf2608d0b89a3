package ha

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"
)

// EngineConfig configures the ownership state machine.
type EngineConfig struct {
	NodeID string
	// ENI is this node's ENI: a route table pointing at it is ours. It
	// may be set later with SetENI.
	ENI string
	// Peer is true when a peer is configured. Without one the node owns
	// its home tables alone (it takes them once at start).
	Peer bool
	// Home are this node's route tables; Backup its peer's. More are
	// added with AddTables (discovery, the peer's heartbeat).
	Home, Backup []string
	// DeadAfter: the peer is dead after this long without a heartbeat
	// (interval × misses).
	DeadAfter time.Duration
	// Preempt: home tables held by a healthy peer return after HoldDown
	// by handshake. Without it they return only by an operator.
	Preempt  bool
	HoldDown time.Duration
	// GiveTimeout bounds how long a table handed to the peer (failover)
	// waits for the peer to take it before it is ours again.
	GiveTimeout time.Duration
	// OpTimeout bounds how long an operator takeover waits for the peer
	// to release a table.
	OpTimeout time.Duration
}

// Observation is what DescribeRouteTables says of a table's 0.0.0.0/0.
type Observation struct {
	// Target is the ENI (or other target: igw-…, nat-…) the default route
	// points at; "" when the table has no default route.
	Target    string
	Blackhole bool
}

type claimState int

const (
	claimNone   claimState = iota
	claimTaking            // ours, not yet written/confirmed
	claimHeld              // ours, written or seen pointing at us
)

func (c claimState) String() string {
	switch c {
	case claimTaking:
		return "taking"
	case claimHeld:
		return "held"
	}
	return "none"
}

// Change is one ownership change of a table on this node.
type Change struct {
	At     time.Time
	Claim  bool // true: this node claimed it; false: released it
	Reason string
}

type tableState struct {
	id         string
	home       bool
	claim      claimState
	offeredAt  time.Time // handed to the peer (failover), waiting for it to take
	releasedAt time.Time
	opWantAt   time.Time // operator takeover pending
	wantSeq    uint64    // seq of the first heartbeat carrying our want; 0: not wanting
	obs        Observation
	observed   bool
	observedAt time.Time
	last       Change
	changes    uint64
	lostAt     time.Time // when it was seen taken from us
	releaseSeq uint64    // first heartbeat after our last release
	offerSeq   uint64    // first heartbeat carrying our offer
	claimSeq   uint64    // first heartbeat carrying our last claim
	holdFrom   time.Time // an operator failover restarts the hold-down
	writing    bool      // a write of this table is in flight
	writeDone  time.Time // when the last write finished (landed or not)
	wroteAt    time.Time // when our last successful write finished
}

// writeSettle is how long after our own write a describe showing the
// table elsewhere is not believed yet (EC2's eventual consistency).
const writeSettle = 2 * time.Second

// Engine decides which route tables this node claims. It is pure: time is
// an argument, it does no I/O, and it is not safe for concurrent use.
// Inputs are heartbeats, health, route table observations and operator
// commands; outputs are the claims (tables to point at this node) and
// the next heartbeat's content.
//
// Rules (docs/ARCHITECTURE.md, "The HA rules"): take a table from the peer once, when the peer dies
// or turns unhealthy; never take a table back by itself (a table that
// moves away after it was ours is released, not rewritten); home tables
// return by handshake after a hold-down (Preempt) or by an operator;
// before giving a table away, stop claiming it.
type Engine struct {
	cfg    EngineConfig
	log    *slog.Logger
	start  time.Time
	tables map[string]*tableState

	healthy      bool
	healthReason string
	healthySince time.Time
	maintenance  bool

	peer struct {
		msg        *Message
		at         time.Time // last accepted heartbeat
		aliveSince time.Time
		epoch      uint64
	}
	prevAlive    bool // peer state at the last evaluation, for edges
	prevEligible bool
	graceOver    bool

	seq      uint64 // last heartbeat seq handed out by Outgoing
	counters map[string]uint64
}

// NewEngine returns an engine starting at now, healthy until told
// otherwise.
func NewEngine(log *slog.Logger, cfg EngineConfig, now time.Time) *Engine {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.GiveTimeout <= 0 {
		cfg.GiveTimeout = 10 * time.Second
	}
	if cfg.OpTimeout <= 0 {
		cfg.OpTimeout = 10 * time.Second
	}
	e := &Engine{cfg: cfg, log: log, start: now, tables: map[string]*tableState{},
		healthy: true, healthySince: now, counters: map[string]uint64{}}
	// Sequence numbers start at the start time, so an Ack left over from
	// this node's previous run is always lower than the new ones.
	if n := now.UnixNano(); n > 0 {
		e.seq = uint64(n)
	}
	// Before the first evaluation the peer counts as alive and eligible,
	// so a peer never heard of during the start grace is a death edge.
	e.prevAlive, e.prevEligible = true, true
	e.AddTables(cfg.Home, cfg.Backup)
	return e
}

// AddTables adds home and backup tables (ids already known keep their
// role; a table cannot be both: home wins).
func (e *Engine) AddTables(home, backup []string) {
	for _, id := range home {
		if t, ok := e.tables[id]; ok {
			t.home = true
			continue
		}
		e.tables[id] = &tableState{id: id, home: true}
	}
	for _, id := range backup {
		if _, ok := e.tables[id]; !ok {
			e.tables[id] = &tableState{id: id}
		}
	}
}

// SetENI sets this node's ENI.
func (e *Engine) SetENI(eni string) { e.cfg.ENI = eni }

// ENI is this node's ENI ("" while unknown).
func (e *Engine) ENI() string { return e.cfg.ENI }

// Tables returns every known table id, sorted.
func (e *Engine) Tables() []string {
	ids := make([]string, 0, len(e.tables))
	for id := range e.tables {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

func (e *Engine) sorted() []*tableState {
	out := make([]*tableState, 0, len(e.tables))
	for _, id := range e.Tables() {
		out = append(out, e.tables[id])
	}
	return out
}

// peerAlive reports a heartbeat within DeadAfter.
func (e *Engine) peerAlive(now time.Time) bool {
	return e.cfg.Peer && e.peer.msg != nil && now.Sub(e.peer.at) < e.cfg.DeadAfter
}

// peerEligible: alive, healthy and not in maintenance.
func (e *Engine) peerEligible(now time.Time) bool {
	return e.peerAlive(now) && e.peer.msg.Healthy && !e.peer.msg.Maintenance
}

func (e *Engine) eligible() bool { return e.healthy && !e.maintenance }

func (e *Engine) peerHas(list func(*Message) []string, id string) bool {
	return e.peer.msg != nil && slices.Contains(list(e.peer.msg), id)
}

func owned(m *Message) []string   { return m.Owned }
func wanted(m *Message) []string  { return m.Wanted }
func offered(m *Message) []string { return m.Offered }

// OnHeartbeat feeds an authenticated, fresh heartbeat from the peer.
func (e *Engine) OnHeartbeat(m *Message, now time.Time) {
	if !e.cfg.Peer {
		return
	}
	if !e.peerAlive(now) || m.Epoch != e.peer.epoch {
		e.peer.aliveSince = now
	}
	e.peer.msg, e.peer.at, e.peer.epoch = m, now, m.Epoch
	// The peer's home tables are the ones we back up.
	e.AddTables(nil, m.Home)
	e.evaluate(now)
}

// SetHealth records this node's health.
func (e *Engine) SetHealth(healthy bool, reason string, now time.Time) {
	if healthy != e.healthy {
		if healthy {
			e.healthySince = now
			e.log.Info("node healthy again")
		} else {
			e.log.Warn("node unhealthy", "reason", reason)
		}
		e.count("health_changes")
	}
	e.healthy, e.healthReason = healthy, reason
	if healthy {
		e.healthReason = ""
	}
	e.evaluate(now)
}

// Observe records what DescribeRouteTables says of table id. A table we
// held that now points elsewhere was taken (by the peer or an operator):
// it is released, never rewritten.
func (e *Engine) Observe(id string, o Observation, now time.Time) { e.ObserveSince(id, o, now, now) }

// ObserveSince is Observe for a DescribeRouteTables call that started at
// started. An answer that may predate this node's own write of the table
// (the call started before the write finished, or a write is in flight)
// is ignored: it could show the table where it was before we wrote it,
// which would read as "taken by the peer". The next describe decides.
func (e *Engine) ObserveSince(id string, o Observation, started, now time.Time) {
	t, ok := e.tables[id]
	if !ok {
		return
	}
	if t.writing || !started.After(t.writeDone) && !t.writeDone.IsZero() {
		e.count("observations_before_write")
		return
	}
	if t.claim == claimHeld && !e.isSelf(o) && !t.wroteAt.IsZero() && now.Sub(t.wroteAt) < writeSettle {
		// EC2 is eventually consistent: a describe just after our write
		// may still show the old target. Believe it once it persists.
		e.count("observations_stale_after_write")
		return
	}
	t.obs, t.observed, t.observedAt = o, true, now
	self := e.isSelf(o)
	switch {
	case t.claim == claimTaking && self:
		t.claim = claimHeld
	case t.claim == claimHeld && !self && o.Target != "" && o.Target != e.cfg.ENI && e.handingToUs(t, o, now):
		// We took it at the peer's handover while our last describe still
		// showed it here from before the peer's preempt: it was never
		// written to us. Write it now instead of leaving it to nobody.
		t.claim = claimTaking
		e.count("handover_rewrites")
		e.log.Info("route table still points at the peer, which is handing it over: writing it", "route_table", t.id, "target", o.Target)
	case t.claim == claimHeld && !self && o.Target != "" && o.Target != e.cfg.ENI:
		e.release(t, now, fmt.Sprintf("route table now points at %s: taken by the peer or an operator; not taking it back", o.Target))
		t.lostAt = now
	}
	if !t.offeredAt.IsZero() && !self {
		t.offeredAt = time.Time{} // the peer took it
	}
	e.evaluate(now)
}

// handingToUs: t, which we claimed moments ago because the peer stopped
// being eligible (maintenance, unhealthy), points at the peer, which is
// alive and neither claims it nor could take it (it takes tables only
// from a dead node, and then lists them as owned).
func (e *Engine) handingToUs(t *tableState, o Observation, now time.Time) bool {
	return e.peerAlive(now) && !e.peerEligible(now) && e.eligible() && e.peer.msg.ENI != "" &&
		o.Target == e.peer.msg.ENI && !e.peerHas(owned, t.id) &&
		t.last.Claim && now.Sub(t.last.At) < e.cfg.GiveTimeout
}

// isSelf reports an active default route to this node's ENI.
func (e *Engine) isSelf(o Observation) bool {
	return e.cfg.ENI != "" && o.Target == e.cfg.ENI && !o.Blackhole
}

// Wrote records a successful write of id to this node.
func (e *Engine) Wrote(id string, now time.Time) { e.WriteDone(id, true, now) }

// WriteDone records the end of a write of id started by StartWrites:
// ok when the table now points at this node.
func (e *Engine) WriteDone(id string, ok bool, now time.Time) {
	t, found := e.tables[id]
	if !found {
		return
	}
	t.writing, t.writeDone = false, now
	if ok {
		t.wroteAt = now
	}
	if ok && t.claim == claimTaking {
		t.claim = claimHeld
		t.obs, t.observed, t.observedAt = Observation{Target: e.cfg.ENI}, true, now
	}
}

// Tick re-evaluates timers (peer death, hold-down, timeouts).
func (e *Engine) Tick(now time.Time) { e.evaluate(now) }

// ErrPeerNotReady refuses an operator command that needs a healthy peer.
var ErrPeerNotReady = errors.New("the peer is not alive and healthy")

// Failover hands tables (all this node claims when ids is empty) to the
// peer, which must be alive and healthy. It returns the tables handed over.
func (e *Engine) Failover(ids []string, now time.Time, reason string) ([]string, error) {
	if err := e.known(ids); err != nil {
		return nil, err
	}
	if !e.peerEligible(now) {
		return nil, fmt.Errorf("failover: %w (%s)", ErrPeerNotReady, e.peerState(now))
	}
	var out []string
	for _, t := range e.sorted() {
		if len(ids) > 0 && !slices.Contains(ids, t.id) {
			continue
		}
		t.opWantAt, t.wantSeq = time.Time{}, 0
		if t.claim == claimNone {
			continue
		}
		e.release(t, now, reason)
		t.offeredAt, t.offerSeq = now, e.seq+1
		t.holdFrom = now
		out = append(out, t.id)
	}
	e.evaluate(now)
	return out, nil
}

// Takeover asks for tables (all known tables this node does not claim
// when ids is empty): the peer releases them over the heartbeat, or, when
// the peer is dead, they are taken at once. It returns the tables asked
// for.
func (e *Engine) Takeover(ids []string, now time.Time) ([]string, error) {
	if err := e.known(ids); err != nil {
		return nil, err
	}
	if e.maintenance {
		return nil, errors.New("takeover: maintenance is on (hanatctl maintenance off first)")
	}
	if !e.healthy {
		return nil, fmt.Errorf("takeover: this node is unhealthy: %s", e.healthReason)
	}
	var out []string
	for _, t := range e.sorted() {
		if len(ids) > 0 && !slices.Contains(ids, t.id) {
			continue
		}
		t.offeredAt = time.Time{}
		if t.claim != claimNone {
			continue
		}
		out = append(out, t.id)
		if !e.peerAlive(now) {
			e.claim(t, now, "operator takeover (peer not alive)")
			continue
		}
		t.opWantAt = now
	}
	e.evaluate(now)
	return out, nil
}

// SetMaintenance turns maintenance on (hand every table to the healthy
// peer and stay backup) or off.
func (e *Engine) SetMaintenance(on bool, now time.Time) {
	if on != e.maintenance {
		e.log.Info("maintenance", "on", on)
		e.count("maintenance_changes")
	}
	e.maintenance = on
	if on {
		for _, t := range e.tables {
			t.opWantAt, t.wantSeq = time.Time{}, 0
		}
	}
	e.evaluate(now)
}

// Maintenance reports whether maintenance is on.
func (e *Engine) Maintenance() bool { return e.maintenance }

func (e *Engine) known(ids []string) error {
	for _, id := range ids {
		if _, ok := e.tables[id]; !ok {
			return fmt.Errorf("route table %q is not one of this pair's (%s)", id, strings.Join(e.Tables(), ", "))
		}
	}
	return nil
}

// claimObserved claims t as held when the last observation already
// shows it pointing here: nothing to write, and if the peer changed it
// since, the next observation releases it instead of rewriting it.
func (e *Engine) claimObserved(t *tableState, now time.Time, reason string) {
	e.claim(t, now, reason)
	if t.claim == claimTaking && t.observed && e.isSelf(t.obs) {
		t.claim = claimHeld
	}
}

// claim claims t; it is held once a fresh observation or our own write
// confirms it.
func (e *Engine) claim(t *tableState, now time.Time, reason string) {
	if t.claim != claimNone {
		return
	}
	t.claim = claimTaking
	t.claimSeq = e.seq + 1
	t.opWantAt, t.wantSeq, t.offeredAt = time.Time{}, 0, time.Time{}
	t.last = Change{At: now, Claim: true, Reason: reason}
	t.changes++
	e.count("claims")
	e.log.Info("route table ownership: claiming", "route_table", t.id, "reason", reason)
}

func (e *Engine) release(t *tableState, now time.Time, reason string) {
	if t.claim == claimNone {
		return
	}
	t.claim = claimNone
	t.releasedAt = now
	if t.home {
		// Preempt waits a whole hold-down before asking for it again.
		t.holdFrom = now
	}
	t.releaseSeq = e.seq + 1
	t.last = Change{At: now, Claim: false, Reason: reason}
	t.changes++
	e.count("releases")
	e.log.Info("route table ownership: releasing", "route_table", t.id, "reason", reason)
}

func (e *Engine) count(name string) { e.counters[name]++ }

// evaluate applies the rules to the current inputs.
func (e *Engine) evaluate(now time.Time) {
	alive := e.peerAlive(now)
	elig := e.peerEligible(now)
	self := e.eligible()

	inGrace := e.cfg.Peer && !e.graceOver && e.peer.msg == nil && now.Sub(e.start) < e.cfg.DeadAfter
	if !inGrace {
		e.graceOver = true
	}

	// Edges: the peer died, or turned unhealthy / went into maintenance.
	if !inGrace {
		switch {
		case e.prevAlive && !alive:
			if e.peer.msg != nil {
				e.log.Info("peer dead", "last_heartbeat", e.peer.at.Format("15:04:05.000"),
					"dead_after", e.cfg.DeadAfter, "late", now.Sub(e.peer.at.Add(e.cfg.DeadAfter)))
			}
			// Even in maintenance: availability first when the peer is gone.
			why := "peer dead: no heartbeat for " + e.cfg.DeadAfter.String()
			if !e.cfg.Peer {
				why = "single instance (no peer configured): owning the home tables"
			} else if e.peer.msg == nil {
				why = "no heartbeat from the peer since start (" + e.cfg.DeadAfter.String() + ")"
			}
			e.takeAll(now, why, !e.cfg.Peer)
		case e.prevEligible && alive && !elig && e.healthy:
			e.takeAll(now, "peer "+e.peerState(now), false)
		}
		e.prevAlive, e.prevEligible = alive, elig
	}

	for _, t := range e.sorted() {
		selfObs := t.observed && e.isSelf(t.obs)
		peerOwns := alive && e.peerHas(owned, t.id)
		peerWants := alive && e.peerHas(wanted, t.id)
		if !t.offeredAt.IsZero() && peerOwns && e.peer.msg.Ack >= t.offerSeq {
			t.offeredAt = time.Time{} // the peer took it
		}
		if !t.offeredAt.IsZero() && now.Sub(t.offeredAt) >= e.cfg.GiveTimeout {
			t.offeredAt = time.Time{}
			e.log.Warn("route table handed to the peer was not taken in time", "route_table", t.id, "timeout", e.cfg.GiveTimeout)
			e.count("give_timeouts")
		}
		if !t.opWantAt.IsZero() && now.Sub(t.opWantAt) >= e.cfg.OpTimeout {
			t.opWantAt = time.Time{}
			e.log.Warn("operator takeover: the peer did not release the route table in time", "route_table", t.id, "timeout", e.cfg.OpTimeout)
			e.count("takeover_timeouts")
		}

		if t.claim != claimNone {
			switch {
			case !self && elig:
				why := "maintenance on: handing to the healthy peer"
				if !e.healthy {
					why = "unhealthy (" + e.healthReason + "): handing to the healthy peer"
				}
				e.release(t, now, why)
				t.offeredAt, t.offerSeq = now, e.seq+1
			case elig && peerWants && e.peer.msg.Ack >= t.claimSeq:
				// The peer saw our claim and still asks for it.
				e.release(t, now, "peer asked for it (handshake: preempt after hold-down, or operator takeover)")
			}
			continue
		}

		if inGrace {
			continue
		}
		recentlyReleased := !t.releasedAt.IsZero() && now.Sub(t.releasedAt) < e.cfg.GiveTimeout
		switch {
		case e.maintenance && elig:
			// Stay backup while the peer can carry the traffic.
		case alive && e.peerHas(offered, t.id) && self && e.peer.msg.Ack >= t.releaseSeq:
			// The offer was made after the peer saw our last release, so
			// it is not a stale one from before.
			e.claim(t, now, "peer handed it over ("+e.peerHandReason(now)+")")
		case e.wants(t, now, alive, elig) && alive && e.peer.msg.Ack >= t.wantSeq && t.wantSeq != 0 && !peerOwns &&
			(!peerWants || e.cfg.NodeID < e.peer.msg.NodeID):
			e.claim(t, now, e.handshakeReason(t))
		case alive && !peerOwns && !peerWants && t.offeredAt.IsZero() && (self && t.home || e.healthy && !elig) && !recentlyReleased:
			why := "no node claims it; home table"
			if t.wantSeq != 0 {
				why = e.handshakeReason(t)
			} else if !t.home {
				why = "no node claims it; peer " + e.peerState(now)
			}
			e.claim(t, now, why)
		case !alive && t.changes == 0 && (t.home || e.cfg.Peer):
			// Found after the start (discovery): nobody can have it.
			why := "single instance (no peer configured): owning the home tables"
			if e.cfg.Peer {
				why = "peer " + e.peerState(now)
			}
			e.claim(t, now, why)
		case !alive && t.observed && t.obs.Blackhole && t.obs.Target != e.cfg.ENI && (t.home || e.cfg.Peer) && !recentlyReleased:
			e.claim(t, now, "route table points at "+t.obs.Target+", a stopped instance (blackhole)")
		case selfObs && t.offeredAt.IsZero() && !peerOwns && !peerWants && (self || !elig && e.healthy) && !recentlyReleased:
			e.claimObserved(t, now, "route table already points at this node")
		}
	}
	e.updateWants(now, alive, elig)
}

func (e *Engine) handshakeReason(t *tableState) string {
	if !t.opWantAt.IsZero() {
		return "operator takeover: peer released it"
	}
	return "preempt after hold-down " + e.cfg.HoldDown.String() + ": peer released it"
}

// wants reports whether this node asks the peer for t now.
func (e *Engine) wants(t *tableState, now time.Time, alive, elig bool) bool {
	if t.claim != claimNone || !alive || !e.eligible() {
		return false
	}
	if !t.opWantAt.IsZero() {
		return true
	}
	if !e.cfg.Preempt || !t.home || !e.peerHas(owned, t.id) {
		return false
	}
	since := e.healthySince
	if e.peer.aliveSince.After(since) {
		since = e.peer.aliveSince
	}
	if t.holdFrom.After(since) {
		since = t.holdFrom
	}
	return now.Sub(since) >= e.cfg.HoldDown
}

func (e *Engine) updateWants(now time.Time, alive, elig bool) {
	for _, t := range e.tables {
		if e.wants(t, now, alive, elig) {
			if t.wantSeq == 0 {
				t.wantSeq = e.seq + 1
			}
		} else {
			t.wantSeq = 0
		}
	}
}

func (e *Engine) peerHandReason(now time.Time) string {
	if e.peer.msg != nil && e.peer.msg.Maintenance {
		return "peer in maintenance"
	}
	if e.peer.msg != nil && !e.peer.msg.Healthy {
		return "peer unhealthy: " + e.peer.msg.Reason
	}
	return "operator failover on the peer"
}

// peerState describes the peer for messages.
func (e *Engine) peerState(now time.Time) string {
	switch {
	case !e.cfg.Peer:
		return "none configured"
	case e.peer.msg == nil:
		return "never heard"
	case !e.peerAlive(now):
		return fmt.Sprintf("dead (last heartbeat %v ago)", now.Sub(e.peer.at).Round(time.Millisecond))
	case e.peer.msg.Maintenance:
		return "in maintenance"
	case !e.peer.msg.Healthy:
		return "unhealthy: " + e.peer.msg.Reason
	}
	return "alive and healthy"
}

// takeAll claims every table not claimed yet. single limits it to home
// tables (a lone node does not touch other AZs' tables).
func (e *Engine) takeAll(now time.Time, reason string, homeOnly bool) {
	for _, t := range e.sorted() {
		if homeOnly && !t.home {
			continue
		}
		if e.peer.msg != nil && t.lostAt.After(e.peer.at) {
			// The peer took it after its last heartbeat reached us: it
			// is alive behind a partition, not dead. Not taking it back.
			continue
		}
		e.claimObserved(t, now, reason)
	}
}

// Claimed reports whether this node claims table id.
func (e *Engine) Claimed(id string) bool {
	t, ok := e.tables[id]
	return ok && t.claim != claimNone
}

// ToWrite returns the claimed tables whose last observation is not this
// node and that have no write in flight (the reconciler points them
// here). Held tables are rewritten only when their default route is
// missing.
func (e *Engine) ToWrite() []string {
	var out []string
	for _, t := range e.sorted() {
		switch {
		case e.cfg.ENI == "", t.writing:
		case t.claim == claimTaking:
			// EnsureDefaultRoute changes nothing when it already points here.
			out = append(out, t.id)
		case t.claim == claimHeld && t.observed && (t.obs.Target == "" || t.obs.Target == e.cfg.ENI && t.obs.Blackhole):
			out = append(out, t.id)
		}
	}
	return out
}

// WriteOp is the call that points a table at this node.
type WriteOp int

const (
	// WriteEnsure: the table's state is unknown: describe it, then
	// CreateRoute or ReplaceRoute (nothing when it already points here).
	WriteEnsure WriteOp = iota
	// WriteReplace: last seen with a default route elsewhere (or a
	// blackhole): ReplaceRoute at once, no describe first.
	WriteReplace
	// WriteCreate: last seen without a default route: CreateRoute at once.
	WriteCreate
)

func (op WriteOp) String() string {
	switch op {
	case WriteReplace:
		return "replace"
	case WriteCreate:
		return "create"
	}
	return "ensure"
}

// Write is one table to point at this node.
type Write struct {
	Table  string
	Op     WriteOp
	Reason string // why it is claimed
}

// StartWrites returns the tables of ToWrite with the call the last
// observation suggests, and marks them in flight until WriteDone. Acting
// on the last observation saves a describe on the failover path; the
// observation can be stale (the cloud side falls back to the other call
// when the route table disagrees) and the next describe verifies.
func (e *Engine) StartWrites(now time.Time) []Write {
	var out []Write
	for _, id := range e.ToWrite() {
		t := e.tables[id]
		w := Write{Table: id, Reason: t.last.Reason}
		switch {
		case !t.observed || e.isSelf(t.obs):
		case t.obs.Target == "":
			w.Op = WriteCreate
		default:
			w.Op = WriteReplace
		}
		t.writing = true
		out = append(out, w)
	}
	return out
}

// PeerDeadline is when the peer is declared dead if no heartbeat arrives
// before (zero while it is not alive).
func (e *Engine) PeerDeadline(now time.Time) time.Time {
	if !e.peerAlive(now) {
		return time.Time{}
	}
	return e.peer.at.Add(e.cfg.DeadAfter)
}

// Outgoing returns the next heartbeat (Seq advanced; Ack is the peer's
// last accepted sequence number).
func (e *Engine) Outgoing(now time.Time, epoch, ack uint64) *Message {
	e.seq++
	m := &Message{NodeID: e.cfg.NodeID, ENI: e.cfg.ENI, Epoch: epoch, Seq: e.seq, Ack: ack, Time: now,
		Healthy: e.healthy, Maintenance: e.maintenance, Reason: e.healthReason}
	for _, t := range e.sorted() {
		if t.home {
			m.Home = append(m.Home, t.id)
		}
		if t.claim != claimNone {
			m.Owned = append(m.Owned, t.id)
		}
		if t.wantSeq != 0 {
			m.Wanted = append(m.Wanted, t.id)
		}
		if !t.offeredAt.IsZero() {
			m.Offered = append(m.Offered, t.id)
		}
	}
	trim := func(s []string) []string {
		if len(s) > maxTables {
			return s[:maxTables]
		}
		return s
	}
	m.Home, m.Owned, m.Wanted, m.Offered = trim(m.Home), trim(m.Owned), trim(m.Wanted), trim(m.Offered)
	return m
}

// TableStatus is one table as the engine sees it.
type TableStatus struct {
	ID   string
	Home bool
	// Owner is where the default route points (the last observation): an
	// ENI id, "" for none.
	Owner     string
	Blackhole bool
	// Claim: "held", "taking" or "none"; Desired: "self", "peer" or
	// "none" (the node that should own it).
	Claim      string
	Desired    string
	Offered    bool
	Wanted     bool
	ObservedAt time.Time
	Last       Change
	Changes    uint64
}

// PeerStatus is the peer as the engine sees it.
type PeerStatus struct {
	Configured  bool
	NodeID      string
	ENI         string
	State       string // "alive", "dead", "never heard", "none"
	Detail      string
	Healthy     bool
	Maintenance bool
	Reason      string
	LastSeen    time.Time
	Owned       []string
	Wanted      []string
}

// EngineStatus is a snapshot for the admin socket.
type EngineStatus struct {
	NodeID       string
	ENI          string
	Healthy      bool
	HealthReason string
	Maintenance  bool
	Peer         PeerStatus
	Tables       []TableStatus
	Counters     map[string]uint64
}

// Status returns a snapshot.
func (e *Engine) Status(now time.Time) EngineStatus {
	s := EngineStatus{NodeID: e.cfg.NodeID, ENI: e.cfg.ENI, Healthy: e.healthy, HealthReason: e.healthReason,
		Maintenance: e.maintenance, Counters: map[string]uint64{}}
	for k, v := range e.counters {
		s.Counters[k] = v
	}
	p := PeerStatus{Configured: e.cfg.Peer, Detail: e.peerState(now)}
	switch {
	case !e.cfg.Peer:
		p.State = "none"
	case e.peer.msg == nil:
		p.State = "never heard"
	case e.peerAlive(now):
		p.State = "alive"
	default:
		p.State = "dead"
	}
	if m := e.peer.msg; m != nil {
		p.NodeID, p.ENI, p.Healthy, p.Maintenance, p.Reason, p.LastSeen = m.NodeID, m.ENI, m.Healthy, m.Maintenance, m.Reason, e.peer.at
		p.Owned, p.Wanted = slices.Clone(m.Owned), slices.Clone(m.Wanted)
	}
	s.Peer = p
	alive := e.peerAlive(now)
	for _, t := range e.sorted() {
		ts := TableStatus{ID: t.id, Home: t.home, Owner: t.obs.Target, Blackhole: t.obs.Blackhole, Claim: t.claim.String(),
			Offered: !t.offeredAt.IsZero(), Wanted: t.wantSeq != 0, ObservedAt: t.observedAt, Last: t.last, Changes: t.changes}
		switch {
		case t.claim != claimNone:
			ts.Desired = "self"
		case alive && (e.peerHas(owned, t.id) || !t.offeredAt.IsZero()):
			ts.Desired = "peer"
		default:
			ts.Desired = "none"
		}
		s.Tables = append(s.Tables, ts)
	}
	return s
}

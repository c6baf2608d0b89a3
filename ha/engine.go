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
	Reason Reason
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
	// observedFrom is when the describe behind obs started (or our
	// write landed); peerClaimedAt the last heartbeat in which the peer
	// claimed the table. An observation from before either may predate
	// the peer's write (see seenHere).
	observedFrom  time.Time
	peerClaimedAt time.Time
	last          Change
	changes       uint64
	lostAt        time.Time // when it was seen taken from us
	releaseSeq    uint64    // first heartbeat after our last release
	offerSeq      uint64    // first heartbeat carrying our offer
	claimSeq      uint64    // first heartbeat carrying our last claim
	holdFrom      time.Time // an operator failover restarts the hold-down
	writing       bool      // a write of this table is in flight
	writeDone     time.Time // when the last write finished (landed or not)
	wroteAt       time.Time // when our last successful write finished
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
	version  uint64 // see Version
	counters Counters
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
	// Version starts at 1: the first state is news to the reconciler and
	// the peer.
	e := &Engine{cfg: cfg, log: log, start: now, tables: map[string]*tableState{},
		healthy: true, healthySince: now, version: 1}
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

// Begin restarts the engine's clock at now, before its first input: the
// start grace for the peer's first heartbeat and the health hold-down
// count from here. A Manager begins its engine when it starts running,
// which may be well after it was built.
func (e *Engine) Begin(now time.Time) {
	e.start, e.healthySince = now, now
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
		e.version++
	}
	for _, id := range backup {
		if _, ok := e.tables[id]; !ok {
			e.tables[id] = &tableState{id: id}
			e.version++
		}
	}
}

// SetENI sets this node's ENI.
func (e *Engine) SetENI(eni string) {
	if eni != e.cfg.ENI {
		e.version++
	}
	e.cfg.ENI = eni
}

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

// TableCount is the number of known tables.
func (e *Engine) TableCount() int { return len(e.tables) }

// HomeTables returns this node's home tables, sorted.
func (e *Engine) HomeTables() []string { return e.tablesWhere(true) }

// BackupTables returns the other known tables (the peer's), sorted.
func (e *Engine) BackupTables() []string { return e.tablesWhere(false) }

func (e *Engine) tablesWhere(home bool) []string {
	var out []string
	for _, t := range e.sorted() {
		if t.home == home {
			out = append(out, t.id)
		}
	}
	return out
}

// PeerENI is the ENI the peer's last heartbeat named ("" before one).
func (e *Engine) PeerENI() string {
	if e.peer.msg == nil {
		return ""
	}
	return e.peer.msg.ENI
}

// Version changes whenever what the reconciler and the peer act on
// changes: the ENI, the table set, a table's claim, offer or want, this
// node's health or maintenance. Equal versions: nothing to write or to
// tell the peer at once.
func (e *Engine) Version() uint64 { return e.version }

// Counters are this node's HA counters. The Manager adds its calls to
// them; callers serialise their use as they do the Engine's.
func (e *Engine) Counters() *Counters { return &e.counters }

// setClaim, setOffered and setWant are the only writers of what Version
// covers in a table.
func (e *Engine) setClaim(t *tableState, c claimState) {
	if t.claim != c {
		t.claim = c
		e.version++
	}
}

func (e *Engine) setOffered(t *tableState, at time.Time) {
	if t.offeredAt.IsZero() != at.IsZero() {
		e.version++
	}
	t.offeredAt = at
}

func (e *Engine) setWant(t *tableState, seq uint64) {
	if (t.wantSeq == 0) != (seq == 0) {
		e.version++
	}
	t.wantSeq = seq
}

// offer hands t to the peer: it takes it, or t is ours again after
// GiveTimeout.
func (e *Engine) offer(t *tableState, now time.Time) {
	e.setOffered(t, now)
	t.offerSeq = e.seq + 1
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
	for _, id := range m.Owned {
		if t, ok := e.tables[id]; ok {
			t.peerClaimedAt = now
		}
	}
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
		e.counters.HealthChanges++
		e.version++
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
		e.counters.ObservationsBeforeWrite++
		return
	}
	if t.claim == claimHeld && !e.isSelf(o) && !t.wroteAt.IsZero() && now.Sub(t.wroteAt) < writeSettle {
		// EC2 is eventually consistent: a describe just after our write
		// may still show the old target. Believe it once it persists.
		e.counters.ObservationsStaleAfterWrite++
		return
	}
	t.obs, t.observed, t.observedAt, t.observedFrom = o, true, now, started
	self := e.isSelf(o)
	switch {
	case t.claim == claimTaking && e.seenHere(t):
		// (A describe that started before the peer's last claim may
		// predate its write: the write goes ahead, StartWrites.)
		e.setClaim(t, claimHeld)
	case t.claim == claimHeld && !self && o.Target != "" && o.Target != e.cfg.ENI && e.handingToUs(t, o, now):
		// We took it at the peer's handover while our last describe still
		// showed it here from before the peer's preempt: it was never
		// written to us. Write it now instead of leaving it to nobody.
		e.setClaim(t, claimTaking)
		e.counters.HandoverRewrites++
		e.log.Info("route table still points at the peer, which is handing it over: writing it", "route_table", t.id, "target", o.Target)
	case t.claim == claimHeld && !self && o.Target != "" && o.Target != e.cfg.ENI:
		e.release(t, now, Reason{Kind: ReasonTaken, Detail: o.Target})
		t.lostAt = now
	}
	if !t.offeredAt.IsZero() && !self {
		e.setOffered(t, time.Time{}) // the peer took it
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

// seenHere reports that t's last observation shows it pointing here and
// is news since anyone else could last have written it: its describe
// started after this node's last release of t and after the last
// heartbeat in which the peer claimed t. An older one may predate the
// peer's write (a preempt's ReplaceRoute lands between two of our
// describes): claimed on its word, the table would be held with nothing
// written and its EIP would move here at once, while the route stays at
// the peer until the next describe.
func (e *Engine) seenHere(t *tableState) bool {
	return t.observed && e.isSelf(t.obs) && t.observedFrom.After(t.releasedAt) && t.observedFrom.After(t.peerClaimedAt)
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
		e.setClaim(t, claimHeld)
		t.obs, t.observed, t.observedAt, t.observedFrom = Observation{Target: e.cfg.ENI}, true, now, now
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
		t.opWantAt = time.Time{}
		e.setWant(t, 0)
		if t.claim == claimNone {
			continue
		}
		e.release(t, now, Reason{Kind: ReasonFailover, Detail: reason})
		e.offer(t, now)
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
		e.setOffered(t, time.Time{})
		if t.claim != claimNone {
			continue
		}
		out = append(out, t.id)
		if !e.peerAlive(now) {
			e.claim(t, now, Reason{Kind: ReasonTakeoverPeerDead})
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
		e.counters.MaintenanceChanges++
		e.version++
	}
	e.maintenance = on
	if on {
		for _, t := range e.tables {
			t.opWantAt = time.Time{}
			e.setWant(t, 0)
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
// shows it pointing here and nobody else can have written it since
// (seenHere): nothing to write, and if the peer changed it since, the
// next observation releases it instead of rewriting it. Otherwise it is
// written (StartWrites).
func (e *Engine) claimObserved(t *tableState, now time.Time, reason Reason) {
	e.claim(t, now, reason)
	if t.claim == claimTaking && e.seenHere(t) {
		e.setClaim(t, claimHeld)
	}
}

// claim claims t; it is held once a fresh observation or our own write
// confirms it.
func (e *Engine) claim(t *tableState, now time.Time, reason Reason) {
	if t.claim != claimNone {
		return
	}
	e.setClaim(t, claimTaking)
	t.claimSeq = e.seq + 1
	t.opWantAt = time.Time{}
	e.setWant(t, 0)
	e.setOffered(t, time.Time{})
	t.last = Change{At: now, Claim: true, Reason: reason}
	t.changes++
	e.counters.Claims++
	e.log.Info("route table ownership: claiming", "route_table", t.id, "reason", reason.String())
}

func (e *Engine) release(t *tableState, now time.Time, reason Reason) {
	if t.claim == claimNone {
		return
	}
	e.setClaim(t, claimNone)
	t.releasedAt = now
	if t.home {
		// Preempt waits a whole hold-down before asking for it again.
		t.holdFrom = now
	}
	t.releaseSeq = e.seq + 1
	t.last = Change{At: now, Claim: false, Reason: reason}
	t.changes++
	e.counters.Releases++
	e.log.Info("route table ownership: releasing", "route_table", t.id, "reason", reason.String())
}

// Claimed reports whether this node claims table id.
func (e *Engine) Claimed(id string) bool {
	t, ok := e.tables[id]
	return ok && t.claim != claimNone
}

// Unwritten reports whether id is claimed and its write has not started:
// its takeover (Options.Takeover) has not run yet, so its EIP must wait.
func (e *Engine) Unwritten(id string) bool {
	t, ok := e.tables[id]
	return ok && t.claim == claimTaking && !t.writing
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
	Reason Reason // why it is claimed
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
		case !t.observed || e.seenHere(t):
		case e.isSelf(t.obs):
			// Seen here before the peer could write it (seenHere): the
			// peer's route replaced ours, most likely.
			w.Op = WriteReplace
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
	// OwnerNode is whose ENI Owner is: "self", "peer", "other" or "none".
	OwnerNode string
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
	Counters     Counters
}

// Role is this node's role over the tables: "maintenance", "standby"
// (this node's ENI owns none), "active" (all) or "active-active" (some).
func (s EngineStatus) Role() string {
	owned := 0
	for _, t := range s.Tables {
		if t.OwnerNode == "self" {
			owned++
		}
	}
	switch {
	case s.Maintenance:
		return "maintenance"
	case owned == 0:
		return "standby"
	case owned == len(s.Tables):
		return "active"
	}
	return "active-active"
}

// Status returns a snapshot.
func (e *Engine) Status(now time.Time) EngineStatus {
	s := EngineStatus{NodeID: e.cfg.NodeID, ENI: e.cfg.ENI, Healthy: e.healthy, HealthReason: e.healthReason,
		Maintenance: e.maintenance, Counters: e.counters}
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
			Offered: !t.offeredAt.IsZero(), Wanted: t.wantSeq != 0, ObservedAt: t.observedAt, Last: t.last, Changes: t.changes,
			OwnerNode: ownerNode(t.obs.Target, e.cfg.ENI, p.ENI)}
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

// ownerNode names whose ENI target is.
func ownerNode(target, self, peer string) string {
	switch {
	case target == "":
		return "none"
	case target == self:
		return "self"
	case target == peer:
		return "peer"
	}
	return "other"
}

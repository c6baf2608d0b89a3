package ha

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Cloud is what the HA loop needs from EC2. hanatd implements it over the
// cloud package; tests use a fake.
type Cloud interface {
	// DefaultRoutes describes the tables and returns each one's 0.0.0.0/0
	// (an Observation with an empty Target when it has none).
	DefaultRoutes(ctx context.Context, tableIDs []string) (map[string]Observation, error)
	// EnsureDefaultRoute points the table's 0.0.0.0/0 at eniID: CreateRoute
	// when missing, ReplaceRoute when it points elsewhere, nothing else.
	EnsureDefaultRoute(ctx context.Context, tableID, eniID string) (changed bool, err error)
	// SetDefaultRoute points the table's 0.0.0.0/0 at eniID without
	// describing it first: ReplaceRoute when exists, CreateRoute when not;
	// when the route table disagrees (no route to replace, a route already
	// there) it makes the other call. It is the failover path: one EC2
	// call instead of two.
	SetDefaultRoute(ctx context.Context, tableID, eniID string, exists bool) error
	// EIPOn reports whether the Elastic IP is associated with eniID, on
	// the address AssociateEIP would choose.
	EIPOn(ctx context.Context, allocationID, eniID string, home bool) (bool, error)
	// AssociateEIP associates the Elastic IP with an address of eniID:
	// its primary private IP for the group of the node's home tables,
	// else the address that stands by for the peer's EIP (the primary
	// when there is none), taking it from wherever it is
	// (AllowReassociation). The survivor's primary IP keeps its own EIP.
	AssociateEIP(ctx context.Context, allocationID, eniID string, home bool) error
	// IsThrottled reports an error caused by API throttling.
	IsThrottled(err error) bool
}

// EIPGroup is an Elastic IP that follows a group of route tables: it is
// associated with the node that claims them, so clients keep one public
// address across failover.
type EIPGroup struct {
	AllocationID string
	RouteTables  []string
}

// Discovered are the route tables discovery found. Tables are only ever
// added: a table once known stays known until restart.
//
// HomeEIP and PeerEIP are the allocation ids of the zones' Elastic IPs
// ("" unknown; Options.DiscoverEIPs), used when Options.EIPs is empty:
// HomeEIP follows the home tables, PeerEIP the backup tables. An EIP once
// found stays until a discovery finds another.
type Discovered struct {
	Home   []string
	Backup []string

	HomeEIP, PeerEIP string
}

// Options configure a Manager.
type Options struct {
	// NodeID identifies this node (the instance id).
	NodeID string
	// ENI returns this node's ENI, "" while unknown.
	ENI func() string
	// Peer is the peer's heartbeat address; invalid: single instance.
	Peer netip.AddrPort
	// Listen is the local heartbeat address (0.0.0.0:port).
	Listen netip.AddrPort
	// Key is the shared HMAC key (required with a peer).
	Key []byte
	// Interval between heartbeats (default 200 ms); the peer is dead after
	// DeadAfter missed ones (default 5).
	Interval  time.Duration
	DeadAfter int
	// Preempt and HoldDown: see EngineConfig.
	Preempt  bool
	HoldDown time.Duration
	// Home and Backup tables from the configuration.
	Home, Backup []string
	// Discover finds home tables, and backup tables a node cannot learn
	// from a peer it never heard (called until it succeeds, then every
	// DiscoverInterval); peerENI is the peer's ENI when known. nil: only
	// the configured tables.
	Discover         func(ctx context.Context, eni, peerENI string) (Discovered, error)
	DiscoverInterval time.Duration
	// DiscoverEIPs finds the zones' EIPs (Discovered.HomeEIP, PeerEIP)
	// with the tables, when EIPs is empty; nil: none are discovered.
	DiscoverEIPs func(ctx context.Context, eni, peerENI string) (home, peer string, err error)
	// EIPs follow their route tables (optional). Empty: the EIPs
	// discovery finds (Discovered.HomeEIP, PeerEIP) follow the home and
	// the backup tables.
	EIPs []EIPGroup
	// Takeover, when set, runs before this node points tables it claims
	// at itself and before their EIPs move (the order is: takeover, EIP,
	// routes): hanatd injects the peer's synced flows there, so they are
	// in the kernel before the redirected packets arrive. It gets the
	// tables about to be written and a context bounded by TakeoverBudget;
	// an error is logged and counted, and the failover goes on.
	Takeover       func(ctx context.Context, tables []string) error
	TakeoverBudget time.Duration // default 1 s
	// Standby: this node has an address standing by for the peer's EIP,
	// so it holds its own EIP and the peer's at once (see reconcileEIPs).
	Standby bool
	// Health checks this node; nil: always healthy.
	Health         func(ctx context.Context) (bool, string)
	HealthInterval time.Duration // default 1 s
	// Resync is the period of DescribeRouteTables (default 1 s).
	Resync time.Duration
	// MaxClockSkew bounds a heartbeat's timestamp against the local clock
	// (default 10 s).
	MaxClockSkew time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Manager runs the HA loop: heartbeats, health, and the level-triggered
// reconcile of route tables against the Engine's claims.
type Manager struct {
	log   *slog.Logger
	cloud Cloud
	o     Options

	kick    chan struct{} // claims changed: write
	observe chan struct{} // describe now (verify writes)
	sendNow chan struct{}
	eipMu   sync.Mutex // one EIP reconcile at a time

	mu        sync.Mutex
	eng       *Engine
	recv      *Receiver
	epoch     uint64
	version   uint64 // the Engine's Version last acted on
	lastErr   string
	lastErrAt time.Time
	eips      map[string]string // allocation id → ENI it is on (last seen)
	// homeEIP and peerEIP: the zones' EIPs discovery found (see
	// Discovered).
	homeEIP, peerEIP string
	discovered       bool
	// discoveredPeer is the peer ENI the last discovery knew: a table
	// pointing at the peer is one of ours to get back.
	discoveredPeer string
}

// New returns a Manager. It does no I/O.
func New(log *slog.Logger, c Cloud, o Options) (*Manager, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Interval <= 0 {
		o.Interval = 200 * time.Millisecond
	}
	if o.DeadAfter <= 0 {
		o.DeadAfter = 5
	}
	if o.HealthInterval <= 0 {
		o.HealthInterval = time.Second
	}
	if o.Resync <= 0 {
		o.Resync = time.Second
	}
	if o.DiscoverInterval <= 0 {
		o.DiscoverInterval = 30 * time.Second
	}
	if o.MaxClockSkew <= 0 {
		o.MaxClockSkew = 10 * time.Second
	}
	if o.ENI == nil {
		o.ENI = func() string { return "" }
	}
	o.Discover = o.discoverMissing()
	if o.NodeID == "" {
		return nil, errors.New("ha: node id is empty")
	}
	if err := checkID(o.NodeID); err != nil {
		return nil, fmt.Errorf("ha: node id %q: %w", o.NodeID, err)
	}
	if o.Peer.IsValid() && len(o.Key) < MinKeyLen {
		return nil, fmt.Errorf("ha: a peer needs a key of at least %d bytes", MinKeyLen)
	}
	for _, id := range slices.Concat(o.Home, o.Backup) {
		if err := checkID(id); err != nil {
			return nil, fmt.Errorf("ha: route table %q: %w", id, err)
		}
	}
	now := o.Now()
	m := &Manager{
		log:     log,
		cloud:   c,
		o:       o,
		kick:    make(chan struct{}, 1),
		observe: make(chan struct{}, 1),
		sendNow: make(chan struct{}, 1),
		epoch:   uint64(now.UnixNano()),
		eips:    map[string]string{},
	}
	m.eng = NewEngine(log, EngineConfig{
		NodeID: o.NodeID, ENI: o.ENI(), Peer: o.Peer.IsValid(), Home: o.Home, Backup: o.Backup,
		DeadAfter: time.Duration(o.DeadAfter) * o.Interval, Preempt: o.Preempt, HoldDown: o.HoldDown,
	}, now)
	m.recv = NewReceiver(o.Key, o.NodeID, o.MaxClockSkew)
	return m, nil
}

// Run runs the loop until ctx is done. The engine's clock starts here,
// and the ENI is read again: a daemon builds the Manager before it has
// bound its outside ENI.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	m.eng.Begin(m.o.Now())
	m.eng.SetENI(m.o.ENI())
	m.mu.Unlock()
	g, ctx := errgroup.WithContext(ctx)
	var conn *net.UDPConn
	if m.o.Peer.IsValid() {
		c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(m.o.Listen))
		if err != nil {
			return fmt.Errorf("ha: listen for heartbeats on %s: %w", m.o.Listen, err)
		}
		conn = c
		g.Go(func() error {
			<-ctx.Done()
			conn.Close()
			return nil
		})
		g.Go(func() error { m.receive(ctx, conn); return nil })
		m.log.Info("HA pair: heartbeats", "peer", m.o.Peer, "listen", m.o.Listen, "interval", m.o.Interval,
			"dead_after", time.Duration(m.o.DeadAfter)*m.o.Interval, "preempt", m.o.Preempt, "hold_down", m.o.HoldDown)
	} else {
		m.log.Info("HA: no peer configured; this node owns its home route tables alone")
	}
	g.Go(func() error { m.heartbeat(ctx, conn); return nil })
	g.Go(func() error { m.health(ctx); return nil })
	g.Go(func() error { m.observeLoop(ctx); return nil })
	g.Go(func() error { m.writeLoop(ctx); return nil })
	return g.Wait()
}

func (m *Manager) kickReconcile() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// changed is called with mu held after feeding the engine: a change of
// claims or ENI (a new Engine.Version) kicks the reconciler and sends a
// heartbeat at once.
func (m *Manager) changed() {
	if v := m.eng.Version(); v != m.version {
		m.version = v
		m.kickReconcile()
		select {
		case m.sendNow <- struct{}{}:
		default:
		}
	}
}

func (m *Manager) observeNow() {
	select {
	case m.observe <- struct{}{}:
	default:
	}
}

func (m *Manager) heartbeat(ctx context.Context, conn *net.UDPConn) {
	// The engine is evaluated every tick (hold-downs, timeouts), and at
	// the peer's deadline exactly: the last heartbeat's arrival plus
	// DeadAfter, so a dead peer is declared without waiting for a tick.
	tick := min(m.o.Interval, 50*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	deadline := time.NewTimer(time.Hour)
	defer deadline.Stop()
	var lastSent time.Time
	for {
		send := false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-deadline.C:
		case <-m.sendNow:
			send = true
		}
		now := m.o.Now()
		if now.Sub(lastSent) >= m.o.Interval-tick/2 {
			send = true
		}
		m.mu.Lock()
		if eni := m.o.ENI(); eni != m.eng.ENI() {
			m.eng.SetENI(eni)
		}
		m.eng.Tick(now)
		m.changed()
		wait := time.Hour
		if dl := m.eng.PeerDeadline(now); !dl.IsZero() {
			wait = dl.Sub(now)
		}
		deadline.Reset(wait)
		var msg *Message
		if conn != nil && send {
			msg = m.eng.Outgoing(now, m.epoch, m.recv.Stats().LastSeq)
			lastSent = now
		}
		m.mu.Unlock()
		if msg == nil {
			continue
		}
		b, err := msg.Marshal(m.o.Key)
		if err == nil {
			_, err = conn.WriteToUDPAddrPort(b, m.o.Peer)
		}
		m.mu.Lock()
		if err != nil {
			m.eng.Counters().HeartbeatSendErrors++
			m.setErr(now, fmt.Sprintf("send heartbeat to %s: %v", m.o.Peer, err))
		} else {
			m.eng.Counters().HeartbeatsSent++
		}
		m.mu.Unlock()
	}
}

func (m *Manager) receive(ctx context.Context, conn *net.UDPConn) {
	buf := make([]byte, MaxDatagram+1)
	var lastLog time.Time
	for {
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			m.log.Warn("ha: read heartbeat", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		now := m.o.Now()
		m.mu.Lock()
		if from.Addr().Unmap() != m.o.Peer.Addr().Unmap() {
			m.recv.Foreign()
			m.mu.Unlock()
			continue
		}
		msg, reason, derr := m.recv.Accept(buf[:n], now)
		if msg != nil {
			m.eng.OnHeartbeat(msg, now)
			m.changed()
		}
		m.mu.Unlock()
		if derr != nil && now.Sub(lastLog) > 5*time.Second {
			lastLog = now
			m.log.Warn("ha: heartbeat dropped", "reason", reason, "from", from, "err", derr)
		}
	}
}

func (m *Manager) health(ctx context.Context) {
	if m.o.Health == nil {
		return
	}
	t := time.NewTicker(m.o.HealthInterval)
	defer t.Stop()
	for {
		ok, why := m.o.Health(ctx)
		if ctx.Err() != nil {
			return
		}
		now := m.o.Now()
		m.mu.Lock()
		m.eng.SetHealth(ok, why, now)
		m.changed()
		m.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// observeLoop describes the route tables every Resync and when asked
// (after writes, to verify them), feeds the engine, and runs discovery.
// It never delays a write: writes run in writeLoop.
func (m *Manager) observeLoop(ctx context.Context) {
	t := time.NewTicker(m.o.Resync)
	defer t.Stop()
	var lastDiscover time.Time
	for {
		now := m.o.Now()
		m.mu.Lock()
		peerENI, noHome := m.eng.PeerENI(), len(m.eng.HomeTables()) == 0
		again := !m.discovered || now.Sub(lastDiscover) >= m.o.DiscoverInterval ||
			peerENI != m.discoveredPeer || noHome && now.Sub(lastDiscover) >= 2*time.Second
		m.mu.Unlock()
		if (m.o.Discover != nil || m.o.DiscoverEIPs != nil) && again {
			m.discover(ctx)
			lastDiscover = now
		}
		m.observeTables(ctx)
		m.mu.Lock()
		eni := m.eng.ENI()
		m.mu.Unlock()
		if eni != "" {
			// Errors are recorded; the next round retries.
			_ = m.reconcileEIPs(ctx, eni, true)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-m.observe:
		}
	}
}

// observeTables describes every known table and feeds the answers to the
// engine (answers that may predate one of our writes are ignored).
func (m *Manager) observeTables(ctx context.Context) {
	m.mu.Lock()
	ids := m.eng.Tables()
	eni := m.eng.ENI()
	m.mu.Unlock()
	if eni == "" || len(ids) == 0 {
		return
	}
	started := m.o.Now()
	obs, err := m.cloud.DefaultRoutes(ctx, ids)
	now := m.o.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		if ctx.Err() == nil {
			m.setErr(now, "describe route tables: "+err.Error())
			m.log.Warn("ha: describe route tables failed; retrying at the next resync", "err", err)
		}
		return
	}
	for _, id := range ids {
		if o, ok := obs[id]; ok {
			m.eng.ObserveSince(id, o, started, now)
		}
	}
	m.changed()
}

// maxConcurrentWrites bounds the route-table writes in flight.
const maxConcurrentWrites = 4

// writeLoop points the claimed tables at this node as soon as the claims
// change, retrying failed writes with a backoff.
func (m *Manager) writeLoop(ctx context.Context) {
	backoff := 200 * time.Millisecond
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.kick:
		case <-retry:
		}
		retry = nil
		if err := m.writeTables(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			// A write that failed (throttling, 5xx) is retried until the
			// claim changes.
			retry = time.After(backoff)
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		backoff = 200 * time.Millisecond
	}
}

func (m *Manager) discover(ctx context.Context) {
	m.mu.Lock()
	eni, peerENI := m.eng.ENI(), m.eng.PeerENI()
	m.mu.Unlock()
	if eni == "" {
		return
	}
	var found Discovered
	var err error
	if m.o.Discover != nil {
		found, err = m.o.Discover(ctx, eni, peerENI)
	}
	if err == nil && m.o.DiscoverEIPs != nil && len(m.o.EIPs) == 0 {
		found.HomeEIP, found.PeerEIP, err = m.o.DiscoverEIPs(ctx, eni, peerENI)
	}
	now := m.o.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.setErr(now, "discover route tables: "+err.Error())
		m.log.Warn("ha: discover route tables", "err", err)
		return
	}
	valid := func(ids []string) []string {
		var out []string
		for _, id := range ids {
			if checkID(id) == nil {
				out = append(out, id)
			}
		}
		return out
	}
	before := m.eng.TableCount()
	m.eng.AddTables(valid(found.Home), valid(found.Backup))
	m.learnEIPs(found)
	if !m.discovered || m.eng.TableCount() != before {
		m.log.Info("ha: route tables", "home", m.eng.HomeTables(), "backup", m.eng.BackupTables())
	}
	m.discovered = true
	m.discoveredPeer = peerENI
	m.eng.Tick(now)
	m.changed()
}

// writeTables points the claimed tables that do not point here yet at
// this node's ENI, concurrently (bounded). A table last seen pointing
// elsewhere gets its ReplaceRoute at once, without a describe first; a
// describe afterwards verifies (the route table stays the truth: a stale
// observation costs one extra call, see Cloud.SetDefaultRoute).
func (m *Manager) writeTables(ctx context.Context) error {
	m.mu.Lock()
	eni := m.eng.ENI()
	var writes []Write
	if eni != "" {
		writes = m.eng.StartWrites(m.o.Now())
	}
	m.mu.Unlock()
	if eni == "" {
		return nil
	}
	var errs []error
	if len(writes) > 0 {
		m.takeover(ctx, writes)
		// The EIP before the routes: redirected flows find their
		// public address already here.
		if err := m.reconcileEIPs(ctx, eni, false); err != nil {
			errs = append(errs, err)
		}
	}
	var (
		emu sync.Mutex
		g   errgroup.Group
	)
	g.SetLimit(maxConcurrentWrites)
	for _, w := range writes {
		g.Go(func() error {
			start := m.o.Now()
			changed := true
			var err error
			switch w.Op {
			case WriteReplace, WriteCreate:
				err = m.cloud.SetDefaultRoute(ctx, w.Table, eni, w.Op == WriteReplace)
			default:
				changed, err = m.cloud.EnsureDefaultRoute(ctx, w.Table, eni)
			}
			now := m.o.Now()
			m.mu.Lock()
			defer m.mu.Unlock()
			m.eng.WriteDone(w.Table, err == nil, now)
			if err != nil {
				m.eng.Counters().RouteWriteErrors++
				m.setErr(now, fmt.Sprintf("point route table %s at %s: %v", w.Table, eni, err))
				m.log.Warn("ha: route table write failed; retrying", "route_table", w.Table, "eni", eni, "op", w.Op.String(),
					"throttled", m.cloud.IsThrottled(err), "err", err)
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
				m.changed()
				return nil
			}
			if changed {
				m.eng.Counters().RouteWrites++
				m.log.Info("route table now points at this node", "route_table", w.Table, "eni", eni, "reason", w.Reason.String(),
					"op", w.Op.String(), "took", now.Sub(start).Round(time.Millisecond))
			}
			m.changed()
			return nil
		})
	}
	_ = g.Wait()
	if len(writes) > 0 {
		m.observeNow() // verify
	}
	if err := m.reconcileEIPs(ctx, eni, false); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// takeover runs Options.Takeover for the tables about to be written.
func (m *Manager) takeover(ctx context.Context, writes []Write) {
	if m.o.Takeover == nil {
		return
	}
	tables := make([]string, len(writes))
	for i, w := range writes {
		tables[i] = w.Table
	}
	budget := m.o.TakeoverBudget
	if budget <= 0 {
		budget = time.Second
	}
	tctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	start := m.o.Now()
	err := m.o.Takeover(tctx, tables)
	now := m.o.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.eng.Counters().TakeoverErrors++
		m.setErr(now, fmt.Sprintf("take over the flows of %v: %v", tables, err))
		m.log.Warn("ha: flow takeover failed; the routes move anyway", "route_tables", tables, "err", err)
		return
	}
	m.log.Info("ha: flows taken over before the routes", "route_tables", tables, "took", now.Sub(start).Round(time.Millisecond))
}

// reconcileEIPs associates the EIP of each group this node claims (and
// whose writes have started: after the takeover) with its ENI. Without a
// standby address only one EIP fits, on the primary private IP: the first
// claimed group in configuration order wins. With one (Options.Standby),
// the group of the node's home tables goes to the primary IP and the
// others to the standby address.
func (m *Manager) reconcileEIPs(ctx context.Context, eni string, full bool) error {
	m.eipMu.Lock()
	defer m.eipMu.Unlock()
	type target struct {
		g         *EIPGroup
		home      bool
		elsewhere bool
	}
	var want []target
	m.mu.Lock()
	home := m.eng.HomeTables()
	groups := m.eipGroups()
	for i, g := range groups {
		all := len(g.RouteTables) > 0
		for _, id := range g.RouteTables {
			// Claimed, and its takeover done: the EIP moves after the
			// flows and before the routes.
			if !m.eng.Claimed(id) || m.eng.Unwritten(id) {
				all = false
			}
		}
		if !all {
			if m.eips[g.AllocationID] == eni {
				// Given away with its tables: the peer moves it; when
				// this node claims them again it is known to be
				// elsewhere.
				m.eips[g.AllocationID] = ""
			}
			continue
		}
		if known, seen := m.eips[g.AllocationID]; !seen || known != eni || full {
			// Known to be elsewhere: associate at once, no describe
			// first (a takeover waits for this call).
			want = append(want, target{&groups[i], m.onPrimary(g, home), seen && known != eni && !full})
		}
		if !m.o.Standby {
			break
		}
	}
	m.mu.Unlock()
	var errs []error
	for _, t := range want {
		if err := m.associate(ctx, t.g, eni, t.home, t.elsewhere); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// associate puts the group's EIP on eni (home: its primary IP) unless it
// is there already (elsewhere: known not to be, no describe needed).
func (m *Manager) associate(ctx context.Context, g *EIPGroup, eni string, home, elsewhere bool) error {
	on, err := false, error(nil)
	if !elsewhere {
		on, err = m.cloud.EIPOn(ctx, g.AllocationID, eni, home)
	}
	if err != nil {
		m.mu.Lock()
		m.setErr(m.o.Now(), "describe EIP "+g.AllocationID+": "+err.Error())
		m.mu.Unlock()
		return err
	}
	if !on {
		if err := m.cloud.AssociateEIP(ctx, g.AllocationID, eni, home); err != nil {
			m.mu.Lock()
			m.setErr(m.o.Now(), fmt.Sprintf("associate EIP %s with %s: %v", g.AllocationID, eni, err))
			m.mu.Unlock()
			m.log.Warn("ha: EIP association failed; retrying", "allocation_id", g.AllocationID, "eni", eni, "err", err)
			return err
		}
		m.log.Info("EIP follows its route tables to this node", "allocation_id", g.AllocationID, "eni", eni,
			"route_tables", g.RouteTables, "primary_ip", home)
		m.mu.Lock()
		m.eng.Counters().EIPAssociations++
		m.mu.Unlock()
	}
	m.mu.Lock()
	m.eips[g.AllocationID] = eni
	m.mu.Unlock()
	return nil
}

// onPrimary reports whether g's EIP goes on the primary private IP: with
// no standby address always, else when g follows home tables only.
func (m *Manager) onPrimary(g EIPGroup, home []string) bool {
	if !m.o.Standby {
		return true
	}
	for _, id := range g.RouteTables {
		if !slices.Contains(home, id) {
			return false
		}
	}
	return true
}

// learnEIPs keeps the zones' EIPs a discovery found (m.mu held).
func (m *Manager) learnEIPs(found Discovered) {
	if len(m.o.EIPs) > 0 {
		return
	}
	for _, e := range []struct {
		dst   *string
		found string
		zone  string
	}{{&m.homeEIP, found.HomeEIP, "home"}, {&m.peerEIP, found.PeerEIP, "peer"}} {
		if e.found == "" || e.found == *e.dst {
			continue
		}
		if err := checkID(e.found); err != nil {
			m.log.Warn("ha: discovered EIP ignored", "allocation_id", e.found, "err", err)
			continue
		}
		m.log.Info("ha: EIP of the "+e.zone+" zone discovered", "allocation_id", e.found, "was", *e.dst)
		*e.dst = e.found
	}
}

// eipGroups are the EIPs that follow route tables: the configured ones,
// else the discovered ones following the home and the backup tables (m.mu
// held). The slice is the caller's.
func (m *Manager) eipGroups() []EIPGroup {
	if len(m.o.EIPs) > 0 {
		return slices.Clone(m.o.EIPs)
	}
	var out []EIPGroup
	if home := m.eng.HomeTables(); m.homeEIP != "" && len(home) > 0 {
		out = append(out, EIPGroup{AllocationID: m.homeEIP, RouteTables: slices.Clone(home)})
	}
	if backup := m.eng.BackupTables(); m.peerEIP != "" && len(backup) > 0 {
		out = append(out, EIPGroup{AllocationID: m.peerEIP, RouteTables: slices.Clone(backup)})
	}
	return out
}

func (m *Manager) setErr(now time.Time, s string) {
	m.lastErr, m.lastErrAt = s, now
}

// Failover hands tables (all claimed ones when empty) to the healthy peer.
func (m *Manager) Failover(tables []string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out, err := m.eng.Failover(tables, m.o.Now(), "operator failover")
	m.changed()
	return out, err
}

// Takeover asks the peer for tables (all not claimed when empty).
func (m *Manager) Takeover(tables []string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out, err := m.eng.Takeover(tables, m.o.Now())
	m.changed()
	return out, err
}

// SetMaintenance turns maintenance on or off.
func (m *Manager) SetMaintenance(on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.eng.SetMaintenance(on, m.o.Now())
	m.changed()
}

// Status is a snapshot of the HA loop.
type Status struct {
	EngineStatus
	PeerAddr     string
	Interval     time.Duration
	DeadAfter    time.Duration
	Preempt      bool
	HoldDown     time.Duration
	HeartbeatAge time.Duration // since the last accepted heartbeat; -1: none
	Received     ReceiverStats
	LastError    string
	LastErrorAt  time.Time
	EIPs         []EIPStatus
}

// EIPStatus is one EIP group.
type EIPStatus struct {
	AllocationID string
	RouteTables  []string
	ENI          string // where it was last seen associated ("" unknown)
	// Primary: it goes on the primary private IP of the node serving its
	// tables (its own zone's, or any without a standby address); else on
	// the standby address.
	Primary bool
}

// Status returns a snapshot.
func (m *Manager) Status() Status {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.o.Now()
	s := Status{EngineStatus: m.eng.Status(now), Interval: m.o.Interval, DeadAfter: time.Duration(m.o.DeadAfter) * m.o.Interval,
		Preempt: m.o.Preempt, HoldDown: m.o.HoldDown, HeartbeatAge: -1, Received: m.recv.Stats(),
		LastError: m.lastErr, LastErrorAt: m.lastErrAt}
	if m.o.Peer.IsValid() {
		s.PeerAddr = m.o.Peer.String()
	}
	if !s.Peer.LastSeen.IsZero() {
		s.HeartbeatAge = now.Sub(s.Peer.LastSeen)
	}
	home := m.eng.HomeTables()
	for _, g := range m.eipGroups() {
		s.EIPs = append(s.EIPs, EIPStatus{AllocationID: g.AllocationID, RouteTables: slices.Clone(g.RouteTables),
			ENI: m.eips[g.AllocationID], Primary: m.onPrimary(g, home)})
	}
	return s
}

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/cloud"
	"github.com/hanat/hanat/config"
	"github.com/hanat/hanat/ha"
)

// haNode wires the HA loop (package ha) to EC2 and the daemon. It starts
// on EC2 whenever ha.enabled is true: with a peer as half of a heartbeat
// pair, without one as a single instance owning its home route tables.
type haNode struct {
	log *slog.Logger

	// own is this node's primary private IP (none while unknown), standby
	// its standby address (invalid: none): where its EIPs go.
	own     func() []netip.Addr
	standby netip.Addr

	mu  sync.Mutex
	m   *ha.Manager // nil when not running
	why string      // why not running
}

// eipAddr is the private IP that carries an EIP here: the primary IP, or
// the standby address.
func (h *haNode) eipAddr(primary bool) netip.Addr {
	if !primary {
		return h.standby
	}
	if own := h.own(); len(own) > 0 {
		return own[0]
	}
	return netip.Addr{}
}

// newHA builds the HA loop, or a node that says why it does not run.
func (d *daemon) newHA(ctx context.Context) *haNode {
	cfg := d.config()
	h := &haNode{log: d.log.With("component", "ha"), own: d.ec2.OwnAddrs, standby: d.sync.standby()}
	switch {
	case cfg.GWLB.Enabled:
		h.why = "a fleet member (gwlb.enabled): the route tables point at the GWLB endpoints, hanatd does not touch them"
		return h
	case !cfg.HA.Enabled:
		h.why = "ha.enabled is false: hanatd does not touch route tables"
		return h
	case !d.ec2.OnEC2():
		h.why = "not on EC2: no route tables to own"
		return h
	case d.ec2.EC2() == nil:
		h.why = "no EC2 API client: " + d.ec2.Message()
		return h
	}
	inst := d.ec2.Instance()
	// Its own client: HA wants short backoffs, failover must not wait 5 s
	// between two throttled attempts. EC2's bucket for ReplaceRoute and
	// AssociateAddress refills 5 tokens/s, so a retry within 200 ms
	// (jittered: 100 ms on average) finds one as soon as EC2 has it.
	c, err := cloud.NewEC2(ctx, h.log.With("component", "ec2"), cloud.EC2Options{
		Region: inst.Region, Endpoint: cfg.Cloud.EC2Endpoint,
		CallTimeout: 5 * time.Second, MaxAttempts: 10, MaxBackoff: 200 * time.Millisecond,
	})
	if err != nil {
		h.why = "EC2 API client: " + err.Error()
		h.log.Error("HA not running", "err", err)
		return h
	}
	var key []byte
	var peer netip.AddrPort
	if cfg.HA.Peer.IsValid() {
		key, err = ha.ReadKey(cfg.HA.KeyFile)
		if err != nil {
			h.why = err.Error()
			h.log.Error("HA not running: the heartbeat needs the shared key", "err", err)
			return h
		}
		peer = netip.AddrPortFrom(cfg.HA.Peer, cfg.HA.Port)
	}
	var eips []ha.EIPGroup
	for _, e := range cfg.HA.EIPs {
		eips = append(eips, ha.EIPGroup{AllocationID: e.AllocationID, RouteTables: slices.Clone(e.RouteTables)})
	}
	adapter := &haCloud{ec2: c, log: h.log, standby: d.sync.standby()}
	var takeover func(context.Context, []string) error
	if d.sync.pair != nil {
		takeover = d.sync.pair.Takeover
	}
	m, err := ha.New(h.log, adapter, ha.Options{
		NodeID:    inst.ID,
		ENI:       func() string { return d.ec2.OutsideENI().ID },
		Peer:      peer,
		Listen:    netip.AddrPortFrom(netip.IPv4Unspecified(), cfg.HA.Port),
		Key:       key,
		Interval:  cfg.HA.Interval.Duration,
		DeadAfter: cfg.HA.DeadAfter,
		Preempt:   cfg.HA.Preempt,
		HoldDown:  cfg.HA.HoldDown.Duration,
		Home:      cfg.HA.HomeRouteTables,
		Backup:    cfg.HA.BackupRouteTables,
		Discover: func(ctx context.Context, eni, peerENI string) (ha.Discovered, error) {
			r, err := c.DiscoverRouteTables(ctx, inst.VPCID, inst.AvailabilityZone, eni, peerENI)
			return ha.Discovered{Home: r.Home, Backup: r.Backup}, err
		},
		// Zero-config EIPs: with a standby address and no ha.eips, the
		// zones' EIPs are read from where EC2 shows them.
		DiscoverEIPs: func(ctx context.Context, eni, peerENI string) (string, string, error) {
			if !d.sync.standby().IsValid() {
				return "", "", nil
			}
			e, err := c.PairEIPs(ctx, eni, peerENI)
			return e.Home, e.Peer, err
		},
		EIPs:           eips,
		Takeover:       takeover,
		Standby:        d.sync.standby().IsValid(),
		Health:         d.haHealth(cfg.HA.Health, inst.Region).Check,
		HealthInterval: cfg.HA.Health.Interval.Duration,
	})
	if err != nil {
		h.why = err.Error()
		h.log.Error("HA not running", "err", err)
		return h
	}
	h.m = m
	return h
}

// haHealth checks this node for the HA loop: its datapath is applied
// without error, it holds the peer's flows (state sync), and its
// upstream is reachable.
func (d *daemon) haHealth(cfg config.HAHealth, region string) *ha.HealthChecker {
	return &ha.HealthChecker{
		Targets: upstreamTargets(cfg, region),
		Timeout: cfg.Timeout.Duration,
		// With the zones' EIPs following their tables, a node whose home
		// tables the peer serves has lent it its public address.
		PublicAway: func() bool { return d.sync.standby().IsValid() && d.ha.homeAway() && d.ha.eipsFollow(true) },
		Datapath: func() (bool, string) {
			if up, why := d.natUp(); !up {
				return false, why
			}
			return d.sync.ready()
		},
	}
}

// upstreamTargets are the upstream check's targets: the configured ones,
// else the region's defaults (off EC2, with no region, the endpoint
// outside AWS's regions only).
func upstreamTargets(cfg config.HAHealth, region string) []string {
	switch {
	case len(cfg.Targets) > 0:
		return cfg.Targets
	case region == "":
		return cloud.UpstreamTargets(region)[:1]
	}
	return cloud.UpstreamTargets(region)
}

// natUp reports whether the NAT's datapath is applied without error, and
// why not.
func (d *daemon) natUp() (bool, string) {
	s := d.snapshot()
	switch {
	case !s.ready:
		return false, "NAT datapath not applied yet: " + s.lastError
	case s.lastError != "":
		return false, s.lastError
	}
	return true, ""
}

func (h *haNode) run(ctx context.Context) error {
	if h.m == nil {
		return nil
	}
	if err := h.m.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		// HA failing must not take the NAT down; the status says why.
		h.mu.Lock()
		h.why = err.Error()
		h.m = nil
		h.mu.Unlock()
		h.log.Error("HA stopped; NAT keeps running", "err", err)
	}
	return nil
}

func (h *haNode) manager() *ha.Manager {
	m, _ := h.running()
	return m
}

// running is the HA loop, or nil and why it does not run.
func (h *haNode) running() (*ha.Manager, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m, h.why
}

// snapshot is the HA loop's typed status; ok is false when it does not
// run.
func (h *haNode) snapshot() (s ha.Status, ok bool) {
	if m := h.manager(); m != nil {
		return m.Status(), true
	}
	return ha.Status{}, false
}

// homeAway reports whether the peer serves every home table of this node.
func (h *haNode) homeAway() bool {
	s, ok := h.snapshot()
	return ok && s.HomeAway()
}

// peerZone are the peer's route tables (this node's backups) whose EIP
// follows them to this node: their subnets leave with the standby
// address (syncNode.zones). Without an EIP for them, none.
func (h *haNode) peerZone() []string {
	s, _ := h.snapshot()
	return s.FollowedBy(false)
}

// eipsFollow reports whether an EIP follows the home tables (home) or the
// backup tables (the peer's zone): configured in ha.eips or discovered.
func (h *haNode) eipsFollow(home bool) bool {
	s, _ := h.snapshot()
	return len(s.FollowedBy(home)) > 0
}

// status converts the HA loop's status for the admin socket.
func (h *haNode) status() *admin.HAStatus {
	m, why := h.running()
	if m == nil {
		return &admin.HAStatus{Enabled: false, Mode: "off", Message: why, Counters: map[string]uint64{}}
	}
	s := m.Status()
	st := &admin.HAStatus{
		Enabled: true, Mode: "single", NodeID: s.NodeID, ENI: s.ENI, Healthy: s.Healthy, HealthNote: s.HealthReason,
		Maintenance: s.Maintenance, Preempt: s.Preempt, HoldDown: s.HoldDown.String(), Interval: s.Interval.String(),
		DeadAfter: s.DeadAfter.String(), LastError: s.LastError, LastErrorAt: s.LastErrorAt, Counters: s.Received.Named(s.Counters.Named()),
		Tables: []admin.HATable{},
	}
	if s.PeerAddr != "" {
		st.Mode = "pair"
	}
	p := s.Peer
	st.Peer = admin.HAPeer{Address: s.PeerAddr, NodeID: p.NodeID, ENI: p.ENI, State: p.State, Detail: p.Detail,
		Healthy: p.Healthy, Maintenance: p.Maintenance, HeartbeatAgeMS: -1}
	if s.HeartbeatAge >= 0 {
		st.Peer.HeartbeatAgeMS = s.HeartbeatAge.Milliseconds()
	}
	st.Peer.Loss = s.Received.Loss()
	for _, t := range s.Tables {
		st.Tables = append(st.Tables, admin.HATable{ID: t.ID, Home: t.Home, Owner: t.Owner, OwnerNode: t.OwnerNode,
			Blackhole: t.Blackhole, Desired: t.Desired, Claim: t.Claim, LastChange: t.Last.At, LastReason: t.Last.Reason.String(),
			Changes: t.Changes})
	}
	for _, e := range s.EIPs {
		ae := admin.HAEIP{AllocationID: e.AllocationID, RouteTables: e.RouteTables, ENI: e.ENI}
		if addr := h.eipAddr(e.Primary); e.ENI != "" && e.ENI == s.ENI && addr.IsValid() {
			ae.Address = addr.String()
		}
		st.EIPs = append(st.EIPs, ae)
	}
	return st
}

func (b *backend) haManager() (*ha.Manager, error) {
	m, why := b.d.ha.running()
	if m == nil {
		return nil, fmt.Errorf("%w: HA is not running: %s", admin.ErrConflict, why)
	}
	return m, nil
}

// Failover implements admin.HABackend.
func (b *backend) Failover(ctx context.Context, req admin.HARequest) (admin.HAResponse, error) {
	m, err := b.haManager()
	if err != nil {
		return admin.HAResponse{}, err
	}
	got, err := m.Failover(req.Tables)
	if err != nil {
		return admin.HAResponse{}, fmt.Errorf("%w: %v", admin.ErrConflict, err)
	}
	msg := fmt.Sprintf("handing %d route table(s) to the peer", len(got))
	if len(got) == 0 {
		msg = "this node owns none of those route tables"
	}
	return admin.HAResponse{Tables: got, Message: msg}, nil
}

// Takeover implements admin.HABackend.
func (b *backend) Takeover(ctx context.Context, req admin.HARequest) (admin.HAResponse, error) {
	m, err := b.haManager()
	if err != nil {
		return admin.HAResponse{}, err
	}
	got, err := m.Takeover(req.Tables)
	if err != nil {
		return admin.HAResponse{}, fmt.Errorf("%w: %v", admin.ErrConflict, err)
	}
	msg := fmt.Sprintf("asking the peer for %d route table(s)", len(got))
	if len(got) == 0 {
		msg = "this node already owns those route tables"
	}
	return admin.HAResponse{Tables: got, Message: msg}, nil
}

// Maintenance implements admin.HABackend.
func (b *backend) Maintenance(ctx context.Context, req admin.MaintenanceRequest) (admin.HAResponse, error) {
	m, err := b.haManager()
	if err != nil {
		return admin.HAResponse{}, err
	}
	m.SetMaintenance(req.On)
	if req.On {
		return admin.HAResponse{Message: "maintenance on: handing every route table to the healthy peer and staying backup (a dead peer's tables are still taken)"}, nil
	}
	return admin.HAResponse{Message: "maintenance off"}, nil
}

// haCloud implements ha.Cloud over the cloud package.
type haCloud struct {
	ec2     *cloud.EC2
	log     *slog.Logger
	standby netip.Addr // the address of the peer's EIP here (invalid: none)
}

// timed logs (at debug level) when an EC2 call of the HA loop started and
// how long it took: the failover timeline.
func (c *haCloud) timed(ctx context.Context, call, rtb string) func(error) {
	if !c.log.Enabled(ctx, slog.LevelDebug) {
		return func(error) {}
	}
	start := time.Now()
	return func(err error) {
		c.log.Debug("ha ec2 call", "call", call, "route_table", rtb, "start", start.Format("15:04:05.000"),
			"took", time.Since(start).Round(time.Millisecond), "err", err)
	}
}

func (c *haCloud) DefaultRoutes(ctx context.Context, ids []string) (_ map[string]ha.Observation, err error) {
	done := c.timed(ctx, "describe", fmt.Sprint(ids))
	defer func() { done(err) }()
	routes, err := c.ec2.DefaultRoutes(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]ha.Observation, len(routes))
	for id, r := range routes {
		out[id] = ha.Observation{Target: r.Target, Blackhole: r.Blackhole}
	}
	return out, nil
}

func (c *haCloud) EnsureDefaultRoute(ctx context.Context, rtb, eni string) (changed bool, err error) {
	done := c.timed(ctx, "ensure (describe+write)", rtb)
	defer func() { done(err) }()
	return c.ec2.EnsureDefaultRoute(ctx, rtb, eni)
}

func (c *haCloud) SetDefaultRoute(ctx context.Context, rtb, eni string, exists bool) (err error) {
	call := "create"
	if exists {
		call = "replace"
	}
	done := c.timed(ctx, call, rtb)
	defer func() { done(err) }()
	return c.ec2.SetDefaultRoute(ctx, rtb, eni, exists)
}

func (c *haCloud) EIPOn(ctx context.Context, allocationID, eni string, home bool) (bool, error) {
	return c.ec2.EIPOn(ctx, allocationID, eni, c.eipAddr(home))
}

func (c *haCloud) AssociateEIP(ctx context.Context, allocationID, eni string, home bool) error {
	_, err := c.ec2.AssociateEIP(ctx, allocationID, eni, c.eipAddr(home))
	return err
}

// eipAddr is where an EIP goes on this node: the primary IP (invalid)
// for its own zone's, the standby address for the peer's.
func (c *haCloud) eipAddr(home bool) netip.Addr {
	if home {
		return netip.Addr{}
	}
	return c.standby
}

func (c *haCloud) IsThrottled(err error) bool { return cloud.IsThrottled(err) }

package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/config"
	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/datapath"
	"github.com/hanat/hanat/flowsync"
	"github.com/hanat/hanat/ha"
	"github.com/hanat/hanat/metrics"
)

// syncNode wires the pair's state sync (package flowsync) to the daemon:
// this node's flows stream to the peer (the sender follows the conntrack
// event feed, a snapshot on each connect), the peer's are held here, and
// at a takeover the held flows are injected with their NAT address
// rewritten to the address that will carry the peer's EIP here, before
// the EIP and the routes move (ha.Options.Takeover).
type syncNode struct {
	log      *slog.Logger
	why      string // why it does not run ("" when it does)
	sender   *flowsync.Sender
	receiver *flowsync.Receiver
	table    *conntrack.Table
	injector *conntrack.Injector
	feed     *conntrack.EventFeed
	peer     netip.Addr // the peer's private IP: its SNAT address
	started  time.Time
	standby  netip.Addr // carries the peer's EIP here (invalid: none)
	nat      func() datapath.NAT
	ec2      *ec2Node

	mu        sync.Mutex
	last      *admin.HATakeover
	zoneOf    string // the backup tables zoneSubnets were read for
	zoneNets  []netip.Prefix
	zoneAsked time.Time
}

// newSync builds the sync of a pair, or a node that says why it is off.
func (d *daemon) newSync(ctx context.Context, cfg *config.Config) *syncNode {
	n := &syncNode{log: d.log.With("component", "sync"), feed: d.feed, peer: cfg.HA.Peer, ec2: d.ec2, started: time.Now(),
		nat: func() datapath.NAT { return d.snapshot().nat }}
	switch {
	case !cfg.HA.Enabled || !cfg.HA.Peer.IsValid():
		n.why = "no HA peer"
		return n
	case !cfg.HA.Sync:
		n.why = "ha.sync is false: a failover resets established connections"
		return n
	}
	key, err := ha.ReadKey(cfg.HA.KeyFile)
	if err != nil {
		n.why = err.Error()
		return n
	}
	// The peer's SNAT address is its private IP; the filter of what is
	// synced follows the NAT (Sender's Filter is fixed: every flow of
	// the private CIDRs translated to this node's addresses).
	if n.table, err = conntrack.Open(n.log, conntrack.NetNS{}); err == nil {
		n.injector, err = conntrack.OpenInjector(n.log, conntrack.NetNS{})
	}
	if err != nil {
		n.why = "conntrack: " + err.Error()
		return n
	}
	// The peer's connections keep their public address if its EIP
	// follows to this node's standby address: the EIP of ha.eips, else
	// the one HA discovers on the peer (cloud.ClassifyPairEIPs). The
	// standby address SNATs the peer's zone only while an EIP follows
	// its tables (haNode.peerZone).
	n.standby = d.ec2.ensureStandby(ctx)
	self := d.snapshot().nat
	filter := conntrack.Filter{PrivateCIDRs: slices.Clone(self.PrivateCIDRs), NATAddrs: self.AllSNATAddrs()}
	if len(filter.PrivateCIDRs) == 0 {
		filter.PrivateCIDRs = cfg.PrivateCIDRs
	}
	if len(filter.PrivateCIDRs) == 0 {
		filter.PrivateCIDRs = d.ec2.vpcCIDRs()
	}
	if len(filter.NATAddrs) == 0 {
		filter.NATAddrs = append(slices.Clone(cfg.SNAT.Addresses), d.ec2.ownAddrs()...)
	}
	if n.standby.IsValid() {
		// The peer's zone's flows this node serves: the peer takes
		// them back at failback.
		filter.NATAddrs = append(filter.NATAddrs, n.standby)
	}
	port := netip.AddrPortFrom(cfg.HA.Peer, cfg.HA.SyncPort)
	n.sender, err = flowsync.NewSender(flowsync.SenderConfig{Log: n.log, Key: key, Peer: port, Filter: filter, Source: n.table})
	if err == nil {
		n.receiver, err = flowsync.NewReceiver(flowsync.ReceiverConfig{Log: n.log, Key: key, Peer: cfg.HA.Peer,
			Listen: netip.AddrPortFrom(netip.IPv4Unspecified(), cfg.HA.SyncPort)})
	}
	if err != nil {
		n.why = err.Error()
		n.sender, n.receiver = nil, nil
	}
	return n
}

// run streams and receives until ctx is done; sync trouble never stops
// the NAT.
func (n *syncNode) run(ctx context.Context) error {
	if n.sender == nil {
		return nil
	}
	var wg sync.WaitGroup
	for name, part := range map[string]func(context.Context) error{
		"sender":   n.sender.Run,
		"receiver": n.receiver.Run,
		"events":   func(ctx context.Context) error { return n.sender.Follow(ctx, n.feed, datapath.CtMarkOffload) },
	} {
		wg.Go(func() {
			if err := part(ctx); err != nil && ctx.Err() == nil {
				n.log.Error("state sync stopped; failovers reset connections", "part", name, "err", err)
			}
		})
	}
	wg.Wait()
	return nil
}

// syncWait bounds how long a starting node waits for its peer's first
// snapshot before it counts as healthy anyway (a peer that is gone sends
// none).
const syncWait = 10 * time.Second

// ready reports whether this node holds the peer's flows, so it may take
// tables back (the HA loop counts it unhealthy until then: a failback
// waits for the snapshot, at most syncWait after start).
func (n *syncNode) ready() (bool, string) {
	if n.receiver == nil || time.Since(n.started) > syncWait {
		return true, ""
	}
	if n.receiver.Status().LastFullSync.IsZero() {
		return false, "waiting for the peer's flows (state sync snapshot)"
	}
	return true, ""
}

// takeover injects the held flows, their NAT address rewritten to the one
// that carries the peer's EIP here (the standby address for the peer's
// own flows, this node's own address for its flows the peer served), into
// the kernel before the EIP and the routes move.
func (n *syncNode) takeover(ctx context.Context, tables []string) error {
	if n.receiver == nil {
		return nil
	}
	start := time.Now()
	held := n.receiver.Held()
	nat := n.nat()
	addrs := map[netip.Addr]netip.Addr{}
	if n.standby.IsValid() && len(nat.Zones) > 0 {
		// The peer's EIP follows to the standby address (the zone's
		// SNAT is there only then): the peer's flows keep it.
		addrs[n.peer] = n.standby
	}
	if len(nat.SNATAddrs) > 0 {
		// Flows of this node's zone that the peer served went out with
		// the peer's standby address (any other address of the peer's
		// than its own): they come back to this node's SNAT address.
		for _, f := range held {
			if a := f.NATAddr().Addr(); a != n.peer && a.IsValid() {
				if _, ok := addrs[a]; !ok {
					addrs[a] = nat.SNATAddrs[0]
				}
			}
		}
	}
	rw := flowsync.Takeover{PrivateCIDRs: nat.PrivateCIDRs, Addrs: addrs}.Rewrite(held)
	res, err := n.injector.Inject(ctx, rw.Flows)
	t := &admin.HATakeover{At: start, Tables: tables, Injected: res.Created, Existed: res.Existed, Refused: rw.Refused,
		Failed: res.Failed, TookMS: time.Since(start).Milliseconds()}
	switch {
	case err != nil:
		t.Error = err.Error()
	case res.FirstErr != nil:
		t.Error = res.FirstErr.Error()
	case rw.FirstRefusal != nil:
		t.Error = rw.FirstRefusal.Error()
	}
	n.mu.Lock()
	n.last = t
	n.mu.Unlock()
	n.log.Info("peer's flows injected before the routes move", "tables", tables, "held", len(held), "injected", res.Created,
		"existed", res.Existed, "refused", rw.Refused, "failed", res.Failed, "took", time.Since(start).Round(time.Millisecond))
	if err != nil {
		return fmt.Errorf("inject %d flows: %w", len(rw.Flows), err)
	}
	return nil
}

// status is the sync for hanatctl status and the metrics.
func (n *syncNode) status() *admin.HASync {
	st := &admin.HASync{Enabled: n.sender != nil, Message: n.why}
	if n.standby.IsValid() {
		st.Standby = n.standby.String()
	}
	if n.sender == nil {
		return st
	}
	st.Sent, st.Held = streamOf(n.sender.Status()), streamOf(n.receiver.Status())
	n.mu.Lock()
	st.LastTakeover = n.last
	n.mu.Unlock()
	return st
}

// metrics is the sync for the exporter, from the typed states.
func (n *syncNode) metrics() *metrics.SyncSnapshot {
	if n.sender == nil {
		return nil
	}
	sent, held := n.sender.Status(), n.receiver.Status()
	m := &metrics.SyncSnapshot{SentConnected: sent.Connected, HeldConnected: held.Connected, FlowsSent: sent.Flows,
		FlowsHeld: held.Flows, Lag: sent.Lag, LastFullSync: held.LastFullSync, Errors: map[string]uint64{}}
	for _, st := range []flowsync.Status{sent, held} {
		for r, v := range streamOf(st).Errors {
			m.Errors[r] += v
		}
	}
	n.mu.Lock()
	if n.last != nil {
		m.Injected = n.last.Injected + n.last.Existed
	}
	n.mu.Unlock()
	return m
}

func streamOf(s flowsync.Status) admin.HASyncStream {
	out := admin.HASyncStream{Connected: s.Connected, Flows: s.Flows, LagMS: s.Lag.Milliseconds(),
		LastFullSyncAt: s.LastFullSync, Snapshots: s.Snapshots, Errors: map[string]uint64{}}
	c := s.Counters
	for name, v := range map[string]uint64{"not_peer": c.NotPeer, "handshake": c.Handshake, "auth_failed": c.AuthFailed,
		"replayed": c.Replayed, "malformed": c.Malformed, "lost": c.Lost, "queue_drops": c.QueueDrops, "failures": c.Failures} {
		if v > 0 {
			out.Errors[name] = v
		}
	}
	return out
}

// zones is the SNAT of the peer's zone while this node has a standby
// address: the private subnets of the peer's route tables (this node's
// backups, read from EC2 when they change, at most once a minute) leave
// with the standby address, which carries the peer's EIP whenever this
// node serves them.
func (n *syncNode) zones(ctx context.Context, backups []string, private []netip.Prefix) []datapath.ZoneSNAT {
	if n.receiver == nil || !n.standby.IsValid() || len(backups) == 0 || n.ec2.ec2 == nil {
		return nil
	}
	slices.Sort(backups)
	key := fmt.Sprint(backups)
	n.mu.Lock()
	nets, fresh := n.zoneNets, n.zoneOf == key || time.Since(n.zoneAsked) < time.Minute
	n.mu.Unlock()
	if !fresh {
		got, err := n.ec2.ec2.SubnetsOf(ctx, n.ec2.inst.VPCID, backups)
		n.mu.Lock()
		n.zoneAsked = time.Now()
		if err != nil {
			n.log.Warn("the peer's subnets: new flows from them leave with this node's own address", "route_tables", backups, "err", err)
		} else {
			n.zoneOf, n.zoneNets, nets = key, got, got
		}
		n.mu.Unlock()
	}
	var sources []netip.Prefix
	for _, p := range nets {
		for _, c := range private {
			if c.Bits() <= p.Bits() && c.Contains(p.Addr()) {
				sources = append(sources, p)
				break
			}
		}
	}
	if len(sources) == 0 {
		return nil
	}
	return []datapath.ZoneSNAT{{Sources: sources, Addr: n.standby}}
}

package main

import (
	"context"
	"net/netip"
	"slices"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/config"
	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/datapath"
	"github.com/hanat/hanat/flowsync"
	"github.com/hanat/hanat/ha"
	"github.com/hanat/hanat/metrics"
)

// syncNode is the pair's state sync (flowsync.Pair) as the daemon wires
// it to the HA loop, the admin socket and the metrics.
type syncNode struct {
	pair *flowsync.Pair // nil: off
	why  string         // why it is off
}

// haPeered: the config names an HA peer.
func haPeered(cfg *config.Config) bool { return cfg.HA.Enabled && cfg.HA.Peer.IsValid() }

// syncConfigured: the config asks for the pair's state sync, which follows
// conntrack's events.
func syncConfigured(cfg *config.Config) bool { return haPeered(cfg) && cfg.HA.Sync }

// newSync builds the sync of a pair, or a node that says why it is off.
func (d *daemon) newSync(ctx context.Context, cfg *config.Config) *syncNode {
	n := &syncNode{}
	switch {
	case !haPeered(cfg):
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
	log := d.log.With("component", "sync")
	// The peer's connections keep their public address if its EIP
	// follows to this node's standby address: the EIP of ha.eips, else
	// the one HA discovers (cloud.ClassifyPairEIPs). The standby address
	// SNATs the peer's zone, and its flows are rewritten to it, only
	// while an EIP follows the peer's tables (haNode.peerZone).
	var subnets func(context.Context, []string) ([]netip.Prefix, error)
	if d.ec2.EC2() != nil {
		subnets = d.ec2.SubnetsOf
	}
	n.pair, err = flowsync.NewPair(ctx, flowsync.PairConfig{Log: log, Key: key, Peer: cfg.HA.Peer, Port: cfg.HA.SyncPort,
		Filter: d.syncFilter(cfg), Feed: d.feed, EstablishedMark: datapath.CtMarkOffload, Standby: d.ensureStandby, Subnets: subnets,
		PeerEIPHere: func() bool { return len(d.ha.peerZone()) > 0 },
		NAT:         func() ([]netip.Prefix, []netip.Addr) { nat := d.snapshot().nat; return nat.PrivateCIDRs, nat.SNATAddrs }})
	if err != nil {
		n.why = err.Error()
	}
	return n
}

// syncFilter is what this node streams: every flow of the private CIDRs
// translated to this node's addresses, from the config and the instance
// (the NAT is not applied yet).
func (d *daemon) syncFilter(cfg *config.Config) conntrack.Filter {
	self := d.snapshot().nat
	filter := conntrackFilter(self)
	filter.PrivateCIDRs = slices.Clone(filter.PrivateCIDRs)
	if len(filter.PrivateCIDRs) == 0 {
		filter.PrivateCIDRs = cfg.PrivateCIDRs
	}
	if len(filter.PrivateCIDRs) == 0 {
		filter.PrivateCIDRs = d.ec2.VPCCIDRs()
	}
	if len(filter.NATAddrs) == 0 {
		filter.NATAddrs = append(slices.Clone(cfg.SNAT.Addresses), d.ec2.OwnAddrs()...)
	}
	return filter
}

// ensureStandby finds or makes the standby address (cloud.Node) and
// configures it on the outside interface.
func (d *daemon) ensureStandby(ctx context.Context) netip.Addr {
	standby := d.ec2.EnsureStandby(ctx)
	if !standby.IsValid() {
		return standby
	}
	iface := d.ec2.OutsideIface()
	if added, err := datapath.EnsureAddress(iface, standby); err != nil {
		d.log.Warn("standby address not on the interface", "component", "sync", "iface", iface, "addr", standby, "err", err)
	} else if added {
		d.log.Info("standby address configured", "component", "sync", "iface", iface, "addr", standby)
	}
	return standby
}

// standby carries the peer's EIP here (invalid: none).
func (n *syncNode) standby() netip.Addr {
	if n.pair == nil {
		return netip.Addr{}
	}
	return n.pair.Standby()
}

func (n *syncNode) run(ctx context.Context) error {
	if n.pair == nil {
		return nil
	}
	return n.pair.Run(ctx)
}

// ready: see flowsync.Pair.Ready (always without a sync).
func (n *syncNode) ready() (bool, string) {
	if n.pair == nil {
		return true, ""
	}
	return n.pair.Ready()
}

// zones is the SNAT of the peer's zone (flowsync.Pair.Zones) with the
// standby address.
func (n *syncNode) zones(ctx context.Context, backups []string, private []netip.Prefix) []datapath.ZoneSNAT {
	if n.pair == nil {
		return nil
	}
	sources := n.pair.Zones(ctx, backups, private)
	if len(sources) == 0 {
		return nil
	}
	return []datapath.ZoneSNAT{{Sources: sources, Addr: n.pair.Standby()}}
}

// status is the sync for hanatctl status.
func (n *syncNode) status() *admin.HASync {
	st := &admin.HASync{Enabled: n.pair != nil, Message: n.why}
	if n.pair == nil {
		return st
	}
	s := n.pair.Status()
	if s.Standby.IsValid() {
		st.Standby = s.Standby.String()
	}
	st.Sent, st.Held = streamOf(s.Sent), streamOf(s.Held)
	if t := s.LastTakeover; t != nil {
		st.LastTakeover = &admin.HATakeover{At: t.At, Tables: t.Tables, Injected: t.Injected, Existed: t.Existed,
			Refused: t.Refused, Failed: t.Failed, TookMS: t.Took.Milliseconds(), Error: t.Error}
	}
	return st
}

// metrics is the sync for the exporter, from the typed states.
func (n *syncNode) metrics() *metrics.SyncSnapshot {
	if n.pair == nil {
		return nil
	}
	s := n.pair.Status()
	sent, held := s.Sent, s.Held
	m := &metrics.SyncSnapshot{SentConnected: sent.Connected, HeldConnected: held.Connected, FlowsSent: sent.Flows,
		FlowsHeld: held.Flows, Lag: sent.Lag, LastFullSync: held.LastFullSync, Errors: map[string]uint64{}}
	for _, st := range []flowsync.Status{sent, held} {
		for r, v := range st.Counters.Errors() {
			m.Errors[r] += v
		}
	}
	if t := s.LastTakeover; t != nil {
		m.Injected = t.Injected + t.Existed
	}
	return m
}

func streamOf(s flowsync.Status) admin.HASyncStream {
	return admin.HASyncStream{Connected: s.Connected, Flows: s.Flows, LagMS: s.Lag.Milliseconds(),
		LastFullSyncAt: s.LastFullSync, Snapshots: s.Snapshots, Errors: s.Counters.Errors()}
}

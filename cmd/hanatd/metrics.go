package main

import (
	"context"
	"time"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/ha"
	"github.com/hanat/hanat/metrics"
)

// metricsSource reads the same state `hanatctl status` shows and turns it
// into the NAT-gateway-shaped snapshot the exporter serves, so the two can
// never disagree. The HA part comes from the HA loop's typed status
// (ha.Status), the one the admin status is converted from too.
func (b *backend) metricsSource(ctx context.Context) (metrics.Snapshot, error) {
	st, err := b.Status(ctx)
	if err != nil {
		return metrics.Snapshot{}, err
	}
	s := snapshotFromStatus(st)
	if h, ok := b.d.ha.snapshot(); ok {
		s.HA = haMetrics(h)
	}
	return s, nil
}

// snapshotFromStatus maps admin status onto metrics: the NAT gateway's
// quantities come from Status.Traffic (see traffic.go for their sources).
func snapshotFromStatus(st admin.Status) metrics.Snapshot {
	tr := st.Traffic
	s := metrics.Snapshot{
		ActiveConnections:        uint64(st.Connections.Active),
		ActiveConnectionsAge:     time.Duration(st.Connections.AgeMS) * time.Millisecond,
		ConnectionAttempts:       tr.ConnectionAttempts,
		ConnectionsEstablished:   tr.ConnectionsEstablished,
		BytesOutToDestination:    tr.BytesOutToDestination,
		BytesOutToSource:         tr.BytesOutToSource,
		BytesInFromDestination:   tr.BytesInFromDestination,
		BytesInFromSource:        tr.BytesInFromSource,
		PacketsOutToDestination:  tr.PacketsOutToDestination,
		PacketsOutToSource:       tr.PacketsOutToSource,
		PacketsInFromDestination: tr.PacketsInFromDestination,
		PacketsInFromSource:      tr.PacketsInFromSource,
		PortAllocationErrors:     tr.PortAllocationErrors,
		IdleTimeouts:             tr.IdleTimeouts,
		PacketsDropped:           map[string]uint64{},
	}
	for reason, n := range tr.PacketsDropped {
		s.PacketsDropped[reason] = n
	}
	if fp := st.Datapath.FastpathDetail; st.Datapath.Fastpath != "" && st.Datapath.Fastpath != "off" {
		s.Fastpath = &metrics.FastpathSnapshot{Hits: fp.Hits, Misses: fp.Misses, OffloadedFlows: uint64(fp.OffloadedFlows)}
	}
	return s
}

// haMetrics maps the HA loop's typed status: the role from the tables
// this node owns (ha.EngineStatus.Role), failovers as claims plus
// releases, heartbeats from the receiver's counters.
func haMetrics(h ha.Status) *metrics.HASnapshot {
	hs := &metrics.HASnapshot{
		Role:               h.Role(),
		RouteTables:        make(map[string]bool, len(h.Tables)),
		Failovers:          h.Counters.Claims + h.Counters.Releases,
		PeerAlive:          h.Peer.State == "alive",
		HeartbeatsReceived: h.Received.Accepted,
		HeartbeatsMissed:   h.Received.Lost,
	}
	for _, t := range h.Tables {
		hs.RouteTables[t.ID] = t.OwnerNode == "self"
	}
	// Whole milliseconds, as the admin socket shows it.
	if ms := h.HeartbeatAge.Milliseconds(); ms > 0 {
		hs.HeartbeatAge = time.Duration(ms) * time.Millisecond
	}
	for _, n := range h.Received.Dropped {
		hs.HeartbeatsRejected += n
	}
	return hs
}

package main

import (
	"context"
	"strings"
	"time"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/metrics"
)

// metricsSource reads the same state `hanatctl status` shows and turns it
// into the NAT-gateway-shaped snapshot the exporter serves, so the two can
// never disagree.
func (b *backend) metricsSource(ctx context.Context) (metrics.Snapshot, error) {
	st, err := b.Status(ctx)
	if err != nil {
		return metrics.Snapshot{}, err
	}
	return snapshotFromStatus(st), nil
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
	if h := st.HA; h != nil && h.Enabled {
		s.HA = haSnapshot(h)
	}
	return s
}

// haSnapshot maps the HA status: the role from the tables this node owns
// ("active": all, "standby": none, "active-active": some, "maintenance"),
// failovers as claims plus releases, heartbeats from the counters.
func haSnapshot(h *admin.HAStatus) *metrics.HASnapshot {
	hs := &metrics.HASnapshot{
		RouteTables:        make(map[string]bool, len(h.Tables)),
		Failovers:          h.Counters["claims"] + h.Counters["releases"],
		PeerAlive:          h.Peer.State == "alive",
		HeartbeatsReceived: h.Counters["heartbeats_accepted"],
		HeartbeatsMissed:   h.Counters["heartbeats_lost"],
	}
	owned := 0
	for _, t := range h.Tables {
		mine := t.OwnerNode == "self"
		hs.RouteTables[t.ID] = mine
		if mine {
			owned++
		}
	}
	switch {
	case h.Maintenance:
		hs.Role = "maintenance"
	case owned == 0:
		hs.Role = "standby"
	case owned == len(h.Tables):
		hs.Role = "active"
	default:
		hs.Role = "active-active"
	}
	if h.Peer.HeartbeatAgeMS > 0 {
		hs.HeartbeatAge = time.Duration(h.Peer.HeartbeatAgeMS) * time.Millisecond
	}
	for name, n := range h.Counters {
		if strings.HasPrefix(name, "heartbeats_dropped_") {
			hs.HeartbeatsRejected += n
		}
	}
	return hs
}

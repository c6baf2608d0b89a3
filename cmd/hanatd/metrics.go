package main

import (
	"context"

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

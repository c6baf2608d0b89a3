package main

import (
	"cmp"
	"context"
	"maps"
	"time"

	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/fastpath"
	"github.com/hanat/hanat/ha"
	"github.com/hanat/hanat/metrics"
	"github.com/hanat/hanat/traffic"
)

// metricsSource builds the NAT-gateway-shaped snapshot the exporter
// serves from the same typed state `hanatctl status` is converted from
// (traffic totals, the census's last reading, the fast path's and the HA
// loop's status), so the two can never disagree.
func (b *backend) metricsSource(ctx context.Context) (metrics.Snapshot, error) {
	s := snapshotOf(b.d.traffic.Read(ctx), b.d.census.Reading(), b.d.fast.Status(), time.Now())
	if h, ok := b.d.ha.snapshot(); ok {
		s.HA = haMetrics(h)
		s.HA.Sync = b.d.sync.metrics()
	}
	return s, nil
}

// snapshotOf maps the NAT's typed state onto the metrics (see package
// traffic for the sources of the NAT gateway's quantities).
func snapshotOf(tr traffic.Totals, conns conntrack.Reading, fp fastpath.Status, now time.Time) metrics.Snapshot {
	s := metrics.Snapshot{
		ActiveConnections:        uint64(conns.Active),
		ActiveConnectionsAge:     -time.Millisecond, // no count yet
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
		PacketsDropped:           maps.Clone(tr.PacketsDropped),
	}
	if s.PacketsDropped == nil {
		s.PacketsDropped = map[string]uint64{}
	}
	if age := conns.Age(now); age >= 0 {
		// Whole milliseconds, as the admin socket shows it.
		s.ActiveConnectionsAge = age.Truncate(time.Millisecond)
	}
	if fp.Attached() {
		f := &metrics.FastpathSnapshot{}
		if c := fp.Counters; c != nil {
			f.Hits, f.Misses = c.Hits, c.Misses
		}
		if e := fp.Engine; e != nil {
			f.OffloadedFlows = uint64(e.Offloaded)
		}
		for _, is := range fp.Interfaces {
			f.Backends = append(f.Backends, metrics.FastpathBackend{Interface: is.Name, Backend: is.Mode, Reason: cmp.Or(is.Note, is.Error)})
		}
		s.Fastpath = f
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

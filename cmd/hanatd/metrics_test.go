package main

import (
	"testing"
	"time"

	"github.com/hanat/hanat/admin"
)

func TestSnapshotFromStatus(t *testing.T) {
	st := admin.Status{
		Connections: admin.Connections{Active: 4},
		Traffic: admin.Traffic{BytesInFromSource: 100, BytesOutToDestination: 100, PacketsInFromDestination: 7,
			ConnectionAttempts: 3, ConnectionsEstablished: 2, PortAllocationErrors: 1, IdleTimeouts: 5,
			PacketsDropped: map[string]uint64{"invalid": 2}},
		Datapath: admin.DatapathStatus{Fastpath: "generic", FastpathDetail: admin.FastpathStatus{Hits: 10, Misses: 2, OffloadedFlows: 1}},
		HA: &admin.HAStatus{
			Enabled: true,
			Peer:    admin.HAPeer{State: "alive", HeartbeatAgeMS: 150},
			Tables:  []admin.HATable{{ID: "rtb-a", OwnerNode: "self"}, {ID: "rtb-c", OwnerNode: "peer"}},
			Counters: map[string]uint64{"claims": 2, "releases": 1, "heartbeats_accepted": 90, "heartbeats_lost": 10,
				"heartbeats_dropped_auth": 3, "heartbeats_dropped_replay": 1},
		},
	}
	s := snapshotFromStatus(st)
	if s.ActiveConnections != 4 || s.BytesInFromSource != 100 || s.PacketsInFromDestination != 7 || s.ConnectionsEstablished != 2 ||
		s.PortAllocationErrors != 1 || s.IdleTimeouts != 5 || s.PacketsDropped["invalid"] != 2 {
		t.Errorf("snapshot %+v", s)
	}
	if s.Fastpath == nil || s.Fastpath.Hits != 10 {
		t.Errorf("fast path %+v", s.Fastpath)
	}
	h := s.HA
	if h == nil || h.Role != "active-active" || !h.RouteTables["rtb-a"] || h.RouteTables["rtb-c"] || h.Failovers != 3 ||
		!h.PeerAlive || h.HeartbeatAge != 150*time.Millisecond || h.HeartbeatsReceived != 90 || h.HeartbeatsMissed != 10 || h.HeartbeatsRejected != 4 {
		t.Errorf("HA %+v", h)
	}
	st.HA.Maintenance = true
	if r := snapshotFromStatus(st).HA.Role; r != "maintenance" {
		t.Errorf("role in maintenance = %q", r)
	}
	st.HA = nil
	if snapshotFromStatus(st).HA != nil {
		t.Error("HA snapshot without HA")
	}
}

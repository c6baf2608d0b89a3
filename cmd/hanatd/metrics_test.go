package main

import (
	"testing"
	"time"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/ha"
)

func TestSnapshotFromStatus(t *testing.T) {
	st := admin.Status{
		Connections: admin.Connections{Active: 4},
		Traffic: admin.Traffic{BytesInFromSource: 100, BytesOutToDestination: 100, PacketsInFromDestination: 7,
			ConnectionAttempts: 3, ConnectionsEstablished: 2, PortAllocationErrors: 1, IdleTimeouts: 5,
			PacketsDropped: map[string]uint64{"invalid": 2}},
		Datapath: admin.DatapathStatus{Fastpath: "generic", FastpathDetail: admin.FastpathStatus{Hits: 10, Misses: 2, OffloadedFlows: 1}},
	}
	s := snapshotFromStatus(st)
	if s.ActiveConnections != 4 || s.BytesInFromSource != 100 || s.PacketsInFromDestination != 7 || s.ConnectionsEstablished != 2 ||
		s.PortAllocationErrors != 1 || s.IdleTimeouts != 5 || s.PacketsDropped["invalid"] != 2 {
		t.Errorf("snapshot %+v", s)
	}
	if s.Fastpath == nil || s.Fastpath.Hits != 10 {
		t.Errorf("fast path %+v", s.Fastpath)
	}
}

// TestHAMetrics: the HA metrics come from the HA loop's typed status.
func TestHAMetrics(t *testing.T) {
	st := ha.Status{
		EngineStatus: ha.EngineStatus{
			Peer:     ha.PeerStatus{State: "alive"},
			Tables:   []ha.TableStatus{{ID: "rtb-a", OwnerNode: "self"}, {ID: "rtb-c", OwnerNode: "peer"}},
			Counters: ha.Counters{Claims: 2, Releases: 1},
		},
		HeartbeatAge: 150 * time.Millisecond,
		Received:     ha.ReceiverStats{Accepted: 90, Lost: 10, Dropped: map[string]uint64{"auth": 3, "replay": 1}},
	}
	h := haMetrics(st)
	if h == nil || h.Role != "active-active" || !h.RouteTables["rtb-a"] || h.RouteTables["rtb-c"] || h.Failovers != 3 ||
		!h.PeerAlive || h.HeartbeatAge != 150*time.Millisecond || h.HeartbeatsReceived != 90 || h.HeartbeatsMissed != 10 || h.HeartbeatsRejected != 4 {
		t.Errorf("HA %+v", h)
	}
	st.Maintenance = true
	if r := haMetrics(st).Role; r != "maintenance" {
		t.Errorf("role in maintenance = %q", r)
	}
	var none *haNode
	if _, ok := none.snapshot(); ok {
		t.Error("HA snapshot without HA")
	}
	if _, ok := (&haNode{why: "ha.enabled is false"}).snapshot(); ok {
		t.Error("HA snapshot while HA does not run")
	}
}

package main

import (
	"reflect"
	"testing"
	"time"

	"github.com/hanat/hanat/bpf"
	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/fastpath"
	"github.com/hanat/hanat/ha"
	"github.com/hanat/hanat/metrics"
	"github.com/hanat/hanat/traffic"
)

func TestSnapshotOf(t *testing.T) {
	now := time.Now()
	tr := traffic.Totals{BytesInFromSource: 100, BytesOutToDestination: 100, PacketsInFromDestination: 7,
		ConnectionAttempts: 3, ConnectionsEstablished: 2, PortAllocationErrors: 1, IdleTimeouts: 5,
		PacketsDropped: map[string]uint64{"invalid": 2}}
	fp := fastpath.Status{Mode: fastpath.BackendTC, Counters: &bpf.Counters{Hits: 10, Misses: 2}, Engine: &fastpath.EngineStats{Offloaded: 1},
		Interfaces: []fastpath.InterfaceState{{Name: "ens5", Mode: fastpath.BackendTC, Note: "tc: native XDP refused"}, {Name: "ens6", Mode: fastpath.XDPOff, Error: "gone"}}}
	s := snapshotOf(tr, conntrack.Reading{Stats: conntrack.Stats{Active: 4}, At: now.Add(-1500 * time.Millisecond)}, fp, now)
	if s.ActiveConnections != 4 || s.ActiveConnectionsAge != 1500*time.Millisecond || s.BytesInFromSource != 100 ||
		s.PacketsInFromDestination != 7 || s.ConnectionsEstablished != 2 ||
		s.PortAllocationErrors != 1 || s.IdleTimeouts != 5 || s.PacketsDropped["invalid"] != 2 {
		t.Errorf("snapshot %+v", s)
	}
	if s.Fastpath == nil || s.Fastpath.Hits != 10 || s.Fastpath.Misses != 2 || s.Fastpath.OffloadedFlows != 1 {
		t.Errorf("fast path %+v", s.Fastpath)
	}
	wantBackends := []metrics.FastpathBackend{{Interface: "ens5", Backend: "tc", Reason: "tc: native XDP refused"}, {Interface: "ens6", Backend: "off", Reason: "gone"}}
	if s.Fastpath == nil || !reflect.DeepEqual(s.Fastpath.Backends, wantBackends) {
		t.Errorf("fast path backends %+v, want %+v", s.Fastpath, wantBackends)
	}
	s = snapshotOf(traffic.Totals{}, conntrack.Reading{}, fastpath.Status{Mode: fastpath.XDPOff}, now)
	if s.Fastpath != nil || s.ActiveConnectionsAge >= 0 || s.PacketsDropped == nil {
		t.Errorf("no fast path, no count yet: %+v", s)
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
	if _, ok := (&haNode{why: "ha.enabled is false"}).snapshot(); ok {
		t.Error("HA snapshot while HA does not run")
	}
}

package ha

import (
	"log/slog"
	"maps"
	"slices"
	"testing"
	"time"
)

// TestStatusOwnerAndRole: each table's owner is named from this node's
// and the peer's ENI, and the role follows the tables this node owns.
func TestStatusOwnerAndRole(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	e := NewEngine(slog.New(slog.DiscardHandler), EngineConfig{NodeID: "i-a", ENI: "eni-a", Peer: true,
		Home: []string{"rtb-a", "rtb-n", "rtb-x"}, Backup: []string{"rtb-c"}, DeadAfter: time.Second}, now)
	e.OnHeartbeat(&Message{NodeID: "i-c", ENI: "eni-c", Epoch: 1, Seq: 1, Time: now, Healthy: true, Home: []string{"rtb-c"}}, now)
	e.Observe("rtb-a", Observation{Target: "eni-a"}, now)
	e.Observe("rtb-c", Observation{Target: "eni-c"}, now)
	e.Observe("rtb-n", Observation{}, now)
	e.Observe("rtb-x", Observation{Target: "nat-0123"}, now)
	s := e.Status(now)
	got := map[string]string{}
	for _, ts := range s.Tables {
		got[ts.ID] = ts.OwnerNode
	}
	want := map[string]string{"rtb-a": "self", "rtb-c": "peer", "rtb-n": "none", "rtb-x": "other"}
	if !maps.Equal(got, want) {
		t.Errorf("owners %v, want %v", got, want)
	}
	if r := s.Role(); r != "active-active" {
		t.Errorf("role %q, want active-active", r)
	}
	for i := range s.Tables {
		s.Tables[i].OwnerNode = "self"
	}
	if r := s.Role(); r != "active" {
		t.Errorf("role owning every table %q, want active", r)
	}
	s.Tables = s.Tables[:0]
	if r := s.Role(); r != "standby" {
		t.Errorf("role owning none %q, want standby", r)
	}
	s.Maintenance = true
	if r := s.Role(); r != "maintenance" {
		t.Errorf("role in maintenance %q", r)
	}
}

// TestCountersNamed: the admin socket's counter names, the engine's only
// once non-zero (as they always were), the manager's calls always.
func TestCountersNamed(t *testing.T) {
	n := Counters{}.Named()
	if k := slices.Sorted(maps.Keys(n)); !slices.Equal(k, []string{"eip_associations", "heartbeat_send_errors", "heartbeats_sent", "route_write_errors", "route_writes"}) {
		t.Errorf("zero counters named %v", k)
	}
	c := Counters{Claims: 1, Releases: 2, HealthChanges: 3, MaintenanceChanges: 4, GiveTimeouts: 5, TakeoverTimeouts: 6,
		HandoverRewrites: 7, ObservationsBeforeWrite: 8, ObservationsStaleAfterWrite: 9, RouteWrites: 10, RouteWriteErrors: 11,
		EIPAssociations: 12, HeartbeatsSent: 13, HeartbeatSendErrors: 14, TakeoverErrors: 15}
	want := map[string]uint64{"claims": 1, "releases": 2, "health_changes": 3, "maintenance_changes": 4, "give_timeouts": 5,
		"takeover_timeouts": 6, "handover_rewrites": 7, "observations_before_write": 8, "observations_stale_after_write": 9,
		"route_writes": 10, "route_write_errors": 11, "eip_associations": 12, "heartbeats_sent": 13, "heartbeat_send_errors": 14, "takeover_errors": 15}
	if got := c.Named(); !maps.Equal(got, want) {
		t.Errorf("named %v, want %v", got, want)
	}
}

// TestReasonText: every reason reads as the status and logs always
// showed it.
func TestReasonText(t *testing.T) {
	for _, c := range []struct {
		r    Reason
		want string
	}{
		{Reason{}, ""},
		{Reason{ReasonPeerDead, "1s"}, "peer dead: no heartbeat for 1s"},
		{Reason{ReasonPeerNeverHeard, "1s"}, "no heartbeat from the peer since start (1s)"},
		{Reason{Kind: ReasonSingle}, "single instance (no peer configured): owning the home tables"},
		{Reason{ReasonPeerIneligible, "in maintenance"}, "peer in maintenance"},
		{Reason{ReasonPeerHandedOver, "peer unhealthy: x"}, "peer handed it over (peer unhealthy: x)"},
		{Reason{ReasonPreemptReleased, "3s"}, "preempt after hold-down 3s: peer released it"},
		{Reason{Kind: ReasonTakeoverReleased}, "operator takeover: peer released it"},
		{Reason{Kind: ReasonUnclaimedHome}, "no node claims it; home table"},
		{Reason{ReasonUnclaimedPeer, "unhealthy: x"}, "no node claims it; peer unhealthy: x"},
		{Reason{ReasonDiscovered, "never heard"}, "peer never heard"},
		{Reason{ReasonBlackhole, "eni-c"}, "route table points at eni-c, a stopped instance (blackhole)"},
		{Reason{Kind: ReasonPointsHere}, "route table already points at this node"},
		{Reason{Kind: ReasonTakeoverPeerDead}, "operator takeover (peer not alive)"},
		{Reason{ReasonTaken, "eni-c"}, "route table now points at eni-c: taken by the peer or an operator; not taking it back"},
		{Reason{Kind: ReasonMaintenance}, "maintenance on: handing to the healthy peer"},
		{Reason{ReasonUnhealthy, "upstream 100% lost"}, "unhealthy (upstream 100% lost): handing to the healthy peer"},
		{Reason{Kind: ReasonPeerAsked}, "peer asked for it (handshake: preempt after hold-down, or operator takeover)"},
		{Reason{ReasonFailover, "operator failover"}, "operator failover"},
		{Reason{ReasonKind(99), "x"}, "reason 99 (x)"},
	} {
		if got := c.r.String(); got != c.want {
			t.Errorf("%d %q: %q, want %q", c.r.Kind, c.r.Detail, got, c.want)
		}
	}
}

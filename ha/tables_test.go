package ha

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"testing"
)

// TestDiscoverMissing: discovery fills in only what the configuration
// leaves open, and asks nothing when nothing is open.
func TestDiscoverMissing(t *testing.T) {
	calls := 0
	found := Discovered{Home: []string{"rtb-a"}, Backup: []string{"rtb-c"}}
	discover := func(ctx context.Context, eni, peerENI string) (Discovered, error) {
		calls++
		return found, nil
	}
	peer := netip.MustParseAddrPort("10.0.2.10:7788")
	for _, c := range []struct {
		name   string
		o      Options
		want   Discovered
		called bool
	}{
		{"single, nothing configured", Options{}, Discovered{Home: found.Home}, true},
		{"pair, nothing configured", Options{Peer: peer}, found, true},
		{"pair, home configured", Options{Peer: peer, Home: []string{"rtb-x"}}, Discovered{Backup: found.Backup}, true},
		{"pair, backup configured", Options{Peer: peer, Backup: []string{"rtb-y"}}, Discovered{Home: found.Home}, true},
		{"pair, both configured", Options{Peer: peer, Home: []string{"rtb-x"}, Backup: []string{"rtb-y"}}, Discovered{}, false},
		{"single, home configured", Options{Home: []string{"rtb-x"}}, Discovered{}, false},
	} {
		c.o.Discover = discover
		calls = 0
		got, err := c.o.discoverMissing()(context.Background(), "eni-a", "")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Home, c.want.Home) || !slices.Equal(got.Backup, c.want.Backup) || (calls > 0) != c.called {
			t.Errorf("%s: got %+v (asked the cloud %d times), want %+v (asked: %v)", c.name, got, calls, c.want, c.called)
		}
	}
	if (Options{}).discoverMissing() != nil {
		t.Error("no Discover: want none")
	}
}

// TestHomeAwayAndBackupTables: the views of the tables the wiring reads.
func TestHomeAwayAndFollowedBy(t *testing.T) {
	s := EngineStatus{Tables: []TableStatus{
		{ID: "rtb-a", Home: true, OwnerNode: "peer"},
		{ID: "rtb-b", Home: true, OwnerNode: "peer"},
		{ID: "rtb-c", OwnerNode: "self"},
	}}
	if !s.HomeAway() {
		t.Error("the peer serves every home table: want HomeAway")
	}
	st := Status{EngineStatus: s, EIPs: []EIPStatus{{AllocationID: "eipalloc-a", RouteTables: []string{"rtb-b"}},
		{AllocationID: "eipalloc-c", RouteTables: []string{"rtb-c", "rtb-x"}}}}
	if got := st.FollowedBy(false); !slices.Equal(got, []string{"rtb-c"}) {
		t.Errorf("backups an EIP follows = %v, want [rtb-c]", got)
	}
	if got := st.FollowedBy(true); !slices.Equal(got, []string{"rtb-b"}) {
		t.Errorf("home tables an EIP follows = %v, want [rtb-b]", got)
	}
	if got := (Status{EngineStatus: s}).FollowedBy(false); len(got) != 0 {
		t.Errorf("no EIPs: backups followed = %v, want none", got)
	}
	s.Tables[1].OwnerNode = "self"
	if s.HomeAway() {
		t.Error("one home table is served here: want not HomeAway")
	}
	if (EngineStatus{Tables: []TableStatus{{ID: "rtb-c"}}}).HomeAway() {
		t.Error("no home tables: want not HomeAway")
	}
}

// TestReceiverStatsNamed: the heartbeat counters as status names them,
// and the loss ratio.
func TestReceiverStatsNamed(t *testing.T) {
	r := ReceiverStats{Accepted: 3, Lost: 1, Dropped: map[string]uint64{"replay": 2}}
	got := r.Named(map[string]uint64{"claims": 1})
	want := map[string]uint64{"claims": 1, "heartbeats_accepted": 3, "heartbeats_lost": 1, "heartbeats_dropped_replay": 2}
	if !maps.Equal(got, want) {
		t.Errorf("named = %v, want %v", got, want)
	}
	if l := r.Loss(); l != 0.25 {
		t.Errorf("loss = %v, want 0.25", l)
	}
	if l := (ReceiverStats{}).Loss(); l != 0 {
		t.Errorf("loss before any heartbeat = %v, want 0", l)
	}
}

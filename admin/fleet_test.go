package admin

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestFleetStatus: a fleet member's status goes out under "fleet" with
// its documented keys and comes back whole; a node that is none has no
// "fleet" key at all.
func TestFleetStatus(t *testing.T) {
	b := newFakeBackend()
	ts, _, _ := newHandlerServer(t, b)
	r := call(t, ts, "GET", "/v1/status", "")
	if r.code != 200 || strings.Contains(string(r.body), `"fleet"`) {
		t.Fatalf("status of a node that is no fleet member: %d %s", r.code, r.body)
	}

	since := time.Date(2026, 12, 4, 1, 0, 0, 0, time.UTC)
	b.mu.Lock()
	b.status.Fleet = &FleetStatus{Role: "fleet member", HealthCheck: "http 10.0.1.10:80 /", HealthNote: "draining since …",
		GWLBAddrs:        []string{"10.0.1.200"},
		Peers:            []FleetPeer{{Address: "10.0.1.200", LastCheck: since, Checks: 12, Flows: 3}},
		Lifecycle:        "Terminated",
		Drain:            FleetDrain{Draining: true, Since: since, Reason: "Auto Scaling target lifecycle state Terminated", LeftMS: 250000, Flows: 3},
		FlowsPerEndpoint: map[string]int{"vpce-0123456789abcdef0": 3}}
	want := *b.status.Fleet
	b.mu.Unlock()

	r = call(t, ts, "GET", "/v1/status", "")
	for _, key := range []string{`"fleet":{`, `"role":"fleet member"`, `"flows_per_endpoint":{"vpce-0123456789abcdef0":3}`,
		`"drain":{"draining":true`, `"left_ms":250000`, `"peers":[{"address":"10.0.1.200"`, `"lifecycle":"Terminated"`} {
		if !strings.Contains(string(r.body), key) {
			t.Errorf("status JSON lacks %s:\n%s", key, r.body)
		}
	}
	var st Status
	if err := json.Unmarshal(r.body, &st); err != nil || st.Fleet == nil {
		t.Fatalf("decode: %v %s", err, r.body)
	}
	if got := st.Fleet; got.Role != want.Role || !got.Drain.Since.Equal(since) || got.Drain.Reason != want.Drain.Reason ||
		got.Peers[0].Checks != 12 || got.FlowsPerEndpoint["vpce-0123456789abcdef0"] != 3 || got.Healthy {
		t.Fatalf("round trip: %+v, want %+v", got, want)
	}
}

package ha

import (
	"log/slog"
	"slices"
	"testing"
	"time"
)

// TestMaintenanceRightAfterPreempt: nat-a takes its home table back by
// the preempt handshake and goes into maintenance before nat-c's next
// describe. nat-c claims the table at the handover while its last
// observation still shows it pointing at nat-c; the describe that follows
// shows nat-a. That is not "taken by the peer": nat-c must write it, or
// nobody would (nat-a released it, nat-c would release it too).
func TestMaintenanceRightAfterPreempt(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := NewEngine(slog.New(slog.NewTextHandler(testWriter{t}, nil)), EngineConfig{NodeID: "i-c", ENI: "eni-c", Peer: true, Home: []string{"rtb-c"}, Backup: []string{"rtb-a"},
		DeadAfter: time.Second, Preempt: true, HoldDown: 3 * time.Second, GiveTimeout: 5 * time.Second, OpTimeout: 5 * time.Second}, now)
	c.SetHealth(true, "", now)
	var seq uint64
	beat := func(m Message) {
		seq++
		now = now.Add(200 * time.Millisecond)
		m.NodeID, m.ENI, m.Epoch, m.Seq, m.Ack, m.Time, m.Home = "i-a", "eni-a", 1, seq, ^uint64(0), now, []string{"rtb-a"}
		if !m.Maintenance {
			m.Healthy = true
		}
		c.OnHeartbeat(&m, now)
	}
	beat(Message{})
	c.Observe("rtb-a", Observation{Target: "eni-c"}, now) // nat-c holds private-a (nat-a was down)
	c.Observe("rtb-c", Observation{Target: "eni-c"}, now)
	if !c.Claimed("rtb-a") {
		t.Fatal("nat-c does not hold rtb-a, which points at it")
	}
	beat(Message{Wanted: []string{"rtb-a"}}) // preempt after the hold-down
	if c.Claimed("rtb-a") {
		t.Fatalf("nat-c did not release rtb-a to the preempt handshake: %+v", c.Status(now))
	}
	beat(Message{Owned: []string{"rtb-a"}})                      // nat-a wrote it back
	beat(Message{Maintenance: true, Offered: []string{"rtb-a"}}) // … and goes into maintenance
	if !c.Claimed("rtb-a") {
		t.Fatal("nat-c did not claim rtb-a when nat-a went into maintenance")
	}
	// nat-a saw nat-c's claim and stops offering it; then nat-c's
	// describe catches up.
	beat(Message{Maintenance: true})
	c.Observe("rtb-a", Observation{Target: "eni-a"}, now)
	if !c.Claimed("rtb-a") || !slices.Contains(c.ToWrite(), "rtb-a") {
		t.Errorf("rtb-a points at nat-a in maintenance: nat-c claims it %v, writes %v; want it claimed and written", c.Claimed("rtb-a"), c.ToWrite())
	}

}

// TestTakenByEligiblePeerIsReleased: the other side of the rule above —
// a table the healthy peer took stays taken.
func TestTakenByEligiblePeerIsReleased(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c := NewEngine(slog.New(slog.NewTextHandler(testWriter{t}, nil)), EngineConfig{NodeID: "i-c", ENI: "eni-c", Peer: true,
		Home: []string{"rtb-c"}, Backup: []string{"rtb-a"}, DeadAfter: time.Second, HoldDown: 3 * time.Second}, now)
	c.SetHealth(true, "", now)
	c.OnHeartbeat(&Message{NodeID: "i-a", ENI: "eni-a", Epoch: 1, Seq: 1, Time: now, Healthy: true, Home: []string{"rtb-a"}}, now)
	c.Observe("rtb-a", Observation{Target: "eni-c"}, now)
	if !c.Claimed("rtb-a") {
		t.Fatal("nat-c does not hold rtb-a, which points at it")
	}
	now = now.Add(3 * time.Second) // well past any write settling
	c.OnHeartbeat(&Message{NodeID: "i-a", ENI: "eni-a", Epoch: 1, Seq: 2, Time: now, Healthy: true, Home: []string{"rtb-a"}}, now)
	c.Observe("rtb-a", Observation{Target: "eni-a"}, now)
	if c.Claimed("rtb-a") {
		t.Errorf("nat-c still claims rtb-a, which the healthy peer points at")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

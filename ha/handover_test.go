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
	c, beat, clock := preemptReleased(t)
	beat(Message{Owned: []string{"rtb-a"}})                      // nat-a wrote it back
	beat(Message{Maintenance: true, Offered: []string{"rtb-a"}}) // … and goes into maintenance
	if !c.Claimed("rtb-a") {
		t.Fatal("nat-c did not claim rtb-a when nat-a went into maintenance")
	}
	// nat-a saw nat-c's claim and stops offering it; then nat-c's
	// describe catches up.
	beat(Message{Maintenance: true})
	c.Observe("rtb-a", Observation{Target: "eni-a"}, clock())
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

// preemptedBack is the start of the tests below: preemptReleased, then
// nat-a wrote rtb-a back (its heartbeats list it as owned) before nat-c's
// next describe. With describeBetween,
// nat-c's describe runs after its release and before nat-a's write; with
// unheard, nat-a's heartbeats claiming rtb-a never reach nat-c.
func preemptedBack(t *testing.T, describeBetween, unheard bool) (c *Engine, beat func(Message), now func() time.Time) {
	t.Helper()
	c, beat, now = preemptReleased(t)
	if describeBetween {
		at := now().Add(10 * time.Millisecond)
		c.ObserveSince("rtb-a", Observation{Target: "eni-c"}, at, at.Add(100*time.Millisecond))
	}
	if !unheard {
		beat(Message{Owned: []string{"rtb-a"}}) // nat-a claims it and writes it back
		beat(Message{Owned: []string{"rtb-a"}})
	}
	return c, beat, now
}

// preemptReleased: nat-c held private-a (rtb-a) while nat-a was down, its
// last describe showing rtb-a pointing at nat-c, and has just released it
// to nat-a's preempt handshake. beat sends nat-a's next heartbeat, 200 ms
// later; now is the test's clock.
func preemptReleased(t *testing.T) (c *Engine, beat func(Message), now func() time.Time) {
	t.Helper()
	at := time.Unix(1_800_000_000, 0)
	c = NewEngine(slog.New(slog.NewTextHandler(testWriter{t}, nil)), EngineConfig{NodeID: "i-c", ENI: "eni-c", Peer: true, Home: []string{"rtb-c"}, Backup: []string{"rtb-a"},
		DeadAfter: time.Second, Preempt: true, HoldDown: 3 * time.Second, GiveTimeout: 5 * time.Second, OpTimeout: 5 * time.Second}, at)
	c.SetHealth(true, "", at)
	var seq uint64
	beat = func(m Message) {
		seq++
		at = at.Add(200 * time.Millisecond)
		m.NodeID, m.ENI, m.Epoch, m.Seq, m.Ack, m.Time, m.Home = "i-a", "eni-a", 1, seq, ^uint64(0), at, []string{"rtb-a"}
		if !m.Maintenance {
			m.Healthy = true
		}
		c.OnHeartbeat(&m, at)
	}
	beat(Message{})
	c.Observe("rtb-a", Observation{Target: "eni-c"}, at) // nat-c holds private-a (nat-a was down)
	c.Observe("rtb-c", Observation{Target: "eni-c"}, at)
	if !c.Claimed("rtb-a") {
		t.Fatal("nat-c does not hold rtb-a, which points at it")
	}
	beat(Message{Wanted: []string{"rtb-a"}}) // preempt after the hold-down
	if c.Claimed("rtb-a") {
		t.Fatalf("nat-c did not release rtb-a to the preempt handshake: %+v", c.Status(at))
	}
	return c, beat, func() time.Time { return at }
}

// checkWrittenAtOnce: nat-c, claiming rtb-a with its describe from before
// nat-a's write, must write it at once (ReplaceRoute: it points at nat-a
// now) and keep its EIP back until that write starts: believing the old
// describe ("it points here, nothing to write") moved the EIP off nat-a at
// once while the route stayed on nat-a until nat-c's next describe, up to
// a resync later: app-a's new flows had no public address for that long
// (CI: 1.05 s for a planned handover).
func checkWrittenAtOnce(t *testing.T, c *Engine, now time.Time) {
	t.Helper()
	if !c.Claimed("rtb-a") {
		t.Fatal("nat-c did not claim rtb-a")
	}
	if !c.Unwritten("rtb-a") {
		t.Errorf("rtb-a is claimed as %s from a describe older than nat-a's write: its EIP would move before any route write", c.tables["rtb-a"].claim)
	}
	ws := c.StartWrites(now)
	if len(ws) != 1 || ws[0].Table != "rtb-a" || ws[0].Op != WriteReplace {
		t.Fatalf("writes at the claim: %+v, want rtb-a with one ReplaceRoute", ws)
	}
	c.WriteDone("rtb-a", true, now)
	// The describe that was due anyway, started after the write.
	c.ObserveSince("rtb-a", Observation{Target: "eni-c"}, now.Add(time.Millisecond), now.Add(100*time.Millisecond))
	if st := c.Status(now); !c.Claimed("rtb-a") || st.Counters.HandoverRewrites != 0 {
		t.Errorf("after the write: claimed %v, handover rewrites %d; want claimed, none", c.Claimed("rtb-a"), st.Counters.HandoverRewrites)
	}
}

// TestHandoverAfterPreemptWritesAtOnce: nat-a goes into maintenance right
// after its preempt write (CI's TestHAPair graceful stop, runs 2 and 5).
func TestHandoverAfterPreemptWritesAtOnce(t *testing.T) {
	for _, between := range []bool{false, true} {
		c, beat, now := preemptedBack(t, between, false)
		beat(Message{Maintenance: true, Offered: []string{"rtb-a"}})
		checkWrittenAtOnce(t, c, now())
	}
	// A describe in flight at the claim, started before nat-a's last
	// heartbeat claiming rtb-a, does not confirm the claim either.
	c, beat, now := preemptedBack(t, false, false)
	beat(Message{Maintenance: true, Offered: []string{"rtb-a"}})
	c.ObserveSince("rtb-a", Observation{Target: "eni-c"}, now().Add(-300*time.Millisecond), now())
	checkWrittenAtOnce(t, c, now())
}

// TestDeathAfterPreemptWritesAtOnce: nat-a dies right after its preempt
// write (or right after nat-c's release, its claim never heard). Believing the old describe, nat-c would not write rtb-a, and its
// next describe (rtb-a at nat-a) would read as "taken": released, left to
// a dead node.
func TestDeathAfterPreemptWritesAtOnce(t *testing.T) {
	for _, unheard := range []bool{false, true} {
		c, _, now := preemptedBack(t, false, unheard)
		dead := now().Add(time.Second)
		c.Tick(dead)
		checkWrittenAtOnce(t, c, dead)
	}
}

// TestDescribeAfterPeerLetGoIsBelieved: the other side — a describe that
// started after the peer last claimed the table, showing it here, is
// believed at the claim: held, nothing to write.
func TestDescribeAfterPeerLetGoIsBelieved(t *testing.T) {
	c, beat, now := preemptedBack(t, false, false)
	beat(Message{}) // nat-a let it go (its write never landed)
	c.ObserveSince("rtb-a", Observation{Target: "eni-c"}, now().Add(time.Millisecond), now().Add(100*time.Millisecond))
	beat(Message{Maintenance: true})
	if !c.Claimed("rtb-a") || c.Unwritten("rtb-a") || len(c.ToWrite()) != 0 {
		t.Errorf("rtb-a seen here after nat-a let it go: claimed %v, unwritten %v, writes %v; want held, nothing to write",
			c.Claimed("rtb-a"), c.Unwritten("rtb-a"), c.ToWrite())
	}
}

// TestOldDescribeDoesNotAdoptTable: a table nobody claims is adopted as
// "points here" only on a describe newer than the peer's last claim of
// it: on an older one nat-c would write a table that the healthy peer
// may have moved anywhere since (taking it back by itself).
func TestOldDescribeDoesNotAdoptTable(t *testing.T) {
	c, beat, now := preemptedBack(t, false, false)
	for range 30 { // nat-a lets rtb-a go and stays healthy, past GiveTimeout
		beat(Message{})
	}
	if c.Claimed("rtb-a") {
		t.Fatalf("nat-c claims rtb-a (writes %v) on a describe from before nat-a's claim", c.ToWrite())
	}
	c.ObserveSince("rtb-a", Observation{Target: "eni-c"}, now().Add(time.Millisecond), now().Add(100*time.Millisecond))
	if !c.Claimed("rtb-a") || c.Unwritten("rtb-a") {
		t.Errorf("a fresh describe shows rtb-a here: claimed %v, unwritten %v; want held", c.Claimed("rtb-a"), c.Unwritten("rtb-a"))
	}
}

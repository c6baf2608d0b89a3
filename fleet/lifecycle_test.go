package fleet

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeAction records its completions and fails with err.
type fakeAction struct {
	mu    sync.Mutex
	calls int
	err   error
}

func (a *fakeAction) CompleteTermination(context.Context) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls++
	return "i-0123 of group hanat-fleet, hook hanat-drain: CONTINUE", a.err
}

func (a *fakeAction) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls
}

// drainedWithin waits (bounded) for the member's drain to end.
func drainedWithin(t *testing.T, m *Member) {
	t.Helper()
	select {
	case <-m.Drained():
	case <-time.After(5 * time.Second):
		t.Fatal("the drain did not end")
	}
}

// inServiceMember is a running member with one flow, an hour of delay,
// its lifecycle state read InService and a lifecycle action to complete.
func inServiceMember(t *testing.T) (*Member, *fakeDatapath, *fakeLifecycle, *fakeAction) {
	t.Helper()
	dp := &fakeDatapath{}
	dp.set(nil, Flow{})
	lc := &fakeLifecycle{state: StateInService}
	act := &fakeAction{}
	m := startMember(t, Options{Datapath: dp, Lifecycle: lc, LifecycleAction: act, DeregistrationDelay: time.Hour,
		HealthCheck: HealthCheck{Protocol: ProtocolTCP}})
	eventually(t, "InService read", func() bool { return m.Status(t.Context()).Lifecycle == StateInService })
	return m, dp, lc, act
}

// TestLifecycleDrainCompletesTheAction: a drain the lifecycle state
// started completes the lifecycle action once, after the last flow (not
// while flows are left), before Drained; the status shows it; a SIGTERM
// after it changes nothing.
func TestLifecycleDrainCompletesTheAction(t *testing.T) {
	m, dp, lc, act := inServiceMember(t)
	lc.set(StateTerminated)
	eventually(t, "Terminated starts the drain", func() bool { return m.Status(t.Context()).Drain.Draining })
	time.Sleep(50 * time.Millisecond) // five drain polls with the flow left
	if n := act.count(); n != 0 {
		t.Fatalf("completed %d times with a flow left", n)
	}
	dp.set(nil)
	drainedWithin(t, m)
	if n := act.count(); n != 1 {
		t.Fatalf("completed %d times when Drained closed, want 1", n)
	}
	st := m.Status(t.Context())
	if c := st.LifecycleAction; c == nil || c.Err != nil || !strings.Contains(c.Action, "hanat-drain") || c.At.IsZero() {
		t.Fatalf("status shows the completion as %+v", c)
	}
	if !m.Stop(t.Context(), "hanatd stopping (SIGTERM)") {
		t.Fatal("Stop after the drain did not return at once")
	}
	time.Sleep(30 * time.Millisecond) // three lifecycle reads, still Terminated
	if n := act.count(); n != 1 {
		t.Fatalf("completed %d times, want once", n)
	}
}

// TestLifecycleDrainDelayPassedCompletes: the delay passing with flows
// left ends the drain as well, and completes the action.
func TestLifecycleDrainDelayPassedCompletes(t *testing.T) {
	dp := &fakeDatapath{}
	dp.set(nil, Flow{})
	lc := &fakeLifecycle{state: StateTerminated}
	act := &fakeAction{}
	m := startMember(t, Options{Datapath: dp, Lifecycle: lc, LifecycleAction: act, DeregistrationDelay: 30 * time.Millisecond,
		HealthCheck: HealthCheck{Protocol: ProtocolTCP}})
	drainedWithin(t, m)
	st := m.Status(t.Context())
	if st.Drain.Ended == nil || st.Drain.Ended.End != DrainDelayPassed || act.count() != 1 || st.LifecycleAction == nil {
		t.Fatalf("drain %+v, %d completions, status %+v", st.Drain.Ended, act.count(), st.LifecycleAction)
	}
}

// TestShutdownDrainDoesNotComplete: a SIGTERM's drain ends without a
// completion even when the lifecycle state turns Terminated during it.
func TestShutdownDrainDoesNotComplete(t *testing.T) {
	m, dp, lc, act := inServiceMember(t)
	stopped := make(chan bool, 1)
	go func() { stopped <- m.Stop(t.Context(), "hanatd stopping (SIGTERM)") }()
	eventually(t, "SIGTERM starts the drain", func() bool { return m.Status(t.Context()).Drain.Draining })
	lc.set(StateTerminated)
	eventually(t, "Terminated read while draining", func() bool { return m.Status(t.Context()).Lifecycle == StateTerminated })
	dp.set(nil)
	if !<-stopped {
		t.Fatal("the shutdown drain did not end")
	}
	if n, st := act.count(), m.Status(t.Context()); n != 0 || st.LifecycleAction != nil {
		t.Fatalf("a shutdown drain completed the lifecycle action %d times (status %+v)", n, st.LifecycleAction)
	}
}

// TestLifecycleActionFailureShown: a failed completion is shown, the
// drain still ends, and it is not retried.
func TestLifecycleActionFailureShown(t *testing.T) {
	dp := &fakeDatapath{}
	lc := &fakeLifecycle{state: StateTerminated}
	act := &fakeAction{err: errors.New("autoscaling CompleteLifecycleAction: AccessDenied")}
	m := startMember(t, Options{Datapath: dp, Lifecycle: lc, LifecycleAction: act, DeregistrationDelay: time.Hour,
		HealthCheck: HealthCheck{Protocol: ProtocolTCP}})
	drainedWithin(t, m)
	time.Sleep(30 * time.Millisecond)
	st := m.Status(t.Context())
	if c := st.LifecycleAction; c == nil || c.Err == nil || !strings.Contains(c.Err.Error(), "AccessDenied") || act.count() != 1 {
		t.Fatalf("status %+v after %d calls", c, act.count())
	}
}

// TestCutShortDrainDoesNotComplete: a lifecycle drain cut short (the
// daemon stopping before it ended) completes nothing.
func TestCutShortDrainDoesNotComplete(t *testing.T) {
	dp := &fakeDatapath{}
	dp.set(nil, Flow{})
	lc := &fakeLifecycle{state: StateTerminated}
	act := &fakeAction{}
	o := Options{Datapath: dp, Upstream: checkFunc(func(context.Context) error { return nil }), Lifecycle: lc, LifecycleAction: act,
		DeregistrationDelay: time.Hour, LifecycleInterval: 10 * time.Millisecond, DrainPoll: 10 * time.Millisecond,
		HealthCheck: HealthCheck{Listen: freePort(t), Protocol: ProtocolTCP}}
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	eventually(t, "Terminated starts the drain", func() bool { return m.Status(t.Context()).Drain.Draining })
	cancel()
	<-done
	if e := m.Status(t.Context()).Drain.Ended; e == nil || e.End != DrainCutShort || act.count() != 0 {
		t.Fatalf("drain %+v, %d completions", e, act.count())
	}
}

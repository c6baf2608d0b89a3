package fleet

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// runDrain starts drainWait on clock with a flow counter read from flows
// (or failing with fail, when set).
func runDrain(ctx context.Context, clock *manualClock, delay, poll time.Duration, flows *atomic.Int64, fail *atomic.Bool) <-chan DrainResult {
	out := make(chan DrainResult, 1)
	start := clock.Now()
	go func() {
		out <- drainWait(ctx, clock, start, delay, poll, func(context.Context) (int, error) {
			if fail != nil && fail.Load() {
				return 0, errors.New("flow map unreadable")
			}
			return int(flows.Load()), nil
		}, func(int, error) {})
	}()
	return out
}

// TestDrainWaitsForTheLastFlow: with flows left the drain does not end;
// the poll after the last flow ends it, long before the delay.
func TestDrainWaitsForTheLastFlow(t *testing.T) {
	clock := newManualClock()
	var flows atomic.Int64
	flows.Store(3)
	done := runDrain(t.Context(), clock, 300*time.Second, time.Second, &flows, nil)
	for i := range 4 {
		clock.blocked(t) // it waits: flows are left
		select {
		case r := <-done:
			t.Fatalf("drain ended with %d flows left after %d polls: %v", flows.Load(), i, r)
		default:
		}
		if i == 3 {
			flows.Store(0)
		}
		clock.Advance(time.Second)
	}
	var r DrainResult
	select {
	case r = <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("drain did not end after the last flow")
	}
	if r.End != DrainLastFlow || r.FlowsLeft != 0 || r.Took != 4*time.Second {
		t.Fatalf("drain = %+v, want the last flow's end after 4s", r)
	}
}

// TestDrainStopsAtTheDelay: flows that never end hold the drain exactly
// the deregistration delay, not a poll longer.
func TestDrainStopsAtTheDelay(t *testing.T) {
	clock := newManualClock()
	var flows atomic.Int64
	flows.Store(7)
	const delay, poll = 10 * time.Second, 3 * time.Second
	done := runDrain(t.Context(), clock, delay, poll, &flows, nil)
	var r DrainResult
	start := clock.Now()
	for elapsed := time.Duration(0); ; {
		if elapsed > 2*delay {
			t.Fatal("drain outlived twice its delay")
		}
		select {
		case r = <-done:
		case <-clock.waiting:
			elapsed = clock.Now().Sub(start)
			clock.AdvanceToNext()
			continue
		case <-time.After(5 * time.Second):
			t.Fatal("drain neither waited nor ended")
		}
		break
	}
	if r.End != DrainDelayPassed || r.FlowsLeft != 7 || r.Took != delay {
		t.Fatalf("drain = %+v, want the delay's end at exactly %s with 7 flows", r, delay)
	}
}

// TestDrainCountErrorIsNotZero: a datapath that cannot count its flows
// makes the drain wait the whole delay.
func TestDrainCountErrorIsNotZero(t *testing.T) {
	clock := newManualClock()
	var flows atomic.Int64
	var fail atomic.Bool
	fail.Store(true)
	done := runDrain(t.Context(), clock, 2*time.Second, time.Second, &flows, &fail)
	clock.blocked(t)
	clock.Advance(time.Second)
	clock.blocked(t)
	clock.Advance(time.Second)
	select {
	case r := <-done:
		if r.End != DrainDelayPassed || r.LastErr == nil || r.Took != 2*time.Second {
			t.Fatalf("drain = %+v, want the delay's end with the count error", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("drain did not end at the delay")
	}
}

// TestDrainZeroDelayEndsAtOnce and a cancelled context cuts it short.
func TestDrainZeroDelayAndCutShort(t *testing.T) {
	clock := newManualClock()
	var flows atomic.Int64
	flows.Store(1)
	if r := <-runDrain(t.Context(), clock, 0, time.Second, &flows, nil); r.End != DrainDelayPassed || r.Took != 0 {
		t.Fatalf("zero delay: %+v", r)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := runDrain(ctx, clock, time.Hour, time.Second, &flows, nil)
	clock.blocked(t)
	cancel()
	select {
	case r := <-done:
		if r.End != DrainCutShort || r.FlowsLeft != 1 {
			t.Fatalf("cancelled drain = %+v", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a cancelled drain did not end")
	}
}

func TestDrainResultString(t *testing.T) {
	for _, tc := range []struct {
		r    DrainResult
		want string
	}{
		{DrainResult{End: DrainLastFlow, Took: 1500 * time.Millisecond}, "last flow ended after 1.5s"},
		{DrainResult{End: DrainDelayPassed, FlowsLeft: 4, Took: 300 * time.Second}, "deregistration delay passed after 5m0s with 4 flows left"},
	} {
		if got := tc.r.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.r, got, tc.want)
		}
	}
}

func TestDrainsOn(t *testing.T) {
	for _, tc := range []struct {
		state  string
		served bool
		want   bool
	}{
		{StateInService, true, false},
		{StateTerminated, false, true},
		{StateWarmedTerminated, false, true},
		{"Warmed:Stopped", true, true},
		{"Warmed:Running", false, false}, // launched into the warm pool
		{StateStandby, true, false},
		{StateDetached, true, false},
		{"", true, false},
	} {
		if got := drainsOn(tc.state, tc.served); got != tc.want {
			t.Errorf("drainsOn(%q, served %v) = %v, want %v", tc.state, tc.served, got, tc.want)
		}
	}
}

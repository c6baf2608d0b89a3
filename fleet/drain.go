package fleet

import (
	"context"
	"fmt"
	"time"
)

// DefaultDeregistrationDelay is the target group's deregistration delay
// by default (deregistration_delay.timeout_seconds, 300 s): how long GWLB
// keeps sending a deregistering target its existing flows.
const DefaultDeregistrationDelay = 300 * time.Second

// DrainEnd is how a drain ended.
type DrainEnd string

// The ends of a drain.
const (
	// DrainLastFlow: the datapath's flow count reached zero.
	DrainLastFlow DrainEnd = "last flow ended"
	// DrainDelayPassed: the deregistration delay passed with flows left
	// (GWLB stops sending them then anyway).
	DrainDelayPassed DrainEnd = "deregistration delay passed"
	// DrainCutShort: the drain was stopped before either (a second
	// SIGTERM, the daemon's own deadline).
	DrainCutShort DrainEnd = "cut short"
)

// DrainResult is one finished drain.
type DrainResult struct {
	End       DrainEnd
	FlowsLeft int           // flows still counted when it ended (-1: never counted)
	Took      time.Duration // from the start of the drain
	LastErr   error         // the last failed flow count, if any
}

func (r DrainResult) String() string {
	s := fmt.Sprintf("%s after %s", r.End, r.Took.Round(time.Millisecond))
	if r.End != DrainLastFlow && r.FlowsLeft >= 0 {
		s += fmt.Sprintf(" with %d flows left", r.FlowsLeft)
	}
	return s
}

// drainWait is the drain's loop: it counts the datapath's flows every poll
// until none is left or delay has passed since start, whichever comes
// first, or ctx ends it. progress sees every count (for the status).
// A failed count is not zero: the drain then waits out the delay.
func drainWait(ctx context.Context, clock Clock, start time.Time, delay, poll time.Duration,
	count func(context.Context) (int, error), progress func(flows int, err error)) DrainResult {
	deadline := start.Add(delay)
	res := DrainResult{FlowsLeft: -1}
	for {
		n, err := count(ctx)
		if err != nil {
			res.LastErr = err
		} else {
			res.FlowsLeft = n
		}
		progress(n, err)
		now := clock.Now()
		res.Took = now.Sub(start)
		switch {
		case err == nil && n == 0:
			res.End = DrainLastFlow
			return res
		case !now.Before(deadline):
			res.End = DrainDelayPassed
			return res
		}
		wait := min(poll, deadline.Sub(now))
		select {
		case <-ctx.Done():
			res.End, res.Took = DrainCutShort, clock.Now().Sub(start)
			return res
		case <-clock.After(wait):
		}
	}
}

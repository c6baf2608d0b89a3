package fleet

import "time"

// Clock is the member's time: the real one in the daemon, a manual one in
// tests, so the drain's waits are asserted without sleeping.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// realClock is the system's time.
type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

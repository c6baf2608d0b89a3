package fleet

import (
	"sync"
	"testing"
	"time"
)

// manualClock is a Clock that moves only when the test says so. Each
// After registers a waiter and signals waiting, so a test knows the code
// under test is blocked before it moves the time.
type manualClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []manualWaiter
	waiting chan struct{}
}

type manualWaiter struct {
	at time.Time
	ch chan time.Time
}

func newManualClock() *manualClock {
	return &manualClock{now: time.Date(2026, 12, 4, 1, 0, 0, 0, time.UTC), waiting: make(chan struct{}, 1024)}
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, manualWaiter{at: c.now.Add(d), ch: ch})
	c.waiting <- struct{}{}
	return ch
}

// Advance moves the time by d and fires every waiter that is due.
func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = kept
}

// AdvanceToNext moves the time to the earliest waiter and fires it.
func (c *manualClock) AdvanceToNext() {
	c.mu.Lock()
	next := c.now
	for i, w := range c.waiters {
		if i == 0 || w.at.Before(next) {
			next = w.at
		}
	}
	d := next.Sub(c.now)
	c.mu.Unlock()
	c.Advance(d)
}

// blocked waits (bounded) until the code under test waits on the clock.
func (c *manualClock) blocked(t *testing.T) {
	t.Helper()
	select {
	case <-c.waiting:
	case <-time.After(5 * time.Second):
		t.Fatal("the code under test never waited on the clock")
	}
}

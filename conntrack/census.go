package conntrack

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Census is one shared, periodic count of hanat's flows in the kernel
// conntrack table: a single goroutine (Run) dumps the table, counts the
// flows the filter matches and keeps the result; every reader (a
// Prometheus scrape, `hanatctl status`, a CloudWatch period) takes the
// last reading from memory. No request dumps the table, so answering
// costs the same with ten flows or a million.
//
// The interval adapts to the table: after a dump that took d, the next
// starts d/CPUShare later (at least MinInterval, at most MaxInterval), so
// counting costs at most about CPUShare of one CPU whatever the table's
// size. A big table is therefore counted less often; Reading says how old
// the count is.
//
// Events cannot replace the dump: with the fast path on, hanat's new flows
// generate no NEW event (their event mask is destroy only, so that a
// connection storm costs nothing to decode).
type Census struct {
	log  *slog.Logger
	opts CensusOptions
	wake chan struct{} // a new filter: read now

	mu      sync.Mutex
	filter  Filter
	gen     uint64  // bumped by each SetFilter that changes the filter; 0: none yet
	reading Reading // guarded by mu

	dumps atomic.Uint64
}

// CensusOptions tune a Census. Zero values mean the defaults.
type CensusOptions struct {
	// MinInterval is the shortest time between two readings (default 1s).
	MinInterval time.Duration
	// MaxInterval is the longest (default 10m): a table whose dump takes
	// longer than MaxInterval*CPUShare is read more often than CPUShare.
	MaxInterval time.Duration
	// CPUShare is the share of one CPU the readings may take (default
	// 0.02: a 1 s dump is followed by 49 s of rest).
	CPUShare float64
	// Open returns what the census reads; default a Table in the census's
	// namespace (tests pass a fake).
	Open func() (CensusSource, error)
}

// CensusSource is what a Census counts: a Table.
type CensusSource interface {
	Stats(ctx context.Context, f Filter) (Stats, error)
	Close() error
}

// Reading is one count of hanat's flows.
type Reading struct {
	Stats
	// At is when the dump behind Stats finished; zero before the first.
	At time.Time
	// Took is what that dump took.
	Took time.Duration
	// Err is why the latest attempt failed (Stats are then the last good
	// reading's); nil when it succeeded.
	Err error
}

// Age is how old the reading is at now; -1 when there is none.
func (r Reading) Age(now time.Time) time.Duration {
	if r.At.IsZero() {
		return -1
	}
	return now.Sub(r.At)
}

func (o *CensusOptions) defaults() {
	if o.MinInterval <= 0 {
		o.MinInterval = time.Second
	}
	if o.MaxInterval <= 0 {
		o.MaxInterval = 10 * time.Minute
	}
	o.MaxInterval = max(o.MaxInterval, o.MinInterval)
	if o.CPUShare <= 0 || o.CPUShare > 1 {
		o.CPUShare = 0.02
	}
}

// NewCensus returns a census of the namespace ns. It reads nothing until Run runs and SetFilter has named
// hanat's flows.
func NewCensus(log *slog.Logger, ns NetNS, opts CensusOptions) *Census {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	opts.defaults()
	if opts.Open == nil {
		opts.Open = func() (CensusSource, error) { return Open(log, ns) }
	}
	return &Census{log: log, opts: opts, wake: make(chan struct{}, 1)}
}

// SetFilter names hanat's flows. A filter different from the current one
// makes the running census read at once (its last count was of other
// flows).
func (c *Census) SetFilter(f Filter) {
	f = Filter{PrivateCIDRs: slices.Clone(f.PrivateCIDRs), NATAddrs: slices.Clone(f.NATAddrs)}
	c.mu.Lock()
	same := c.gen > 0 && slices.Equal(f.PrivateCIDRs, c.filter.PrivateCIDRs) && slices.Equal(f.NATAddrs, c.filter.NATAddrs)
	if !same {
		c.filter = f
		c.gen++
	}
	c.mu.Unlock()
	if !same {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// Reading returns the last count, from memory.
func (c *Census) Reading() Reading {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reading
}

// Dumps counts the table dumps the census has made.
func (c *Census) Dumps() uint64 { return c.dumps.Load() }

// Interval is the pause after a dump that took took.
func (c *Census) Interval(took time.Duration) time.Duration {
	d := time.Duration(float64(took) / c.opts.CPUShare)
	return min(max(d, c.opts.MinInterval), c.opts.MaxInterval)
}

// Run reads the table until ctx is done. A failed dump is kept in the
// reading (Err) and retried at the same pace; Run returns only ctx's
// error.
func (c *Census) Run(ctx context.Context) error {
	var src CensusSource
	defer func() {
		if src != nil {
			if err := src.Close(); err != nil {
				c.log.Debug("conntrack census: close", "err", err)
			}
		}
	}()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var readGen uint64 // the filter generation of the last reading
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		case <-c.wake:
			c.mu.Lock()
			stale := c.gen != readGen
			c.mu.Unlock()
			if !stale {
				continue // already read with that filter; keep the timer
			}
			timer.Stop()
		}
		c.mu.Lock()
		f, gen := c.filter, c.gen
		c.mu.Unlock()
		wait := c.opts.MaxInterval // no filter yet: SetFilter wakes it
		if gen > 0 {
			var err error
			if src == nil {
				if src, err = c.opts.Open(); err != nil {
					src = nil
					c.fail(fmt.Errorf("conntrack census: %w", err))
					wait = c.opts.MinInterval
				}
			}
			if src != nil {
				wait = c.read(ctx, src, f)
				readGen = gen
			}
		}
		timer.Reset(wait)
	}
}

// read takes one reading and returns the pause before the next.
func (c *Census) read(ctx context.Context, src CensusSource, f Filter) time.Duration {
	start := time.Now()
	s, err := src.Stats(ctx, f)
	took := time.Since(start)
	c.dumps.Add(1)
	if err != nil {
		if ctx.Err() == nil {
			c.fail(err)
		}
		return c.Interval(took)
	}
	c.mu.Lock()
	c.reading = Reading{Stats: s, At: time.Now(), Took: took}
	c.mu.Unlock()
	return c.Interval(took)
}

func (c *Census) fail(err error) {
	c.mu.Lock()
	first := c.reading.Err == nil
	c.reading.Err = err
	c.mu.Unlock()
	if first {
		c.log.Warn("conntrack census failed; connection counts are stale", "err", err)
	}
}

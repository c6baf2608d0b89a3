package conntrack

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeCensusSource counts dumps and returns a fixed count after a delay.
type fakeCensusSource struct {
	mu      sync.Mutex
	dumps   int
	filters []Filter
	took    time.Duration
	stats   Stats
	err     error
	closed  bool
}

func (f *fakeCensusSource) Stats(ctx context.Context, flt Filter) (Stats, error) {
	f.mu.Lock()
	f.dumps++
	f.filters = append(f.filters, flt)
	took, s, err := f.took, f.stats, f.err
	f.mu.Unlock()
	select {
	case <-time.After(took):
	case <-ctx.Done():
		return Stats{}, ctx.Err()
	}
	return s, err
}

func (f *fakeCensusSource) Close() error {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	return nil
}

func (f *fakeCensusSource) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dumps
}

func runCensus(t *testing.T, c *Census) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run = %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("census did not stop")
		}
	})
}

// waitReading waits (bounded) for a reading that ok accepts.
func waitReading(t *testing.T, c *Census, ok func(Reading) bool) Reading {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r := c.Reading()
		if ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("no such reading; last %+v", r)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

var censusFilter = Filter{
	PrivateCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.11.0/24")},
	NATAddrs:     []netip.Addr{netip.MustParseAddr("198.51.100.2")},
}

// TestCensusReadsFromMemory: however many readers ask, the table is dumped
// only by the census's own loop, on its own schedule.
func TestCensusReadsFromMemory(t *testing.T) {
	src := &fakeCensusSource{stats: Stats{Active: 7, UDP: 7}}
	c := NewCensus(nil, NetNS{}, CensusOptions{MinInterval: time.Hour, Open: func() (CensusSource, error) { return src, nil }})
	if r := c.Reading(); !r.At.IsZero() || r.Age(time.Now()) != -1 {
		t.Fatalf("reading before Run: %+v", r)
	}
	runCensus(t, c)
	time.Sleep(20 * time.Millisecond)
	if n := src.count(); n != 0 {
		t.Fatalf("dumped %d times before SetFilter named hanat's flows", n)
	}
	c.SetFilter(censusFilter)
	r := waitReading(t, c, func(r Reading) bool { return !r.At.IsZero() })
	if r.Active != 7 || r.Err != nil || r.Age(time.Now()) < 0 {
		t.Fatalf("reading %+v", r)
	}
	for range 1000 {
		if got := c.Reading(); got.Active != 7 {
			t.Fatalf("reading %+v", got)
		}
	}
	c.SetFilter(censusFilter) // the same filter: no new reading
	time.Sleep(20 * time.Millisecond)
	if n := src.count(); n != 1 || c.Dumps() != 1 {
		t.Errorf("1000 readings made %d dumps (census counts %d), want the census's 1", n, c.Dumps())
	}
	// Another filter counts other flows: read at once.
	other := censusFilter
	other.NATAddrs = []netip.Addr{netip.MustParseAddr("198.51.100.3")}
	src.mu.Lock()
	src.stats = Stats{Active: 3}
	src.mu.Unlock()
	c.SetFilter(other)
	waitReading(t, c, func(r Reading) bool { return r.Active == 3 })
	src.mu.Lock()
	defer src.mu.Unlock()
	if last := src.filters[len(src.filters)-1]; last.NATAddrs[0] != other.NATAddrs[0] {
		t.Errorf("dumped with %+v, want the new filter", last)
	}
}

// TestCensusInterval: the pause after a dump keeps the census's CPU share
// at CPUShare, within [MinInterval, MaxInterval].
func TestCensusInterval(t *testing.T) {
	c := NewCensus(nil, NetNS{}, CensusOptions{MinInterval: time.Second, MaxInterval: 5 * time.Minute, CPUShare: 0.02})
	for _, tc := range []struct{ took, want time.Duration }{
		{time.Millisecond, time.Second},
		{100 * time.Millisecond, 5 * time.Second},
		{2 * time.Second, 100 * time.Second},
		{time.Minute, 5 * time.Minute},
	} {
		if got := c.Interval(tc.took); got != tc.want {
			t.Errorf("Interval(%s) = %s, want %s", tc.took, got, tc.want)
		}
	}
	// Measured: a 30 ms dump is followed by 1.5 s of rest, not 30 ms.
	src := &fakeCensusSource{took: 30 * time.Millisecond, stats: Stats{Active: 1}}
	c = NewCensus(nil, NetNS{}, CensusOptions{MinInterval: 10 * time.Millisecond, CPUShare: 0.02, Open: func() (CensusSource, error) { return src, nil }})
	c.SetFilter(censusFilter)
	runCensus(t, c)
	time.Sleep(600 * time.Millisecond)
	if n := src.count(); n != 1 {
		t.Errorf("%d dumps of 30 ms in 600 ms, want 1 (2%% of a CPU)", n)
	}
}

// TestCensusError: a failed dump keeps the last good count and says why.
func TestCensusError(t *testing.T) {
	src := &fakeCensusSource{stats: Stats{Active: 5}}
	c := NewCensus(nil, NetNS{}, CensusOptions{MinInterval: 10 * time.Millisecond, Open: func() (CensusSource, error) { return src, nil }})
	c.SetFilter(censusFilter)
	runCensus(t, c)
	waitReading(t, c, func(r Reading) bool { return r.Active == 5 })
	src.mu.Lock()
	src.err = errors.New("ENOBUFS")
	src.mu.Unlock()
	r := waitReading(t, c, func(r Reading) bool { return r.Err != nil })
	if r.Active != 5 || r.At.IsZero() {
		t.Errorf("after a failed dump: %+v, want the last good count", r)
	}
}

package main

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hanat/hanat/config"
	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/internal/netns"
)

// countingSource stands for the kernel table: a fixed count, and how
// often it was dumped.
type countingSource struct {
	mu    sync.Mutex
	dumps int
	stats conntrack.Stats
}

func (s *countingSource) Stats(context.Context, conntrack.Filter) (conntrack.Stats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dumps++
	return s.stats, nil
}

func (s *countingSource) Close() error { return nil }

func (s *countingSource) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dumps
}

// TestStatusAndMetricsReadTheCensus: scrapes (metricsSource, which
// CloudWatch uses too) and `hanatctl status` (Status) take the connection
// counts from the census's last reading: fifty of each dump the table
// not once more than the census itself did, and they show its age.
func TestStatusAndMetricsReadTheCensus(t *testing.T) {
	// As root, in a namespace of its own: Status also reads nftables and
	// conntrack statistics, which must not be the host's.
	in := func(fn func() error) error { return fn() }
	if os.Geteuid() == 0 {
		ns, err := netns.Create(netns.UniqueName("hnt-census-"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := ns.Close(); err != nil {
				t.Errorf("delete namespace %s: %v", ns.Name, err)
			}
		})
		in = ns.Do
	}
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	cfg.Cloud.Discover = false // no IMDS request from the host
	d, err := newDaemon(context.Background(), slog.New(slog.DiscardHandler), new(slog.LevelVar), "", false, cfg, filepath.Join(t.TempDir(), "pins"))
	if err != nil {
		t.Fatal(err)
	}
	src := &countingSource{stats: conntrack.Stats{Active: 1_000_000, UDP: 999_000, TCP: 1000, TCPEstablished: 900}}
	d.census = conntrack.NewCensus(nil, conntrack.NetNS{}, conntrack.CensusOptions{MinInterval: time.Hour,
		Open: func() (conntrack.CensusSource, error) { return src, nil }})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := &backend{d: d}
	var st0 struct{ age int64 }
	if err := in(func() error {
		st, err := b.Status(ctx)
		st0.age = st.Connections.AgeMS
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if st0.age != -1 {
		t.Errorf("age before the first reading = %d ms, want -1", st0.age)
	}
	d.census.SetFilter(conntrack.Filter{PrivateCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")},
		NATAddrs: []netip.Addr{netip.MustParseAddr("198.51.100.2")}})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = d.census.Run(runCtx) }()
	defer func() { stop(); <-done }()
	for i := 0; d.census.Reading().At.IsZero(); i++ {
		if i > 500 {
			t.Fatal("no census reading after 5 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	err = in(func() error {
		for range 50 {
			snap, err := b.metricsSource(ctx)
			if err != nil {
				return err
			}
			if snap.ActiveConnections != 1_000_000 || snap.ActiveConnectionsAge < 0 {
				t.Fatalf("metrics: %d active, age %s", snap.ActiveConnections, snap.ActiveConnectionsAge)
			}
			st, err := b.Status(ctx)
			if err != nil {
				return err
			}
			if c := st.Connections; c.Active != 1_000_000 || c.UDP != 999_000 || c.TCPEstablished != 900 || c.AgeMS < 0 || c.ReadAt.IsZero() {
				t.Fatalf("status connections %+v", c)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := src.count(); n != 1 {
		t.Errorf("the table was dumped %d times for 50 scrapes and 50 status calls, want once (the census's reading)", n)
	}
}

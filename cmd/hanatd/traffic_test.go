package main

import (
	"log/slog"
	"testing"

	"github.com/hanat/hanat/datapath"
)

// TestTrafficTotalsSurviveTableReplacement: rule counters restart at 0
// when the table is replaced or deleted; the totals keep growing.
func TestTrafficTotalsSurviveTableReplacement(t *testing.T) {
	tr := newTraffic(slog.New(slog.DiscardHandler), nil, nil)
	c := func(p, b uint64) datapath.Counter { return datapath.Counter{Packets: p, Bytes: b} }
	steps := []struct {
		reading map[string]datapath.Counter
		want    map[string]datapath.Counter
	}{
		{map[string]datapath.Counter{"a": c(10, 1000)}, map[string]datapath.Counter{"a": c(10, 1000)}},
		{map[string]datapath.Counter{"a": c(15, 1500), "b": c(1, 60)}, map[string]datapath.Counter{"a": c(15, 1500), "b": c(1, 60)}},
		// Table replaced: both restart.
		{map[string]datapath.Counter{"a": c(2, 200), "b": c(0, 0)}, map[string]datapath.Counter{"a": c(17, 1700), "b": c(1, 60)}},
		// Table deleted by hand.
		{map[string]datapath.Counter{}, map[string]datapath.Counter{"a": c(17, 1700), "b": c(1, 60)}},
		// Back.
		{map[string]datapath.Counter{"a": c(3, 300)}, map[string]datapath.Counter{"a": c(20, 2000), "b": c(1, 60)}},
		{map[string]datapath.Counter{"a": c(3, 300)}, map[string]datapath.Counter{"a": c(20, 2000), "b": c(1, 60)}},
	}
	for i, s := range steps {
		tr.mu.Lock()
		got := tr.totalsLocked(s.reading)
		tr.mu.Unlock()
		if len(got) != len(s.want) {
			t.Errorf("step %d: totals %v, want %v", i, got, s.want)
			continue
		}
		for k, w := range s.want {
			if got[k] != w {
				t.Errorf("step %d: %s = %+v, want %+v", i, k, got[k], w)
			}
		}
	}
}

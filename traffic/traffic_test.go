package traffic

import (
	"context"
	"errors"
	"testing"

	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/datapath"
	"github.com/hanat/hanat/fastpath"
)

type fakeRules struct {
	c   map[string]datapath.Counter
	err error
}

func (f *fakeRules) Counters(context.Context) (map[string]datapath.Counter, error) {
	out := make(map[string]datapath.Counter, len(f.c))
	for k, v := range f.c {
		out[k] = v
	}
	return out, f.err
}

type fakeFast struct {
	t       fastpath.Totals
	ok, run bool
}

func (f *fakeFast) Totals() (fastpath.Totals, bool) { return f.t, f.ok }
func (f *fakeFast) Running() bool                   { return f.run }

func c(p, b uint64) datapath.Counter { return datapath.Counter{Packets: p, Bytes: b} }

// TestTotalsSurviveTableReplacement: rule counters restart at 0 when the
// table is replaced or deleted; the totals keep growing.
func TestTotalsSurviveTableReplacement(t *testing.T) {
	m := NewMeter(nil, conntrack.NetNS{}, nil, nil, nil)
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
		m.mu.Lock()
		got := m.fold(s.reading)
		m.mu.Unlock()
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

// TestTotalsMapRulesAndFastPath: each rule lands in its NAT gateway
// metric, the fast path's totals are added by direction and stay when
// they are briefly unreadable, and an unreadable table is no reset.
func TestTotalsMapRulesAndFastPath(t *testing.T) {
	rules := &fakeRules{c: map[string]datapath.Counter{
		datapath.RuleForwardNewPrivate:        c(3, 180),
		datapath.RuleForwardEstablishedSource: c(10, 1000),
		datapath.RuleForwardEstablished:       c(20, 30000),
		datapath.RuleForwardDNAT:              c(1, 60),
		datapath.RuleConnEstablished:          c(2, 0),
		datapath.RuleDropInvalid:              c(4, 0),
		datapath.RuleDropUnsolicited:          c(5, 0),
		datapath.RuleResetNoFlow:              c(6, 0),
		"input_drop_ssh":                      c(7, 0),
	}}
	fast := &fakeFast{t: fastpath.Totals{OutPackets: 100, OutBytes: 10000, InPackets: 200, InBytes: 300000}, ok: true, run: true}
	m := NewMeter(nil, conntrack.NetNS{}, rules, fast, nil)
	check := func(when string) {
		t.Helper()
		got, _ := m.read(context.Background())
		tr := totalsOf(got)
		if tr.PacketsInFromSource != 113 || tr.BytesInFromSource != 11180 || tr.PacketsOutToDestination != 113 ||
			tr.PacketsInFromDestination != 221 || tr.BytesOutToSource != 330060 ||
			tr.ConnectionAttempts != 3 || tr.ConnectionsEstablished != 2 {
			t.Errorf("%s: totals %+v", when, tr)
		}
		if d := tr.PacketsDropped; d["invalid"] != 4 || d["unsolicited"] != 5 || d["reset_no_flow"] != 6 || d["host_input"] != 7 {
			t.Errorf("%s: drops %v", when, d)
		}
	}
	check("first reading")
	fast.ok = false // attached, counters unreadable for a moment
	check("fast path unreadable")
	rules.err = errors.New("netlink busy")
	check("table unreadable")
}

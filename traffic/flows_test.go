package traffic

import (
	"testing"

	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/fastpath"
)

// TestWithFast: a flow's counters include what the fast path forwarded,
// which the kernel never counts; Fast keeps that share.
func TestWithFast(t *testing.T) {
	f := conntrack.Flow{ID: 7, OrigPackets: 3, OrigBytes: 300, ReplyPackets: 2, ReplyBytes: 200}
	c := fastpath.FastCounters{Offloaded: true, OrigPackets: 10, OrigBytes: 1000, ReplyPackets: 20, ReplyBytes: 2000}
	got := withFast(f, c)
	if got.ID != 7 || got.OrigPackets != 13 || got.OrigBytes != 1300 || got.ReplyPackets != 22 || got.ReplyBytes != 2200 {
		t.Fatalf("flow = %+v, want the kernel's counters plus the fast path's", got.Flow)
	}
	if got.Fast != c {
		t.Fatalf("fast = %+v, want %+v", got.Fast, c)
	}
	if got := withFast(f, fastpath.FastCounters{}); got.Flow != f || got.Fast.Offloaded {
		t.Fatalf("not offloaded: flow = %+v, fast = %+v, want the kernel's entry unchanged", got.Flow, got.Fast)
	}
}

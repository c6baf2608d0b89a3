package traffic

import (
	"context"
	"log/slog"

	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/fastpath"
)

// FlowLookup finds the fast path's counters of a flow by its original
// tuple; *fastpath.Controller is the real one.
type FlowLookup interface {
	Lookup(orig conntrack.Tuple) (fastpath.FastCounters, bool)
}

// Flow is one of the NAT's flows: its kernel entry, whose counters
// include the packets the fast path forwarded (which the kernel never
// counts), and Fast, their fast share.
type Flow struct {
	conntrack.Flow
	Fast fastpath.FastCounters
}

// Flows dumps the NAT's flows of filter in ns and returns those q selects
// (in the order of their kernel ids), with the fast path's counters
// folded in (fast may be nil), and how many q matched before its limit.
func Flows(ctx context.Context, log *slog.Logger, ns conntrack.NetNS, filter conntrack.Filter, q conntrack.FlowQuery, fast FlowLookup) ([]Flow, int, error) {
	t, err := conntrack.Open(log, ns)
	if err != nil {
		return nil, 0, err
	}
	defer t.Close()
	all, err := t.Flows(ctx, filter)
	if err != nil {
		return nil, 0, err
	}
	selected, matched := q.Select(all)
	out := make([]Flow, 0, len(selected))
	for _, f := range selected {
		var fc fastpath.FastCounters
		if fast != nil {
			if c, ok := fast.Lookup(f.Original); ok {
				fc = c
			}
		}
		out = append(out, withFast(f, fc))
	}
	return out, matched, nil
}

// withFast folds the fast path's counters c into the kernel's flow f.
func withFast(f conntrack.Flow, c fastpath.FastCounters) Flow {
	f.OrigPackets += c.OrigPackets
	f.OrigBytes += c.OrigBytes
	f.ReplyPackets += c.ReplyPackets
	f.ReplyBytes += c.ReplyBytes
	return Flow{Flow: f, Fast: c}
}

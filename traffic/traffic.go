// Package traffic turns what the NAT counts into the NAT gateway's traffic
// metrics:
//
//   - bytes and packets by direction, connection attempts and established
//     connections, drops: the named rule counters of the slow path's
//     table (forward_established_source + forward_new_private from the
//     private hosts, forward_established + forward_dnat from the outside,
//     conn_established once per answered flow), made monotonic here
//     because a replaced table starts its counters at 0;
//   - the fast path's packets, which never reach the rule counters: its
//     per-direction totals (outbound = from the private hosts) are added,
//     folded in like two more rules so they stay monotonic when the
//     program's maps are recreated;
//   - idle timeouts: conntrack DESTROY events of flows still established
//     (conntrack.EndWatcher);
//   - port allocation errors: the kernel's conntrack insert_failed.
package traffic

import (
	"context"
	"log/slog"
	"strings"
	"sync"

	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/datapath"
	"github.com/hanat/hanat/fastpath"
)

// Totals are the NAT gateway's traffic metrics since hanatd started. What
// the NAT forwards it received, so in from source = out to destination
// and the other way round (drops are PacketsDropped).
type Totals struct {
	BytesInFromSource, BytesOutToDestination     uint64
	BytesInFromDestination, BytesOutToSource     uint64
	PacketsInFromSource, PacketsOutToDestination uint64
	PacketsInFromDestination, PacketsOutToSource uint64
	ConnectionAttempts, ConnectionsEstablished   uint64
	PortAllocationErrors, IdleTimeouts           uint64
	// PacketsDropped by reason: invalid, unsolicited, reset_no_flow (not
	// forwarded: answered with a RST), host_input.
	PacketsDropped map[string]uint64
	// FastpathIncluded: the fast path runs and its totals are in the byte
	// and packet counters.
	FastpathIncluded bool
}

// RuleCounters reads the slow path's named rule counters; *datapath.Slowpath
// is the real one.
type RuleCounters interface {
	Counters(ctx context.Context) (map[string]datapath.Counter, error)
}

// FastTotals reads the fast path's direction totals; *fastpath.Controller
// is the real one.
type FastTotals interface {
	Totals() (fastpath.Totals, bool)
	Running() bool
}

// Pseudo rule names of the fast path's totals among the rule counters.
const (
	fastOut = "xdp_outbound"
	fastIn  = "xdp_inbound"
)

// Meter keeps the totals monotonic across table replacements.
type Meter struct {
	log  *slog.Logger
	slow RuleCounters
	fast FastTotals // nil: no fast path
	ends *conntrack.EndWatcher
	ns   conntrack.NetNS

	// mu serialises reading the counters and folding them in: two
	// readings folded out of order would look like a reset.
	mu   sync.Mutex
	last map[string]datapath.Counter // last reading of each rule
	base map[string]datapath.Counter // what earlier tables counted
}

// NewMeter returns a meter of the NAT in ns; fast and ends may be nil.
func NewMeter(log *slog.Logger, ns conntrack.NetNS, slow RuleCounters, fast FastTotals, ends *conntrack.EndWatcher) *Meter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Meter{log: log, slow: slow, fast: fast, ends: ends, ns: ns,
		last: map[string]datapath.Counter{}, base: map[string]datapath.Counter{}}
}

// Carry reads the rule counters so that a table replacement right after
// loses as little as possible (called before each apply of the table).
func (m *Meter) Carry(ctx context.Context) {
	if _, err := m.read(ctx); err != nil {
		m.log.Debug("read rule counters before apply", "err", err)
	}
}

// read reads the rule counters and returns them made monotonic.
func (m *Meter) read(ctx context.Context) (map[string]datapath.Counter, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := m.slow.Counters(ctx)
	if err != nil {
		// Keep what was counted; an unreadable table is not a reset.
		return m.fold(m.last), err
	}
	if m.fast != nil {
		if t, ok := m.fast.Totals(); ok {
			c[fastOut] = datapath.Counter{Packets: t.OutPackets, Bytes: t.OutBytes}
			c[fastIn] = datapath.Counter{Packets: t.InPackets, Bytes: t.InBytes}
		} else if prev, seen := m.last[fastOut]; seen && m.fast.Running() {
			// Loaded but unreadable right now: not a reset.
			c[fastOut], c[fastIn] = prev, m.last[fastIn]
		}
	}
	return m.fold(c), nil
}

// fold turns one reading of the rule counters into counters that only
// grow: a counter that went down (its table was replaced or deleted) has
// its previous reading added to its base. m.mu is held.
func (m *Meter) fold(now map[string]datapath.Counter) map[string]datapath.Counter {
	out := make(map[string]datapath.Counter, len(now))
	for name, prev := range m.last {
		if cur, ok := now[name]; !ok || cur.Packets < prev.Packets || cur.Bytes < prev.Bytes {
			b := m.base[name]
			b.Packets += prev.Packets
			b.Bytes += prev.Bytes
			m.base[name] = b
			if !ok {
				delete(m.last, name)
			}
		}
	}
	for name, cur := range now {
		m.last[name] = cur
	}
	for name, b := range m.base {
		cur := now[name]
		out[name] = datapath.Counter{Packets: b.Packets + cur.Packets, Bytes: b.Bytes + cur.Bytes}
	}
	for name, cur := range now {
		if _, ok := out[name]; !ok {
			out[name] = cur
		}
	}
	return out
}

// Read returns the totals now.
func (m *Meter) Read(ctx context.Context) Totals {
	c, err := m.read(ctx)
	if err != nil {
		m.log.Debug("read rule counters", "err", err)
	}
	tr := totalsOf(c)
	if m.ends != nil {
		tr.IdleTimeouts = m.ends.Stats().IdleTimeouts
	}
	tr.FastpathIncluded = m.fast != nil && m.fast.Running()
	if ks, err := conntrack.ReadKernelStats(ctx, m.ns); err != nil {
		m.log.Debug("conntrack statistics", "err", err)
	} else {
		tr.PortAllocationErrors = ks.InsertFailed
	}
	return tr
}

// totalsOf maps monotonic rule counters onto the NAT gateway's metrics.
func totalsOf(c map[string]datapath.Counter) Totals {
	add := func(names ...string) datapath.Counter {
		var s datapath.Counter
		for _, n := range names {
			s.Packets += c[n].Packets
			s.Bytes += c[n].Bytes
		}
		return s
	}
	fromSource := add(datapath.RuleForwardEstablishedSource, datapath.RuleForwardNewPrivate, fastOut)
	fromDest := add(datapath.RuleForwardEstablished, datapath.RuleForwardDNAT, fastIn)
	tr := Totals{
		ConnectionAttempts:     c[datapath.RuleForwardNewPrivate].Packets,
		ConnectionsEstablished: c[datapath.RuleConnEstablished].Packets,
		PacketsDropped:         map[string]uint64{},
	}
	for name, v := range c {
		switch {
		case name == datapath.RuleDropInvalid:
			tr.PacketsDropped["invalid"] += v.Packets
		case name == datapath.RuleDropUnsolicited:
			tr.PacketsDropped["unsolicited"] += v.Packets
		case name == datapath.RuleResetNoFlow:
			tr.PacketsDropped["reset_no_flow"] += v.Packets
		case strings.HasPrefix(name, "input_drop"):
			tr.PacketsDropped["host_input"] += v.Packets
		}
	}
	tr.BytesInFromSource, tr.PacketsInFromSource = fromSource.Bytes, fromSource.Packets
	tr.BytesOutToDestination, tr.PacketsOutToDestination = fromSource.Bytes, fromSource.Packets
	tr.BytesInFromDestination, tr.PacketsInFromDestination = fromDest.Bytes, fromDest.Packets
	tr.BytesOutToSource, tr.PacketsOutToSource = fromDest.Bytes, fromDest.Packets
	return tr
}

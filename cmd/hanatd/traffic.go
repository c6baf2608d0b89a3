package main

import (
	"context"
	"log/slog"
	"strings"
	"sync"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/datapath"
)

// traffic feeds the NAT gateway's metrics:
//
//   - bytes and packets by direction, connection attempts and established
//     connections, drops: the named rule counters of table inet hanat
//     (forward_established_source + forward_new_private from the private
//     hosts, forward_established + forward_dnat from the outside,
//     conn_established once per answered flow), made monotonic here
//     because a replaced table starts its counters at 0;
//   - idle timeouts: conntrack DESTROY events of flows still established
//     (conntrack.EndWatcher);
//   - port allocation errors: the kernel's conntrack insert_failed.
//
// The fast path's packets never reach the rule counters: the XDP
// program's per-direction totals (outbound = from the private hosts) are
// added, folded in like two more rules so they stay monotonic when the
// program's maps are recreated.
type traffic struct {
	log  *slog.Logger
	slow *datapath.Slowpath
	fast *fastpath // nil in tests
	ends *conntrack.EndWatcher
	// feed is the daemon's one conntrack event socket, shared with the
	// fast path's offload engine; nil when it could not be opened (the
	// end watcher then tries a socket of its own).
	feed *conntrack.EventFeed

	// mu serialises reading the counters and folding them in: two readings
	// folded out of order would look like a reset.
	mu   sync.Mutex
	last map[string]datapath.Counter // last reading of each rule
	base map[string]datapath.Counter // what earlier tables counted
}

// Pseudo rule names of the fast path's totals in traffic's counters.
const (
	fastOut = "xdp_outbound"
	fastIn  = "xdp_inbound"
)

func newTraffic(log *slog.Logger, slow *datapath.Slowpath, fast *fastpath) *traffic {
	return &traffic{
		log:  log,
		slow: slow,
		fast: fast,
		ends: conntrack.NewEndWatcher(log, -1),
		last: map[string]datapath.Counter{},
		base: map[string]datapath.Counter{},
	}
}

// run watches flows end until ctx is done. Failing to watch leaves
// IdleTimeoutCount at 0; it never stops the NAT.
func (t *traffic) run(ctx context.Context) error {
	if t.feed == nil {
		if err := t.ends.Run(ctx); err != nil && ctx.Err() == nil {
			t.log.Warn("conntrack DESTROY events unavailable: idle timeouts are not counted", "err", err)
		}
		return nil
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := t.feed.Run(ctx); err != nil && ctx.Err() == nil {
			t.log.Warn("conntrack event socket failed: idle timeouts are not counted and the fast path offloads nothing new", "err", err)
		}
	})
	if err := t.ends.RunOn(ctx, t.feed); err != nil && ctx.Err() == nil {
		t.log.Warn("conntrack DESTROY events unavailable: idle timeouts are not counted", "err", err)
	}
	wg.Wait()
	return nil
}

// setNAT tells the watcher which flows are hanat's (after each reconcile).
func (t *traffic) setNAT(nat datapath.NAT) { t.ends.SetFilter(conntrackFilter(nat)) }

// carry reads the rule counters so that a table replacement right after
// loses as little as possible (called before each Apply).
func (t *traffic) carry(ctx context.Context) {
	if _, err := t.read(ctx); err != nil {
		t.log.Debug("read rule counters before apply", "err", err)
	}
}

// read reads the rule counters and returns them made monotonic.
func (t *traffic) read(ctx context.Context) (map[string]datapath.Counter, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c, err := t.slow.Counters(ctx)
	if err != nil {
		// Keep what was counted; an unreadable table is not a reset.
		return t.totalsLocked(t.last), err
	}
	if out, in, ok := fastDirections(t.fast); ok {
		c[fastOut], c[fastIn] = out, in
	} else if prev, seen := t.last[fastOut]; seen && t.fast != nil && t.fast.running() {
		// Attached but unreadable right now: not a reset.
		c[fastOut], c[fastIn] = prev, t.last[fastIn]
	}
	return t.totalsLocked(c), nil
}

// totalsLocked turns one reading of the rule counters into counters that
// only grow: a counter that went down (its table was replaced or deleted)
// has its previous reading added to its base.
func (t *traffic) totalsLocked(now map[string]datapath.Counter) map[string]datapath.Counter {
	out := make(map[string]datapath.Counter, len(now))
	for name, prev := range t.last {
		if cur, ok := now[name]; !ok || cur.Packets < prev.Packets || cur.Bytes < prev.Bytes {
			b := t.base[name]
			b.Packets += prev.Packets
			b.Bytes += prev.Bytes
			t.base[name] = b
			if !ok {
				delete(t.last, name)
			}
		}
	}
	for name, cur := range now {
		t.last[name] = cur
	}
	for name, b := range t.base {
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

// status is the NAT gateway's metrics now.
func (t *traffic) status(ctx context.Context) admin.Traffic {
	c, err := t.read(ctx)
	if err != nil {
		t.log.Debug("read rule counters", "err", err)
	}
	add := func(names ...string) admin.Counter {
		var s admin.Counter
		for _, n := range names {
			s.Packets += c[n].Packets
			s.Bytes += c[n].Bytes
		}
		return s
	}
	fromSource := add(datapath.RuleForwardEstablishedSource, datapath.RuleForwardNewPrivate, fastOut)
	fromDest := add(datapath.RuleForwardEstablished, datapath.RuleForwardDNAT, fastIn)
	tr := admin.Traffic{
		ConnectionAttempts:     c[datapath.RuleForwardNewPrivate].Packets,
		ConnectionsEstablished: c[datapath.RuleConnEstablished].Packets,
		IdleTimeouts:           t.ends.Stats().IdleTimeouts,
		PacketsDropped:         map[string]uint64{},
	}
	for name, v := range c {
		switch {
		case name == datapath.RuleDropInvalid:
			tr.PacketsDropped["invalid"] += v.Packets
		case name == datapath.RuleDropUnsolicited:
			tr.PacketsDropped["unsolicited"] += v.Packets
		case name == datapath.RuleResetNoFlow: // not forwarded: answered with a RST
			tr.PacketsDropped["reset_no_flow"] += v.Packets
		case strings.HasPrefix(name, "input_drop"):
			tr.PacketsDropped["host_input"] += v.Packets
		}
	}
	tr.Fastpath = "off"
	if t.fast != nil && t.fast.running() {
		tr.Fastpath = "included"
	}
	// What the NAT forwards it received: in from source = out to
	// destination and the other way round (drops are PacketsDropCount).
	tr.BytesInFromSource, tr.PacketsInFromSource = fromSource.Bytes, fromSource.Packets
	tr.BytesOutToDestination, tr.PacketsOutToDestination = fromSource.Bytes, fromSource.Packets
	tr.BytesInFromDestination, tr.PacketsInFromDestination = fromDest.Bytes, fromDest.Packets
	tr.BytesOutToSource, tr.PacketsOutToSource = fromDest.Bytes, fromDest.Packets
	if ks, err := conntrack.ReadKernelStats(ctx, -1); err != nil {
		t.log.Debug("conntrack statistics", "err", err)
	} else {
		tr.PortAllocationErrors = ks.InsertFailed
	}
	return tr
}

// fastDirections returns the XDP program's totals of packets it forwarded
// from the private hosts (outbound) and from the outside (inbound); false
// when the fast path is off or its counters cannot be read.
func fastDirections(f *fastpath) (out, in datapath.Counter, ok bool) {
	if f == nil {
		return out, in, false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fp == nil {
		return out, in, false
	}
	c, err := f.fp.Objects().Counters()
	if err != nil {
		return out, in, false
	}
	return datapath.Counter{Packets: c.OutPackets, Bytes: c.OutBytes}, datapath.Counter{Packets: c.InPackets, Bytes: c.InBytes}, true
}

// running reports whether the XDP program is attached.
func (f *fastpath) running() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fp != nil
}

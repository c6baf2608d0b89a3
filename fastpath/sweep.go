//go:build linux

package fastpath

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hanat/hanat/bpf"
	"github.com/hanat/hanat/conntrack"
)

// maybeResync runs a resync unless one ran very recently (then the tick
// retries it).
func (o *engine) maybeResync(ctx context.Context) {
	if !o.needResync.Load() {
		return
	}
	now := o.now()
	recent := o.synced && now-o.lastResync < minResyncGap
	if recent {
		return
	}
	o.needResync.Store(false)
	if err := o.resync(ctx); err != nil {
		if ctx.Err() != nil {
			return
		}
		o.log.Error("conntrack offload: resync failed; retrying", "err", err)
		o.needResync.Store(true)
	}
}

// resync compares the whole kernel table with the engine's records:
// offloadable flows are offloaded (already offloaded ones keep their map
// entries and counters), records of vanished flows are dropped.
func (o *engine) resync(ctx context.Context) error {
	var found []conntrack.Event
	var gen uint64
	o.takeFilter()
	defer o.publishStats()
	err := o.kernel.Walk(ctx, func() {
		found = found[:0]
		o.gen++
		gen = o.gen
	}, func(ev conntrack.Event) {
		f := &ev.Flow
		if !o.filter.Match(*f) {
			return
		}
		// Mark what we already know; collect the rest (bounded: beyond
		// MaxFlows nothing more is offloaded).
		if rec := o.recs[f.Original]; rec != nil && rec.id == f.ID {
			rec.seenGen = gen
		}
		if len(found) < o.cfg.MaxFlows*2 {
			found = append(found, ev)
		}
	})
	if err != nil {
		return fmt.Errorf("resync: %w", err)
	}
	now := o.now()
	for _, rec := range o.recs {
		if rec.seenGen != gen {
			o.forget(rec)
		}
	}
	for i := range found {
		o.handle(ctx, now, found[i])
	}
	o.synced = true
	o.lastResync = now
	o.stats.Resyncs++
	o.log.Info("conntrack offload: resynced with the kernel table", "offloaded", o.offloaded, "pending", o.pending)
	return nil
}

// sweep refreshes the kernel timeouts of active offloaded flows, notices
// flows the kernel dropped without telling us and entries the map evicted,
// folds counters, removes stale entries, retries pending flows and
// rechecks old paths.
func (o *engine) sweep(ctx context.Context) {
	o.takeFilter()
	started := time.Now()
	defer func() {
		o.stats.Sweeps++
		o.stats.SweepMicros = uint64(time.Since(started).Microseconds())
		o.publishStats()
	}()
	now := o.now()
	// Each entry's counters go to its record, stamped with this sweep:
	// no map of millions of keys built per sweep.
	o.sweeps++
	gen := o.sweeps
	var stale []bpf.FlowKey
	err := o.fm.IterateFlowStats(func(k bpf.FlowKey, s bpf.FlowStats) bool {
		if rec, ok := o.byKey[k]; ok {
			i := 0
			if rec.keys[1] == k {
				i = 1
			}
			rec.sweepGen[i], rec.sweepStats[i] = gen, s
		} else if len(stale) < 1<<16 {
			stale = append(stale, k)
		}
		return true
	})
	if err != nil {
		o.stats.MapErrors++
		o.log.Warn("conntrack offload: read flow map", "err", err)
		return
	}
	if o.synced {
		for _, k := range stale {
			if err := o.fm.DeleteFlow(k); err == nil {
				o.stats.StaleEntries++
			}
		}
	}
	refreshAhead := 2*o.cfg.SweepInterval + time.Second
	for _, rec := range o.recs {
		if rec.state != stOffloaded {
			continue
		}
		s0, ok0 := rec.sweepStats[0], rec.sweepGen[0] == gen
		s1, ok1 := rec.sweepStats[1], rec.sweepGen[1] == gen
		if !ok0 || !ok1 {
			// The LRU map evicted a direction (or someone deleted it):
			// take out the other one too and offload again later.
			if ok0 {
				rec.fast[0] = s0
			}
			if ok1 {
				rec.fast[1] = s1
			}
			o.unoffload(rec)
			o.setState(rec, stPending)
			rec.retryAt = now + o.cfg.RetryInterval
			o.stats.Evicted++
			continue
		}
		rec.fast = [2]bpf.FlowStats{s0, s1}
		o.publish(rec)
		// Activity is a packet counter that moved (compared per
		// direction with !=: the fast path's plain adds may lose an
		// increment or, rarely, step back, but a busy counter never
		// stands still). Its last packet came after the previous sweep
		// and by now; taking now keeps the flow at most one sweep
		// longer than its idle timeout, never shorter.
		if pk := [2]uint64{s0.Packets, s1.Packets}; pk != rec.lastPackets {
			rec.lastSeen = now
			rec.lastPackets = pk
		}
		desired := rec.lastSeen + rec.timeout
		switch {
		case desired > rec.kernelDeadline+time.Second && rec.kernelDeadline-now <= refreshAhead:
			// Busy on the fast path and the kernel entry expires soon.
			// Look at it first: an entry that left ESTABLISHED without
			// telling us (entries created before anyone listened carry
			// no events) must not be kept alive, only unoffloaded.
			if !o.verify(ctx, now, rec) {
				continue
			}
			left := desired - now
			if err := o.kernel.SetTimeout(ctx, rec.orig, left); err != nil {
				if errors.Is(err, conntrack.ErrFlowGone) {
					o.stats.Expired++
					o.forget(rec)
					continue
				}
				o.log.Warn("conntrack offload: refresh kernel timeout", "flow", rec.orig.String(), "err", err)
				continue
			}
			rec.kernelDeadline = now + left.Truncate(time.Second)
			o.stats.Refreshes++
		case now >= desired && now >= rec.kernelDeadline:
			// Idle longer than the timeout: the kernel should have
			// dropped it. If it did and we missed the event, forget
			// the flow; if the slow path kept it alive, believe it.
			o.verify(ctx, now, rec)
		case rec.kernelDeadline-now <= o.cfg.SweepInterval+time.Second:
			// Idle, and the kernel entry expires before the next
			// sweep. Hand the flow back to the slow path now: the
			// kernel's own expiry then applies to the second, and a
			// segment after it gets the NAT gateway's answer (a RST,
			// rule reset_no_flow) instead of being forwarded by the
			// fast path until a sweep or the kernel's late DESTROY
			// notices. A flow the slow path keeps alive meanwhile is
			// offloaded again after the deadline (retryLocked).
			o.unoffload(rec)
			o.setState(rec, stPending)
			rec.idleHandback = true
			rec.retryAt = rec.kernelDeadline + time.Second
			o.stats.IdleHandbacks++
		}
	}
	o.recheckPaths(ctx, now)
	o.retryDue(ctx, now)
	for k, c := range o.cache {
		if now-c.at >= pathCacheTTL {
			delete(o.cache, k)
		}
	}
}

// verify reads the kernel entry of an offloaded flow and applies it as an
// update event would; it reports whether the flow is still offloaded.
func (o *engine) verify(ctx context.Context, now time.Duration, rec *record) bool {
	ev, err := o.kernel.Get(ctx, rec.orig)
	switch {
	case errors.Is(err, conntrack.ErrFlowGone):
		o.stats.Expired++
		o.forget(rec)
		return false
	case err != nil:
		o.log.Warn("conntrack offload: read kernel entry", "flow", rec.orig.String(), "err", err)
		return true
	}
	o.handle(ctx, now, ev) // also moves kernelDeadline to what the kernel says
	return o.recs[rec.orig] == rec && rec.state == stOffloaded
}

// recheckPaths re-resolves the paths of up to recheckPerSweep flows
// resolved more than pathRecheckAge ago and rewrites those that changed (a
// next hop's new MAC, a new route).
func (o *engine) recheckPaths(ctx context.Context, now time.Duration) {
	n := 0
	for _, rec := range o.recs {
		if n >= recheckPerSweep {
			return
		}
		if rec.state != stOffloaded || now-rec.resolvedAt < pathRecheckAge {
			continue
		}
		n++
		keys, acts, err := o.entries(ctx, now, rec)
		if err != nil {
			// The path went away: back to the slow path, retry later.
			o.unoffload(rec)
			o.setState(rec, stPending)
			rec.retryAt = now + o.cfg.RetryInterval
			o.stats.PathErrors++
			continue
		}
		rec.resolvedAt = now
		if keys == rec.keys && sameActions(acts, rec.acts) {
			continue
		}
		o.unoffload(rec)
		o.setState(rec, stPending)
		o.tryOffload(ctx, now, rec)
	}
}

func sameActions(a, b [2]bpf.FlowAction) bool {
	for i := range a {
		if a[i].NewSrc != b[i].NewSrc || a[i].NewDst != b[i].NewDst || a[i].EgressIfindex != b[i].EgressIfindex ||
			a[i].MTU != b[i].MTU || a[i].Outbound != b[i].Outbound || a[i].SrcMAC.String() != b[i].SrcMAC.String() || a[i].DstMAC.String() != b[i].DstMAC.String() {
			return false
		}
	}
	return true
}

// retry tries pending flows whose retry time has come.
func (o *engine) retry(ctx context.Context) {
	o.takeFilter()
	o.retryDue(ctx, o.now())
	o.publishStats()
}

func (o *engine) retryDue(ctx context.Context, now time.Duration) {
	n := 0
	for _, rec := range o.recs {
		if n >= retriesPerSweep {
			return
		}
		if rec.state != stPending || rec.retryAt > now {
			continue
		}
		n++
		if rec.idleHandback {
			o.retryHandedBack(ctx, now, rec)
			continue
		}
		o.tryOffload(ctx, now, rec)
	}
}

// retryHandedBack looks at the kernel entry of a flow the sweep handed
// back to the slow path when it went idle: gone (expired), it is
// forgotten; still expiring before the next sweep, it stays on the slow
// path; kept alive by slow-path traffic, it is offloaded again.
func (o *engine) retryHandedBack(ctx context.Context, now time.Duration, rec *record) {
	ev, err := o.kernel.Get(ctx, rec.orig)
	switch {
	case errors.Is(err, conntrack.ErrFlowGone):
		o.stats.Expired++
		o.forget(rec)
		return
	case err != nil:
		o.log.Warn("conntrack offload: read kernel entry", "flow", rec.orig.String(), "err", err)
		rec.retryAt = now + o.cfg.RetryInterval
		return
	}
	if left := ev.Flow.Timeout; left <= o.cfg.SweepInterval+time.Second {
		rec.retryAt = now + left + time.Second
		return
	}
	rec.idleHandback = false
	o.handle(ctx, now, ev)
}

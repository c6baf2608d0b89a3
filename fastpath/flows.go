//go:build linux

package fastpath

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/hanat/hanat/bpf"
	"github.com/hanat/hanat/conntrack"
)

// apply processes a batch of events; the last event of each connection
// wins (which is the kernel's latest word on it).
func (o *engine) apply(ctx context.Context, batch []conntrack.Event) {
	last := make(map[conntrack.Tuple]int, len(batch))
	for i := range batch {
		last[batch[i].Flow.Original] = i
	}
	o.takeFilter()
	now := o.now()
	for i := range batch {
		if last[batch[i].Flow.Original] != i {
			continue
		}
		o.handle(ctx, now, batch[i])
	}
	o.publishStats()
}

// offloadable reports whether the fast path may carry f.
func (o *engine) offloadable(ev conntrack.Event) bool {
	f := &ev.Flow
	if !ev.Plain || !f.Assured {
		return false
	}
	marked := o.cfg.OffloadMark != 0 && f.Mark&o.cfg.OffloadMark != 0
	if o.cfg.OffloadMark != 0 && f.SNAT && !marked {
		return false
	}
	switch f.Original.Proto {
	case bpf.ProtoTCP:
		if f.TCPState != "ESTABLISHED" && !(marked && f.TCPState == "") {
			return false
		}
	case bpf.ProtoUDP:
	default:
		return false
	}
	return o.filter.Match(*f)
}

// handle applies one event.
func (o *engine) handle(ctx context.Context, now time.Duration, ev conntrack.Event) {
	key := ev.Flow.Original
	rec := o.recs[key]
	if rec != nil && ev.Flow.ID != 0 && rec.id != ev.Flow.ID {
		// The tuple belongs to a new connection: the old one is gone
		// (its DESTROY was lost or is still queued).
		o.forget(rec)
		rec = nil
	}
	if ev.Kind == conntrack.EventDestroy {
		if rec != nil {
			o.forget(rec)
		}
		return
	}
	if !o.offloadable(ev) {
		if rec == nil {
			return
		}
		switch rec.state {
		case stOffloaded:
			o.unoffload(rec)
			o.setState(rec, stDone)
		case stPending:
			o.forget(rec)
		}
		return
	}
	if rec == nil {
		if o.offloaded+o.pending >= o.cfg.MaxFlows {
			o.stats.Full++
			return
		}
		rec = &record{id: ev.Flow.ID, orig: ev.Flow.Original, reply: ev.Flow.Reply, timeout: o.timeoutFor(ev.Flow.Original.Proto)}
		o.recs[key] = rec
		o.setState(rec, stPending)
	}
	if d := now + ev.Flow.Timeout; d > rec.kernelDeadline {
		rec.kernelDeadline = d
	}
	switch rec.state {
	case stPending:
		o.tryOffload(ctx, now, rec)
	case stDone:
		// Offloadable again (seen in a resync after a restart, say).
		o.setState(rec, stPending)
		o.tryOffload(ctx, now, rec)
	}
}

func (o *engine) timeoutFor(proto uint8) time.Duration {
	if proto == bpf.ProtoTCP {
		return o.cfg.TCPTimeout
	}
	return o.cfg.UDPTimeout
}

// tryOffload resolves both directions' paths and writes them; on failure
// the record stays pending and is retried after RetryInterval.
func (o *engine) tryOffload(ctx context.Context, now time.Duration, rec *record) {
	keys, acts, err := o.entries(ctx, now, rec)
	if err != nil {
		o.stats.PathErrors++
		rec.retryAt = now + o.cfg.RetryInterval
		o.log.Debug("conntrack offload: not offloading yet", "flow", rec.orig.String(), "err", err)
		return
	}
	if err := o.put(keys, acts); err != nil {
		o.stats.MapErrors++
		rec.retryAt = now + o.cfg.RetryInterval
		o.log.Warn("conntrack offload: flow map write failed", "flow", rec.orig.String(), "err", err)
		return
	}
	rec.keys, rec.acts = keys, acts
	rec.resolvedAt = now
	rec.lastSeen = now
	rec.lastPackets = [2]uint64{}
	rec.fast = [2]bpf.FlowStats{}
	o.byKey[keys[0]] = rec
	o.byKey[keys[1]] = rec
	o.setState(rec, stOffloaded)
	o.stats.Offloads++
}

// setState moves rec to st (0: being forgotten), keeping the offloaded and
// pending counts, and publishes its counters.
func (o *engine) setState(rec *record, st recState) {
	switch rec.state {
	case stOffloaded:
		o.offloaded--
	case stPending:
		o.pending--
	}
	switch st {
	case stOffloaded:
		o.offloaded++
	case stPending:
		o.pending++
	}
	rec.state = st
	o.publish(rec)
}

// entries computes both map entries of a connection:
//
//	original: Original.Src → Original.Dst  becomes  Reply.Dst → Reply.Src
//	reply:    Reply.Src → Reply.Dst        becomes  Original.Dst → Original.Src
//
// which is SNAT out / un-SNAT back for a private host's flow and DNAT in /
// un-DNAT back for a port forward. The kernel routes the original
// direction from Original.Src to Reply.Src (after DNAT, before SNAT) and
// the reply direction from Reply.Src to Original.Src.
func (o *engine) entries(ctx context.Context, now time.Duration, rec *record) ([2]bpf.FlowKey, [2]bpf.FlowAction, error) {
	var keys [2]bpf.FlowKey
	var acts [2]bpf.FlowAction
	po, err := o.path(ctx, now, rec.orig.Src.Addr(), rec.reply.Src.Addr())
	if err != nil {
		return keys, acts, err
	}
	pr, err := o.path(ctx, now, rec.reply.Src.Addr(), rec.orig.Src.Addr())
	if err != nil {
		return keys, acts, err
	}
	if in := max(po.InIfindex, pr.InIfindex); in > bpf.MaxIfindex {
		// Beyond what the fast path's key holds: such flows stay on
		// the slow path (a path error, retried quietly).
		return keys, acts, fmt.Errorf("flow %s: ingress ifindex %d above %d, the fast path's limit", rec.orig, in, bpf.MaxIfindex)
	}
	proto := rec.orig.Proto
	keys[0] = bpf.FlowKey{Ifindex: po.InIfindex, Proto: proto, Src: rec.orig.Src, Dst: rec.orig.Dst}
	acts[0] = bpf.FlowAction{NewSrc: rec.reply.Dst, NewDst: rec.reply.Src, EgressIfindex: po.OutIfindex, SrcMAC: po.SrcMAC, DstMAC: po.DstMAC, MTU: po.MTU}
	keys[1] = bpf.FlowKey{Ifindex: pr.InIfindex, Proto: proto, Src: rec.reply.Src, Dst: rec.reply.Dst}
	acts[1] = bpf.FlowAction{NewSrc: rec.orig.Dst, NewDst: rec.orig.Src, EgressIfindex: pr.OutIfindex, SrcMAC: pr.SrcMAC, DstMAC: pr.DstMAC, MTU: pr.MTU}
	// Outbound (private host → internet) is the direction whose packets
	// come from a private host: the original one of an SNAT flow, the
	// reply of a port forward. It only picks the fast path's direction
	// totals.
	acts[0].Outbound = o.filter.Private(rec.orig.Src.Addr())
	acts[1].Outbound = o.filter.Private(rec.reply.Src.Addr())
	if keys[0] == keys[1] {
		return keys, acts, fmt.Errorf("flow %s: both directions have the same key", rec.orig)
	}
	return keys, acts, nil
}

// path resolves through a short-lived cache: a connection storm between
// the same hosts resolves each pair once per pathCacheTTL. Failures are
// cached for RetryInterval/2 so one unresolved next hop does not cost a
// netlink round trip per flow.
func (o *engine) path(ctx context.Context, now time.Duration, src, dst netip.Addr) (Path, error) {
	k := pathKey{src, dst}
	if c, ok := o.cache[k]; ok {
		ttl := pathCacheTTL
		if c.err != nil {
			ttl = o.cfg.RetryInterval / 2
		}
		if now-c.at < ttl {
			return c.p, c.err
		}
	}
	p, err := o.paths.Resolve(ctx, src, dst)
	if len(o.cache) >= pathCacheMax {
		clear(o.cache)
	}
	o.cache[k] = cachedPath{p: p, err: err, at: now}
	return p, err
}

// put writes both directions, or neither.
func (o *engine) put(keys [2]bpf.FlowKey, acts [2]bpf.FlowAction) error {
	if err := o.fm.PutFlow(keys[0], acts[0]); err != nil {
		return err
	}
	if err := o.fm.PutFlow(keys[1], acts[1]); err != nil {
		if derr := o.fm.DeleteFlow(keys[0]); derr != nil && !errors.Is(derr, bpf.ErrFlowNotFound) {
			return errors.Join(err, derr)
		}
		return err
	}
	return nil
}

// unoffload deletes the connection's map entries and folds their counters
// into the record; the caller then sets its state.
func (o *engine) unoffload(rec *record) {
	if rec.state != stOffloaded {
		return
	}
	for i, k := range rec.keys {
		// The entry's final counters, newer than the last sweep's.
		if _, st, err := o.fm.LookupFlow(k); err == nil && st.Packets >= rec.fast[i].Packets {
			rec.fast[i] = st
		}
		if err := o.fm.DeleteFlow(k); err != nil && !errors.Is(err, bpf.ErrFlowNotFound) {
			o.stats.MapErrors++
			o.log.Warn("conntrack offload: flow map delete failed", "flow", rec.orig.String(), "err", err)
		}
		rec.folded[i].Packets += rec.fast[i].Packets
		rec.folded[i].Bytes += rec.fast[i].Bytes
		if o.byKey[k] == rec {
			delete(o.byKey, k)
		}
	}
	rec.fast = [2]bpf.FlowStats{}
	o.stats.Removals++
}

// forget drops the record (the kernel entry is gone).
func (o *engine) forget(rec *record) {
	o.unoffload(rec)
	o.setState(rec, 0) // unpublishes it
	delete(o.recs, rec.orig)
}

package ha

import "time"

// round is what one evaluation knows of the two nodes.
type round struct {
	now   time.Time
	alive bool // the peer's heartbeats arrive
	elig  bool // … and it is healthy and not in maintenance
	self  bool // this node is healthy and not in maintenance
	// inGrace: the start grace, before the peer was ever heard; nothing
	// is taken from it yet.
	inGrace bool
}

// facts are what one round knows of one table.
type facts struct {
	selfObs          bool // last seen pointing at this node, since the peer last claimed it (seenHere)
	peerOwns         bool // the live peer claims it
	peerWants        bool // the live peer asks for it
	recentlyReleased bool // this node released it less than GiveTimeout ago
}

// evaluate applies the rules (docs/ARCHITECTURE.md, "The HA rules") to the
// current inputs, in steps: the peer's edges, then for each table its
// timers and a decision, decideHeld for a table this node claims and
// decideFree for one it does not.
func (e *Engine) evaluate(now time.Time) {
	r := round{now: now, alive: e.peerAlive(now), elig: e.peerEligible(now), self: e.eligible(),
		inGrace: e.cfg.Peer && !e.graceOver && e.peer.msg == nil && now.Sub(e.start) < e.cfg.DeadAfter}
	e.peerEdges(r)
	for _, t := range e.sorted() {
		f := e.factsOf(t, r)
		e.expire(t, r, f)
		switch {
		case t.claim != claimNone:
			if why, handOff := e.decideHeld(t, r, f); why.Kind != ReasonNone {
				e.release(t, now, why)
				if handOff {
					e.offer(t, now)
				}
			}
		case !r.inGrace:
			if why, seen := e.decideFree(t, r, f); why.Kind != ReasonNone {
				e.claimFree(t, now, why, seen)
			}
		}
	}
	e.updateWants(now, r.alive, r.elig)
}

func (e *Engine) factsOf(t *tableState, r round) facts {
	return facts{
		selfObs:          e.seenHere(t),
		peerOwns:         r.alive && e.peerHas(owned, t.id),
		peerWants:        r.alive && e.peerHas(wanted, t.id),
		recentlyReleased: !t.releasedAt.IsZero() && r.now.Sub(t.releasedAt) < e.cfg.GiveTimeout,
	}
}

// peerEdges takes the tables once when the peer dies, or when it turns
// unhealthy or goes into maintenance while this node is healthy; never
// again while it stays so.
func (e *Engine) peerEdges(r round) {
	if r.inGrace {
		return
	}
	e.graceOver = true
	switch {
	case e.prevAlive && !r.alive:
		if e.peer.msg != nil {
			e.log.Info("peer dead", "last_heartbeat", e.peer.at.Format("15:04:05.000"),
				"dead_after", e.cfg.DeadAfter, "late", r.now.Sub(e.peer.at.Add(e.cfg.DeadAfter)))
		}
		// Even in maintenance: availability first when the peer is gone.
		e.takeAll(r.now, e.deathReason(), !e.cfg.Peer)
	case e.prevEligible && r.alive && !r.elig && e.healthy:
		e.takeAll(r.now, Reason{Kind: ReasonPeerIneligible, Detail: e.peerState(r.now)}, false)
	}
	e.prevAlive, e.prevEligible = r.alive, r.elig
}

// deathReason is why the tables are taken when the peer is not alive.
func (e *Engine) deathReason() Reason {
	switch {
	case !e.cfg.Peer:
		return Reason{Kind: ReasonSingle}
	case e.peer.msg == nil:
		return Reason{Kind: ReasonPeerNeverHeard, Detail: e.cfg.DeadAfter.String()}
	}
	return Reason{Kind: ReasonPeerDead, Detail: e.cfg.DeadAfter.String()}
}

// expire ends t's offer once the peer took it or the offer timed out, and
// an operator takeover the peer did not answer in time.
func (e *Engine) expire(t *tableState, r round, f facts) {
	if !t.offeredAt.IsZero() && f.peerOwns && e.peer.msg.Ack >= t.offerSeq {
		e.setOffered(t, time.Time{}) // the peer took it
	}
	if !t.offeredAt.IsZero() && r.now.Sub(t.offeredAt) >= e.cfg.GiveTimeout {
		e.setOffered(t, time.Time{})
		e.log.Warn("route table handed to the peer was not taken in time", "route_table", t.id, "timeout", e.cfg.GiveTimeout)
		e.counters.GiveTimeouts++
	}
	if !t.opWantAt.IsZero() && r.now.Sub(t.opWantAt) >= e.cfg.OpTimeout {
		t.opWantAt = time.Time{}
		e.log.Warn("operator takeover: the peer did not release the route table in time", "route_table", t.id, "timeout", e.cfg.OpTimeout)
		e.counters.TakeoverTimeouts++
	}
}

// decideHeld decides a table this node claims: why to release it (the
// zero Reason: keep it), and whether it is handed to the peer (offered)
// rather than released to the peer's handshake.
func (e *Engine) decideHeld(t *tableState, r round, f facts) (why Reason, handOff bool) {
	switch {
	case !r.self && r.elig:
		if !e.healthy {
			return Reason{Kind: ReasonUnhealthy, Detail: e.healthReason}, true
		}
		return Reason{Kind: ReasonMaintenance}, true
	case r.elig && f.peerWants && e.peer.msg.Ack >= t.claimSeq:
		// The peer saw our claim and still asks for it.
		return Reason{Kind: ReasonPeerAsked}, false
	}
	return Reason{}, false
}

// decideFree decides a table this node does not claim: why to claim it
// (the zero Reason: leave it), and whether it is seen pointing here
// already (then it is held at once, nothing to write).
func (e *Engine) decideFree(t *tableState, r round, f facts) (why Reason, seen bool) {
	switch {
	case e.maintenance && r.elig:
		// Stay backup while the peer can carry the traffic.
	case e.offerStands(t, r):
		return Reason{Kind: ReasonPeerHandedOver, Detail: e.peerHandReason()}, false
	case e.handshakeDone(t, r, f):
		return e.handshakeReason(t), false
	case e.unclaimed(t, r, f):
		return e.unclaimedReason(t, r.now), false
	case !r.alive && t.changes == 0 && (t.home || e.cfg.Peer):
		// Found after the start (discovery): nobody can have it.
		if !e.cfg.Peer {
			return Reason{Kind: ReasonSingle}, false
		}
		return Reason{Kind: ReasonDiscovered, Detail: e.peerState(r.now)}, false
	case e.blackholed(t, r, f):
		return Reason{Kind: ReasonBlackhole, Detail: t.obs.Target}, false
	case e.pointsHere(t, r, f):
		return Reason{Kind: ReasonPointsHere}, true
	}
	return Reason{}, false
}

// claimFree claims a table decideFree chose.
func (e *Engine) claimFree(t *tableState, now time.Time, why Reason, seen bool) {
	if seen {
		e.claimObserved(t, now, why)
		return
	}
	e.claim(t, now, why)
}

// offerStands: the live peer offers t to this node, which can serve it,
// and made the offer after it saw our last release (not a stale one from
// before).
func (e *Engine) offerStands(t *tableState, r round) bool {
	return r.alive && e.peerHas(offered, t.id) && r.self && e.peer.msg.Ack >= t.releaseSeq
}

// handshakeDone: this node asked for t (preempt or operator takeover),
// the peer saw the ask and no longer claims it. When both ask, the lower
// node id takes it.
func (e *Engine) handshakeDone(t *tableState, r round, f facts) bool {
	return e.wants(t, r.now, r.alive, r.elig) && r.alive && e.peer.msg.Ack >= t.wantSeq && t.wantSeq != 0 && !f.peerOwns &&
		(!f.peerWants || e.cfg.NodeID < e.peer.msg.NodeID)
}

// unclaimed: the live peer neither claims nor asks for t, nor is it on
// offer or just released, and this node should serve it: a home table
// while it is eligible, any table while the peer is not.
func (e *Engine) unclaimed(t *tableState, r round, f facts) bool {
	return r.alive && !f.peerOwns && !f.peerWants && t.offeredAt.IsZero() && (r.self && t.home || e.healthy && !r.elig) && !f.recentlyReleased
}

func (e *Engine) unclaimedReason(t *tableState, now time.Time) Reason {
	switch {
	case t.wantSeq != 0:
		return e.handshakeReason(t)
	case !t.home:
		return Reason{Kind: ReasonUnclaimedPeer, Detail: e.peerState(now)}
	}
	return Reason{Kind: ReasonUnclaimedHome}
}

// blackholed: t points at a stopped instance (not this node) while the
// peer is not alive.
func (e *Engine) blackholed(t *tableState, r round, f facts) bool {
	return !r.alive && t.observed && t.obs.Blackhole && t.obs.Target != e.cfg.ENI && (t.home || e.cfg.Peer) && !f.recentlyReleased
}

// pointsHere: t already points at this node, which may serve it, and the
// peer neither claims nor asks for it.
func (e *Engine) pointsHere(t *tableState, r round, f facts) bool {
	return f.selfObs && t.offeredAt.IsZero() && !f.peerOwns && !f.peerWants && (r.self || !r.elig && e.healthy) && !f.recentlyReleased
}

func (e *Engine) handshakeReason(t *tableState) Reason {
	if !t.opWantAt.IsZero() {
		return Reason{Kind: ReasonTakeoverReleased}
	}
	return Reason{Kind: ReasonPreemptReleased, Detail: e.cfg.HoldDown.String()}
}

// wants reports whether this node asks the peer for t now.
func (e *Engine) wants(t *tableState, now time.Time, alive, elig bool) bool {
	if t.claim != claimNone || !alive || !e.eligible() {
		return false
	}
	if !t.opWantAt.IsZero() {
		return true
	}
	if !e.cfg.Preempt || !t.home || !e.peerHas(owned, t.id) {
		return false
	}
	since := e.healthySince
	if e.peer.aliveSince.After(since) {
		since = e.peer.aliveSince
	}
	if t.holdFrom.After(since) {
		since = t.holdFrom
	}
	return now.Sub(since) >= e.cfg.HoldDown
}

func (e *Engine) updateWants(now time.Time, alive, elig bool) {
	for _, t := range e.tables {
		switch {
		case !e.wants(t, now, alive, elig):
			e.setWant(t, 0)
		case t.wantSeq == 0:
			e.setWant(t, e.seq+1)
		}
	}
}

// peerHandReason is why the peer handed a table over.
func (e *Engine) peerHandReason() string {
	if e.peer.msg != nil && e.peer.msg.Maintenance {
		return "peer in maintenance"
	}
	if e.peer.msg != nil && !e.peer.msg.Healthy {
		return "peer unhealthy: " + e.peer.msg.Reason
	}
	return "operator failover on the peer"
}

// takeAll claims every table not claimed yet. homeOnly limits it to home
// tables (a lone node does not touch other AZs' tables).
func (e *Engine) takeAll(now time.Time, reason Reason, homeOnly bool) {
	for _, t := range e.sorted() {
		if homeOnly && !t.home {
			continue
		}
		if e.peer.msg != nil && t.lostAt.After(e.peer.at) {
			// The peer took it after its last heartbeat reached us: it
			// is alive behind a partition, not dead. Not taking it back.
			continue
		}
		e.claimObserved(t, now, reason)
	}
}

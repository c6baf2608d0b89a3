package flowsync

import (
	"sync/atomic"
	"time"
)

// Status is one side's sync state, for hanatctl status and Prometheus.
type Status struct {
	Connected bool
	Peer      string // the peer's address
	// Flows the peer holds as far as this sender knows (Sender), or the
	// peer's flows held here (Receiver).
	Flows int
	// Lag (Sender) is the time from the oldest change in the last
	// acknowledged frame being handed to the sender to the peer's
	// acknowledgement of it; 0 until one is acknowledged.
	Lag time.Duration
	// LastFullSync is when the last snapshot was sent (Sender) or
	// completed (Receiver); zero before the first.
	LastFullSync time.Time
	Snapshots    uint64 // snapshots sent or completed
	Counters     Counters
}

// Counters count what went wrong. Every dropped message is counted under
// one reason; none of them reaches the held flows.
type Counters struct {
	NotPeer    uint64 // connections from an address that is not the peer's, closed
	Handshake  uint64 // sessions that failed their handshake (bad hello, wrong protocol version)
	AuthFailed uint64 // messages that do not authenticate: another key, forged, damaged or of another session
	Replayed   uint64 // authentic messages whose sequence was already passed
	Malformed  uint64 // authentic frames that do not decode or break the protocol
	Lost       uint64 // sequences skipped: messages lost (each gap asks for a snapshot)
	QueueDrops uint64 // changes the sender's queue had no room for (each run forces a snapshot)
	Resyncs    uint64 // snapshots asked for by the receiver or forced by drops
	Sessions   uint64 // sessions established
	Failures   uint64 // sessions that ended in an error (dial, I/O, silence)
}

// counters is Counters updated from several goroutines.
type counters struct {
	notPeer, handshake, authFailed, replayed, malformed, lost, queueDrops, resyncs, sessions, failures atomic.Uint64
}

func (c *counters) snapshot() Counters {
	return Counters{
		NotPeer: c.notPeer.Load(), Handshake: c.handshake.Load(), AuthFailed: c.authFailed.Load(),
		Replayed: c.replayed.Load(), Malformed: c.malformed.Load(), Lost: c.lost.Load(),
		QueueDrops: c.queueDrops.Load(), Resyncs: c.resyncs.Load(), Sessions: c.sessions.Load(),
		Failures: c.failures.Load(),
	}
}

// Errors are the counters of trouble by name, those above zero: what
// hanatctl status and the metrics show per stream.
func (c Counters) Errors() map[string]uint64 {
	out := map[string]uint64{}
	for name, v := range map[string]uint64{"not_peer": c.NotPeer, "handshake": c.Handshake, "auth_failed": c.AuthFailed,
		"replayed": c.Replayed, "malformed": c.Malformed, "lost": c.Lost, "queue_drops": c.QueueDrops, "failures": c.Failures} {
		if v > 0 {
			out[name] = v
		}
	}
	return out
}

// Package metrics exports what hanat does under the names operators know
// from the AWS NAT gateway: a Prometheus endpoint (loopback by default)
// and, optionally, CloudWatch metrics with the NAT gateway's own metric
// names, so existing dashboards and alarms port over.
//
// The package reads nothing itself: the daemon hands it a Source that
// returns a Snapshot of its counters (conntrack, nftables, fast path, HA),
// called on every scrape and every CloudWatch period.
package metrics

import (
	"context"
	"time"
)

// Snapshot is one reading of the daemon's counters. Fields named Total
// (and the byte/packet/drop counters) are cumulative since hanatd started
// and only grow; the others are current values. The direction names are
// the NAT gateway's:
//
//	source      — the private hosts the NAT works for (conntrack's original
//	              direction starts there)
//	destination — the hosts on the internet they talk to
//
// so a download by a private host is BytesInFromDestination (received by
// the NAT) then BytesOutToSource (sent on to the host).
type Snapshot struct {
	// ActiveConnections is the number of NATed flows (TCP, UDP, ICMP) in
	// the conntrack table now.
	ActiveConnections uint64
	// ActiveConnectionsAge is how old that count is: hanatd counts the
	// table periodically (conntrack.Census), never per scrape; < 0 when
	// there is no count yet (the gauge is then left out).
	ActiveConnectionsAge time.Duration
	// ConnectionAttempts counts flows the NAT has seen start (a private
	// host's first packet: TCP SYN, first UDP datagram, ICMP echo).
	ConnectionAttempts uint64
	// ConnectionsEstablished counts flows that got an answer (TCP
	// handshake completed, UDP/ICMP reply seen).
	ConnectionsEstablished uint64

	BytesOutToDestination    uint64
	BytesOutToSource         uint64
	BytesInFromDestination   uint64
	BytesInFromSource        uint64
	PacketsOutToDestination  uint64
	PacketsOutToSource       uint64
	PacketsInFromDestination uint64
	PacketsInFromSource      uint64

	// PortAllocationErrors counts flows that could not get a free SNAT
	// source port (the NAT gateway's ErrorPortAllocation). hanatd reads
	// the kernel's conntrack insert_failed, which counts since boot, not
	// since hanatd started.
	PortAllocationErrors uint64
	// IdleTimeouts counts established flows that were removed because they
	// were idle longer than their timeout (the NAT gateway's
	// IdleTimeoutCount: 350 s for TCP).
	IdleTimeouts uint64
	// PacketsDropped counts dropped packets by reason, e.g. "invalid"
	// (conntrack invalid), "unsolicited" (inbound nobody asked for),
	// "not_private" (source outside the private CIDRs), "host_input". The
	// NAT gateway's PacketsDropCount is their sum.
	PacketsDropped map[string]uint64

	// Fastpath is the XDP fast path; nil when it is off.
	Fastpath *FastpathSnapshot
	// HA is the heartbeat pair; nil when no peer is configured.
	HA *HASnapshot
}

// FastpathSnapshot is the XDP fast path's counters.
type FastpathSnapshot struct {
	// Hits counts packets the XDP program forwarded itself; Misses the
	// packets it passed to the kernel's slow path.
	Hits   uint64
	Misses uint64
	// OffloadedFlows is the number of flows in the fast-path map now.
	OffloadedFlows uint64
	// Backends is the backend on each interface and why.
	Backends []FastpathBackend
}

// FastpathBackend is the fast path's backend on one interface: native,
// generic, tc or off, and the reason (why tc and not native XDP, why off).
type FastpathBackend struct {
	Interface, Backend, Reason string
}

// HASnapshot is the heartbeat pair's state.
type HASnapshot struct {
	// Role is this node's role: "active" (owns every table), "standby"
	// (owns none), "active-active" (owns its home tables) or whatever the
	// HA state machine calls it; exported as a label.
	Role string
	// RouteTables is every route table the pair manages: true when this
	// node owns it (the table's 0.0.0.0/0 points at this node's ENI).
	RouteTables map[string]bool
	// Failovers counts the route tables this node took over or gave away.
	Failovers uint64
	// PeerAlive is whether the peer's heartbeats arrive.
	PeerAlive bool
	// HeartbeatAge is the time since the last valid heartbeat from the
	// peer (0 when none was ever received: see PeerAlive).
	HeartbeatAge time.Duration
	// HeartbeatsReceived and HeartbeatsMissed count the peer's heartbeats
	// (missed: expected by their sequence numbers but never arrived);
	// HeartbeatsRejected counts those dropped as unauthenticated,
	// replayed, stale or malformed.
	HeartbeatsReceived uint64
	HeartbeatsMissed   uint64
	HeartbeatsRejected uint64
	// Sync is the state sync with the peer; nil when it is off.
	Sync *SyncSnapshot
}

// SyncSnapshot is the pair's state sync: this node's flows sent to the
// peer and the peer's held here for a takeover.
type SyncSnapshot struct {
	SentConnected, HeldConnected bool
	FlowsSent, FlowsHeld         int
	// Lag is the sender's lag (a change to its acknowledgement).
	Lag time.Duration
	// LastFullSync is when the peer's last snapshot arrived (zero: none).
	LastFullSync time.Time
	// Errors counts dropped sync messages and failed sessions by reason,
	// both directions.
	Errors map[string]uint64
	// Injected counts the flows the last takeover put in the kernel.
	Injected int
}

// Source returns the daemon's current Snapshot. It is called on every
// scrape and CloudWatch period with a deadline in ctx.
type Source func(ctx context.Context) (Snapshot, error)

// packetsDropped is the sum of PacketsDropped (the NAT gateway's
// PacketsDropCount).
func (s *Snapshot) packetsDropped() uint64 {
	var n uint64
	for _, v := range s.PacketsDropped {
		n += v
	}
	return n
}

package ha

import (
	"fmt"
	"strings"
)

// ReasonKind is why this node claimed or released a route table.
type ReasonKind int

const (
	// ReasonNone: no change.
	ReasonNone ReasonKind = iota

	// Claims when the peer goes (peerEdges).

	// ReasonPeerDead: no heartbeat for DeadAfter (Detail).
	ReasonPeerDead
	// ReasonPeerNeverHeard: no heartbeat since start, for DeadAfter (Detail).
	ReasonPeerNeverHeard
	// ReasonSingle: no peer configured; the node owns its home tables.
	ReasonSingle
	// ReasonPeerIneligible: the peer turned unhealthy or went into
	// maintenance (Detail: the peer's state).
	ReasonPeerIneligible

	// Claims of a table this node does not claim (decideFree), or by an
	// operator takeover.

	// ReasonPeerHandedOver: the peer offered it (Detail: why it did).
	ReasonPeerHandedOver
	// ReasonPreemptReleased: the preempt handshake after the hold-down
	// (Detail) ended with the peer's release.
	ReasonPreemptReleased
	// ReasonTakeoverReleased: the operator takeover handshake ended with
	// the peer's release.
	ReasonTakeoverReleased
	// ReasonUnclaimedHome: no node claims this home table.
	ReasonUnclaimedHome
	// ReasonUnclaimedPeer: no node claims it and the peer cannot (Detail:
	// the peer's state).
	ReasonUnclaimedPeer
	// ReasonDiscovered: found after the start while the peer is not alive
	// (Detail: the peer's state). A single instance's is ReasonSingle.
	ReasonDiscovered
	// ReasonBlackhole: it points at a stopped instance (Detail: its
	// target) while the peer is not alive.
	ReasonBlackhole
	// ReasonPointsHere: it already points at this node.
	ReasonPointsHere
	// ReasonTakeoverPeerDead: an operator takeover while the peer is not
	// alive.
	ReasonTakeoverPeerDead

	// Releases (decideHeld, Observe, Failover).

	// ReasonTaken: it now points elsewhere (Detail: the target): taken by
	// the peer or an operator.
	ReasonTaken
	// ReasonMaintenance: maintenance is on; handed to the healthy peer.
	ReasonMaintenance
	// ReasonUnhealthy: this node is unhealthy (Detail: why); handed to
	// the healthy peer.
	ReasonUnhealthy
	// ReasonPeerAsked: the peer saw our claim and still asks for it.
	ReasonPeerAsked
	// ReasonFailover: an operator failover (Detail: the caller's words).
	ReasonFailover
)

// Reason is why a table changed hands on this node: a kind, and the value
// its text embeds.
type Reason struct {
	Kind   ReasonKind
	Detail string
}

// reasonText is each kind's text as logs and the admin socket show it;
// %s is the Detail.
var reasonText = [...]string{
	ReasonPeerDead:         "peer dead: no heartbeat for %s",
	ReasonPeerNeverHeard:   "no heartbeat from the peer since start (%s)",
	ReasonSingle:           "single instance (no peer configured): owning the home tables",
	ReasonPeerIneligible:   "peer %s",
	ReasonPeerHandedOver:   "peer handed it over (%s)",
	ReasonPreemptReleased:  "preempt after hold-down %s: peer released it",
	ReasonTakeoverReleased: "operator takeover: peer released it",
	ReasonUnclaimedHome:    "no node claims it; home table",
	ReasonUnclaimedPeer:    "no node claims it; peer %s",
	ReasonDiscovered:       "peer %s",
	ReasonBlackhole:        "route table points at %s, a stopped instance (blackhole)",
	ReasonPointsHere:       "route table already points at this node",
	ReasonTakeoverPeerDead: "operator takeover (peer not alive)",
	ReasonTaken:            "route table now points at %s: taken by the peer or an operator; not taking it back",
	ReasonMaintenance:      "maintenance on: handing to the healthy peer",
	ReasonUnhealthy:        "unhealthy (%s): handing to the healthy peer",
	ReasonPeerAsked:        "peer asked for it (handshake: preempt after hold-down, or operator takeover)",
	ReasonFailover:         "%s",
}

// String is the reason as logs and the admin socket show it ("" for
// ReasonNone).
func (r Reason) String() string {
	if r.Kind < 0 || int(r.Kind) >= len(reasonText) {
		return fmt.Sprintf("reason %d (%s)", int(r.Kind), r.Detail)
	}
	text := reasonText[r.Kind]
	before, after, ok := strings.Cut(text, "%s")
	if !ok {
		return text
	}
	return before + r.Detail + after
}

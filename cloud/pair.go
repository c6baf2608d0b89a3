package cloud

import (
	"context"
	"fmt"
	"net/netip"
)

// PairEIPs are the Elastic IPs of a pair's two zones (allocation ids, ""
// while unknown): Home is the EIP of this node's zone, Peer the EIP of
// its peer's.
type PairEIPs struct {
	Home string `json:"home,omitempty"`
	Peer string `json:"peer,omitempty"`
}

// StandbyIP is the address of an ENI that stands by for the peer's EIP:
// its first secondary private IP (invalid: none).
func StandbyIP(e ENIInfo) netip.Addr {
	if len(e.PrivateIPs) < 2 {
		return netip.Addr{}
	}
	return e.PrivateIPs[1]
}

// ClassifyPairEIPs tells the zones' EIPs of a pair apart from where EC2
// shows them associated, with no configuration and no tags. The rule
// hanat keeps is that a node's primary private IP carries its own zone's
// EIP and its standby address (StandbyIP) carries the peer's while it
// serves the peer's tables. So this node's zone's EIP is the one on its
// primary IP or, after a failover, the one on the peer's standby
// address; and the peer's is the one on the peer's primary IP or on this
// node's standby address. The primary IP wins when both are associated
// (an association in flight). peer is the zero ENIInfo while the peer's
// ENI is unknown. Auto-assigned public IPs cannot move and are never a
// zone's EIP.
func ClassifyPairEIPs(self, peer ENIInfo) PairEIPs {
	var out PairEIPs
	first := func(e ENIInfo, ip netip.Addr) string {
		if !ip.IsValid() {
			return ""
		}
		for _, a := range e.Associations {
			if a.PrivateIP == ip && a.AllocationID != "" {
				return a.AllocationID
			}
		}
		return ""
	}
	primary := func(e ENIInfo) netip.Addr {
		if len(e.PrivateIPs) == 0 {
			return netip.Addr{}
		}
		return e.PrivateIPs[0]
	}
	if out.Home = first(self, primary(self)); out.Home == "" {
		out.Home = first(peer, StandbyIP(peer))
	}
	if out.Peer = first(peer, primary(peer)); out.Peer == "" {
		out.Peer = first(self, StandbyIP(self))
	}
	if out.Peer == out.Home {
		out.Peer = ""
	}
	return out
}

// PairEIPs describes this node's ENI and its peer's ("": not known yet)
// and classifies the zones' EIPs (ClassifyPairEIPs).
func (c *EC2) PairEIPs(ctx context.Context, eniID, peerENI string) (PairEIPs, error) {
	self, err := c.ENI(ctx, eniID)
	if err != nil {
		return PairEIPs{}, fmt.Errorf("find the pair's EIPs: %w", err)
	}
	var peer ENIInfo
	if peerENI != "" {
		if peer, err = c.ENI(ctx, peerENI); err != nil {
			return PairEIPs{}, fmt.Errorf("find the pair's EIPs: peer: %w", err)
		}
	}
	return ClassifyPairEIPs(self, peer), nil
}

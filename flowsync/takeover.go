package flowsync

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/hanat/hanat/conntrack"
)

// Takeover turns the peer's held flows into the entries this node injects
// when it takes the peer's traffic over. The peer's SNAT address is a
// private IP of another AZ, which cannot move; its EIP moves to an
// address of this node instead, so each flow's NAT address is rewritten
// to that address, its port kept: the translated tuple the internet sees
// (EIP and port) stays the same.
//
// What the peer sent is checked, not trusted: a flow is refused unless its
// private side is inside PrivateCIDRs and its NAT address is one of the
// peer's SNAT addresses (a key of Addrs). A confused or compromised peer
// cannot make this node NAT traffic of arbitrary addresses.
type Takeover struct {
	// PrivateCIDRs are the pair's private subnets.
	PrivateCIDRs []netip.Prefix
	// Addrs maps each of the peer's SNAT addresses to the address of this
	// node that carries its EIP.
	Addrs map[netip.Addr]netip.Addr
}

// TakeoverResult is what Rewrite produced.
type TakeoverResult struct {
	Flows   []conntrack.Flow // to inject, each original tuple once
	Refused int
	// FirstRefusal says why the first refused flow was refused.
	FirstRefusal error
}

// minInjectTimeout is the least time an injected entry gets: a flow held
// with less left is given this much, so that the redirected traffic can
// refresh it.
const minInjectTimeout = 10 * time.Second

// Rewrite checks and rewrites held flows (Receiver.Held) for injection.
func (t Takeover) Rewrite(held []conntrack.Flow) TakeoverResult {
	var res TakeoverResult
	seen := make(map[conntrack.Tuple]struct{}, len(held))
	for _, f := range held {
		out, err := t.rewrite(f)
		if err == nil {
			if _, dup := seen[out.Original]; dup {
				err = fmt.Errorf("original tuple held twice")
			}
		}
		if err != nil {
			if res.Refused == 0 {
				res.FirstRefusal = fmt.Errorf("flow %s: %w", f.Original, err)
			}
			res.Refused++
			continue
		}
		seen[out.Original] = struct{}{}
		res.Flows = append(res.Flows, out)
	}
	return res
}

func (t Takeover) rewrite(f conntrack.Flow) (conntrack.Flow, error) {
	r, err := recordOf(f)
	if err != nil {
		return conntrack.Flow{}, err
	}
	switch {
	case f.SNAT && !f.DNAT:
		// private host → internet: the reply comes from where the
		// original went, to the NAT address.
		if !t.private(f.Original.Src.Addr()) {
			return conntrack.Flow{}, fmt.Errorf("source %s outside the private CIDRs", f.Original.Src.Addr())
		}
		if f.Reply.Src != f.Original.Dst {
			return conntrack.Flow{}, fmt.Errorf("reply source %s is not the original destination", f.Reply.Src)
		}
		to, ok := t.Addrs[f.Reply.Dst.Addr()]
		if !ok {
			return conntrack.Flow{}, fmt.Errorf("NAT address %s is not one of the peer's SNAT addresses", f.Reply.Dst.Addr())
		}
		r.reply.Dst = netip.AddrPortFrom(to, f.Reply.Dst.Port())
	case f.DNAT && !f.SNAT:
		// port forward: internet → NAT address, forwarded to a private host.
		if !t.private(f.Reply.Src.Addr()) {
			return conntrack.Flow{}, fmt.Errorf("forward target %s outside the private CIDRs", f.Reply.Src.Addr())
		}
		if f.Reply.Dst != f.Original.Src {
			return conntrack.Flow{}, fmt.Errorf("reply destination %s is not the original source", f.Reply.Dst)
		}
		to, ok := t.Addrs[f.Original.Dst.Addr()]
		if !ok {
			return conntrack.Flow{}, fmt.Errorf("NAT address %s is not one of the peer's SNAT addresses", f.Original.Dst.Addr())
		}
		r.orig.Dst = netip.AddrPortFrom(to, f.Original.Dst.Port())
	default:
		return conntrack.Flow{}, fmt.Errorf("neither SNAT nor DNAT alone (SNAT %v, DNAT %v)", f.SNAT, f.DNAT)
	}
	out := r.flow()
	out.Timeout = max(out.Timeout, minInjectTimeout)
	return out, nil
}

func (t Takeover) private(a netip.Addr) bool {
	for _, p := range t.PrivateCIDRs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

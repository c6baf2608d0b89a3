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
	// ClearMark are conntrack mark bits the peer's table set that this
	// node's table sets for itself (the fast path's offload mark: left
	// set, this node's offload rule would never take the flow).
	ClearMark uint32
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
	res := TakeoverResult{Flows: make([]conntrack.Flow, 0, len(held))}
	// The original tuples seen, compact (rewrite checked them: one
	// address family each).
	seen4 := make(map[flowKey[[4]byte]]struct{}, len(held))
	seen6 := map[flowKey[[16]byte]]struct{}{}
	for i := range held {
		f := &held[i]
		out, err := t.rewrite(*f)
		if err == nil {
			var dup bool
			if o := out.Original; o.Src.Addr().Is4() {
				dup = firstTime(seen4, keyOf[[4]byte](o))
			} else {
				dup = firstTime(seen6, keyOf[[16]byte](o))
			}
			if !dup {
				err = fmt.Errorf("original tuple held twice")
			}
		}
		if err != nil {
			res.refuse(f.Original, err)
			continue
		}
		res.Flows = append(res.Flows, out)
	}
	return res
}

// refuse counts the flow with original tuple orig as refused for err.
func (res *TakeoverResult) refuse(orig conntrack.Tuple, err error) {
	if res.Refused == 0 {
		res.FirstRefusal = fmt.Errorf("flow %s: %w", orig, err)
	}
	res.Refused++
}

// firstTime adds k to seen and reports whether it was not there.
func firstTime[A addrBytes](seen map[flowKey[A]]struct{}, k flowKey[A]) bool {
	if _, ok := seen[k]; ok {
		return false
	}
	seen[k] = struct{}{}
	return true
}

func (t Takeover) rewrite(f conntrack.Flow) (conntrack.Flow, error) {
	r, err := recordOf(f)
	if err != nil {
		return conntrack.Flow{}, err
	}
	return t.rewriteRecord(r)
}

// rewriteRecord checks and rewrites one held flow (check passed).
func (t Takeover) rewriteRecord(r record) (conntrack.Flow, error) {
	switch {
	case r.snat && !r.dnat:
		// private host → internet: the reply comes from where the
		// original went, to the NAT address.
		if !t.private(r.orig.Src.Addr()) {
			return conntrack.Flow{}, fmt.Errorf("source %s outside the private CIDRs", r.orig.Src.Addr())
		}
		if r.reply.Src != r.orig.Dst {
			return conntrack.Flow{}, fmt.Errorf("reply source %s is not the original destination", r.reply.Src)
		}
		to, ok := t.Addrs[r.reply.Dst.Addr()]
		if !ok {
			return conntrack.Flow{}, fmt.Errorf("NAT address %s is not one of the peer's SNAT addresses", r.reply.Dst.Addr())
		}
		r.reply.Dst = netip.AddrPortFrom(to, r.reply.Dst.Port())
	case r.dnat && !r.snat:
		// port forward: internet → NAT address, forwarded to a private host.
		if !t.private(r.reply.Src.Addr()) {
			return conntrack.Flow{}, fmt.Errorf("forward target %s outside the private CIDRs", r.reply.Src.Addr())
		}
		if r.reply.Dst != r.orig.Src {
			return conntrack.Flow{}, fmt.Errorf("reply destination %s is not the original source", r.reply.Dst)
		}
		to, ok := t.Addrs[r.orig.Dst.Addr()]
		if !ok {
			return conntrack.Flow{}, fmt.Errorf("NAT address %s is not one of the peer's SNAT addresses", r.orig.Dst.Addr())
		}
		r.orig.Dst = netip.AddrPortFrom(to, r.orig.Dst.Port())
	default:
		return conntrack.Flow{}, fmt.Errorf("neither SNAT nor DNAT alone (SNAT %v, DNAT %v)", r.snat, r.dnat)
	}
	out := r.flow()
	out.Timeout = max(out.Timeout, minInjectTimeout)
	out.Mark &^= t.ClearMark
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

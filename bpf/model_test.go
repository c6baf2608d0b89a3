//go:build linux

package bpf

// A pure-Go reference model of fastpath.c, for the differential fuzz test:
// the same input frame and flow table must give the same verdict, the same
// output bytes and the same counter.
//
// The model is independent of the production rewrite: it holds the flows as
// FlowKey/FlowAction (not NewFlowEntry's map layout with its precomputed
// checksum deltas), builds the key from the frame's bytes, and recomputes
// the IPv4 header checksum and the TCP/UDP checksum (with the pseudo-header)
// from scratch over the rewritten headers. A bug in the delta arithmetic
// (csum.go, NewFlowEntry) or in how fastpath.c applies the deltas makes the
// program and the model disagree.

import (
	"bytes"
	"encoding/binary"
	"net/netip"
)

const (
	xdpAborted  = 0
	xdpDrop     = 1
	xdpPass     = 2
	xdpTX       = 3
	xdpRedirect = 4
)

type modelResult struct {
	verdict uint32
	out     []byte
	counter FastpathCounterId
}

type model struct {
	flows   map[FlowKey]FlowAction
	txPorts map[uint32]bool
}

// keyOf is the flow key of a parsed IPv4 TCP/UDP packet arriving on ingress.
func keyOf(ip, l4 []byte, ingress uint32) FlowKey {
	addr := func(b []byte) netip.Addr { return netip.AddrFrom4([4]byte(b[:4])) }
	return FlowKey{
		Ifindex: ingress,
		Proto:   ip[9],
		Src:     netip.AddrPortFrom(addr(ip[12:]), binary.BigEndian.Uint16(l4[0:])),
		Dst:     netip.AddrPortFrom(addr(ip[16:]), binary.BigEndian.Uint16(l4[2:])),
	}
}

// scratchSums are the from-scratch one's-complement sums (unfolded) that
// the checksums of an IPv4 TCP/UDP packet cover, each with its checksum
// field taken as 0: the IPv4 header, and the pseudo-header plus the L4
// segment up to the IPv4 total length.
func scratchSums(ip []byte, tot int) (l3, l4 uint32) {
	hdr := bytes.Clone(ip[:20])
	hdr[10], hdr[11] = 0, 0
	seg := bytes.Clone(ip[20:tot])
	at := 6 // UDP
	if ip[9] == protoTCP {
		at = 16
	}
	seg[at], seg[at+1] = 0, 0
	return csumSum(0, hdr), csumSum(pseudoSum([4]byte(ip[12:16]), [4]byte(ip[16:20]), ip[9], len(seg)), seg)
}

// carried is the checksum field of rewritten data when the field of the
// original data was got and a from-scratch computation over the original
// data gives want: the from-scratch checksum of the new data (fresh), off
// by the same amount the input was off (0 for a correct input, so the
// result is then exactly fresh). That is what an incremental update
// (RFC 1624) must produce: it keeps whatever error the input carried and
// never repairs or hides it. Arithmetic is one's complement (mod 0xffff);
// the result is in 0..0xfffe, the representation RFC 1624's eqn. 3,
// ~(~HC + m), gives whenever the covered data changed (m != 0: the IPv4
// header always changes by the TTL decrement, the L4 data by the fixture
// flows' address and port rewrites).
func carried(got, want, fresh uint16) uint16 {
	return uint16((uint32(fresh) + uint32(got) + 0xffff - uint32(want)) % 0xffff)
}

func (m model) run(in []byte, ingress uint32) modelResult {
	pass := func(id FastpathCounterId) modelResult {
		return modelResult{verdict: xdpPass, out: bytes.Clone(in), counter: id}
	}
	if len(in) < 14 {
		return pass(FastpathCounterIdCOUNTER_PASS_PARSE)
	}
	et, off := binary.BigEndian.Uint16(in[12:]), 14
	if et == ethP8021Q {
		if len(in) < 18 {
			return pass(FastpathCounterIdCOUNTER_PASS_PARSE)
		}
		et, off = binary.BigEndian.Uint16(in[16:]), 18
	}
	if et != ethPIPv4 {
		return pass(FastpathCounterIdCOUNTER_PASS_NOT_IPV4)
	}
	if len(in) < off+20 {
		return pass(FastpathCounterIdCOUNTER_PASS_PARSE)
	}
	ip := in[off:]
	if ip[0]>>4 != 4 || ip[0]&0xf < 5 {
		return pass(FastpathCounterIdCOUNTER_PASS_PARSE)
	}
	if ip[0]&0xf != 5 {
		return pass(FastpathCounterIdCOUNTER_PASS_IP_OPTIONS)
	}
	tot := int(binary.BigEndian.Uint16(ip[2:]))
	if tot < 20 || tot > len(ip) {
		return pass(FastpathCounterIdCOUNTER_PASS_PARSE)
	}
	if binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
		return pass(FastpathCounterIdCOUNTER_PASS_FRAGMENT)
	}
	if ip[8] <= 1 {
		return pass(FastpathCounterIdCOUNTER_PASS_TTL)
	}
	l4 := ip[20:]
	csumAt := 6 // UDP
	switch ip[9] {
	case protoTCP:
		if len(l4) < 20 || tot < 40 || l4[12]>>4 < 5 {
			return pass(FastpathCounterIdCOUNTER_PASS_PARSE)
		}
		switch f := l4[13]; {
		case f&tcpRST != 0:
			return pass(FastpathCounterIdCOUNTER_PASS_RST)
		case f&tcpFIN != 0:
			return pass(FastpathCounterIdCOUNTER_PASS_FIN)
		case f&tcpSYN != 0:
			return pass(FastpathCounterIdCOUNTER_PASS_SYN)
		}
		csumAt = 16
	case protoUDP:
		if len(l4) < 8 || tot < 28 {
			return pass(FastpathCounterIdCOUNTER_PASS_PARSE)
		}
	default:
		return pass(FastpathCounterIdCOUNTER_PASS_NOT_TCP_UDP)
	}

	if ingress > MaxIfindex {
		return pass(FastpathCounterIdCOUNTER_MISS)
	}
	a, ok := m.flows[keyOf(ip, l4, ingress)]
	if !ok {
		return pass(FastpathCounterIdCOUNTER_MISS)
	}
	if tot > int(a.MTU) {
		return pass(FastpathCounterIdCOUNTER_PASS_TOO_BIG)
	}
	if a.EgressIfindex != ingress && !m.txPorts[a.EgressIfindex] {
		return pass(FastpathCounterIdCOUNTER_PASS_REDIRECT)
	}

	oldL3, oldL4 := scratchSums(ip, tot)
	l3Got := binary.BigEndian.Uint16(ip[10:])
	l4Got := binary.BigEndian.Uint16(l4[csumAt:])

	out := bytes.Clone(in)
	ip, l4 = out[off:], out[off+20:]
	src, dst := a.NewSrc.Addr().As4(), a.NewDst.Addr().As4()
	copy(ip[12:], src[:])
	copy(ip[16:], dst[:])
	ip[8]--
	binary.BigEndian.PutUint16(l4[0:], a.NewSrc.Port())
	binary.BigEndian.PutUint16(l4[2:], a.NewDst.Port())
	newL3, newL4 := scratchSums(ip, tot)

	binary.BigEndian.PutUint16(ip[10:], carried(l3Got, csumFinish(oldL3), csumFinish(newL3)))
	l4Csum := carried(l4Got, csumFinish(oldL4), csumFinish(newL4))
	if ip[9] == protoUDP {
		switch {
		case l4Got == 0: // no checksum, and fastpath.c keeps it that way
			l4Csum = 0
		case l4Csum == 0: // RFC 768: a computed 0 is sent as 0xffff
			l4Csum = 0xffff
		}
	}
	binary.BigEndian.PutUint16(l4[csumAt:], l4Csum)
	copy(out[0:6], a.DstMAC)
	copy(out[6:12], a.SrcMAC)
	verdict := uint32(xdpTX)
	if a.EgressIfindex != ingress {
		verdict = xdpRedirect
	}
	return modelResult{verdict: verdict, out: out, counter: FastpathCounterIdCOUNTER_HIT}
}

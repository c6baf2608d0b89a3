//go:build linux

package bpf

// A pure-Go reference model of fastpath.c, for the differential fuzz test:
// the same input frame and flow table must give the same verdict, the same
// output bytes and the same counter.

import (
	"bytes"
	"encoding/binary"
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
	flows   map[RawFlowKey]RawFlowValue
	txPorts map[uint32]bool
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
	k := RawFlowKey{
		Saddr:        binary.NativeEndian.Uint32(ip[12:]),
		Daddr:        binary.NativeEndian.Uint32(ip[16:]),
		Sport:        binary.NativeEndian.Uint16(l4[0:]),
		Dport:        binary.NativeEndian.Uint16(l4[2:]),
		IfindexProto: ingress<<8 | uint32(ip[9]),
	}
	v, ok := m.flows[k]
	if !ok {
		return pass(FastpathCounterIdCOUNTER_MISS)
	}
	if tot > int(v.Mtu) {
		return pass(FastpathCounterIdCOUNTER_PASS_TOO_BIG)
	}
	if v.EgressIfindex != ingress && !m.txPorts[v.EgressIfindex] {
		return pass(FastpathCounterIdCOUNTER_PASS_REDIRECT)
	}

	out := bytes.Clone(in)
	ip, l4 = out[off:], out[off+20:]
	binary.NativeEndian.PutUint32(ip[12:], v.NewSaddr)
	binary.NativeEndian.PutUint32(ip[16:], v.NewDaddr)
	ip[8]--
	binary.BigEndian.PutUint16(ip[10:], csumApply(binary.BigEndian.Uint16(ip[10:]), fromBE16(v.L3CsumDelta)))
	binary.NativeEndian.PutUint16(l4[0:], v.NewSport)
	binary.NativeEndian.PutUint16(l4[2:], v.NewDport)
	if ip[9] == protoTCP {
		binary.BigEndian.PutUint16(l4[16:], csumApply(binary.BigEndian.Uint16(l4[16:]), fromBE16(v.L4CsumDelta)))
	} else {
		binary.BigEndian.PutUint16(l4[6:], udpCsumApply(binary.BigEndian.Uint16(l4[6:]), fromBE16(v.L4CsumDelta)))
	}
	copy(out[0:6], v.DstMac[:])
	copy(out[6:12], v.SrcMac[:])
	verdict := uint32(xdpTX)
	if v.EgressIfindex != ingress {
		verdict = xdpRedirect
	}
	return modelResult{verdict: verdict, out: out, counter: FastpathCounterIdCOUNTER_HIT}
}

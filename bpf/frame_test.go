package bpf

// Hand-built Ethernet/IPv4/TCP/UDP frames for the BPF tests, with checksums
// computed from scratch (no incremental arithmetic), and a from-scratch
// checksum verifier.

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

const (
	ethPIPv4   = 0x0800
	ethPARP    = 0x0806
	ethPIPv6   = 0x86dd
	ethP8021Q  = 0x8100
	ethP8021AD = 0x88a8

	protoICMP = 1
	protoTCP  = 6
	protoUDP  = 17

	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpPSH = 0x08
	tcpACK = 0x10

	ipMF = 0x2000
)

// frameOpts describes one test frame.
type frameOpts struct {
	dstMAC, srcMAC [6]byte
	vlan           bool   // single 802.1Q tag
	vlanTCI        uint16 // PCP/DEI/VID
	ethType        uint16 // after the optional tag; 0 means IPv4
	raw            []byte // everything after the ethertype when not IPv4

	ihl      int // 0 means 5; more adds NOP options
	ttl      uint8
	proto    uint8
	fragOff  uint16 // flags and offset as on the wire (ipMF | offset/8)
	src, dst netip.AddrPort

	tcpFlags  uint8
	tcpOpts   []byte // multiple of 4 bytes
	payload   []byte
	udpNoCsum bool // send UDP checksum 0
	pad       int  // bytes after the IPv4 packet (Ethernet padding)
}

// csumSum adds b as big-endian 16-bit words to sum (odd tail zero-padded).
func csumSum(sum uint32, b []byte) uint32 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	return sum
}

// csumFinish folds sum and returns its complement, the checksum field value.
func csumFinish(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// pseudoSum is the TCP/UDP pseudo-header sum.
func pseudoSum(src, dst [4]byte, proto uint8, l4len int) uint32 {
	s := csumSum(0, src[:])
	s = csumSum(s, dst[:])
	return s + uint32(proto) + uint32(l4len)
}

// buildByHand is the hand-written encoder; build (gopacket_test.go) is
// checked against it.
func (o frameOpts) buildByHand() []byte {
	b := make([]byte, 0, 128+len(o.payload))
	b = append(b, o.dstMAC[:]...)
	b = append(b, o.srcMAC[:]...)
	if o.vlan {
		b = binary.BigEndian.AppendUint16(b, ethP8021Q)
		b = binary.BigEndian.AppendUint16(b, o.vlanTCI)
	}
	et := o.ethType
	if et == 0 {
		et = ethPIPv4
	}
	b = binary.BigEndian.AppendUint16(b, et)
	if et != ethPIPv4 {
		return append(b, o.raw...)
	}

	src, dst := o.src.Addr().As4(), o.dst.Addr().As4()
	var l4 []byte
	switch o.proto {
	case protoTCP:
		hl := 20 + len(o.tcpOpts)
		l4 = make([]byte, hl, hl+len(o.payload))
		binary.BigEndian.PutUint16(l4[0:], o.src.Port())
		binary.BigEndian.PutUint16(l4[2:], o.dst.Port())
		binary.BigEndian.PutUint32(l4[4:], 0x11223344) // seq
		binary.BigEndian.PutUint32(l4[8:], 0x55667788) // ack
		l4[12] = byte(hl/4) << 4                       // data offset
		l4[13] = o.tcpFlags                            // flags
		binary.BigEndian.PutUint16(l4[14:], 64240)     // window
		copy(l4[20:], o.tcpOpts)
		l4 = append(l4, o.payload...)
		binary.BigEndian.PutUint16(l4[16:], csumFinish(csumSum(pseudoSum(src, dst, protoTCP, len(l4)), l4)))
	case protoUDP:
		l4 = make([]byte, 8, 8+len(o.payload))
		binary.BigEndian.PutUint16(l4[0:], o.src.Port())
		binary.BigEndian.PutUint16(l4[2:], o.dst.Port())
		l4 = append(l4, o.payload...)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		if !o.udpNoCsum {
			c := csumFinish(csumSum(pseudoSum(src, dst, protoUDP, len(l4)), l4))
			if c == 0 {
				c = 0xffff
			}
			binary.BigEndian.PutUint16(l4[6:], c)
		}
	case protoICMP:
		l4 = append([]byte{8, 0, 0, 0, 0x12, 0x34, 0, 1}, o.payload...) // echo request
		binary.BigEndian.PutUint16(l4[2:], csumFinish(csumSum(0, l4)))
	default:
		l4 = append([]byte(nil), o.payload...)
	}

	ihl := o.ihl
	if ihl == 0 {
		ihl = 5
	}
	ip := make([]byte, ihl*4)
	ip[0] = 0x40 | byte(ihl)
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)+len(l4)))
	binary.BigEndian.PutUint16(ip[4:], 0xbeef) // id
	binary.BigEndian.PutUint16(ip[6:], o.fragOff)
	ip[8] = o.ttl
	ip[9] = o.proto
	copy(ip[12:], src[:])
	copy(ip[16:], dst[:])
	for i := 20; i < len(ip); i++ {
		ip[i] = 1 // NOP option
	}
	binary.BigEndian.PutUint16(ip[10:], csumFinish(csumSum(0, ip)))

	b = append(b, ip...)
	b = append(b, l4...)
	return append(b, make([]byte, o.pad)...)
}

// verifyChecksums recomputes the IPv4 and TCP/UDP checksums of a frame from
// scratch and compares them with the ones it carries. A UDP checksum of 0
// is accepted only when allowZeroUDP is set.
func verifyChecksums(frame []byte, allowZeroUDP bool) error {
	off := 14
	if len(frame) < off {
		return fmt.Errorf("frame of %d bytes has no Ethernet header", len(frame))
	}
	et := binary.BigEndian.Uint16(frame[12:])
	if et == ethP8021Q {
		off += 4
		et = binary.BigEndian.Uint16(frame[16:])
	}
	if et != ethPIPv4 {
		return fmt.Errorf("ethertype %#04x is not IPv4", et)
	}
	ip := frame[off:]
	hl := int(ip[0]&0xf) * 4
	tot := int(binary.BigEndian.Uint16(ip[2:]))
	hdr := append([]byte(nil), ip[:hl]...)
	got := binary.BigEndian.Uint16(hdr[10:])
	hdr[10], hdr[11] = 0, 0
	if want := csumFinish(csumSum(0, hdr)); got != want {
		return fmt.Errorf("IPv4 header checksum %#04x, recomputed %#04x", got, want)
	}
	var src, dst [4]byte
	copy(src[:], ip[12:16])
	copy(dst[:], ip[16:20])
	l4 := append([]byte(nil), ip[hl:tot]...)
	var at int
	switch ip[9] {
	case protoTCP:
		at = 16
	case protoUDP:
		at = 6
	default:
		return nil
	}
	got = binary.BigEndian.Uint16(l4[at:])
	if ip[9] == protoUDP && got == 0 {
		if allowZeroUDP {
			return nil
		}
		return fmt.Errorf("UDP checksum 0")
	}
	l4[at], l4[at+1] = 0, 0
	want := csumFinish(csumSum(pseudoSum(src, dst, ip[9], len(l4)), l4))
	if ip[9] == protoUDP && want == 0 {
		want = 0xffff
	}
	if got != want {
		return fmt.Errorf("L4 (proto %d) checksum %#04x, recomputed %#04x", ip[9], got, want)
	}
	return nil
}

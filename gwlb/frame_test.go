package gwlb

// Frames for the tests, built by hand with checksums from scratch.

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/hanat/hanat/geneve"
)

const (
	protoTCP = 6
	protoUDP = 17
)

var (
	macENI    = [6]byte{0x02, 0x00, 0x0a, 0x00, 0x01, 0x0a}
	macRouter = [6]byte{0x02, 0x00, 0x0a, 0x00, 0x01, 0x01}
)

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

func csumFinish(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// ipv4 returns an IPv4 packet (no options, DF clear, id 0x1234) around l4,
// whose checksum at csumAt (-1: none) it fills in over the pseudo header.
func ipv4(src, dst netip.Addr, proto uint8, ttl uint8, l4 []byte, csumAt int) []byte {
	s, d := src.As4(), dst.As4()
	if csumAt >= 0 {
		l4[csumAt], l4[csumAt+1] = 0, 0
		sum := csumSum(csumSum(csumSum(0, s[:]), d[:]), l4) + uint32(proto) + uint32(len(l4))
		c := csumFinish(sum)
		if proto == protoUDP && c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(l4[csumAt:], c)
	}
	ip := make([]byte, 20, 20+len(l4))
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
	binary.BigEndian.PutUint16(ip[4:], 0x1234)
	ip[8], ip[9] = ttl, proto
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	binary.BigEndian.PutUint16(ip[10:], csumFinish(csumSum(0, ip)))
	return append(ip, l4...)
}

func udpPacket(src, dst netip.AddrPort, payload []byte) []byte {
	l4 := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(l4[0:], src.Port())
	binary.BigEndian.PutUint16(l4[2:], dst.Port())
	binary.BigEndian.PutUint16(l4[4:], uint16(8+len(payload)))
	l4 = append(l4, payload...)
	return ipv4(src.Addr(), dst.Addr(), protoUDP, 64, l4, 6)
}

func tcpPacket(src, dst netip.AddrPort, flags uint8, payload []byte) []byte {
	return tcpSegment(src, dst, 0x11223344, 0, flags, payload)
}

// tcpSegment is a TCP segment without options.
func tcpSegment(src, dst netip.AddrPort, seq, ack uint32, flags uint8, payload []byte) []byte {
	l4 := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(l4[0:], src.Port())
	binary.BigEndian.PutUint16(l4[2:], dst.Port())
	binary.BigEndian.PutUint32(l4[4:], seq)
	binary.BigEndian.PutUint32(l4[8:], ack)
	l4[12], l4[13] = 5<<4, flags
	binary.BigEndian.PutUint16(l4[14:], 64240)
	l4 = append(l4, payload...)
	return ipv4(src.Addr(), dst.Addr(), protoTCP, 64, l4, 16)
}

// icmpEcho is an echo request (typ 8) or reply (0) with id.
func icmpEcho(src, dst netip.Addr, typ uint8, id uint16) []byte {
	l4 := []byte{typ, 0, 0, 0, 0, 0, 0, 1, 'h', 'i'}
	binary.BigEndian.PutUint16(l4[4:], id)
	binary.BigEndian.PutUint16(l4[2:], csumFinish(csumSum(0, l4)))
	return ipv4(src, dst, protoICMP, 64, l4, -1)
}

// icmpError is an ICMP error (typ, code) quoting the start of quoted.
func icmpError(src, dst netip.Addr, typ, code uint8, quoted []byte) []byte {
	l4 := append([]byte{typ, code, 0, 0, 0, 0, 0, 0}, quoted[:28]...)
	binary.BigEndian.PutUint16(l4[2:], csumFinish(csumSum(0, l4)))
	return ipv4(src, dst, protoICMP, 64, l4, -1)
}

// ether puts an Ethernet header (IPv4 unless ethType says otherwise) in
// front of pkt.
func ether(ethType uint16, pkt []byte) []byte {
	b := make([]byte, 14, 14+len(pkt))
	copy(b, macENI[:])
	copy(b[6:], macRouter[:])
	binary.BigEndian.PutUint16(b[12:], ethType)
	return append(b, pkt...)
}

// outerUDP is GWLB's outer packet: IPv4 + UDP (source port sport,
// destination dport, checksum 0) around payload, in an Ethernet frame.
func outerUDP(src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	l4 := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(l4[0:], sport)
	binary.BigEndian.PutUint16(l4[2:], dport)
	binary.BigEndian.PutUint16(l4[4:], uint16(8+len(payload)))
	return ether(0x0800, ipv4(src, dst, protoUDP, 64, append(l4, payload...), -1))
}

// encapFrame is what GWLB sends the member for inner with opts.
func encapFrame(from netip.Addr, opts geneve.Options, inner []byte) []byte {
	p, err := geneve.Encap(geneve.Header{Options: opts}, inner)
	if err != nil {
		panic(err)
	}
	return outerUDP(from, addrENI, 40000, geneve.Port, p)
}

// verifyIPv4 recomputes an IPv4 packet's header checksum and its TCP/UDP
// checksum from scratch (UDP 0 accepted when zeroUDP).
func verifyIPv4(pkt []byte, zeroUDP bool) error {
	if len(pkt) < 20 || pkt[0]>>4 != 4 {
		return fmt.Errorf("not an IPv4 packet: %x", pkt)
	}
	hl := int(pkt[0]&0xf) * 4
	tot := int(binary.BigEndian.Uint16(pkt[2:]))
	if tot > len(pkt) || tot < hl {
		return fmt.Errorf("IPv4 total length %d, %d bytes", tot, len(pkt))
	}
	if c := csumFinish(csumSum(0, pkt[:hl])); c != 0 {
		return fmt.Errorf("IPv4 header checksum wrong (sum %#04x)", c)
	}
	l4 := pkt[hl:tot]
	var at int
	switch pkt[9] {
	case protoTCP:
		at = 16
	case protoUDP:
		at = 6
		if binary.BigEndian.Uint16(l4[6:]) == 0 {
			if zeroUDP {
				return nil
			}
			return fmt.Errorf("UDP checksum 0")
		}
	default:
		return nil
	}
	if len(l4) < at+2 {
		return fmt.Errorf("L4 of %d bytes", len(l4))
	}
	sum := csumSum(csumSum(csumSum(0, pkt[12:16]), pkt[16:20]), l4) + uint32(pkt[9]) + uint32(len(l4))
	if c := csumFinish(sum); c != 0 {
		return fmt.Errorf("protocol %d checksum %#04x wrong", pkt[9], binary.BigEndian.Uint16(l4[at:]))
	}
	return nil
}

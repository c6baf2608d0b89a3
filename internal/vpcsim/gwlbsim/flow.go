package gwlbsim

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net/netip"
)

// IP protocol numbers the flow table reads ports of.
const (
	protoTCP = 6
	protoUDP = 17
)

// tuple is a flow's 5-tuple as the private host sent it (ports 0 for a
// protocol without them, or a non-first fragment).
type tuple struct {
	proto        uint8
	src, dst     netip.Addr
	sport, dport uint16
}

func (t tuple) reverse() tuple {
	return tuple{proto: t.proto, src: t.dst, dst: t.src, sport: t.dport, dport: t.sport}
}

func (t tuple) String() string {
	return fmt.Sprintf("%d %s:%d → %s:%d", t.proto, t.src, t.sport, t.dst, t.dport)
}

// parseTuple reads the 5-tuple of an IPv4 packet (the lab's VPC is IPv4
// only). It refuses what is not a whole IPv4 header, or a TCP/UDP first
// fragment too short for its ports.
func parseTuple(p []byte) (tuple, error) {
	var t tuple
	if len(p) < 20 {
		return t, fmt.Errorf("%d bytes, shorter than an IPv4 header", len(p))
	}
	if v := p[0] >> 4; v != 4 {
		return t, fmt.Errorf("IP version %d, the lab carries IPv4 only", v)
	}
	ihl := int(p[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(p[2:4]))
	if ihl < 20 || total < ihl || total > len(p) {
		return t, fmt.Errorf("IPv4 header length %d, total length %d, %d bytes", ihl, total, len(p))
	}
	t.proto = p[9]
	t.src = netip.AddrFrom4([4]byte(p[12:16]))
	t.dst = netip.AddrFrom4([4]byte(p[16:20]))
	fragOff := binary.BigEndian.Uint16(p[6:8]) & 0x1fff
	if (t.proto == protoTCP || t.proto == protoUDP) && fragOff == 0 {
		if total < ihl+4 {
			return t, fmt.Errorf("protocol %d with %d bytes after the IPv4 header, no ports", t.proto, total-ihl)
		}
		t.sport = binary.BigEndian.Uint16(p[ihl : ihl+2])
		t.dport = binary.BigEndian.Uint16(p[ihl+2 : ihl+4])
	}
	return t, nil
}

// hashKey is the part of t that stickiness s hashes.
func hashKey(t tuple, s Stickiness) []byte {
	b := make([]byte, 0, 13)
	b = append(b, t.src.AsSlice()...)
	b = append(b, t.dst.AsSlice()...)
	if s == TwoTuple {
		return b
	}
	b = append(b, t.proto)
	if s == ThreeTuple {
		return b
	}
	b = binary.BigEndian.AppendUint16(b, t.sport)
	return binary.BigEndian.AppendUint16(b, t.dport)
}

// score is the rendezvous (highest random weight) score of a target for a
// flow's hash key: a flow goes to the candidate of highest score, so
// adding or losing a target moves only the flows that must move.
func score(key []byte, target netip.Addr) uint64 {
	h := fnv.New64a()
	h.Write(key)
	h.Write(target.AsSlice())
	s := h.Sum64()
	// fnv's last bytes mix weakly; a final avalanche spreads them.
	s ^= s >> 33
	s *= 0xff51afd7ed558ccd
	s ^= s >> 33
	return s
}

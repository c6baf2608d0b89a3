package bpf

// Checksum arithmetic shared by the Go side of the fast path. All values
// here are in network byte order (the 16-bit words as a packet carries
// them); the C program loads them natively, which is exact because the
// one's-complement sum is byte-order independent (RFC 1071 §2(B)).

// ttlDecrementDelta is ~old + new for the IPv4 header word (TTL<<8 | proto)
// when TTL drops by one: -0x0100 in one's complement, whatever TTL and
// protocol are (TTL > 1 on every packet the fast path forwards).
const ttlDecrementDelta = 0xfeff

// csumAdd returns the one's-complement sum a + b.
func csumAdd(a, b uint16) uint16 {
	s := uint32(a) + uint32(b)
	return uint16(s&0xffff + s>>16)
}

// csumReplace adds (~old + new) for one changed 16-bit word to delta.
func csumReplace(delta, old, new uint16) uint16 {
	return csumAdd(csumAdd(delta, ^old), new)
}

// csumReplace4 adds the change of a 4-byte field (an IPv4 address).
func csumReplace4(delta uint16, old, new [4]byte) uint16 {
	delta = csumReplace(delta, uint16(old[0])<<8|uint16(old[1]), uint16(new[0])<<8|uint16(new[1]))
	return csumReplace(delta, uint16(old[2])<<8|uint16(old[3]), uint16(new[2])<<8|uint16(new[3]))
}

// l3CsumDelta is the IPv4 header checksum delta for a source/destination
// rewrite plus the TTL decrement.
func l3CsumDelta(oldSrc, oldDst, newSrc, newDst [4]byte) uint16 {
	d := csumReplace4(0, oldSrc, newSrc)
	d = csumReplace4(d, oldDst, newDst)
	return csumAdd(d, ttlDecrementDelta)
}

// l4CsumDelta is the TCP/UDP checksum delta for the pseudo-header addresses
// and the ports.
func l4CsumDelta(oldSrc, oldDst, newSrc, newDst [4]byte, oldSport, oldDport, newSport, newDport uint16) uint16 {
	d := csumReplace4(0, oldSrc, newSrc)
	d = csumReplace4(d, oldDst, newDst)
	d = csumReplace(d, oldSport, newSport)
	return csumReplace(d, oldDport, newDport)
}

// csumApply mirrors csum_apply in include/csum.h: the checksum field after
// the covered data changed by delta (RFC 1624 eqn. 3, HC' = ~(~HC + m)).
func csumApply(csum, delta uint16) uint16 {
	return ^csumAdd(^csum, delta)
}

// udpCsumApply is csumApply with UDP's rules: 0 (no checksum) stays 0 and a
// computed 0 is sent as 0xffff.
func udpCsumApply(csum, delta uint16) uint16 {
	if csum == 0 {
		return 0
	}
	if c := csumApply(csum, delta); c != 0 {
		return c
	}
	return 0xffff
}

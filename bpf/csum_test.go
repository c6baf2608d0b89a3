package bpf

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// goRewrite applies a NAT rewrite to a frame the way fastpath.c does (new
// addresses and ports, TTL-1, incremental checksums from the deltas), in Go.
func goRewrite(frame []byte, newSrc, newDst netip.AddrPort) []byte {
	out := bytes.Clone(frame)
	ip := out[14:]
	var oldSrc, oldDst [4]byte
	copy(oldSrc[:], ip[12:])
	copy(oldDst[:], ip[16:])
	ns, nd := newSrc.Addr().As4(), newDst.Addr().As4()
	l4 := ip[20:]
	oldSport, oldDport := binary.BigEndian.Uint16(l4[0:]), binary.BigEndian.Uint16(l4[2:])

	copy(ip[12:], ns[:])
	copy(ip[16:], nd[:])
	ip[8]--
	binary.BigEndian.PutUint16(ip[10:], csumApply(binary.BigEndian.Uint16(ip[10:]), l3CsumDelta(oldSrc, oldDst, ns, nd)))
	binary.BigEndian.PutUint16(l4[0:], newSrc.Port())
	binary.BigEndian.PutUint16(l4[2:], newDst.Port())
	d := l4CsumDelta(oldSrc, oldDst, ns, nd, oldSport, oldDport, newSrc.Port(), newDst.Port())
	switch ip[9] {
	case protoTCP:
		binary.BigEndian.PutUint16(l4[16:], csumApply(binary.BigEndian.Uint16(l4[16:]), d))
	case protoUDP:
		binary.BigEndian.PutUint16(l4[6:], udpCsumApply(binary.BigEndian.Uint16(l4[6:]), d))
	}
	return out
}

func randAddrPort(r *rand.Rand) netip.AddrPort {
	var a [4]byte
	binary.BigEndian.PutUint32(a[:], r.Uint32())
	return netip.AddrPortFrom(netip.AddrFrom4(a), uint16(r.Uint32()))
}

// TestIncrementalChecksumMatchesScratch checks that the Go delta math (the
// same arithmetic as csum_apply in include/csum.h, which the BPF tests check
// against the kernel) gives exactly the checksums computed from scratch.
func TestIncrementalChecksumMatchesScratch(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 20000 {
		proto := uint8(protoTCP)
		if i%2 == 1 {
			proto = protoUDP
		}
		payload := make([]byte, r.IntN(64))
		for j := range payload {
			payload[j] = byte(r.Uint32())
		}
		pre := frameOpts{
			ttl: uint8(2 + r.IntN(254)), proto: proto,
			src: randAddrPort(r), dst: randAddrPort(r),
			tcpFlags: tcpACK, payload: payload,
			udpNoCsum: proto == protoUDP && i%6 == 1,
		}
		post := pre
		post.src, post.dst = randAddrPort(r), randAddrPort(r)
		if i%5 == 0 { // DNAT-like: only one side changes
			post.src = pre.src
		}
		post.ttl = pre.ttl - 1
		got := goRewrite(pre.build(), post.src, post.dst)
		want := post.build()
		if !bytes.Equal(got, want) {
			t.Fatalf("case %d (%+v -> %v %v):\n got %x\nwant %x", i, pre, post.src, post.dst, got, want)
		}
		if err := verifyChecksums(got, pre.udpNoCsum); err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
	}
}

// TestUDPComputedZeroChecksum finds rewrites whose UDP checksum computes to
// 0 and checks it is sent as 0xffff, as a from-scratch computation does.
func TestUDPComputedZeroChecksum(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	found := 0
	for i := 0; i < 2_000_000 && found < 5; i++ {
		pre := frameOpts{ttl: 64, proto: protoUDP, src: randAddrPort(r), dst: randAddrPort(r), payload: []byte{1, 2, 3}}
		post := pre
		post.src = randAddrPort(r)
		post.ttl = 63
		want := post.build()
		if binary.BigEndian.Uint16(want[14+20+6:]) != 0xffff {
			continue
		}
		found++
		if got := goRewrite(pre.build(), post.src, post.dst); !bytes.Equal(got, want) {
			t.Fatalf("got %x\nwant %x", got, want)
		}
	}
	if found == 0 {
		t.Fatal("no rewrite with a computed UDP checksum of 0 found")
	}
}

func TestCsumApplyIdentities(t *testing.T) {
	for _, c := range []uint16{0x0000, 0x0001, 0x1234, 0xfffe, 0xffff} {
		// A zero delta (nothing changed) keeps every checksum as it was.
		if got := csumApply(c, 0); got != c {
			t.Errorf("csumApply(%#04x, 0) = %#04x, want it unchanged", c, got)
		}
	}
	if got := udpCsumApply(0, 0x1234); got != 0 {
		t.Errorf("udpCsumApply(0, ...) = %#04x, want 0 (no checksum stays none)", got)
	}
	if got := csumAdd(0xffff, 0xffff); got != 0xffff {
		t.Errorf("csumAdd(0xffff, 0xffff) = %#04x", got)
	}
}

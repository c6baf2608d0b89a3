//go:build linux

package gwlb

import (
	"bytes"
	"maps"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/hanat/hanat/geneve"
)

var (
	macGWLBHop = net.HardwareAddr{0x02, 0, 0, 0, 0x50, 0x01}
	macENIOwn  = net.HardwareAddr{0x02, 0, 0, 0, 0x10, 0x02}
)

// encapVerdict runs the egress on reply and checks the verdict, the
// counters' change and that the reply was encapsulated towards gwlb; it
// returns the frame out.
func (e *env) encapVerdict(t *testing.T, what string, reply []byte, gwlb netip.Addr, verdict uint32, counted map[string]uint64) []byte {
	t.Helper()
	before := e.counters(t)
	v, out := e.egress(t, ether(0x0800, reply))
	if v != verdict {
		t.Fatalf("%s: verdict %d, want %d", what, v, verdict)
	}
	if d := delta(before, e.counters(t)); !maps.Equal(d, counted) {
		t.Fatalf("%s: counters changed %v, want %v", what, d, counted)
	}
	if len(out) < 14+20+len(reply) || netip.AddrFrom4([4]byte(out[14+16:14+20])) != gwlb || !bytes.Equal(out[len(out)-len(reply):], reply) {
		t.Fatalf("%s: not encapsulated towards %v:\n%x", what, gwlb, out)
	}
	return out
}

// TestEncapNeighbourCache: with a fresh MAC cached for the flow's GWLB the
// reply leaves with the cached Ethernet addresses and TC_ACT_OK (no
// bpf_redirect_neigh); an entry for another GWLB, or one older than the
// TTL, is not used: bpf_redirect_neigh, counted.
func TestEncapNeighbourCache(t *testing.T) {
	e := newEnv(t)
	e.ingress(t, encapFrame(addrGWLB, opts, udpPacket(hostUDP, srvUDP, nil)))
	reply := udpPacket(srvUDP, hostUDP, []byte("answer"))
	now, err := monotonicNow()
	if err != nil {
		t.Fatal(err)
	}
	cache := func(gwlb netip.Addr, at uint64) {
		t.Helper()
		if err := e.maps.setNeighbours([]Neighbour{{GWLB: gwlb, Dst: macGWLBHop, Src: macENIOwn}}, at); err != nil {
			t.Fatal(err)
		}
	}
	cache(addrGWLB, now)
	out := e.encapVerdict(t, "cached", reply, addrGWLB, tcOK, map[string]uint64{ReasonEncap: 1})
	if !bytes.Equal(out[0:6], macGWLBHop) || !bytes.Equal(out[6:12], macENIOwn) || out[12] != 0x08 || out[13] != 0 {
		t.Fatalf("cached: Ethernet header %x, want %v <- %v IPv4", out[:14], macGWLBHop, macENIOwn)
	}
	miss := map[string]uint64{ReasonEncap: 1, ReasonNeighMiss: 1}
	cache(addrGWLB2, now)
	out = e.encapVerdict(t, "another GWLB's MAC cached", reply, addrGWLB, tcRedirect, miss)
	if !bytes.Equal(out[:12], ether(0x0800, nil)[:12]) {
		t.Fatalf("another GWLB's MAC cached: Ethernet header changed to %x", out[:14])
	}
	cache(addrGWLB, now-uint64((neighTTL+time.Second).Nanoseconds()))
	e.encapVerdict(t, "expired", reply, addrGWLB, tcRedirect, miss)
}

// TestEgressEarlyExit: the member's own packets skip the flow lookup, yet
// an ICMP error the member itself sends to a private host about one of
// its flows is still encapsulated, and so is a reply from the member's
// own address once a private host has a flow to it.
func TestEgressEarlyExit(t *testing.T) {
	e := newEnv(t)
	e.ingress(t, encapFrame(addrGWLB, opts, udpPacket(hostUDP, srvUDP, []byte("query"))))
	miss := map[string]uint64{ReasonEncap: 1, ReasonNeighMiss: 1}
	e.encapVerdict(t, "the member's own port unreachable about the flow",
		icmpError(addrENI, host, 3, 4, udpPacket(hostUDP, srvUDP, []byte("query"))), addrGWLB, tcRedirect, miss)
	e.encapVerdict(t, "the member's own time exceeded about the flow",
		icmpError(addrENI, host, 11, 0, udpPacket(hostUDP, srvUDP, []byte("query"))), addrGWLB, tcRedirect, miss)

	toMember := netip.AddrPortFrom(addrENI, 53)
	answer := udpPacket(toMember, hostUDP, []byte("local answer"))
	if v, _ := e.egress(t, ether(0x0800, answer)); v != tcNext {
		t.Fatalf("a reply from the member before any flow to it: verdict %d, want TC_ACT_UNSPEC", v)
	}
	e.ingress(t, encapFrame(addrGWLB2, opts2, udpPacket(hostUDP, toMember, []byte("local query"))))
	e.encapVerdict(t, "a reply from the member to a flow to it", answer, addrGWLB2, tcRedirect, miss)
	// The flag survives a new Attach's setLocal (pinned maps keep flows).
	if err := e.maps.setLocal(addrENI); err != nil {
		t.Fatal(err)
	}
	e.encapVerdict(t, "the same after setLocal", answer, addrGWLB2, tcRedirect, miss)
}

// TestDecapOptionsAnyOrder: GWLB's options in another order, or with an
// option's reserved length bits set, are still GENEVE's valid options (the
// one-load path takes only GWLB's own layout; the walk takes these).
func TestDecapOptionsAnyOrder(t *testing.T) {
	e := newEnv(t)
	inner := udpPacket(hostUDP, srvUDP, []byte("x"))
	for _, tc := range []struct {
		name string
		gwlb netip.Addr // another one each case, so the flow is written anew
		mut  func([]byte) []byte
	}{
		// endpoint at 8, attachment at 20, cookie at 32, 8 bytes.
		{"cookie, attachment, endpoint", addrGWLB2, func(b []byte) []byte {
			return append(append(append(append(b[:8:8], b[32:40]...), b[20:32]...), b[8:20]...), b[40:]...)
		}},
		{"reserved bits in the cookie's length", addrGWLB, func(b []byte) []byte { b[32+3] |= 0xe0; return b }},
	} {
		before := e.counters(t)
		v, _ := e.ingress(t, outerUDP(tc.gwlb, addrENI, 40000, geneve.Port, genevePayload(inner, tc.mut)))
		if d := delta(before, e.counters(t)); v != tcNext || !maps.Equal(d, map[string]uint64{ReasonDecap: 1}) {
			t.Fatalf("%s: verdict %d counters %v, want decap +1", tc.name, v, d)
		}
		if f, ok := e.flow(t, protoUDP, hostUDP, srvUDP); !ok || f.GWLB != tc.gwlb || f.Options != opts {
			t.Fatalf("%s: flow %+v (found %v), want options %+v", tc.name, f, ok, opts)
		}
	}
}

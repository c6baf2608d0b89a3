package gwlb

import (
	"net/netip"
	"testing"

	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/geneve"
)

// TestLive: only the remembered flows whose inner 5-tuple conntrack still
// has are live; an ICMP echo's id is both ports here and ICMPID there.
func TestLive(t *testing.T) {
	host, echo := netip.MustParseAddr("10.0.11.10"), netip.MustParseAddr("198.51.100.7")
	udp := Flow{Proto: protoUDP, Src: netip.AddrPortFrom(host, 40000), Dst: netip.AddrPortFrom(echo, 7), Options: geneve.Options{EndpointID: 1}}
	gone := Flow{Proto: protoUDP, Src: netip.AddrPortFrom(host, 40001), Dst: netip.AddrPortFrom(echo, 7), Options: geneve.Options{EndpointID: 1}}
	ping := Flow{Proto: protoICMP, Src: netip.AddrPortFrom(host, 9), Dst: netip.AddrPortFrom(echo, 9), Options: geneve.Options{EndpointID: 2}}
	otherID := Flow{Proto: protoICMP, Src: netip.AddrPortFrom(host, 10), Dst: netip.AddrPortFrom(echo, 10)}
	nat := []conntrack.Flow{
		{Original: conntrack.Tuple{Proto: protoUDP, Src: udp.Src, Dst: udp.Dst}},
		{Original: conntrack.Tuple{Proto: protoICMP, Src: netip.AddrPortFrom(host, 0), Dst: netip.AddrPortFrom(echo, 0), ICMPID: 9}},
		// The reply direction of gone's tuple is no match.
		{Original: conntrack.Tuple{Proto: protoUDP, Src: gone.Dst, Dst: gone.Src}},
	}
	live := Live([]Flow{udp, gone, ping, otherID}, nat)
	if len(live) != 2 || live[0] != udp || live[1] != ping {
		t.Fatalf("live = %+v, want the UDP flow and the echo id 9", live)
	}
	if l := Live([]Flow{udp}, nil); len(l) != 0 {
		t.Fatalf("with conntrack empty: %+v", l)
	}
}

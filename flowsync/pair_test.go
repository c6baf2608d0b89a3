package flowsync

import (
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/hanat/hanat/conntrack"
)

// snatFlow is a flow the peer translated to nat.
func snatFlow(nat string) conntrack.Flow {
	return conntrack.Flow{SNAT: true, Original: tcp("10.0.11.10:40000", "198.51.100.1:443"),
		Reply: tcp("198.51.100.1:443", nat+":40000")}
}

// TestTakeoverAddrs: the peer's own flows move to the standby address
// (which carries its EIP here), the flows of this node's zone the peer
// served with its standby come back to this node's SNAT address.
func TestTakeoverAddrs(t *testing.T) {
	peer, standby, self := netip.MustParseAddr("10.0.2.10"), netip.MustParseAddr("10.0.1.11"), netip.MustParseAddr("10.0.1.10")
	peerStandby := netip.MustParseAddr("10.0.2.11")
	var held []netip.Addr
	for _, f := range []conntrack.Flow{snatFlow("10.0.2.10"), snatFlow("10.0.2.11"), snatFlow("10.0.2.11"), {Original: tcp("10.0.11.9:1", "198.51.100.1:2")}} {
		held = append(held, f.NATAddr().Addr())
	}

	got := TakeoverAddrs(held, peer, standby, self)
	want := map[netip.Addr]netip.Addr{peer: standby, peerStandby: self}
	if !maps.Equal(got, want) {
		t.Fatalf("addrs = %v, want %v", got, want)
	}
	if got := TakeoverAddrs(held, peer, netip.Addr{}, self); !maps.Equal(got, map[netip.Addr]netip.Addr{peerStandby: self}) {
		t.Fatalf("without a standby: addrs = %v, want only this zone's flows back to self", got)
	}
	if got := TakeoverAddrs(held, peer, standby, netip.Addr{}); !maps.Equal(got, map[netip.Addr]netip.Addr{peer: standby}) {
		t.Fatalf("without an SNAT address: addrs = %v, want only the peer's to the standby", got)
	}
}

// TestWithin: the peer's zone's SNAT covers only its subnets inside the
// private CIDRs.
func TestWithin(t *testing.T) {
	p := netip.MustParsePrefix
	nets := []netip.Prefix{p("10.0.12.0/24"), p("10.0.0.0/8"), p("192.168.5.0/24")}
	got := within(nets, []netip.Prefix{p("10.0.0.0/16"), p("192.168.0.0/16")})
	if want := []netip.Prefix{p("10.0.12.0/24"), p("192.168.5.0/24")}; !slices.Equal(got, want) {
		t.Fatalf("within = %v, want %v (a subnet wider than the private CIDR is not in it)", got, want)
	}
}

// TestCountersErrors: trouble is named, and only what happened is shown.
func TestCountersErrors(t *testing.T) {
	got := Counters{AuthFailed: 2, Lost: 1, Sessions: 5, Resyncs: 3}.Errors()
	if want := map[string]uint64{"auth_failed": 2, "lost": 1}; !maps.Equal(got, want) {
		t.Fatalf("errors = %v, want %v (sessions and resyncs are not errors)", got, want)
	}
}

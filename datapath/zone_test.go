package datapath

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hanat/hanat/internal/natlab"
)

func TestNormalizeZones(t *testing.T) {
	base := NAT{PrivateCIDRs: []netip.Prefix{mustPrefix("10.0.0.0/16")}, SNATAddrs: []netip.Addr{mustAddr("10.0.1.10")}}
	good := base
	good.Zones = []ZoneSNAT{{Sources: []netip.Prefix{mustPrefix("10.0.21.7/24")}, Addr: mustAddr("10.0.1.20")}}
	n, err := good.normalize()
	if err != nil || len(n.Zones) != 1 || n.Zones[0].Sources[0] != mustPrefix("10.0.21.0/24") {
		t.Fatalf("normalize = %+v, %v", n.Zones, err)
	}
	if got := good.AllSNATAddrs(); len(got) != 2 || got[1] != mustAddr("10.0.1.20") {
		t.Errorf("AllSNATAddrs = %v", got)
	}
	for name, z := range map[string]ZoneSNAT{
		"outside the private CIDRs": {Sources: []netip.Prefix{mustPrefix("192.0.2.0/24")}, Addr: mustAddr("10.0.1.20")},
		"wider than them":           {Sources: []netip.Prefix{mustPrefix("10.0.0.0/8")}, Addr: mustAddr("10.0.1.20")},
		"no sources":                {Addr: mustAddr("10.0.1.20")},
		"no address":                {Sources: []netip.Prefix{mustPrefix("10.0.21.0/24")}},
	} {
		bad := base
		bad.Zones = []ZoneSNAT{z}
		if _, err := bad.normalize(); err == nil || !strings.Contains(err.Error(), "Zones[0]") {
			t.Errorf("%s: normalize = %v, want an error naming Zones[0]", name, err)
		}
	}
}

// TestSlowpathZoneSNAT: a zone's sources leave with the zone's address,
// the others with the NAT's, in a real namespace NAT.
func TestSlowpathZoneSNAT(t *testing.T) {
	ctx, lab := emptyNATLab(t)
	zoneAddr := mustAddr("198.51.100.3")
	natlab.MustRun(t, ctx, lab.NAT, "ip", "addr", "add", zoneAddr.String()+"/24", "dev", "out0")
	// A second private host, outside the zone.
	natlab.MustRun(t, ctx, lab.Private, "ip", "addr", "add", "10.0.11.200/24", "dev", "eth0")
	nat := NAT{
		PrivateCIDRs: []netip.Prefix{mustPrefix("10.0.11.0/24")},
		SNATAddrs:    []netip.Addr{natlab.NATOut},
		OutsideIface: "out0",
		Zones:        []ZoneSNAT{{Sources: []netip.Prefix{mustPrefix("10.0.11.0/25")}, Addr: zoneAddr}},
	}
	sp := NewSlowpath(testLogger(t), lab.NAT.FD())
	if _, err := sp.Apply(ctx, nat); err != nil {
		t.Fatal(err)
	}
	listing := stripCounters(nftList(t, ctx, lab.NAT, "table", "inet", TableName))
	for _, want := range []string{
		`ip saddr { 10.0.11.0/25 } oifname "out0" meta l4proto { tcp, udp } counter snat ip to 198.51.100.3:1024-65535 comment "snat_zone"`,
		`ip saddr { 10.0.11.0/25 } oifname "out0" counter snat ip to 198.51.100.3 comment "snat_zone_other"`,
	} {
		if !strings.Contains(listing, want) {
			t.Errorf("listing lacks %q:\n%s", want, listing)
		}
	}
	peers := natlab.ServeUDPEcho(t, lab.Inet, "198.51.100.100:7")
	send := func(from string) netip.Addr {
		t.Helper()
		var got netip.Addr
		natlab.UDPRoundTripFrom(t, lab.Private, from, "198.51.100.100:7")
		select {
		case p := <-peers:
			got = p.Addr()
		case <-time.After(5 * time.Second):
			t.Fatalf("no datagram from %s reached the server", from)
		}
		return got
	}
	if got := send("10.0.11.10"); got != zoneAddr {
		t.Errorf("a zone source left as %s, want the zone's address %s", got, zoneAddr)
	}
	if got := send("10.0.11.200"); got != natlab.NATOut {
		t.Errorf("a source outside the zone left as %s, want the NAT's address %s", got, natlab.NATOut)
	}
}

package e2e

import (
	"context"
	"net/netip"
	"testing"

	"github.com/hanat/hanat/internal/netns"
)

// topo is the smallest network that shows a NAT instance working:
//
//	priv 10.0.11.10/24 ──in0 10.0.11.1── nat ──out0 198.51.100.2── 198.51.100.100/24 inet
//	rogue 192.0.2.10/24 ──rg0 192.0.2.1──┘
//
// The internet host routes 10.0.0.0/16 at the NAT, as an attacker next to
// it could, so unsolicited inbound really reaches the NAT's forward path.
type topo struct {
	priv, nat, inet, rogue *netns.NS
}

var (
	privAddr  = netip.MustParseAddr("10.0.11.10")
	natInAddr = netip.MustParseAddr("10.0.11.1")
	natOut    = netip.MustParseAddr("198.51.100.2")
	inetAddr  = netip.MustParseAddr("198.51.100.100")
	rogueAddr = netip.MustParseAddr("192.0.2.10")
	natRogue  = netip.MustParseAddr("192.0.2.1")
)

func newTopo(t *testing.T) *topo {
	t.Helper()
	tp := &topo{}
	mk := func(role string) *netns.NS {
		ns, err := netns.Create(netns.UniqueName("hnt-e2e" + role + "-"))
		if err != nil {
			t.Fatalf("create %s namespace: %v", role, err)
		}
		t.Cleanup(func() {
			if err := ns.Close(); err != nil {
				t.Errorf("delete namespace %s: %v", ns.Name, err)
			}
		})
		return ns
	}
	tp.priv, tp.nat, tp.inet, tp.rogue = mk("p"), mk("n"), mk("i"), mk("r")

	link := func(local string, localAddr netip.Prefix, peerNS *netns.NS, peerAddr netip.Prefix, peerGW netip.Addr) {
		t.Helper()
		if err := tp.nat.Veth(local, localAddr, peerNS, "eth0", peerAddr, peerGW); err != nil {
			t.Fatal(err)
		}
	}
	link("in0", netip.PrefixFrom(natInAddr, 24), tp.priv, netip.PrefixFrom(privAddr, 24), natInAddr)
	link("out0", netip.PrefixFrom(natOut, 24), tp.inet, netip.PrefixFrom(inetAddr, 24), netip.Addr{})
	link("rg0", netip.PrefixFrom(natRogue, 24), tp.rogue, netip.PrefixFrom(rogueAddr, 24), natRogue)

	// The NAT's default route points at the internet host (its "IGW"), so
	// hanatd discovers out0 and 198.51.100.2 by itself.
	mustRun(t, tp.nat, "ip", "route", "add", "default", "via", inetAddr.String(), "dev", "out0")
	mustRun(t, tp.inet, "ip", "route", "add", "10.0.0.0/16", "via", natOut.String())
	mustRun(t, tp.inet, "ip", "route", "add", "192.0.2.0/24", "via", natOut.String())
	return tp
}

func mustRun(t *testing.T, ns *netns.NS, name string, args ...string) string {
	t.Helper()
	out, err := ns.Run(context.Background(), name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

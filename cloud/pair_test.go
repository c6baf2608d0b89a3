package cloud

import (
	"context"
	"net/netip"
	"testing"
)

func TestClassifyPairEIPs(t *testing.T) {
	ip := netip.MustParseAddr
	eni := func(ips []string, assoc map[string]string) ENIInfo {
		var e ENIInfo
		for _, s := range ips {
			e.PrivateIPs = append(e.PrivateIPs, ip(s))
		}
		for priv, alloc := range assoc {
			e.Associations = append(e.Associations, Association{PrivateIP: ip(priv), PublicIP: ip("192.0.2.1"), AllocationID: alloc})
		}
		return e
	}
	for _, tc := range []struct {
		name       string
		self, peer ENIInfo
		want       PairEIPs
	}{
		{"each on its primary", eni([]string{"10.0.1.10", "10.0.1.100"}, map[string]string{"10.0.1.10": "eipalloc-a"}),
			eni([]string{"10.0.2.10", "10.0.2.100"}, map[string]string{"10.0.2.10": "eipalloc-c"}), PairEIPs{"eipalloc-a", "eipalloc-c"}},
		{"this node's EIP on the peer's standby (after a failover)", eni([]string{"10.0.1.10", "10.0.1.100"}, nil),
			eni([]string{"10.0.2.10", "10.0.2.100"}, map[string]string{"10.0.2.10": "eipalloc-c", "10.0.2.100": "eipalloc-a"}), PairEIPs{"eipalloc-a", "eipalloc-c"}},
		{"the peer's EIP on this node's standby", eni([]string{"10.0.2.10", "10.0.2.100"}, map[string]string{"10.0.2.10": "eipalloc-c", "10.0.2.100": "eipalloc-a"}),
			eni([]string{"10.0.1.10", "10.0.1.100"}, nil), PairEIPs{"eipalloc-c", "eipalloc-a"}},
		{"peer unknown, its EIP here", eni([]string{"10.0.2.10", "10.0.2.100"}, map[string]string{"10.0.2.10": "eipalloc-c", "10.0.2.100": "eipalloc-a"}),
			ENIInfo{}, PairEIPs{"eipalloc-c", "eipalloc-a"}},
		{"peer unknown, this node's EIP away", eni([]string{"10.0.1.10", "10.0.1.100"}, nil), ENIInfo{}, PairEIPs{}},
		{"auto-assigned public IPs never count", eni([]string{"10.0.1.10"}, map[string]string{"10.0.1.10": ""}),
			eni([]string{"10.0.2.10"}, map[string]string{"10.0.2.10": ""}), PairEIPs{}},
		{"a secondary that is not the standby", eni([]string{"10.0.1.10", "10.0.1.100", "10.0.1.101"}, map[string]string{"10.0.1.101": "eipalloc-x"}),
			eni([]string{"10.0.2.10"}, nil), PairEIPs{}},
		{"one EIP is never both", eni([]string{"10.0.1.10", "10.0.1.100"}, map[string]string{"10.0.1.10": "eipalloc-a", "10.0.1.100": "eipalloc-a"}),
			ENIInfo{}, PairEIPs{Home: "eipalloc-a"}},
	} {
		if got := ClassifyPairEIPs(tc.self, tc.peer); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// The pair's EIPs through the SDK and the lab's EC2, before and after
// nat-a's EIP followed its tables to nat-c's standby address.
func TestPairEIPsThroughFailover(t *testing.T) {
	l := newLab(t)
	c := l.client(t)
	ctx := context.Background()
	check := func(when, eni, peer string, want PairEIPs) {
		t.Helper()
		got, err := c.PairEIPs(ctx, eni, peer)
		if err != nil || got != want {
			t.Errorf("%s: PairEIPs(%s, %s) = %+v, %v; want %+v", when, eni, peer, got, err, want)
		}
	}
	check("at the start, nat-a", l.natAENI, l.natCENI, PairEIPs{l.eipA, l.eipC})
	check("at the start, nat-c", l.natCENI, l.natAENI, PairEIPs{l.eipC, l.eipA})
	standby, err := c.AssignSecondaryIP(ctx, l.natCENI)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AssociateEIP(ctx, l.eipA, l.natCENI, standby); err != nil {
		t.Fatal(err)
	}
	check("after the failover, nat-a", l.natAENI, l.natCENI, PairEIPs{l.eipA, l.eipC})
	check("after the failover, nat-c", l.natCENI, l.natAENI, PairEIPs{l.eipC, l.eipA})
	check("after the failover, nat-c, peer unknown", l.natCENI, "", PairEIPs{l.eipC, l.eipA})
	check("after the failover, nat-a, peer unknown", l.natAENI, "", PairEIPs{})
	if _, err := c.PairEIPs(ctx, l.natAENI, "eni-0000000000000dead"); err == nil {
		t.Error("an unknown peer ENI gave no error")
	}
}

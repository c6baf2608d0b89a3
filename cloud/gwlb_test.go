package cloud

import (
	"context"
	"net/netip"
	"slices"
	"testing"
)

// TestGWLBAddrs: the GWLB's ENIs (one per AZ) are found by their interface
// type, sorted; the endpoints' ENIs and the instances' are not.
func TestGWLBAddrs(t *testing.T) {
	l := newLab(t)
	want := []netip.Addr{netip.MustParseAddr("10.0.1.5"), netip.MustParseAddr("10.0.2.5")}
	_, service, _, err := l.m.AddGatewayLoadBalancer("hanat-gwlb", []string{l.pubC, l.pubA}, []netip.Addr{want[1], want[0]})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.m.AddGatewayLoadBalancerEndpoint(service, l.privA, netip.MustParseAddr("10.0.11.5")); err != nil {
		t.Fatal(err)
	}
	c := l.client(t)
	got, err := c.GWLBAddrs(context.Background(), l.vpc)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("GWLB addresses %v, want %v", got, want)
	}
	if _, err := c.GWLBAddrs(context.Background(), ""); err == nil {
		t.Fatal("an empty VPC id was accepted")
	}
}

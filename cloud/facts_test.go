package cloud

import (
	"context"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestFactsHealthyLab(t *testing.T) {
	l := newLab(t)
	c := l.client(t)
	f, err := c.Facts(context.Background(), l.vpc, l.pubA, l.natAENI)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Errors) != 0 {
		t.Fatalf("errors: %v", f.Errors)
	}
	if !f.IGWAttached || f.IGWID != l.igw {
		t.Errorf("IGW = %v %q, want attached %s", f.IGWAttached, f.IGWID, l.igw)
	}
	if f.AZ != azA {
		t.Errorf("AZ = %q", f.AZ)
	}
	if f.SubnetRouteTable.ID != l.rtbPub || !f.SubnetRouteTable.Public() {
		t.Errorf("subnet route table = %+v, want the public one", f.SubnetRouteTable)
	}
	e := f.NATENI
	if e.ID != l.natAENI || !e.SourceDestCheck || e.PublicIP != l.pubIPA || e.AllocationID != l.eipA ||
		!slices.Equal(e.PrivateIPs, []netip.Addr{l.natAIP, netip.MustParseAddr("10.0.1.100")}) {
		t.Errorf("NAT ENI = %+v", e)
	}
	if got, want := ids(f.PrivateRouteTables), sorted(l.rtbMain, l.rtbA, l.rtbC); !slices.Equal(got, want) {
		t.Errorf("private route tables = %v, want %v", got, want)
	}
	for _, rt := range f.PrivateRouteTables {
		var want []string
		switch rt.ID {
		case l.rtbA:
			want = []string{azA}
		case l.rtbC:
			want = []string{azC}
		}
		if got := f.AZsOf(rt); !slices.Equal(got, want) {
			t.Errorf("AZs of %s = %v, want %v", rt.ID, got, want)
		}
	}
	if len(f.Subnets) != 4 || f.AZOf(l.privC) != azC {
		t.Errorf("subnets = %+v", f.Subnets)
	}
}

func TestFactsMisconfigured(t *testing.T) {
	l := newLab(t)
	c := l.client(t)
	// The seed's common mistake: the NAT in a private subnet. Its table
	// routes 0.0.0.0/0 to an ENI, not to the IGW.
	f, err := c.Facts(context.Background(), l.vpc, l.privA, l.appENI)
	if err != nil {
		t.Fatal(err)
	}
	def, ok := f.SubnetRouteTable.DefaultRoute()
	if f.SubnetRouteTable.ID != l.rtbA || !ok || def.NetworkInterfaceID != l.natAENI || f.SubnetRouteTable.Public() {
		t.Errorf("private subnet's table = %+v", f.SubnetRouteTable)
	}
	if f.NATENI.PublicIP.IsValid() {
		t.Errorf("app ENI has public IP %v", f.NATENI.PublicIP)
	}

	// A subnet without an association resolves to the main table, which
	// then lists it as implicit.
	bare := l.m.AddSubnet(l.vpc, netip.MustParsePrefix("10.0.13.0/24"), azC, nil)
	f, err = c.Facts(context.Background(), l.vpc, bare, "")
	if err != nil {
		t.Fatal(err)
	}
	if f.SubnetRouteTable.ID != l.rtbMain || !slices.Equal(f.SubnetRouteTable.ImplicitSubnetIDs, []string{bare}) ||
		!slices.Equal(f.AZsOf(f.SubnetRouteTable), []string{azC}) || f.NATENI.ID != "" || len(f.Errors) != 0 {
		t.Errorf("facts for a bare subnet: table %+v, ENI %+v, errors %v", f.SubnetRouteTable, f.NATENI, f.Errors)
	}

	// A subnet of another VPC, an unknown ENI: reported, not fatal.
	f, err = c.Facts(context.Background(), l.vpc, "subnet-00000000000000bad", "eni-00000000000000bad")
	if err != nil {
		t.Fatal(err)
	}
	if f.SubnetsErr == "" || f.NATENIErr == "" || !strings.Contains(f.NATENIErr, "InvalidNetworkInterfaceID.NotFound") || len(f.Errors) != 2 {
		t.Errorf("errors for unknown subnet and ENI: %q %q %v", f.SubnetsErr, f.NATENIErr, f.Errors)
	}
	if !f.IGWAttached {
		t.Error("IGW facts lost because of other failures")
	}
}

func TestFactsPartialIAM(t *testing.T) {
	l := newLab(t)
	srv := httptest.NewServer(denyHandler(l.m.EC2Handler(labCreds), "DescribeInternetGateways", "DescribeSubnets"))
	t.Cleanup(srv.Close)
	o := l.options()
	o.Endpoint = srv.URL
	c := l.clientWith(t, o)

	f, err := c.Facts(context.Background(), l.vpc, l.pubA, l.natAENI)
	if err != nil {
		t.Fatal(err)
	}
	if f.IGWAttached || f.IGWID != "" || !strings.Contains(f.IGWErr, "ec2 DescribeInternetGateways") || !strings.Contains(f.IGWErr, "UnauthorizedOperation") {
		t.Errorf("IGW part: attached=%v id=%q err=%q", f.IGWAttached, f.IGWID, f.IGWErr)
	}
	if !strings.Contains(f.SubnetsErr, "UnauthorizedOperation") || len(f.Errors) != 2 {
		t.Errorf("subnets part: %q; errors %v", f.SubnetsErr, f.Errors)
	}
	// The rest is there.
	if f.SubnetRouteTable.ID != l.rtbPub || f.NATENI.ID != l.natAENI || len(f.PrivateRouteTables) != 3 {
		t.Errorf("facts that IAM allowed are missing: table %q ENI %q private %v", f.SubnetRouteTable.ID, f.NATENI.ID, ids(f.PrivateRouteTables))
	}

	// A cancelled context is an error of the whole.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := c.Facts(ctx, l.vpc, l.pubA, l.natAENI); err == nil {
		t.Fatal("cancelled Facts succeeded")
	}
	if _, err := c.Facts(context.Background(), "", "", ""); err == nil {
		t.Fatal("Facts without a VPC succeeded")
	}
}

package cloud

import (
	"context"
	"net/netip"
	"slices"
	"testing"
)

func TestDisableSourceDestCheck(t *testing.T) {
	l := newLab(t)
	c := l.client(t)
	ctx := context.Background()

	on, err := c.SourceDestCheck(ctx, l.natAENI)
	if err != nil || !on {
		t.Fatalf("SourceDestCheck before = %v, %v; want true", on, err)
	}
	for i, want := range []bool{true, false, false} {
		mods := l.requests("ModifyNetworkInterfaceAttribute")
		changed, err := c.DisableSourceDestCheck(ctx, l.natAENI)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if changed != want {
			t.Fatalf("call %d: changed = %v, want %v", i, changed, want)
		}
		wantMods := 0
		if want {
			wantMods = 1
		}
		if n := l.requests("ModifyNetworkInterfaceAttribute") - mods; n != wantMods {
			t.Fatalf("call %d: %d ModifyNetworkInterfaceAttribute calls, want %d", i, n, wantMods)
		}
	}
	on, err = c.SourceDestCheck(ctx, l.natAENI)
	if err != nil || on {
		t.Fatalf("SourceDestCheck after = %v, %v; want false", on, err)
	}
	// The other NAT's check is untouched.
	if on, _ := c.SourceDestCheck(ctx, l.natCENI); !on {
		t.Fatal("DisableSourceDestCheck changed another ENI")
	}
	if _, err := c.DisableSourceDestCheck(ctx, "eni-00000000000000bad"); !IsNotFound(err) {
		t.Fatalf("unknown ENI: %v", err)
	}
}

func TestENI(t *testing.T) {
	l := newLab(t)
	c := l.client(t)
	e, err := c.ENI(context.Background(), l.natAENI)
	if err != nil {
		t.Fatal(err)
	}
	want := ENIInfo{ID: l.natAENI, SubnetID: l.pubA, VPCID: l.vpc, AvailabilityZone: azA, InstanceID: l.natA,
		MAC: l.macNatA.String(), SourceDestCheck: true,
		PrivateIPs: []netip.Addr{l.natAIP, netip.MustParseAddr("10.0.1.100")}, PublicIP: l.pubIPA, AllocationID: l.eipA}
	got := e
	got.Associations = nil
	if !equalENI(got, want) {
		t.Fatalf("ENI = %+v\nwant  %+v", got, want)
	}
	if len(e.Associations) != 1 || e.Associations[0].PrivateIP != l.natAIP || e.Associations[0].PublicIP != l.pubIPA ||
		e.Associations[0].AllocationID != l.eipA || e.Associations[0].AssociationID == "" {
		t.Fatalf("associations = %+v", e.Associations)
	}
	app, err := c.ENI(context.Background(), l.appENI)
	if err != nil {
		t.Fatal(err)
	}
	if app.PublicIP.IsValid() || app.AllocationID != "" || len(app.Associations) != 0 {
		t.Fatalf("app ENI without public IP = %+v", app)
	}
}

func equalENI(a, b ENIInfo) bool {
	return a.ID == b.ID && a.SubnetID == b.SubnetID && a.VPCID == b.VPCID && a.AvailabilityZone == b.AvailabilityZone &&
		a.InstanceID == b.InstanceID && a.MAC == b.MAC && a.SourceDestCheck == b.SourceDestCheck &&
		slices.Equal(a.PrivateIPs, b.PrivateIPs) && a.PublicIP == b.PublicIP && a.AllocationID == b.AllocationID
}

func TestAssociateEIP(t *testing.T) {
	l := newLab(t)
	c := l.client(t)
	ctx := context.Background()
	secondary := netip.MustParseAddr("10.0.1.100")

	for _, tc := range []struct {
		name       string
		alloc, eni string
		private    netip.Addr
		// after: ENI → public IP expected on (private IP) of it; an
		// invalid public IP means none.
		after map[string][2]netip.Addr
	}{
		{"spare EIP onto NAT-A's secondary IP", l.eipSpare, l.natAENI, secondary,
			map[string][2]netip.Addr{l.natAENI: {secondary, l.pubIPSpare}}},
		{"reassociate NAT-A's EIP to NAT-C (replacing NAT-C's)", l.eipA, l.natCENI, netip.Addr{},
			map[string][2]netip.Addr{l.natCENI: {l.natCIP, l.pubIPA}, l.natAENI: {l.natAIP, {}}}},
		{"same again: no change", l.eipA, l.natCENI, l.natCIP,
			map[string][2]netip.Addr{l.natCENI: {l.natCIP, l.pubIPA}}},
		{"back to NAT-A", l.eipA, l.natAENI, l.natAIP,
			map[string][2]netip.Addr{l.natAENI: {l.natAIP, l.pubIPA}, l.natCENI: {l.natCIP, {}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := c.AssociateEIP(ctx, tc.alloc, tc.eni, tc.private)
			if err != nil {
				t.Fatal(err)
			}
			if id == "" {
				t.Fatal("empty association id")
			}
			for eniID, want := range tc.after {
				e, err := c.ENI(ctx, eniID)
				if err != nil {
					t.Fatal(err)
				}
				var got netip.Addr
				for _, a := range e.Associations {
					if a.PrivateIP == want[0] {
						got = a.PublicIP
					}
				}
				if got != want[1] {
					t.Fatalf("%s %s has public IP %v, want %v (associations %+v)", eniID, want[0], got, want[1], e.Associations)
				}
			}
		})
	}
	if _, err := c.AssociateEIP(ctx, "eipalloc-0000000000000bad", l.natAENI, netip.Addr{}); !IsNotFound(err) {
		t.Fatalf("unknown allocation: %v", err)
	}
}

func TestMoveSecondaryIP(t *testing.T) {
	l := newLab(t)
	c := l.client(t)
	ctx := context.Background()
	floating := netip.MustParseAddr("10.0.1.100") // on NAT-A
	// NAT-A's HA peer in the same subnet.
	peer := l.m.AddInstance(azA, l.pubA, nil)
	peerENI := l.m.AddNetworkInterface(l.pubA, peer, 0, nil, netip.MustParseAddr("10.0.1.11"), nil)
	if peer == "" || peerENI == "" {
		t.Fatal("adding the peer failed")
	}
	if _, err := c.AssociateEIP(ctx, l.eipSpare, l.natAENI, floating); err != nil {
		t.Fatal(err)
	}

	has := func(eniID string) (bool, netip.Addr) {
		t.Helper()
		e, err := c.ENI(ctx, eniID)
		if err != nil {
			t.Fatal(err)
		}
		var pub netip.Addr
		for _, a := range e.Associations {
			if a.PrivateIP == floating {
				pub = a.PublicIP
			}
		}
		return slices.Contains(e.PrivateIPs, floating), pub
	}
	for i, to := range []string{peerENI, l.natAENI, l.natAENI} {
		from := l.natAENI
		if to == l.natAENI {
			from = peerENI
		}
		if err := c.MoveSecondaryIP(ctx, to, floating); err != nil {
			t.Fatalf("move %d: %v", i, err)
		}
		if ok, pub := has(to); !ok || pub != l.pubIPSpare {
			t.Fatalf("move %d: %s holds %s: %v with public IP %v, want true with %v", i, to, floating, ok, pub, l.pubIPSpare)
		}
		if ok, _ := has(from); ok {
			t.Fatalf("move %d: %s still holds %s", i, from, floating)
		}
	}
	// A primary address is not movable.
	if err := c.MoveSecondaryIP(ctx, peerENI, l.natAIP); ErrorCode(err) != "PrivateIpAddressInUse" {
		t.Fatalf("moving a primary IP: %v", err)
	}
	if err := c.MoveSecondaryIP(ctx, peerENI, netip.Addr{}); err == nil {
		t.Fatal("invalid address accepted")
	}
}

// TestAssignSecondaryIPAndZoneSubnets: the standby address hanatd gives
// its ENI comes from the ENI's subnet and is new; a zone's subnets are
// those its route tables serve.
func TestAssignSecondaryIPAndZoneSubnets(t *testing.T) {
	l := newLab(t)
	c := l.client(t)
	ctx := context.Background()
	before, err := c.ENI(ctx, l.natAENI)
	if err != nil {
		t.Fatal(err)
	}
	ip, err := c.AssignSecondaryIP(ctx, l.natAENI)
	if err != nil {
		t.Fatal(err)
	}
	after, err := c.ENI(ctx, l.natAENI)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(before.PrivateIPs, ip) || !slices.Contains(after.PrivateIPs, ip) || after.PrivateIPs[0] != before.PrivateIPs[0] {
		t.Errorf("assigned %s: private IPs %v -> %v", ip, before.PrivateIPs, after.PrivateIPs)
	}
	subnets, err := c.Subnets(ctx, l.vpc)
	if err != nil {
		t.Fatal(err)
	}
	var pubA, privA netip.Prefix
	for _, s := range subnets {
		switch s.ID {
		case l.pubA:
			pubA = s.CIDR
		case l.privA:
			privA = s.CIDR
		}
	}
	if !pubA.Contains(ip) {
		t.Errorf("assigned %s outside the ENI's subnet %s", ip, pubA)
	}
	got, err := c.SubnetsOf(ctx, l.vpc, []string{l.rtbA})
	if err != nil || len(got) != 1 || got[0] != privA {
		t.Errorf("SubnetsOf(%s) = %v, %v; want [%s]", l.rtbA, got, err, privA)
	}
	if _, err := c.AssignSecondaryIP(ctx, ""); err == nil {
		t.Error("no ENI accepted")
	}
}

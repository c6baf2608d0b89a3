package cloud

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// labNode is NAT-A of the lab as DiscoverNode would have found it.
func labNode(t *testing.T, l *lab) *Node {
	eni := ENI{ID: l.natAENI, MAC: l.macNatA.String(), SubnetID: l.pubA, VPCID: l.vpc,
		PrivateIPs: []netip.Addr{l.natAIP, netip.MustParseAddr("10.0.1.100")}, PublicIPs: []netip.Addr{l.pubIPA}}
	inst := &Instance{ID: l.natA, Region: labRegion, AvailabilityZone: azA, MAC: eni.MAC, PrivateIP: l.natAIP,
		VPCID: l.vpc, VPCCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")}, ENIs: []ENI{eni}}
	c := l.client(t)
	n := &Node{log: testLogger(t), inst: inst, ec2: c}
	n.srcDst = NewSourceDestKeeper(n.log, c, func() string { return n.OutsideENI().ID })
	return n
}

// TestNodeOutsideAndStandby: the outside interface is matched to its ENI
// by MAC; the standby address is the ENI's secondary private IP.
func TestNodeOutsideAndStandby(t *testing.T) {
	l := newLab(t)
	n := labNode(t, l)
	if _, err := n.BindOutside("ens5", "02:00:00:00:00:99"); err == nil {
		t.Fatal("a MAC that is no ENI of the instance: want an error")
	}
	if a := n.EnsureStandby(context.Background()); a.IsValid() {
		t.Fatalf("standby = %v before the outside ENI is known, want none", a)
	}
	if _, err := n.BindOutside("ens5", l.macNatA.String()); err != nil {
		t.Fatal(err)
	}
	if n.OutsideENI().ID != l.natAENI || n.OutsideIface() != "ens5" || !slices.Equal(n.OwnAddrs(), []netip.Addr{l.natAIP}) {
		t.Fatalf("outside = %+v on %q, own = %v", n.OutsideENI(), n.OutsideIface(), n.OwnAddrs())
	}
	if a := n.EnsureStandby(context.Background()); a != netip.MustParseAddr("10.0.1.100") {
		t.Fatalf("standby = %v, want the ENI's secondary IP 10.0.1.100", a)
	}
	st := n.Status()
	if st.Instance.ID != l.natA || st.ENI.ID != l.natAENI || st.PublicIP != l.pubIPA {
		t.Fatalf("status = %+v", st)
	}
}

// TestNodeDoctorFacts: the checklist's EC2 facts of a healthy NAT, and
// off EC2 the reason.
func TestNodeDoctorFacts(t *testing.T) {
	l := newLab(t)
	n := labNode(t, l)
	if _, err := n.BindOutside("ens5", l.macNatA.String()); err != nil {
		t.Fatal(err)
	}
	f := n.DoctorFacts(context.Background())
	if !f.OnEC2 || f.VPCID != l.vpc || f.AZ != azA || f.SubnetID != l.pubA || f.ENIID != l.natAENI {
		t.Fatalf("facts = %+v", f)
	}
	if f.IGWAttached == nil || !*f.IGWAttached || f.IGWID != l.igw {
		t.Errorf("IGW = %v %q, want attached %s (err %q)", f.IGWAttached, f.IGWID, l.igw, f.IGWErr)
	}
	if f.SubnetRouteTable == nil || f.SubnetRouteTable.ID != l.rtbPub || f.SubnetRouteTable.DefaultGateway != l.igw {
		t.Errorf("subnet route table = %+v, want %s to %s (err %q)", f.SubnetRouteTable, l.rtbPub, l.igw, f.SubnetRouteTableErr)
	}
	var rtbA bool
	for _, rt := range f.PrivateRouteTables {
		if rt.ID == l.rtbA {
			rtbA = true
			if !rt.DefaultExists || rt.DefaultENI != l.natAENI || !slices.Equal(rt.AZs, []string{azA}) {
				t.Errorf("private table %s = %+v, want its default route to %s in %s", l.rtbA, rt, l.natAENI, azA)
			}
		}
	}
	if !rtbA || len(f.PrivateRouteTables) != 3 {
		t.Errorf("private route tables = %+v", f.PrivateRouteTables)
	}
	if f.SourceDestCheck == nil || !*f.SourceDestCheck || f.PublicIP != l.pubIPA.String() {
		t.Errorf("source/dest check = %v, public IP = %q", f.SourceDestCheck, f.PublicIP)
	}

	off := &Node{log: testLogger(t), message: "not on EC2"}
	if f := off.DoctorFacts(context.Background()); f.OnEC2 || f.IMDSErr != "not on EC2" {
		t.Errorf("off EC2: facts = %+v", f)
	}
	noClient := labNode(t, l)
	noClient.ec2, noClient.message = nil, "no credentials"
	if f := noClient.DoctorFacts(context.Background()); !f.OnEC2 || f.IGWErr != "no EC2 API client: no credentials" || f.PrivateRouteTablesErr != f.IGWErr {
		t.Errorf("without a client: facts = %+v", f)
	}
}

// TestNodeSourceDestCheckOnlyWhenManaged: with
// cloud.manage_source_dest_check false the node never touches the check
// and its status says so; with it true it keeps it off.
func TestNodeSourceDestCheckOnlyWhenManaged(t *testing.T) {
	for _, manage := range []bool{false, true} {
		l := newLab(t)
		isolateEnv(t)
		t.Setenv("AWS_ACCESS_KEY_ID", labCreds.AccessKeyID)
		t.Setenv("AWS_SECRET_ACCESS_KEY", labCreds.SecretAccessKey)
		n := DiscoverNode(context.Background(), testLogger(t), NodeOptions{Discover: true,
			IMDSEndpoint: l.imdsServer(t, l.natA, nil).URL, EC2Endpoint: l.srv.URL, ManageSourceDestCheck: manage})
		if _, err := n.BindOutside("ens5", l.macNatA.String()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		go n.KeepSourceDestCheckOff(ctx)
		deadline := time.Now().Add(2 * time.Second)
		for manage && l.calls("ModifyNetworkInterfaceAttribute") == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if !manage {
			time.Sleep(300 * time.Millisecond)
		}
		cancel()
		if got := l.calls("ModifyNetworkInterfaceAttribute"); (got > 0) != manage {
			t.Errorf("manage=%v: %d ModifyNetworkInterfaceAttribute calls", manage, got)
		}
		if st := n.Status().SourceDestCheck; strings.Contains(st, "not managed") == manage {
			t.Errorf("manage=%v: status says %q", manage, st)
		}
	}
}

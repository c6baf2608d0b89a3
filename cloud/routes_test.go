package cloud

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/hanat/hanat/internal/vpcsim/ec2sim"
)

func ids(rts []RouteTable) []string {
	out := make([]string, 0, len(rts))
	for _, rt := range rts {
		out = append(out, rt.ID)
	}
	slices.Sort(out)
	return out
}

func sorted(s ...string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestRouteTablesFilters(t *testing.T) {
	l := newLab(t)
	c := l.client(t)
	ctx := context.Background()
	other := l.m.AddVPC(netip.MustParsePrefix("10.1.0.0/16"), nil)
	otherRtb := l.m.AddRouteTable(other, true, map[string]string{"hanat": "x"})

	for _, tc := range []struct {
		name string
		f    RouteTableFilter
		want []string
	}{
		{"everything", RouteTableFilter{}, sorted(l.rtbMain, l.rtbPub, l.rtbA, l.rtbC, otherRtb)},
		{"vpc", RouteTableFilter{VPCID: l.vpc}, sorted(l.rtbMain, l.rtbPub, l.rtbA, l.rtbC)},
		{"ids", RouteTableFilter{IDs: []string{l.rtbA, l.rtbC}}, sorted(l.rtbA, l.rtbC)},
		{"subnet", RouteTableFilter{SubnetIDs: []string{l.privA}}, []string{l.rtbA}},
		{"subnets", RouteTableFilter{SubnetIDs: []string{l.privA, l.pubC}}, sorted(l.rtbA, l.rtbPub)},
		{"tag value", RouteTableFilter{Tags: map[string]string{"hanat": "c"}}, []string{l.rtbC}},
		{"tag any value in vpc", RouteTableFilter{VPCID: l.vpc, Tags: map[string]string{"hanat": ""}}, sorted(l.rtbA, l.rtbC)},
		{"two tags", RouteTableFilter{Tags: map[string]string{"hanat": "a", "Name": "private-a"}}, []string{l.rtbA}},
		{"main", RouteTableFilter{VPCID: l.vpc, Main: true}, []string{l.rtbMain}},
		{"no match", RouteTableFilter{VPCID: l.vpc, Tags: map[string]string{"nope": ""}}, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rts, err := c.RouteTables(ctx, tc.f)
			if err != nil {
				t.Fatal(err)
			}
			if got := ids(rts); !slices.Equal(got, tc.want) {
				t.Fatalf("RouteTables(%s) = %v, want %v", tc.f, got, tc.want)
			}
		})
	}

	rt, err := c.RouteTable(ctx, l.rtbA)
	if err != nil {
		t.Fatal(err)
	}
	def, ok := rt.DefaultRoute()
	if rt.VPCID != l.vpc || rt.Main || !slices.Equal(rt.SubnetIDs, []string{l.privA}) || rt.Tags["hanat"] != "a" ||
		!ok || def.NetworkInterfaceID != l.natAENI || def.InstanceID != l.natA || def.State != RouteActive || def.Target() != l.natAENI {
		t.Fatalf("route table A = %+v (default %+v, %v)", rt, def, ok)
	}
	local := rt.Routes[slices.IndexFunc(rt.Routes, func(r Route) bool { return r.GatewayID == "local" })]
	if local.Destination != netip.MustParsePrefix("10.0.0.0/16") || local.Origin != "CreateRouteTable" {
		t.Fatalf("local route = %+v", local)
	}
	pub, err := c.RouteTable(ctx, l.rtbPub)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Public() || rt.Public() {
		t.Fatalf("Public(): public table %v, private table %v", pub.Public(), rt.Public())
	}

	_, err = c.RouteTable(ctx, "rtb-0000000000000dead")
	if !IsNotFound(err) || !strings.Contains(err.Error(), "ec2 DescribeRouteTables ids=rtb-0000000000000dead") {
		t.Fatalf("unknown table: IsNotFound=%v, err %v", IsNotFound(err), err)
	}
}

func TestRouteTablesPagination(t *testing.T) {
	l := newLab(t)
	c := l.client(t)
	c.pageSize = 5 // the smallest page DescribeRouteTables accepts
	want := []string{l.rtbMain, l.rtbPub, l.rtbA, l.rtbC}
	for i := range 13 {
		want = append(want, l.m.AddRouteTable(l.vpc, false, map[string]string{"Name": fmt.Sprintf("extra-%d", i)}))
	}
	slices.Sort(want)
	before := l.requests("DescribeRouteTables")
	rts, err := c.RouteTables(context.Background(), RouteTableFilter{VPCID: l.vpc})
	if err != nil {
		t.Fatal(err)
	}
	if got := ids(rts); !slices.Equal(got, want) {
		t.Fatalf("got %d tables %v, want %d", len(got), got, len(want))
	}
	// 17 tables in pages of 5 take 4 pages; a transport-level retry of a
	// page (seen under load: the SDK retries a response whose body it
	// could not drain) may add a call, never remove one.
	if pages := l.requests("DescribeRouteTables") - before; pages < 4 {
		t.Fatalf("%d DescribeRouteTables calls for 17 tables in pages of 5, want at least 4", pages)
	}

	// Subnets paginate the same way.
	for i := range 7 {
		if l.m.AddSubnet(l.vpc, netip.MustParsePrefix(fmt.Sprintf("10.0.%d.0/24", 100+i)), azC, nil) == "" {
			t.Fatal("AddSubnet failed")
		}
	}
	before = l.requests("DescribeSubnets")
	subnets, err := c.Subnets(context.Background(), l.vpc)
	if err != nil {
		t.Fatal(err)
	}
	if len(subnets) != 11 || l.requests("DescribeSubnets")-before != 3 {
		t.Fatalf("%d subnets in %d calls, want 11 in 3", len(subnets), l.requests("DescribeSubnets")-before)
	}
}

func TestSubnetRouteTable(t *testing.T) {
	l := newLab(t)
	c := l.client(t)
	ctx := context.Background()
	bare := l.m.AddSubnet(l.vpc, netip.MustParsePrefix("10.0.13.0/24"), azA, nil)
	for _, tc := range []struct {
		name, subnet, want string
		main               bool
	}{
		{"explicit public", l.pubA, l.rtbPub, false},
		{"explicit private", l.privC, l.rtbC, false},
		{"falls back to main", bare, l.rtbMain, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt, err := c.SubnetRouteTable(ctx, l.vpc, tc.subnet)
			if err != nil {
				t.Fatal(err)
			}
			if rt.ID != tc.want || rt.Main != tc.main {
				t.Fatalf("SubnetRouteTable(%s) = %s (main %v), want %s (main %v)", tc.subnet, rt.ID, rt.Main, tc.want, tc.main)
			}
		})
	}
	if _, err := c.SubnetRouteTable(ctx, "", l.pubA); err == nil {
		t.Fatal("SubnetRouteTable without a VPC succeeded")
	}
}

func TestPrivateRouteTables(t *testing.T) {
	l := newLab(t)
	c := l.client(t)
	ctx := context.Background()

	got, err := c.PrivateRouteTables(ctx, l.vpc, azA)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(got), []string{l.rtbA}) {
		t.Fatalf("AZ A: %v, want [%s]", ids(got), l.rtbA)
	}
	got, err = c.PrivateRouteTables(ctx, l.vpc, azC)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(got), []string{l.rtbC}) {
		t.Fatalf("AZ C (no default route yet): %v, want [%s]", ids(got), l.rtbC)
	}

	// A subnet of AZ A without an association uses the main table, which
	// has no default route: it is one of AZ A's private tables too.
	bare := l.m.AddSubnet(l.vpc, netip.MustParsePrefix("10.0.13.0/24"), azA, nil)
	got, err = c.PrivateRouteTables(ctx, l.vpc, azA)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids(got), sorted(l.rtbA, l.rtbMain)) {
		t.Fatalf("AZ A with an implicit subnet: %v", ids(got))
	}
	for _, rt := range got {
		if rt.Main && !slices.Equal(rt.ImplicitSubnetIDs, []string{bare}) {
			t.Fatalf("main table implicit subnets = %v, want [%s]", rt.ImplicitSubnetIDs, bare)
		}
	}
	// A public table is never private, even for AZ C whose public subnet uses it.
	for _, rt := range got {
		if rt.ID == l.rtbPub {
			t.Fatal("the public table is listed as private")
		}
	}
	if _, err := c.PrivateRouteTables(ctx, l.vpc, ""); err == nil {
		t.Fatal("PrivateRouteTables without an AZ succeeded")
	}
	byAZ, err := c.PrivateRouteTablesByAZ(ctx, l.vpc)
	if err != nil {
		t.Fatal(err)
	}
	if len(byAZ) != 2 || !slices.Equal(ids(byAZ[azA]), sorted(l.rtbA, l.rtbMain)) || !slices.Equal(ids(byAZ[azC]), []string{l.rtbC}) {
		t.Fatalf("by AZ: A %v, C %v (%d zones)", ids(byAZ[azA]), ids(byAZ[azC]), len(byAZ))
	}
	if byAZ[azC][0].Tags["hanat"] != "c" {
		t.Fatalf("by AZ: tags not kept: %v", byAZ[azC][0].Tags)
	}
}

func TestEnsureDefaultRoute(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup prepares the lab and returns the table and ENI to ensure.
		setup      func(t *testing.T, l *lab) (rtb, eni string)
		wantAction string // the mutating call expected ("" = none)
	}{
		{"missing: CreateRoute", func(t *testing.T, l *lab) (string, string) { return l.rtbC, l.natCENI }, "CreateRoute"},
		{"elsewhere: ReplaceRoute", func(t *testing.T, l *lab) (string, string) { return l.rtbA, l.natCENI }, "ReplaceRoute"},
		{"already right: nothing", func(t *testing.T, l *lab) (string, string) { return l.rtbA, l.natAENI }, ""},
		{"blackhole: ReplaceRoute", func(t *testing.T, l *lab) (string, string) {
			if err := l.m.AddRouteNoFabric(l.rtbC, DefaultDestination, ec2sim.RouteTarget{NetworkInterfaceID: l.natCENI}); err != nil {
				t.Fatal(err)
			}
			if err := l.m.SetInstanceState(l.natC, ec2sim.InstanceStopped); err != nil {
				t.Fatal(err)
			}
			return l.rtbC, l.natAENI
		}, "ReplaceRoute"},
		{"blackhole to the same ENI: ReplaceRoute", func(t *testing.T, l *lab) (string, string) {
			if err := l.m.SetInstanceState(l.natA, ec2sim.InstanceStopped); err != nil {
				t.Fatal(err)
			}
			return l.rtbA, l.natAENI
		}, "ReplaceRoute"},
		{"from the IGW: ReplaceRoute", func(t *testing.T, l *lab) (string, string) { return l.rtbPub, l.natAENI }, "ReplaceRoute"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			c := l.client(t)
			ctx := context.Background()
			rtb, eni := tc.setup(t, l)
			before := l.m.Stats().ByAction
			changed, err := c.EnsureDefaultRoute(ctx, rtb, eni)
			if err != nil {
				t.Fatal(err)
			}
			after := l.m.Stats().ByAction
			if changed != (tc.wantAction != "") {
				t.Fatalf("changed = %v, want %v", changed, tc.wantAction != "")
			}
			for _, a := range []string{"CreateRoute", "ReplaceRoute"} {
				want := 0
				if a == tc.wantAction {
					want = 1
				}
				if n := after[a] - before[a]; n != want {
					t.Fatalf("%d %s calls, want %d", n, a, want)
				}
			}
			rt, err := c.RouteTable(ctx, rtb)
			if err != nil {
				t.Fatal(err)
			}
			if def, ok := rt.DefaultRoute(); !ok || def.NetworkInterfaceID != eni {
				t.Fatalf("default route after Ensure = %+v (%v), want -> %s", def, ok, eni)
			}
			if def, _ := rt.DefaultRoute(); def.State == RouteBlackhole {
				return // the simulator keeps a stopped instance's route a blackhole
			}
			// Idempotent: a second Ensure changes nothing and mutates nothing.
			mut := l.mutations()
			changed, err = c.EnsureDefaultRoute(ctx, rtb, eni)
			if err != nil || changed || l.mutations() != mut {
				t.Fatalf("second Ensure: changed=%v err=%v, %d new mutating calls", changed, err, l.mutations()-mut)
			}
		})
	}
}

func TestEnsureDefaultRouteErrors(t *testing.T) {
	l := newLab(t)
	c := l.client(t)
	ctx := context.Background()
	if _, err := c.EnsureDefaultRoute(ctx, "rtb-00000000000000bad", l.natAENI); !IsNotFound(err) {
		t.Fatalf("unknown table: %v", err)
	}
	_, err := c.EnsureDefaultRoute(ctx, l.rtbC, "eni-00000000000000bad")
	if !IsNotFound(err) || !strings.Contains(err.Error(), "ec2 CreateRoute "+l.rtbC+" 0.0.0.0/0 -> eni-00000000000000bad") {
		t.Fatalf("unknown ENI: IsNotFound=%v err=%v", IsNotFound(err), err)
	}
	if _, err := c.EnsureDefaultRoute(ctx, "", l.natAENI); err == nil {
		t.Fatal("empty table id accepted")
	}
}

// SetDefaultRoute acts on the caller's belief without a describe first;
// a wrong belief costs exactly the fallback calls.
func TestSetDefaultRoute(t *testing.T) {
	for _, tc := range []struct {
		name   string
		rtb    func(l *lab) (rtb, eni string)
		exists bool
		want   map[string]int // calls made, by action
	}{
		{"replace, route there", func(l *lab) (string, string) { return l.rtbA, l.natCENI }, true,
			map[string]int{"ReplaceRoute": 1}},
		{"create, route missing", func(l *lab) (string, string) { return l.rtbC, l.natCENI }, false,
			map[string]int{"CreateRoute": 1}},
		{"replace, but missing: describe and create", func(l *lab) (string, string) { return l.rtbC, l.natCENI }, true,
			map[string]int{"ReplaceRoute": 1, "DescribeRouteTables": 1, "CreateRoute": 1}},
		{"create, but there: replace", func(l *lab) (string, string) { return l.rtbA, l.natCENI }, false,
			map[string]int{"CreateRoute": 1, "ReplaceRoute": 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLab(t)
			c := l.client(t)
			ctx := context.Background()
			rtb, eni := tc.rtb(l)
			before := l.m.Stats().ByAction
			if err := c.SetDefaultRoute(ctx, rtb, eni, tc.exists); err != nil {
				t.Fatal(err)
			}
			after := l.m.Stats().ByAction
			for _, a := range []string{"CreateRoute", "ReplaceRoute", "DescribeRouteTables"} {
				if n := after[a] - before[a]; n != tc.want[a] {
					t.Errorf("%d %s calls, want %d", n, a, tc.want[a])
				}
			}
			rt, err := c.RouteTable(ctx, rtb)
			if err != nil {
				t.Fatal(err)
			}
			if def, ok := rt.DefaultRoute(); !ok || def.NetworkInterfaceID != eni {
				t.Fatalf("default route = %+v (%v), want -> %s", def, ok, eni)
			}
		})
	}
	l := newLab(t)
	c := l.client(t)
	if err := c.SetDefaultRoute(context.Background(), l.rtbA, "eni-00000000000000bad", true); err == nil {
		t.Fatal("unknown ENI accepted")
	}
	if err := c.SetDefaultRoute(context.Background(), "", l.natAENI, true); err == nil {
		t.Fatal("empty table id accepted")
	}
}

// DefaultRoutes answers every table it can describe: one unknown id costs
// a describe per table, not the whole answer.
func TestDefaultRoutes(t *testing.T) {
	l := newLab(t)
	c := l.client(t)
	ctx := context.Background()
	if err := l.m.SetInstanceState(l.natC, ec2sim.InstanceStopped); err != nil {
		t.Fatal(err)
	}
	if err := l.m.AddRouteNoFabric(l.rtbC, DefaultDestination, ec2sim.RouteTarget{NetworkInterfaceID: l.natCENI}); err != nil {
		t.Fatal(err)
	}
	want := map[string]DefaultRouteState{
		l.rtbA:    {Target: l.natAENI},
		l.rtbC:    {Target: l.natCENI, Blackhole: true},
		l.rtbPub:  {Target: l.igw},
		l.rtbMain: {},
	}
	const bad = "rtb-00000000000000bad"
	for _, tc := range []struct {
		name      string
		ids       []string
		describes int
	}{
		{"all known: one call", []string{l.rtbA, l.rtbC, l.rtbPub, l.rtbMain}, 1},
		{"one unknown: one by one", []string{l.rtbA, bad, l.rtbC, l.rtbPub, l.rtbMain}, 6},
	} {
		before := l.requests("DescribeRouteTables")
		got, err := c.DefaultRoutes(ctx, tc.ids)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !maps.Equal(got, want) {
			t.Errorf("%s: %v, want %v", tc.name, got, want)
		}
		if n := l.requests("DescribeRouteTables") - before; n != tc.describes {
			t.Errorf("%s: %d DescribeRouteTables calls, want %d", tc.name, n, tc.describes)
		}
	}
	if got, err := c.DefaultRoutes(ctx, []string{bad}); !IsNotFound(err) || got != nil {
		t.Errorf("only unknown ids: %v, %v; want a NotFound error", got, err)
	}
}

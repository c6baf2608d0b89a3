package cloud

import (
	"slices"
	"testing"
)

func TestClassifyRouteTables(t *testing.T) {
	def := func(eni, state string) []Route {
		return []Route{{Destination: DefaultDestination, NetworkInterfaceID: eni, State: state}}
	}
	tagged := map[string]string{"hanat": ""}
	rt := func(id string, tags map[string]string, routes []Route) RouteTable {
		return RouteTable{ID: id, Tags: tags, Routes: routes}
	}
	byAZ := map[string][]RouteTable{
		"az-a": {
			rt("rtb-a-self", nil, def("eni-a", RouteActive)),
			rt("rtb-a-peer", nil, def("eni-c", RouteActive)),
			rt("rtb-a-none", nil, nil),
			rt("rtb-a-dead", nil, def("eni-x", RouteBlackhole)),
			rt("rtb-a-other", nil, def("eni-x", RouteActive)),
			rt("rtb-a-natgw", nil, []Route{{Destination: DefaultDestination, NATGatewayID: "nat-1", State: RouteActive}}),
		},
		"az-c": {
			rt("rtb-c-dead", tagged, def("eni-c", RouteBlackhole)),
			rt("rtb-c-untagged-dead", nil, def("eni-c", RouteBlackhole)),
			rt("rtb-c-live-peer", tagged, def("eni-c", RouteActive)),
			rt("rtb-c-self", tagged, def("eni-a", RouteActive)),
			rt("rtb-c-other", tagged, def("eni-x", RouteActive)),
			rt("rtb-c-none", tagged, nil),
			rt("rtb-c-natgw", tagged, []Route{{Destination: DefaultDestination, NATGatewayID: "nat-1", State: RouteBlackhole}}),
		},
	}
	got := ClassifyRouteTables(byAZ, "az-a", "eni-a", "")
	if want := []string{"rtb-a-self", "rtb-a-none", "rtb-a-dead"}; !slices.Equal(got.Home, want) {
		t.Errorf("home (peer ENI unknown) = %v, want %v", got.Home, want)
	}
	if want := []string{"rtb-c-dead", "rtb-c-self"}; !slices.Equal(got.Backup, want) {
		t.Errorf("backup (peer ENI unknown) = %v, want %v", got.Backup, want)
	}
	got = ClassifyRouteTables(byAZ, "az-a", "eni-a", "eni-c")
	if want := []string{"rtb-a-self", "rtb-a-peer", "rtb-a-none", "rtb-a-dead"}; !slices.Equal(got.Home, want) {
		t.Errorf("home = %v, want %v", got.Home, want)
	}
	if want := []string{"rtb-c-dead", "rtb-c-live-peer", "rtb-c-self"}; !slices.Equal(got.Backup, want) {
		t.Errorf("backup = %v, want %v", got.Backup, want)
	}
	// A table used in both zones (the main table) is home, not backup.
	main := rt("rtb-main", tagged, def("eni-c", RouteBlackhole))
	byAZ["az-a"] = append(byAZ["az-a"], main)
	byAZ["az-c"] = append(byAZ["az-c"], main)
	got = ClassifyRouteTables(byAZ, "az-a", "eni-a", "")
	if !slices.Contains(got.Home, "rtb-main") || slices.Contains(got.Backup, "rtb-main") {
		t.Errorf("main table in both zones: home %v backup %v", got.Home, got.Backup)
	}
}

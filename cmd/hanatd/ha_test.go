package main

import (
	"slices"
	"testing"

	"github.com/hanat/hanat/cloud"
)

func TestClassifyRouteTables(t *testing.T) {
	def := func(eni, state string) []cloud.Route {
		return []cloud.Route{{Destination: cloud.DefaultDestination, NetworkInterfaceID: eni, State: state}}
	}
	tagged := map[string]string{"hanat": ""}
	rt := func(id string, tags map[string]string, routes []cloud.Route) cloud.RouteTable {
		return cloud.RouteTable{ID: id, Tags: tags, Routes: routes}
	}
	byAZ := map[string][]cloud.RouteTable{
		"az-a": {
			rt("rtb-a-self", nil, def("eni-a", cloud.RouteActive)),
			rt("rtb-a-peer", nil, def("eni-c", cloud.RouteActive)),
			rt("rtb-a-none", nil, nil),
			rt("rtb-a-dead", nil, def("eni-x", cloud.RouteBlackhole)),
			rt("rtb-a-other", nil, def("eni-x", cloud.RouteActive)),
			rt("rtb-a-natgw", nil, []cloud.Route{{Destination: cloud.DefaultDestination, NATGatewayID: "nat-1", State: cloud.RouteActive}}),
		},
		"az-c": {
			rt("rtb-c-dead", tagged, def("eni-c", cloud.RouteBlackhole)),
			rt("rtb-c-untagged-dead", nil, def("eni-c", cloud.RouteBlackhole)),
			rt("rtb-c-live-peer", tagged, def("eni-c", cloud.RouteActive)),
			rt("rtb-c-self", tagged, def("eni-a", cloud.RouteActive)),
			rt("rtb-c-other", tagged, def("eni-x", cloud.RouteActive)),
			rt("rtb-c-none", tagged, nil),
			rt("rtb-c-natgw", tagged, []cloud.Route{{Destination: cloud.DefaultDestination, NATGatewayID: "nat-1", State: cloud.RouteBlackhole}}),
		},
	}
	got := classifyRouteTables(byAZ, "az-a", "eni-a", "")
	if want := []string{"rtb-a-self", "rtb-a-none", "rtb-a-dead"}; !slices.Equal(got.Home, want) {
		t.Errorf("home (peer ENI unknown) = %v, want %v", got.Home, want)
	}
	if want := []string{"rtb-c-dead", "rtb-c-self"}; !slices.Equal(got.Backup, want) {
		t.Errorf("backup (peer ENI unknown) = %v, want %v", got.Backup, want)
	}
	got = classifyRouteTables(byAZ, "az-a", "eni-a", "eni-c")
	if want := []string{"rtb-a-self", "rtb-a-peer", "rtb-a-none", "rtb-a-dead"}; !slices.Equal(got.Home, want) {
		t.Errorf("home = %v, want %v", got.Home, want)
	}
	if want := []string{"rtb-c-dead", "rtb-c-live-peer", "rtb-c-self"}; !slices.Equal(got.Backup, want) {
		t.Errorf("backup = %v, want %v", got.Backup, want)
	}
	// A table used in both zones (the main table) is home, not backup.
	main := rt("rtb-main", tagged, def("eni-c", cloud.RouteBlackhole))
	byAZ["az-a"] = append(byAZ["az-a"], main)
	byAZ["az-c"] = append(byAZ["az-c"], main)
	got = classifyRouteTables(byAZ, "az-a", "eni-a", "")
	if !slices.Contains(got.Home, "rtb-main") || slices.Contains(got.Backup, "rtb-main") {
		t.Errorf("main table in both zones: home %v backup %v", got.Home, got.Backup)
	}
}

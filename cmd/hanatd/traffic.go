package main

import (
	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/traffic"
)

// trafficStatus is the NAT gateway's traffic metrics as the admin API
// shows them.
func trafficStatus(t traffic.Totals) admin.Traffic {
	tr := admin.Traffic{
		BytesInFromSource: t.BytesInFromSource, BytesOutToDestination: t.BytesOutToDestination,
		BytesInFromDestination: t.BytesInFromDestination, BytesOutToSource: t.BytesOutToSource,
		PacketsInFromSource: t.PacketsInFromSource, PacketsOutToDestination: t.PacketsOutToDestination,
		PacketsInFromDestination: t.PacketsInFromDestination, PacketsOutToSource: t.PacketsOutToSource,
		ConnectionAttempts: t.ConnectionAttempts, ConnectionsEstablished: t.ConnectionsEstablished,
		PortAllocationErrors: t.PortAllocationErrors, IdleTimeouts: t.IdleTimeouts,
		PacketsDropped: t.PacketsDropped, Fastpath: "off",
	}
	if t.FastpathIncluded {
		tr.Fastpath = "included"
	}
	return tr
}

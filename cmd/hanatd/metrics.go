package main

import (
	"context"
	"strings"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/metrics"
)

// metricsSource reads the same state `hanatctl status` shows and turns it
// into the NAT-gateway-shaped snapshot the exporter serves, so the two can
// never disagree.
func (b *backend) metricsSource(ctx context.Context) (metrics.Snapshot, error) {
	st, err := b.Status(ctx)
	if err != nil {
		return metrics.Snapshot{}, err
	}
	return snapshotFromStatus(st), nil
}

// snapshotFromStatus maps admin status onto metrics. Fields the daemon
// does not measure yet (per-direction byte and packet totals, port
// allocation errors, established and idle-timeout counts) stay zero.
func snapshotFromStatus(st admin.Status) metrics.Snapshot {
	c := st.Datapath.Counters
	s := metrics.Snapshot{
		ActiveConnections: uint64(st.Connections.Active),
		// Every packet of a flow in state NEW from a private source: a
		// TCP SYN (and its retransmissions), a first UDP datagram, an echo.
		ConnectionAttempts: c["forward_new_private"].Packets,
		PacketsDropped:     map[string]uint64{},
	}
	for name, v := range c {
		switch {
		case name == "drop_invalid":
			s.PacketsDropped["invalid"] += v.Packets
		case name == "drop_unsolicited":
			s.PacketsDropped["unsolicited"] += v.Packets
		case strings.HasPrefix(name, "input_drop"):
			s.PacketsDropped["host_input"] += v.Packets
		}
	}
	if fp := st.Datapath.FastpathDetail; st.Datapath.Fastpath != "" && st.Datapath.Fastpath != "off" {
		s.Fastpath = &metrics.FastpathSnapshot{Hits: fp.Hits, Misses: fp.Misses, OffloadedFlows: uint64(fp.OffloadedFlows)}
	}
	return s
}

package main

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/hanat/hanat/config"
)

// TestNATOf: what the configuration asks of the datapath before
// discovery fills in the rest (datapath.TestResolve).
func TestNATOf(t *testing.T) {
	nat := natOf(config.Default())
	if nat.PortMin != 1024 || nat.PortMax != 65535 || len(nat.PrivateCIDRs) != 0 || nat.OutsideIface != "" || len(nat.SNATAddrs) != 0 {
		t.Fatalf("nat = %+v", nat)
	}
	if nat.HostInput == nil || !slices.Equal(nat.HostInput.TCPPorts, []uint16{22}) {
		t.Fatalf("host input = %+v, want the default filter with tcp/22 open", nat.HostInput)
	}
	cfg := config.Default()
	cfg.HostInput.Filter = false
	if nat := natOf(cfg); nat.HostInput != nil {
		t.Fatalf("host input = %+v with host_input.filter false", nat.HostInput)
	}
}

// TestNATOfOffloadMark: the kernel marks the flows worth keeping (and
// shapes the events) when the fast path or the state sync reads them, and
// leaves the events alone when neither does.
func TestNATOfOffloadMark(t *testing.T) {
	peer := netip.MustParseAddr("10.0.2.10")
	for _, c := range []struct {
		name         string
		fast, synced bool
	}{
		{"fast path alone", true, false},
		{"fast path and sync", true, true},
		{"sync alone", false, true},
		{"neither", false, false},
	} {
		cfg := config.Default()
		cfg.Fastpath.Enabled = c.fast
		cfg.Fastpath.OffloadAfterPackets = 20
		if c.synced {
			cfg.HA.Peer = peer
		}
		nat := natOf(cfg)
		want := c.fast || c.synced
		if (nat.Offload != nil) != want || (want && nat.Offload.AfterPackets != 20) {
			t.Errorf("%s: Offload %+v, want one after 20 packets: %v", c.name, nat.Offload, want)
		}
	}
	cfg := config.Default()
	cfg.Fastpath.Enabled, cfg.HA.Peer, cfg.HA.Sync = false, peer, false
	if natOf(cfg).Offload != nil {
		t.Error("a pair with ha.sync false and no fast path: want the kernel's events left alone")
	}
}

package main

import (
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

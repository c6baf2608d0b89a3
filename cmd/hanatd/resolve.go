package main

import (
	"github.com/hanat/hanat/config"
	"github.com/hanat/hanat/datapath"
)

// natOf is the datapath the configuration asks for; what it leaves empty
// (private CIDRs, outside interface, SNAT addresses) datapath.Resolve
// fills in from discovery.
func natOf(cfg *config.Config) datapath.NAT {
	nat := datapath.NAT{
		PrivateCIDRs: cfg.PrivateCIDRs,
		SNATAddrs:    cfg.SNAT.Addresses,
		PortMin:      cfg.SNAT.Ports.Min,
		PortMax:      cfg.SNAT.Ports.Max,
		OutsideIface: cfg.Interfaces.Outside,
	}
	if cfg.HostInput.Filter {
		nat.HostInput = &datapath.HostInput{TCPPorts: cfg.HostInput.TCPPorts, UDPPorts: cfg.HostInput.UDPPorts}
	}
	if cfg.Fastpath.Enabled || syncConfigured(cfg) {
		// The kernel marks the flows worth offloading or streaming to
		// the peer (datapath.Offload): the offload engine takes only
		// those (package fastpath), the state sync learns of them from
		// that mark's event (flowsync), and a storm of short flows costs
		// either nothing but each flow's DESTROY event. Without the fast
		// path the mark only serves the sync.
		nat.Offload = &datapath.Offload{AfterPackets: uint64(cfg.Fastpath.OffloadAfterPackets)}
	}
	for _, pf := range cfg.PortForwards {
		nat.PortForwards = append(nat.PortForwards, datapath.PortForward{
			Protocol: pf.Protocol,
			Port:     pf.Port,
			To:       pf.To,
			Sources:  pf.Sources,
		})
	}
	return nat
}

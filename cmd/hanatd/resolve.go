package main

import (
	"fmt"
	"net/netip"

	"github.com/hanat/hanat/config"
	"github.com/hanat/hanat/datapath"
)

// rfc1918 is the fallback set of private CIDRs when neither the config nor
// the cloud (IMDS: the VPC's CIDR blocks) names them.
var rfc1918 = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
}

// discovered is what hanatd learned about the instance at run time.
type discovered struct {
	// OutsideIface and OutsideAddr: the interface holding the IPv4 default
	// route and its primary IPv4 address.
	OutsideIface string
	OutsideAddr  netip.Addr
	// IfaceAddr returns the primary IPv4 of a named interface (used when
	// the config names the outside interface).
	IfaceAddr func(name string) (netip.Addr, error)
	// VPCCIDRs from IMDS; empty outside EC2.
	VPCCIDRs []netip.Prefix
}

// resolveNAT turns the config plus discovery into the datapath's desired
// state. Config values always win over discovered ones. The returned notes
// say where each defaulted value came from, for the log and status.
func resolveNAT(cfg *config.Config, d discovered) (datapath.NAT, []string, error) {
	var notes []string
	nat := datapath.NAT{
		PortMin: cfg.SNAT.Ports.Min,
		PortMax: cfg.SNAT.Ports.Max,
	}
	switch {
	case len(cfg.PrivateCIDRs) > 0:
		nat.PrivateCIDRs = cfg.PrivateCIDRs
	case len(d.VPCCIDRs) > 0:
		nat.PrivateCIDRs = d.VPCCIDRs
		notes = append(notes, fmt.Sprintf("private CIDRs from the VPC: %v", d.VPCCIDRs))
	default:
		nat.PrivateCIDRs = rfc1918
		notes = append(notes, "no private_cidrs configured and no VPC discovered: NATing RFC 1918 sources")
	}

	nat.OutsideIface = cfg.Interfaces.Outside
	if nat.OutsideIface == "" {
		if d.OutsideIface == "" {
			return datapath.NAT{}, notes, fmt.Errorf("no outside interface: interfaces.outside is not set and there is no IPv4 default route")
		}
		nat.OutsideIface = d.OutsideIface
		notes = append(notes, fmt.Sprintf("outside interface %s holds the default route", d.OutsideIface))
	}

	switch {
	case len(cfg.SNAT.Addresses) > 0:
		nat.SNATAddrs = cfg.SNAT.Addresses
	case nat.OutsideIface == d.OutsideIface && d.OutsideAddr.IsValid():
		nat.SNATAddrs = []netip.Addr{d.OutsideAddr}
		notes = append(notes, fmt.Sprintf("SNAT address %s is the primary IPv4 of %s", d.OutsideAddr, nat.OutsideIface))
	default:
		if d.IfaceAddr == nil {
			return datapath.NAT{}, notes, fmt.Errorf("no SNAT address: snat.addresses is not set and interface %s has no IPv4 address", nat.OutsideIface)
		}
		a, err := d.IfaceAddr(nat.OutsideIface)
		if err != nil {
			return datapath.NAT{}, notes, fmt.Errorf("no SNAT address: snat.addresses is not set and interface %s: %w", nat.OutsideIface, err)
		}
		nat.SNATAddrs = []netip.Addr{a}
		notes = append(notes, fmt.Sprintf("SNAT address %s is the primary IPv4 of %s", a, nat.OutsideIface))
	}

	if cfg.HostInput.Filter {
		nat.HostInput = &datapath.HostInput{TCPPorts: cfg.HostInput.TCPPorts, UDPPorts: cfg.HostInput.UDPPorts}
	}
	if cfg.Fastpath.Enabled {
		// The kernel marks the flows worth offloading (datapath.Offload);
		// the offload engine takes only those (fastpath.go).
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
	return nat, notes, nil
}

package datapath

import (
	"context"
	"fmt"
	"net/netip"
)

// RFC1918 is the fallback set of private CIDRs when neither the config
// nor the cloud (IMDS: the VPC's CIDR blocks) names them.
var RFC1918 = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.168.0.0/16"),
}

// Discovered is what the NAT learned about the instance at run time.
type Discovered struct {
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

// Discover finds the interface holding the IPv4 default route and its
// primary address (VPCCIDRs are the cloud's to add).
func Discover(ctx context.Context) (Discovered, error) {
	d := Discovered{IfaceAddr: PrimaryIPv4}
	iface, addr, err := DefaultRoute(ctx, nil)
	d.OutsideIface, d.OutsideAddr = iface, addr
	return d, err
}

// Resolve fills in what want leaves empty (the private CIDRs, the outside
// interface, the SNAT addresses) from discovery: configured values always
// win over discovered ones. The returned notes say where each defaulted
// value came from, for the log and status.
func Resolve(want NAT, d Discovered) (NAT, []string, error) {
	var notes []string
	nat := want
	switch {
	case len(want.PrivateCIDRs) > 0:
	case len(d.VPCCIDRs) > 0:
		nat.PrivateCIDRs = d.VPCCIDRs
		notes = append(notes, fmt.Sprintf("private CIDRs from the VPC: %v", d.VPCCIDRs))
	default:
		nat.PrivateCIDRs = RFC1918
		notes = append(notes, "no private_cidrs configured and no VPC discovered: NATing RFC 1918 sources")
	}

	if nat.OutsideIface == "" {
		if d.OutsideIface == "" {
			return NAT{}, notes, fmt.Errorf("no outside interface: interfaces.outside is not set and there is no IPv4 default route")
		}
		nat.OutsideIface = d.OutsideIface
		notes = append(notes, fmt.Sprintf("outside interface %s holds the default route", d.OutsideIface))
	}

	switch {
	case len(want.SNATAddrs) > 0:
	case nat.OutsideIface == d.OutsideIface && d.OutsideAddr.IsValid():
		nat.SNATAddrs = []netip.Addr{d.OutsideAddr}
		notes = append(notes, fmt.Sprintf("SNAT address %s is the primary IPv4 of %s", d.OutsideAddr, nat.OutsideIface))
	default:
		if d.IfaceAddr == nil {
			return NAT{}, notes, fmt.Errorf("no SNAT address: snat.addresses is not set and interface %s has no IPv4 address", nat.OutsideIface)
		}
		a, err := d.IfaceAddr(nat.OutsideIface)
		if err != nil {
			return NAT{}, notes, fmt.Errorf("no SNAT address: snat.addresses is not set and interface %s: %w", nat.OutsideIface, err)
		}
		nat.SNATAddrs = []netip.Addr{a}
		notes = append(notes, fmt.Sprintf("SNAT address %s is the primary IPv4 of %s", a, nat.OutsideIface))
	}
	return nat, notes, nil
}

package datapath

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Default SNAT source port range, the one the AWS NAT gateway uses.
const (
	DefaultPortMin uint16 = 1024
	DefaultPortMax uint16 = 65535
)

// NAT is the desired slow path: which sources are NATed, to which SNAT
// addresses, and which ports are forwarded inwards.
type NAT struct {
	// PrivateCIDRs are the sources that are allowed through the NAT and
	// SNATed on the way out. At least one; IPv4 only.
	PrivateCIDRs []netip.Prefix
	// SNATAddrs are the NAT's own addresses that private sources are
	// translated to. At least one; IPv4 only. With several, each private
	// source is mapped to one of them by a hash of its address, so a host
	// keeps the same public address for all its flows.
	SNATAddrs []netip.Addr
	// Zones SNAT the sources of particular subnets to addresses of their
	// own, ahead of SNATAddrs: an HA pair's node serving its peer's zone
	// translates that zone's subnets to the address carrying the zone's
	// Elastic IP, so each zone keeps its public IP whichever node serves
	// it. Their sources must lie inside PrivateCIDRs.
	Zones []ZoneSNAT
	// PortMin and PortMax bound the SNAT source ports of TCP and UDP flows.
	// Both zero means DefaultPortMin-DefaultPortMax.
	PortMin, PortMax uint16
	// OutsideIface restricts SNAT to packets leaving through this interface.
	// Empty means SNAT whatever the output interface.
	OutsideIface string
	// PortForwards are DNAT rules from a port on the SNAT addresses to a
	// private host.
	PortForwards []PortForward
	// HostInput, when set, filters IPv4 traffic addressed to the NAT
	// itself (chain input); nil leaves input traffic alone.
	HostInput *HostInput
	// Offload, when set, selects the flows the fast path should carry
	// and the state sync stream, and shapes the conntrack events the
	// offload engine and the sync read (see Offload). nil: neither runs,
	// conntrack events untouched.
	Offload *Offload
}

// ZoneSNAT translates the flows from Sources to Addr.
type ZoneSNAT struct {
	Sources []netip.Prefix
	Addr    netip.Addr
}

// AllSNATAddrs are the addresses the NAT translates to: SNATAddrs, then
// the zones' addresses.
func (n NAT) AllSNATAddrs() []netip.Addr {
	out := slices.Clone(n.SNATAddrs)
	for _, z := range n.Zones {
		if !slices.Contains(out, z.Addr) {
			out = append(out, z.Addr)
		}
	}
	return out
}

// Offload is how the kernel hands hanat's SNAT flows to the fast path.
//
// A connection storm of short flows must not cost the NAT anything beyond
// its slow path, so the kernel, not userspace, picks the flows worth
// offloading: a flow's conntrack events are limited to DESTROY when it is
// created (no NEW, no state changes: nothing for the engine to decode);
// once it is established and has carried AfterPackets packets (both
// directions, conntrack accounting), one rule sets CtMarkOffload and
// CtLabelOffload on it and widens its events to label, assured, protoinfo
// and destroy. The label change is the one event that tells the engine to
// offload the flow (the event carries the mark); later TCP state changes
// (FIN, RST) and the DESTROY follow as usual. Short flows — DNS
// lookups, small HTTP requests — stay in the slow path, where they are
// cheapest, and cost the engine one DESTROY event at most.
//
// Port-forwarded (DNAT) flows keep the kernel's full events.
type Offload struct {
	// AfterPackets is the number of packets (both directions) an
	// established flow must have carried before it is offloaded; 0 offloads
	// at its first established packet. Needs net.netfilter.nf_conntrack_acct
	// = 1 (hanat sets it); without accounting no flow is offloaded.
	AfterPackets uint64
}

// DefaultOffloadAfterPackets is the default Offload.AfterPackets: more
// than a TCP handshake, a small request, its answer and the teardown.
const DefaultOffloadAfterPackets = 16

// HostInput opens the NAT instance itself only to what it needs, as the NAT
// gateway accepts no unsolicited inbound. Loopback, replies, ICMP, IPv6
// (not filtered by hanat), port-forwarded flows and sources inside
// PrivateCIDRs always pass; from elsewhere only these ports are open.
type HostInput struct {
	TCPPorts []uint16
	UDPPorts []uint16
}

// PortForward sends new connections to Port (on any SNAT address) on to To.
type PortForward struct {
	Protocol string // "tcp" or "udp"
	Port     uint16 // on the SNAT addresses; 1-65535
	// To is the private host and port. A zero port means the same as Port.
	To netip.AddrPort
	// Sources restricts who may use the forward; empty means anyone.
	Sources []netip.Prefix
}

// Name is the forward's rule name, e.g. "dnat_tcp_8080"; Counters uses it.
func (pf PortForward) Name() string {
	return fmt.Sprintf("dnat_%s_%d", pf.Protocol, pf.Port)
}

// maxIfaceLen is IFNAMSIZ-1.
const maxIfaceLen = 15

// normalize validates n and returns a copy with defaults filled in and
// prefixes masked. Errors name the field and the value.
func (n NAT) normalize() (NAT, error) {
	var errs []error
	out := NAT{OutsideIface: n.OutsideIface}

	if len(n.PrivateCIDRs) == 0 {
		errs = append(errs, errors.New("PrivateCIDRs: at least one private CIDR is required"))
	}
	for i, p := range n.PrivateCIDRs {
		if !p.IsValid() || !p.Addr().Is4() {
			errs = append(errs, fmt.Errorf("PrivateCIDRs[%d] %q: not an IPv4 prefix", i, p))
			continue
		}
		out.PrivateCIDRs = append(out.PrivateCIDRs, p.Masked())
	}

	if len(n.SNATAddrs) == 0 {
		errs = append(errs, errors.New("SNATAddrs: at least one SNAT address is required"))
	}
	seen := make(map[netip.Addr]bool)
	for i, a := range n.SNATAddrs {
		switch {
		case !a.Is4():
			errs = append(errs, fmt.Errorf("SNATAddrs[%d] %q: not an IPv4 address", i, a))
		case a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
			errs = append(errs, fmt.Errorf("SNATAddrs[%d] %q: not a unicast address", i, a))
		case seen[a]:
			errs = append(errs, fmt.Errorf("SNATAddrs[%d] %q: duplicate", i, a))
		default:
			seen[a] = true
			out.SNATAddrs = append(out.SNATAddrs, a)
		}
	}

	zoneErrs := normalizeZones(n.Zones, out.PrivateCIDRs, &out)
	errs = append(errs, zoneErrs...)

	out.PortMin, out.PortMax = n.PortMin, n.PortMax
	if out.PortMin == 0 && out.PortMax == 0 {
		out.PortMin, out.PortMax = DefaultPortMin, DefaultPortMax
	}
	switch {
	case out.PortMin == 0:
		errs = append(errs, fmt.Errorf("PortMin 0 (PortMax %d): ports start at 1", out.PortMax))
	case out.PortMin > out.PortMax:
		errs = append(errs, fmt.Errorf("PortMin %d > PortMax %d", out.PortMin, out.PortMax))
	}

	if err := validIfaceName(n.OutsideIface); n.OutsideIface != "" && err != nil {
		errs = append(errs, fmt.Errorf("OutsideIface %q: %w", n.OutsideIface, err))
	}

	fwdSeen := make(map[string]int)
	for i, pf := range n.PortForwards {
		npf, err := pf.normalize()
		if err != nil {
			errs = append(errs, fmt.Errorf("PortForwards[%d]: %w", i, err))
			continue
		}
		if j, dup := fwdSeen[npf.Name()]; dup {
			errs = append(errs, fmt.Errorf("PortForwards[%d] %s/%d: duplicates PortForwards[%d]", i, npf.Protocol, npf.Port, j))
			continue
		}
		fwdSeen[npf.Name()] = i
		out.PortForwards = append(out.PortForwards, npf)
	}
	if n.HostInput != nil {
		hi := &HostInput{}
		for _, l := range []struct {
			name string
			in   []uint16
			out  *[]uint16
		}{{"TCPPorts", n.HostInput.TCPPorts, &hi.TCPPorts}, {"UDPPorts", n.HostInput.UDPPorts, &hi.UDPPorts}} {
			for i, p := range l.in {
				if p == 0 {
					errs = append(errs, fmt.Errorf("HostInput.%s[%d] 0: want 1-65535", l.name, i))
					continue
				}
				*l.out = append(*l.out, p)
			}
			slices.Sort(*l.out)
			*l.out = slices.Compact(*l.out)
		}
		out.HostInput = hi
	}
	if n.Offload != nil {
		o := *n.Offload
		out.Offload = &o
	}
	if len(errs) > 0 {
		return NAT{}, errors.Join(errs...)
	}
	return out, nil
}

func (pf PortForward) normalize() (PortForward, error) {
	out := PortForward{Protocol: strings.ToLower(pf.Protocol), Port: pf.Port}
	if out.Protocol != "tcp" && out.Protocol != "udp" {
		return out, fmt.Errorf("Protocol %q: want tcp or udp", pf.Protocol)
	}
	if pf.Port == 0 {
		return out, fmt.Errorf("%s Port 0: want 1-65535", out.Protocol)
	}
	if !pf.To.Addr().Is4() {
		return out, fmt.Errorf("%s/%d To %q: not an IPv4 address and port", out.Protocol, pf.Port, pf.To)
	}
	if a := pf.To.Addr(); a.IsUnspecified() || a.IsMulticast() {
		return out, fmt.Errorf("%s/%d To %q: not a unicast address", out.Protocol, pf.Port, pf.To)
	}
	out.To = pf.To
	if out.To.Port() == 0 {
		out.To = netip.AddrPortFrom(pf.To.Addr(), pf.Port)
	}
	for i, p := range pf.Sources {
		if !p.IsValid() || !p.Addr().Is4() {
			return out, fmt.Errorf("%s/%d Sources[%d] %q: not an IPv4 prefix", out.Protocol, pf.Port, i, p)
		}
		out.Sources = append(out.Sources, p.Masked())
	}
	return out, nil
}

func validIfaceName(name string) error {
	if name == "" || len(name) > maxIfaceLen {
		return fmt.Errorf("interface name must be 1-%d bytes", maxIfaceLen)
	}
	if name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n\x00*") {
		return errors.New("invalid characters in interface name")
	}
	return nil
}

// normalizeZones validates the zones against the private CIDRs and adds
// them, masked, to out.
func normalizeZones(zones []ZoneSNAT, private []netip.Prefix, out *NAT) []error {
	var errs []error
	inPrivate := func(p netip.Prefix) bool {
		for _, c := range private {
			if c.Bits() <= p.Bits() && c.Contains(p.Addr()) {
				return true
			}
		}
		return false
	}
	for i, z := range zones {
		bad := false
		if !z.Addr.Is4() || z.Addr.IsUnspecified() || z.Addr.IsMulticast() {
			errs = append(errs, fmt.Errorf("Zones[%d].Addr %q: not a unicast IPv4 address", i, z.Addr))
			bad = true
		}
		if len(z.Sources) == 0 {
			errs = append(errs, fmt.Errorf("Zones[%d] (%s): no sources", i, z.Addr))
			bad = true
		}
		nz := ZoneSNAT{Addr: z.Addr}
		for j, p := range z.Sources {
			switch {
			case !p.IsValid() || !p.Addr().Is4():
				errs = append(errs, fmt.Errorf("Zones[%d].Sources[%d] %q: not an IPv4 prefix", i, j, p))
				bad = true
			case !inPrivate(p.Masked()):
				errs = append(errs, fmt.Errorf("Zones[%d].Sources[%d] %s: not inside the private CIDRs %v", i, j, p, private))
				bad = true
			default:
				nz.Sources = append(nz.Sources, p.Masked())
			}
		}
		if !bad {
			out.Zones = append(out.Zones, nz)
		}
	}
	return errs
}

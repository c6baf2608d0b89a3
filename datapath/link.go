package datapath

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNoDefaultRoute is returned by DefaultRoute when the main route table
// has no IPv4 default route.
var ErrNoDefaultRoute = errors.New("no IPv4 default route")

// DefaultRoute finds the interface holding the IPv4 default route of the
// main route table (the lowest metric when there are several) and its
// primary IPv4 address: the route's preferred source when it has one, else
// the interface's first global, non-secondary IPv4 address. h selects the
// namespace; nil means the calling thread's.
func DefaultRoute(ctx context.Context, h *netlink.Handle) (iface string, src netip.Addr, err error) {
	if err := ctx.Err(); err != nil {
		return "", netip.Addr{}, fmt.Errorf("default route: %w", err)
	}
	if h == nil {
		if h, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
			return "", netip.Addr{}, fmt.Errorf("netlink.NewHandle: %w", err)
		}
		defer h.Close()
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return "", netip.Addr{}, fmt.Errorf("netlink route list (main, ipv4): %w", err)
	}
	var best *netlink.Route
	for i := range routes {
		r := &routes[i]
		if r.Type != unix.RTN_UNICAST || (r.Dst != nil && !isDefaultDst(r)) {
			continue
		}
		if RouteLinkIndex(r) == 0 {
			continue
		}
		if best == nil || r.Priority < best.Priority {
			best = r
		}
	}
	if best == nil {
		return "", netip.Addr{}, ErrNoDefaultRoute
	}
	link, err := h.LinkByIndex(RouteLinkIndex(best))
	if err != nil {
		return "", netip.Addr{}, fmt.Errorf("netlink link by index %d (default route): %w", RouteLinkIndex(best), err)
	}
	iface = link.Attrs().Name
	if a, ok := netip.AddrFromSlice(best.Src); ok && a.Unmap().Is4() && !a.IsUnspecified() {
		return iface, a.Unmap(), nil
	}
	addrs, err := interfaceAddrs(h, link)
	if err != nil {
		return iface, netip.Addr{}, err
	}
	for _, a := range addrs {
		if a.Scope == unix.RT_SCOPE_UNIVERSE && a.Flags&unix.IFA_F_SECONDARY == 0 {
			if p, ok := addrPrefix(a); ok {
				return iface, p.Addr(), nil
			}
		}
	}
	return iface, netip.Addr{}, fmt.Errorf("default route via %s: no global IPv4 address on the interface", iface)
}

func isDefaultDst(r *netlink.Route) bool {
	ones, _ := r.Dst.Mask.Size()
	return ones == 0
}

// RouteLinkIndex is the output interface, or the first nexthop's for a
// multipath route.
func RouteLinkIndex(r *netlink.Route) int {
	if r.LinkIndex != 0 {
		return r.LinkIndex
	}
	for _, nh := range r.MultiPath {
		if nh.LinkIndex != 0 {
			return nh.LinkIndex
		}
	}
	return 0
}

// InterfaceIPv4s lists the IPv4 addresses (with prefix length) on iface,
// primary addresses first, in the kernel's order. h nil means the calling
// thread's namespace.
func InterfaceIPv4s(h *netlink.Handle, iface string) ([]netip.Prefix, error) {
	if h == nil {
		var err error
		if h, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
			return nil, fmt.Errorf("netlink.NewHandle: %w", err)
		}
		defer h.Close()
	}
	link, err := h.LinkByName(iface)
	if err != nil {
		return nil, fmt.Errorf("netlink link by name %q: %w", iface, err)
	}
	addrs, err := interfaceAddrs(h, link)
	if err != nil {
		return nil, err
	}
	// Stable: primaries keep their order, secondaries follow.
	slices.SortStableFunc(addrs, func(a, b netlink.Addr) int {
		as, bs := a.Flags&unix.IFA_F_SECONDARY != 0, b.Flags&unix.IFA_F_SECONDARY != 0
		switch {
		case as == bs:
			return 0
		case bs:
			return -1
		default:
			return 1
		}
	})
	out := make([]netip.Prefix, 0, len(addrs))
	for _, a := range addrs {
		if p, ok := addrPrefix(a); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

func interfaceAddrs(h *netlink.Handle, link netlink.Link) ([]netlink.Addr, error) {
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("netlink addr list %q: %w", link.Attrs().Name, err)
	}
	return addrs, nil
}

func addrPrefix(a netlink.Addr) (netip.Prefix, bool) {
	if a.IPNet == nil {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(a.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ip = ip.Unmap()
	if !ip.Is4() {
		return netip.Prefix{}, false
	}
	ones, bits := a.Mask.Size()
	if bits != 32 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(ip, ones), true
}

// PrimaryIPv4 is the first IPv4 address of the interface called name in
// the calling thread's namespace.
func PrimaryIPv4(name string) (netip.Addr, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("netlink.NewHandle: %w", err)
	}
	defer h.Close()
	pfx, err := InterfaceIPv4s(h, name)
	if err != nil {
		return netip.Addr{}, err
	}
	if len(pfx) == 0 {
		return netip.Addr{}, fmt.Errorf("interface %s has no IPv4 address", name)
	}
	return pfx[0].Addr(), nil
}

// EnsureAddress puts addr (as a /32) on the interface called name in the
// calling thread's namespace, unless the interface has it already: on EC2
// a secondary private IP the API assigned is not configured in the OS by
// itself.
func EnsureAddress(name string, addr netip.Addr) (added bool, err error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return false, fmt.Errorf("netlink.NewHandle: %w", err)
	}
	defer h.Close()
	have, err := InterfaceIPv4s(h, name)
	if err != nil {
		return false, err
	}
	for _, p := range have {
		if p.Addr() == addr {
			return false, nil
		}
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return false, fmt.Errorf("link %s: %w", name, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(32, 32)}}
	if err := h.AddrAdd(l, a); err != nil {
		return false, fmt.Errorf("add %s/32 to %s: %w", addr, name, err)
	}
	return true, nil
}

// HardwareAddr is the MAC address of the interface called name in the
// calling thread's namespace (how the cloud knows it: an ENI by MAC).
func HardwareAddr(name string) (string, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return "", fmt.Errorf("outside interface %s: %w", name, err)
	}
	return l.Attrs().HardwareAddr.String(), nil
}

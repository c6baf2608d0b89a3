package fastpath

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Path is how the NAT forwards packets of one flow direction: the interface
// they arrive on, the one they leave by, the Ethernet addresses to write
// and the egress MTU. The offload engine turns it into a fast-path flow
// action.
type Path struct {
	InIfindex, OutIfindex uint32
	SrcMAC, DstMAC        net.HardwareAddr
	MTU                   uint16
}

// ErrNeighbourUnresolved is wrapped by PathResolver.Resolve when the next
// hop's MAC address is not (yet) known to the kernel: the flow must not be
// offloaded now, and a later try may succeed once the slow path has
// resolved it. It is never answered with a guessed MAC.
var ErrNeighbourUnresolved = errors.New("neighbour not resolved")

// ErrNotFastPathPort is wrapped by PathResolver.Resolve when the packets
// arrive on or leave by an interface the fast path does not run on.
var ErrNotFastPathPort = errors.New("interface not on the fast path")

// PathResolver looks paths up in the kernel's route and neighbour tables
// (netlink RTM_GETROUTE and RTM_GETNEIGH) of one network namespace.
type PathResolver struct {
	h        *netlink.Handle
	attached func(ifindex int) bool
}

// NewPathResolver returns a resolver using h (nil: the calling thread's
// namespace at the time of each call). attached, when not nil, says which
// interfaces run the fast path; paths through others fail with
// ErrNotFastPathPort.
func NewPathResolver(h *netlink.Handle, attached func(ifindex int) bool) *PathResolver {
	return &PathResolver{h: h, attached: attached}
}

// Resolve finds the path of packets from src to dst that the NAT forwards
// (dst is the destination after DNAT, src the source before SNAT: the
// addresses the kernel routes on). The ingress interface is the one the
// route back to src uses; the egress interface and next hop come from a
// forwarding lookup (`ip route get DST from SRC iif IN`), so policy routing
// is honoured; the next hop's MAC comes from the neighbour table and must
// be in a usable state (reachable, stale, delay, probe or permanent).
func (r *PathResolver) Resolve(ctx context.Context, src, dst netip.Addr) (Path, error) {
	if err := ctx.Err(); err != nil {
		return Path{}, fmt.Errorf("resolve path %s -> %s: %w", src, dst, err)
	}
	src, dst = src.Unmap(), dst.Unmap()
	if !src.Is4() || !dst.Is4() {
		return Path{}, fmt.Errorf("resolve path %s -> %s: IPv4 only", src, dst)
	}
	h := r.h
	if h == nil {
		var err error
		if h, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
			return Path{}, fmt.Errorf("netlink.NewHandle: %w", err)
		}
		defer h.Close()
	}
	back, err := h.RouteGet(net.IP(src.AsSlice()))
	if err != nil || len(back) == 0 {
		return Path{}, fmt.Errorf("resolve path %s -> %s: route get %s: %w", src, dst, src, orNoRoute(err))
	}
	inIdx := back[0].LinkIndex
	if inIdx == 0 {
		return Path{}, fmt.Errorf("resolve path %s -> %s: route to %s has no interface", src, dst, src)
	}
	inLink, err := h.LinkByIndex(inIdx)
	if err != nil {
		return Path{}, fmt.Errorf("resolve path %s -> %s: link by index %d: %w", src, dst, inIdx, err)
	}
	fwd, err := h.RouteGetWithOptions(net.IP(dst.AsSlice()), &netlink.RouteGetOptions{
		Iif:     inLink.Attrs().Name,
		SrcAddr: net.IP(src.AsSlice()),
	})
	if err != nil || len(fwd) == 0 {
		return Path{}, fmt.Errorf("resolve path %s -> %s: route get %s from %s iif %s: %w",
			src, dst, dst, src, inLink.Attrs().Name, orNoRoute(err))
	}
	rt := fwd[0]
	if rt.Type != unix.RTN_UNICAST {
		return Path{}, fmt.Errorf("resolve path %s -> %s: route type %d is not unicast", src, dst, rt.Type)
	}
	outIdx := rt.LinkIndex
	if outIdx == 0 {
		return Path{}, fmt.Errorf("resolve path %s -> %s: forwarding route has no interface", src, dst)
	}
	if r.attached != nil && (!r.attached(inIdx) || !r.attached(outIdx)) {
		return Path{}, fmt.Errorf("resolve path %s -> %s: in ifindex %d, out ifindex %d: %w", src, dst, inIdx, outIdx, ErrNotFastPathPort)
	}
	outLink := inLink
	if outIdx != inIdx {
		if outLink, err = h.LinkByIndex(outIdx); err != nil {
			return Path{}, fmt.Errorf("resolve path %s -> %s: link by index %d: %w", src, dst, outIdx, err)
		}
	}
	attrs := outLink.Attrs()
	if len(attrs.HardwareAddr) != 6 {
		return Path{}, fmt.Errorf("resolve path %s -> %s: egress %s has no Ethernet address", src, dst, attrs.Name)
	}
	nh := dst
	if gw, ok := netip.AddrFromSlice(rt.Gw); ok && !gw.Unmap().IsUnspecified() {
		nh = gw.Unmap()
	}
	mac, err := neighbourMAC(h, outIdx, nh)
	if err != nil {
		return Path{}, fmt.Errorf("resolve path %s -> %s: next hop %s on %s: %w", src, dst, nh, attrs.Name, err)
	}
	mtu := attrs.MTU
	if rt.MTU > 0 && rt.MTU < mtu {
		mtu = rt.MTU
	}
	if mtu <= 0 || mtu > 0xffff {
		return Path{}, fmt.Errorf("resolve path %s -> %s: egress %s MTU %d out of range", src, dst, attrs.Name, mtu)
	}
	return Path{
		InIfindex:  uint32(inIdx),
		OutIfindex: uint32(outIdx),
		SrcMAC:     append(net.HardwareAddr(nil), attrs.HardwareAddr...),
		DstMAC:     mac,
		MTU:        uint16(mtu),
	}, nil
}

func orNoRoute(err error) error {
	if err == nil {
		return errors.New("no route")
	}
	return err
}

// usableNUD are the neighbour states whose link-layer address the kernel
// itself would send to.
const usableNUD = unix.NUD_REACHABLE | unix.NUD_STALE | unix.NUD_DELAY | unix.NUD_PROBE | unix.NUD_PERMANENT

// neighbourMAC returns the MAC of ip on ifindex from the neighbour table.
func neighbourMAC(h *netlink.Handle, ifindex int, ip netip.Addr) (net.HardwareAddr, error) {
	neighs, err := h.NeighList(ifindex, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("neighbour list: %w", err)
	}
	for _, n := range neighs {
		a, ok := netip.AddrFromSlice(n.IP)
		if !ok || a.Unmap() != ip {
			continue
		}
		if n.State&usableNUD == 0 {
			return nil, fmt.Errorf("state %#x: %w", n.State, ErrNeighbourUnresolved)
		}
		if len(n.HardwareAddr) != 6 || isZeroMAC(n.HardwareAddr) {
			return nil, fmt.Errorf("link-layer address %q: %w", n.HardwareAddr, ErrNeighbourUnresolved)
		}
		return append(net.HardwareAddr(nil), n.HardwareAddr...), nil
	}
	return nil, fmt.Errorf("no entry: %w", ErrNeighbourUnresolved)
}

func isZeroMAC(m net.HardwareAddr) bool {
	for _, b := range m {
		if b != 0 {
			return false
		}
	}
	return true
}

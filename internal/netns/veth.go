package netns

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// Veth creates a veth pair inside n named local, with its peer moved
// straight into peer as peerName (nothing appears in the host namespace),
// gives each end its address and brings both up. When gw is valid, peer
// gets a default route via gw.
func (n *NS) Veth(local string, localAddr netip.Prefix, peer *NS, peerName string, peerAddr netip.Prefix, gw netip.Addr) error {
	err := n.Do(func() error {
		v := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: local},
			PeerName:      peerName,
			PeerNamespace: netlink.NsFd(peer.FD()),
		}
		if err := netlink.LinkAdd(v); err != nil {
			return fmt.Errorf("add veth %s/%s: %w", local, peerName, err)
		}
		return AddrUp(local, localAddr)
	})
	if err != nil {
		return fmt.Errorf("netns %s: %w", n.Name, err)
	}
	err = peer.Do(func() error {
		if err := AddrUp(peerName, peerAddr); err != nil {
			return err
		}
		if !gw.IsValid() {
			return nil
		}
		if err := netlink.RouteAdd(&netlink.Route{Gw: net.IP(gw.AsSlice())}); err != nil {
			return fmt.Errorf("default route via %s: %w", gw, err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("netns %s: %w", peer.Name, err)
	}
	return nil
}

// AddrUp adds an IPv4 address to the named link of the calling thread's
// namespace and brings the link up (call it inside Do).
func AddrUp(name string, p netip.Prefix) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("link %s: %w", name, err)
	}
	a := &netlink.Addr{IPNet: &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if err := netlink.AddrAdd(l, a); err != nil {
		return fmt.Errorf("address %s on %s: %w", p, name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("link %s up: %w", name, err)
	}
	return nil
}

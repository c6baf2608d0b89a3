package gwlb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hanat/hanat/bpf"
)

// The MAC cache of the encapsulated replies (gwlb_neighs): the egress
// program writes a GWLB's next hop's MAC and the ENI's into the reply and
// lets it go on, instead of a route and neighbour lookup per packet
// (bpf_redirect_neigh). The Go side copies the entries from the kernel's
// tables and confirms them every neighRefreshEvery; the program trusts an
// entry for neighTTL after its confirmation (GWLB_NEIGH_TTL_NS in gwlb.c)
// and falls back to bpf_redirect_neigh, counted as neigh_miss, when it is
// older or missing. The cache follows the kernel's neighbour entry: it
// copies a MAC the kernel would send to itself (REACHABLE, STALE, DELAY,
// PROBE, PERMANENT, NOARP) and, since the cached packets no longer use the
// entry, marks a STALE one used (NTF_USE) so the kernel revalidates it as
// if it had sent a packet: a next hop that stopped answering goes FAILED
// after the kernel's probes (delay_first_probe_time 5 s plus
// ucast_solicit probes of retrans_time, 3 s by default) and the next
// refresh removes its entry. A MAC that changed is so used for at most
// the kernel's reachable time (30 s base, times 0.5 to 1.5) plus those
// probes plus neighRefreshEvery; an entry the Go side stops refreshing
// (the daemon gone) expires after neighTTL.
const (
	neighTTL          = 15 * time.Second
	neighRefreshEvery = 5 * time.Second
)

// usableNeigh are the neighbour states whose MAC the cache copies.
const usableNeigh = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE |
	netlink.NUD_PERMANENT | netlink.NUD_NOARP

// Neighbour is one GWLB's cached Ethernet addresses.
type Neighbour struct {
	GWLB     netip.Addr
	NextHop  netip.Addr
	Dst, Src net.HardwareAddr
}

// RefreshNeighbours copies, for each GWLB address, its next hop's MAC
// (from the route towards it out of the ENI and the kernel's neighbour
// table) and the ENI's into the egress program's cache, confirmed now;
// a GWLB whose next hop is not usable, or not out of the ENI, loses its
// entry (its replies use bpf_redirect_neigh). It returns the entries
// written. Call it in the ENI's network namespace.
func (d *Datapath) RefreshNeighbours(ctx context.Context) ([]Neighbour, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("gwlb: refresh neighbours on %s: %w", d.link, err)
	}
	addrs, err := d.maps.gwlbAddrs()
	if err != nil {
		return nil, err
	}
	l, err := netlink.LinkByIndex(d.ifindex)
	if err != nil {
		return nil, fmt.Errorf("gwlb: refresh neighbours: interface %d (%s): %w", d.ifindex, d.link, err)
	}
	neighs, err := netlink.NeighList(d.ifindex, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("gwlb: refresh neighbours: list neighbours of %s: %w", d.link, err)
	}
	var found []Neighbour
	var errs []error
	for _, a := range addrs {
		// A GWLB that fails loses its entry; the others are cached.
		n, ok, err := resolveNeighbour(a, d.ifindex, l.Attrs().HardwareAddr, neighs)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			found = append(found, n)
		}
	}
	now, err := monotonicNow()
	if err != nil {
		return nil, err
	}
	if err := d.maps.setNeighbours(found, now); err != nil {
		return nil, err
	}
	if err := errors.Join(errs...); err != nil {
		return found, fmt.Errorf("gwlb: refresh neighbours on %s: %w", d.link, err)
	}
	return found, nil
}

// resolveNeighbour finds gwlb's next hop out of ifindex and its usable
// MAC among neighs; ok is false when there is none.
func resolveNeighbour(gwlb netip.Addr, ifindex int, src net.HardwareAddr, neighs []netlink.Neigh) (Neighbour, bool, error) {
	if len(src) != 6 {
		return Neighbour{}, false, nil
	}
	routes, err := netlink.RouteGet(gwlb.AsSlice())
	if err != nil {
		return Neighbour{}, false, fmt.Errorf("route to GWLB %v: %w", gwlb, err)
	}
	if len(routes) == 0 || routes[0].LinkIndex != ifindex {
		return Neighbour{}, false, nil
	}
	hop := gwlb
	if gw, ok := netip.AddrFromSlice(routes[0].Gw); ok && gw.Unmap().IsValid() && !gw.IsUnspecified() {
		hop = gw.Unmap()
	}
	for _, n := range neighs {
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok || ip.Unmap() != hop || n.State&usableNeigh == 0 || len(n.HardwareAddr) != 6 {
			continue
		}
		if n.State&netlink.NUD_STALE != 0 {
			// The kernel's packets would revalidate it; the cache's don't.
			use := n
			use.Flags = netlink.NTF_USE
			if err := netlink.NeighSet(&use); err != nil {
				return Neighbour{}, false, fmt.Errorf("revalidate neighbour %v of GWLB %v: %w", hop, gwlb, err)
			}
		}
		return Neighbour{GWLB: gwlb, NextHop: hop, Dst: n.HardwareAddr, Src: src}, true, nil
	}
	return Neighbour{}, false, nil
}

// monotonicNow is CLOCK_MONOTONIC in nanoseconds, bpf_ktime_get_ns's clock.
func monotonicNow() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("gwlb: read CLOCK_MONOTONIC: %w", err)
	}
	return uint64(ts.Nano()), nil
}

// setNeighbours makes the cache hold exactly ns, confirmed at now
// (CLOCK_MONOTONIC ns).
func (m tables) setNeighbours(ns []Neighbour, now uint64) error {
	want := make(map[uint32]bool, len(ns))
	for _, n := range ns {
		v := bpf.GwlbGwlbNeigh{ConfirmedNs: now}
		copy(v.DstMac[:], n.Dst)
		copy(v.SrcMac[:], n.Src)
		w := bpf.AddrWord(n.GWLB)
		want[w] = true
		if err := m.m.GwlbNeighs.Update(w, &v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("gwlb: cache MAC %v of GWLB %v: %w", n.Dst, n.GWLB, err)
		}
	}
	return removeStale[bpf.GwlbGwlbNeigh](m.m.GwlbNeighs, want, "GWLB MAC")
}

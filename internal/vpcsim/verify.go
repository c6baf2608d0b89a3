package vpcsim

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Verify compares the model with the network: every route table's kernel
// routes, the IGW's mappings, every ENI's source/dest check and private IPs
// (as configured inside the instance). It returns one error naming every
// difference, or nil. Tests call it after API mutations.
func (l *Lab) Verify() error {
	snap := l.model.Snapshot()
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	// Route tables: model routes ⇔ kernel routes of the table.
	for _, mr := range snap.RouteTables {
		rt := l.rtbByID(mr.ID)
		if rt == nil {
			bad("route table %s: not in the lab", mr.ID)
			continue
		}
		want := map[netip.Prefix]string{}
		for _, r := range mr.Routes {
			switch {
			case r.GatewayID == "local":
				want[r.Destination] = "throw"
			case r.GatewayID == l.igwID:
				want[r.Destination] = "via " + igwRtrAddr.Addr().String()
			case r.NetworkInterfaceID != "":
				want[r.Destination] = "via " + r.NextHop.String()
			default:
				want[r.Destination] = "unknown target"
			}
		}
		got := map[netip.Prefix]string{}
		routes, err := l.rtrH.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: rt.table}, netlink.RT_FILTER_TABLE)
		if err != nil {
			bad("route table %s: list kernel table %d: %w", rt.name, rt.table, err)
			continue
		}
		for _, r := range routes {
			dst := netip.MustParsePrefix("0.0.0.0/0")
			if r.Dst != nil {
				a, _ := netip.AddrFromSlice(r.Dst.IP)
				ones, _ := r.Dst.Mask.Size()
				dst = netip.PrefixFrom(a.Unmap(), ones)
			}
			switch {
			case r.Type == unix.RTN_THROW:
				got[dst] = "throw"
			case r.Gw != nil:
				got[dst] = "via " + r.Gw.String()
			default:
				got[dst] = fmt.Sprintf("type %d", r.Type)
			}
		}
		if !maps.Equal(want, got) {
			bad("route table %s: model %v, kernel table %d %v", rt.name, want, rt.table, got)
		}
	}

	// IGW mappings: associated EIPs ⇔ the fabric's 1:1 NAT entries.
	want := map[netip.Addr]netip.Addr{}
	for _, a := range snap.Addresses {
		if a.AssociationID != "" {
			want[a.PublicIP] = a.PrivateIP
		}
	}
	if !maps.Equal(want, l.maps) {
		bad("IGW: model maps %v, network maps %v", want, l.maps)
	}

	// ENIs: check flag and addresses, in the lab and inside the instance.
	for _, me := range snap.NetworkInterfaces {
		e := l.enis[me.ID]
		if e == nil {
			bad("ENI %s: not in the lab", me.ID)
			continue
		}
		if e.check != me.SourceDestCheck {
			bad("ENI %s: model source/dest check %v, router %v", me.ID, me.SourceDestCheck, e.check)
		}
		wantIPs := append([]netip.Addr{me.PrimaryIP}, me.SecondaryIPs...)
		slices.SortFunc(wantIPs, netip.Addr.Compare)
		labIPs := e.ips()
		slices.SortFunc(labIPs, netip.Addr.Compare)
		if !slices.Equal(wantIPs, labIPs) {
			bad("ENI %s: model IPs %v, lab %v", me.ID, wantIPs, labIPs)
		}
		link, err := e.inst.h.LinkByName(e.dev)
		if err != nil {
			bad("ENI %s: %s in %s: %w", me.ID, e.dev, e.inst.ns.Name, err)
			continue
		}
		addrs, err := e.inst.h.AddrList(link, unix.AF_INET)
		if err != nil {
			bad("ENI %s: list addresses: %w", me.ID, err)
			continue
		}
		var onLink []netip.Addr
		for _, a := range addrs {
			ip, _ := netip.AddrFromSlice(a.IP)
			onLink = append(onLink, ip.Unmap())
		}
		slices.SortFunc(onLink, netip.Addr.Compare)
		if !slices.Equal(wantIPs, onLink) {
			bad("ENI %s: model IPs %v, %s in %s has %v", me.ID, wantIPs, e.dev, e.inst.ns.Name, onLink)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("vpcsim Verify: model and network disagree:\n%s", strings.ReplaceAll(err.Error(), "\n", "\n  "))
	}
	return nil
}

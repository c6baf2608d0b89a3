package vpcsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	mdnetlink "github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hanat/hanat/internal/vpcsim/ec2sim"
)

// fabric is the lab seen by the model: ec2sim calls it for every accepted
// mutation, and the change is applied to the namespaces before the model
// commits it.
type fabric struct{ l *Lab }

var _ ec2sim.Fabric = (*fabric)(nil)

func (f *fabric) SetRoute(ctx context.Context, routeTableID string, dst netip.Prefix, t ec2sim.RouteTarget) error {
	l := f.l
	rt := l.rtbByID(routeTableID)
	if rt == nil {
		return fmt.Errorf("vpcsim SetRoute: unknown route table %q", routeTableID)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.setRouteLocked(rt, dst, t)
}

func (f *fabric) DeleteRoute(ctx context.Context, routeTableID string, dst netip.Prefix) error {
	l := f.l
	rt := l.rtbByID(routeTableID)
	if rt == nil {
		return fmt.Errorf("vpcsim DeleteRoute: unknown route table %q", routeTableID)
	}
	if !dst.Addr().Is4() {
		return fmt.Errorf("vpcsim DeleteRoute %s from %s: only IPv4 is simulated", dst, rt.name)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.rtrH.RouteDel(&netlink.Route{Dst: ipnet(dst.Masked()), Table: rt.table})
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("vpcsim DeleteRoute %s from %s (table %d): %w", dst, rt.name, rt.table, err)
	}
	l.log.Info("route deleted", "route_table", rt.name, "dst", dst)
	return nil
}

func (f *fabric) SetSourceDestCheck(ctx context.Context, eniID string, enabled bool) error {
	l := f.l
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.enis[eniID]
	if e == nil {
		return fmt.Errorf("vpcsim SetSourceDestCheck: unknown ENI %q", eniID)
	}
	old := e.check
	e.check = enabled
	if err := l.applyRouterFilterLocked(); err != nil {
		e.check = old
		return fmt.Errorf("vpcsim SetSourceDestCheck %s=%v: %w", eniID, enabled, err)
	}
	l.log.Info("source/dest check", "eni", eniID, "instance", e.inst.name, "enabled", enabled)
	return nil
}

func (f *fabric) MapPublicIP(ctx context.Context, public, private netip.Addr) error {
	l := f.l
	if !public.Is4() || !private.Is4() {
		return fmt.Errorf("vpcsim MapPublicIP %s → %s: only IPv4 is simulated", public, private)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	old := cloneMap(l.maps)
	affected := []netip.Addr{public, private}
	if prev, ok := l.maps[public]; ok {
		affected = append(affected, prev)
	}
	// A private IP has one public IP: drop a stale mapping of it.
	for pub, priv := range l.maps {
		if priv == private && pub != public {
			delete(l.maps, pub)
			affected = append(affected, pub)
		}
	}
	l.maps[public] = private
	if err := l.applyIGWLocked(); err != nil {
		l.maps = old
		return fmt.Errorf("vpcsim MapPublicIP %s → %s: %w", public, private, err)
	}
	l.forgetIGWFlowsLocked(affected)
	l.log.Info("IGW mapping", "public_ip", public, "private_ip", private)
	return nil
}

func (f *fabric) UnmapPublicIP(ctx context.Context, public netip.Addr) error {
	l := f.l
	l.mu.Lock()
	defer l.mu.Unlock()
	prev, ok := l.maps[public]
	if !ok {
		return nil
	}
	delete(l.maps, public)
	if err := l.applyIGWLocked(); err != nil {
		l.maps[public] = prev
		return fmt.Errorf("vpcsim UnmapPublicIP %s: %w", public, err)
	}
	l.forgetIGWFlowsLocked([]netip.Addr{public, prev})
	l.log.Info("IGW mapping removed", "public_ip", public, "private_ip", prev)
	return nil
}

func (f *fabric) AddPrivateIP(ctx context.Context, eniID string, ip netip.Addr) error {
	l := f.l
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.enis[eniID]
	if e == nil {
		return fmt.Errorf("vpcsim AddPrivateIP: unknown ENI %q", eniID)
	}
	if !e.subnet.cidr.Contains(ip) {
		return fmt.Errorf("vpcsim AddPrivateIP %s to %s: outside subnet %s", ip, eniID, e.subnet.cidr)
	}
	if slices.Contains(e.ips(), ip) {
		return nil
	}
	link, err := e.inst.h.LinkByName(e.dev)
	if err != nil {
		return fmt.Errorf("vpcsim AddPrivateIP %s to %s: link %s in %s: %w", ip, eniID, e.dev, e.inst.ns.Name, err)
	}
	if err := e.inst.h.AddrReplace(link, &netlink.Addr{IPNet: ipnet(netip.PrefixFrom(ip, 32))}); err != nil {
		return fmt.Errorf("vpcsim AddPrivateIP %s to %s: %w", ip, eniID, err)
	}
	e.secondaries = append(e.secondaries, ip)
	if err := l.applyRouterFilterLocked(); err != nil {
		e.secondaries = slices.DeleteFunc(e.secondaries, func(a netip.Addr) bool { return a == ip })
		_ = e.inst.h.AddrDel(link, &netlink.Addr{IPNet: ipnet(netip.PrefixFrom(ip, 32))})
		return fmt.Errorf("vpcsim AddPrivateIP %s to %s: %w", ip, eniID, err)
	}
	l.forgetNeighborLocked(e.subnet, ip)
	l.log.Info("private IP assigned", "eni", eniID, "instance", e.inst.name, "ip", ip)
	return nil
}

func (f *fabric) RemovePrivateIP(ctx context.Context, eniID string, ip netip.Addr) error {
	l := f.l
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.enis[eniID]
	if e == nil {
		return fmt.Errorf("vpcsim RemovePrivateIP: unknown ENI %q", eniID)
	}
	if ip == e.primary {
		return fmt.Errorf("vpcsim RemovePrivateIP %s from %s: it is the primary IP", ip, eniID)
	}
	if !slices.Contains(e.secondaries, ip) {
		return nil
	}
	link, err := e.inst.h.LinkByName(e.dev)
	if err != nil {
		return fmt.Errorf("vpcsim RemovePrivateIP %s from %s: link %s in %s: %w", ip, eniID, e.dev, e.inst.ns.Name, err)
	}
	err = e.inst.h.AddrDel(link, &netlink.Addr{IPNet: ipnet(netip.PrefixFrom(ip, 32))})
	if err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("vpcsim RemovePrivateIP %s from %s: %w", ip, eniID, err)
	}
	e.secondaries = slices.DeleteFunc(e.secondaries, func(a netip.Addr) bool { return a == ip })
	if err := l.applyRouterFilterLocked(); err != nil {
		return fmt.Errorf("vpcsim RemovePrivateIP %s from %s: %w", ip, eniID, err)
	}
	l.forgetNeighborLocked(e.subnet, ip)
	l.log.Info("private IP unassigned", "eni", eniID, "instance", e.inst.name, "ip", ip)
	return nil
}

func cloneMap(m map[netip.Addr]netip.Addr) map[netip.Addr]netip.Addr {
	out := make(map[netip.Addr]netip.Addr, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// setRouteLocked creates or replaces dst in the route table's kernel table.
func (l *Lab) setRouteLocked(rt *rtbInfo, dst netip.Prefix, t ec2sim.RouteTarget) error {
	if !dst.Addr().Is4() {
		return fmt.Errorf("vpcsim SetRoute %s in %s: only IPv4 is simulated", dst, rt.name)
	}
	r := &netlink.Route{Dst: ipnet(dst.Masked()), Table: rt.table}
	switch {
	case t.GatewayID == "local":
		r.Type = unix.RTN_THROW
	case t.GatewayID != "" && t.GatewayID == l.igwID:
		r.Gw = net.IP(igwRtrAddr.Addr().AsSlice())
		r.LinkIndex = l.r2iIdx
	case t.NetworkInterfaceID != "":
		e := l.enis[t.NetworkInterfaceID]
		if e == nil {
			return fmt.Errorf("vpcsim SetRoute %s in %s: unknown ENI %q", dst, rt.name, t.NetworkInterfaceID)
		}
		hop := t.NextHop
		if !hop.IsValid() {
			hop = e.primary
		}
		r.Gw = net.IP(hop.AsSlice())
		r.LinkIndex = e.subnet.brIdx
		r.Flags = int(netlink.FLAG_ONLINK)
	case t.VpcEndpointID != "":
		s := l.vpces[t.VpcEndpointID]
		if s == nil || !t.NextHop.IsValid() {
			return fmt.Errorf("vpcsim SetRoute %s in %s: unknown GWLB endpoint %q", dst, rt.name, t.VpcEndpointID)
		}
		r.Gw = net.IP(t.NextHop.AsSlice())
		r.LinkIndex = s.brIdx
		r.Flags = int(netlink.FLAG_ONLINK)
	default:
		return fmt.Errorf("vpcsim SetRoute %s in %s: unsupported target %+v", dst, rt.name, t)
	}
	if err := l.rtrH.RouteReplace(r); err != nil {
		return fmt.Errorf("vpcsim SetRoute %s in %s (table %d) via %+v: %w", dst, rt.name, rt.table, t, err)
	}
	l.log.Info("route set", "route_table", rt.name, "dst", dst, "gateway", t.GatewayID, "eni", t.NetworkInterfaceID,
		"vpc_endpoint", t.VpcEndpointID, "next_hop", t.NextHop)
	return nil
}

// instIPsLocked returns every private IP of the instance's ENIs.
func instIPsLocked(in *instState) []netip.Addr {
	var out []netip.Addr
	for _, e := range in.enis {
		out = append(out, e.ips()...)
	}
	return out
}

// applyRouterFilterLocked rebuilds the router's bridge table from the whole
// state: partitions, then the source/dest check of every ENI that has it on.
func (l *Lab) applyRouterFilterLocked() error {
	var checked []checkedPort
	for _, in := range l.insts {
		for _, e := range in.enis {
			if e.check && e.id != "" {
				checked = append(checked, checkedPort{Port: e.port, IPs: e.ips()})
			}
		}
	}
	var parts []partitionRule
	for _, p := range l.partitions {
		a, b := l.inst(p.A), l.inst(p.B)
		if a == nil || b == nil {
			continue
		}
		parts = append(parts, partitionRule{A: instIPsLocked(a), B: instIPsLocked(b), Proto: p.Proto, Port: p.Port})
	}
	c, err := nftables.New(nftables.WithNetNSFd(l.router.FD()))
	if err != nil {
		return fmt.Errorf("nftables in %s: %w", l.router.Name, err)
	}
	name := l.prefix + "_vpc"
	if err := queueRouterFilter(c, name, checked, parts); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables apply table bridge %q in %s: %w", name, l.router.Name, err)
	}
	return nil
}

// applyIGWLocked rebuilds the IGW's NAT table from the mappings.
func (l *Lab) applyIGWLocked() error {
	maps := make([]igwMapping, 0, len(l.maps))
	for pub, priv := range l.maps {
		maps = append(maps, igwMapping{Public: pub, Private: priv})
	}
	slices.SortFunc(maps, func(a, b igwMapping) int { return a.Public.Compare(b.Public) })
	c, err := nftables.New(nftables.WithNetNSFd(l.igw.FD()))
	if err != nil {
		return fmt.Errorf("nftables in %s: %w", l.igw.Name, err)
	}
	name := l.prefix + "_igw"
	queueIGWTable(c, name, l.prefix+"-i2r", maps)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables apply table ip %q in %s: %w", name, l.igw.Name, err)
	}
	return nil
}

// forgetIGWFlowsLocked deletes the IGW's conntrack entries that involve any
// of addrs, so a remapped public IP takes effect for every flow, as on AWS
// (moving an EIP breaks its connections). Failures are logged only.
func (l *Lab) forgetIGWFlowsLocked(addrs []netip.Addr) {
	c, err := conntrack.Dial(&mdnetlink.Config{NetNS: l.igw.FD()})
	if err != nil {
		l.log.Warn("IGW conntrack dial", "err", err)
		return
	}
	defer c.Close()
	flows, err := c.Dump(nil)
	if err != nil {
		l.log.Warn("IGW conntrack dump", "err", err)
		return
	}
	n := 0
	for _, fl := range flows {
		ips := []netip.Addr{fl.TupleOrig.IP.SourceAddress, fl.TupleOrig.IP.DestinationAddress,
			fl.TupleReply.IP.SourceAddress, fl.TupleReply.IP.DestinationAddress}
		if slices.ContainsFunc(ips, func(a netip.Addr) bool { return slices.Contains(addrs, a.Unmap()) }) {
			if err := c.Delete(fl); err == nil {
				n++
			}
		}
	}
	if n > 0 {
		l.log.Debug("IGW flows forgotten", "count", n, "addrs", addrs)
	}
}

// forgetNeighborLocked drops ARP entries for ip in the router and in the
// subnet's instances, so a moved private IP is re-resolved at once.
func (l *Lab) forgetNeighborLocked(s *subnetInfo, ip netip.Addr) {
	del := func(h *netlink.Handle) {
		neighs, err := h.NeighList(0, unix.AF_INET)
		if err != nil {
			return
		}
		for _, n := range neighs {
			if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == ip {
				_ = h.NeighDel(&n)
			}
		}
	}
	del(l.rtrH)
	for _, in := range l.insts {
		if in.subnet == s && in.h != nil {
			del(in.h)
		}
	}
}

// Partition drops traffic between instances a and b in the router (both
// directions, every private IP of both), limited to proto ("tcp", "udp",
// "icmp"; "" = all) and port (source or destination; 0 = all).
func (l *Lab) Partition(ctx context.Context, a, b, proto string, port uint16) error {
	p := partition{A: a, B: b, Proto: proto, Port: port}
	if l.inst(a) == nil || l.inst(b) == nil {
		return fmt.Errorf("vpcsim Partition %s ↔ %s: unknown instance", a, b)
	}
	if _, err := partitionExprs(partitionRule{Proto: proto, Port: port}); err != nil {
		return fmt.Errorf("vpcsim Partition %s ↔ %s: %w", a, b, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if slices.Contains(l.partitions, p) {
		return nil
	}
	l.partitions = append(l.partitions, p)
	if err := l.applyRouterFilterLocked(); err != nil {
		l.partitions = l.partitions[:len(l.partitions)-1]
		return fmt.Errorf("vpcsim Partition %s ↔ %s: %w", a, b, err)
	}
	l.log.Info("partition", "a", a, "b", b, "proto", proto, "port", port)
	return nil
}

// Heal removes the partition made by Partition with the same arguments (in
// either order of a and b).
func (l *Lab) Heal(ctx context.Context, a, b, proto string, port uint16) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := slices.Clone(l.partitions)
	l.partitions = slices.DeleteFunc(l.partitions, func(p partition) bool {
		return p.Proto == proto && p.Port == port && (p.A == a && p.B == b || p.A == b && p.B == a)
	})
	if len(old) == len(l.partitions) {
		return nil
	}
	if err := l.applyRouterFilterLocked(); err != nil {
		l.partitions = old
		return fmt.Errorf("vpcsim Heal %s ↔ %s: %w", a, b, err)
	}
	l.log.Info("healed", "a", a, "b", b, "proto", proto, "port", port)
	return nil
}

// HealAll removes every partition.
func (l *Lab) HealAll(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	old := l.partitions
	l.partitions = nil
	if err := l.applyRouterFilterLocked(); err != nil {
		l.partitions = old
		return fmt.Errorf("vpcsim HealAll: %w", err)
	}
	l.log.Info("healed all partitions")
	return nil
}

// SetAPIFaults injects latency, errors and throttling into the EC2 API.
func (l *Lab) SetAPIFaults(f ec2sim.Faults) { l.model.SetFaults(f) }

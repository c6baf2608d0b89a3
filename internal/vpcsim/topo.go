package vpcsim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hanat/hanat/internal/netns"
	"github.com/hanat/hanat/internal/vpcsim/ec2sim"
)

// Kernel routing table numbers of the route tables, in the router.
const firstKernelTable = 100

// Priority of the first `ip rule iif <bridge> lookup <table>`.
const firstRulePriority = 1000

type instanceSpec struct {
	name   string
	subnet string
	ip     netip.Addr
	eip    netip.Addr // invalid: no public IP
	extra  []eniSpec  // ENIs after eth0
}

type eniSpec struct {
	subnet string
	ip     netip.Addr
}

// layout returns the instances of the seed's layout for opts.
func layout(opts Options) []instanceSpec {
	var specs []instanceSpec
	for i := range opts.NATInstances {
		az := "a"
		third := byte(1)
		if i%2 == 1 {
			az, third = "c", 2
		}
		k := i / 2
		name := "nat-" + az
		if k > 0 {
			name += strconv.Itoa(k + 1)
		}
		spec := instanceSpec{
			name:   name,
			subnet: "public-" + az,
			ip:     netip.AddrFrom4([4]byte{10, 0, third, byte(10 + k)}),
			eip:    netip.AddrFrom4([4]byte{198, 51, 100, byte(10 + i)}),
		}
		if opts.NATSecondENI {
			spec.extra = []eniSpec{{subnet: "private-" + az, ip: netip.AddrFrom4([4]byte{10, 0, third + 10, byte(20 + k)})}}
		}
		specs = append(specs, spec)
	}
	specs = append(specs,
		instanceSpec{name: "app-a", subnet: "private-a", ip: netip.MustParseAddr("10.0.11.10")},
		instanceSpec{name: "app-c", subnet: "private-c", ip: netip.MustParseAddr("10.0.12.10")},
	)
	return specs
}

// macFor derives an ENI's MAC from its primary IP: 02:00:0a:00:<c>:<d>.
func macFor(ip netip.Addr) net.HardwareAddr {
	b := ip.As4()
	return net.HardwareAddr{0x02, 0x00, b[0], b[1], b[2], b[3]}
}

// writeSysctl writes value to /proc/sys/<path> inside ns. A missing file
// (e.g. IPv6 disabled in the kernel) is not an error when optional.
func writeSysctl(ns *netns.NS, path, value string, optional bool) error {
	return ns.Do(func() error {
		err := os.WriteFile("/proc/sys/"+path, []byte(value), 0)
		if err != nil && optional && errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w", path, value, ns.Name, err)
		}
		return nil
	})
}

// baseSysctls makes a fresh namespace behave like a plain AWS host: no
// IPv6 (not simulated), no reverse-path filter, no ICMP redirects.
func baseSysctls(ns *netns.NS, forward bool) error {
	type kv struct {
		k, v     string
		optional bool
	}
	fw := "0"
	if forward {
		fw = "1"
	}
	for _, s := range []kv{
		{"net/ipv6/conf/all/disable_ipv6", "1", true},
		{"net/ipv6/conf/default/disable_ipv6", "1", true},
		{"net/ipv4/conf/all/rp_filter", "0", false},
		{"net/ipv4/conf/default/rp_filter", "0", false},
		{"net/ipv4/conf/all/send_redirects", "0", false},
		{"net/ipv4/conf/default/send_redirects", "0", false},
		{"net/ipv4/conf/all/accept_redirects", "0", false},
		{"net/ipv4/conf/default/accept_redirects", "0", false},
		{"net/ipv4/ip_forward", fw, false},
	} {
		if err := writeSysctl(ns, s.k, s.v, s.optional); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) newNS(role string) (*netns.NS, error) {
	ns, err := netns.Create(l.prefix + "-" + role)
	if err != nil {
		return nil, err
	}
	return ns, nil
}

func addrUp(h *netlink.Handle, name string, addrs ...netip.Prefix) (netlink.Link, error) {
	link, err := h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("link %q: %w", name, err)
	}
	for _, a := range addrs {
		if err := h.AddrAdd(link, &netlink.Addr{IPNet: ipnet(a)}); err != nil {
			return nil, fmt.Errorf("add address %s to %q: %w", a, name, err)
		}
	}
	if err := h.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("set %q up: %w", name, err)
	}
	return link, nil
}

func ipnet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func defaultRoute(h *netlink.Handle, link netlink.Link, gw netip.Addr) error {
	r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipnet(netip.MustParsePrefix("0.0.0.0/0")), Gw: net.IP(gw.AsSlice())}
	if err := h.RouteReplace(r); err != nil {
		return fmt.Errorf("default route via %s: %w", gw, err)
	}
	return nil
}

// veth creates a veth pair in the namespace of h with the peer created
// directly in peerNS, so nothing ever appears in the host namespace.
func veth(h *netlink.Handle, name string, peerNS *netns.NS, peerName string, peerMAC net.HardwareAddr) error {
	v := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: name},
		PeerName:         peerName,
		PeerNamespace:    netlink.NsFd(peerNS.FD()),
		PeerHardwareAddr: peerMAC,
	}
	if err := h.LinkAdd(v); err != nil {
		return fmt.Errorf("add veth %s ↔ %s/%s: %w", name, peerNS.Name, peerName, err)
	}
	return nil
}

func (l *Lab) build(ctx context.Context, opts Options) error {
	var err error
	for _, step := range []struct {
		role string
		dst  **netns.NS
		fwd  bool
	}{{"router", &l.router, true}, {"igw", &l.igw, true}, {"internet", &l.inet, false}} {
		if *step.dst, err = l.newNS(step.role); err != nil {
			return err
		}
		if err := baseSysctls(*step.dst, step.fwd); err != nil {
			return err
		}
	}
	if l.rtrH, err = netlink.NewHandleAt(l.router.Handle()); err != nil {
		return fmt.Errorf("netlink handle in %s: %w", l.router.Name, err)
	}
	if l.igwH, err = netlink.NewHandleAt(l.igw.Handle()); err != nil {
		return fmt.Errorf("netlink handle in %s: %w", l.igw.Name, err)
	}
	if err := l.buildEdge(); err != nil {
		return err
	}
	if err := l.buildVPC(opts); err != nil {
		return err
	}
	for _, spec := range layout(opts) {
		if err := l.addInstance(ctx, spec); err != nil {
			return fmt.Errorf("instance %s: %w", spec.name, err)
		}
	}
	for j := range opts.SpareEIPs {
		pub := netip.AddrFrom4([4]byte{198, 51, 100, byte(100 + j)})
		l.eips = append(l.eips, eipInfo{allocID: l.model.AllocateAddress(pub), public: pub})
	}
	if opts.PointPrivateRoutesAtNATs {
		if err := l.pointPrivateRoutes(ctx); err != nil {
			return err
		}
	}
	if opts.GWLB != nil {
		if err := l.buildGWLB(ctx, *opts.GWLB); err != nil {
			return fmt.Errorf("GWLB: %w", err)
		}
	}
	l.mu.Lock()
	err = errors.Join(l.applyRouterFilterLocked(), l.applyIGWLocked())
	l.mu.Unlock()
	if err != nil {
		return err
	}
	if l.gwlb != nil {
		l.startGWLB()
	}
	return l.startServers(ctx)
}

// buildEdge links router ⇄ IGW ⇄ internet.
func (l *Lab) buildEdge() error {
	r2i, i2r, i2n, n2i := l.prefix+"-r2i", l.prefix+"-i2r", l.prefix+"-i2n", l.prefix+"-n2i"
	if err := veth(l.rtrH, r2i, l.igw, i2r, nil); err != nil {
		return err
	}
	link, err := addrUp(l.rtrH, r2i, rtrIGWAddr)
	if err != nil {
		return err
	}
	l.r2iIdx = link.Attrs().Index
	if _, err := addrUp(l.igwH, i2r, igwRtrAddr); err != nil {
		return err
	}
	ilink, _ := l.igwH.LinkByName(i2r)
	if err := l.igwH.RouteAdd(&netlink.Route{LinkIndex: ilink.Attrs().Index, Dst: ipnet(vpcCIDR), Gw: net.IP(rtrIGWAddr.Addr().AsSlice())}); err != nil {
		return fmt.Errorf("IGW route to the VPC: %w", err)
	}
	if err := veth(l.igwH, i2n, l.inet, n2i, nil); err != nil {
		return err
	}
	if _, err := addrUp(l.igwH, i2n, igwInetAddr); err != nil {
		return err
	}
	nlink, _ := l.igwH.LinkByName(i2n)
	if err := defaultRoute(l.igwH, nlink, inetAddr.Addr()); err != nil {
		return fmt.Errorf("IGW: %w", err)
	}
	h, err := netlink.NewHandleAt(l.inet.Handle())
	if err != nil {
		return fmt.Errorf("netlink handle in %s: %w", l.inet.Name, err)
	}
	defer h.Close()
	nl, err := addrUp(h, n2i, inetAddr)
	if err != nil {
		return err
	}
	return defaultRoute(h, nl, igwInetAddr.Addr())
}

// buildVPC creates the model's VPC, IGW, subnets and route tables, and the
// router's bridges, policy rules and kernel tables to match.
func (l *Lab) buildVPC(opts Options) error {
	m := l.model
	l.vpcID = m.AddVPC(vpcCIDR, map[string]string{"Name": "hanat-lab", "hanat-lab": l.prefix})
	l.igwID = m.AddInternetGateway(l.vpcID)
	if l.vpcID == "" || l.igwID == "" {
		return errors.New("model refused the VPC or its internet gateway")
	}
	azA, azC := opts.Region+"a", opts.Region+"c"
	l.subnets = []*subnetInfo{
		{name: "public-a", az: azA, cidr: netip.MustParsePrefix("10.0.1.0/24"), public: true, rtb: "public"},
		{name: "public-c", az: azC, cidr: netip.MustParsePrefix("10.0.2.0/24"), public: true, rtb: "public"},
		{name: "private-a", az: azA, cidr: netip.MustParsePrefix("10.0.11.0/24"), rtb: "private-a"},
		{name: "private-c", az: azC, cidr: netip.MustParsePrefix("10.0.12.0/24"), rtb: "private-c"},
	}
	l.rtbs = []*rtbInfo{
		{name: "main", main: true},
		{name: "public"},
		{name: "private-a"},
		{name: "private-c"},
	}
	for i, r := range l.rtbs {
		r.table = firstKernelTable + i
		r.id = m.AddRouteTable(l.vpcID, r.main, map[string]string{"Name": r.name})
		if r.id == "" {
			return fmt.Errorf("model refused route table %s", r.name)
		}
		// The local route: VPC destinations fall through to the main
		// kernel table, which holds the subnets' connected routes.
		if err := l.rtrH.RouteReplace(&netlink.Route{Dst: ipnet(vpcCIDR), Table: r.table, Type: unix.RTN_THROW}); err != nil {
			return fmt.Errorf("local route in table %d (%s): %w", r.table, r.name, err)
		}
	}
	for i, s := range l.subnets {
		s.gw = s.cidr.Addr().Next()
		short := "pub-"
		if !s.public {
			short = "prv-"
		}
		s.bridge = l.prefix + "-" + short + s.az[len(s.az)-1:]
		s.id = m.AddSubnet(l.vpcID, s.cidr, s.az, map[string]string{"Name": s.name})
		if s.id == "" {
			return fmt.Errorf("model refused subnet %s", s.name)
		}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: s.bridge}}
		if err := l.rtrH.LinkAdd(br); err != nil {
			return fmt.Errorf("add bridge %s: %w", s.bridge, err)
		}
		link, err := addrUp(l.rtrH, s.bridge, netip.PrefixFrom(s.gw, s.cidr.Bits()))
		if err != nil {
			return err
		}
		s.brIdx = link.Attrs().Index
		rt := l.rtbByName(s.rtb)
		if m.AssociateRouteTable(rt.id, s.id) == "" {
			return fmt.Errorf("model refused associating %s with %s", s.name, rt.name)
		}
		rt.subnets = append(rt.subnets, s.name)
		rule := netlink.NewRule()
		rule.IifName = s.bridge
		rule.Table = rt.table
		rule.Priority = firstRulePriority + i
		rule.Family = unix.AF_INET
		if err := l.rtrH.RuleAdd(rule); err != nil {
			return fmt.Errorf("ip rule iif %s lookup %d: %w", s.bridge, rt.table, err)
		}
	}
	// The router answers IMDS and the in-VPC EC2 endpoint on loopback.
	if _, err := addrUp(l.rtrH, "lo", netip.PrefixFrom(imdsIP, 32), netip.PrefixFrom(vpcEC2IP, 32)); err != nil {
		return err
	}
	pub := l.rtbByName("public")
	dflt := netip.MustParsePrefix("0.0.0.0/0")
	target := ec2sim.RouteTarget{GatewayID: l.igwID}
	if err := m.AddRouteNoFabric(pub.id, dflt, target); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.setRouteLocked(pub, dflt, target)
}

func (l *Lab) rtbByName(name string) *rtbInfo {
	for _, r := range l.rtbs {
		if r.name == name {
			return r
		}
	}
	return nil
}

func (l *Lab) rtbByID(id string) *rtbInfo {
	for _, r := range l.rtbs {
		if r.id == id {
			return r
		}
	}
	return nil
}

func (l *Lab) subnet(name string) *subnetInfo {
	for _, s := range l.subnets {
		if s.name == name {
			return s
		}
	}
	return nil
}

// addInstance creates the instance's namespace and ENIs, registers them
// in the model and maps its EIP.
func (l *Lab) addInstance(ctx context.Context, spec instanceSpec) error {
	s := l.subnet(spec.subnet)
	in := &instState{name: spec.name, subnet: s}
	var err error
	if in.ns, err = l.newNS(spec.name); err != nil {
		return err
	}
	l.insts = append(l.insts, in)
	if err := baseSysctls(in.ns, false); err != nil {
		return err
	}
	if in.h, err = netlink.NewHandleAt(in.ns.Handle()); err != nil {
		return fmt.Errorf("netlink handle in %s: %w", in.ns.Name, err)
	}
	in.id = l.model.AddInstance(s.az, s.id, map[string]string{"Name": spec.name, "hanat-lab": l.prefix})
	if in.id == "" {
		return errors.New("model refused the instance")
	}
	enis := append([]eniSpec{{subnet: spec.subnet, ip: spec.ip}}, spec.extra...)
	for i, es := range enis {
		if err := l.addENI(in, i, l.subnet(es.subnet), es.ip); err != nil {
			return fmt.Errorf("ENI eth%d: %w", i, err)
		}
	}
	if spec.eip.IsValid() {
		e := in.enis[0]
		alloc := l.model.AllocateAddress(spec.eip)
		if alloc == "" || l.model.AssociateAddressNoFabric(alloc, e.id, e.primary) == "" {
			return fmt.Errorf("model refused EIP %s", spec.eip)
		}
		l.eips = append(l.eips, eipInfo{allocID: alloc, public: spec.eip})
		l.mu.Lock()
		l.maps[spec.eip] = e.primary
		l.mu.Unlock()
	}
	return nil
}

// addENI creates ENI eth<index> of the instance in subnet s: a veth whose
// router side is a port of the subnet's bridge. Only eth0 gets the default
// route.
func (l *Lab) addENI(in *instState, index int, s *subnetInfo, ip netip.Addr) error {
	if s == nil || !s.cidr.Contains(ip) {
		return fmt.Errorf("address %s outside its subnet", ip)
	}
	e := &eniState{inst: in, dev: fmt.Sprintf("eth%d", index), subnet: s, mac: macFor(ip), primary: ip, check: true}
	port, link, err := l.plugPort(in.ns, in.h, e.dev, s, ip, e.mac)
	if err != nil {
		return err
	}
	e.port = port
	if index == 0 {
		if err := defaultRoute(in.h, link, s.gw); err != nil {
			return fmt.Errorf("%s: %w", in.ns.Name, err)
		}
	}
	e.id = l.model.AddNetworkInterface(s.id, in.id, index, e.mac, e.primary, nil)
	if e.id == "" {
		return errors.New("model refused the ENI")
	}
	in.enis = append(in.enis, e)
	l.mu.Lock()
	l.enis[e.id] = e
	l.mu.Unlock()
	return nil
}

// plugPort links device dev of namespace ns (netlink handle h) to subnet
// s's bridge with address ip and MAC mac, as an ENI is: a veth whose
// router side (returned, <prefix>-e<n>) is a bridge port.
func (l *Lab) plugPort(ns *netns.NS, h *netlink.Handle, dev string, s *subnetInfo, ip netip.Addr, mac net.HardwareAddr) (string, netlink.Link, error) {
	name := fmt.Sprintf("%s-e%d", l.prefix, l.ports)
	l.ports++
	if err := veth(l.rtrH, name, ns, dev, mac); err != nil {
		return "", nil, err
	}
	port, err := l.rtrH.LinkByName(name)
	if err != nil {
		return "", nil, fmt.Errorf("link %s: %w", name, err)
	}
	if err := l.rtrH.LinkSetMasterByIndex(port, s.brIdx); err != nil {
		return "", nil, fmt.Errorf("add %s to bridge %s: %w", name, s.bridge, err)
	}
	if err := l.rtrH.LinkSetUp(port); err != nil {
		return "", nil, fmt.Errorf("set %s up: %w", name, err)
	}
	link, err := addrUp(h, dev, netip.PrefixFrom(ip, s.cidr.Bits()))
	if err != nil {
		return "", nil, err
	}
	return name, link, nil
}

// pointPrivateRoutes adds 0.0.0.0/0 → the same AZ's NAT to each private
// route table (the first NAT when that AZ has none).
func (l *Lab) pointPrivateRoutes(ctx context.Context) error {
	var nats []*instState
	for _, in := range l.insts {
		if in.subnet.public {
			nats = append(nats, in)
		}
	}
	if len(nats) == 0 {
		return errors.New("PointPrivateRoutesAtNATs: the lab has no NAT instance")
	}
	dflt := netip.MustParsePrefix("0.0.0.0/0")
	for _, rt := range l.rtbs {
		if len(rt.subnets) == 0 || l.subnet(rt.subnets[0]).public {
			continue
		}
		az := l.subnet(rt.subnets[0]).az
		nat := nats[0]
		for _, n := range nats {
			if n.subnet.az == az {
				nat = n
				break
			}
		}
		e := nat.enis[0]
		if err := l.addInitialRoute(rt, dflt, ec2sim.RouteTarget{NetworkInterfaceID: e.id, NextHop: e.primary}); err != nil {
			return err
		}
	}
	return nil
}

// addInitialRoute puts a route the lab starts with into the model and the
// router's kernel table.
func (l *Lab) addInitialRoute(rt *rtbInfo, dst netip.Prefix, target ec2sim.RouteTarget) error {
	if err := l.model.AddRouteNoFabric(rt.id, dst, target); err != nil {
		return fmt.Errorf("model: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.setRouteLocked(rt, dst, target)
}

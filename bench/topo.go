package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/hanat/hanat/internal/netns"
)

// Addresses of the benchmark topology (TEST-NET and 10.0.0.0/16, inside
// namespaces the benchmark creates).
var (
	privAddr  = netip.MustParseAddr("10.0.11.10")
	natInAddr = netip.MustParseAddr("10.0.11.1")
	natOut    = netip.MustParseAddr("198.51.100.2")
	inetAddr  = netip.MustParseAddr("198.51.100.100")
	privCIDR  = netip.MustParsePrefix("10.0.11.0/24")
)

// Interface names inside the namespaces.
const (
	natIn   = "in0"
	natOutX = "out0"
	hostDev = "eth0" // the veth of priv and of inet
)

// topo is the benchmark's namespaces and their veths. In the two-ENI
// shape (newTopo) priv and inet are hosts of their own behind the NAT's in0
// and out0. In the single-ENI shape (newSingleENITopo) the NAT has only
// out0, as the usual EC2 NAT instance has one ENI: the private host and
// the internet host are both addresses of one namespace standing for the
// VPC router (priv == inet), reached through the same veth, so the fast
// path sends with XDP_TX.
type topo struct {
	priv, nat, inet *netns.NS
	singleENI       bool
	wire            *wire // two-ENI shape: the hosts' stacks behind wires

	privMAC, natInMAC   net.HardwareAddr
	natOutMAC, inetMAC  net.HardwareAddr // out0's, and the host behind it
	privIfindex         int              // priv's eth0
	inetIfindex         int              // inet's eth0
	natInIdx, natOutIdx int
}

// newTopo builds the topology. On error everything created so far is
// removed; otherwise the caller calls close.
func newTopo(ctx context.Context) (_ *topo, err error) {
	t := &topo{}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.close())
		}
	}()
	for _, p := range []struct {
		ns   **netns.NS
		role string
	}{{&t.priv, "p"}, {&t.nat, "n"}, {&t.inet, "i"}} {
		ns, err := netns.Create(netns.UniqueName("hnt-bench" + p.role + "-"))
		if err != nil {
			return nil, fmt.Errorf("bench topology: %w", err)
		}
		*p.ns = ns
	}
	if err := t.link(natIn, netip.PrefixFrom(natInAddr, 24), t.priv, netip.PrefixFrom(privAddr, 24), natInAddr); err != nil {
		return nil, err
	}
	if err := t.link(natOutX, netip.PrefixFrom(natOut, 24), t.inet, netip.PrefixFrom(inetAddr, 24), netip.Addr{}); err != nil {
		return nil, err
	}
	cmds := []nsCommand{
		// The NAT's default route points at the internet host (its IGW).
		{t.nat, []string{"ip", "route", "add", "default", "via", inetAddr.String(), "dev", natOutX}},
		// Local sockets on veth send partial checksums, which an XDP
		// rewrite cannot complete: the hosts compute them in software.
		// GRO on gives each veth NAPI, which it needs to receive XDP
		// frames (XDP_TX from the generator, redirects from the NAT).
		{t.priv, []string{"ethtool", "-K", hostDev, "tx", "off", "gro", "on"}},
		{t.inet, []string{"ethtool", "-K", hostDev, "tx", "off", "gro", "on"}},
		{t.nat, []string{"ethtool", "-K", natIn, "gro", "on"}},
		{t.nat, []string{"ethtool", "-K", natOutX, "gro", "on"}},
	}
	if err := runIn(ctx, cmds); err != nil {
		return nil, err
	}
	priv, err := linkAttrs(t.priv, hostDev)
	if err != nil {
		return nil, err
	}
	t.privMAC, t.privIfindex = priv.HardwareAddr, priv.Index
	inet, err := linkAttrs(t.inet, hostDev)
	if err != nil {
		return nil, err
	}
	t.inetIfindex, t.inetMAC = inet.Index, inet.HardwareAddr
	if err := t.wireHosts(ctx); err != nil {
		return nil, err
	}
	if err := t.nat.Do(func() error {
		in, err := netlink.LinkByName(natIn)
		if err != nil {
			return fmt.Errorf("link %s: %w", natIn, err)
		}
		out, err := netlink.LinkByName(natOutX)
		if err != nil {
			return fmt.Errorf("link %s: %w", natOutX, err)
		}
		t.natInMAC, t.natInIdx, t.natOutIdx = in.Attrs().HardwareAddr, in.Attrs().Index, out.Attrs().Index
		t.natOutMAC = out.Attrs().HardwareAddr
		return nil
	}); err != nil {
		return nil, err
	}
	return t, nil
}

// newSingleENITopo builds the single-ENI shape: namespace nat with out0
// (natOut/24) and namespace vpc with eth0 holding inetAddr/24 and
// privAddr/32. The NAT routes the private subnet and the default route via
// inetAddr, both through out0. Only the UDP packet-rate test runs here
// (the hosts' own TCP between two local addresses would not cross the
// NAT).
func newSingleENITopo(ctx context.Context) (_ *topo, err error) {
	t := &topo{singleENI: true}
	defer func() {
		if err != nil {
			err = errors.Join(err, t.close())
		}
	}()
	if t.nat, err = netns.Create(netns.UniqueName("hnt-bench1n-")); err != nil {
		return nil, fmt.Errorf("bench topology: %w", err)
	}
	if t.priv, err = netns.Create(netns.UniqueName("hnt-bench1v-")); err != nil {
		return nil, fmt.Errorf("bench topology: %w", err)
	}
	t.inet = t.priv
	if err := t.link(natOutX, netip.PrefixFrom(natOut, 24), t.inet, netip.PrefixFrom(inetAddr, 24), netip.Addr{}); err != nil {
		return nil, err
	}
	cmds := []nsCommand{
		{t.priv, []string{"ip", "addr", "add", netip.PrefixFrom(privAddr, 32).String(), "dev", hostDev}},
		{t.nat, []string{"ip", "route", "add", "default", "via", inetAddr.String(), "dev", natOutX}},
		{t.nat, []string{"ip", "route", "add", privCIDR.String(), "via", inetAddr.String(), "dev", natOutX}},
		{t.priv, []string{"ethtool", "-K", hostDev, "tx", "off", "gro", "on"}},
		{t.nat, []string{"ethtool", "-K", natOutX, "gro", "on"}},
	}
	if err := runIn(ctx, cmds); err != nil {
		return nil, err
	}
	vpc, err := linkAttrs(t.priv, hostDev)
	if err != nil {
		return nil, err
	}
	t.privMAC, t.privIfindex = vpc.HardwareAddr, vpc.Index
	t.inetMAC, t.inetIfindex = vpc.HardwareAddr, vpc.Index
	if err := t.nat.Do(func() error {
		out, err := netlink.LinkByName(natOutX)
		if err != nil {
			return fmt.Errorf("link %s: %w", natOutX, err)
		}
		t.natInMAC, t.natOutIdx = out.Attrs().HardwareAddr, out.Attrs().Index
		t.natInIdx, t.natOutMAC = t.natOutIdx, t.natInMAC
		return nil
	}); err != nil {
		return nil, err
	}
	return t, nil
}

// nsCommand is a command to run in a namespace while building a topology.
type nsCommand struct {
	ns   *netns.NS
	args []string
}

// linkAttrs returns the attributes of the named link in ns.
func linkAttrs(ns *netns.NS, name string) (*netlink.LinkAttrs, error) {
	var a *netlink.LinkAttrs
	err := ns.Do(func() error {
		l, err := netlink.LinkByName(name)
		if err != nil {
			return fmt.Errorf("link %s in %s: %w", name, ns.Name, err)
		}
		a = l.Attrs()
		return nil
	})
	return a, err
}

// runIn runs the commands in order and stops at the first failure.
func runIn(ctx context.Context, cmds []nsCommand) error {
	for _, c := range cmds {
		if _, err := c.ns.Run(ctx, c.args[0], c.args[1:]...); err != nil {
			return fmt.Errorf("bench topology: %w", err)
		}
	}
	return nil
}

// interfaces is the number of NAT interfaces the fast path attaches to.
func (t *topo) interfaces() int {
	if t.singleENI {
		return 1
	}
	return 2
}

// link creates a veth inside the NAT namespace with its peer (named eth0)
// moved straight into peerNS: nothing appears in the host namespace.
func (t *topo) link(local string, localAddr netip.Prefix, peerNS *netns.NS, peerAddr netip.Prefix, peerGW netip.Addr) error {
	if err := t.nat.Veth(local, localAddr, peerNS, hostDev, peerAddr, peerGW); err != nil {
		return fmt.Errorf("bench topology: %w", err)
	}
	return nil
}

// resolveNeighbours makes the NAT resolve both hosts' MAC addresses (a
// datagram to the discard port of each, then a bounded wait for the
// neighbour entries), so the fast path's path lookups succeed at once.
func (t *topo) resolveNeighbours(ctx context.Context) error {
	hosts := []struct {
		dev  string
		addr netip.Addr
	}{{natIn, privAddr}, {natOutX, inetAddr}}
	if t.singleENI {
		hosts = hosts[1:] // the private host is routed via the same neighbour
	}
	for _, h := range hosts {
		if err := t.resolveNeighbour(ctx, h.dev, h.addr); err != nil {
			return err
		}
	}
	return nil
}

// resolveNeighbour makes the NAT resolve addr's MAC address on dev: a
// datagram to its discard port, then a bounded wait (2 s) for the entry.
func (t *topo) resolveNeighbour(ctx context.Context, dev string, addr netip.Addr) error {
	return t.nat.Do(func() error {
		c, err := net.Dial("udp4", netip.AddrPortFrom(addr, 9).String())
		if err != nil {
			return fmt.Errorf("resolve %s: %w", addr, err)
		}
		_, _ = c.Write([]byte{0})
		_ = c.Close()
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return fmt.Errorf("link %s: %w", dev, err)
		}
		for i := 0; i < 100 && ctx.Err() == nil; i++ {
			neighs, err := netlink.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
			if err != nil {
				return fmt.Errorf("neighbours of %s: %w", dev, err)
			}
			for _, n := range neighs {
				if n.IP.Equal(net.IP(addr.AsSlice())) && n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE|netlink.NUD_PERMANENT) != 0 {
					return nil
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		return fmt.Errorf("neighbour %s on %s not resolved after 2s", addr, dev)
	})
}

// close deletes the namespaces (and with them the veths, routes, rules and
// conntrack entries inside).
func (t *topo) close() error {
	var errs []error
	if t.wire != nil {
		if err := t.wire.close(); err != nil {
			errs = append(errs, fmt.Errorf("bench wire: %w", err))
		}
	}
	nss := []*netns.NS{t.priv, t.nat, t.inet}
	if t.inet == t.priv { // single ENI: one namespace plays both hosts
		nss = nss[:2]
	}
	for _, ns := range nss {
		if ns != nil {
			if err := ns.Close(); err != nil {
				errs = append(errs, fmt.Errorf("delete namespace %s: %w", ns.Name, err))
			}
		}
	}
	return errors.Join(errs...)
}

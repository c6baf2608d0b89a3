package bench

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/hanat/hanat/internal/netns"
)

// Host-side veth pairs behind the wire: the TCP stack's interface (with
// the host's address) and its peer, which the wire connects to eth0.
const (
	privStackDev = "c0"
	privWireDev  = "c1"
	inetStackDev = "s0"
	inetWireDev  = "s1"
)

// wire is what sits between the hosts' TCP stacks and the NAT in the
// two-ENI shape. On EC2 the NAT instance receives frames from the ENA
// NIC, never a local sender's 64 KB GSO socket buffers, and veth would
// otherwise hand the NAT exactly those: the slow path forwards one of
// them per 64 KB while native XDP on the NAT's veth disables the sender's
// GSO and copies every cloned TCP segment into a page. So:
//
//   - priv: the client's stack is on c0 (privAddr); c1—eth0 is an XDP
//     wire (wire_xdp), so every segment reaches the NAT's in0 as a frame,
//     in every mode alike (the copy into a frame is paid on c1, in the
//     client's namespace);
//   - inet: the server's stack is on s0 (inetAddr); s1—eth0 is a tc wire
//     (wire_tc), which passes socket buffers whole: the slow path's GSO
//     output is not segmented on the way (as a TSO NIC would not), and
//     the fast path's frames are built into socket buffers (and GRO'd) by
//     eth0 as a NIC driver would.
//
// The UDP generator and counter keep using the eth0s directly.
type wire struct {
	progs struct {
		WireXdp      *ebpf.Program `ebpf:"wire_xdp"`
		WireTc       *ebpf.Program `ebpf:"wire_tc"`
		WireXdpPorts *ebpf.Map     `ebpf:"wire_xdp_ports"`
		WireTcPorts  *ebpf.Map     `ebpf:"wire_tc_ports"`
	}
	links []link.Link
}

func (w *wire) close() error {
	var errs []error
	for _, l := range w.links {
		errs = append(errs, l.Close())
	}
	w.links = nil
	for _, c := range []interface{ Close() error }{w.progs.WireXdp, w.progs.WireTc, w.progs.WireXdpPorts, w.progs.WireTcPorts} {
		if c != nil {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// wireHosts moves the hosts' addresses behind the wires (see wire).
func (t *topo) wireHosts(ctx context.Context) error {
	spec, err := loadBenchXDP()
	if err != nil {
		return fmt.Errorf("bench wire: %w", err)
	}
	t.wire = &wire{}
	if err := spec.LoadAndAssign(&t.wire.progs, nil); err != nil {
		return fmt.Errorf("bench wire: load programs: %w", err)
	}
	hosts := []struct {
		ns          *netns.NS
		stack, peer string
		addr        netip.Prefix
		gw          netip.Addr
		tc          bool
	}{
		{t.priv, privStackDev, privWireDev, netip.PrefixFrom(privAddr, 24), natInAddr, false},
		{t.inet, inetStackDev, inetWireDev, netip.PrefixFrom(inetAddr, 24), netip.Addr{}, true},
	}
	for _, h := range hosts {
		cmds := [][]string{
			{"ip", "link", "add", h.stack, "type", "veth", "peer", "name", h.peer},
			{"ip", "addr", "del", h.addr.String(), "dev", hostDev},
			{"ip", "addr", "add", h.addr.String(), "dev", h.stack},
			{"ip", "link", "set", h.stack, "up"},
			{"ip", "link", "set", h.peer, "up"},
			// The stack computes checksums in software (an XDP rewrite
			// cannot complete partial ones); GRO on gives the veths
			// NAPI, which they need to receive redirected frames.
			{"ethtool", "-K", h.stack, "tx", "off", "gro", "on"},
			{"ethtool", "-K", h.peer, "gro", "on"},
		}
		if h.gw.IsValid() {
			cmds = append(cmds, []string{"ip", "route", "replace", "default", "via", h.gw.String(), "dev", h.stack})
		}
		for _, c := range cmds {
			if _, err := h.ns.Run(ctx, c[0], c[1:]...); err != nil {
				return fmt.Errorf("bench wire in %s: %w", h.ns.Name, err)
			}
		}
		if err := h.ns.Do(func() error {
			peer, err := netlink.LinkByName(h.peer)
			if err != nil {
				return fmt.Errorf("link %s: %w", h.peer, err)
			}
			eth, err := netlink.LinkByName(hostDev)
			if err != nil {
				return fmt.Errorf("link %s: %w", hostDev, err)
			}
			a, b := uint32(peer.Attrs().Index), uint32(eth.Attrs().Index)
			for _, ix := range []int{int(a), int(b)} {
				var l link.Link
				var err error
				if h.tc {
					l, err = link.AttachTCX(link.TCXOptions{Interface: ix, Program: t.wire.progs.WireTc, Attach: ebpf.AttachTCXIngress})
				} else {
					l, err = link.AttachXDP(link.XDPOptions{Interface: ix, Program: t.wire.progs.WireXdp, Flags: link.XDPDriverMode})
				}
				if err != nil {
					return fmt.Errorf("attach wire to ifindex %d: %w", ix, err)
				}
				t.wire.links = append(t.wire.links, l)
			}
			ports := t.wire.progs.WireXdpPorts
			if h.tc {
				ports = t.wire.progs.WireTcPorts
			}
			if err := ports.Put(a, b); err != nil {
				return fmt.Errorf("wire port %d -> %d: %w", a, b, err)
			}
			if err := ports.Put(b, a); err != nil {
				return fmt.Errorf("wire port %d -> %d: %w", b, a, err)
			}
			return nil
		}); err != nil {
			return fmt.Errorf("bench wire in %s: %w", h.ns.Name, err)
		}
	}
	return nil
}

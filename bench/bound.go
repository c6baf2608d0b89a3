package bench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/hanat/hanat/bpf"
)

// Bounds that do strictly less than a backend, measured in the same run:
// the bare forwarders plus the fast path's flow lookup at a scale test's
// flow count, and TCP bulk through a bare tc forwarder both ways.
const (
	scaleLookupXDPSuffix = "_bare_xdp_forwarder_lookup"
	scaleLookupTCSuffix  = "_bare_tc_forwarder_lookup"
	// The same forwarders reading the value they found and adding to its
	// counters (lookupValue): every per-flow memory access of a hit.
	scaleLookupValueXDPSuffix = scaleLookupXDPSuffix + "_value"
	scaleLookupValueTCSuffix  = scaleLookupTCSuffix + "_value"
	// MTCPBulkBareTC is iperf3 through a bare tc forwarder both ways in
	// place of the NAT: no NAT, no conntrack, no lookup, the hosts' TCP
	// stacks and the wires alone.
	MTCPBulkBareTC = "tcp_bulk_bare_tc_forwarder"
)

// genFlowKey is generator flow f as the fast path keys it on the NAT's
// receiving interface (genLayout's spread over ports).
func genFlowKey(t *topo, flows int) func(int) bpf.FlowKey {
	ports, _ := genLayout(flows)
	return func(f int) bpf.FlowKey {
		return bpf.FlowKey{Ifindex: uint32(t.natInIdx), Proto: bpf.ProtoUDP,
			Src: netip.AddrPortFrom(privAddr, uint16(genSportBase+f%ports)),
			Dst: netip.AddrPortFrom(inetAddr, uint16(genDport+f/ports))}
	}
}

// lookupCeiling is ceiling with the forwarder doing the fast path's flow
// lookup first (bench_fwd_lookup natively, or bench_fwd_lookup_tc for
// k == fwdTC), in a map of maxEntries entries, the fast path's layout,
// holding every generator flow. Frames arrive untranslated. With
// lookupValue the forwarder also reads the value it found and adds the
// packet to its counters, as a fast-path hit does (still no rewrite, no
// checks). Like ceiling, it runs in a lab of no mode.
func (tr *traffic) lookupCeiling(ctx context.Context, d time.Duration, k forwarder, maxEntries uint32, lookupValue bool) (float64, error) {
	if k != fwdXDP && k != fwdTC {
		return 0, fmt.Errorf("lookup ceiling: forwarder %s: want the native XDP or the tc one", k)
	}
	fspec, err := bpf.LoadFastpath()
	if err != nil {
		return 0, fmt.Errorf("lookup ceiling: %w", err)
	}
	mspec := fspec.Maps[bpf.FastpathMapFlows].Copy()
	mspec.MaxEntries = maxEntries
	mspec.Pinning = ebpf.PinNone
	flows, err := ebpf.NewMap(mspec)
	if err != nil {
		return 0, fmt.Errorf("lookup ceiling: flow map of %d entries: %w", maxEntries, err)
	}
	defer flows.Close()
	if err := fillFlowMap(flows, tr.flows, genFlowKey(tr.t, tr.flows), fwdIfindex(tr.t)); err != nil {
		return 0, fmt.Errorf("lookup ceiling: %w", err)
	}
	spec, err := loadBenchXDP()
	if err != nil {
		return 0, fmt.Errorf("lookup ceiling: %w", err)
	}
	if err := setVars(spec, map[string]any{
		"fwd_src_mac":      mac6(tr.t.natOutMAC),
		"fwd_dst_mac":      mac6(tr.t.inetMAC),
		"fwd_ifindex":      fwdIfindex(tr.t),
		"fwd_lookup_touch": boolU32(lookupValue),
	}); err != nil {
		return 0, fmt.Errorf("lookup ceiling: %w", err)
	}
	spec.Maps[benchXDPMapFlows].MaxEntries = maxEntries
	var objs struct {
		Fwd   *ebpf.Program `ebpf:"bench_fwd_lookup"`
		FwdTC *ebpf.Program `ebpf:"bench_fwd_lookup_tc"`
		Port  *ebpf.Map     `ebpf:"fwd_port"`
	}
	if err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{benchXDPMapFlows: flows}}); err != nil {
		return 0, fmt.Errorf("lookup ceiling: load: %w", err)
	}
	defer objs.Fwd.Close()
	defer objs.FwdTC.Close()
	defer objs.Port.Close()
	var l link.Link
	if err := tr.t.nat.Do(func() (err error) {
		if !tr.t.singleENI {
			if err := objs.Port.Put(uint32(tr.t.natOutIdx), uint32(tr.t.natOutIdx)); err != nil {
				return fmt.Errorf("forwarder port %d: %w", tr.t.natOutIdx, err)
			}
		}
		if k == fwdTC {
			l, err = link.AttachTCX(link.TCXOptions{Program: objs.FwdTC, Interface: tr.t.natInIdx, Attach: ebpf.AttachTCXIngress})
		} else {
			l, err = link.AttachXDP(link.XDPOptions{Program: objs.Fwd, Interface: tr.t.natInIdx, Flags: link.XDPDriverMode})
		}
		return err
	}); err != nil {
		return 0, fmt.Errorf("lookup ceiling: attach the %s with the lookup: %w", k, err)
	}
	defer l.Close()
	return tr.measureUntranslated(ctx, d, tr.t.singleENI)
}

// tcpCeiling is iperf3's rate with a bare tc forwarder both ways in place
// of the NAT (bench_fwd2_tc on in0 and out0: IPv4 to the other interface
// with the next hop's MAC, ARP to the stack) and a route back to the
// private subnet on the internet host, as nothing translates. The two-ENI
// shape, in a lab of no mode with its iperf3 server.
func tcpCeiling(ctx context.Context, t *topo, iperf3 string, d time.Duration) (float64, error) {
	if t.singleENI {
		return 0, fmt.Errorf("tcp ceiling: the two-ENI shape only")
	}
	if err := t.resolveNeighbours(ctx); err != nil {
		return 0, fmt.Errorf("tcp ceiling: %w", err)
	}
	privMAC, err := t.neighbourMAC(natIn, privAddr)
	if err != nil {
		return 0, fmt.Errorf("tcp ceiling: %w", err)
	}
	inetMAC, err := t.neighbourMAC(natOutX, inetAddr)
	if err != nil {
		return 0, fmt.Errorf("tcp ceiling: %w", err)
	}
	spec, err := loadBenchXDP()
	if err != nil {
		return 0, fmt.Errorf("tcp ceiling: %w", err)
	}
	var objs struct {
		Fwd  *ebpf.Program `ebpf:"bench_fwd2_tc"`
		Hops *ebpf.Map     `ebpf:"fwd_hops"`
	}
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return 0, fmt.Errorf("tcp ceiling: load: %w", err)
	}
	defer objs.Fwd.Close()
	defer objs.Hops.Close()
	hops := []struct {
		in  int
		hop benchXDPFwdHop
	}{
		{t.natInIdx, benchXDPFwdHop{Ifindex: uint32(t.natOutIdx), SrcMac: mac6(t.natOutMAC), DstMac: mac6(inetMAC)}},
		{t.natOutIdx, benchXDPFwdHop{Ifindex: uint32(t.natInIdx), SrcMac: mac6(t.natInMAC), DstMac: mac6(privMAC)}},
	}
	var links []link.Link
	defer func() {
		for _, l := range links {
			_ = l.Close()
		}
	}()
	if err := t.nat.Do(func() error {
		for _, h := range hops {
			if err := objs.Hops.Put(uint32(h.in), h.hop); err != nil {
				return fmt.Errorf("next hop of ifindex %d: %w", h.in, err)
			}
			l, err := link.AttachTCX(link.TCXOptions{Program: objs.Fwd, Interface: h.in, Attach: ebpf.AttachTCXIngress})
			if err != nil {
				return fmt.Errorf("attach to ifindex %d: %w", h.in, err)
			}
			links = append(links, l)
		}
		return nil
	}); err != nil {
		return 0, fmt.Errorf("tcp ceiling: %w", err)
	}
	if _, err := t.inet.Run(ctx, "ip", "route", "replace", privCIDR.String(), "via", natOut.String()); err != nil {
		return 0, fmt.Errorf("tcp ceiling: route to %s in %s: %w", privCIDR, t.inet.Name, err)
	}
	bps, _, err := tcpBulk(ctx, t, iperf3, d)
	if err != nil {
		return 0, fmt.Errorf("tcp ceiling: %w", err)
	}
	return bps / 1e9, nil
}

// neighbourMAC is the NAT's resolved neighbour entry for addr on dev.
func (t *topo) neighbourMAC(dev string, addr netip.Addr) (mac net.HardwareAddr, err error) {
	err = t.nat.Do(func() error {
		l, err := netlink.LinkByName(dev)
		if err != nil {
			return fmt.Errorf("link %s: %w", dev, err)
		}
		neighs, err := netlink.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
		if err != nil {
			return fmt.Errorf("neighbours of %s: %w", dev, err)
		}
		i := slices.IndexFunc(neighs, func(n netlink.Neigh) bool {
			return n.IP.Equal(net.IP(addr.AsSlice())) && len(n.HardwareAddr) == 6
		})
		if i < 0 {
			return fmt.Errorf("no neighbour %s on %s", addr, dev)
		}
		mac = neighs[i].HardwareAddr
		return nil
	})
	return mac, err
}

func boolU32(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

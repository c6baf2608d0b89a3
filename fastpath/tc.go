package fastpath

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// The tc backend: the tc program from package bpf on the interface's
// ingress, as a tcx link where the kernel has tcx (6.6+), else as a
// direct-action bpf filter under a clsact qdisc. It keeps GRO and GSO on
// (generic XDP turns GRO off) and takes the skb's checksum-offload state
// into account, so it is the backend wherever native XDP is refused: ENA
// above MTU 3498 (EC2's default MTU is 9001), and veths whose peer cannot
// receive XDP frames.

// tcLinkPinPrefix names a pinned tcx link: <pin path>/tc_link_<ifname>.
const tcLinkPinPrefix = "tc_link_"

// The clsact filter the tc program runs as when there is no tcx.
const (
	tcFilterName     = "hanat_fastpath"
	tcFilterPriority = 1
	tcFilterHandle   = 1
)

// Ways the tc backend attaches (attachment.note names them).
const (
	tcHookTCX    = "tcx"
	tcHookClsact = "clsact"
)

// tcHook is the tc program on one interface: a tcx link or a clsact filter.
type tcHook struct {
	lnk    link.Link          // tcx
	filter *netlink.BpfFilter // clsact
	how    string             // tcHookTCX or tcHookClsact
}

// attachTC attaches the tc program to ifindex's ingress: tcx first, the
// clsact filter when the kernel has no tcx. The tcx link is pinned so the
// program stays across a restart; a filter stays by itself.
func (f *XDP) attachTC(name string, ifindex int) (*tcHook, error) {
	prog, err := f.objs.TCProgram()
	if err != nil {
		return nil, fmt.Errorf("tc program not loaded: %w", err)
	}
	lnk, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: ebpf.AttachTCXIngress})
	if err == nil {
		path := f.tcLinkPin(name)
		f.removePin(path)
		if err := lnk.Pin(path); err != nil {
			f.log.Warn("cannot pin tcx link; a restart of hanatd will briefly detach the fast path", "path", path, "err", err)
		}
		return &tcHook{lnk: lnk, how: tcHookTCX}, nil
	}
	if !errors.Is(err, ebpf.ErrNotSupported) {
		return nil, fmt.Errorf("attach tcx ingress on %s: %w", name, err)
	}
	filter, ferr := attachClsact(ifindex, prog)
	if ferr != nil {
		return nil, fmt.Errorf("no tcx (%v); clsact on %s: %w", err, name, ferr)
	}
	return &tcHook{filter: filter, how: tcHookClsact}, nil
}

// attachClsact adds (or replaces) the direct-action filter under a clsact
// qdisc, which it creates when missing.
func attachClsact(ifindex int, prog *ebpf.Program) (*netlink.BpfFilter, error) {
	qdisc := &netlink.GenericQdisc{
		QdiscAttrs: netlink.QdiscAttrs{LinkIndex: ifindex, Handle: netlink.MakeHandle(0xffff, 0), Parent: netlink.HANDLE_CLSACT},
		QdiscType:  "clsact",
	}
	if err := netlink.QdiscAdd(qdisc); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("add clsact qdisc: %w", err)
	}
	filter := &netlink.BpfFilter{
		FilterAttrs: netlink.FilterAttrs{
			LinkIndex: ifindex,
			Parent:    netlink.HANDLE_MIN_INGRESS,
			Handle:    tcFilterHandle,
			Protocol:  unix.ETH_P_ALL,
			Priority:  tcFilterPriority,
		},
		Fd:           prog.FD(),
		Name:         tcFilterName,
		DirectAction: true,
	}
	if err := netlink.FilterReplace(filter); err != nil {
		return nil, fmt.Errorf("add ingress bpf filter: %w", err)
	}
	return filter, nil
}

// detach removes the hook (and the tcx link's pin).
func (h *tcHook) detach() error {
	if h.lnk != nil {
		uerr := h.lnk.Unpin()
		if errors.Is(uerr, os.ErrNotExist) {
			uerr = nil
		}
		return errors.Join(uerr, h.lnk.Close())
	}
	if err := netlink.FilterDel(h.filter); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete ingress bpf filter: %w", err)
	}
	return nil
}

// close releases this process's handle; a pinned link and a filter keep
// the program attached.
func (h *tcHook) close() error {
	if h.lnk != nil {
		return h.lnk.Close()
	}
	return nil
}

// adoptPinnedTC takes over a tcx link pinned by an earlier run on this
// interface and points it at the new program.
func (f *XDP) adoptPinnedTC(name string, ifindex int) (*tcHook, bool) {
	path := f.tcLinkPin(name)
	lnk, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			f.removePin(path)
		}
		return nil, false
	}
	prog, perr := f.objs.TCProgram()
	info, ierr := lnk.Info()
	if perr != nil || ierr != nil || info.TCX() == nil || int(info.TCX().Ifindex) != ifindex || lnk.Update(prog) != nil {
		_ = lnk.Unpin()
		_ = lnk.Close()
		return nil, false
	}
	f.log.Info("fast path kept attached across restart", "interface", name, "mode", BackendTC)
	return &tcHook{lnk: lnk, how: tcHookTCX}, true
}

func (f *XDP) tcLinkPin(name string) string {
	return filepath.Join(f.pinPath, tcLinkPinPrefix+name)
}

// vethPeerTakesXDP reports whether the peer of veth l can receive the XDP
// frames l transmits (XDP_TX and redirects): the kernel delivers them only
// into the peer's NAPI, which runs while the peer is up and has an XDP
// program or GRO on (threaded NAPI too, which no cheap call shows: it
// counts as "no"; falling back to tc is slower, a wrong "yes" is a
// blackhole). It must run in l's namespace; the peer may be in another.
func vethPeerTakesXDP(l netlink.Link) (bool, string) {
	a := l.Attrs()
	if a.ParentIndex == 0 {
		return false, fmt.Sprintf("veth %s: peer unknown", a.Name)
	}
	req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_ACK)
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Index = int32(a.ParentIndex)
	req.AddData(msg)
	if a.NetNsID >= 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_TARGET_NETNSID, nl.Uint32Attr(uint32(a.NetNsID))))
	}
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWLINK)
	if err != nil || len(msgs) == 0 {
		return false, fmt.Sprintf("veth %s: peer ifindex %d (netns id %d) not readable: %v", a.Name, a.ParentIndex, a.NetNsID, err)
	}
	peer, err := netlink.LinkDeserialize(nil, msgs[0])
	if err != nil {
		return false, fmt.Sprintf("veth %s: peer ifindex %d: %v", a.Name, a.ParentIndex, err)
	}
	pa := peer.Attrs()
	if pa.Flags&net.FlagUp == 0 {
		return false, fmt.Sprintf("veth %s: its peer %s is down", a.Name, pa.Name)
	}
	if x := pa.Xdp; x != nil && x.Attached {
		return true, ""
	}
	gro, err := peerGRO(a.NetNsID, pa.Name)
	if err != nil {
		return false, fmt.Sprintf("veth %s: its peer %s has no XDP program and its GRO is unknown (%v)", a.Name, pa.Name, err)
	}
	if gro {
		return true, ""
	}
	return false, fmt.Sprintf("veth %s: its peer %s has neither an XDP program nor GRO, so no NAPI to receive XDP frames (they would be dropped)", a.Name, pa.Name)
}

package gwlb

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/hanat/hanat/bpf"
	"github.com/hanat/hanat/conntrack"
)

// protoICMP is ICMP's IP protocol number.
const protoICMP = 1

// Check returns nil while both programs are still attached to the ENI
// (tcx ingress and egress list them), else what is missing: someone may
// have detached them, or the interface may be gone.
func (d *Datapath) Check() error {
	if d.objs == nil || len(d.links) != 2 {
		return fmt.Errorf("gwlb: not attached to %s", d.link)
	}
	l, err := netlink.LinkByName(d.link)
	if err != nil {
		return fmt.Errorf("gwlb: interface %q: %w", d.link, err)
	}
	if l.Attrs().Index != d.ifindex {
		return fmt.Errorf("gwlb: interface %q is now index %d, the programs were attached to %d", d.link, l.Attrs().Index, d.ifindex)
	}
	for _, h := range []struct {
		prog   *ebpf.Program
		attach ebpf.AttachType
	}{
		{d.objs.HanatGwlbIngress, ebpf.AttachTCXIngress},
		{d.objs.HanatGwlbEgress, ebpf.AttachTCXEgress},
	} {
		if err := onLink(d.ifindex, h.prog, h.attach); err != nil {
			return fmt.Errorf("gwlb: %s: %w", d.link, err)
		}
	}
	return nil
}

// onLink reports whether prog is among the programs attached at hook of
// ifindex.
func onLink(ifindex int, prog *ebpf.Program, hook ebpf.AttachType) error {
	info, err := prog.Info()
	if err != nil {
		return fmt.Errorf("program info: %w", err)
	}
	id, ok := info.ID()
	if !ok {
		return errors.New("kernel gives no program id")
	}
	r, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: hook})
	if err != nil {
		return fmt.Errorf("query %v programs: %w", hook, err)
	}
	for _, p := range r.Programs {
		if p.ID == id {
			return nil
		}
	}
	return fmt.Errorf("program %d is no longer attached at %v", id, hook)
}

// Cleanup detaches what Attach pinned under pinDir on any interface (the
// pinned tcx links) and removes the map pins: what `hanatd --cleanup`
// does without a Datapath. Missing pins are not an error.
func Cleanup(pinDir string) error {
	var errs []error
	for _, pre := range []string{pinIngress, pinEgress} {
		paths, err := filepath.Glob(filepath.Join(pinDir, pre+"*"))
		if err != nil {
			return fmt.Errorf("gwlb: cleanup %s: %w", pinDir, err)
		}
		for _, p := range paths {
			if err := unpinLink(p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := bpf.RemoveGWLBPins(pinDir); err != nil {
		errs = append(errs, err)
	}
	if err := os.Remove(pinDir); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove %s: %w", pinDir, err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("gwlb: cleanup: %w", err)
	}
	return nil
}

// unpinLink detaches the link pinned at path (its last reference is the
// pin) or, when it is no link, removes the file.
func unpinLink(path string) error {
	lnk, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			return fmt.Errorf("remove pin %s: %w", path, rerr)
		}
		return nil
	}
	uerr := lnk.Unpin()
	cerr := lnk.Close()
	if err := errors.Join(uerr, cerr); err != nil {
		return fmt.Errorf("unpin link %s: %w", path, err)
	}
	return nil
}

// Conntrack is the kernel table the live flows are checked against
// (a *conntrack.Table).
type Conntrack interface {
	Flows(ctx context.Context, f conntrack.Filter) ([]conntrack.Flow, error)
}

// LiveFlows returns the remembered flows that conntrack still has: the
// flow map is an LRU that forgets a flow only under pressure, so a drain
// that waits for the NAT's flows to end must ask conntrack which of them
// still exist. f names hanat's flows (one table dump per call).
func (d *Datapath) LiveFlows(ctx context.Context, ct Conntrack, f conntrack.Filter) ([]Flow, error) {
	flows, err := d.Flows()
	if err != nil {
		return nil, err
	}
	if len(flows) == 0 {
		return nil, nil
	}
	nat, err := ct.Flows(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("gwlb: live flows: %w", err)
	}
	return Live(flows, nat), nil
}

// Live keeps the flows whose inner 5-tuple is the original tuple of one
// of the conntrack flows nat.
func Live(flows []Flow, nat []conntrack.Flow) []Flow {
	have := make(map[conntrack.Tuple]struct{}, len(nat))
	for _, c := range nat {
		have[c.Original] = struct{}{}
	}
	var live []Flow
	for _, fl := range flows {
		if _, ok := have[fl.Tuple()]; ok {
			live = append(live, fl)
		}
	}
	return live
}

// Tuple is the flow's original tuple as conntrack keeps it: an ICMP echo's
// id (both ports here) is conntrack's ICMPID, its ports zero.
func (f Flow) Tuple() conntrack.Tuple {
	t := conntrack.Tuple{Proto: f.Proto, Src: f.Src, Dst: f.Dst}
	if f.Proto == protoICMP {
		t.ICMPID = f.Src.Port()
		t.Src = netip.AddrPortFrom(f.Src.Addr(), 0)
		t.Dst = netip.AddrPortFrom(f.Dst.Addr(), 0)
	}
	return t
}

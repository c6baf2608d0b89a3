// Package gwlb is a GWLB fleet member's datapath (two-arm mode): the tc
// programs of bpf/gwlb.c on the member's ENI, loaded, attached with tcx,
// pinned, and read back.
//
// GWLB sends the private hosts' packets to the ENI's own address, GENEVE
// on UDP 6081. The ingress program takes them only from the GWLB addresses
// it is given, checks the header with package geneve's rules (every
// refusal a counted drop), remembers each inner flow's options and GWLB,
// and hands the inner packet to the stack, whose ruleset forwards and
// SNATs it. The egress program wraps the de-NATed replies of those flows
// again, with the same options, from the ENI's address to that GWLB.
package gwlb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"github.com/hanat/hanat/bpf"
)

// Config says where the datapath runs.
type Config struct {
	Link      string       // the ENI's interface
	LocalAddr netip.Addr   // the ENI's primary IPv4 address: GENEVE's destination, the replies' source
	GWLBAddrs []netip.Addr // the GWLBs' addresses: GENEVE from anything else is dropped
	// PinDir, when set, is a directory on a bpffs where the maps and the
	// tcx links are pinned, so the programs and the flows' return paths
	// outlive the process; the next Attach adopts them.
	PinDir string
}

// The tcx links' pins: <PinDir>/gwlb_ingress_<link> and gwlb_egress_<link>.
const (
	pinIngress = "gwlb_ingress_"
	pinEgress  = "gwlb_egress_"
)

// Datapath is the two programs attached to one ENI.
type Datapath struct {
	objs     *bpf.GwlbObjects
	maps     tables
	links    []link.Link // ingress, egress
	linkPins []string    // their pins ("" without PinDir)
	pinDir   string
	link     string // the ENI's interface
	ifindex  int    // and its index at Attach
}

// Attach loads the programs, sets the local and GWLB addresses and
// attaches ingress and egress to cfg.Link with tcx, each at the head of
// its hook (so ingress decapsulates before a fast path's tc program sees
// the packet). Links pinned by an earlier Attach on the same interface
// are adopted and pointed at the new programs, so the ENI never runs
// without them.
func Attach(ctx context.Context, cfg Config) (*Datapath, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("gwlb: attach to %s: %w", cfg.Link, err)
	}
	l, err := netlink.LinkByName(cfg.Link)
	if err != nil {
		return nil, fmt.Errorf("gwlb: interface %q: %w", cfg.Link, err)
	}
	ifindex := l.Attrs().Index
	objs, err := bpf.LoadGWLB(cfg.PinDir, slog.Default())
	if err != nil {
		return nil, fmt.Errorf("gwlb: %w", err)
	}
	d := &Datapath{objs: objs, maps: tables{&objs.GwlbMaps}, pinDir: cfg.PinDir, link: cfg.Link, ifindex: ifindex}
	if err := d.maps.setLocal(cfg.LocalAddr.Unmap()); err != nil {
		d.Close()
		return nil, err
	}
	if err := d.maps.setGWLBAddrs(cfg.GWLBAddrs); err != nil {
		d.Close()
		return nil, err
	}
	for _, h := range []struct {
		prog   *ebpf.Program
		attach ebpf.AttachType
		pin    string
	}{
		{objs.HanatGwlbIngress, ebpf.AttachTCXIngress, pinIngress},
		{objs.HanatGwlbEgress, ebpf.AttachTCXEgress, pinEgress},
	} {
		path := ""
		if cfg.PinDir != "" {
			path = filepath.Join(cfg.PinDir, h.pin+cfg.Link)
		}
		lnk, err := attachTCX(ifindex, h.prog, h.attach, path)
		if err != nil {
			d.Detach()
			return nil, fmt.Errorf("gwlb: attach %v on %s: %w", h.attach, cfg.Link, err)
		}
		d.links = append(d.links, lnk)
		d.linkPins = append(d.linkPins, path)
	}
	return d, nil
}

// attachTCX adopts the link pinned at path when it is a tcx link on
// ifindex (pointing it at prog), else attaches prog at the hook's head and
// pins the new link there.
func attachTCX(ifindex int, prog *ebpf.Program, attach ebpf.AttachType, path string) (link.Link, error) {
	if path != "" {
		if lnk, err := link.LoadPinnedLink(path, nil); err == nil {
			info, ierr := lnk.Info()
			if ierr == nil && info.TCX() != nil && int(info.TCX().Ifindex) == ifindex &&
				ebpf.AttachType(info.TCX().AttachType) == attach && lnk.Update(prog) == nil {
				return lnk, nil
			}
			_ = lnk.Unpin()
			_ = lnk.Close()
		} else if !errors.Is(err, os.ErrNotExist) {
			_ = os.Remove(path)
		}
	}
	lnk, err := link.AttachTCX(link.TCXOptions{Interface: ifindex, Program: prog, Attach: attach, Anchor: link.Head()})
	if err != nil {
		return nil, err
	}
	if path != "" {
		if err := lnk.Pin(path); err != nil {
			lnk.Close()
			return nil, fmt.Errorf("pin link at %q: %w", path, err)
		}
	}
	return lnk, nil
}

// SetGWLBAddrs replaces the GWLB addresses: GENEVE is taken only from
// them, and replies are encapsulated only towards them.
func (d *Datapath) SetGWLBAddrs(addrs []netip.Addr) error { return d.maps.setGWLBAddrs(addrs) }

// GWLBAddrs returns the GWLB addresses in force.
func (d *Datapath) GWLBAddrs() ([]netip.Addr, error) { return d.maps.gwlbAddrs() }

// Counters returns every counter by name (Reasons), zeros included,
// summed over CPUs.
func (d *Datapath) Counters() (map[string]uint64, error) { return d.maps.counters() }

// Flows returns the remembered inner flows.
func (d *Datapath) Flows() ([]Flow, error) { return d.maps.flows() }

// Close releases this process's handles. Pinned links and maps keep the
// programs attached and the flows remembered for the next Attach; without
// PinDir, closing the links detaches the programs.
func (d *Datapath) Close() error {
	var errs []error
	for _, l := range d.links {
		errs = append(errs, l.Close())
	}
	d.links = nil
	if d.objs != nil {
		errs = append(errs, d.objs.Close())
		d.objs = nil
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("gwlb: close: %w", err)
	}
	return nil
}

// Detach removes both programs from the ENI and the pins (links and
// maps), then closes: the remembered flows are gone.
func (d *Datapath) Detach() error {
	var errs []error
	for i, l := range d.links {
		if d.linkPins[i] != "" {
			if err := l.Unpin(); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, fmt.Errorf("unpin link %q: %w", d.linkPins[i], err))
			}
		}
	}
	if d.pinDir != "" {
		errs = append(errs, bpf.RemoveGWLBPins(d.pinDir))
	}
	errs = append(errs, d.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("gwlb: detach: %w", err)
	}
	return nil
}

package fastpath

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hanat/hanat/bpf"
	"github.com/hanat/hanat/datapath"
)

// The fast path's backends: the programs from package bpf attached to the
// NAT's interfaces, their maps and links pinned on a bpffs so that
// forwarding survives a daemon restart. One backend per interface: native
// XDP, the tc program (tc.go), or generic XDP.
//
// Mode (config fastpath.mode). "auto" tries native XDP first and falls
// back to tc with a warning; "xdp" (alias "native") is native XDP only,
// "tc" the tc program only, "xdp-generic" (alias "generic") generic XDP
// only, which is never chosen unless asked for: it turns GRO off and on
// EC2 measured slower than the slow path alone for bulk TCP. When nothing
// attaches, the NAT runs on the slow path alone and State says why. Native
// mode is the fastest, but drivers refuse it in common EC2 setups: ENA
// rejects native XDP when the MTU is above 3498 bytes (EC2's default MTU
// inside a VPC is 9001), so on such an instance either lower the MTU (`ip
// link set dev ens5 mtu 3498`) to get native XDP, or keep it and run tc.
//
// Never a blackhole: an interface whose native XDP could not transmit
// what the program sends runs tc instead, and says why. A veth forwards
// XDP_TX and redirected frames only into its peer's NAPI (an XDP program,
// GRO or threaded NAPI on the peer) and only with full checksums (locally
// generated traffic carries partial ones, which an XDP rewrite cannot
// finish). "auto" therefore runs tc on veth (labs, containers); "xdp" runs
// native XDP on a veth only when its peer has an XDP program (the one NAPI
// signal netlink shows), else tc. Interfaces running tc are not XDP
// redirect targets (bpf.Objects.AddTCPort): a flow from a native XDP
// interface towards one takes the slow path.

// DefaultPinPath is where the fast path's maps and links are pinned.
const DefaultPinPath = "/sys/fs/bpf/hanat"

// Backends as State reports them, per interface and overall.
const (
	XDPNative  = "native"
	XDPGeneric = "generic"
	BackendTC  = "tc"
	XDPOff     = "off"
)

// Requested modes (config fastpath.mode).
const (
	XDPModeAuto    = "auto"
	XDPModeNative  = "xdp"
	XDPModeGeneric = "xdp-generic"
	XDPModeTC      = "tc"
)

// ParseMode returns the requested mode named by s: auto (also ""), xdp,
// tc or xdp-generic, with "native" and "generic" accepted for xdp and
// xdp-generic.
func ParseMode(s string) (string, error) {
	switch s {
	case "", XDPModeAuto:
		return XDPModeAuto, nil
	case XDPModeNative, "native":
		return XDPModeNative, nil
	case XDPModeGeneric, "generic":
		return XDPModeGeneric, nil
	case XDPModeTC:
		return XDPModeTC, nil
	}
	return "", fmt.Errorf("fast path mode %q: want %s, %s, %s or %s (or native, generic)", s, XDPModeAuto, XDPModeNative, XDPModeTC, XDPModeGeneric)
}

// linkPinPrefix names a pinned XDP link: <pin path>/xdp_link_<ifname>.
const linkPinPrefix = "xdp_link_"

// bpffsMagic is BPF_FS_MAGIC (statfs f_type of a bpffs).
const bpffsMagic = 0xcafe4a11

// XDPOptions configure OpenXDP.
type XDPOptions struct {
	// Mode is a mode ParseMode accepts; auto when empty.
	Mode string
	// PinPath is a directory on a bpffs; DefaultPinPath when empty. If
	// its bpffs is not mounted (the usual /sys/fs/bpf missing), it is
	// mounted.
	PinPath string
	// MaxFlows is the flow map size; 0 means bpf.DefaultMaxFlows.
	MaxFlows uint32
}

// InterfaceState is the fast path's state on one interface.
type InterfaceState struct {
	Name    string `json:"name"`
	Ifindex int    `json:"ifindex"`
	Mode    string `json:"mode"`            // XDPNative, XDPGeneric, BackendTC or XDPOff
	Error   string `json:"error,omitempty"` // why not native (auto) or why off
	Note    string `json:"note,omitempty"`  // why this backend, e.g. why tc and not native XDP
}

// State is what the fast path does: Mode is XDPNative when every
// interface runs the program in driver mode, XDPGeneric when at least one
// runs it in generic mode, BackendTC when at least one runs tc (and none
// generic), XDPOff when none runs it (Reason says why).
type State struct {
	Mode       string           `json:"mode"`
	Reason     string           `json:"reason,omitempty"`
	Interfaces []InterfaceState `json:"interfaces"`
}

// attachment is the program on one interface.
type attachment struct {
	name    string
	ifindex int
	mode    string
	err     string
	note    string
	lnk     link.Link // the XDP link; nil when off or on tc
	tc      *tcHook   // the tc program's hook; nil unless mode is BackendTC
	// tcFallback is why tc runs instead of the native XDP the mode asked
	// for (empty when tc is what was asked for).
	tcFallback string
}

// on reports whether a backend runs on the interface.
func (a *attachment) on() bool { return a.lnk != nil || a.tc != nil }

// XDP owns the loaded XDP program and its attachments. Its methods are
// safe for concurrent use.
type XDP struct {
	log     *slog.Logger
	mode    string
	pinPath string
	objs    *bpf.Objects

	mu       sync.Mutex
	attached map[string]*attachment // by interface name

	// The output watch (withdraw.go).
	withdrawn  map[string]withdrawal // by interface name
	watchLinks map[string]linkSample
	watchHits  uint64
	watched    bool
}

// OpenXDP mounts the bpffs if needed and loads the program, reusing
// the maps pinned by an earlier run so that offloaded flows survive a
// restart. It attaches nothing; call Sync.
func OpenXDP(log *slog.Logger, opts XDPOptions) (*XDP, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mode, err := ParseMode(opts.Mode)
	if err != nil {
		return nil, err
	}
	pinPath := opts.PinPath
	if pinPath == "" {
		pinPath = DefaultPinPath
	}
	if err := ensureBPFFS(log, pinPath); err != nil {
		return nil, err
	}
	objs, err := bpf.Load(bpf.LoadOptions{MaxFlows: opts.MaxFlows, PinPath: pinPath, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("fast path: %w", err)
	}
	return &XDP{log: log, mode: mode, pinPath: pinPath, objs: objs, attached: make(map[string]*attachment),
		withdrawn: make(map[string]withdrawal), watchLinks: make(map[string]linkSample)}, nil
}

// ensureBPFFS makes sure pinPath's parent directory is on a bpffs. When
// the parent is the standard /sys/fs/bpf and is not a bpffs yet, a bpffs is
// mounted there (as systemd does at boot); any other path must already be
// on a bpffs.
func ensureBPFFS(log *slog.Logger, pinPath string) error {
	parent := filepath.Dir(filepath.Clean(pinPath))
	if onBPFFS(parent) {
		return nil
	}
	if parent != "/sys/fs/bpf" {
		return fmt.Errorf("fast path pin path %q: %s is not on a bpffs (mount -t bpf bpf %s)", pinPath, parent, parent)
	}
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("fast path: create %s: %w", parent, err)
	}
	if err := unix.Mount("bpf", parent, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("fast path: mount bpffs on %s: %w", parent, err)
	}
	log.Info("mounted bpffs for the fast path's pinned maps", "path", parent)
	return nil
}

func onBPFFS(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return uint32(st.Type) == bpffsMagic
}

// SetMode changes the requested attach mode; the next Sync re-attaches the
// interfaces whose mode no longer fits.
func (f *XDP) SetMode(mode string) error {
	mode, err := ParseMode(mode)
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if mode == f.mode {
		return nil
	}
	f.mode = mode
	clear(f.withdrawn) // a new mode is a fresh start
	for _, a := range f.attached {
		if a.on() && !f.modeAcceptable(a.mode) {
			f.detach(a)
		}
	}
	return nil
}

// Objects is the loaded program and maps (the flow map the offload engine
// fills, the counters).
func (f *XDP) Objects() *bpf.Objects { return f.objs }

// PinPath is where the maps and links are pinned.
func (f *XDP) PinPath() string { return f.pinPath }

// Sync attaches a backend to exactly the named interfaces (idempotent):
// attachments pinned by an earlier run are taken over and switched to the
// freshly loaded program without a gap, new interfaces are attached, and
// attachments of interfaces no longer named are removed. Every attached
// interface is registered as a redirect port. Failure to attach is not an
// error: the interface is reported off and its traffic takes the slow path.
func (f *XDP) Sync(ctx context.Context, ifaces []string) State {
	f.mu.Lock()
	defer f.mu.Unlock()
	want := slices.Clone(ifaces)
	slices.Sort(want)
	want = slices.Compact(want)
	for _, name := range want {
		if ctx.Err() != nil {
			break
		}
		f.syncOne(name)
	}
	// Remove the attachments of interfaces no longer wanted, including
	// pins left by an earlier run under another configuration.
	for _, name := range f.pinnedNames() {
		if slices.Contains(want, name) {
			continue
		}
		if a, ok := f.attached[name]; ok && a.on() {
			f.detach(a)
		} else {
			f.removePinnedLink(name)
		}
		delete(f.attached, name)
	}
	for name, a := range f.attached {
		if !slices.Contains(want, name) {
			if a.on() {
				f.detach(a)
			}
			delete(f.attached, name)
		}
	}
	return f.stateLocked()
}

// syncOne makes sure the right backend runs on one interface.
func (f *XDP) syncOne(name string) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		f.setOff(name, 0, fmt.Sprintf("interface %s: %v", name, err))
		return
	}
	ifindex := l.Attrs().Index
	a := f.attached[name]
	if a != nil && a.on() && a.ifindex == ifindex {
		// Still attached by us (the interface could have been
		// recreated under the same name: then ifindex differs).
		switch {
		case a.mode == BackendTC:
			if a.tcFallback == "" || f.plan(l).first() == BackendTC {
				return
			}
			f.log.Info("the reason for tc is gone; trying XDP again", "interface", name, "was", a.tcFallback)
		case currentXDPMode(l) != a.mode:
			f.log.Warn("XDP program no longer attached as expected; re-attaching", "interface", name)
		case f.plan(l).first() == BackendTC && a.mode == XDPNative:
			f.log.Warn("native XDP can no longer transmit on this interface; switching to tc", "interface", name)
		default:
			return
		}
		f.detach(a)
	}
	if a == nil || !a.on() {
		if na, ok := f.adopt(name, l); ok {
			f.attached[name] = na
			f.addPort(na)
			return
		}
	}
	prevErr := ""
	if a != nil {
		prevErr = a.err
	}
	a = f.attach(name, l, prevErr)
	f.attached[name] = a
	if a.on() {
		f.addPort(a)
	}
}

// addPort registers an attached interface as a redirect target: of both
// programs when it runs XDP, of the tc program only when it runs tc (its
// XDP transmit is what tc avoids).
func (f *XDP) addPort(a *attachment) {
	add := f.objs.AddTxPort
	if a.mode == BackendTC {
		add = f.objs.AddTCPort
	}
	if err := add(uint32(a.ifindex)); err != nil {
		// Flows leaving through this interface from another one then
		// take the slow path (counted as pass_redirect).
		f.log.Warn("cannot register fast-path redirect port", "interface", a.name, "err", err)
	}
}

// adopt takes over what an earlier run left attached when it still fits
// the plan for the interface.
func (f *XDP) adopt(name string, l netlink.Link) (*attachment, bool) {
	p := f.plan(l)
	a := &attachment{name: name, ifindex: l.Attrs().Index, note: p.note}
	if p.first() == "" {
		return nil, false
	}
	if p.first() == BackendTC {
		f.removePinnedXDP(name)
		if h, ok := f.adoptPinnedTC(name, a.ifindex); ok {
			a.mode, a.tc, a.tcFallback = BackendTC, h, p.tcFallback
			return a, true
		}
		return nil, false
	}
	if lnk, mode, ok := f.adoptPinned(name, l); ok {
		a.mode, a.lnk = mode, lnk
		return a, true
	}
	return nil, false
}

// adoptPinned takes over a link pinned by an earlier run when it still
// holds this interface in an acceptable mode, and points it at the new
// program (an atomic replace: no packet sees no program).
func (f *XDP) adoptPinned(name string, l netlink.Link) (link.Link, string, bool) {
	path := f.linkPin(name)
	lnk, err := link.LoadPinnedLink(path, nil)
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", false
	}
	if err != nil {
		f.log.Warn("cannot open pinned XDP link; attaching afresh", "path", path, "err", err)
		f.removePin(path)
		return nil, "", false
	}
	ok := false
	defer func() {
		if !ok {
			// Unpin, then close: the last reference goes and the old
			// attachment (if any) is detached before we attach anew.
			_ = lnk.Unpin()
			_ = lnk.Close()
		}
	}()
	info, err := lnk.Info()
	if err != nil || info.XDP() == nil || int(info.XDP().Ifindex) != l.Attrs().Index {
		f.log.Info("pinned XDP link is stale (interface recreated?); attaching afresh", "interface", name)
		return nil, "", false
	}
	mode := currentXDPMode(l)
	if mode == XDPOff || !f.modeAcceptable(mode) {
		f.log.Info("pinned XDP link has another attach mode than configured; re-attaching", "interface", name, "pinned", mode, "want", f.mode)
		return nil, "", false
	}
	if err := lnk.Update(f.objs.Program()); err != nil {
		f.log.Warn("cannot switch pinned XDP link to the new program; re-attaching", "interface", name, "err", err)
		return nil, "", false
	}
	ok = true
	f.log.Info("fast path kept attached across restart", "interface", name, "mode", mode)
	return lnk, mode, true
}

func (f *XDP) modeAcceptable(mode string) bool {
	switch f.mode {
	case XDPModeNative:
		return mode == XDPNative || mode == BackendTC // tc where native would blackhole
	case XDPModeGeneric:
		return mode == XDPGeneric
	case XDPModeTC:
		return mode == BackendTC
	}
	return mode == XDPNative || mode == BackendTC
}

// try is one backend to attempt.
type try struct {
	mode  string
	flags link.XDPAttachFlags // XDP modes
}

// attachPlan is the backends to try on one interface, in order, and why.
type attachPlan struct {
	tries []try
	note  string
	// tcFallback, when set, is why tc runs where native XDP was asked for
	// (or auto would have tried it); Sync tries XDP again once it is gone.
	tcFallback string
}

// first is the backend tried first, "" when none is.
func (p attachPlan) first() string {
	if len(p.tries) == 0 {
		return ""
	}
	return p.tries[0].mode
}

// plan decides the backends for l under the configured mode.
func (f *XDP) plan(l netlink.Link) attachPlan {
	if p, ok := f.withdrawnPlan(l); ok {
		return p
	}
	native := try{XDPNative, link.XDPDriverMode}
	tc := try{mode: BackendTC}
	switch f.mode {
	case XDPModeTC:
		return attachPlan{tries: []try{tc}, note: "tc as configured"}
	case XDPModeGeneric:
		return attachPlan{tries: []try{{XDPGeneric, link.XDPGenericMode}}, note: "generic XDP as configured (GRO off)"}
	}
	if l.Type() == "veth" {
		if f.mode == XDPModeAuto {
			why := "veth: auto runs tc (native XDP on veth needs NAPI on the peer and full checksums; fastpath.mode xdp forces it where the peer has NAPI)"
			return attachPlan{tries: []try{tc}, note: why}
		}
		if ok, why := vethPeerTakesXDP(l); !ok {
			why += ": tc instead of native XDP"
			return attachPlan{tries: []try{tc}, note: why, tcFallback: why}
		}
		return attachPlan{tries: []try{native}, note: "native XDP (the veth peer has NAPI: an XDP program or GRO)"}
	}
	if f.mode == XDPModeAuto {
		return attachPlan{tries: []try{native, tc}}
	}
	return attachPlan{tries: []try{native}}
}

// attach attaches the planned backends in order until one takes, and
// pins the link.
func (f *XDP) attach(name string, l netlink.Link, prevErr string) *attachment {
	ifindex := l.Attrs().Index
	p := f.plan(l)
	a := &attachment{name: name, ifindex: ifindex, mode: XDPOff, note: p.note}
	f.removePinnedLink(name) // whatever an earlier run left that did not fit
	var errs []string
	for _, tr := range p.tries {
		if tr.mode == BackendTC {
			h, err := f.attachTC(name, ifindex)
			if err != nil {
				errs = append(errs, fmt.Sprintf("tc: %v", err))
				continue
			}
			a.tc, a.mode, a.tcFallback = h, BackendTC, p.tcFallback
			if len(errs) > 0 {
				a.err = strings.Join(errs, "; ")
				a.note = "tc: native XDP refused (" + a.err + ")"
			}
			a.note = strings.TrimPrefix(a.note+" ["+h.how+"]", " ")
			f.log.Info("fast path attached", "interface", name, "mode", BackendTC, "hook", h.how, "note", a.note)
			return a
		}
		lnk, err := link.AttachXDP(link.XDPOptions{Program: f.objs.Program(), Interface: ifindex, Flags: tr.flags})
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", tr.mode, err))
			if tr.mode == XDPNative && f.mode == XDPModeAuto {
				f.log.Warn("native XDP refused; trying tc (keeps GRO, still skips nftables and conntrack)",
					"interface", name, "err", err)
			}
			continue
		}
		path := f.linkPin(name)
		f.removePin(path) // a stale pin of a dead link
		if err := lnk.Pin(path); err != nil {
			// Still attached while hanatd runs; a restart re-attaches.
			f.log.Warn("cannot pin XDP link; a restart of hanatd will briefly detach the fast path", "path", path, "err", err)
		}
		a.lnk, a.mode = lnk, tr.mode
		if len(errs) > 0 {
			a.err = strings.Join(errs, "; ")
		}
		f.log.Info("fast path attached", "interface", name, "mode", tr.mode, "note", a.note)
		return a
	}
	a.err = strings.Join(errs, "; ")
	if len(p.tries) == 0 {
		a.err, a.note = p.note, ""
	}
	f.logOff(name, a.err, prevErr)
	return a
}

// logOff says loudly that an interface runs on the slow path only, once
// per distinct reason (Sync retries every reconcile).
func (f *XDP) logOff(name, why, prevErr string) {
	if why == prevErr {
		f.log.Debug("fast path still not attached", "interface", name, "err", why)
		return
	}
	f.log.Error("fast path NOT attached: this interface runs on the slow path only", "interface", name, "err", why)
}

func (f *XDP) setOff(name string, ifindex int, why string) {
	prev := ""
	if a, ok := f.attached[name]; ok {
		prev = a.err
		if a.on() {
			f.detach(a)
		}
	}
	f.attached[name] = &attachment{name: name, ifindex: ifindex, mode: XDPOff, err: why}
	f.logOff(name, why, prev)
}

// detach removes one attachment and its pin.
func (f *XDP) detach(a *attachment) {
	if a.lnk != nil {
		if err := a.lnk.Unpin(); err != nil && !errors.Is(err, os.ErrNotExist) {
			f.log.Warn("unpin XDP link", "interface", a.name, "err", err)
		}
		if err := a.lnk.Close(); err != nil {
			f.log.Warn("close XDP link", "interface", a.name, "err", err)
		}
	}
	if a.tc != nil {
		if err := a.tc.detach(); err != nil {
			f.log.Warn("detach tc program", "interface", a.name, "err", err)
		}
	}
	if err := f.objs.RemoveTxPort(uint32(a.ifindex)); err != nil {
		f.log.Warn("remove fast-path redirect port", "interface", a.name, "err", err)
	}
	a.lnk, a.tc, a.mode = nil, nil, XDPOff
	f.log.Info("fast path detached", "interface", a.name)
}

// removePinnedLink detaches whatever links an earlier run pinned for name.
func (f *XDP) removePinnedLink(name string) {
	f.removePinnedXDP(name)
	if removePinned(f.tcLinkPin(name)) {
		f.log.Info("fast path's tc program detached from an interface", "interface", name)
	}
}

func (f *XDP) removePinnedXDP(name string) {
	if removePinned(f.linkPin(name)) {
		f.log.Info("fast path's XDP program detached from an interface", "interface", name)
	}
}

// removePinned detaches the link pinned at path and removes the pin; it
// reports whether a live link was there.
func removePinned(path string) bool {
	lnk, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		_ = os.Remove(path)
		return false
	}
	_ = lnk.Unpin()
	_ = lnk.Close()
	return true
}

func (f *XDP) removePin(path string) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		f.log.Warn("remove stale pin", "path", path, "err", err)
	}
}

func (f *XDP) linkPin(name string) string {
	return filepath.Join(f.pinPath, linkPinPrefix+name)
}

// pinnedNames lists the interfaces with a pinned link.
func (f *XDP) pinnedNames() []string {
	return pinnedLinkNames(f.pinPath)
}

// pinnedLinkNames lists the interfaces with a pinned XDP or tcx link.
func pinnedLinkNames(pinPath string) []string {
	ents, err := os.ReadDir(pinPath)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		for _, prefix := range []string{linkPinPrefix, tcLinkPinPrefix} {
			if n, ok := strings.CutPrefix(e.Name(), prefix); ok && n != "" && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

// currentXDPMode reads the attach mode of the program on l from the kernel.
func currentXDPMode(l netlink.Link) string {
	x := l.Attrs().Xdp
	if x == nil || !x.Attached {
		return XDPOff
	}
	switch x.AttachMode {
	case xdpAttachedDrv, xdpAttachedHW:
		return XDPNative
	case xdpAttachedSKB:
		return XDPGeneric
	}
	if x.Flags&unix.XDP_FLAGS_SKB_MODE != 0 {
		return XDPGeneric
	}
	return XDPNative
}

// XDP_ATTACHED_* (include/uapi/linux/if_link.h).
const (
	xdpAttachedDrv = 1
	xdpAttachedSKB = 2
	xdpAttachedHW  = 3
)

// State reports the current attachments.
func (f *XDP) State() State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stateLocked()
}

func (f *XDP) stateLocked() State {
	st := State{Mode: XDPOff}
	names := make([]string, 0, len(f.attached))
	for n := range f.attached {
		names = append(names, n)
	}
	sort.Strings(names)
	count := map[string]int{}
	var offReasons, tcReasons []string
	for _, n := range names {
		a := f.attached[n]
		st.Interfaces = append(st.Interfaces, InterfaceState{Name: a.name, Ifindex: a.ifindex, Mode: a.mode, Error: a.err, Note: a.note})
		count[a.mode]++
		switch a.mode {
		case XDPOff:
			offReasons = append(offReasons, a.name+": "+a.err)
		case BackendTC:
			tcReasons = append(tcReasons, a.name+": "+a.note)
		}
	}
	on := len(names) - count[XDPOff]
	switch {
	case on == 0 && len(names) == 0:
		st.Reason = "no interface to attach to"
	case on == 0:
		st.Reason = "no backend could attach (" + strings.Join(offReasons, "; ") + "); slow path only"
	case count[XDPGeneric] > 0:
		st.Mode = XDPGeneric
		st.Reason = "generic (skb) XDP as configured"
	case count[BackendTC] > 0:
		st.Mode = BackendTC
		st.Reason = "tc on " + strings.Join(tcReasons, "; ")
	default:
		st.Mode = XDPNative
	}
	if on > 0 && len(offReasons) > 0 {
		st.Reason = strings.TrimPrefix(st.Reason+"; slow path only on "+strings.Join(offReasons, "; "), "; ")
	}
	return st
}

// Attached reports whether the program runs on ifindex; the offload
// engine only offloads flows whose both ends it runs on.
func (f *XDP) Attached(ifindex int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.attached {
		if a.ifindex == ifindex && a.on() {
			return true
		}
	}
	return false
}

// Close releases the program, maps and links held by this process. Pinned
// links keep the program attached and pinned maps keep their flows, so the
// NAT keeps forwarding on the fast path; Remove takes them away.
func (f *XDP) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for _, a := range f.attached {
		if a.lnk != nil {
			if err := a.lnk.Close(); err != nil {
				errs = append(errs, fmt.Errorf("close XDP link on %s: %w", a.name, err))
			}
			a.lnk = nil
		}
		if a.tc != nil {
			if err := a.tc.close(); err != nil {
				errs = append(errs, fmt.Errorf("close tc link on %s: %w", a.name, err))
			}
			a.tc = nil
		}
	}
	if err := f.objs.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Remove detaches every XDP and tcx link pinned under pinPath
// (DefaultPinPath when empty), removes the pinned maps and the directory,
// for `hanatd --cleanup`. (A clsact filter, the tc backend on kernels
// without tcx, is not pinned: it stays until `tc filter del dev IF
// ingress` or the interface goes.) It reports whether anything was there. A missing
// bpffs or directory is not an error.
func Remove(log *slog.Logger, pinPath string) (bool, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if pinPath == "" {
		pinPath = DefaultPinPath
	}
	if _, err := os.Stat(pinPath); errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	var errs []error
	for _, name := range pinnedLinkNames(pinPath) {
		for _, prefix := range []string{linkPinPrefix, tcLinkPinPrefix} {
			path := filepath.Join(pinPath, prefix+name)
			if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
				continue
			}
			lnk, err := link.LoadPinnedLink(path, nil)
			if err != nil {
				// A pin that is not a link (or a dead one): remove the file.
				if rerr := os.Remove(path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
					errs = append(errs, fmt.Errorf("remove pinned link %q: %w (open: %w)", path, rerr, err))
				}
				continue
			}
			uerr := lnk.Unpin()
			cerr := lnk.Close()
			if err := errors.Join(uerr, cerr); err != nil {
				errs = append(errs, fmt.Errorf("detach pinned link %q: %w", path, err))
				continue
			}
			log.Info("fast path detached", "interface", name, "pin", prefix+name)
		}
	}
	if err := bpf.RemovePins(pinPath); err != nil {
		errs = append(errs, err)
	}
	if err := os.Remove(pinPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove fast path pin directory %q: %w", pinPath, err))
	}
	return true, errors.Join(errs...)
}

// Interfaces lists the interfaces the fast path runs on for n: the
// outside interface and every interface holding a route (main table) into
// one of the private CIDRs. On the usual single-ENI NAT instance that is
// just the ENI. h selects the namespace; nil means the calling thread's.
func Interfaces(h *netlink.Handle, n datapath.NAT) ([]string, error) {
	if h == nil {
		var err error
		if h, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
			return nil, fmt.Errorf("netlink.NewHandle: %w", err)
		}
		defer h.Close()
	}
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("netlink route list (main, ipv4): %w", err)
	}
	set := map[int]bool{}
	for i := range routes {
		r := &routes[i]
		if r.Type != unix.RTN_UNICAST {
			continue
		}
		dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if r.Dst != nil {
			a, ok := netip.AddrFromSlice(r.Dst.IP)
			ones, bits := r.Dst.Mask.Size()
			if !ok || bits != 32 {
				continue
			}
			dst = netip.PrefixFrom(a.Unmap(), ones)
		}
		if dst.Bits() == 0 {
			continue // the default route: that is the outside interface
		}
		for _, p := range n.PrivateCIDRs {
			if p.Overlaps(dst) {
				if idx := datapath.RouteLinkIndex(r); idx != 0 {
					set[idx] = true
				}
				for _, nh := range r.MultiPath {
					if nh.LinkIndex != 0 {
						set[nh.LinkIndex] = true
					}
				}
			}
		}
	}
	var out []string
	if n.OutsideIface != "" {
		out = append(out, n.OutsideIface)
	}
	for idx := range set {
		l, err := h.LinkByIndex(idx)
		if err != nil {
			return nil, fmt.Errorf("netlink link by index %d: %w", idx, err)
		}
		name := l.Attrs().Name
		if l.Attrs().EncapType == "loopback" {
			continue
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/hanat/hanat/bpf"
	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/datapath"
	"github.com/hanat/hanat/fastpath"
)

// Mode is one NAT configuration under test.
type Mode string

// The modes, in the order a run measures them. iptables-legacy comes last:
// its nat table, once registered in the namespace, stays hooked in until
// the namespace goes.
const (
	ModeNftables       Mode = "nftables"
	ModeFastpath       Mode = "fastpath"
	ModeIptablesLegacy Mode = "iptables_legacy"
	// ModeFastpathTC is the fast path's tc backend (fastpath.mode tc);
	// not in a default run (-modes names it).
	ModeFastpathTC Mode = "fastpath_tc"
)

// AllModes are the modes of a full run.
var AllModes = []Mode{ModeNftables, ModeFastpath, ModeFastpathTC, ModeIptablesLegacy}

// ParseMode accepts a mode name.
func ParseMode(s string) (Mode, error) {
	for _, m := range AllModes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown mode %q (want nftables, fastpath, fastpath_tc or iptables_legacy)", s)
}

// natMode is a configured NAT in the topology's nat namespace.
type natMode struct {
	mode   Mode
	log    *slog.Logger
	t      *topo
	tweaks modeTweaks

	slow    *datapath.Slowpath
	nat     datapath.NAT // the table slow holds
	sysctls *datapath.Sysctls
	pinPath string
	fast    *fastpath.Controller  // hanatd's own fast path, in the nat namespace
	ends    *conntrack.EndWatcher // the flow-end watcher of the slow path's mode
	feed    *conntrack.EventFeed  // hanatd's event feed (the fast path's and the flow-end watcher's), which it shares with the sync
	stop    context.CancelFunc    // stops the event feed and its reader (fast, or the slow path's end watcher)
	done    chan error            // one result each from the feed and its reader
}

// hanatNAT is the slow path's configuration: the private subnet behind in0,
// SNAT to the NAT's outside address on out0.
func hanatNAT() datapath.NAT {
	return datapath.NAT{
		PrivateCIDRs: []netip.Prefix{privCIDR},
		SNATAddrs:    []netip.Addr{natOut},
		OutsideIface: natOutX,
	}
}

// hanatFastNAT is hanatNAT with the kernel's flow selection, as hanatd
// configures it with the fast path or the state sync on.
func hanatFastNAT() datapath.NAT {
	n := hanatNAT()
	n.Offload = &datapath.Offload{AfterPackets: datapath.DefaultOffloadAfterPackets}
	return n
}

// setupMode configures the NAT for m. bpffs is a directory on a bpffs for
// the fast path's pins; stateDir a scratch directory.
func setupMode(ctx context.Context, log *slog.Logger, t *topo, m Mode, bpffs, stateDir string) (_ *natMode, err error) {
	return setupModeAs(ctx, log, t, m, modeTweaks{}, bpffs, stateDir)
}

// modeTweaks change a mode's setup; the zero value is the mode as hanatd
// (or fck-nat) runs it.
type modeTweaks struct {
	// fpMode, when set, is the fast path's mode instead of the one of
	// the mode, whatever backend it picks (probeAuto).
	fpMode string
	// maxFlows: the fast path's flow map size (entries), 0 the default.
	maxFlows uint32
	// offloadAfter: the packets after which a flow is offloaded, 0
	// hanatd's default (datapath.DefaultOffloadAfterPackets).
	offloadAfter int
	// conntrackMax: the NAT namespace's nf_conntrack_max, 0 unchanged.
	conntrackMax int
	// profile: when set, the packet-rate sample is profiled under this
	// name (Options.ProfileDir).
	profile string
}

// setupModeAs is setupMode with tw.
func setupModeAs(ctx context.Context, log *slog.Logger, t *topo, m Mode, tw modeTweaks, bpffs, stateDir string) (_ *natMode, err error) {
	nm := &natMode{mode: m, log: log, t: t, tweaks: tw}
	if tw.conntrackMax > 0 {
		if _, err := t.nat.Run(ctx, "sysctl", "-q", "-w", fmt.Sprintf("net.netfilter.nf_conntrack_max=%d", tw.conntrackMax)); err != nil {
			return nil, fmt.Errorf("mode %s: %w", m, err)
		}
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, nm.teardown(ctx))
		}
	}()
	switch m {
	case ModeNftables, ModeFastpath, ModeFastpathTC:
		return nm, nm.setupHanat(ctx, m != ModeNftables, bpffs, stateDir)
	case ModeIptablesLegacy:
		// fck-nat's setup: forwarding on, redirects off on the outside
		// interface, one MASQUERADE rule, no filtering.
		for _, args := range [][]string{
			{"sysctl", "-q", "-w", "net.ipv4.ip_forward=1"},
			{"sysctl", "-q", "-w", "net.ipv4.conf." + natOutX + ".send_redirects=0"},
			{"iptables-legacy", "-t", "nat", "-A", "POSTROUTING", "-o", natOutX, "-j", "MASQUERADE"},
		} {
			if _, err := t.nat.Run(ctx, args[0], args[1:]...); err != nil {
				return nil, fmt.Errorf("mode %s: %w", m, err)
			}
		}
		return nm, nil
	}
	return nil, fmt.Errorf("unknown mode %q", m)
}

func (nm *natMode) setupHanat(ctx context.Context, fast bool, bpffs, stateDir string) error {
	nat := hanatNAT()
	if fast {
		nat = hanatFastNAT()
		if nm.tweaks.offloadAfter > 0 {
			nat.Offload.AfterPackets = uint64(nm.tweaks.offloadAfter)
		}
	}
	nm.slow, nm.nat = datapath.NewSlowpath(nm.log, nm.t.nat.FD()), nat
	if _, err := nm.slow.Apply(ctx, nat); err != nil {
		return fmt.Errorf("mode %s: %w", nm.mode, err)
	}
	// hanatd's sysctls, except nf_conntrack_max: it is global (read-only
	// outside the initial namespace anyway) and this is not the host.
	mem, err := datapath.MemTotalBytes()
	if err != nil {
		return fmt.Errorf("mode %s: %w", nm.mode, err)
	}
	var want []datapath.Sysctl
	for _, s := range datapath.DesiredSysctls(datapath.SysctlSettings{FastPath: fast}, mem, natOutX) {
		if s.Key != "net.netfilter.nf_conntrack_max" {
			want = append(want, s)
		}
	}
	nm.sysctls = &datapath.Sysctls{ProcRoot: "/proc/sys", StatePath: filepath.Join(stateDir, "sysctl-"+string(nm.mode)+".json")}
	if err := nm.t.nat.Do(func() error {
		_, err := nm.sysctls.Apply(ctx, want)
		return err
	}); err != nil {
		return fmt.Errorf("mode %s: sysctls: %w", nm.mode, err)
	}
	ns := conntrack.NetNSFD(nm.t.nat.FD())
	feed, err := conntrack.NewEventFeed(nm.log.With("component", "conntrack-events"), ns)
	if err != nil {
		return fmt.Errorf("mode %s: %w", nm.mode, err)
	}
	if !fast {
		// hanatd listens to conntrack's DESTROY events with the fast
		// path off too (its flow-end watcher counts idle timeouts): the
		// kernel builds one for every flow that ends (in a connection
		// storm: every TIME_WAIT entry a reused source port replaces)
		// and the watcher decodes it, as in the fast path's modes.
		ends := conntrack.NewEndWatcher(nm.log.With("component", "flow-ends"), feed)
		ends.SetFilter(conntrack.Filter{PrivateCIDRs: nat.PrivateCIDRs, NATAddrs: nat.AllSNATAddrs()})
		runCtx, stop := context.WithCancel(context.Background())
		nm.feed, nm.ends, nm.stop, nm.done = feed, ends, stop, make(chan error, 2)
		go func() { nm.done <- feed.Run(runCtx) }()
		go func() { nm.done <- ends.Run(runCtx) }()
		return nil
	}

	nm.pinPath = filepath.Join(bpffs, "hanat")
	// The daemon's own wiring: one Controller, driven by Apply.
	fc, err := fastpath.New(nm.log.With("component", "fastpath"), fastpath.Options{PinPath: nm.pinPath, Feed: feed, Namespace: nm.t.nat, MaxFlows: nm.tweaks.maxFlows})
	if err != nil {
		return fmt.Errorf("mode %s: %w", nm.mode, err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	nm.fast, nm.feed, nm.stop, nm.done = fc, feed, stop, make(chan error, 2)
	go func() { nm.done <- feed.Run(runCtx) }()
	go func() { nm.done <- fc.Run(runCtx) }()
	mode, backend := fastpath.XDPModeNative, fastpath.XDPNative
	if nm.mode == ModeFastpathTC {
		mode, backend = fastpath.XDPModeTC, fastpath.BackendTC
	}
	if nm.tweaks.fpMode != "" {
		mode = nm.tweaks.fpMode
	}
	if err := fc.Apply(ctx, fastpath.Config{Enabled: true, Mode: mode, SysctlsManaged: true}, nat); err != nil {
		return fmt.Errorf("mode %s: %w", nm.mode, err)
	}
	if nm.tweaks.fpMode != "" {
		backend = fc.Status().Mode
	}
	if st := fc.Status(); st.Mode != backend || len(st.Interfaces) != nm.t.interfaces() || st.Engine == nil {
		return fmt.Errorf("mode %s: fast path is %q on %+v (%s), want %s on the NAT's %d interfaces with its engine", nm.mode, st.Mode, st.Interfaces, st.Reason+st.EngineError, backend, nm.t.interfaces())
	}
	return nil
}

// synced makes the slow path's table the one hanatd applies with the
// state sync on (the offload mark, which the sync follows) or off; with
// the fast path the table is that one either way.
func (nm *natMode) synced(ctx context.Context, on bool) error {
	if nm.slow == nil || nm.fast != nil || (nm.nat.Offload != nil) == on {
		return nil
	}
	n := nm.nat
	n.Offload = nil
	if on {
		n.Offload = hanatFastNAT().Offload
	}
	if _, err := nm.slow.Apply(ctx, n); err != nil {
		return fmt.Errorf("mode %s: table with the state sync %v: %w", nm.mode, on, err)
	}
	nm.nat = n
	return nil
}

// counters reads the fast path's program counters.
func (nm *natMode) counters() (bpf.Counters, error) {
	st := nm.fast.Status()
	if st.Counters == nil {
		return bpf.Counters{}, fmt.Errorf("fast path counters unreadable (%s)", st.Reason)
	}
	return *st.Counters, nil
}

// offloaded reports the engine's offloaded connections (fast path only).
func (nm *natMode) offloaded() (int, error) {
	st := nm.fast.Status()
	if st.Engine == nil {
		return 0, fmt.Errorf("offload engine stopped: %s", st.EngineError)
	}
	return st.Engine.Offloaded, nil
}

// teardown undoes the mode and flushes the NAT's conntrack table, so the
// next mode starts from the same empty state.
func (nm *natMode) teardown(ctx context.Context) error {
	var errs []error
	if nm.stop != nil {
		nm.stop()
		for range 2 {
			select {
			case err := <-nm.done:
				if err != nil {
					errs = append(errs, fmt.Errorf("event feed or its reader: %w", err))
				}
			case <-time.After(10 * time.Second):
				errs = append(errs, errors.New("event feed or its reader (fast path, flow-end watcher) did not stop within 10s"))
			}
		}
		nm.stop = nil
	}
	if nm.pinPath != "" {
		if _, err := fastpath.Remove(nm.log, nm.pinPath); err != nil {
			errs = append(errs, err)
		}
	}
	if nm.slow != nil {
		if _, err := nm.slow.Remove(ctx); err != nil {
			errs = append(errs, err)
		}
		nm.slow = nil
	}
	if nm.sysctls != nil {
		if err := nm.t.nat.Do(func() error {
			_, err := nm.sysctls.Restore(ctx)
			return err
		}); err != nil {
			errs = append(errs, fmt.Errorf("restore sysctls: %w", err))
		}
		nm.sysctls = nil
	}
	if nm.mode == ModeIptablesLegacy {
		if _, err := nm.t.nat.Run(ctx, "iptables-legacy", "-t", "nat", "-F", "POSTROUTING"); err != nil {
			errs = append(errs, err)
		}
	}
	if err := flushConntrack(ctx, nm.t.nat); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// AutoPick is the backend fastpath.mode auto chose in one shape of the
// benchmark, and the mode whose column measured that backend.
type AutoPick struct {
	Shape   string `json:"shape"`
	Backend string `json:"backend"`          // per interface, e.g. "in0=tc out0=tc"
	Mode    Mode   `json:"mode,omitempty"`   // fastpath or fastpath_tc; empty when mixed
	Reason  string `json:"reason,omitempty"` // auto's own words (Status.Reason and notes)
}

// Shapes of the auto picks.
const (
	ShapeTwoENI    = "two ENIs"
	ShapeSingleENI = "one ENI"
)

// probeAuto sets the fast path up with fastpath.mode auto, as hanatd's
// default, in a lab of each shape and records the backend it picks on
// each interface (rep.Auto); evalTargets then gives auto's ratio per
// shape from the column of that backend.
func probeAuto(ctx context.Context, log *slog.Logger, opts Options, rep *Report, bpffs, dir string) error {
	shapes := []struct {
		name   string
		single bool
	}{{ShapeTwoENI, false}}
	if !opts.SkipSingleENI {
		shapes = append(shapes, struct {
			name   string
			single bool
		}{ShapeSingleENI, true})
	}
	noTCP := opts
	noTCP.SkipTCP = true
	var errs []error
	for _, sh := range shapes {
		_, err := inLab(ctx, log, noTCP, sh.single, func(l *lab) (modeSample, error) {
			nm, err := setupModeAs(ctx, log.With("mode", "auto", "shape", sh.name), l.t, ModeFastpath, modeTweaks{fpMode: fastpath.XDPModeAuto}, bpffs, dir)
			if err != nil {
				return modeSample{}, err
			}
			st := nm.fast.Status()
			pick := AutoPick{Shape: sh.name, Reason: st.Reason}
			var backends []string
			all := ""
			for i, ifc := range st.Interfaces {
				backends = append(backends, ifc.Name+"="+ifc.Mode)
				if ifc.Note != "" && !strings.Contains(pick.Reason, ifc.Note) {
					pick.Reason = strings.TrimPrefix(pick.Reason+"; "+ifc.Name+": "+ifc.Note, "; ")
				}
				if i == 0 {
					all = ifc.Mode
				} else if all != ifc.Mode {
					all = "mixed"
				}
			}
			pick.Backend = strings.Join(backends, " ")
			switch all {
			case fastpath.XDPNative:
				pick.Mode = ModeFastpath
			case fastpath.BackendTC:
				pick.Mode = ModeFastpathTC
			}
			rep.Auto = append(rep.Auto, pick)
			log.Info("bench: auto's backend", "shape", sh.name, "backend", pick.Backend, "reason", pick.Reason)
			return modeSample{}, nm.teardown(context.WithoutCancel(ctx))
		})
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", sh.name, err))
		}
	}
	rep.evalTargets()
	return errors.Join(errs...)
}

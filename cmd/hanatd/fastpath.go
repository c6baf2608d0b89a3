package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/bpf"
	"github.com/hanat/hanat/config"
	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/datapath"
)

// fastpath wires the XDP program (datapath) to the conntrack offload
// engine (conntrack) for the daemon. reconcile calls apply with every
// configuration; run owns the engine's goroutine. When the program cannot
// load or attach, NAT runs on the slow path alone and status says why.
type fastpath struct {
	log     *slog.Logger
	pinPath string

	mu       sync.Mutex
	fp       *datapath.Fastpath // nil while off
	state    datapath.FastpathState
	offWhy   string // why there is no fast path at all
	eng      *conntrack.Offloader
	engCfg   conntrack.OffloadConfig
	engStop  context.CancelFunc
	engDone  chan struct{}
	runCtx   context.Context // set while run is running
	lastErr  string
	filter   conntrack.Filter
	disabled bool
	warned   bool // about sysctl.manage false
	// feed is the daemon's shared conntrack event socket (set before the
	// first apply; nil: the engine opens its own).
	feed *conntrack.EventFeed
}

func newFastpath(log *slog.Logger, pinPath string) *fastpath {
	return &fastpath{log: log, pinPath: pinPath, offWhy: "not started yet"}
}

// apply brings the fast path in line with cfg and nat: load and attach (or
// detach when disabled), register the NAT's interfaces, hand the engine
// the current filter and timeouts. Problems are logged and shown in
// status; they never fail the reconcile, since the slow path forwards
// everything the fast path does not.
func (f *fastpath) apply(ctx context.Context, cfg *config.Config, nat datapath.NAT) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !cfg.Fastpath.Enabled {
		f.disableLocked("disabled in the configuration (fastpath.enabled: false)")
		return
	}
	f.disabled = false
	if !cfg.Sysctl.Manage && !f.warned {
		f.warned = true
		f.log.Warn("fast path on with sysctl.manage false: set net.netfilter.nf_conntrack_tcp_be_liberal=1 and net.netfilter.nf_conntrack_events=1 yourself, or offloaded TCP flows may end with INVALID FIN/RST and miss their events")
	}
	if f.fp == nil {
		fp, err := datapath.OpenFastpath(f.log.With("component", "xdp"), datapath.FastpathOptions{
			Mode:    cfg.Fastpath.Mode,
			PinPath: f.pinPath,
		})
		if err != nil {
			why := fmt.Sprintf("cannot load the XDP program: %v", err)
			if why != f.offWhy {
				f.log.Error("fast path OFF: NAT runs on the nftables slow path only", "err", err)
			}
			f.offWhy = why
			return
		}
		f.fp = fp
		f.offWhy = ""
	}
	if err := f.fp.SetMode(cfg.Fastpath.Mode); err != nil {
		f.log.Error("fast path mode", "err", err)
	}
	ifaces, err := datapath.FastpathInterfaces(nil, nat)
	if err != nil {
		f.log.Warn("fast path: cannot list the NAT's interfaces; using the outside interface only", "err", err)
		ifaces = []string{nat.OutsideIface}
	}
	f.state = f.fp.Sync(ctx, ifaces)

	filter := conntrackFilter(nat)
	want := conntrack.OffloadConfig{
		Filter:     filter,
		TCPTimeout: cfg.Sysctl.TCPEstablishedTimeout.Duration,
		UDPTimeout: cfg.Sysctl.UDPStreamTimeout.Duration,
		MaxFlows:   int(f.fp.Objects().MaxFlows() / 2),
		// resolve.go sets datapath.NAT.Offload whenever the fast path
		// is enabled: SNAT flows wait for the kernel's mark.
		OffloadMark: datapath.CtMarkOffload,
		Events:      f.feed,
	}
	if f.eng != nil && (want.TCPTimeout != f.engCfg.TCPTimeout || want.UDPTimeout != f.engCfg.UDPTimeout) {
		// Timeouts are fixed per engine: start a new one (its resync
		// takes the offloaded flows over without touching them).
		f.stopEngineLocked()
	}
	if f.eng == nil {
		eng, err := conntrack.NewOffloader(f.log.With("component", "offload"), -1, f.fp.Objects(),
			pathResolver{datapath.NewPathResolver(nil, f.fp.Attached)}, want)
		if err != nil {
			f.lastErr = err.Error()
			f.log.Error("fast path: conntrack offload engine unavailable; nothing is offloaded", "err", err)
			return
		}
		f.eng, f.engCfg, f.filter = eng, want, filter
		f.startEngineLocked()
		return
	}
	if !sameFilter(filter, f.filter) {
		f.filter = filter
		f.eng.SetFilter(filter)
	}
}

// disableLocked detaches the program and removes its pins: with the fast
// path disabled, every packet takes the slow path, whose conntrack entries
// are intact.
func (f *fastpath) disableLocked(why string) {
	f.stopEngineLocked()
	if f.fp != nil {
		if err := f.fp.Close(); err != nil {
			f.log.Warn("fast path close", "err", err)
		}
		f.fp = nil
	}
	if !f.disabled {
		if removed, err := datapath.RemoveFastpath(f.log, f.pinPath); err != nil {
			f.log.Warn("fast path: remove pinned program and maps", "err", err)
		} else if removed {
			f.log.Info("fast path detached and unpinned", "reason", why)
		}
	}
	f.disabled = true
	f.offWhy = why
	f.state = datapath.FastpathState{}
}

func (f *fastpath) startEngineLocked() {
	if f.eng == nil || f.runCtx == nil || f.engStop != nil {
		return
	}
	ctx, cancel := context.WithCancel(f.runCtx)
	done := make(chan struct{})
	eng := f.eng
	f.engStop, f.engDone = cancel, done
	go func() {
		defer close(done)
		err := eng.Run(ctx)
		if err == nil || ctx.Err() != nil {
			return
		}
		f.log.Error("fast path: offload engine stopped; restarting at the next reconcile", "err", err)
		f.mu.Lock()
		if f.eng == eng {
			f.eng, f.engStop, f.engDone = nil, nil, nil
			f.lastErr = err.Error()
		}
		f.mu.Unlock()
		cancel()
	}()
}

func (f *fastpath) stopEngineLocked() {
	if f.engStop != nil {
		f.engStop()
		done := f.engDone
		f.mu.Unlock()
		<-done
		f.mu.Lock()
	}
	f.eng, f.engStop, f.engDone = nil, nil, nil
}

// run starts the offload engine and keeps it until ctx is done. The program
// stays attached and its maps pinned when hanatd stops, so offloaded flows
// keep forwarding until the next hanatd takes them over.
func (f *fastpath) run(ctx context.Context) error {
	f.mu.Lock()
	f.runCtx = ctx
	f.startEngineLocked()
	f.mu.Unlock()
	<-ctx.Done()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stopEngineLocked()
	f.runCtx = nil
	if f.fp != nil {
		if err := f.fp.Close(); err != nil {
			f.log.Warn("fast path close", "err", err)
		}
		f.fp = nil
	}
	return nil
}

// status reports the fast path for the admin API.
func (f *fastpath) status() admin.FastpathStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := admin.FastpathStatus{Mode: datapath.XDPOff, Reason: f.offWhy}
	if f.fp == nil {
		return st
	}
	st.Mode, st.Reason = f.state.Mode, f.state.Reason
	for _, in := range f.state.Interfaces {
		st.Interfaces = append(st.Interfaces, admin.FastpathInterface{Name: in.Name, Mode: in.Mode, Error: in.Error, Note: in.Note})
	}
	st.MaxFlows = int(f.fp.Objects().MaxFlows() / 2)
	if c, err := f.fp.Objects().Counters(); err == nil {
		st.Hits, st.Misses = c.Hits, c.Misses
		st.Pass = passCounters(c)
	}
	if f.eng != nil {
		s := f.eng.Stats()
		st.OffloadedFlows, st.PendingFlows = s.Offloaded, s.Pending
		st.Offload = map[string]uint64{
			"events": s.Events, "events_dropped": s.EventsDropped, "overflows": s.Overflows, "resyncs": s.Resyncs,
			"offloads": s.Offloads, "removals": s.Removals, "refreshes": s.Refreshes, "expired": s.Expired,
			"evicted": s.Evicted, "full": s.Full, "path_errors": s.PathErrors, "map_errors": s.MapErrors,
			"stale_entries": s.StaleEntries, "idle_handbacks": s.IdleHandbacks,
		}
	} else if f.lastErr != "" && st.Reason == "" {
		st.Reason = "offload engine: " + f.lastErr
	}
	return st
}

func passCounters(c bpf.Counters) map[string]uint64 {
	return map[string]uint64{
		"syn": c.PassSYN, "fin": c.PassFIN, "rst": c.PassRST, "fragment": c.PassFragment,
		"ip_options": c.PassIPOptions, "ttl": c.PassTTL, "not_tcp_udp": c.PassNotTCPUDP,
		"too_big": c.PassTooBig, "not_ipv4": c.PassNotIPv4, "parse": c.PassParse, "redirect": c.PassRedirect,
	}
}

// lookup returns the fast-path counters of a connection.
func (f *fastpath) lookup(orig conntrack.Tuple) (conntrack.FastCounters, bool) {
	f.mu.Lock()
	eng := f.eng
	f.mu.Unlock()
	if eng == nil {
		return conntrack.FastCounters{}, false
	}
	return eng.Lookup(orig)
}

// pathResolver adapts datapath's resolver to the engine's interface.
type pathResolver struct{ r *datapath.PathResolver }

func (p pathResolver) Resolve(ctx context.Context, src, dst netip.Addr) (conntrack.Path, error) {
	path, err := p.r.Resolve(ctx, src, dst)
	return conntrack.Path(path), err
}

func sameFilter(a, b conntrack.Filter) bool {
	if len(a.PrivateCIDRs) != len(b.PrivateCIDRs) || len(a.NATAddrs) != len(b.NATAddrs) {
		return false
	}
	for i := range a.PrivateCIDRs {
		if a.PrivateCIDRs[i] != b.PrivateCIDRs[i] {
			return false
		}
	}
	for i := range a.NATAddrs {
		if a.NATAddrs[i] != b.NATAddrs[i] {
			return false
		}
	}
	return true
}

// cleanupFastpath detaches the program and removes its pinned maps and
// links, for --cleanup.
func cleanupFastpath(log *slog.Logger, pinPath string) error {
	removed, err := datapath.RemoveFastpath(log, pinPath)
	if err != nil {
		return fmt.Errorf("remove fast path under %s: %w", pinPath, err)
	}
	if removed {
		log.Info("removed the XDP fast path (program detached, maps and links unpinned)", "path", pinPath)
	} else {
		log.Info("no XDP fast path to remove", "path", pinPath)
	}
	return nil
}

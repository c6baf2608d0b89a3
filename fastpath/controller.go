//go:build linux

package fastpath

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"github.com/hanat/hanat/bpf"
	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/datapath"
)

// Config is what the configuration asks of the fast path.
type Config struct {
	Enabled bool
	// Mode is what ParseMode accepts: auto, xdp (native), tc or
	// xdp-generic (generic).
	Mode string
	// TCPTimeout and UDPTimeout are the idle timeouts of offloaded
	// established TCP and UDP flows (the kernel's
	// nf_conntrack_tcp_timeout_established and
	// nf_conntrack_udp_timeout_stream); 0 means the defaults.
	TCPTimeout, UDPTimeout time.Duration
	// SysctlsManaged says hanatd sets the conntrack sysctls the fast path
	// relies on; without it the Controller warns once.
	SysctlsManaged bool
}

// Namespace is the network namespace the NAT runs in when it is not the
// caller's (a benchmark's or a test's): attaching and listing interfaces
// happen on a thread inside it, conntrack and route lookups on sockets
// made in it.
type Namespace interface {
	// Do runs fn on a thread inside the namespace.
	Do(fn func() error) error
	// FD is an open fd of the namespace.
	FD() int
}

// Options are fixed for a Controller's life.
type Options struct {
	// PinPath is where the maps and links are pinned (DefaultPinPath
	// when empty).
	PinPath string
	// MaxFlows is the flow map's size in entries (two per connection);
	// 0 means bpf.DefaultMaxFlows.
	MaxFlows uint32
	// Feed is the conntrack event feed of the NAT's namespace; the
	// offload engine subscribes to it. Required.
	Feed *conntrack.EventFeed
	// Namespace is nil for the caller's own namespace (hanatd).
	Namespace Namespace
	// SweepInterval overrides the engine's sweep period (tests).
	SweepInterval time.Duration
}

// Status is the fast path now.
type Status struct {
	// Mode is XDPNative, XDPGeneric, BackendTC or XDPOff; Reason says
	// why when it is not native (or why there is no fast path at all).
	// Interfaces says which backend runs on each interface and why
	// (Mode, Note, Error).
	Mode       string
	Reason     string
	Interfaces []InterfaceState
	// MaxConnections is how many connections the engine offloads at most.
	MaxConnections int
	// Counters are the program's, nil while it is off or unreadable.
	Counters *bpf.Counters
	// Engine is the offload engine's counters, nil while none runs
	// (EngineError then says why, when it failed).
	Engine      *EngineStats
	EngineError string
}

// Attached reports whether the program runs anywhere.
func (s Status) Attached() bool { return s.Mode != XDPOff }

// Totals are the program's packets and bytes forwarded from the private
// hosts (Out) and from the outside (In), the fast path's share of the NAT
// gateway's traffic metrics.
type Totals struct {
	OutPackets, OutBytes, InPackets, InBytes uint64
}

// Controller runs the fast path: the XDP program (loading, attaching,
// pins) and the offload engine that fills its flow map, brought in line
// with each configuration by Apply. Everything it changes is changed by
// the goroutine running Run; Status, Lookup and Totals read what it
// published and never wait behind a netlink call.
type Controller struct {
	log     *slog.Logger
	opts    Options
	applies chan applyRequest

	// Owned by Run.
	engCfg   engineConfig
	engStop  context.CancelFunc
	engDone  chan error
	disabled bool
	warned   bool
	routes   *netlink.Handle // path lookups in opts.Namespace; nil: the thread's

	mu      sync.Mutex // guards what readers see, below
	xdp     *XDP       // nil while off
	state   State
	offWhy  string // why there is no fast path at all
	eng     *engine
	lastErr string
}

type applyRequest struct {
	cfg   Config
	nat   datapath.NAT
	reply chan struct{}
}

// New returns a Controller; nothing is loaded before Run runs and Apply
// asks for it.
func New(log *slog.Logger, opts Options) (*Controller, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Feed == nil {
		return nil, errors.New("fast path: no conntrack event feed")
	}
	if opts.PinPath == "" {
		opts.PinPath = DefaultPinPath
	}
	c := &Controller{log: log, opts: opts, applies: make(chan applyRequest), offWhy: "not started yet"}
	if ns := opts.Namespace; ns != nil {
		h, err := netlink.NewHandleAt(vnetns.NsHandle(ns.FD()))
		if err != nil {
			return nil, fmt.Errorf("fast path: netlink handle in netns fd %d: %w", ns.FD(), err)
		}
		c.routes = h
	}
	return c, nil
}

// Apply brings the fast path in line with cfg and nat and returns once it
// has: load and attach (or detach and unpin when disabled), register the
// NAT's interfaces, hand the engine the current filter and timeouts.
// Problems are logged and shown in Status; they are no error, since the
// slow path forwards everything the fast path does not. The error is ctx's
// when Run did not take the request in time.
func (c *Controller) Apply(ctx context.Context, cfg Config, nat datapath.NAT) error {
	req := applyRequest{cfg: cfg, nat: nat, reply: make(chan struct{})}
	select {
	case c.applies <- req:
	case <-ctx.Done():
		return fmt.Errorf("fast path apply: %w", ctx.Err())
	}
	select {
	case <-req.reply:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("fast path apply: %w", ctx.Err())
	}
}

// Run applies configurations, keeps the offload engine running and
// watches the backends' output (withdrawing one that fails) until ctx is
// done. On return the program stays attached and its maps pinned,
// so offloaded flows keep forwarding until the next hanatd takes them
// over.
func (c *Controller) Run(ctx context.Context) error {
	defer func() {
		c.stopEngine()
		c.closeXDP()
		if c.routes != nil {
			c.routes.Close()
		}
	}()
	watch := time.NewTicker(OutputWatchInterval)
	defer watch.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case req := <-c.applies:
			c.apply(ctx, req.cfg, req.nat)
			close(req.reply)
		case err := <-c.engDone:
			c.engineFailed(ctx, err)
		case <-watch.C:
			c.watchOutputs()
		}
	}
}

// watchOutputs withdraws backends whose output fails (withdraw.go) and
// publishes the new state when it did.
func (c *Controller) watchOutputs() {
	x := c.xdp // only Run writes it
	if x == nil {
		return
	}
	cs, err := x.Objects().Counters()
	if err != nil {
		return
	}
	withdrew := false
	if err := c.inNamespace(func() error {
		withdrew = x.WatchOutputs(cs.Hits)
		return nil
	}); err != nil || !withdrew {
		return
	}
	st := x.State()
	c.mu.Lock()
	c.state = st
	c.mu.Unlock()
}

func (c *Controller) apply(ctx context.Context, cfg Config, nat datapath.NAT) {
	if !cfg.Enabled {
		c.disable("disabled in the configuration (fastpath.enabled: false)")
		return
	}
	c.disabled = false
	if !cfg.SysctlsManaged && !c.warned {
		c.warned = true
		c.log.Warn("fast path on with sysctl.manage false: set net.netfilter.nf_conntrack_tcp_be_liberal=1 and net.netfilter.nf_conntrack_events=1 yourself, or offloaded TCP flows may end with INVALID FIN/RST and miss their events")
	}
	x := c.xdp // only Run writes it
	if x == nil {
		var err error
		x, err = OpenXDP(c.log.With("component", "xdp"), XDPOptions{Mode: cfg.Mode, PinPath: c.opts.PinPath, MaxFlows: c.opts.MaxFlows})
		if err != nil {
			why := fmt.Sprintf("cannot load the XDP program: %v", err)
			if why != c.offWhy {
				c.log.Error("fast path OFF: NAT runs on the nftables slow path only", "err", err)
			}
			c.mu.Lock()
			c.offWhy = why
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		c.xdp, c.offWhy = x, ""
		c.mu.Unlock()
	}
	if err := x.SetMode(cfg.Mode); err != nil {
		c.log.Error("fast path mode", "err", err)
	}
	var st State
	if err := c.inNamespace(func() error {
		ifaces, err := Interfaces(nil, nat)
		if err != nil {
			c.log.Warn("fast path: cannot list the NAT's interfaces; using the outside interface only", "err", err)
			ifaces = []string{nat.OutsideIface}
		}
		st = x.Sync(ctx, ifaces)
		return nil
	}); err != nil {
		c.log.Error("fast path: enter the NAT's namespace", "err", err)
		return
	}
	c.mu.Lock()
	c.state = st
	c.mu.Unlock()
	c.applyEngine(ctx, cfg, nat, x)
}

// applyEngine starts the engine, restarts it when its timeouts changed
// (its resync takes the offloaded flows over without touching them) or
// hands it the new filter.
func (c *Controller) applyEngine(ctx context.Context, cfg Config, nat datapath.NAT, x *XDP) {
	filter := conntrack.Filter{PrivateCIDRs: nat.PrivateCIDRs, NATAddrs: nat.AllSNATAddrs()}
	want := engineConfig{
		Filter:     filter,
		TCPTimeout: cfg.TCPTimeout,
		UDPTimeout: cfg.UDPTimeout,
		MaxFlows:   maxConnections(x.Objects()),
		// The NAT's offload rule (datapath.NAT.Offload, set whenever
		// the fast path is enabled) marks the SNAT flows worth it.
		OffloadMark:   datapath.CtMarkOffload,
		SweepInterval: c.opts.SweepInterval,
	}
	c.mu.Lock()
	eng := c.eng
	c.mu.Unlock()
	if eng != nil && (want.TCPTimeout != c.engCfg.TCPTimeout || want.UDPTimeout != c.engCfg.UDPTimeout) {
		c.stopEngine()
		eng = nil
	}
	if eng != nil {
		if !filter.Equal(c.engCfg.Filter) {
			c.engCfg.Filter = filter
			eng.SetFilter(filter)
		}
		return
	}
	ns := conntrack.NetNS{}
	if c.opts.Namespace != nil {
		ns = conntrack.NetNSFD(c.opts.Namespace.FD())
	}
	eng, err := openEngine(c.log.With("component", "offload"), ns, c.opts.Feed, x.Objects(), NewPathResolver(c.routes, x.Attached), want)
	if err != nil {
		c.log.Error("fast path: conntrack offload engine unavailable; nothing is offloaded", "err", err)
		c.mu.Lock()
		c.lastErr = err.Error()
		c.mu.Unlock()
		return
	}
	engCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- eng.Run(engCtx) }()
	c.engCfg, c.engStop, c.engDone = want, stop, done
	c.mu.Lock()
	c.eng, c.lastErr = eng, ""
	c.mu.Unlock()
}

// engineFailed clears an engine that stopped on its own; the next Apply
// starts a new one.
func (c *Controller) engineFailed(ctx context.Context, err error) {
	if err == nil || ctx.Err() != nil {
		err = errors.New("stopped")
	}
	c.log.Error("fast path: offload engine stopped; restarting at the next reconcile", "err", err)
	c.engStop()
	c.engStop, c.engDone = nil, nil
	c.mu.Lock()
	c.eng, c.lastErr = nil, err.Error()
	c.mu.Unlock()
}

func (c *Controller) stopEngine() {
	if c.engStop == nil {
		return
	}
	c.engStop()
	<-c.engDone
	c.engStop, c.engDone = nil, nil
	c.mu.Lock()
	c.eng = nil
	c.mu.Unlock()
}

// disable detaches the program and removes its pins: with the fast path
// disabled, every packet takes the slow path, whose conntrack entries are
// intact.
func (c *Controller) disable(why string) {
	c.stopEngine()
	c.closeXDP()
	if !c.disabled {
		if removed, err := Remove(c.log, c.opts.PinPath); err != nil {
			c.log.Warn("fast path: remove pinned program and maps", "err", err)
		} else if removed {
			c.log.Info("fast path detached and unpinned", "reason", why)
		}
	}
	c.disabled = true
	c.mu.Lock()
	c.offWhy, c.state = why, State{}
	c.mu.Unlock()
}

func (c *Controller) closeXDP() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.xdp == nil {
		return
	}
	if err := c.xdp.Close(); err != nil {
		c.log.Warn("fast path close", "err", err)
	}
	c.xdp = nil
}

func (c *Controller) inNamespace(fn func() error) error {
	if c.opts.Namespace == nil {
		return fn()
	}
	return c.opts.Namespace.Do(fn)
}

// maxConnections is how many connections fit the flow map: two entries
// each.
func maxConnections(objs *bpf.Objects) int { return int(objs.MaxFlows() / 2) }

// Status reports the fast path for the admin API and the metrics.
func (c *Controller) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := Status{Mode: XDPOff, Reason: c.offWhy}
	if c.xdp == nil {
		return st
	}
	st.Mode, st.Reason = c.state.Mode, c.state.Reason
	st.Interfaces = append([]InterfaceState(nil), c.state.Interfaces...)
	st.MaxConnections = maxConnections(c.xdp.Objects())
	if cs, err := c.xdp.Objects().Counters(); err == nil {
		st.Counters = &cs
	}
	if c.eng != nil {
		s := c.eng.Stats()
		st.Engine = &s
	} else {
		st.EngineError = c.lastErr
	}
	return st
}

// Totals returns the program's direction totals; false while the program
// is off or its counters cannot be read.
func (c *Controller) Totals() (Totals, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.xdp == nil {
		return Totals{}, false
	}
	cs, err := c.xdp.Objects().Counters()
	if err != nil {
		return Totals{}, false
	}
	return Totals{OutPackets: cs.OutPackets, OutBytes: cs.OutBytes, InPackets: cs.InPackets, InBytes: cs.InBytes}, true
}

// Running reports whether the program is loaded (attached or being
// attached).
func (c *Controller) Running() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.xdp != nil
}

// Lookup returns the fast-path counters of the connection whose original
// tuple is orig (false: the fast path never carried it).
func (c *Controller) Lookup(orig conntrack.Tuple) (FastCounters, bool) {
	c.mu.Lock()
	eng := c.eng
	c.mu.Unlock()
	if eng == nil {
		return FastCounters{}, false
	}
	return eng.Lookup(orig)
}

// PassCounters names the program's reasons for passing a packet to the
// kernel, as hanatctl status and the metrics show them.
func PassCounters(c bpf.Counters) map[string]uint64 {
	return map[string]uint64{
		"syn": c.PassSYN, "fin": c.PassFIN, "rst": c.PassRST, "fragment": c.PassFragment,
		"ip_options": c.PassIPOptions, "ttl": c.PassTTL, "not_tcp_udp": c.PassNotTCPUDP,
		"too_big": c.PassTooBig, "not_ipv4": c.PassNotIPv4, "parse": c.PassParse, "redirect": c.PassRedirect,
		"unwritable": c.PassUnwritable,
	}
}

// Cleanup detaches the program and removes its pinned maps and links, for
// hanatd --cleanup.
func Cleanup(log *slog.Logger, pinPath string) error {
	removed, err := Remove(log, pinPath)
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

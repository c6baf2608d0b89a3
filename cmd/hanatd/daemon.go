package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/cloud"
	"github.com/hanat/hanat/config"
	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/datapath"
	"github.com/hanat/hanat/fastpath"
	"github.com/hanat/hanat/metrics"
	"github.com/hanat/hanat/traffic"
)

// reconcileInterval bounds how long the datapath can drift (a table deleted
// by hand, an address change) before hanatd puts it back.
const reconcileInterval = 10 * time.Second

// daemon wires config, datapath, conntrack and the admin socket. It is the
// only place that knows all of them.
type daemon struct {
	log            *slog.Logger
	configPath     string
	configExplicit bool
	pinPath        string // the fast path's pins; the GWLB datapath's under it
	startedAt      time.Time

	slow     *datapath.Slowpath
	sysctls  *datapath.Sysctls
	feed     *conntrack.EventFeed  // the one conntrack event socket: offload engine and end watcher
	fast     *fastpath.Controller  // XDP fast path and conntrack offload
	ends     *conntrack.EndWatcher // idle timeouts, from DESTROY events
	traffic  *traffic.Meter        // the NAT gateway's metrics: monotonic rule counters, fast-path totals
	census   *conntrack.Census     // the one periodic count of hanat's flows (status, metrics)
	cw       *metrics.CloudWatch   // nil unless metrics.cloudwatch.enabled (and possible)
	exporter *metrics.Exporter     // nil unless metrics.listen
	admin    *admin.Server
	ec2      *cloud.Node // the instance as IMDS and EC2 see it
	ha       *haNode     // route table ownership and the HA pair
	sync     *syncNode   // the pair's state sync and the takeover of the peer's flows
	fleet    *fleetNode  // the GWLB fleet member (gwlb.enabled)

	// logLevel is the handler level of log: log.level applies on reload.
	logLevel *slog.LevelVar
	// apply reconciles the datapath with the current configuration
	// (d.reconcile; a stand-in in tests of reload).
	apply func(context.Context) error

	reloads  chan reloadRequest
	notify   sdNotify
	loopBeat atomic.Int64 // unix nanos of the main loop's last turn, for the watchdog
	memBytes uint64       // instance memory, sizes nf_conntrack_max

	mu    sync.Mutex
	state state // guarded by mu
}

// state is what the daemon last decided and applied, for status.
type state struct {
	cfg            *config.Config
	configLoadedAt time.Time
	nat            datapath.NAT
	natNotes       []string
	lastApplied    time.Time
	lastError      string
	sysctls        []datapath.SysctlResult
	ready          bool
}

type reloadRequest struct {
	reply chan reloadResult
}

type reloadResult struct {
	changed bool
	err     error
}

// newDaemon builds every part from cfg: the datapath's, the fast path's,
// conntrack's, the instance's view of EC2 (IMDS discovery), the HA loop,
// the admin socket and the metrics. Nothing runs before Run.
func newDaemon(ctx context.Context, log *slog.Logger, level *slog.LevelVar, configPath string, explicit bool, cfg *config.Config, pinPath string) (*daemon, error) {
	feed, err := conntrack.NewEventFeed(log.With("component", "conntrack-events"), conntrack.NetNS{})
	if err != nil {
		return nil, fmt.Errorf("conntrack event socket: %w", err)
	}
	fast, err := fastpath.New(log.With("component", "fastpath"), fastpath.Options{PinPath: pinPath, Feed: feed})
	if err != nil {
		return nil, err
	}
	d := &daemon{
		log:            log,
		logLevel:       level,
		configPath:     configPath,
		configExplicit: explicit,
		pinPath:        pinPath,
		startedAt:      time.Now(),
		slow:           datapath.NewSlowpath(log, -1),
		sysctls:        datapath.HostSysctls(cfg.StateDir),
		reloads:        make(chan reloadRequest),
		notify:         sdNotify{log: log},
		feed:           feed,
		fast:           fast,
		ends:           conntrack.NewEndWatcher(log.With("component", "flow-ends"), feed),
		census:         conntrack.NewCensus(log.With("component", "census"), conntrack.NetNS{}, conntrack.CensusOptions{}),
	}
	d.apply = d.reconcile
	d.traffic = traffic.NewMeter(log.With("component", "traffic"), conntrack.NetNS{}, d.slow, d.fast, d.ends)
	if d.memBytes, err = datapath.MemTotalBytes(); err != nil {
		log.Warn("cannot read the instance memory; nf_conntrack_max gets the minimum", "err", err)
	}
	d.state.cfg = cfg
	d.state.configLoadedAt = time.Now()

	d.ec2 = cloud.DiscoverNode(ctx, log.With("component", "cloud"), cloud.NodeOptions{
		Discover: cfg.Cloud.Discover, IMDSEndpoint: cfg.Cloud.IMDSEndpoint, EC2Endpoint: cfg.Cloud.EC2Endpoint,
		ManageSourceDestCheck: cfg.Cloud.ManageSourceDestCheck})
	// The outside interface's ENI before the HA loop and the sync start
	// (each reconcile binds it again).
	d.bindOutside(ctx, cfg.Interfaces.Outside)
	d.sync = d.newSync(ctx, cfg)
	d.ha = d.newHA(ctx)
	if d.fleet, err = d.newFleet(ctx, cfg); err != nil {
		return nil, err
	}
	src := (&backend{d: d}).metricsSource
	d.admin = admin.NewServer(log.With("component", "admin"), &backend{d: d}, admin.ServerOptions{
		SocketPath: cfg.Admin.Socket, Group: cfg.Admin.Group, Version: version,
	})
	if cw := cfg.Metrics.CloudWatch; cw.Enabled {
		// Like the metrics port: CloudWatch trouble must not stop the NAT.
		if d.cw, err = newCloudWatch(ctx, log, cw, d.ec2, src); err != nil {
			log.Error("CloudWatch metrics off", "err", err)
		}
	}
	if cfg.Metrics.Listen != "" {
		d.exporter, err = metrics.New(log.With("component", "metrics"), metrics.Options{Listen: cfg.Metrics.Listen, Source: src, Version: version})
		if err != nil {
			return nil, fmt.Errorf("metrics %s: %w", cfg.Metrics.Listen, err)
		}
	}
	return d, nil
}

// Run reconciles the datapath, serves the admin socket and reacts to
// SIGHUP, admin reloads and a periodic resync until ctx is done. On return
// the datapath is left in place: NAT keeps forwarding without the daemon.
func (d *daemon) Run(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	d.log.Info("hanatd starting", "version", version, "config", d.configPath, "pid", os.Getpid())

	// A fleet member drains before it stops: its parts run on after the
	// first SIGTERM until the drain has ended (fleetNode.stop).
	runCtx, stopRun := ctx, context.CancelFunc(func() {})
	if d.fleet.m != nil {
		runCtx, stopRun = context.WithCancel(context.WithoutCancel(ctx))
	}
	defer stopRun()
	g, gctx := errgroup.WithContext(runCtx)
	// The event feed, the end watcher and the fast path run before the
	// first reconcile, which hands the fast path its configuration.
	d.goLogged(g, gctx, "conntrack event socket failed: idle timeouts are not counted and the fast path offloads nothing new", d.feed.Run)
	d.goLogged(g, gctx, "conntrack DESTROY events unavailable: idle timeouts are not counted", d.ends.Run)
	g.Go(func() error { return d.fast.Run(gctx) })
	if err := d.reconcile(gctx); err != nil {
		// Keep running: the admin socket tells the operator what is wrong
		// and the periodic reconcile retries.
		d.log.Error("initial reconcile failed; will retry", "err", err)
	}
	d.goLogged(g, gctx, "", d.census.Run)
	if d.cw != nil {
		// A failed period is logged and carried into the next one.
		g.Go(func() error { return d.cw.Run(gctx) })
	}
	if d.exporter != nil {
		// A metrics port taken by someone else must not stop the NAT.
		d.goLogged(g, gctx, "metrics endpoint stopped; NAT keeps running", d.exporter.Run)
	}
	g.Go(func() error {
		if err := d.admin.Run(gctx); err != nil {
			return fmt.Errorf("admin socket %s: %w", d.config().Admin.Socket, err)
		}
		return nil
	})
	g.Go(func() error { d.ec2.KeepSourceDestCheckOff(gctx); return nil })
	g.Go(func() error { return d.ha.run(gctx) })
	g.Go(func() error { return d.sync.run(gctx) })
	if d.fleet.m != nil {
		g.Go(func() error { return d.fleet.run(gctx) })
		g.Go(func() error {
			select {
			case <-gctx.Done():
				return nil
			case <-ctx.Done():
			}
			d.fleet.stop(d.notify)
			stopRun()
			return nil
		})
	}
	g.Go(func() error {
		d.notify.watchdog(gctx, func() bool {
			return time.Since(time.Unix(0, d.loopBeat.Load())) < 3*reconcileInterval
		})
		return nil
	})
	d.loopBeat.Store(time.Now().UnixNano())
	g.Go(func() error { d.loop(gctx, hup); return nil })
	err := g.Wait()
	if d.fleet.dp.Member != nil {
		if cerr := d.fleet.dp.Close(); cerr != nil {
			d.log.Warn("GWLB datapath: close", "err", cerr)
		}
	}
	d.notify.stopping()
	d.log.Info("hanatd stopped; the datapath stays in place (hanatd --cleanup removes it)")
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// goLogged runs part in g; its failure is logged (when why is set), never
// stops the NAT.
func (d *daemon) goLogged(g *errgroup.Group, ctx context.Context, why string, part func(context.Context) error) {
	g.Go(func() error {
		if err := part(ctx); err != nil && ctx.Err() == nil && why != "" {
			d.log.Warn(why, "err", err)
		}
		return nil
	})
}

// loop serialises reloads (SIGHUP, the admin socket) and the periodic
// reconcile until ctx is done.
func (d *daemon) loop(ctx context.Context, hup <-chan os.Signal) {
	ticker := time.NewTicker(reconcileInterval)
	defer ticker.Stop()
	// The peer's zone's SNAT follows the HA loop's backup tables: a
	// change reconciles at once, not at the next tick.
	watch := time.NewTicker(time.Second)
	defer watch.Stop()
	zone := fmt.Sprint(d.ha.peerZone())
	for {
		select {
		case <-watch.C:
			if now := fmt.Sprint(d.ha.peerZone()); now != zone {
				zone = now
				if err := d.reconcile(ctx); err != nil {
					d.log.Error("reconcile failed", "err", err)
				}
			}
		case <-ctx.Done():
			return
		case <-hup:
			d.log.Info("SIGHUP: reloading configuration")
			// A refusal (keys that need a restart) is logged by reload.
			if _, err := d.reload(ctx); err != nil && !errors.Is(err, admin.ErrRestartNeeded) {
				d.log.Error("reload failed; keeping the running configuration", "err", err)
			}
		case req := <-d.reloads:
			changed, err := d.reload(ctx)
			req.reply <- reloadResult{changed: changed, err: err}
		case <-ticker.C:
			d.loopBeat.Store(time.Now().UnixNano())
			if err := d.reconcile(ctx); err != nil {
				d.log.Error("reconcile failed", "err", err)
			}
		}
	}
}

func (d *daemon) config() *config.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.state.cfg
}

// reconcile computes the desired datapath from the current config and the
// instance, and applies it. Applying an unchanged state is a no-op.
func (d *daemon) reconcile(ctx context.Context) error {
	cfg := d.config()
	disc, err := datapath.Discover(ctx)
	if err != nil {
		d.log.Warn("interface discovery", "err", err)
	}
	disc.VPCCIDRs = d.ec2.VPCCIDRs()
	nat, notes, err := datapath.Resolve(natOf(cfg), disc)
	if err != nil {
		d.setError(err)
		return err
	}
	nat.Zones = d.sync.zones(ctx, d.ha.peerZone(), nat.PrivateCIDRs)
	d.bindOutside(ctx, nat.OutsideIface)
	// The filter goes in before forwarding is switched on, so there is no
	// moment where the box forwards without the no-open-relay rules.
	d.traffic.Carry(ctx) // a replaced table restarts its counters
	changed, err := d.slow.Apply(ctx, nat)
	if err != nil {
		d.setError(err)
		return err
	}
	if changed {
		d.log.Info("nftables table applied", "table", "inet "+datapath.TableName,
			"private_cidrs", nat.PrivateCIDRs, "snat", nat.SNATAddrs, "outside", nat.OutsideIface,
			"port_forwards", len(nat.PortForwards))
		for _, n := range notes {
			d.log.Info(n)
		}
	}
	results, err := d.applySysctls(ctx, cfg, nat)
	if err != nil {
		d.setError(err)
		return err
	}
	// After the sysctls: offloaded TCP needs liberal window tracking.
	if err := d.fast.Apply(ctx, fastpathConfig(cfg), nat); err != nil {
		d.setError(err)
		return err
	}
	d.ends.SetFilter(conntrackFilter(nat))
	d.census.SetFilter(conntrackFilter(nat))
	d.mu.Lock()
	d.state.nat = nat
	d.state.natNotes = notes
	d.state.lastApplied = time.Now()
	d.state.lastError = ""
	if cfg.Sysctl.Manage {
		d.state.sysctls = results
	}
	wasReady := d.state.ready
	d.state.ready = true
	d.mu.Unlock()
	if !wasReady {
		d.notify.ready()
		d.notify.status(fmt.Sprintf("NAT %v -> %v via %s", nat.PrivateCIDRs, nat.SNATAddrs, nat.OutsideIface))
	}
	return nil
}

// applySysctls sets the sysctls the NAT needs (nothing unless
// sysctl.manage) and logs what changed.
func (d *daemon) applySysctls(ctx context.Context, cfg *config.Config, nat datapath.NAT) ([]datapath.SysctlResult, error) {
	if !cfg.Sysctl.Manage {
		return nil, nil
	}
	want := datapath.DesiredSysctls(datapath.SysctlSettings{
		ConntrackMax:          cfg.Sysctl.ConntrackMax,
		TCPEstablishedTimeout: cfg.Sysctl.TCPEstablishedTimeout.Duration,
		UDPTimeout:            cfg.Sysctl.UDPTimeout.Duration,
		UDPStreamTimeout:      cfg.Sysctl.UDPStreamTimeout.Duration,
		FastPath:              cfg.Fastpath.Enabled,
	}, d.memBytes, nat.OutsideIface)
	results, err := d.sysctls.Apply(ctx, want)
	for _, r := range results {
		if r.Applied && r.Old != r.Now {
			d.log.Info("sysctl set", "key", r.Key, "old", r.Old, "now", r.Now)
		}
	}
	return results, err
}

func (d *daemon) setError(err error) {
	d.mu.Lock()
	d.state.lastError = err.Error()
	d.mu.Unlock()
}

func (d *daemon) snapshot() state {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.state
	s.sysctls = append([]datapath.SysctlResult(nil), d.state.sysctls...)
	return s
}

// conntrackFilter selects the flows hanat NATs.
func conntrackFilter(n datapath.NAT) conntrack.Filter {
	return conntrack.Filter{PrivateCIDRs: n.PrivateCIDRs, NATAddrs: n.AllSNATAddrs()}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/config"
	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/fleet"
	"github.com/hanat/hanat/gwlb"
	"github.com/hanat/hanat/ha"
)

// drainGrace is what the daemon's own bound on a shutdown drain adds to
// the deregistration delay: a datapath that cannot say its flows are gone
// must not hold the stop for ever.
const drainGrace = 30 * time.Second

// fleetNode wires the fleet member (package fleet) to the daemon; m is nil
// unless gwlb.enabled.
type fleetNode struct {
	log   *slog.Logger
	m     *fleet.Member
	delay time.Duration
	dp    *gwlbDatapath
}

// gwlbPinDir is where the GWLB datapath pins, under the fast path's pins.
func gwlbPinDir(pinPath string) string { return filepath.Join(pinPath, "gwlb") }

// newFleet builds the fleet member of gwlb.enabled: its health check
// responder on the instance's private IP (or gwlb.health_check.address),
// the datapath and upstream checks, the lifecycle watch.
func (d *daemon) newFleet(cfg *config.Config) (*fleetNode, error) {
	f := &fleetNode{log: d.log.With("component", "fleet")}
	g := cfg.GWLB
	if !g.Enabled {
		return f, nil
	}
	addr := g.HealthCheck.Address
	if !addr.IsValid() {
		if !d.ec2.OnEC2() {
			return nil, errors.New("gwlb: not on EC2, so there is no private IP to answer the health checks on: set gwlb.health_check.address")
		}
		addr = d.ec2.Instance().PrivateIP
	}
	region := ""
	var lifecycle fleet.Lifecycle
	if d.ec2.OnEC2() {
		region = d.ec2.Instance().Region
		if g.LifecycleHook {
			lifecycle = d.ec2
		}
	}
	dp := &gwlbDatapath{d: d, local: addr, addrs: g.Addresses, pinDir: gwlbPinDir(d.pinPath)}
	if len(g.Addresses) == 0 && d.ec2.EC2() != nil {
		// Zero-config: the GWLBs' ENIs in this VPC, as EC2 shows them.
		c, vpc := d.ec2.EC2(), d.ec2.Instance().VPCID
		dp.discover = func(ctx context.Context) ([]netip.Addr, error) { return c.GWLBAddrs(ctx, vpc) }
	}
	upstream := &ha.HealthChecker{Targets: upstreamTargets(cfg.HA.Health, region), Timeout: cfg.HA.Health.Timeout.Duration}
	m, err := fleet.New(fleet.Options{
		Log:                 f.log,
		Datapath:            fleetDatapath{d: d, gwlb: dp},
		Upstream:            upstreamCheck{upstream},
		Lifecycle:           lifecycle,
		GWLBAddrs:           g.Addresses,
		HealthCheck:         fleet.HealthCheck{Listen: netip.AddrPortFrom(addr, g.HealthCheck.Port), Protocol: g.HealthCheck.Protocol, Path: g.HealthCheck.Path},
		DeregistrationDelay: g.DeregistrationDelay.Duration,
		CheckInterval:       cfg.HA.Health.Interval.Duration,
	})
	if err != nil {
		return nil, fmt.Errorf("gwlb: %w", err)
	}
	f.m, f.delay, f.dp = m, g.DeregistrationDelay.Duration, dp
	return f, nil
}

// gwlbDatapath is package gwlb's datapath on the outside ENI, attached at
// the first check after the NAT has resolved the outside interface (the
// programs and the flows' return paths are pinned under pinDir, so a
// restart adopts them). Until then, or while its programs are off the
// link, the member fails its health check: a member that cannot
// decapsulate must never draw GWLB's flows.
type gwlbDatapath struct {
	d      *daemon
	local  netip.Addr // the instance's primary private IP: GENEVE's destination
	pinDir string
	// discover reads the GWLB addresses from EC2 (nil: gwlb.addresses
	// are configured, or there is no EC2 client).
	discover func(context.Context) ([]netip.Addr, error)

	mu           sync.Mutex
	addrs        []netip.Addr     // gwlb.addresses, or the last discovered
	nextDiscover time.Time        // when discover runs again
	dp           *gwlb.Datapath   // nil until attached
	table        *conntrack.Table // nil until the first Flows
}

// Discovery's pace: a GWLB gains an ENI only when an AZ is enabled, so a
// minute is soon enough; a failed call is retried sooner.
const (
	gwlbRediscover = time.Minute
	gwlbRetry      = 5 * time.Second
)

// refreshAddrs rediscovers the GWLB addresses when due and hands a change
// to the attached datapath. It returns the addresses to check against.
func (g *gwlbDatapath) refreshAddrs(ctx context.Context) ([]netip.Addr, error) {
	g.mu.Lock()
	due := g.discover != nil && !time.Now().Before(g.nextDiscover)
	addrs := g.addrs
	g.mu.Unlock()
	if !due {
		return addrs, nil
	}
	found, err := g.discover(ctx)
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		g.nextDiscover = time.Now().Add(gwlbRetry)
		return g.addrs, fmt.Errorf("GWLB addresses from EC2 (gwlb.addresses is empty): %w", err)
	}
	g.nextDiscover = time.Now().Add(gwlbRediscover)
	if slices.Equal(found, g.addrs) {
		return g.addrs, nil
	}
	if g.dp != nil {
		if err := g.dp.SetGWLBAddrs(found); err != nil {
			return g.addrs, fmt.Errorf("GWLB datapath: set the discovered addresses %v: %w", found, err)
		}
	}
	g.d.log.Info("GWLB addresses discovered", "component", "fleet", "gwlb", found, "before", g.addrs)
	g.addrs = found
	return found, nil
}

func (g *gwlbDatapath) attached(ctx context.Context) (*gwlb.Datapath, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.dp != nil {
		return g.dp, nil
	}
	iface := g.d.snapshot().nat.OutsideIface
	if iface == "" {
		return nil, errors.New("GWLB datapath not attached: the outside interface is not resolved yet")
	}
	dp, err := gwlb.Attach(ctx, gwlb.Config{Link: iface, LocalAddr: g.local, GWLBAddrs: g.addrs, PinDir: g.pinDir})
	if err != nil {
		return nil, fmt.Errorf("GWLB datapath not attached: %w", err)
	}
	g.d.log.Info("GWLB datapath attached", "interface", iface, "local", g.local, "gwlb", g.addrs, "pins", g.pinDir)
	g.dp = dp
	return dp, nil
}

func (g *gwlbDatapath) Check(ctx context.Context) error {
	addrs, err := g.refreshAddrs(ctx)
	if len(addrs) == 0 {
		// The datapath would refuse every packet as foreign: a healthy
		// member that drops all its flows.
		if err == nil {
			err = errors.New("none configured (gwlb.addresses) and none found in EC2")
		}
		return fmt.Errorf("GWLB datapath: no GWLB addresses to accept GENEVE from: %w", err)
	}
	if err != nil {
		g.d.log.Warn("GWLB addresses not rediscovered; keeping the last ones", "component", "fleet", "gwlb", addrs, "err", err)
	}
	dp, err := g.attached(ctx)
	if err != nil {
		return err
	}
	return dp.Check()
}

// Flows are the GWLB's flows that conntrack still has (the flow map
// forgets a flow only under pressure, so a drain would never end on it).
func (g *gwlbDatapath) Flows(ctx context.Context) ([]fleet.Flow, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.dp == nil {
		return nil, nil
	}
	if g.table == nil {
		t, err := conntrack.Open(g.d.log, conntrack.NetNS{})
		if err != nil {
			return nil, err
		}
		g.table = t
	}
	live, err := g.dp.LiveFlows(ctx, g.table, conntrackFilter(g.d.snapshot().nat))
	if err != nil {
		return nil, err
	}
	flows := make([]fleet.Flow, len(live))
	for i, f := range live {
		flows[i] = fleet.Flow{GWLB: f.GWLB, Options: f.Options}
	}
	return flows, nil
}

// counters are the datapath's drop and pass counters (nil before attach).
func (g *gwlbDatapath) counters() (map[string]uint64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.dp == nil {
		return nil, nil
	}
	return g.dp.Counters()
}

// close releases the process's handles; the pinned programs stay.
func (g *gwlbDatapath) close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var errs []error
	if g.dp != nil {
		errs = append(errs, g.dp.Close())
		g.dp = nil
	}
	if g.table != nil {
		errs = append(errs, g.table.Close())
		g.table = nil
	}
	return errors.Join(errs...)
}

// fleetDatapath is the member's datapath: the NAT's slow path applied
// without error, and the GWLB decapsulation.
type fleetDatapath struct {
	d    *daemon
	gwlb fleet.Datapath
}

func (p fleetDatapath) Check(ctx context.Context) error {
	if up, why := p.d.natUp(); !up {
		return errors.New(why)
	}
	return p.gwlb.Check(ctx)
}

func (p fleetDatapath) Flows(ctx context.Context) ([]fleet.Flow, error) { return p.gwlb.Flows(ctx) }

// upstreamCheck is the pair's upstream check (ha.HealthChecker, with its
// hysteresis) as the fleet's Upstream.
type upstreamCheck struct{ c *ha.HealthChecker }

func (u upstreamCheck) Check(ctx context.Context) error {
	if ok, why := u.c.Check(ctx); !ok {
		return errors.New(why)
	}
	return nil
}

func (f *fleetNode) run(ctx context.Context) error {
	if f.m == nil {
		return nil
	}
	return f.m.Run(ctx)
}

// stop drains the member after the first SIGTERM (the daemon's ctx is
// done) and returns once the drain has ended, a second SIGTERM or SIGINT
// came, or the deregistration delay and drainGrace have passed.
func (f *fleetNode) stop(notify sdNotify) {
	ctx, cancel := stopContext(f.delay + drainGrace)
	defer cancel()
	f.drainUntil(ctx, notify)
}

// stopContext is done after bound or at the next SIGTERM or SIGINT.
func stopContext(bound time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	ctx, stopSignals := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	return ctx, func() { stopSignals(); cancel() }
}

// drainUntil drains the member until the drain ends or ctx is done; while
// it waits it asks systemd for more stop time than TimeoutStopSec gives,
// up to ctx's deadline.
func (f *fleetNode) drainUntil(ctx context.Context, notify sdNotify) bool {
	extend := func() {
		if dl, ok := ctx.Deadline(); ok {
			notify.extendTimeout(time.Until(dl))
		}
	}
	extend()
	done := make(chan bool, 1)
	go func() { done <- f.m.Stop(ctx, "hanatd stopping (SIGTERM)") }()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case ended := <-done:
			if !ended {
				f.log.Warn("drain cut short: a second signal, or the deregistration delay and its grace passed")
			}
			return ended
		case <-tick.C:
			extend()
		}
	}
}

// status is the member as the admin API shows it (nil when off).
func (f *fleetNode) status(ctx context.Context) *admin.FleetStatus {
	if f.m == nil {
		return nil
	}
	s := f.m.Status(ctx)
	st := &admin.FleetStatus{Role: s.Role, HealthCheck: s.HealthCheck, Healthy: s.Healthy, HealthNote: s.Reason,
		CheckedAt: s.CheckedAt, ResponderError: s.ResponderErr, Lifecycle: s.Lifecycle, LifecycleAt: s.LifecycleAt, LifecycleError: s.LifecycleErr,
		FlowsPerEndpoint: s.Flows, FlowsError: s.FlowsErr, GWLBAddrs: stringsOf(s.GWLBAddrs)}
	if f.dp != nil {
		c, err := f.dp.counters()
		st.Datapath = c
		if err != nil {
			st.DatapathError = err.Error()
		}
	}
	for _, p := range s.Peers {
		st.Peers = append(st.Peers, admin.FleetPeer{Address: p.Addr.String(), LastCheck: p.LastCheck, Checks: p.Checks, Flows: p.Flows})
	}
	d := s.Drain
	st.Drain = admin.FleetDrain{Draining: d.Draining, Since: d.Since, Reason: d.Reason, LeftMS: d.Left.Milliseconds(),
		Flows: d.Flows, LastError: d.LastErr}
	if e := d.Ended; e != nil {
		st.Drain.Ended, st.Drain.TookMS, st.Drain.FlowsLeft = string(e.End), e.Took.Milliseconds(), e.FlowsLeft
	}
	return st
}

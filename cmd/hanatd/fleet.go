package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/cloud"
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
	dp    gwlbDatapath
}

// gwlbPinDir is where the GWLB datapath pins, under the fast path's pins.
func gwlbPinDir(pinPath string) string { return filepath.Join(pinPath, "gwlb") }

// newFleet builds the fleet member of gwlb.enabled: its health check
// responder on the instance's private IP (or gwlb.health_check.address),
// the datapath and upstream checks, the lifecycle watch.
func (d *daemon) newFleet(ctx context.Context, cfg *config.Config) (*fleetNode, error) {
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
	var action fleet.LifecycleAction
	if d.ec2.OnEC2() {
		region = d.ec2.Instance().Region
		if g.LifecycleHook {
			lifecycle = d.ec2
			action = newLifecycleAction(ctx, f.log, d.ec2.Instance(), g.LifecycleHookName)
		}
	}
	mc := gwlb.MemberConfig{Log: f.log, Local: addr, Addrs: g.Addresses, PinDir: gwlbPinDir(d.pinPath),
		Link:   func() string { return d.snapshot().nat.OutsideIface },
		Filter: func() conntrack.Filter { return conntrackFilter(d.snapshot().nat) }}
	if len(g.Addresses) == 0 && d.ec2.EC2() != nil {
		// Zero-config: the GWLBs' ENIs in this VPC, as EC2 shows them.
		c, vpc := d.ec2.EC2(), d.ec2.Instance().VPCID
		mc.Discover = func(ctx context.Context) ([]netip.Addr, error) { return c.GWLBAddrs(ctx, vpc) }
	}
	dp := gwlbDatapath{gwlb.NewMember(mc)}
	upstream := &ha.HealthChecker{Targets: upstreamTargets(cfg.HA.Health, region), Timeout: cfg.HA.Health.Timeout.Duration}
	m, err := fleet.New(fleet.Options{
		Log:                 f.log,
		Datapath:            fleetDatapath{d: d, gwlb: dp},
		Upstream:            upstreamCheck{upstream},
		Lifecycle:           lifecycle,
		LifecycleAction:     action,
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

// lifecycleAction is cloud's Auto Scaling client as the fleet's
// LifecycleAction: this instance's scale-in hook (named, or the group's
// one terminating hook) completed CONTINUE. A client that could not be
// built fails its one call, so the status shows why.
type lifecycleAction struct {
	as         *cloud.AutoScaling
	err        error
	instanceID string
	hook       string
}

func newLifecycleAction(ctx context.Context, log *slog.Logger, inst *cloud.Instance, hook string) lifecycleAction {
	as, err := cloud.NewAutoScaling(ctx, log.With("component", "autoscaling"), cloud.AutoScalingOptions{Region: inst.Region})
	return lifecycleAction{as: as, err: err, instanceID: inst.ID, hook: hook}
}

func (a lifecycleAction) CompleteTermination(ctx context.Context) (string, error) {
	if a.err != nil {
		return a.instanceID, a.err
	}
	done, err := a.as.CompleteTermination(ctx, a.instanceID, a.hook, cloud.ResultContinue)
	return done.String(), err
}

// gwlbDatapath is gwlb.Member as the fleet's Datapath.
type gwlbDatapath struct{ *gwlb.Member }

func (g gwlbDatapath) Flows(ctx context.Context) ([]fleet.Flow, error) {
	live, err := g.LiveFlows(ctx)
	if err != nil {
		return nil, err
	}
	flows := make([]fleet.Flow, len(live))
	for i, f := range live {
		flows[i] = fleet.Flow{GWLB: f.GWLB, Options: f.Options}
	}
	return flows, nil
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
	if f.dp.Member != nil {
		addrs, discovered := f.dp.Addrs()
		st.GWLBAddrs, st.GWLBAddrsFrom = stringsOf(addrs), "configured"
		if discovered {
			st.GWLBAddrsFrom = "EC2"
		}
		c, err := f.dp.Counters()
		st.Datapath = c
		if err != nil {
			st.DatapathError = err.Error()
		}
	}
	for _, p := range s.Peers {
		st.Peers = append(st.Peers, admin.FleetPeer{Address: p.Addr.String(), LastCheck: p.LastCheck, Checks: p.Checks, Flows: p.Flows})
	}
	if c := s.LifecycleAction; c != nil {
		st.LifecycleAction = &admin.FleetLifecycleAction{Action: c.Action, At: c.At}
		if c.Err != nil {
			st.LifecycleAction.Error = c.Err.Error()
		}
	}
	d := s.Drain
	st.Drain = admin.FleetDrain{Draining: d.Draining, Since: d.Since, Reason: d.Reason, LeftMS: d.Left.Milliseconds(),
		Flows: d.Flows, LastError: d.LastErr}
	if e := d.Ended; e != nil {
		st.Drain.Ended, st.Drain.TookMS, st.Drain.FlowsLeft = string(e.End), e.Took.Milliseconds(), e.FlowsLeft
	}
	return st
}

// Package fleet is a hanat node's life as one target of an AWS Gateway
// Load Balancer (GWLB) among many: its health as GWLB sees it (the health
// check responder), the Auto Scaling lifecycle it follows (IMDS's target
// lifecycle state) and its planned removal (the drain).
//
// A member is healthy only when its GWLB datapath is attached and working,
// its upstream check passes and it is not draining. A drain — started on
// shutdown or when Auto Scaling moves the instance out (scale-in) — fails
// the health checks at once, so GWLB sends no new flows, and ends when the
// datapath carries no flow any more or the target group's deregistration
// delay has passed, whichever comes first; only then may the daemon stop.
//
// The room knows the datapath, the upstream check and IMDS only as the
// interfaces below; cmd/hanatd adapts the real ones.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/hanat/hanat/geneve"
)

// Role is the node's role in the status, beside the pair's "pair" and
// "single".
const Role = "fleet member"

// Datapath is the member's GWLB datapath (decapsulation, NAT, return
// encapsulation) as the fleet sees it.
type Datapath interface {
	// Check returns nil while the datapath is attached and forwarding,
	// else what is wrong.
	Check(ctx context.Context) error
	// Flows returns the flows it carries now.
	Flows(ctx context.Context) ([]Flow, error)
}

// Flow is one flow of the datapath as the fleet counts it: the GWLB
// endpoint it came through, and the GWLB address that sent it.
type Flow struct {
	// GWLB is the outer source address (invalid when the datapath does not
	// say).
	GWLB netip.Addr
	// Options are the flow's GENEVE options; EndpointID names its
	// endpoint (geneve.EndpointName).
	Options geneve.Options
}

// Upstream is the node's own way out (the same check as the pair's:
// a TCP connect through its public path).
type Upstream interface {
	Check(ctx context.Context) error
}

// Lifecycle reads the instance's Auto Scaling target lifecycle state
// (IMDS LifecyclePath); "" with a nil error means the instance is in no
// Auto Scaling group.
type Lifecycle interface {
	TargetLifecycleState(ctx context.Context) (string, error)
}

// LifecycleAction completes the instance's scale-in lifecycle action
// with result CONTINUE, so Auto Scaling terminates it without waiting for
// the hook's heartbeat timeout. It returns what it completed or tried to
// ("i-… of group G, hook H") also when it fails.
type LifecycleAction interface {
	CompleteTermination(ctx context.Context) (string, error)
}

// completeTimeout bounds the completion of the lifecycle action (its
// calls and their retries): the drain's end waits for it.
const completeTimeout = 30 * time.Second

// Options configure a Member. Datapath, Upstream and HealthCheck.Listen
// are required.
type Options struct {
	Log       *slog.Logger
	Datapath  Datapath
	Upstream  Upstream
	Lifecycle Lifecycle // nil: no lifecycle watch
	// LifecycleAction is completed once when a drain the lifecycle state
	// started has ended (nil: never; the hook's heartbeat timeout ends
	// it). A shutdown's drain never completes it.
	LifecycleAction LifecycleAction
	// GWLBAddrs are the configured GWLB addresses (shown in the status).
	GWLBAddrs   []netip.Addr
	HealthCheck HealthCheck
	// DeregistrationDelay bounds a drain (default
	// DefaultDeregistrationDelay; 0 is a drain that ends at once).
	DeregistrationDelay time.Duration
	// CheckInterval between two evaluations of the datapath and the
	// upstream (default 1 s); CheckTimeout bounds each (default 2 s).
	CheckInterval time.Duration
	CheckTimeout  time.Duration
	// LifecycleInterval between two reads of the lifecycle state
	// (default 5 s).
	LifecycleInterval time.Duration
	// DrainPoll between two flow counts while draining (default 1 s).
	DrainPoll time.Duration
	Clock     Clock // nil: the system's
}

// maxPeers bounds the health-check sources remembered (GWLB checks from a
// few addresses per zone).
const maxPeers = 64

// peer is one GWLB address seen.
type peer struct {
	lastCheck time.Time
	checks    uint64
}

// Member is one fleet member's state. Its methods are safe for concurrent
// use.
type Member struct {
	log   *slog.Logger
	o     Options
	clock Clock

	drainStart chan struct{} // closed when the drain starts
	drained    chan struct{} // closed when it ends

	mu          sync.Mutex
	checked     bool
	checkedAt   time.Time
	dpErr       error
	upErr       error
	healthy     bool          // the last verdict that woke the responder
	wake        chan struct{} // closed (and replaced) when the verdict changes
	draining    bool
	drainSince  time.Time
	drainReason string
	drainFlows  int // last count while draining (-1: none yet)
	drainErr    error
	drainResult *DrainResult
	// byLifecycle: the lifecycle state started the drain.
	byLifecycle  bool
	completion   *Completion
	lifecycle    string
	lifecycleAt  time.Time // last successful read
	lifecycleErr error
	wasInService bool
	responderErr error
	peers        map[netip.Addr]*peer
}

// New checks o and returns a member that does nothing before Run.
func New(o Options) (*Member, error) {
	if o.Datapath == nil || o.Upstream == nil {
		return nil, errors.New("fleet member: a datapath and an upstream check are required")
	}
	if err := o.HealthCheck.check(); err != nil {
		return nil, err
	}
	if o.DeregistrationDelay < 0 {
		return nil, fmt.Errorf("fleet member: deregistration delay %s is negative", o.DeregistrationDelay)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	o.CheckInterval = orDefault(o.CheckInterval, time.Second)
	o.CheckTimeout = orDefault(o.CheckTimeout, 2*time.Second)
	o.LifecycleInterval = orDefault(o.LifecycleInterval, 5*time.Second)
	o.DrainPoll = orDefault(o.DrainPoll, time.Second)
	o.GWLBAddrs = slices.Clone(o.GWLBAddrs)
	m := &Member{log: o.Log, o: o, clock: o.Clock, drainStart: make(chan struct{}), drained: make(chan struct{}),
		wake: make(chan struct{}), drainFlows: -1, peers: map[netip.Addr]*peer{}}
	if m.clock == nil {
		m.clock = realClock{}
	}
	return m, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Run serves the health checks, evaluates the datapath and the upstream,
// watches the lifecycle state and runs the drain once started, until ctx
// is done. A drain that ctx cuts short ends as DrainCutShort.
func (m *Member) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	parts := []func(context.Context){m.evaluate, m.respond, m.drain}
	if m.o.Lifecycle != nil {
		parts = append(parts, m.watchLifecycle)
	}
	for _, part := range parts {
		wg.Go(func() { part(ctx) })
	}
	wg.Wait()
	return nil
}

// Health is the verdict GWLB's checks get, and why it is unhealthy.
func (m *Member) Health() (bool, string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.healthLocked()
}

func (m *Member) healthLocked() (bool, string) {
	switch {
	case m.draining:
		return false, fmt.Sprintf("draining since %s: %s", m.drainSince.UTC().Format(time.RFC3339), m.drainReason)
	case !m.checked:
		return false, "not checked yet"
	case m.dpErr != nil:
		return false, "datapath: " + m.dpErr.Error()
	case m.upErr != nil:
		return false, "upstream: " + m.upErr.Error()
	}
	return true, ""
}

// changedLocked wakes the responder when the verdict moved.
func (m *Member) changedLocked() {
	if ok, _ := m.healthLocked(); ok != m.healthy {
		m.healthy = ok
		close(m.wake)
		m.wake = make(chan struct{})
	}
}

// awaitChange returns a channel closed at the next change of the verdict.
func (m *Member) awaitChange() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.wake
}

// evaluate checks the datapath and the upstream now and every
// CheckInterval.
func (m *Member) evaluate(ctx context.Context) {
	for {
		cctx, cancel := context.WithTimeout(ctx, m.o.CheckTimeout)
		dpErr := m.o.Datapath.Check(cctx)
		upErr := m.o.Upstream.Check(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		m.mu.Lock()
		was, _ := m.healthLocked()
		m.checked, m.checkedAt, m.dpErr, m.upErr = true, m.clock.Now(), dpErr, upErr
		now, why := m.healthLocked()
		m.changedLocked()
		m.mu.Unlock()
		if was != now {
			m.log.Info("fleet member health changed", "healthy", now, "reason", why)
		}
		select {
		case <-ctx.Done():
			return
		case <-m.clock.After(m.o.CheckInterval):
		}
	}
}

// StartDrain fails the health checks from now on and starts the drain;
// it reports whether this call started it (a drain starts once). Its end
// completes no lifecycle action.
func (m *Member) StartDrain(reason string) bool { return m.startDrain(reason, false) }

func (m *Member) startDrain(reason string, byLifecycle bool) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.draining {
		return false
	}
	m.draining, m.drainSince, m.drainReason, m.byLifecycle = true, m.clock.Now(), reason, byLifecycle
	m.changedLocked()
	close(m.drainStart)
	m.log.Info("fleet member draining: failing GWLB health checks, forwarding existing flows",
		"reason", reason, "deregistration_delay", m.o.DeregistrationDelay)
	return true
}

// Stop drains the member for a shutdown (unless a drain runs already) and
// waits until the drain has ended or ctx is done (a second SIGTERM, the
// daemon's own deadline); it reports whether the drain ended. Run must be
// running.
func (m *Member) Stop(ctx context.Context, reason string) bool {
	m.StartDrain(reason)
	select {
	case <-m.drained:
		return true
	case <-ctx.Done():
		return false
	}
}

// Drained is closed when a drain has ended: the daemon may stop.
func (m *Member) Drained() <-chan struct{} { return m.drained }

// drain waits for the drain to start, then for its end.
func (m *Member) drain(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-m.drainStart:
	}
	m.mu.Lock()
	since := m.drainSince
	m.mu.Unlock()
	res := drainWait(ctx, m.clock, since, m.o.DeregistrationDelay, m.o.DrainPoll, m.countFlows,
		func(n int, err error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			if err == nil {
				m.drainFlows = n
			}
			m.drainErr = err
		})
	m.mu.Lock()
	m.drainResult = &res
	complete := m.byLifecycle && res.End != DrainCutShort && m.o.LifecycleAction != nil
	m.mu.Unlock()
	m.log.Info("fleet member drained", "end", string(res.End), "flows_left", res.FlowsLeft, "took", res.Took, "last_err", res.LastErr)
	if complete {
		m.completeLifecycleAction(ctx)
	}
	close(m.drained)
}

// Completion is the completion of the scale-in's lifecycle action: what
// was completed (or tried), when, and why it failed.
type Completion struct {
	Action string
	At     time.Time
	Err    error
}

// completeLifecycleAction completes the scale-in's lifecycle action once,
// best effort: a failure is logged and shown, and the hook's heartbeat
// timeout ends the wait instead.
func (m *Member) completeLifecycleAction(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, completeTimeout)
	defer cancel()
	action, err := m.o.LifecycleAction.CompleteTermination(cctx)
	m.mu.Lock()
	m.completion = &Completion{Action: action, At: m.clock.Now(), Err: err}
	m.mu.Unlock()
	if err != nil {
		m.log.Warn("could not complete the scale-in's lifecycle action: the hook's heartbeat timeout ends it", "action", action, "err", err)
		return
	}
	m.log.Info("completed the scale-in's lifecycle action", "action", action)
}

func (m *Member) countFlows(ctx context.Context) (int, error) {
	flows, err := m.o.Datapath.Flows(ctx)
	if err != nil {
		return 0, fmt.Errorf("count the datapath's flows: %w", err)
	}
	return len(flows), nil
}

// watchLifecycle reads the target lifecycle state now and every
// LifecycleInterval, and drains on a scale-in.
func (m *Member) watchLifecycle(ctx context.Context) {
	for {
		state, err := m.o.Lifecycle.TargetLifecycleState(ctx)
		if ctx.Err() != nil {
			return
		}
		m.mu.Lock()
		prev := m.lifecycle
		if err != nil {
			m.lifecycleErr = err
		} else {
			m.lifecycle, m.lifecycleAt, m.lifecycleErr = state, m.clock.Now(), nil
		}
		drain := err == nil && drainsOn(state, m.wasInService)
		if state == StateInService {
			m.wasInService = true
		}
		m.mu.Unlock()
		if err == nil && state != prev {
			m.log.Info("Auto Scaling target lifecycle state", "state", state, "previous", prev)
		}
		if drain {
			m.startDrain("Auto Scaling target lifecycle state "+state, true)
		}
		select {
		case <-ctx.Done():
			return
		case <-m.clock.After(m.o.LifecycleInterval):
		}
	}
}

// sawCheck records a health check from addr.
func (m *Member) sawCheck(addr netip.Addr) {
	addr = addr.Unmap()
	m.mu.Lock()
	defer m.mu.Unlock()
	p := m.peers[addr]
	if p == nil {
		if len(m.peers) >= maxPeers {
			var oldest netip.Addr
			for a, q := range m.peers {
				if !oldest.IsValid() || q.lastCheck.Before(m.peers[oldest].lastCheck) {
					oldest = a
				}
			}
			delete(m.peers, oldest)
		}
		p = &peer{}
		m.peers[addr] = p
	}
	p.lastCheck = m.clock.Now()
	p.checks++
}

func (m *Member) setResponderErr(err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.responderErr = err
}

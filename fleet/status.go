package fleet

import (
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/hanat/hanat/geneve"
)

// Status is the member as hanatctl status shows it.
type Status struct {
	Role        string
	HealthCheck string // "tcp 10.0.1.5:80"
	// GWLBAddrs are the configured GWLB addresses; Peers the GWLB
	// addresses seen (health checks, flows).
	GWLBAddrs    []netip.Addr
	Peers        []Peer
	Healthy      bool
	Reason       string    // why not healthy
	CheckedAt    time.Time // last evaluation
	ResponderErr string    // the health check responder cannot serve
	// Lifecycle is the last target lifecycle state read, at LifecycleAt
	// ("" then: the instance is in no Auto Scaling group; LifecycleAt
	// zero: never read, or not watched).
	Lifecycle    string
	LifecycleAt  time.Time
	LifecycleErr string
	Drain        DrainStatus
	// LifecycleAction is the completion of the scale-in's lifecycle
	// action (nil: not attempted).
	LifecycleAction *Completion
	// Flows per GWLB endpoint (vpce-…), from the datapath.
	Flows    map[string]int
	FlowsErr string
}

// Peer is one GWLB address seen.
type Peer struct {
	Addr      netip.Addr
	LastCheck time.Time // zero: seen in flows only
	Checks    uint64
	Flows     int
}

// DrainStatus is the drain: not started, running, or ended.
type DrainStatus struct {
	Draining bool
	Since    time.Time
	Reason   string
	// Left is the time until the deregistration delay passes (running
	// only); Flows the last count (-1: none yet).
	Left    time.Duration
	Flows   int
	LastErr string
	Ended   *DrainResult
}

// Status reads the datapath's flows and returns the member's state.
func (m *Member) Status(ctx context.Context) Status {
	flows, flowsErr := m.o.Datapath.Flows(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	st := Status{Role: Role, HealthCheck: m.o.HealthCheck.String(), GWLBAddrs: slices.Clone(m.o.GWLBAddrs),
		CheckedAt: m.checkedAt, Lifecycle: m.lifecycle, LifecycleAt: m.lifecycleAt, Flows: map[string]int{}}
	st.Healthy, st.Reason = m.healthLocked()
	st.ResponderErr = errText(m.responderErr)
	st.LifecycleErr = errText(m.lifecycleErr)
	st.FlowsErr = errText(flowsErr)
	peers := map[netip.Addr]*Peer{}
	for a, p := range m.peers {
		peers[a] = &Peer{Addr: a, LastCheck: p.lastCheck, Checks: p.checks}
	}
	for _, f := range flows {
		st.Flows[geneve.EndpointName(f.Options.EndpointID)]++
		if !f.GWLB.IsValid() {
			continue
		}
		a := f.GWLB.Unmap()
		if peers[a] == nil {
			peers[a] = &Peer{Addr: a}
		}
		peers[a].Flows++
	}
	for _, p := range peers {
		st.Peers = append(st.Peers, *p)
	}
	slices.SortFunc(st.Peers, func(a, b Peer) int { return a.Addr.Compare(b.Addr) })
	d := &st.Drain
	d.Draining, d.Since, d.Reason, d.Flows, d.LastErr = m.draining, m.drainSince, m.drainReason, m.drainFlows, errText(m.drainErr)
	if m.completion != nil {
		c := *m.completion
		st.LifecycleAction = &c
	}
	if m.drainResult != nil {
		r := *m.drainResult
		d.Ended = &r
	} else if m.draining {
		d.Left = max(0, m.drainSince.Add(m.o.DeregistrationDelay).Sub(m.clock.Now()))
	}
	return st
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

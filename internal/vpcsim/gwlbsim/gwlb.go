package gwlbsim

import (
	crand "crypto/rand"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/hanat/hanat/geneve"
)

// TargetState is a target's health as ELBv2's DescribeTargetHealth names
// it.
type TargetState string

const (
	StateInitial   TargetState = "initial"   // registered, not yet through HealthyThreshold checks
	StateHealthy   TargetState = "healthy"   // gets new flows
	StateUnhealthy TargetState = "unhealthy" // UnhealthyThreshold checks failed in a row
	StateDraining  TargetState = "draining"  // deregistered, within the deregistration delay
	StateUnused    TargetState = "unused"    // deregistered; only no_rebalance flows still reach it
)

// Drop reasons of what Forward and Return refuse, besides geneve's own
// (geneve.Reasons). They are counter names and never change.
const (
	DropUnknownEndpoint = "unknown_endpoint" // a packet through an endpoint the GWLB does not serve
	DropBadInner        = "bad_inner"        // an inner packet that is not a whole IPv4 packet
	DropNoTarget        = "no_target"        // no registered target in reach of the endpoint
	DropUnknownFlow     = "unknown_flow"     // GENEVE back with a cookie of no flow
	DropOptionMismatch  = "option_mismatch"  // the endpoint or attachment id is not the flow's
	DropForeignSource   = "foreign_source"   // GENEVE back from an address that is not the flow's target
	DropTupleMismatch   = "tuple_mismatch"   // the inner packet is not the flow's reply
	DropOneArm          = "one_arm"          // the flow's own direction sent back: one-arm mode, not modelled
)

// DropReasons lists every drop counter, geneve's first.
func DropReasons() []string {
	var out []string
	for _, r := range geneve.Reasons {
		out = append(out, string(r))
	}
	return append(out, DropUnknownEndpoint, DropBadInner, DropNoTarget, DropUnknownFlow, DropOptionMismatch,
		DropForeignSource, DropTupleMismatch, DropOneArm)
}

// DropError is a refused packet: the counter it went to and why.
type DropError struct {
	Reason string
	Detail string
}

func (e *DropError) Error() string { return "gwlbsim drop " + e.Reason + ": " + e.Detail }

func drop(reason, format string, args ...any) error {
	return &DropError{Reason: reason, Detail: fmt.Sprintf(format, args...)}
}

// Endpoint is a GWLB endpoint the load balancer serves.
type Endpoint struct {
	ID           uint64 // the vpce-… number, GENEVE option 1
	AttachmentID uint64 // GENEVE option 2
	AZ           string
}

type target struct {
	ip       netip.Addr
	az       string
	state    TargetState
	okRun    int
	failRun  int
	lastErr  string
	drainEnd time.Time
	flows    int
	toTarget uint64 // packets encapsulated to it
	fromIt   uint64 // replies accepted from it
}

type flow struct {
	key    tuple
	ep     *Endpoint
	target *target
	cookie uint32
	last   time.Time
}

// GWLB is one Gateway Load Balancer with its target group. Safe for
// concurrent use.
type GWLB struct {
	cfg   Config
	log   *slog.Logger
	now   func() time.Time
	addrs map[string]netip.Addr // AZ → the GWLB's ENI address there

	mu        sync.Mutex
	rng       *rand.Rand
	endpoints map[uint64]*Endpoint
	targets   map[netip.Addr]*target
	flows     map[tuple]*flow
	byCookie  map[uint32]*flow
	drops     map[string]uint64
	forwarded uint64
	returned  uint64
}

// New returns a GWLB with ENI addresses addrs (AZ → address) and the
// target group attributes cfg (defaults filled in). now may be nil
// (time.Now), log may be nil.
func New(cfg Config, addrs map[string]netip.Addr, now func() time.Time, log *slog.Logger) (*GWLB, error) {
	cfg, err := cfg.WithDefaults()
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("gwlbsim: a GWLB needs an address in at least one AZ")
	}
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var seed [32]byte
	_, _ = crand.Read(seed[:]) // crypto/rand.Read never fails
	g := &GWLB{cfg: cfg, log: log, now: now, addrs: map[string]netip.Addr{}, rng: rand.New(rand.NewChaCha8(seed)),
		endpoints: map[uint64]*Endpoint{}, targets: map[netip.Addr]*target{}, flows: map[tuple]*flow{},
		byCookie: map[uint32]*flow{}, drops: map[string]uint64{}}
	for az, a := range addrs {
		g.addrs[az] = a
	}
	for _, r := range DropReasons() {
		g.drops[r] = 0
	}
	return g, nil
}

// Config is the GWLB's configuration with defaults filled in.
func (g *GWLB) Config() Config { return g.cfg }

// Addr is the GWLB's address in az (the source of its GENEVE and health
// checks there), or the first AZ's when it has none in az.
func (g *GWLB) Addr(az string) netip.Addr {
	if a, ok := g.addrs[az]; ok {
		return a
	}
	azs := make([]string, 0, len(g.addrs))
	for z := range g.addrs {
		azs = append(azs, z)
	}
	slices.Sort(azs)
	return g.addrs[azs[0]]
}

// AddEndpoint makes the GWLB serve endpoint e.
func (g *GWLB) AddEndpoint(e Endpoint) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.endpoints[e.ID]; ok {
		return fmt.Errorf("gwlbsim: endpoint %s added twice", geneve.EndpointName(e.ID))
	}
	g.endpoints[e.ID] = &e
	return nil
}

// Register adds a target (state initial); registering a deregistered
// target that still has flows makes it initial again.
func (g *GWLB) Register(ip netip.Addr, az string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t := g.targets[ip]; t != nil {
		if t.state != StateUnused {
			return fmt.Errorf("gwlbsim: register %s: already registered (%s)", ip, t.state)
		}
		t.state, t.okRun, t.failRun, t.az = StateInitial, 0, 0, az
		return nil
	}
	n := 0
	for _, t := range g.targets {
		if t.az == az {
			n++
		}
	}
	if n >= MaxTargetsPerAZ {
		return fmt.Errorf("gwlbsim: register %s: AZ %s already has %d targets, AWS's quota per target group", ip, az, MaxTargetsPerAZ)
	}
	g.targets[ip] = &target{ip: ip, az: az, state: StateInitial}
	g.log.Info("gwlb target registered", "target", ip, "az", az)
	return nil
}

// Deregister starts the target's deregistration delay (state draining):
// it gets no new flows, and keeps its existing ones until the delay ends.
func (g *GWLB) Deregister(ip netip.Addr) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := g.targets[ip]
	if t == nil || t.state == StateUnused {
		return fmt.Errorf("gwlbsim: deregister %s: not registered", ip)
	}
	if t.state == StateDraining {
		return nil
	}
	t.state, t.drainEnd = StateDraining, g.now().Add(g.cfg.DeregistrationDelay)
	g.log.Info("gwlb target draining", "target", ip, "flows", t.flows, "delay", g.cfg.DeregistrationDelay)
	if g.cfg.DeregistrationDelay == 0 {
		g.finishDrainLocked(t)
	}
	return nil
}

// finishDrainLocked ends a target's deregistration: with rebalance its
// flows are rehashed and it is gone; with no_rebalance its flows keep it
// (state unused) until they end.
func (g *GWLB) finishDrainLocked(t *target) {
	if g.cfg.OnDeregistration == Rebalance {
		g.rehashFlowsLocked(t, false)
	}
	t.state = StateUnused
	if t.flows == 0 {
		delete(g.targets, t.ip)
	}
	g.log.Info("gwlb target deregistered", "target", t.ip, "flows_left", t.flows)
}

// ReportCheck records one health check result of target ip (a no-op for a
// target that is not registered or drains) and returns its state.
func (g *GWLB) ReportCheck(ip netip.Addr, ok bool, detail string) TargetState {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := g.targets[ip]
	if t == nil {
		return StateUnused
	}
	if t.state == StateDraining || t.state == StateUnused {
		return t.state
	}
	old := t.state
	if ok {
		t.okRun, t.failRun, t.lastErr = t.okRun+1, 0, ""
		if t.state != StateHealthy && t.okRun >= g.cfg.HealthCheck.HealthyThreshold {
			t.state = StateHealthy
		}
	} else {
		t.okRun, t.failRun, t.lastErr = 0, t.failRun+1, detail
		if t.state != StateUnhealthy && t.failRun >= g.cfg.HealthCheck.UnhealthyThreshold {
			t.state = StateUnhealthy
		}
	}
	if t.state != old {
		g.log.Info("gwlb target health", "target", ip, "from", old, "to", t.state, "flows", t.flows, "last_error", t.lastErr)
		if t.state == StateUnhealthy && g.cfg.OnUnhealthy == Rebalance {
			g.rehashFlowsLocked(t, true)
		}
	}
	return t.state
}

// rehashFlowsLocked moves t's flows to other targets (rebalance): to
// healthy ones only when healthyOnly (an unhealthy target's flows stay
// when there is none), else to any candidate (a deregistered target's
// flows must go somewhere).
func (g *GWLB) rehashFlowsLocked(t *target, healthyOnly bool) {
	moved := 0
	for _, f := range g.flows {
		if f.target == t && g.rehashLocked(f, healthyOnly) {
			moved++
		}
	}
	g.log.Info("gwlb flows rebalanced", "from", t.ip, "moved", moved, "left", t.flows)
}

// rehashLocked moves flow f off its target, and reports whether it did.
func (g *GWLB) rehashLocked(f *flow, healthyOnly bool) bool {
	nt := g.pickLocked(f.ep, f.key, f.target)
	if nt == nil || healthyOnly && nt.state != StateHealthy {
		return false
	}
	f.target.flows--
	nt.flows++
	f.target = nt
	return true
}

// candidatesLocked are the targets a new flow through ep may go to: the
// healthy ones in reach (ep's AZ, or every AZ with cross-zone), or when
// none is healthy every registered one there that is not deregistered
// (AWS's fail-open), never except.
func (g *GWLB) candidatesLocked(ep *Endpoint, except *target) []*target {
	var healthy, open []*target
	for _, t := range g.targets {
		if t == except || !g.cfg.CrossZone && t.az != ep.AZ {
			continue
		}
		switch t.state {
		case StateHealthy:
			healthy = append(healthy, t)
		case StateInitial, StateUnhealthy:
			open = append(open, t)
		}
	}
	if len(healthy) > 0 {
		return healthy
	}
	return open
}

func (g *GWLB) pickLocked(ep *Endpoint, key tuple, except *target) *target {
	hk := hashKey(key, g.cfg.Stickiness)
	var best *target
	var bestScore uint64
	for _, t := range g.candidatesLocked(ep, except) {
		if s := score(hk, t.ip); best == nil || s > bestScore || s == bestScore && t.ip.Less(best.ip) {
			best, bestScore = t, s
		}
	}
	return best
}

// Delivery is an encapsulated packet for a target: send Payload from
// Source (a GWLB address) to Target's UDP port geneve.Port.
type Delivery struct {
	Source  netip.Addr
	Target  netip.Addr
	Payload []byte
	Cookie  uint32
}

// Forward takes an IPv4 packet that arrived through endpoint epID and
// returns it encapsulated for its flow's target: the flow's target if it
// has one, else a new flow on a target chosen by hashing over the
// candidates. A refusal is a *DropError, counted.
func (g *GWLB) Forward(epID uint64, pkt []byte) (Delivery, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ep := g.endpoints[epID]
	if ep == nil {
		return Delivery{}, g.dropLocked(DropUnknownEndpoint, "endpoint %s", geneve.EndpointName(epID))
	}
	key, err := parseTuple(pkt)
	if err != nil {
		return Delivery{}, g.dropLocked(DropBadInner, "through %s: %v", geneve.EndpointName(epID), err)
	}
	now := g.now()
	f := g.flows[key]
	if f != nil && now.Sub(f.last) > g.idleTimeout(key) {
		g.forgetLocked(f)
		f = nil
	}
	if f != nil && f.target.state == StateUnhealthy && g.cfg.OnUnhealthy == Rebalance {
		// Rehashed when the target went unhealthy, unless no target was
		// healthy then: try again.
		g.rehashLocked(f, true)
	}
	if f == nil {
		t := g.pickLocked(ep, key, nil)
		if t == nil {
			return Delivery{}, g.dropLocked(DropNoTarget, "flow %s through %s (AZ %s, cross-zone %v)", key, geneve.EndpointName(epID), ep.AZ, g.cfg.CrossZone)
		}
		f = &flow{key: key, ep: ep, target: t, cookie: g.newCookieLocked()}
		g.flows[key] = f
		g.byCookie[f.cookie] = f
		t.flows++
	}
	f.last = now
	f.target.toTarget++
	g.forwarded++
	h := geneve.Header{Options: geneve.Options{EndpointID: ep.ID, AttachmentID: ep.AttachmentID, FlowCookie: f.cookie}}
	payload, err := geneve.Encap(h, pkt)
	if err != nil { // parseTuple accepted an IPv4 packet: cannot happen
		return Delivery{}, g.dropLocked(DropBadInner, "encapsulate flow %s: %v", key, err)
	}
	return Delivery{Source: g.Addr(ep.AZ), Target: f.target.ip, Payload: payload, Cookie: f.cookie}, nil
}

func (g *GWLB) idleTimeout(k tuple) time.Duration {
	if k.proto == protoTCP {
		return g.cfg.TCPIdleTimeout
	}
	return g.cfg.OtherIdleTimeout
}

func (g *GWLB) newCookieLocked() uint32 {
	for {
		c := g.rng.Uint32()
		if _, taken := g.byCookie[c]; c != 0 && !taken {
			return c
		}
	}
}

func (g *GWLB) forgetLocked(f *flow) {
	delete(g.flows, f.key)
	delete(g.byCookie, f.cookie)
	t := f.target
	t.flows--
	if t.state == StateUnused && t.flows == 0 {
		delete(g.targets, t.ip)
	}
}

func (g *GWLB) dropLocked(reason, format string, args ...any) error {
	g.drops[reason]++
	return drop(reason, format, args...)
}

// Return takes a UDP payload a target sent from address from to the
// GWLB's port 6081 and returns the endpoint to deliver the inner packet
// through and the inner packet (aliasing payload). It accepts only GWLB's
// GENEVE (geneve.Parse) carrying a live flow's cookie and options, from
// that flow's target, holding that flow's reply. A refusal is counted.
func (g *GWLB) Return(from netip.Addr, payload []byte) (epID uint64, inner []byte, err error) {
	h, inner, perr := geneve.Parse(payload)
	g.mu.Lock()
	defer g.mu.Unlock()
	if perr != nil {
		return 0, nil, g.dropLocked(string(geneve.ReasonOf(perr)), "from %s: %v", from, perr)
	}
	f := g.byCookie[h.Options.FlowCookie]
	if f == nil {
		return 0, nil, g.dropLocked(DropUnknownFlow, "from %s: flow cookie %#08x", from, h.Options.FlowCookie)
	}
	if h.Options.EndpointID != f.ep.ID || h.Options.AttachmentID != f.ep.AttachmentID {
		return 0, nil, g.dropLocked(DropOptionMismatch, "from %s: endpoint %s attachment %#x, the flow's are %s %#x", from,
			geneve.EndpointName(h.Options.EndpointID), h.Options.AttachmentID, geneve.EndpointName(f.ep.ID), f.ep.AttachmentID)
	}
	if from != f.target.ip {
		return 0, nil, g.dropLocked(DropForeignSource, "flow %s belongs to target %s, GENEVE came from %s", f.key, f.target.ip, from)
	}
	k, terr := parseTuple(inner)
	switch {
	case terr != nil:
		return 0, nil, g.dropLocked(DropBadInner, "from %s: %v", from, terr)
	case k == f.key:
		return 0, nil, g.dropLocked(DropOneArm, "from %s: the flow's own direction %s", from, k)
	case k != f.key.reverse():
		return 0, nil, g.dropLocked(DropTupleMismatch, "from %s: %s is not the reply of flow %s", from, k, f.key)
	}
	f.last = g.now()
	f.target.fromIt++
	g.returned++
	return f.ep.ID, inner, nil
}

// Tick ends the deregistration delays that have passed and forgets flows
// idle past their timeout. The lab calls it about once a second.
func (g *GWLB) Tick() {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	for _, t := range g.targets {
		if t.state == StateDraining && !now.Before(t.drainEnd) {
			g.finishDrainLocked(t)
		}
	}
	for _, f := range g.flows {
		if now.Sub(f.last) > g.idleTimeout(f.key) {
			g.forgetLocked(f)
		}
	}
}

// TargetStatus is one target as the lab's status shows it.
type TargetStatus struct {
	IP          netip.Addr  `json:"ip"`
	AZ          string      `json:"availability_zone"`
	State       TargetState `json:"state"`
	Flows       int         `json:"flows"`
	Packets     uint64      `json:"packets_to_target"`
	Replies     uint64      `json:"replies_from_target"`
	LastError   string      `json:"last_check_error,omitempty"`
	DrainingFor string      `json:"draining_left,omitempty"`
}

// Status is the GWLB's state: its targets (by address), counters and drops.
type Status struct {
	Targets   []TargetStatus    `json:"targets"`
	Flows     int               `json:"flows"`
	Forwarded uint64            `json:"forwarded"`
	Returned  uint64            `json:"returned"`
	Drops     map[string]uint64 `json:"drops"`
}

// Status returns a snapshot of the GWLB.
func (g *GWLB) Status() Status {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := Status{Flows: len(g.flows), Forwarded: g.forwarded, Returned: g.returned, Drops: map[string]uint64{}}
	for k, v := range g.drops {
		st.Drops[k] = v
	}
	now := g.now()
	for _, t := range g.targets {
		ts := TargetStatus{IP: t.ip, AZ: t.az, State: t.state, Flows: t.flows, Packets: t.toTarget, Replies: t.fromIt, LastError: t.lastErr}
		if t.state == StateDraining {
			ts.DrainingFor = t.drainEnd.Sub(now).Round(time.Second).String()
		}
		st.Targets = append(st.Targets, ts)
	}
	slices.SortFunc(st.Targets, func(a, b TargetStatus) int { return a.IP.Compare(b.IP) })
	return st
}

// FlowTarget returns the target of the flow with cookie c (tests, the
// demo), or false.
func (g *GWLB) FlowTarget(c uint32) (netip.Addr, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.byCookie[c]
	if f == nil {
		return netip.Addr{}, false
	}
	return f.target.ip, true
}

// checkTargets returns the addresses and AZs of the targets to health
// check: the registered ones, not those deregistering.
func (g *GWLB) checkTargets() map[netip.Addr]string {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := map[netip.Addr]string{}
	for ip, t := range g.targets {
		if t.state != StateDraining && t.state != StateUnused {
			out[ip] = t.az
		}
	}
	return out
}

// Package gwlbsim is the lab's AWS Gateway Load Balancer: a target group
// with AWS's health checks and target states, a flow table that hashes
// new flows over the healthy targets and keeps each flow on its target,
// and GWLB's GENEVE encapsulation towards the targets and back.
//
// It is the load balancer's logic only, with no sockets of its own: the
// lab (package vpcsim) reads the packets the endpoints receive, hands them
// to Forward and sends the result to the target's UDP port 6081; it hands
// what the targets send back to Return and delivers the inner packet
// through the endpoint. Health checks dial through a function the lab
// gives, so they leave from the GWLB's address inside its namespace.
//
// It models two-arm mode, the one a NAT uses: a target decapsulates,
// translates and sends the packet out of its own ENI; the internet's reply
// comes back to the target's EIP, the target de-NATs it and returns it to
// the GWLB encapsulated with the flow's options, and the GWLB delivers it
// to the endpoint the flow came through, which hands it to the private
// host.
package gwlbsim

import (
	"fmt"
	"time"
)

// Stickiness is which fields of a flow pick its target (AWS's
// stickiness.type: source_ip_dest_ip_proto is 3-tuple, source_ip_dest_ip
// 2-tuple; the default is the 5-tuple).
type Stickiness string

const (
	FiveTuple  Stickiness = "5-tuple"
	ThreeTuple Stickiness = "source_ip_dest_ip_proto"
	TwoTuple   Stickiness = "source_ip_dest_ip"
)

// Failover is target_failover.on_unhealthy / .on_deregistration.
type Failover string

const (
	// NoRebalance (AWS's default): existing flows keep going to the
	// failed or deregistered target; only new flows avoid it.
	NoRebalance Failover = "no_rebalance"
	// Rebalance: existing flows are rehashed to healthy targets once the
	// target is unhealthy, or once its deregistration delay has passed.
	Rebalance Failover = "rebalance"
)

// HealthCheck protocols a GWLB target group offers (HTTPS is not
// simulated).
const (
	CheckTCP  = "TCP"
	CheckHTTP = "HTTP"
)

// HealthCheck is the target group's health check.
type HealthCheck struct {
	Protocol           string        // CheckTCP (default) or CheckHTTP
	Port               uint16        // default 80 (AWS's default for a GENEVE target group)
	Path               string        // HTTP only; default "/"
	Interval           time.Duration // default 10 s
	Timeout            time.Duration // default 5 s
	HealthyThreshold   int           // consecutive successes to become healthy; default 3
	UnhealthyThreshold int           // consecutive failures to become unhealthy; default 3
}

// Config is the GWLB's and its target group's attributes. The zero value
// is AWS's defaults.
type Config struct {
	HealthCheck HealthCheck
	Stickiness  Stickiness // default FiveTuple
	// OnUnhealthy and OnDeregistration must be equal, as AWS requires;
	// default NoRebalance.
	OnUnhealthy      Failover
	OnDeregistration Failover
	// DeregistrationDelay is how long a deregistered target drains;
	// default 300 s. Negative means 0 (for tests).
	DeregistrationDelay time.Duration
	// CrossZone spreads an endpoint's flows over the targets of every AZ.
	// Off by default, as on AWS: a GWLB node sends only to its own AZ's
	// targets, so an AZ's traffic stays in the AZ (no cross-AZ cost, and
	// one AZ's failure does not touch the other's flows).
	CrossZone bool
	// Idle timeouts of a flow: TCP 350 s, other protocols 120 s by default.
	TCPIdleTimeout   time.Duration
	OtherIdleTimeout time.Duration
}

// MaxTargetsPerAZ is AWS's quota of targets per AZ per target group of a
// Gateway Load Balancer.
const MaxTargetsPerAZ = 300

// Defaults of AWS's target group attributes.
const (
	DefaultInterval            = 10 * time.Second
	DefaultTimeout             = 5 * time.Second
	DefaultThreshold           = 3
	DefaultCheckPort           = 80
	DefaultDeregistrationDelay = 300 * time.Second
	DefaultTCPIdleTimeout      = 350 * time.Second
	DefaultOtherIdleTimeout    = 120 * time.Second
)

// WithDefaults returns c with every unset field at AWS's default, or an
// error naming the first invalid field.
func (c Config) WithDefaults() (Config, error) {
	hc := &c.HealthCheck
	if hc.Protocol == "" {
		hc.Protocol = CheckTCP
	}
	if hc.Protocol != CheckTCP && hc.Protocol != CheckHTTP {
		return c, fmt.Errorf("gwlbsim: health check protocol %q: want %s or %s", hc.Protocol, CheckTCP, CheckHTTP)
	}
	if hc.Port == 0 {
		hc.Port = DefaultCheckPort
	}
	if hc.Protocol == CheckHTTP && hc.Path == "" {
		hc.Path = "/"
	}
	if hc.Protocol == CheckTCP && hc.Path != "" {
		return c, fmt.Errorf("gwlbsim: health check path %q given for a TCP check", hc.Path)
	}
	if hc.Interval == 0 {
		hc.Interval = DefaultInterval
	}
	if hc.Timeout == 0 {
		hc.Timeout = min(DefaultTimeout, hc.Interval)
	}
	if hc.Interval < 0 || hc.Timeout < 0 || hc.Timeout > hc.Interval {
		return c, fmt.Errorf("gwlbsim: health check interval %v, timeout %v: want 0 < timeout <= interval", hc.Interval, hc.Timeout)
	}
	for _, th := range []*int{&hc.HealthyThreshold, &hc.UnhealthyThreshold} {
		if *th == 0 {
			*th = DefaultThreshold
		}
		if *th < 2 || *th > 10 {
			return c, fmt.Errorf("gwlbsim: health check threshold %d: want 2..10 as AWS allows", *th)
		}
	}
	switch c.Stickiness {
	case "":
		c.Stickiness = FiveTuple
	case FiveTuple, ThreeTuple, TwoTuple:
	default:
		return c, fmt.Errorf("gwlbsim: stickiness %q: want %s, %s or %s", c.Stickiness, FiveTuple, ThreeTuple, TwoTuple)
	}
	for _, f := range []*Failover{&c.OnUnhealthy, &c.OnDeregistration} {
		if *f == "" {
			*f = NoRebalance
		}
		if *f != NoRebalance && *f != Rebalance {
			return c, fmt.Errorf("gwlbsim: target failover %q: want %s or %s", *f, NoRebalance, Rebalance)
		}
	}
	if c.OnUnhealthy != c.OnDeregistration {
		return c, fmt.Errorf("gwlbsim: target_failover.on_unhealthy %s and .on_deregistration %s must match, as AWS requires", c.OnUnhealthy, c.OnDeregistration)
	}
	switch {
	case c.DeregistrationDelay == 0:
		c.DeregistrationDelay = DefaultDeregistrationDelay
	case c.DeregistrationDelay < 0:
		c.DeregistrationDelay = 0
	}
	if c.TCPIdleTimeout <= 0 {
		c.TCPIdleTimeout = DefaultTCPIdleTimeout
	}
	if c.OtherIdleTimeout <= 0 {
		c.OtherIdleTimeout = DefaultOtherIdleTimeout
	}
	return c, nil
}

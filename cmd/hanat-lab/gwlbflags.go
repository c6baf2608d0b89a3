package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/hanat/hanat/internal/vpcsim/gwlbsim"
)

// gwlbFlags are the target group attributes `up --gwlb` takes and passes
// on to `serve`; unset ones are AWS's defaults.
type gwlbFlags struct {
	check     string
	interval  time.Duration
	failover  string
	delay     setDuration
	crossZone bool
}

// setDuration is a duration flag that knows whether it was given (0s is a
// valid deregistration delay, not "the default").
type setDuration struct {
	d   time.Duration
	set bool
}

func (s *setDuration) String() string { return s.d.String() }
func (s *setDuration) Set(v string) error {
	d, err := time.ParseDuration(v)
	if err != nil {
		return err
	}
	s.d, s.set = d, true
	return nil
}

func (g *gwlbFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&g.check, "gwlb-check", "", "health check PROTO:PORT[/PATH]: TCP:80 (default) or HTTP:PORT/PATH")
	fs.DurationVar(&g.interval, "gwlb-interval", 0, "health check interval (default 10s)")
	fs.StringVar(&g.failover, "gwlb-failover", "", "target failover on unhealthy and on deregistration: no_rebalance (default) or rebalance")
	fs.Var(&g.delay, "gwlb-delay", "deregistration delay (default 300s; 0s allowed)")
	fs.BoolVar(&g.crossZone, "gwlb-cross-zone", false, "cross-zone load balancing (default off, as on AWS)")
}

// args are the flags that were set, as `serve` takes them.
func (g *gwlbFlags) args(set map[string]bool) []string {
	var out []string
	add := func(name, v string) {
		if set[name] {
			out = append(out, "--"+name+"="+v)
		}
	}
	add("gwlb-check", g.check)
	add("gwlb-interval", g.interval.String())
	add("gwlb-failover", g.failover)
	add("gwlb-delay", g.delay.d.String())
	add("gwlb-cross-zone", strconv.FormatBool(g.crossZone))
	return out
}

// config is the GWLB configuration the flags say, checked.
func (g *gwlbFlags) config() (gwlbsim.Config, error) {
	c := gwlbsim.Config{OnUnhealthy: gwlbsim.Failover(g.failover), OnDeregistration: gwlbsim.Failover(g.failover),
		DeregistrationDelay: g.delay.d, CrossZone: g.crossZone}
	if g.delay.set && g.delay.d == 0 {
		c.DeregistrationDelay = -1 // gwlbsim's "none"
	}
	c.HealthCheck.Interval = g.interval
	if g.check != "" {
		proto, rest, ok := strings.Cut(g.check, ":")
		port, path, _ := strings.Cut(rest, "/")
		n, err := strconv.ParseUint(port, 10, 16)
		if !ok || err != nil || n == 0 {
			return c, fmt.Errorf("--gwlb-check %q: want PROTO:PORT[/PATH], e.g. TCP:80 or HTTP:8080/healthz", g.check)
		}
		c.HealthCheck.Protocol, c.HealthCheck.Port = strings.ToUpper(proto), uint16(n)
		if path != "" {
			c.HealthCheck.Path = "/" + path
		}
	}
	if g.delay.d < 0 || g.interval < 0 || g.delay.d > time.Hour {
		return c, fmt.Errorf("--gwlb-delay %v, --gwlb-interval %v: want a delay of 0s..1h and an interval above zero", g.delay.d, g.interval)
	}
	if _, err := c.WithDefaults(); err != nil {
		return c, fmt.Errorf("--gwlb-…: %w", err)
	}
	return c, nil
}

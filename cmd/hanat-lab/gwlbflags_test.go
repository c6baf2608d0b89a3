package main

import (
	"flag"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/hanat/hanat/internal/vpcsim/gwlbsim"
)

func parseGWLBFlags(t *testing.T, args ...string) (gwlbsim.Config, []string, error) {
	t.Helper()
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var g gwlbFlags
	g.register(fs)
	if err := fs.Parse(args); err != nil {
		return gwlbsim.Config{}, nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	c, err := g.config()
	return c, g.args(set), err
}

func TestGWLBFlags(t *testing.T) {
	c, args, err := parseGWLBFlags(t, "--gwlb-check", "http:8080/healthz", "--gwlb-interval", "2s",
		"--gwlb-failover", "rebalance", "--gwlb-delay", "0s", "--gwlb-cross-zone")
	if err != nil {
		t.Fatal(err)
	}
	hc := c.HealthCheck
	if hc.Protocol != gwlbsim.CheckHTTP || hc.Port != 8080 || hc.Path != "/healthz" || hc.Interval != 2*time.Second ||
		c.OnUnhealthy != gwlbsim.Rebalance || c.OnDeregistration != gwlbsim.Rebalance || c.DeregistrationDelay >= 0 || !c.CrossZone {
		t.Fatalf("config: %+v", c)
	}
	d, err := c.WithDefaults()
	if err != nil || d.DeregistrationDelay != 0 {
		t.Fatalf("--gwlb-delay 0s: delay %v (%v), want none", d.DeregistrationDelay, err)
	}
	want := []string{"--gwlb-check=http:8080/healthz", "--gwlb-interval=2s", "--gwlb-failover=rebalance", "--gwlb-delay=0s", "--gwlb-cross-zone=true"}
	if !slices.Equal(args, want) {
		t.Fatalf("serve args %q, want %q", args, want)
	}
	// serve parses what up passes on to the same config.
	again, _, err := parseGWLBFlags(t, args...)
	if err != nil || again != c {
		t.Fatalf("serve's config %+v (%v), up's %+v", again, err, c)
	}
	if c, args, err := parseGWLBFlags(t); err != nil || len(args) != 0 || c != (gwlbsim.Config{}) {
		t.Fatalf("no flags: %+v %q %v, want AWS's defaults (the zero config) and nothing passed on", c, args, err)
	}
	for _, bad := range [][]string{
		{"--gwlb-check", "TCP"}, {"--gwlb-check", "UDP:80"}, {"--gwlb-check", "TCP:80/x"}, {"--gwlb-check", "HTTP:0/"},
		{"--gwlb-failover", "sometimes"}, {"--gwlb-delay", "2h"}, {"--gwlb-interval", "-1s"},
	} {
		if _, _, err := parseGWLBFlags(t, bad...); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

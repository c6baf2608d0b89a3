package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hanat/hanat/admin"
)

// fleetBackend is a fleet member draining after a scale-in.
type fleetBackend struct {
	fakeBackend
	fleet admin.FleetStatus
}

func (b *fleetBackend) Status(ctx context.Context) (admin.Status, error) {
	st, err := b.fakeBackend.Status(ctx)
	f := b.fleet
	st.Fleet = &f
	return st, err
}

func TestFleetStatus(t *testing.T) {
	now := time.Now()
	b := &fleetBackend{fleet: admin.FleetStatus{
		Role: "fleet member", HealthCheck: "tcp 10.0.1.10:80", CheckedAt: now.Add(-time.Second),
		HealthNote: "draining since 2026-12-04T01:00:00Z: Auto Scaling target lifecycle state Terminated",
		Lifecycle:  "Terminated", LifecycleAt: now,
		Peers: []admin.FleetPeer{{Address: "10.0.1.200", LastCheck: now.Add(-3 * time.Second), Checks: 41, Flows: 2},
			{Address: "10.0.3.200", Flows: 1}},
		Drain: admin.FleetDrain{Draining: true, Since: now.Add(-50 * time.Second), Reason: "Auto Scaling target lifecycle state Terminated",
			LeftMS: 250_000, Flows: 3},
		FlowsPerEndpoint: map[string]int{"vpce-0123456789abcdef0": 2, "vpce-0fedcba987654321f": 1},
		Datapath:         map[string]uint64{"decap": 12, "encap": 11, "foreign_source": 1, "truncated": 0},
	}}
	sock := startDaemon(t, b)
	o := hanatctl(t, "--socket", sock, "status")
	o.want(t, 0)
	for _, want := range []string{"Fleet (Gateway Load Balancer target)", "fleet member: UNHEALTHY: draining since",
		"tcp 10.0.1.10:80, evaluated", "lifecycle:", "Terminated", "3 flows left, 4m10s left of the deregistration delay",
		"GWLB addresses:", "none configured", "10.0.1.200", "41", "10.0.3.200", "never",
		"vpce-0123456789abcdef0", "vpce-0fedcba987654321f", "total", "datapath counters:  decap 12, encap 11, foreign_source 1\n"} {
		if !strings.Contains(o.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, o.stdout)
		}
	}

	// Ended: how, and with how many flows left.
	b.fleet.Drain.Ended, b.fleet.Drain.TookMS, b.fleet.Drain.FlowsLeft = "deregistration delay passed", 300_000, 2
	b.fleet.FlowsPerEndpoint, b.fleet.Peers = nil, nil
	b.fleet.Lifecycle = "" // read: no Auto Scaling group
	b.fleet.Datapath, b.fleet.DatapathError = map[string]uint64{"decap": 0}, "map read failed"
	o = hanatctl(t, "--socket", sock, "status")
	o.want(t, 0)
	for _, want := range []string{"DRAINED: deregistration delay passed after 5m0s with 2 flows left", "GWLB peers seen:", "none yet",
		"flows per endpoint:", "none", "not in an Auto Scaling group", "datapath counters:", "unknown (map read failed)", "all zero"} {
		if !strings.Contains(o.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, o.stdout)
		}
	}

	// A healthy member, not draining.
	b.fleet = admin.FleetStatus{Role: "fleet member", HealthCheck: "http 10.0.1.10:80 /", Healthy: true, GWLBAddrs: []string{"10.0.1.200"}}
	o = hanatctl(t, "--socket", sock, "status")
	o.want(t, 0)
	for _, want := range []string{"fleet member: healthy", "drain:", "no\n", "GWLB addresses:  10.0.1.200\n", "lifecycle:", "not read"} {
		if !strings.Contains(o.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, o.stdout)
		}
	}

	// Addresses found in EC2 say so; none found yet is not "none configured".
	b.fleet.GWLBAddrsFrom = "EC2"
	o = hanatctl(t, "--socket", sock, "status")
	o.want(t, 0)
	if !strings.Contains(o.stdout, "GWLB addresses:  10.0.1.200 (from EC2)") {
		t.Errorf("status lacks the discovered addresses:\n%s", o.stdout)
	}
	b.fleet.GWLBAddrs = nil
	o = hanatctl(t, "--socket", sock, "status")
	o.want(t, 0)
	if !strings.Contains(o.stdout, "none found in EC2 yet") {
		t.Errorf("status lacks \"none found in EC2 yet\":\n%s", o.stdout)
	}

	// The scale-in's lifecycle action: completed, or failed with why.
	b.fleet.LifecycleAction = &admin.FleetLifecycleAction{Action: "i-0abc of group hanat-fleet, hook hanat-drain: CONTINUE", At: now.Add(-2 * time.Second)}
	o = hanatctl(t, "--socket", sock, "status")
	o.want(t, 0)
	if !strings.Contains(o.stdout, "lifecycle action:  completed i-0abc of group hanat-fleet, hook hanat-drain: CONTINUE, ") {
		t.Errorf("status lacks the completed lifecycle action:\n%s", o.stdout)
	}
	b.fleet.LifecycleAction.Error = "autoscaling CompleteLifecycleAction: AccessDenied"
	o = hanatctl(t, "--socket", sock, "status")
	o.want(t, 0)
	if !strings.Contains(o.stdout, "lifecycle action:  FAILED ") || !strings.Contains(o.stdout, "AccessDenied (the hook's heartbeat timeout ends it)") {
		t.Errorf("status lacks the failed lifecycle action:\n%s", o.stdout)
	}
}

package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hanat/hanat/cloud"
	"github.com/hanat/hanat/config"
	"github.com/hanat/hanat/internal/testtool"
	"github.com/hanat/hanat/internal/vpcsim/ec2sim"
)

// fleetDaemon is a daemon off EC2 with cfg, as far as newFleet needs one.
func fleetDaemon(t *testing.T, cfg *config.Config) *daemon {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	d := &daemon{log: log, ec2: cloud.DiscoverNode(t.Context(), log, cloud.NodeOptions{})}
	d.state.cfg = cfg
	return d
}

// fleetConfig is gwlb on, its HTTP check on a free loopback port and the
// upstream check against a listener of the test's.
func fleetConfig(t *testing.T) *config.Config {
	t.Helper()
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	hc, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := netip.MustParseAddrPort(hc.Addr().String()).Port()
	hc.Close()
	cfg := config.Default()
	cfg.GWLB.Enabled = true
	cfg.GWLB.HealthCheck = config.GWLBHealthCheck{Address: netip.MustParseAddr("127.0.0.1"), Port: port, Protocol: "http", Path: "/"}
	cfg.GWLB.DeregistrationDelay = config.Duration{Duration: time.Hour}
	cfg.GWLB.Addresses = []netip.Addr{netip.MustParseAddr("10.0.1.5")}
	cfg.HA.Health.Targets = []string{up.Addr().String()}
	cfg.HA.Health.Interval = config.Duration{Duration: 100 * time.Millisecond}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// runFleet builds d's fleet member of cfg and runs it until the test
// ends.
func runFleet(t *testing.T, d *daemon, cfg *config.Config) *fleetNode {
	t.Helper()
	f, err := d.newFleet(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = f.run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

func TestNewFleet(t *testing.T) {
	off := config.Default()
	f, err := fleetDaemon(t, off).newFleet(t.Context(), off)
	if err != nil || f.m != nil || f.status(t.Context()) != nil {
		t.Fatalf("gwlb off: member %v, %v", f, err)
	}
	noAddr := config.Default()
	noAddr.GWLB.Enabled = true
	if _, err := fleetDaemon(t, noAddr).newFleet(t.Context(), noAddr); err == nil || !strings.Contains(err.Error(), "set gwlb.health_check.address") {
		t.Fatalf("off EC2 without an address: %v, want an error naming gwlb.health_check.address", err)
	}
}

// TestFleetMemberOwnsNoRouteTables: a fleet member's route tables point
// at the GWLB endpoints; the HA loop must not start and claim them.
func TestFleetMemberOwnsNoRouteTables(t *testing.T) {
	cfg := fleetConfig(t)
	d := fleetDaemon(t, cfg)
	d.sync = &syncNode{}
	h := d.newHA(t.Context())
	if m, why := h.running(); m != nil || !strings.Contains(why, "a fleet member (gwlb.enabled)") {
		t.Fatalf("HA of a fleet member: running %v, why %q", m != nil, why)
	}
}

// TestFleetMemberUnhealthyUntilAttached: the member's datapath is the
// NAT's slow path and the GWLB datapath; until the latter is attached to
// the outside interface (resolved by the NAT) it fails its health check,
// with the reason, even with the NAT up.
func TestFleetMemberUnhealthyUntilAttached(t *testing.T) {
	cfg := fleetConfig(t)
	d := fleetDaemon(t, cfg)
	f := runFleet(t, d, cfg)
	reason := func() string { return f.status(t.Context()).HealthNote }
	testtool.Eventually(t, 5*time.Second, "NAT not applied", func() bool { return strings.Contains(reason(), "NAT datapath not applied yet") })
	d.mu.Lock()
	d.state.ready = true
	d.mu.Unlock()
	testtool.Eventually(t, 5*time.Second, "GWLB datapath not attached", func() bool { return strings.Contains(reason(), "GWLB datapath not attached") })
	st := f.status(t.Context())
	if st.Healthy || st.Role != "fleet member" || !strings.HasPrefix(st.HealthCheck, "http 127.0.0.1:") || st.Drain.Draining {
		t.Fatalf("status = %+v", st)
	}

	// A shutdown drain with no flow (nothing attached) ends at once.
	sctx, scancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer scancel()
	if !f.drainUntil(sctx, sdNotify{log: d.log}) {
		t.Fatal("a drain without flows did not end")
	}
	if st := f.status(t.Context()); st.Drain.Ended != "last flow ended" || !strings.Contains(st.HealthNote, "draining since") {
		t.Fatalf("after the drain: %+v", st.Drain)
	}
}

// TestStopContextEndsOnSIGTERM: the second SIGTERM of a drain ends it.
func TestStopContextEndsOnSIGTERM(t *testing.T) {
	ctx, cancel := stopContext(time.Minute)
	defer cancel()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("SIGTERM did not end the drain's context")
	}
	ctx2, cancel2 := stopContext(20 * time.Millisecond)
	defer cancel2()
	select {
	case <-ctx2.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the bound did not end the drain's context")
	}
}

// TestFleetLifecycleFromIMDS: on EC2 (the lab's IMDS and Auto Scaling
// API), an instance scaled in — its Auto Scaling target lifecycle state
// Terminated, held in Terminating:Wait by the group's hook — drains at
// once through cloud's IMDSv2 client and the fleet's watch, then
// completes the hook's lifecycle action CONTINUE through the real SDK:
// the group and the hook found by the Describe calls.
func TestFleetLifecycleFromIMDS(t *testing.T) {
	m, inst, f := drainOnTerminated(t, true)
	st := f.status(t.Context())
	done := m.CompletedLifecycleActions()
	if len(done) != 1 || done[0].InstanceID != inst || done[0].Group != "hanat-fleet" || done[0].Hook != "hanat-drain" || done[0].Result != ec2sim.ResultContinue {
		t.Fatalf("the lab saw completions %+v (status %+v)", done, st.LifecycleAction)
	}
	if s := m.AutoScalingState(inst); s != ec2sim.ASGTerminatingProceed {
		t.Fatalf("the instance is %s after the completion", s)
	}
	if a := st.LifecycleAction; a == nil || a.Error != "" || !strings.Contains(a.Action, "hanat-fleet") {
		t.Fatalf("status shows the lifecycle action as %+v", a)
	}
}

// TestFleetLifecycleActionRefused: IMDS says Terminated but Auto Scaling
// holds no action for the instance (completed by someone else): the
// drain ends all the same and the status shows AWS's refusal.
func TestFleetLifecycleActionRefused(t *testing.T) {
	m, inst, f := drainOnTerminated(t, false)
	a := f.status(t.Context()).LifecycleAction
	if a == nil || !strings.Contains(a.Error, "No active Lifecycle Action found with instance ID "+inst) || len(m.CompletedLifecycleActions()) != 0 {
		t.Fatalf("status shows the lifecycle action as %+v", a)
	}
}

// drainOnTerminated runs a fleet member on the lab's IMDS and Auto
// Scaling API, its instance in group hanat-fleet (hook hanat-drain) and
// its target lifecycle state Terminated: by a scale-in (Terminating:Wait),
// or set in IMDS alone; it returns once the drain has ended.
func drainOnTerminated(t *testing.T, scaleIn bool) (*ec2sim.Model, string, *fleetNode) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m := ec2sim.NewModel("us-sim-1", log, ec2sim.NopFabric{})
	vpc := m.AddVPC(netip.MustParsePrefix("10.0.0.0/16"), nil)
	subnet := m.AddSubnet(vpc, netip.MustParsePrefix("10.0.1.0/24"), "us-sim-1a", nil)
	inst := m.AddInstance("us-sim-1a", subnet, nil)
	if m.AddNetworkInterface(subnet, inst, 0, nil, netip.MustParseAddr("10.0.1.10"), nil) == "" {
		t.Fatal("building the instance failed")
	}
	srv := httptest.NewServer(m.IMDSHandler(func(*http.Request) (string, bool) { return inst, true }))
	defer srv.Close()
	creds := ec2sim.Credentials{AccessKeyID: "AKIDHANATDFLEET", SecretAccessKey: "hanatd-fleet-test"}
	as := httptest.NewServer(m.AutoScalingHandler(creds))
	defer as.Close()
	dir := t.TempDir()
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": creds.AccessKeyID, "AWS_SECRET_ACCESS_KEY": creds.SecretAccessKey,
		"AWS_ENDPOINT_URL_AUTO_SCALING": as.URL, "AWS_CONFIG_FILE": dir + "/none", "AWS_SHARED_CREDENTIALS_FILE": dir + "/none",
		"AWS_PROFILE": "", "AWS_SESSION_TOKEN": ""} {
		t.Setenv(k, v)
	}
	hook := ec2sim.LifecycleHook{Name: "hanat-drain", Transition: ec2sim.TransitionTerminating, HeartbeatTimeout: time.Hour}
	if err := m.CreateAutoScalingGroup("hanat-fleet", []string{inst}, []ec2sim.LifecycleHook{hook}); err != nil {
		t.Fatal(err)
	}
	if scaleIn {
		if err := m.ScaleIn(inst); err != nil {
			t.Fatal(err)
		}
	} else if err := m.SetTargetLifecycleState(inst, ec2sim.LifecycleTerminated); err != nil {
		t.Fatal(err)
	}

	cfg := fleetConfig(t)
	d := fleetDaemon(t, cfg)
	d.ec2 = cloud.DiscoverNode(t.Context(), log, cloud.NodeOptions{Discover: true, IMDSEndpoint: srv.URL})
	if !d.ec2.OnEC2() {
		t.Fatalf("not on the lab's EC2: %s", d.ec2.Message())
	}
	f := runFleet(t, d, cfg)
	select {
	case <-f.m.Drained():
	case <-time.After(10 * time.Second):
		t.Fatalf("Terminated did not drain the member: %+v", f.status(t.Context()))
	}
	st := f.status(t.Context())
	if st.Lifecycle != ec2sim.LifecycleTerminated || !strings.Contains(st.Drain.Reason, "Terminated") || st.Drain.Ended != "last flow ended" || st.Healthy {
		t.Fatalf("status = %+v", st)
	}
	return m, inst, f
}

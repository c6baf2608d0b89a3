package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hanat/hanat/admin"
)

type fakeHABackend struct {
	fakeBackend
	got []string
}

func (b *fakeHABackend) Status(ctx context.Context) (admin.Status, error) {
	st, err := b.fakeBackend.Status(ctx)
	st.HA = &admin.HAStatus{
		Enabled: true, Mode: "pair", NodeID: "i-a", ENI: "eni-a", Healthy: true, Preempt: true, HoldDown: "30s",
		Interval: "200ms", DeadAfter: "1s",
		Peer: admin.HAPeer{Address: "10.0.2.10:7946", NodeID: "i-c", ENI: "eni-c", State: "alive", HeartbeatAgeMS: 120, Loss: 0.01},
		Tables: []admin.HATable{
			{ID: "rtb-0a", Home: true, Owner: "eni-c", OwnerNode: "peer", Desired: "peer", Claim: "none",
				LastChange: time.Now().Add(-time.Minute), LastReason: "operator failover", Changes: 2},
		},
		EIPs: []admin.HAEIP{{AllocationID: "eipalloc-0a", RouteTables: []string{"rtb-0a"}, ENI: "eni-a", Address: "10.0.1.10"},
			{AllocationID: "eipalloc-0c", RouteTables: []string{"rtb-0c"}, ENI: "eni-c"}},
		Counters: map[string]uint64{"route_writes": 3, "heartbeats_dropped_replay": 1},
		Sync: &admin.HASync{Enabled: true, Standby: "10.0.1.20",
			Sent:         admin.HASyncStream{Connected: true, Flows: 250, LagMS: 12, LastFullSyncAt: time.Now().Add(-time.Minute)},
			Held:         admin.HASyncStream{Flows: 240, Errors: map[string]uint64{"auth_failed": 2}},
			LastTakeover: &admin.HATakeover{At: time.Now().Add(-time.Hour), Injected: 239, Existed: 1, TookMS: 40}},
	}
	return st, err
}

func (b *fakeHABackend) Failover(ctx context.Context, req admin.HARequest) (admin.HAResponse, error) {
	b.got = append(b.got, "failover "+strings.Join(req.Tables, ","))
	return admin.HAResponse{Tables: req.Tables, Message: "handing 1 route table(s) to the peer"}, nil
}

func (b *fakeHABackend) Takeover(ctx context.Context, req admin.HARequest) (admin.HAResponse, error) {
	b.got = append(b.got, "takeover "+strings.Join(req.Tables, ","))
	return admin.HAResponse{Tables: req.Tables, Message: "asking"}, nil
}

func (b *fakeHABackend) Maintenance(ctx context.Context, req admin.MaintenanceRequest) (admin.HAResponse, error) {
	if req.On {
		b.got = append(b.got, "maintenance on")
	} else {
		b.got = append(b.got, "maintenance off")
	}
	return admin.HAResponse{Message: "ok"}, nil
}

func TestHACommands(t *testing.T) {
	b := &fakeHABackend{}
	sock := startDaemon(t, b)
	o := hanatctl(t, "--socket", sock, "status")
	o.want(t, 0)
	for _, want := range []string{"HA", "i-a (eni-a): healthy", "peer:", "10.0.2.10:7946 i-c eni-c: alive", "last 120ms ago", "loss 1.0%",
		"rtb-0a", "home", "peer eni-c", "operator failover", "route_writes=3", "heartbeats_dropped_replay=1",
		"sync standby:", "10.0.1.20 (carries the peer's EIP", "sync sent:", "connected, 250 flows, lag 12 ms", "sync held:",
		"disconnected, 240 flows", "last full sync never, errors auth_failed=2", "239 injected, 1 already there",
		"EIP eipalloc-0a", "on eni-a 10.0.1.10", "EIP eipalloc-0c", "on eni-c\n"} {
		if !strings.Contains(o.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, o.stdout)
		}
	}
	hanatctl(t, "--socket", sock, "failover", "--table", "rtb-0a").want(t, 0)
	hanatctl(t, "--socket", sock, "takeover").want(t, 0)
	hanatctl(t, "--socket", sock, "maintenance", "on").want(t, 0)
	hanatctl(t, "--socket", sock, "maintenance", "off").want(t, 0)
	if got := strings.Join(b.got, "|"); got != "failover rtb-0a|takeover |maintenance on|maintenance off" {
		t.Errorf("backend saw %q", got)
	}
	hanatctl(t, "--socket", sock, "maintenance").want(t, exitUsage)
	hanatctl(t, "--socket", sock, "maintenance", "maybe").want(t, exitUsage)
	hanatctl(t, "--socket", sock, "failover", "--table", "subnet-1").want(t, exitUsage)

	// An unprivileged caller's failover is refused (exit 3).
	ro := startNoCredDaemon(t, b)
	o = hanatctl(t, "--socket", ro, "failover")
	o.want(t, exitForbidden)
	if !strings.Contains(o.stderr, "permission denied") {
		t.Errorf("refused failover: %s", o.stderr)
	}
}

// handoverBackend plays a node handing its tables over: once maintenance
// is on, the peer owns rtb-0a after takeAfter more status calls.
type handoverBackend struct {
	fakeBackend
	mu        sync.Mutex
	ha        *admin.HAStatus // nil: HA off
	maint     bool
	polls     int
	takeAfter int // -1: never
	peerDies  bool
	calls     []string
}

func (b *handoverBackend) Status(ctx context.Context) (admin.Status, error) {
	st, err := b.fakeBackend.Status(ctx)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ha == nil {
		st.HA = &admin.HAStatus{Enabled: false, Mode: "off", Message: "ha.enabled is false"}
		return st, err
	}
	h := *b.ha
	h.Tables = slices.Clone(b.ha.Tables)
	if b.maint {
		b.polls++
		if b.peerDies && b.polls > 2 {
			h.Peer.State, h.Peer.Healthy = "dead", false
		}
		if b.takeAfter >= 0 && b.polls > b.takeAfter {
			h.Tables[0].Owner, h.Tables[0].OwnerNode, h.Tables[0].Claim = "eni-c", "peer", "none"
		}
	}
	st.HA = &h
	return st, err
}

func (b *handoverBackend) Failover(context.Context, admin.HARequest) (admin.HAResponse, error) {
	return admin.HAResponse{}, nil
}

func (b *handoverBackend) Takeover(context.Context, admin.HARequest) (admin.HAResponse, error) {
	return admin.HAResponse{}, nil
}

func (b *handoverBackend) Maintenance(ctx context.Context, req admin.MaintenanceRequest) (admin.HAResponse, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, fmt.Sprintf("maintenance %v", req.On))
	if b.ha == nil {
		return admin.HAResponse{}, fmt.Errorf("%w: HA is not running", admin.ErrConflict)
	}
	b.maint = req.On
	return admin.HAResponse{Message: "maintenance on"}, nil
}

func pairStatus(peerState string, healthy bool) *admin.HAStatus {
	return &admin.HAStatus{Enabled: true, Mode: "pair", NodeID: "i-a", ENI: "eni-a", Healthy: true,
		Peer: admin.HAPeer{Address: "10.0.2.10:7946", NodeID: "i-c", ENI: "eni-c", State: peerState, Healthy: healthy},
		Tables: []admin.HATable{
			{ID: "rtb-0a", Home: true, Owner: "eni-a", OwnerNode: "self", Desired: "self", Claim: "held"},
			{ID: "rtb-0c", Owner: "eni-c", OwnerNode: "peer", Desired: "peer", Claim: "none"},
		}}
}

func TestMaintenanceWait(t *testing.T) {
	for _, tc := range []struct {
		name     string
		b        *handoverBackend
		args     []string
		code     int
		stdout   string
		stderr   string
		posted   bool
		maxTaken time.Duration
	}{
		{name: "handed over", b: &handoverBackend{ha: pairStatus("alive", true), takeAfter: 3},
			args: []string{"maintenance", "on", "--wait"}, code: 0, stdout: "the peer owns every route table (rtb-0a)", posted: true},
		{name: "flag before the argument", b: &handoverBackend{ha: pairStatus("alive", true), takeAfter: 0},
			args: []string{"maintenance", "--wait=3s", "on"}, code: 0, stdout: "the peer owns every route table", posted: true},
		{name: "HA off returns at once", b: &handoverBackend{},
			args: []string{"maintenance", "on", "--wait=10s"}, code: 0, stdout: "HA is off (ha.enabled is false)", maxTaken: 2 * time.Second},
		{name: "single instance returns at once", b: &handoverBackend{ha: func() *admin.HAStatus {
			h := pairStatus("none", false)
			h.Mode = "single"
			return h
		}()}, args: []string{"maintenance", "on", "--wait"}, code: 0, stdout: "single instance", maxTaken: 2 * time.Second},
		{name: "dead peer: exit 4 at once", b: &handoverBackend{ha: pairStatus("dead", false), takeAfter: -1},
			args: []string{"maintenance", "on", "--wait=1m"}, code: exitNoPeer, stderr: "no healthy peer", maxTaken: 2 * time.Second},
		{name: "peer in maintenance: exit 4", b: &handoverBackend{ha: func() *admin.HAStatus {
			h := pairStatus("alive", true)
			h.Peer.Maintenance = true
			return h
		}(), takeAfter: -1}, args: []string{"maintenance", "on", "--wait=1m"}, code: exitNoPeer, stderr: "in maintenance", maxTaken: 2 * time.Second},
		{name: "peer dies while waiting: exit 4", b: &handoverBackend{ha: pairStatus("alive", true), takeAfter: -1, peerDies: true},
			args: []string{"maintenance", "on", "--wait=1m"}, code: exitNoPeer, stderr: "rtb-0a", posted: true, maxTaken: 5 * time.Second},
		{name: "wait expires: exit 5", b: &handoverBackend{ha: pairStatus("alive", true), takeAfter: -1},
			args: []string{"maintenance", "on", "--wait=400ms"}, code: exitWaitExpired, stderr: "still on this node: rtb-0a", posted: true, maxTaken: 5 * time.Second},
		{name: "off with wait", b: &handoverBackend{}, args: []string{"maintenance", "off", "--wait"}, code: exitUsage},
		{name: "bad duration", b: &handoverBackend{}, args: []string{"maintenance", "on", "--wait=soon"}, code: exitUsage},
		{name: "unbounded duration", b: &handoverBackend{}, args: []string{"maintenance", "on", "--wait=1h"}, code: exitUsage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := startDaemon(t, tc.b)
			start := time.Now()
			o := hanatctl(t, append([]string{"--socket", sock}, tc.args...)...)
			took := time.Since(start)
			o.want(t, tc.code)
			if !strings.Contains(o.stdout, tc.stdout) || !strings.Contains(o.stderr, tc.stderr) {
				t.Errorf("stdout %q (want %q), stderr %q (want %q)", o.stdout, tc.stdout, o.stderr, tc.stderr)
			}
			tc.b.mu.Lock()
			posted := len(tc.b.calls) > 0
			tc.b.mu.Unlock()
			if posted != tc.posted {
				t.Errorf("maintenance posted: %v, want %v", posted, tc.posted)
			}
			if tc.maxTaken > 0 && took > tc.maxTaken {
				t.Errorf("took %v, want well under %v", took, tc.maxTaken)
			}
		})
	}
}

package main

import (
	"context"
	"strings"
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
		Counters: map[string]uint64{"route_writes": 3, "heartbeats_dropped_replay": 1},
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
		"rtb-0a", "home", "peer eni-c", "operator failover", "route_writes=3", "heartbeats_dropped_replay=1"} {
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

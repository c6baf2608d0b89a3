package ha

import (
	"context"
	"errors"
	"net"
	"testing"
)

// TestHealthPublicAway: a node whose public address is lent to the peer
// skips the upstream check (it cannot pass), still checks its datapath,
// and checks upstream again once the address is back.
func TestHealthPublicAway(t *testing.T) {
	away := true
	datapath := true
	h := &HealthChecker{
		Datapath:   func() (bool, string) { return datapath, "table missing" },
		Targets:    []string{"198.51.100.1:443"},
		PublicAway: func() bool { return away },
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return nil, errors.New("i/o timeout")
		},
		FailAfter: 1, RecoverAfter: 1,
	}
	if ok, why := h.probe(context.Background()); !ok {
		t.Errorf("address lent to the peer: unhealthy (%s), want the upstream check skipped", why)
	}
	datapath = false
	if ok, _ := h.probe(context.Background()); ok {
		t.Error("datapath down counts as healthy while the address is away")
	}
	datapath, away = true, false
	if ok, _ := h.probe(context.Background()); ok {
		t.Error("upstream failing with the address back counts as healthy")
	}
}

package admin

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
)

type fakeHABackend struct {
	*fakeBackend
	mu    sync.Mutex
	calls []string
}

func (b *fakeHABackend) record(s string) {
	b.mu.Lock()
	b.calls = append(b.calls, s)
	b.mu.Unlock()
}

func (b *fakeHABackend) Failover(ctx context.Context, req HARequest) (HAResponse, error) {
	b.record(fmt.Sprintf("failover %v", req.Tables))
	if len(req.Tables) == 1 && req.Tables[0] == "rtb-refused" {
		return HAResponse{}, fmt.Errorf("failover: %w: the peer is dead", ErrConflict)
	}
	return HAResponse{Tables: req.Tables, Message: "handed over"}, nil
}

func (b *fakeHABackend) Takeover(ctx context.Context, req HARequest) (HAResponse, error) {
	b.record(fmt.Sprintf("takeover %v", req.Tables))
	return HAResponse{Message: "asked"}, nil
}

func (b *fakeHABackend) Maintenance(ctx context.Context, req MaintenanceRequest) (HAResponse, error) {
	b.record(fmt.Sprintf("maintenance %v", req.On))
	return HAResponse{Message: "ok"}, nil
}

func TestHARoutes(t *testing.T) {
	b := &fakeHABackend{fakeBackend: newFakeBackend()}
	ts, peer, _ := newHandlerServer(t, b)

	r := call(t, ts, "POST", "/v1/failover", `{"tables":["rtb-1"]}`)
	var resp HAResponse
	if r.code != 200 || json.Unmarshal(r.body, &resp) != nil || resp.Message != "handed over" || len(resp.Tables) != 1 {
		t.Fatalf("failover: %d %s", r.code, r.body)
	}
	if r := call(t, ts, "POST", "/v1/takeover", ""); r.code != 200 || !strings.Contains(string(r.body), `"tables":[]`) {
		t.Errorf("takeover: %d %s", r.code, r.body)
	}
	if r := call(t, ts, "POST", "/v1/maintenance", `{"on":true}`); r.code != 200 {
		t.Errorf("maintenance: %d %s", r.code, r.body)
	}
	if r := call(t, ts, "POST", "/v1/failover", `{"tables":["rtb-refused"]}`); r.code != 409 || !strings.Contains(r.errMsg(t), "peer is dead") {
		t.Errorf("refused failover: %d %s, want 409", r.code, r.body)
	}
	if r := call(t, ts, "POST", "/v1/maintenance", `{"on":"yes"}`); r.code != 400 {
		t.Errorf("bad maintenance body: %d, want 400", r.code)
	}
	if r := call(t, ts, "POST", "/v1/failover", `{"tablez":[]}`); r.code != 400 {
		t.Errorf("unknown field: %d, want 400", r.code)
	}

	// Unprivileged callers are refused before the backend sees anything.
	b.mu.Lock()
	n := len(b.calls)
	b.mu.Unlock()
	peer.set(&PeerCred{PID: 4242, UID: 1000, GID: 1000})
	for _, path := range []string{"/v1/failover", "/v1/takeover", "/v1/maintenance"} {
		if r := call(t, ts, "POST", path, "{}"); r.code != 403 {
			t.Errorf("unprivileged POST %s: %d, want 403", path, r.code)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.calls) != n {
		t.Errorf("backend called by an unprivileged peer: %v", b.calls[n:])
	}
}

func TestHANotImplemented(t *testing.T) {
	ts, _, _ := newHandlerServer(t, newFakeBackend())
	if r := call(t, ts, "POST", "/v1/failover", "{}"); r.code != 501 {
		t.Errorf("failover without an HA backend: %d, want 501", r.code)
	}
}

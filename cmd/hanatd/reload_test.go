package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/config"
)

// reloadBase is the running configuration of the reload tests.
const reloadBase = `private_cidrs: [10.0.11.0/24]
log: {level: info, format: text}
`

// reloadDaemon is a daemon with the config file reloadBase and a stand-in
// for the datapath reconcile that counts its calls. Its main loop serves
// admin reloads, as Run's does.
type reloadDaemon struct {
	d       *daemon
	path    string
	logs    *bytes.Buffer // written by the goroutine calling reload
	applies int           // guarded by mu
	mu      sync.Mutex
}

func newReloadDaemon(t *testing.T) *reloadDaemon {
	return newReloadDaemonLog(t, &bytes.Buffer{})
}

// newReloadDaemonLog logs to logs; reloads through the admin socket log
// from other goroutines, which a bytes.Buffer does not allow: pass a
// fresh one only when the test calls reload itself.
func newReloadDaemonLog(t *testing.T, logs *bytes.Buffer) *reloadDaemon {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hanat.yaml")
	if err := os.WriteFile(path, []byte(reloadBase), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	r := &reloadDaemon{path: path, logs: logs}
	level := new(slog.LevelVar)
	var w io.Writer = logs
	if logs == nil {
		w = io.Discard
	}
	log := newLogger(cfg.Log, level, w)
	r.d = &daemon{log: log, logLevel: level, configPath: path, configExplicit: true, reloads: make(chan reloadRequest)}
	r.d.state.cfg = cfg
	r.d.apply = func(context.Context) error {
		r.mu.Lock()
		r.applies++
		r.mu.Unlock()
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case req := <-r.d.reloads:
				changed, err := r.d.reload(ctx)
				req.reply <- reloadResult{changed: changed, err: err}
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func (r *reloadDaemon) applied() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.applies
}

// effective is what /v1/config serves.
func (r *reloadDaemon) effective(t *testing.T) map[string]any {
	t.Helper()
	raw, err := (&backend{d: r.d}).Config(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestReloadRefusesRestartKeys: one case per key group. A file that
// changes a key a reload cannot apply (ha, cloud, admin, metrics,
// log.format) is refused as a whole, naming the key: nothing is applied
// (no reconcile, not even of the datapath change that comes with it),
// /v1/config keeps what is in force, and the log says so. Datapath keys
// and log.level are applied.
func TestReloadRefusesRestartKeys(t *testing.T) {
	cases := []struct {
		name, extra string
		restart     []string // keys named in the refusal; nil: applied
	}{
		{"ha", "ha: {peer: 10.0.2.10, hold_down: 5s}\n", []string{"ha.hold_down", "ha.peer"}},
		{"cloud", "cloud: {ec2_endpoint: http://127.0.0.1:1}\n", []string{"cloud.ec2_endpoint"}},
		{"admin", "admin: {socket: /run/hanat/other.sock}\n", []string{"admin.socket"}},
		{"metrics", "metrics: {listen: 127.0.0.1:9470, cloudwatch: {enabled: true}}\n", []string{"metrics.cloudwatch.enabled", "metrics.listen"}},
		{"log format", "log: {level: info, format: json}\n", []string{"log.format"}},
		{"ha with a datapath change", "snat: {ports: 2000-3000}\nha: {enabled: false}\n", []string{"ha.enabled"}},
		{"datapath", "snat: {ports: 2000-3000}\nfastpath: {enabled: false}\nport_forwards: [{protocol: tcp, port: 2222, to: 10.0.11.5:22}]\n", nil},
		{"log level", "log: {level: debug, format: text}\n", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newReloadDaemon(t)
			before := r.effective(t)
			body := reloadBase
			if strings.HasPrefix(tc.extra, "log:") {
				body = "private_cidrs: [10.0.11.0/24]\n"
			}
			if err := os.WriteFile(r.path, []byte(body+tc.extra), 0o600); err != nil {
				t.Fatal(err)
			}
			changed, err := r.d.reload(context.Background())
			after := r.effective(t)
			if tc.restart == nil {
				if err != nil || !changed {
					t.Fatalf("reload = %v, %v; want applied", changed, err)
				}
				if r.applied() != 1 {
					t.Errorf("datapath reconciled %d times, want 1", r.applied())
				}
				if equalJSON(before, after) {
					t.Errorf("/v1/config still shows the old configuration")
				}
				return
			}
			var re *restartError
			if !errors.As(err, &re) || !errors.Is(err, admin.ErrRestartNeeded) {
				t.Fatalf("reload error = %v, want a refusal naming %v", err, tc.restart)
			}
			if strings.Join(re.keys, ",") != strings.Join(tc.restart, ",") {
				t.Errorf("refusal names %v, want %v", re.keys, tc.restart)
			}
			want := strings.Join(tc.restart, ", ") + ": need a restart (systemctl restart hanatd); nothing was applied"
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
			if changed || r.applied() != 0 {
				t.Errorf("refused reload: changed=%v, reconciled %d times; want nothing applied", changed, r.applied())
			}
			if !equalJSON(before, after) {
				t.Errorf("/v1/config changed on a refused reload:\nbefore %v\nafter  %v", before, after)
			}
			if logs := r.logs.String(); !strings.Contains(logs, "reload refused") || !strings.Contains(logs, want) {
				t.Errorf("log does not name the keys:\n%s", logs)
			}
		})
	}
}

// TestReloadLogLevelLive: log.level is applied for real on reload.
func TestReloadLogLevelLive(t *testing.T) {
	r := newReloadDaemon(t)
	ctx := context.Background()
	if r.d.log.Enabled(ctx, slog.LevelDebug) {
		t.Fatal("debug enabled before the reload")
	}
	if err := os.WriteFile(r.path, []byte("private_cidrs: [10.0.11.0/24]\nlog: {level: debug}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := r.d.reload(ctx); err != nil {
		t.Fatal(err)
	}
	if !r.d.log.Enabled(ctx, slog.LevelDebug) {
		t.Error("log.level: debug reloaded, but the logger still drops debug records")
	}
}

// TestReloadOverAdminSocket: hanatctl's view. A refused reload is a 409
// whose message names the keys; an applied one is a 200 "changed".
func TestReloadOverAdminSocket(t *testing.T) {
	g, err := user.LookupGroupId(strconv.Itoa(os.Getegid()))
	if err != nil {
		t.Skipf("no name for gid %d: %v", os.Getegid(), err)
	}
	r := newReloadDaemonLog(t, nil)
	sock := filepath.Join(t.TempDir(), "admin.sock")
	srv := admin.NewServer(r.d.log, &backend{d: r.d}, admin.ServerOptions{SocketPath: sock, Group: g.Name, Version: "test"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() { cancel(); <-done }()
	c := admin.NewClient(sock)
	call := func() (admin.ReloadResponse, error) {
		var resp admin.ReloadResponse
		var err error
		for deadline := time.Now().Add(10 * time.Second); ; {
			cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
			resp, err = c.Reload(cctx, admin.ReloadRequest{})
			ccancel()
			var ae *admin.APIError
			if err == nil || errors.As(err, &ae) || time.Now().After(deadline) {
				return resp, err
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := os.WriteFile(r.path, []byte(reloadBase+"ha: {peer: 10.0.2.10}\ncloud: {discover: false}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = call()
	var ae *admin.APIError
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusConflict ||
		!strings.Contains(ae.Message, "cloud.discover, ha.peer: need a restart") {
		t.Fatalf("refused reload over the socket: %v, want 409 naming cloud.discover, ha.peer", err)
	}
	if err := os.WriteFile(r.path, []byte(reloadBase+"snat: {ports: 2000-3000}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := call()
	if err != nil || !resp.Changed {
		t.Fatalf("datapath reload over the socket: %+v, %v", resp, err)
	}
}

func equalJSON(a, b map[string]any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return bytes.Equal(ja, jb)
}

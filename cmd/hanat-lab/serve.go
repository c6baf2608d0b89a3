package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hanat/hanat/internal/vpcsim"
	"github.com/hanat/hanat/internal/vpcsim/ec2sim"
)

// The control endpoint: HTTP over the unix socket <run dir>/control.sock,
// JSON in and out, errors as {"error": "…"}.
//
//	GET  /v1/status                      vpcsim.Status
//	POST /v1/instances/{name}/stop|crash|start
//	POST /v1/faults/api                  apiFaultsRequest
//	POST /v1/faults/partition            partitionRequest
//	POST /v1/faults/heal                 partitionRequest (empty A and B: heal all)

type apiFaultsRequest struct {
	Latency      string   `json:"latency"`
	ErrorRate    float64  `json:"error_rate"`
	ThrottleRate float64  `json:"throttle_rate"`
	Actions      []string `json:"actions,omitempty"`
	Seed         int64    `json:"seed"`
}

type partitionRequest struct {
	A     string `json:"a"`
	B     string `json:"b"`
	Proto string `json:"proto,omitempty"`
	Port  uint16 `json:"port,omitempty"`
}

func socketPath(prefix string) string { return filepath.Join(labDir(prefix), "control.sock") }

// cmdServe is the background process started by `up`: it owns the lab
// until SIGTERM (from `down`) and closes it on the way out.
func cmdServe(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	prefix := fs.String("prefix", "", "lab prefix")
	nats := fs.Int("nat-instances", 0, "NAT instances")
	point := fs.Bool("point-routes", false, "point private route tables at NATs")
	spare := fs.Int("spare-eips", 0, "spare EIPs")
	region := fs.String("region", "", "region")
	gwlb := fs.Bool("gwlb", false, "add a GWLB with the NATs as targets, private routes at its endpoints")
	var gf gwlbFlags
	gf.register(fs)
	if _, _, err := parseInterleaved(fs, args); err != nil {
		return err
	}
	gcfg, err := gf.config()
	if err != nil {
		return usagef("%v", err)
	}
	if err := vpcsim.ValidatePrefix(*prefix); err != nil {
		return usagef("%v", err)
	}
	dir := labDir(*prefix)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o600); err != nil {
		return fmt.Errorf("write pid file: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	opts := vpcsim.Options{Prefix: *prefix, NATInstances: *nats,
		PointPrivateRoutesAtNATs: *point, SpareEIPs: *spare, Region: *region}
	if *gwlb {
		opts.GWLB = &vpcsim.GWLBOptions{Config: gcfg, PointPrivateRoutes: true, RegisterNATs: true}
	}
	lab, err := vpcsim.Up(ctx, log, opts)
	if err != nil {
		return err
	}
	defer func() {
		if err := lab.Close(context.Background()); err != nil {
			log.Error("close lab", "err", err)
		}
	}()
	sock := socketPath(*prefix)
	_ = os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	if err := os.Chmod(sock, 0o600); err != nil {
		_ = ln.Close()
		return fmt.Errorf("chmod %s: %w", sock, err)
	}
	srv := &http.Server{Handler: controlHandler(lab, log), ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("serving", "control", sock, "ec2_endpoint", lab.EC2Endpoint())
	select {
	case <-ctx.Done():
	case err = <-errc:
		log.Error("control server stopped", "err", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = srv.Shutdown(sctx)
	_ = os.Remove(sock)
	log.Info("shutting down")
	return nil
}

func controlHandler(lab *vpcsim.Lab, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, v any, err error) {
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			log.Warn("control request failed", "err", err)
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
			return
		}
		if v == nil {
			v = map[string]bool{"ok": true}
		}
		_ = json.NewEncoder(w).Encode(v)
	}
	decode := func(r *http.Request, v any) error {
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("bad request body: %w", err)
		}
		return nil
	}
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		reply(w, lab.Status(), nil)
	})
	mux.HandleFunc("POST /v1/instances/{name}/{verb}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		switch r.PathValue("verb") {
		case "stop":
			// Stopped, but the shutdown hooks failed (e.g. no healthy
			// peer to hand the route tables to): a warning, not a failure.
			var se *vpcsim.ShutdownError
			if err := lab.StopInstance(r.Context(), name); errors.As(err, &se) {
				reply(w, stopReply{OK: true, Warning: se.Error()}, nil)
			} else {
				reply(w, nil, err)
			}
		case "crash":
			reply(w, nil, lab.CrashInstance(r.Context(), name))
		case "start":
			reply(w, nil, lab.StartInstance(r.Context(), name))
		case "register":
			reply(w, nil, lab.RegisterTarget(name))
		case "deregister":
			reply(w, nil, lab.DeregisterTarget(name))
		default:
			reply(w, nil, fmt.Errorf("unknown verb %q (want stop, crash, start, register or deregister)", r.PathValue("verb")))
		}
	})
	mux.HandleFunc("POST /v1/faults/api", func(w http.ResponseWriter, r *http.Request) {
		var req apiFaultsRequest
		if err := decode(r, &req); err != nil {
			reply(w, nil, err)
			return
		}
		f := ec2sim.Faults{ErrorRate: req.ErrorRate, ThrottleRate: req.ThrottleRate, Actions: req.Actions, Seed: req.Seed}
		if req.Latency != "" {
			d, err := time.ParseDuration(req.Latency)
			if err != nil {
				reply(w, nil, fmt.Errorf("latency %q: %w", req.Latency, err))
				return
			}
			f.Latency = d
		}
		lab.SetAPIFaults(f)
		reply(w, nil, nil)
	})
	mux.HandleFunc("POST /v1/faults/{kind}", func(w http.ResponseWriter, r *http.Request) {
		var req partitionRequest
		if err := decode(r, &req); err != nil {
			reply(w, nil, err)
			return
		}
		switch kind := r.PathValue("kind"); {
		case kind == "partition":
			reply(w, nil, lab.Partition(r.Context(), req.A, req.B, req.Proto, req.Port))
		case kind == "heal" && req.A == "" && req.B == "":
			reply(w, nil, lab.HealAll(r.Context()))
		case kind == "heal":
			reply(w, nil, lab.Heal(r.Context(), req.A, req.B, req.Proto, req.Port))
		default:
			reply(w, nil, fmt.Errorf("unknown fault %q", kind))
		}
	})
	return mux
}

// client talks to a lab's control socket.
type client struct {
	prefix string
	hc     *http.Client
}

func newClient(prefix string) *client {
	sock := socketPath(prefix)
	return &client{prefix: prefix, hc: &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sock)
		}},
	}}
}

func (c *client) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://hanat-lab"+path, rd)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("lab %s: control socket %s: %w (is it up?)", c.prefix, socketPath(c.prefix), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("lab %s: %s %s: read reply: %w", c.prefix, method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return fmt.Errorf("lab %s: %s", c.prefix, e.Error)
		}
		return fmt.Errorf("lab %s: %s %s: %s", c.prefix, method, path, resp.Status)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("lab %s: %s %s: decode reply: %w", c.prefix, method, path, err)
		}
	}
	return nil
}

func (c *client) status(ctx context.Context) (vpcsim.Status, error) {
	var st vpcsim.Status
	err := c.do(ctx, http.MethodGet, "/v1/status", nil, &st)
	return st, err
}

// stopReply answers POST /v1/instances/{name}/stop.
type stopReply struct {
	OK      bool   `json:"ok"`
	Warning string `json:"warning,omitempty"`
}

func (c *client) post(ctx context.Context, path string, body any) error {
	return c.do(ctx, http.MethodPost, path, body, nil)
}

// isServe reports whether pid is a `hanat-lab serve --prefix prefix`.
func isServe(pid int, prefix string) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return false
	}
	argv := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	if len(argv) < 4 || argv[1] != "serve" || !strings.Contains(filepath.Base(argv[0]), "hanat-lab") {
		return false
	}
	i := slices.Index(argv, "--prefix")
	return i > 0 && i+1 < len(argv) && argv[i+1] == prefix
}

func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	// A zombie is not alive.
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

// servePID returns the pid of the lab's live serve process, if any: the one
// in the pid file, else one found by its command line.
func servePID(prefix string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(labDir(prefix), "pid"))
	if err == nil {
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err == nil && pid > 1 && alive(pid) && isServe(pid, prefix) {
			return pid, true
		}
	}
	if pids := findServes(prefix); len(pids) > 0 {
		return pids[0], true
	}
	return 0, false
}

// findServes returns the live `hanat-lab serve --prefix prefix` processes.
func findServes(prefix string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if isServe(pid, prefix) && alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killServe SIGKILLs every serve process of the prefix (found by its
// command line, so also one whose pid file was never written) and waits
// for them to go (bounded).
func killServe(prefix string) {
	pids := findServes(prefix)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	for range 100 {
		if !slices.ContainsFunc(pids, alive) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/internal/deptest"
	"github.com/hanat/hanat/internal/testtool"
)

type fakeBackend struct {
	mu      sync.Mutex
	err     error
	queries []admin.FlowsQuery
	reloads int
	doctor  admin.DoctorReport
}

func (b *fakeBackend) failure() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

func (b *fakeBackend) Status(ctx context.Context) (admin.Status, error) {
	if err := b.failure(); err != nil {
		return admin.Status{}, err
	}
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	return admin.Status{
		Version: "0.1.0-test", Node: "nat-a", StartedAt: t0, ConfigLoadedAt: t0, ConfigPath: "/etc/hanat/hanat.yaml", Ready: true,
		NAT: admin.NATStatus{
			OutsideInterface: "out0", PrivateCIDRs: []string{"10.0.11.0/24", "10.0.12.0/24"},
			SNATAddrs: []string{"198.51.100.2"}, Ports: "1024-65535",
			PortForwards: []admin.PortForward{{Name: "ssh", Protocol: "tcp", Port: 2222, To: "10.0.11.10:22"}},
		},
		Datapath: admin.DatapathStatus{
			Table: "inet hanat", Present: true, LastApplied: t0, Fastpath: "off",
			Counters: map[string]admin.Counter{"forward_drop": {Packets: 7, Bytes: 420}},
		},
		Sysctls: []admin.Sysctl{
			{Key: "net.ipv4.ip_forward", Want: "1", Now: "1", Applied: true},
			{Key: "net.ipv4.conf.all.send_redirects", Want: "0", Now: "1", Note: "read-only\tin a\x1b[31m container"},
		},
		Connections: admin.Connections{Active: 3, TCP: 2, UDP: 1, TCPEstablished: 1},
		Cloud:       admin.CloudStatus{Message: "no IMDS: running from config only"},
	}, nil
}

func (b *fakeBackend) Flows(ctx context.Context, q admin.FlowsQuery) (admin.FlowsResponse, error) {
	if err := b.failure(); err != nil {
		return admin.FlowsResponse{}, err
	}
	b.mu.Lock()
	b.queries = append(b.queries, q)
	b.mu.Unlock()
	all := []admin.Flow{
		{ID: 1, Protocol: "tcp", State: "ESTABLISHED", Src: "10.0.11.10:40000", Dst: "198.51.100.100:80", NATSrc: "198.51.100.2:40000", TimeoutSeconds: 349, Assured: true, PacketsOut: 5, BytesOut: 400, PacketsIn: 4, BytesIn: 5000},
		{ID: 2, Protocol: "udp", Src: "10.0.11.10:5353", Dst: "198.51.100.100:53", NATSrc: "198.51.100.2:1024", TimeoutSeconds: 29, PacketsOut: 1, BytesOut: 60, PacketsIn: 1, BytesIn: 90, Offloaded: true},
	}
	var fr admin.FlowsResponse
	for _, f := range all {
		if q.Protocol != "" && f.Protocol != q.Protocol {
			continue
		}
		fr.Total++
		if q.Limit > 0 && len(fr.Flows) >= q.Limit {
			fr.Truncated = true
			continue
		}
		fr.Flows = append(fr.Flows, f)
	}
	return fr, nil
}

func (b *fakeBackend) Config(ctx context.Context) (json.RawMessage, error) {
	if err := b.failure(); err != nil {
		return nil, err
	}
	return json.RawMessage(`{"interfaces":{"outside":"out0"},"private_cidrs":["10.0.11.0/24"]}`), nil
}

func (b *fakeBackend) Reload(ctx context.Context, req admin.ReloadRequest) (admin.ReloadResponse, error) {
	if err := b.failure(); err != nil {
		return admin.ReloadResponse{}, err
	}
	b.mu.Lock()
	b.reloads++
	b.mu.Unlock()
	return admin.ReloadResponse{Changed: false, Message: "configuration unchanged; datapath reconciled"}, nil
}

func (b *fakeBackend) Doctor(ctx context.Context) (admin.DoctorReport, error) {
	if err := b.failure(); err != nil {
		return admin.DoctorReport{}, err
	}
	return b.doctor, nil
}

// startDaemon runs a real admin server on a socket in a temp dir, with the
// test process's own group as the admin group (so reload is allowed).
func startDaemon(t *testing.T, b admin.Backend) string {
	t.Helper()
	g, err := user.LookupGroupId(strconv.Itoa(os.Getegid()))
	if err != nil {
		t.Skipf("no name for gid %d: %v", os.Getegid(), err)
	}
	path := filepath.Join(t.TempDir(), "admin.sock")
	s := admin.NewServer(nil, b, admin.ServerOptions{SocketPath: path, Group: g.Name, Version: "0.1.0-test"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("admin server did not stop")
		}
	})
	waitReady(t, path)
	return path
}

func waitReady(t *testing.T, path string) {
	t.Helper()
	c := admin.NewClient(path)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Config(ctx)
		cancel()
		var ae *admin.APIError
		if err == nil || errors.As(err, &ae) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("admin socket %s not answering: %v", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startNoCredDaemon serves the admin handler without peer credentials:
// reads work, every write is refused with 403.
func startNoCredDaemon(t *testing.T, b admin.Backend) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "admin.sock")
	serveNoCred(t, b, path)
	return path
}

// serveNoCred serves the admin API on a socket at path with an admin group
// nobody is in, until t ends.
func serveNoCred(t *testing.T, b admin.Backend, path string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: admin.NewServer(nil, b, admin.ServerOptions{Group: "hnt-test-no-such-group"}).Handler(), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	waitReady(t, path)
}

type out struct {
	code           int
	stdout, stderr string
}

func hanatctl(t *testing.T, args ...string) out {
	t.Helper()
	var so, se bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := run(ctx, args, &so, &se)
	return out{code, so.String(), se.String()}
}

func (o out) want(t *testing.T, code int) {
	t.Helper()
	if o.code != code {
		t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", o.code, code, o.stdout, o.stderr)
	}
}

func TestStatus(t *testing.T) {
	sock := startDaemon(t, &fakeBackend{})
	o := hanatctl(t, "--socket", sock, "status")
	o.want(t, 0)
	for _, want := range []string{
		"hanatd 0.1.0-test on nat-a: ready",
		"NAT", "out0", "10.0.11.0/24, 10.0.12.0/24", "198.51.100.2", "1024-65535", "tcp/2222 -> 10.0.11.10:22 (ssh)",
		"Datapath", "inet hanat (present)", "forward_drop", "420",
		"Sysctls", "net.ipv4.ip_forward", "send_redirects",
		"Connections", "2 (1 established)",
		"/etc/hanat/hanat.yaml", "no IMDS",
	} {
		if !strings.Contains(o.stdout, want) {
			t.Errorf("status output lacks %q:\n%s", want, o.stdout)
		}
	}
	if strings.Contains(o.stdout, "\x1b") {
		t.Errorf("control characters from the daemon reached the terminal:\n%q", o.stdout)
	}
	// Aligned: the values of the NAT section start in one column.
	col := -1
	for _, line := range strings.Split(o.stdout, "\n") {
		for _, key := range []string{"outside interface:", "private CIDRs:", "SNAT addresses:"} {
			if strings.HasPrefix(line, "  "+key) {
				rest := line[len("  "+key):]
				c := len(line) - len(strings.TrimLeft(rest, " "))
				if col >= 0 && c != col {
					t.Errorf("NAT values not aligned:\n%s", o.stdout)
				}
				col = c
			}
		}
	}

	// Flags after the command, and the socket from the environment.
	t.Setenv("HANAT_SOCKET", sock)
	o = hanatctl(t, "status", "--json")
	o.want(t, 0)
	var st admin.Status
	if err := json.Unmarshal([]byte(o.stdout), &st); err != nil {
		t.Fatalf("--json output is not a Status: %v\n%s", err, o.stdout)
	}
	if st.NAT.OutsideInterface != "out0" || !strings.Contains(o.stdout, "\n  \"") {
		t.Errorf("--json: %+v\n%s", st, o.stdout)
	}
}

func TestFlows(t *testing.T) {
	b := &fakeBackend{}
	sock := startDaemon(t, b)
	o := hanatctl(t, "--socket", sock, "flows")
	o.want(t, 0)
	lines := strings.Split(strings.TrimSpace(o.stdout), "\n")
	if len(lines) != 4 {
		t.Fatalf("want header, 2 flows and a footer:\n%s", o.stdout)
	}
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != "PROTO STATE SRC DST NAT-SRC PKTS-OUT BYTES-OUT PKTS-IN BYTES-IN TIMEOUT OFFLOADED" {
		t.Errorf("header %q", lines[0])
	}
	if got := strings.Join(strings.Fields(lines[1]), " "); got != "tcp ESTABLISHED 10.0.11.10:40000 198.51.100.100:80 198.51.100.2:40000 5 400 4 5000 349s no" {
		t.Errorf("tcp row %q", got)
	}
	if got := strings.Join(strings.Fields(lines[2]), " "); got != "udp - 10.0.11.10:5353 198.51.100.100:53 198.51.100.2:1024 1 60 1 90 29s yes" {
		t.Errorf("udp row %q", got)
	}
	if strings.Index(lines[1], "10.0.11.10") != strings.Index(lines[0], "SRC") {
		t.Errorf("columns not aligned:\n%s", o.stdout)
	}
	if lines[3] != "2 flows" {
		t.Errorf("footer %q", lines[3])
	}

	o = hanatctl(t, "--socket", sock, "flows", "--limit", "1", "--protocol", "TCP", "--src", "10.0.11.10")
	o.want(t, 0)
	if !strings.Contains(o.stdout, "ESTABLISHED") || strings.Contains(o.stdout, "udp") {
		t.Errorf("filtered flows:\n%s", o.stdout)
	}
	b.mu.Lock()
	q := b.queries[len(b.queries)-1]
	b.mu.Unlock()
	if q != (admin.FlowsQuery{Limit: 1, Protocol: "tcp", Src: "10.0.11.10"}) {
		t.Errorf("query sent: %+v", q)
	}
	o = hanatctl(t, "--socket", sock, "flows", "--limit", "1")
	o.want(t, 0)
	if !strings.Contains(o.stdout, "showing 1 of 2 flows") {
		t.Errorf("truncation not reported:\n%s", o.stdout)
	}

	o = hanatctl(t, "--socket", sock, "--json", "flows", "--protocol", "udp")
	o.want(t, 0)
	var fr admin.FlowsResponse
	if err := json.Unmarshal([]byte(o.stdout), &fr); err != nil || len(fr.Flows) != 1 || fr.Flows[0].BytesIn != 90 {
		t.Errorf("--json flows: %+v %v\n%s", fr, err, o.stdout)
	}
}

func TestConfigAndReload(t *testing.T) {
	b := &fakeBackend{}
	sock := startDaemon(t, b)
	o := hanatctl(t, "--socket", sock, "config")
	o.want(t, 0)
	if !json.Valid([]byte(o.stdout)) || !strings.Contains(o.stdout, `"outside": "out0"`) {
		t.Errorf("config output:\n%s", o.stdout)
	}
	o = hanatctl(t, "--socket", sock, "reload")
	o.want(t, 0)
	if o.stdout != "reload: configuration unchanged; datapath reconciled\n" {
		t.Errorf("reload output %q", o.stdout)
	}
	o = hanatctl(t, "--socket", sock, "reload", "--json")
	o.want(t, 0)
	var rr admin.ReloadResponse
	if err := json.Unmarshal([]byte(o.stdout), &rr); err != nil || rr.Message == "" {
		t.Errorf("reload --json: %v\n%s", err, o.stdout)
	}
	if b.reloads != 2 {
		t.Errorf("backend reloads = %d", b.reloads)
	}
}

func TestExitCodes(t *testing.T) {
	b := &fakeBackend{}
	sock := startDaemon(t, b)
	missing := filepath.Join(t.TempDir(), "none.sock")

	t.Run("0 help", func(t *testing.T) {
		for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}, {"help", "flows"}, {"flows", "--help"}} {
			o := hanatctl(t, args...)
			o.want(t, 0)
			if o.stdout == "" {
				t.Errorf("%v printed nothing", args)
			}
		}
		o := hanatctl(t, "help")
		for _, want := range []string{"status", "flows", "config", "reload", "--socket", "--json", "HANAT_SOCKET", "Exit codes", "3  permission denied"} {
			if !strings.Contains(o.stdout, want) {
				t.Errorf("help lacks %q:\n%s", want, o.stdout)
			}
		}
		if o := hanatctl(t, "help", "flows"); !strings.Contains(o.stdout, "-protocol") {
			t.Errorf("help flows:\n%s", o.stdout)
		}
	})
	t.Run("1 daemon error", func(t *testing.T) {
		b.mu.Lock()
		b.err = errors.New("conntrack: netlink dump: operation not permitted")
		b.mu.Unlock()
		defer func() { b.mu.Lock(); b.err = nil; b.mu.Unlock() }()
		for _, cmd := range []string{"status", "flows", "config", "reload"} {
			o := hanatctl(t, "--socket", sock, cmd)
			o.want(t, 1)
			if !strings.Contains(o.stderr, "operation not permitted") || o.stdout != "" {
				t.Errorf("%s: stdout %q stderr %q", cmd, o.stdout, o.stderr)
			}
		}
	})
	t.Run("1 not running", func(t *testing.T) {
		o := hanatctl(t, "--socket", missing, "status")
		o.want(t, 1)
		if !strings.Contains(o.stderr, "hanatd not running? dial "+missing) {
			t.Errorf("stderr %q", o.stderr)
		}
	})
	t.Run("2 usage", func(t *testing.T) {
		for _, args := range [][]string{
			{}, {"bogus"}, {"--bogus", "status"}, {"status", "extra"}, {"status", "--limit", "3"},
			{"flows", "--limit", "x"}, {"flows", "--limit", "-1"}, {"flows", "--protocol", "sctp"},
			{"flows", "--src", "10.0.11"}, {"help", "bogus"}, {"--socket", "", "status"},
		} {
			o := hanatctl(t, append([]string{"--socket", missing}, args...)...)
			if len(args) == 0 {
				o = hanatctl(t)
			}
			if o.code != 2 {
				t.Errorf("%q: exit %d, want 2\n%s", args, o.code, o.stderr)
			}
			if o.stderr == "" {
				t.Errorf("%q: nothing on stderr", args)
			}
		}
	})
	t.Run("3 forbidden", func(t *testing.T) {
		nocred := startNoCredDaemon(t, b)
		if o := hanatctl(t, "--socket", nocred, "status"); o.code != 0 {
			t.Errorf("read without credentials: exit %d\n%s", o.code, o.stderr)
		}
		o := hanatctl(t, "--socket", nocred, "reload")
		o.want(t, 3)
		if !strings.Contains(o.stderr, "permission denied") {
			t.Errorf("stderr %q", o.stderr)
		}
	})
	t.Run("3 socket not accessible", func(t *testing.T) {
		// Root connects to any socket: as root, hanatctl runs as uid
		// 65534 (a copy of this binary running TestHelperHanatctl).
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		dir := t.TempDir()
		var nobody *exec.Cmd
		if os.Geteuid() == 0 {
			nobody = testtool.Unprivileged(ctx, t, "TestHelperHanatctl")
			dir = nobody.Dir
		}
		p := filepath.Join(dir, "admin.sock")
		serveNoCred(t, b, p)
		status := func(mode os.FileMode) out {
			t.Helper()
			if err := os.Chmod(p, mode); err != nil {
				t.Fatal(err)
			}
			if nobody == nil {
				return hanatctl(t, "--socket", p, "status")
			}
			return hanatctlAs(ctx, t, nobody, "--socket", p, "status")
		}
		// The same caller reads through a socket it may open ...
		if o := status(0o666); o.code != 0 {
			t.Fatalf("socket 0666: exit %d, want 0\n%s", o.code, o.stderr)
		}
		// ... and gets 3 when connect() is refused (EACCES).
		o := status(0)
		o.want(t, exitForbidden)
		if !strings.Contains(o.stderr, "permission denied") {
			t.Errorf("stderr %q", o.stderr)
		}
	})
}

// hanatctlHelperEnv carries TestHelperHanatctl's arguments, one a line.
const hanatctlHelperEnv = "HNT_HANATCTL_HELPER_ARGS"

// TestHelperHanatctl is not a test: it is hanatctl run in another process
// (as another user, see hanatctlAs), printing its exit code.
func TestHelperHanatctl(t *testing.T) {
	args, ok := os.LookupEnv(hanatctlHelperEnv)
	if !ok {
		t.Skip("helper process only")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	code := run(ctx, strings.Split(args, "\n"), os.Stdout, os.Stderr)
	fmt.Printf("\nHELPER uid=%d exit=%d\n", os.Getuid(), code)
}

// hanatctlAs runs hanatctl with args like cmd (testtool.Unprivileged's
// command running TestHelperHanatctl, copied: a Cmd runs once) and returns
// its exit code and output (stdout and stderr both in stderr: the helper's
// go test output mixes them).
func hanatctlAs(ctx context.Context, t *testing.T, cmd *exec.Cmd, args ...string) out {
	t.Helper()
	c := exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	c.Dir, c.SysProcAttr = cmd.Dir, cmd.SysProcAttr
	c.Env = append(slices.Clone(cmd.Env), hanatctlHelperEnv+"="+strings.Join(args, "\n"))
	b, err := c.CombinedOutput()
	text := string(b)
	want := fmt.Sprintf("HELPER uid=%d exit=", testtool.Nobody)
	i := strings.LastIndex(text, want)
	if err != nil || i < 0 {
		t.Fatalf("hanatctl %q as uid %d: %v\n%s", args, testtool.Nobody, err, text)
	}
	code, err := strconv.Atoi(strings.Fields(text[i+len(want):])[0])
	if err != nil {
		t.Fatalf("hanatctl %q as uid %d: exit code: %v\n%s", args, testtool.Nobody, err, text)
	}
	return out{code: code, stderr: text}
}

// TestImports: hanatctl talks to hanatd only through the admin package.
func TestImports(t *testing.T) {
	deptest.Allow(t, "github.com/hanat/hanat/admin")
}

func TestAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		42 * time.Second:                 "42s",
		5*time.Minute + 3*time.Second:    "5m3s",
		3*time.Hour + 12*time.Minute + 9: "3h12m",
		98*time.Hour + 59*time.Minute:    "4d2h",
	} {
		if got := age(d); got != want {
			t.Errorf("age(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestDoctor(t *testing.T) {
	b := &fakeBackend{doctor: admin.DoctorReport{OK: false, Checks: []admin.DoctorCheck{
		{ID: "igw-attached", Title: "an internet gateway is attached to the VPC", Status: "pass", Detail: "igw-1 attached to vpc-1"},
		{ID: "source-dest-check", Title: "source/destination check is disabled on the NAT's ENI", Status: "fail",
			Detail: "enabled on eni-1", Fix: "aws ec2 modify-network-interface-attribute --network-interface-id eni-1 --no-source-dest-check"},
	}}}
	sock := startDaemon(t, b)
	o := hanatctl(t, "--socket", sock, "doctor")
	o.want(t, 1)
	for _, want := range []string{"PASS  an internet gateway", "FAIL  source/destination check", "fix: aws ec2 modify-network-interface-attribute", "some checks failed"} {
		if !strings.Contains(o.stdout, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, o.stdout)
		}
	}
	o = hanatctl(t, "--socket", sock, "--json", "doctor")
	o.want(t, 1)
	var rep admin.DoctorReport
	if err := json.Unmarshal([]byte(o.stdout), &rep); err != nil || len(rep.Checks) != 2 || rep.OK {
		t.Errorf("doctor --json: %v\n%s", err, o.stdout)
	}
	b.doctor.OK = true
	b.doctor.Checks = b.doctor.Checks[:1]
	hanatctl(t, "--socket", sock, "doctor").want(t, 0)
}

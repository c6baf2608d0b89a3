package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ownGroup is the name of the test process's group, so the server can
// chown the socket to it and the test is a member whether root or not.
func ownGroup(t *testing.T) string {
	t.Helper()
	g, err := user.LookupGroupId(strconv.Itoa(os.Getegid()))
	if err != nil {
		t.Skipf("no name for our gid %d: %v", os.Getegid(), err)
	}
	return g.Name
}

type runningServer struct {
	path string
	logs *syncBuffer
	stop context.CancelFunc
	done chan error
}

// startServer runs a Server on path and waits until it answers.
func startServer(t *testing.T, b Backend, path, group string) *runningServer {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := NewServer(log, b, ServerOptions{SocketPath: path, Group: group, Version: "0.1.0-test"})
	ctx, cancel := context.WithCancel(context.Background())
	rs := &runningServer{path: path, logs: logs, stop: cancel, done: make(chan error, 1)}
	go func() { rs.done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-rs.done:
		case <-time.After(10 * time.Second):
			t.Error("server did not stop within 10s")
		}
	})
	c := NewClient(path)
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-rs.done:
			t.Fatalf("server exited: %v\n%s", err, logs)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.Status(ctx)
		cancel()
		if err == nil {
			return rs
		}
		if time.Now().After(deadline) {
			t.Fatalf("server on %s not answering after 10s: %v\n%s", path, err, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wait stops the server and returns what Run returned.
func (rs *runningServer) wait(t *testing.T) error {
	t.Helper()
	rs.stop()
	select {
	case err := <-rs.done:
		rs.done <- err // for the cleanup
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("server did not stop within 10s")
		return nil
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestSocketRoundTrip(t *testing.T) {
	group := ownGroup(t)
	path := filepath.Join(t.TempDir(), "run", "admin.sock") // parent created by Run
	b := newFakeBackend()
	rs := startServer(t, b, path, group)
	ctx := testCtx(t)

	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
	}
	if st := fi.Sys().(*syscall.Stat_t); int(st.Gid) != os.Getegid() || int(st.Uid) != os.Geteuid() {
		t.Errorf("socket owner %d:%d, want %d:%d", st.Uid, st.Gid, os.Geteuid(), os.Getegid())
	}
	if leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(path), ".admin.sock.*")); len(leftovers) != 0 {
		t.Errorf("temporary socket names left behind: %v", leftovers)
	}

	c := NewClient(path)
	st, err := c.Status(ctx)
	if err != nil || st.NAT.SNATAddrs[0] != "198.51.100.2" {
		t.Fatalf("Status = %+v, %v", st, err)
	}
	fr, err := c.Flows(ctx, FlowsQuery{Protocol: "udp"})
	if err != nil || fr.Total != 1 || fr.Flows[0].ID != 2 {
		t.Fatalf("Flows = %+v, %v", fr, err)
	}
	cfg, err := c.Config(ctx)
	if err != nil || !strings.Contains(string(cfg), `"outside":"out0"`) {
		t.Fatalf("Config = %s, %v", cfg, err)
	}
	rr, err := c.Reload(ctx, ReloadRequest{ConfigPath: "/etc/hanat/hanat.yaml"})
	if err != nil || !rr.Changed {
		t.Fatalf("Reload = %+v, %v", rr, err)
	}
	raw, err := c.Raw(ctx, "GET", "/v1/status", nil)
	if err != nil || !strings.Contains(string(raw), `"node":"nat-a"`) {
		t.Fatalf("Raw = %s, %v", raw, err)
	}

	// Errors come back typed.
	_, err = c.Raw(ctx, "GET", "/v1/nope", nil)
	var ae *APIError
	if !errors.As(err, &ae) || ae.StatusCode != 404 || errors.Is(err, ErrForbidden) {
		t.Errorf("404: %v", err)
	}
	_, err = c.Flows(ctx, FlowsQuery{Protocol: "sctp"})
	if !errors.As(err, &ae) || ae.StatusCode != 400 || !strings.Contains(ae.Message, "sctp") {
		t.Errorf("400: %v", err)
	}
	b.mu.Lock()
	b.reloadErr = errors.New(`config_path "/x": hanatd reads "/etc/hanat/hanat.yaml"`)
	b.mu.Unlock()
	_, err = c.Reload(ctx, ReloadRequest{ConfigPath: "/x"})
	if !errors.As(err, &ae) || ae.StatusCode != 500 || !strings.Contains(err.Error(), "hanatd reads") {
		t.Errorf("500: %v", err)
	}

	if err := rs.wait(t); err != nil {
		t.Fatalf("Run returned %v on cancel", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket still there after cancel: %v", err)
	}
	_, err = c.Status(ctx)
	if err == nil || !strings.Contains(err.Error(), "hanatd not running? dial "+path+": ") {
		t.Errorf("after stop: %v", err)
	}
}

func TestClientMissingSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	_, err := NewClient(path).Status(testCtx(t))
	if err == nil {
		t.Fatal("no error")
	}
	want := "hanatd not running? dial " + path + ": connect: no such file or directory"
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error does not wrap ENOENT: %v", err)
	}
	if NewClient("").SocketPath() != DefaultSocketPath {
		t.Error("empty path is not the default")
	}
}

// TestClientNotHanatd points the client at a socket that speaks HTTP but
// is not hanatd.
func TestClientNotHanatd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "no", http.StatusForbidden)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go srv.Serve(ln)
	defer srv.Close()
	_, err = NewClient(path).Status(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "not a hanatd admin socket") {
		t.Errorf("error %v", err)
	}
}

func TestStaleSocketRemoved(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	// A socket file nobody listens on, as a crashed hanatd leaves it.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != fs.ModeSocket {
		t.Fatalf("stale socket not in place: %v", err)
	}
	rs := startServer(t, newFakeBackend(), path, ownGroup(t))
	if _, err := NewClient(path).Status(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := rs.wait(t); err != nil {
		t.Fatal(err)
	}
}

func TestRunRefusesLiveSocketAndFiles(t *testing.T) {
	dir := t.TempDir()
	ctx := testCtx(t)

	file := filepath.Join(dir, "file.sock")
	if err := os.WriteFile(file, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := NewServer(nil, newFakeBackend(), ServerOptions{SocketPath: file, Group: ownGroup(t)}).Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Run on a regular file: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "precious" {
		t.Error("regular file was touched")
	}

	live := filepath.Join(dir, "live.sock")
	other := startServer(t, newFakeBackend(), live, ownGroup(t))
	err = NewServer(nil, newFakeBackend(), ServerOptions{SocketPath: live, Group: ownGroup(t)}).Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("Run on a live socket: %v", err)
	}
	if _, err := NewClient(live).Status(ctx); err != nil {
		t.Errorf("the first server stopped answering: %v", err)
	}
	other.wait(t)

	err = NewServer(nil, newFakeBackend(), ServerOptions{SocketPath: "relative.sock"}).Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Errorf("relative path: %v", err)
	}
	long := filepath.Join(dir, strings.Repeat("x", 100), "admin.sock")
	err = NewServer(nil, newFakeBackend(), ServerOptions{SocketPath: long, Group: ownGroup(t)}).Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "too long") {
		t.Errorf("long path: %v", err)
	}
}

// TestSocketRemovedOnlyIfOurs: a socket replaced by a newer server is left
// alone when the old one stops.
func TestSocketRemovedOnlyIfOurs(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	rs := startServer(t, newFakeBackend(), path, ownGroup(t))
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := rs.wait(t); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("someone else's socket was removed: %v", err)
	}
}

// The helper runs in a child process (see TestPeerProcessAuthorization).
const (
	helperEnv       = "HNT_ADMIN_HELPER"
	helperSocketEnv = "HNT_ADMIN_HELPER_SOCKET"
)

// TestHelperPeerProcess is not a test: it is the client half of
// TestPeerProcessAuthorization, run as another user.
func TestHelperPeerProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process only")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := NewClient(os.Getenv(helperSocketEnv))
	fmt.Printf("HELPER uid=%d gid=%d\n", os.Getuid(), os.Getgid())
	if _, err := c.Status(ctx); err != nil {
		fmt.Printf("HELPER GET error: %v\n", err)
	} else {
		fmt.Println("HELPER GET ok")
	}
	_, err := c.Reload(ctx, ReloadRequest{})
	switch {
	case err == nil:
		fmt.Println("HELPER POST ok")
	case errors.Is(err, ErrForbidden):
		fmt.Printf("HELPER POST forbidden: %v\n", err)
	default:
		fmt.Printf("HELPER POST error: %v\n", err)
	}
}

// TestPeerProcessAuthorization runs real client processes under other
// uids against a real socket: an outsider may read but its POST gets 403,
// a supplementary member of the admin group may write, and root may write.
func TestPeerProcessAuthorization(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a client process as uid 65534")
	}
	if os.Getenv(helperEnv) != "" {
		t.Skip("inside the helper")
	}
	// A directory the other uid can traverse, with a copy of this test
	// binary it can execute (go test's build directory is private).
	dir, err := os.MkdirTemp("", "hnt-admin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "admin.test")
	copyExecutable(t, bin)

	gnam, err := user.LookupGroupId("65534")
	if err != nil {
		t.Skipf("no group 65534 to use as the admin group: %v", err)
	}
	path := filepath.Join(dir, "admin.sock")
	b := newFakeBackend()
	rs := startServer(t, b, path, gnam.Name)
	// Let any uid connect, so the server's own check is what is tested.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}

	runHelper := func(uid, gid uint32, groups []uint32) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, "-test.run=^TestHelperPeerProcess$", "-test.count=1")
		cmd.Dir = dir
		cmd.Env = []string{helperEnv + "=1", helperSocketEnv + "=" + path, "PATH=/usr/bin:/bin"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: groups}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helper as %d:%d %v: %v\n%s", uid, gid, groups, err, out)
		}
		if !strings.Contains(string(out), fmt.Sprintf("HELPER uid=%d gid=%d", uid, gid)) {
			t.Fatalf("helper did not run as %d:%d:\n%s", uid, gid, out)
		}
		return string(out)
	}

	// uid 65534 with a primary group that is not the admin group and no
	// supplementary groups: reads only.
	out := runHelper(65534, 65533, []uint32{})
	if !strings.Contains(out, "HELPER GET ok") || !strings.Contains(out, "HELPER POST forbidden: ") {
		t.Errorf("outsider: want GET ok and POST forbidden:\n%s", out)
	}
	for _, want := range []string{"admin write refused", "uid=65534", "path=/v1/reload"} {
		if !strings.Contains(rs.logs.String(), want) {
			t.Errorf("server log lacks %q:\n%s", want, rs.logs)
		}
	}
	if n := b.reloadCount(); n != 0 {
		t.Fatalf("the refused POST reached the backend (%d reloads)", n)
	}

	// The same uid holding the admin group as a supplementary group.
	out = runHelper(65534, 65533, []uint32{4242, 65534})
	if !strings.Contains(out, "HELPER POST ok") {
		t.Errorf("supplementary member: want POST ok:\n%s", out)
	}
	if n := b.reloadCount(); n != 1 {
		t.Errorf("backend reloads = %d, want 1", n)
	}

	// Root, from this process.
	if _, err := NewClient(path).Reload(testCtx(t), ReloadRequest{}); err != nil {
		t.Errorf("root POST: %v", err)
	}
	rs.wait(t)
}

func copyExecutable(t *testing.T, dst string) {
	t.Helper()
	src, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

package packaging

// A booted Debian 12 for the package tests: debootstrap once into a cached
// root, boot it with systemd-nspawn in its own network namespace with a
// throw-away overlay (the cache is never written), run commands inside with
// nsenter. The host is not booted with systemd, so the container is neither
// registered nor given a scope (machinectl does not work here).

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanat/hanat/internal/testtool"
)

const (
	// rootCacheDir holds the debootstrapped root between runs (CI reuses
	// it on the same machine); HANAT_TEST_CACHE overrides it.
	rootCacheDir = "/var/cache/hanat-test"
	rootName     = "debian12-root"
	suite        = "bookworm"
)

// rootRecipe is what the cached root was made from; a different recipe
// (e.g. a package added) rebuilds it.
var rootIncludes = []string{"systemd", "systemd-sysv", "dbus", "nftables", "iproute2", "procps", "man-db"}

func rootRecipe(mirror string) string {
	return fmt.Sprintf("debootstrap --variant=minbase --include=%s %s %s\n", strings.Join(rootIncludes, ","), suite, mirror)
}

// hostTools are the host commands the booted tests need, with the Debian
// packages providing them.
var hostTools = map[string]string{
	"debootstrap":    "debootstrap",
	"systemd-nspawn": "systemd-container",
	"nsenter":        "util-linux",
}

// requireBootable skips (or, in CI, fails) when the booted tests cannot run
// here.
func requireBootable(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: debootstrap, systemd-nspawn and nsenter (CI runs it as root)")
	}
	var missing []string
	for tool, pkg := range hostTools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, fmt.Sprintf("%s (apt package %s)", tool, pkg))
		}
	}
	if len(missing) > 0 {
		testtool.Unavailable(t, "missing host tools: %s", strings.Join(missing, ", "))
	}
}

// debianMirror is the Debian mirror this machine's apt uses (the one that
// is reachable), HANAT_DEBIAN_MIRROR, or deb.debian.org.
func debianMirror() string {
	if m := os.Getenv("HANAT_DEBIAN_MIRROR"); m != "" {
		return m
	}
	if b, err := os.ReadFile("/etc/apt/sources.list.d/debian.sources"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "URIs:"); ok {
				for _, u := range strings.Fields(v) {
					if strings.HasSuffix(strings.TrimRight(u, "/"), "/debian") {
						return u
					}
				}
			}
		}
	}
	if b, err := os.ReadFile("/etc/apt/sources.list"); err == nil {
		for line := range strings.Lines(string(b)) {
			f := strings.Fields(line)
			if len(f) >= 3 && f[0] == "deb" && !strings.HasPrefix(f[1], "[") && strings.HasSuffix(strings.TrimRight(f[1], "/"), "/debian") {
				return f[1]
			}
		}
	}
	return "http://deb.debian.org/debian"
}

// debianRoot returns the cached Debian 12 root, making it with debootstrap
// when it is missing or was made from another recipe. An flock serialises
// concurrent test binaries.
func debianRoot(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("HANAT_TEST_CACHE")
	if dir == "" {
		dir = rootCacheDir
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("create cache dir %s: %v", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("open cache lock: %v", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("lock %s: %v", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) //nolint:errcheck

	root := filepath.Join(dir, rootName)
	marker := filepath.Join(root, ".hanat-test-recipe")
	mirror := debianMirror()
	recipe := rootRecipe(mirror)
	if b, err := os.ReadFile(marker); err == nil && string(b) == recipe {
		t.Logf("reusing cached Debian 12 root %s", root)
		return root
	}
	tmp := root + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		t.Fatalf("remove stale %s: %v", tmp, err)
	}
	t.Logf("debootstrap Debian 12 into %s from %s (once; cached afterwards)", root, mirror)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase",
		"--include="+strings.Join(rootIncludes, ","), suite, tmp, mirror)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("debootstrap: %v\n%s", err, tail(out, 40))
	}
	// A machine id and no getty: the container is only driven through
	// nsenter.
	for _, c := range [][]string{
		{"systemctl", "--root", tmp, "mask", "console-getty.service", "getty@.service"},
	} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", c, err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, ".hanat-test-recipe"), []byte(recipe), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(root); err != nil {
		t.Fatalf("remove old root %s: %v", root, err)
	}
	if err := os.Rename(tmp, root); err != nil {
		t.Fatalf("rename %s: %v", tmp, err)
	}
	return root
}

// container is a booted systemd-nspawn container.
type container struct {
	t    *testing.T
	name string
	pid  int // the container's init (systemd) as seen from the host
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// boot starts root as a container: its own network namespace with only
// lo (--private-network), a tmpfs overlay over the root so the cache stays
// pristine, bind is mounted read-only at /mnt/hanat. CAP_BPF and
// CAP_PERFMON (and the bpf syscall) are granted so the unit's own
// capability set is what limits hanatd, as on a real host.
func boot(t *testing.T, root, bind string) *container {
	t.Helper()
	name := fmt.Sprintf("hnt-pkg-%d", time.Now().UnixNano()%1_000_000)
	c := &container{t: t, name: name, log: &lockedBuffer{}, done: make(chan struct{})}
	c.cmd = exec.Command("systemd-nspawn",
		"--quiet", "--register=no", "--keep-unit", "--private-network",
		"--volatile=overlay", "--machine="+name, "--console=pipe",
		"--capability=CAP_BPF,CAP_PERFMON", "--system-call-filter=bpf",
		"--bind-ro="+bind+":/mnt/hanat",
		"-b", "-D", root)
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("systemd-nspawn: %v", err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(c.stop)

	// The container's init is nspawn's child running systemd.
	deadline := time.Now().Add(30 * time.Second)
	for c.pid == 0 {
		select {
		case <-c.done:
			t.Fatalf("systemd-nspawn exited during boot:\n%s", c.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no container init under systemd-nspawn (pid %d) after 30s:\n%s", c.cmd.Process.Pid, c.log.String())
		}
		c.pid = initChild(c.cmd.Process.Pid)
		if c.pid == 0 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	// systemd answers on its private socket once it is up; then wait for
	// the boot to finish.
	var state string
	bootDeadline := time.Now().Add(90 * time.Second)
	for {
		out, err := c.execTimeout(90*time.Second, "systemctl", "is-system-running", "--wait")
		state = strings.TrimSpace(out)
		if err == nil || state == "degraded" {
			break
		}
		if time.Now().After(bootDeadline) {
			t.Fatalf("container did not boot (%s): %v\n%s", state, err, c.log.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if state == "degraded" {
		failed, _ := c.exec("systemctl", "--failed", "--no-legend", "--plain")
		t.Logf("container booted degraded; failed units (not hanat's):\n%s", failed)
	}
	t.Logf("container %s booted (init pid %d on the host)", name, c.pid)
	return c
}

// initChild finds the child of nspawn that runs systemd, or 0.
func initChild(nspawn int) int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", nspawn))
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(b)) {
			pid, err := strconv.Atoi(s)
			if err != nil {
				continue
			}
			comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
			if strings.TrimSpace(string(comm)) == "systemd" {
				return pid
			}
		}
	}
	return 0
}

// exec runs a command inside the container (all its namespaces) and
// returns its combined output.
func (c *container) exec(args ...string) (string, error) {
	return c.execTimeout(60*time.Second, args...)
}

func (c *container) execTimeout(d time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	full := append([]string{"-t", strconv.Itoa(c.pid), "-a", "--"}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", full...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"}
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		err = fmt.Errorf("%v: timed out after %v", args, d)
	}
	return string(out), err
}

// sh runs a shell script inside the container.
func (c *container) sh(script string) (string, error) {
	return c.exec("/bin/sh", "-ec", script)
}

// must runs a shell script inside the container and fails the test on error.
func (c *container) must(script string) string {
	c.t.Helper()
	out, err := c.sh(script)
	if err != nil {
		c.t.Fatalf("in container: %s: %v\n%s\nhanatd's journal:\n%s", script, err, out, c.journal())
	}
	return out
}

// prepareHost gives the container what a booted EC2 instance has and a
// bare nspawn container lacks: a bpffs on /sys/fs/bpf (systemd mounts it
// at boot on a real host; its own instance here, not the host's) and an
// "outside" interface holding the default route (a veth pair inside the
// container's private network namespace, TEST-NET addresses).
func (c *container) prepareHost() {
	c.t.Helper()
	c.must(`mount -o remount,rw /sys
mkdir -p /sys/fs/bpf
mount -o remount,ro /sys
mount -t bpf -o mode=0700 bpf /sys/fs/bpf`)
	c.must(`ip link add hnt-out type veth peer name hnt-peer
ip addr add 192.0.2.10/24 dev hnt-out
ip link set hnt-out up
ip link set hnt-peer up
ip route add default via 192.0.2.1`)
}

// stop powers the container off, and kills nspawn if it does not go.
func (c *container) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	_, _ = c.execTimeout(20*time.Second, "systemctl", "poweroff", "--no-block")
	select {
	case <-c.done:
		return
	case <-time.After(20 * time.Second):
	}
	// nspawn turns SIGTERM into a clean shutdown of a booted container.
	c.t.Logf("container %s did not power off in 20s; SIGTERM to systemd-nspawn (pid %d)", c.name, c.cmd.Process.Pid)
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return
	case <-time.After(15 * time.Second):
	}
	// Killing the init of the container's PID namespace ends every
	// process in it; then nspawn itself.
	c.t.Logf("killing container init (pid %d) and systemd-nspawn (pid %d)", c.pid, c.cmd.Process.Pid)
	if c.pid > 0 {
		_ = syscall.Kill(c.pid, syscall.SIGKILL)
	}
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.t.Errorf("systemd-nspawn pid %d still running", c.cmd.Process.Pid)
	}
}

// journal is hanatd's journal inside the container, for failure messages.
func (c *container) journal() string {
	out, _ := c.exec("journalctl", "-u", "hanatd", "--no-pager", "-n", "60", "-o", "short-precise")
	return out
}

func tail(b []byte, n int) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// exitCode is the exit status in err, or -1.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err == nil {
		return 0
	}
	return -1
}

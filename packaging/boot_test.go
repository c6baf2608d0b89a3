package packaging

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hanat/hanat/admin"
)

// tcLinkPin is the pinned tcx link of the fast path on the container's
// outside veth (fastpath.DefaultPinPath, tc_link_<ifname>).
const tcLinkPin = "/sys/fs/bpf/hanat/tc_link_hnt-out"

// testConfig is /etc/hanat/hanat.yaml in the container: no EC2 to discover,
// the VPC of the seed as private CIDRs. The outside interface (default
// route) and the SNAT address are found as on an instance.
const testConfig = `# packaging test
private_cidrs: [10.0.0.0/16]
cloud:
  discover: false
`

// stageBoot builds the packages and lays out what the container sees at
// /mnt/hanat: the host architecture's .deb, provision.sh, the test config.
func stageBoot(t *testing.T) string {
	t.Helper()
	pkgs := buildPackages(t)
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, debPath(pkgs, runtime.GOARCH), filepath.Join(dir, "hanat.deb"), 0o644)
	copyFile(t, "ami/provision.sh", filepath.Join(dir, "provision.sh"), 0o755)
	if err := os.WriteFile(filepath.Join(dir, "hanat.yaml"), []byte(testConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

var tableHandle = regexp.MustCompile(`table inet hanat \{ # handle (\d+)`)

// nftHandle is the kernel handle of table inet hanat: a table deleted and
// re-created gets a new one.
func nftHandle(t *testing.T, c *container) int {
	t.Helper()
	out := c.must("nft -a list table inet hanat")
	m := tableHandle.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no handle in nft -a list table inet hanat:\n%s", out)
	}
	h, _ := strconv.Atoi(m[1])
	return h
}

func hanatdProp(t *testing.T, c *container, prop string) string {
	t.Helper()
	return strings.TrimSpace(c.must("systemctl show -p " + prop + " --value hanatd.service"))
}

func handoverProp(t *testing.T, c *container, prop string) string {
	t.Helper()
	return strings.TrimSpace(c.must("systemctl show -p " + prop + " --value hanat-handover.service"))
}

// handoverJournal is what hanat-handover.service's commands printed.
func handoverJournal(c *container) string {
	_, _ = c.exec("journalctl", "--sync")
	out, _ := c.exec("journalctl", "-u", "hanat-handover.service", "--no-pager", "-o", "cat")
	return out
}

// TestBootedDebian installs the .deb into a booted Debian 12 and operates
// hanatd through systemd the way an operator does.
func TestBootedDebian(t *testing.T) {
	requireBootable(t)
	if testing.Short() {
		t.Skip("boots a Debian 12 container (-short)")
	}
	stage := stageBoot(t)
	root := debianRoot(t)
	c := boot(t, root, stage)
	c.prepareHost()

	// Install: enabled, not started; group and directories made.
	c.must("dpkg -i /mnt/hanat/hanat.deb")
	for _, unit := range []string{"hanatd.service", "hanat-handover.service"} {
		if got := strings.TrimSpace(c.must("systemctl is-enabled " + unit)); got != "enabled" {
			t.Fatalf("after install %s is %q, want enabled", unit, got)
		}
	}
	if out, _ := c.exec("systemctl", "is-active", "hanatd.service"); strings.TrimSpace(out) != "inactive" {
		t.Errorf("the package started hanatd (is-active %q); it must only enable it", strings.TrimSpace(out))
	}
	c.must("getent group " + admin.DefaultGroup)
	c.must("test -d /var/lib/hanat && test -d /run/hanat")
	c.must("cmp /etc/hanat/hanat.yaml /usr/share/doc/hanat/example.yaml")
	c.must("man -w hanatd hanatctl")

	t.Run("systemd-analyze verify", func(t *testing.T) {
		for _, unit := range []string{"hanatd.service", "hanat-handover.service"} {
			out, err := c.exec("systemd-analyze", "verify", unit)
			if err != nil || strings.TrimSpace(out) != "" {
				t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
			}
		}
	})

	c.must("cp /mnt/hanat/hanat.yaml /etc/hanat/hanat.yaml")
	// Type=notify: `systemctl start` returns once hanatd sent READY=1 (after
	// its first reconcile); a daemon that never sends it fails the start on
	// TimeoutStartSec.
	start := time.Now()
	if out, err := c.execTimeout(150*time.Second, "systemctl", "start", "hanatd.service"); err != nil {
		t.Fatalf("systemctl start hanatd: %v\n%s\n%s", err, out, c.journal())
	}
	t.Logf("systemctl start returned after %v", time.Since(start).Round(time.Millisecond))

	t.Run("active through sd_notify", func(t *testing.T) {
		if got := hanatdProp(t, c, "ActiveState"); got != "active" {
			t.Fatalf("ActiveState=%s\n%s", got, c.journal())
		}
		if got := hanatdProp(t, c, "SubState"); got != "running" {
			t.Errorf("SubState=%s", got)
		}
		// STATUS= comes only through the notify socket.
		if got := hanatdProp(t, c, "StatusText"); got == "" {
			t.Errorf("no STATUS= from hanatd via sd_notify")
		} else {
			t.Logf("StatusText: %s", got)
		}
		c.must("nft list table inet hanat >/dev/null")
	})

	t.Run("hanatctl status as root", func(t *testing.T) {
		out, err := c.exec("hanatctl", "--json", "status")
		if err != nil {
			t.Fatalf("hanatctl --json status: %v\n%s", err, out)
		}
		var st admin.Status
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status JSON: %v\n%s", err, out)
		}
		if !st.Ready || !st.Datapath.Present || st.NAT.OutsideInterface != "hnt-out" {
			t.Errorf("status: ready=%v table present=%v outside=%q, want true true hnt-out", st.Ready, st.Datapath.Present, st.NAT.OutsideInterface)
		}
		// The fast path loads and pins with exactly the unit's capabilities
		// (no CAP_SYS_ADMIN): auto runs tc on the veth.
		if st.Datapath.FastpathDetail.Mode != "tc" {
			t.Errorf("fast path mode %q (reason %q), want tc: the unit's capabilities or paths do not let hanatd load its programs\n%s",
				st.Datapath.FastpathDetail.Mode, st.Datapath.FastpathDetail.Reason, c.journal())
		}
		if out, err := c.exec("hanatctl", "status"); err != nil || !strings.Contains(out, "ready") {
			t.Errorf("hanatctl status: %v\n%s", err, out)
		}
	})

	t.Run("handover unit: armed with hanatd, not run by a restart, runs the handover on stop", func(t *testing.T) {
		// Starting hanatd started it (hanatd.service wants it): its ExecStop
		// is armed for the shutdown.
		if got := handoverProp(t, c, "ActiveState"); got != "active" {
			t.Fatalf("hanat-handover.service %s after starting hanatd, want active", got)
		}
		inactiveBefore := handoverProp(t, c, "InactiveEnterTimestampMonotonic")
		runsBefore := strings.Count(handoverJournal(c), "maintenance:")
		c.must("systemctl restart hanatd.service")
		time.Sleep(500 * time.Millisecond)
		if got := handoverProp(t, c, "ActiveState"); got != "active" {
			t.Errorf("hanat-handover.service %s after restarting hanatd, want still active", got)
		}
		if got := handoverProp(t, c, "InactiveEnterTimestampMonotonic"); got != inactiveBefore {
			t.Errorf("restarting hanatd stopped hanat-handover.service (InactiveEnterTimestampMonotonic %s → %s)", inactiveBefore, got)
		}
		if j := handoverJournal(c); strings.Count(j, "maintenance:") != runsBefore {
			t.Errorf("restarting hanatd ran the handover's ExecStop:\n%s", j)
		}

		// Stopping it (what shutdown does) runs `hanatctl maintenance on
		// --wait`: HA is off here (not on EC2), so it succeeds at once.
		start := time.Now()
		if out, err := c.execTimeout(40*time.Second, "systemctl", "stop", "hanat-handover.service"); err != nil {
			t.Fatalf("systemctl stop hanat-handover: %v\n%s", err, out)
		}
		took := time.Since(start)
		t.Logf("systemctl stop hanat-handover (HA off) took %v", took.Round(time.Millisecond))
		if took > 10*time.Second {
			t.Errorf("stop took %v with HA off: a lone NAT's shutdown must not wait", took)
		}
		if got := handoverProp(t, c, "Result"); got != "success" {
			t.Errorf("hanat-handover.service Result=%s after stop, want success\n%s", got, handoverJournal(c))
		}
		var j string
		for range 50 { // the journal stream may lag a little
			if j = handoverJournal(c); strings.Contains(j, "HA is off") {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if !strings.Contains(j, "maintenance: HA is off") {
			t.Errorf("stopping hanat-handover did not run hanatctl maintenance on --wait:\n%s", j)
		}
		if got := hanatdProp(t, c, "ActiveState"); got != "active" {
			t.Errorf("hanatd %s after stopping hanat-handover, want active (it is only ordered after it)", got)
		}
		c.must("systemctl start hanat-handover.service")
	})

	t.Run("metrics endpoint on loopback", func(t *testing.T) {
		// bash's /dev/tcp: the minimal root has no HTTP client.
		out, err := c.exec("bash", "-c", `exec 3<>/dev/tcp/127.0.0.1/9469 && printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3 && timeout 10 cat <&3`)
		if err != nil || !strings.Contains(out, "200 OK") || !strings.Contains(out, "\nhanat_up 1") {
			t.Errorf("scrape 127.0.0.1:9469/metrics in the container: %v\n%s", err, tail([]byte(out), 20))
		}
	})

	t.Run("unprivileged user refused", func(t *testing.T) {
		c.must("useradd --create-home hntuser && useradd --create-home --groups " + admin.DefaultGroup + " hntop")
		out, err := c.exec("runuser", "-u", "hntuser", "--", "hanatctl", "status")
		if code := exitCode(err); code != 3 || !strings.Contains(out, "permission denied") {
			t.Errorf("hanatctl status as an unprivileged user: exit %d, want 3 (permission denied)\n%s", code, out)
		}
		out, err = c.exec("runuser", "-u", "hntuser", "--", "hanatctl", "reload")
		if code := exitCode(err); code != 3 {
			t.Errorf("hanatctl reload as an unprivileged user: exit %d, want 3\n%s", code, out)
		}
		// A member of the hanat group may read and change.
		if out, err := c.exec("runuser", "-u", "hntop", "--", "hanatctl", "status"); err != nil {
			t.Errorf("hanatctl status as a member of %s: %v\n%s", admin.DefaultGroup, err, out)
		}
		if out, err := c.exec("runuser", "-u", "hntop", "--", "hanatctl", "reload"); err != nil {
			t.Errorf("hanatctl reload as a member of %s: %v\n%s", admin.DefaultGroup, err, out)
		}
	})

	t.Run("restart keeps the nftables table and the fast path", func(t *testing.T) {
		before := nftHandle(t, c)
		restartsBefore := hanatdProp(t, c, "NRestarts")
		pidBefore := hanatdProp(t, c, "MainPID")
		// Watch the table through the restart (bounded: 300 × 20 ms).
		c.must("(for i in $(seq 1 300); do nft list table inet hanat >/dev/null 2>&1 || echo MISSING; sleep 0.02; done > /run/hnt-watch.log; touch /run/hnt-watch.done) >/dev/null 2>&1 &")
		c.must("systemctl restart hanatd.service")
		if pid := hanatdProp(t, c, "MainPID"); pid == pidBefore || pid == "0" {
			t.Fatalf("MainPID %s after restart (was %s)", pid, pidBefore)
		}
		c.must("for i in $(seq 1 100); do [ -e /run/hnt-watch.done ] && exit 0; sleep 0.1; done; exit 1")
		if out := c.must("cat /run/hnt-watch.log"); strings.Contains(out, "MISSING") {
			t.Errorf("table inet hanat disappeared during the restart (%d polls)", strings.Count(out, "MISSING"))
		}
		if after := nftHandle(t, c); after != before {
			t.Errorf("table inet hanat handle %d → %d: the restart re-created the table", before, after)
		}
		if got := hanatdProp(t, c, "ActiveState"); got != "active" {
			t.Errorf("after restart ActiveState=%s", got)
		}
		if got := hanatdProp(t, c, "NRestarts"); got != restartsBefore {
			t.Errorf("NRestarts %s → %s on a manual restart", restartsBefore, got)
		}
		// auto runs tc on the veth: its tcx link is pinned and adopted.
		if _, err := c.exec("test", "-e", tcLinkPin); err != nil {
			t.Errorf("the fast path's tcx link %s is gone after the restart: %v", tcLinkPin, err)
		}
		if j := c.journal(); !strings.Contains(j, "kept attached across restart") {
			t.Errorf("hanatd did not take over the pinned fast path:\n%s", j)
		}
	})

	t.Run("stop leaves NAT in place", func(t *testing.T) {
		before := nftHandle(t, c)
		c.must("systemctl stop hanatd.service")
		if after := nftHandle(t, c); after != before {
			t.Errorf("table handle %d → %d across stop", before, after)
		}
		if _, err := c.exec("test", "-e", tcLinkPin); err != nil {
			t.Errorf("stop detached the fast path (tcx link %s gone): %v", tcLinkPin, err)
		}
		c.must("test -S /run/hanat/admin.sock || test -d /run/hanat") // RuntimeDirectoryPreserve
		c.must("systemctl start hanatd.service")
		if after := nftHandle(t, c); after != before {
			t.Errorf("table handle %d → %d across start", before, after)
		}
	})

	t.Run("watchdog and Restart=always", func(t *testing.T) {
		// A short watchdog: if hanatd did not ping it, systemd would kill it
		// within 2 s and NRestarts would grow.
		c.must(`mkdir -p /run/systemd/system/hanatd.service.d
printf '[Service]\nWatchdogSec=2s\n' > /run/systemd/system/hanatd.service.d/hnt-watchdog.conf
systemctl daemon-reload
systemctl restart hanatd.service`)
		t.Cleanup(func() {
			c.sh("rm -f /run/systemd/system/hanatd.service.d/hnt-watchdog.conf && systemctl daemon-reload") //nolint:errcheck
		})
		n0 := hanatdProp(t, c, "NRestarts")
		time.Sleep(6 * time.Second)
		if n := hanatdProp(t, c, "NRestarts"); n != n0 {
			t.Errorf("NRestarts %s → %s with WatchdogSec=2s: hanatd does not ping the watchdog\n%s", n0, n, c.journal())
		}
		if ts := hanatdProp(t, c, "WatchdogTimestampMonotonic"); ts == "0" || ts == "" {
			t.Errorf("no watchdog ping recorded (WatchdogTimestampMonotonic=%q)", ts)
		}

		// SIGKILL: Restart=always brings it back, the table stays.
		before := nftHandle(t, c)
		c.must("systemctl kill --signal=SIGKILL hanatd.service")
		ok := false
		for range 100 {
			time.Sleep(200 * time.Millisecond)
			if n := hanatdProp(t, c, "NRestarts"); n != n0 && hanatdProp(t, c, "ActiveState") == "active" {
				ok = true
				break
			}
		}
		if !ok {
			t.Fatalf("hanatd not restarted after SIGKILL within 20s\n%s", c.journal())
		}
		if after := nftHandle(t, c); after != before {
			t.Errorf("table handle %d → %d across a crash", before, after)
		}
	})

	t.Run("cleanup removes NAT", func(t *testing.T) {
		c.must("systemctl stop hanatd.service && hanatd --cleanup")
		if out, err := c.exec("nft", "list", "table", "inet", "hanat"); err == nil {
			t.Errorf("table inet hanat still present after hanatd --cleanup:\n%s", out)
		}
		if out := c.must("ip link show hnt-out"); strings.Contains(out, "xdp") {
			t.Errorf("XDP still attached after hanatd --cleanup:\n%s", out)
		}
	})

	t.Run("remove and purge", func(t *testing.T) {
		c.must("systemctl start hanatd.service")
		c.must("dpkg --purge hanat")
		if out, _ := c.exec("systemctl", "is-active", "hanatd.service"); strings.TrimSpace(out) == "active" {
			t.Errorf("hanatd still active after dpkg --purge")
		}
		c.must("! test -e /usr/sbin/hanatd && ! test -e /etc/hanat/hanat.yaml && ! test -e /var/lib/hanat")
		// Removal stops the daemon, not NAT.
		c.must("nft list table inet hanat >/dev/null")
	})
}

// TestProvisionScript runs the AMI's provision.sh in a booted Debian 12
// (offline: no extra packages) and wants an enabled service that starts.
func TestProvisionScript(t *testing.T) {
	requireBootable(t)
	if testing.Short() {
		t.Skip("boots a Debian 12 container (-short)")
	}
	stage := stageBoot(t)
	root := debianRoot(t)
	c := boot(t, root, stage)
	c.prepareHost()

	for i := range 2 { // idempotent: a second run changes nothing
		out, err := c.execTimeout(120*time.Second, "env", "HANAT_EXTRA_PACKAGES=", "/bin/sh", "/mnt/hanat/provision.sh", "/mnt/hanat/hanat.deb")
		if err != nil {
			t.Fatalf("provision.sh (run %d): %v\n%s", i+1, err, out)
		}
		t.Logf("provision.sh run %d:\n%s", i+1, tail([]byte(out), 8))
	}
	if got := strings.TrimSpace(c.must("systemctl is-enabled hanatd.service")); got != "enabled" {
		t.Fatalf("after provision.sh hanatd.service is %q, want enabled", got)
	}
	if out := c.must("cat /etc/modprobe.d/hanat.conf"); !strings.Contains(out, "options nf_conntrack hashsize=65536") {
		t.Errorf("modprobe.d/hanat.conf:\n%s", out)
	}
	c.must("test -e /etc/systemd/system/multi-user.target.wants/hanatd.service")
	c.must("test -e /etc/systemd/system/multi-user.target.wants/hanat-handover.service")
	// The enabled unit is what boot starts; start it the way boot would.
	c.must("cp /mnt/hanat/hanat.yaml /etc/hanat/hanat.yaml")
	if out, err := c.execTimeout(150*time.Second, "systemctl", "start", "multi-user.target"); err != nil {
		t.Fatalf("systemctl start multi-user.target: %v\n%s", err, out)
	}
	if got := hanatdProp(t, c, "ActiveState"); got != "active" {
		t.Fatalf("hanatd %s after starting multi-user.target\n%s", got, c.journal())
	}
	if got := handoverProp(t, c, "ActiveState"); got != "active" {
		t.Errorf("hanat-handover.service %s after starting multi-user.target, want active (armed for shutdown)", got)
	}
}

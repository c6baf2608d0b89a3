package packaging

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/config"
	"github.com/hanat/hanat/fastpath"
	"github.com/hanat/hanat/internal/testtool"
)

// unitFile is a parsed systemd unit: section → key → values in order.
type unitFile map[string]map[string][]string

func parseUnit(t *testing.T, path string) unitFile {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", path, n, line)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	return u
}

func (u unitFile) one(t *testing.T, section, key string) string {
	t.Helper()
	v := u[section][key]
	if len(v) != 1 {
		t.Errorf("[%s] %s set %d times (%q), want once", section, key, len(v), v)
		return ""
	}
	return v[0]
}

// fields is every space-separated word of every assignment of key.
func (u unitFile) fields(section, key string) []string {
	var out []string
	for _, v := range u[section][key] {
		out = append(out, strings.Fields(v)...)
	}
	return out
}

func TestUnitFile(t *testing.T) {
	u := parseUnit(t, "systemd/hanatd.service")
	for key, want := range map[string]string{
		"Type":                     "notify",
		"NotifyAccess":             "main",
		"Restart":                  "always",
		"ExecStart":                "/usr/sbin/hanatd",
		"StateDirectory":           "hanat",
		"RuntimeDirectory":         "hanat",
		"RuntimeDirectoryPreserve": "yes",
		"ConfigurationDirectory":   "hanat",
		"NoNewPrivileges":          "yes",
		"ProtectSystem":            "strict",
		// Not the one-line form: systemd keeps /sys/fs/bpf read-only under
		// it whatever ReadWritePaths says (seen on Debian 12's systemd).
		"ProtectKernelTunables": "no",
	} {
		if got := u.one(t, "Service", key); got != want {
			t.Errorf("[Service] %s=%q, want %q", key, got, want)
		}
	}
	if w := u.one(t, "Service", "WatchdogSec"); w == "" || w == "0" {
		t.Errorf("WatchdogSec=%q: hanatd pings the watchdog, the unit must ask for it", w)
	}
	// Nothing that runs at stop may remove NAT.
	for _, key := range []string{"ExecStop", "ExecStopPost"} {
		if v := u["Service"][key]; len(v) > 0 {
			t.Errorf("[Service] %s=%q: stopping hanatd must leave NAT in place", key, v)
		}
	}
	caps := u.fields("Service", "CapabilityBoundingSet")
	slices.Sort(caps)
	want := []string{"CAP_BPF", "CAP_CHOWN", "CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_PERFMON"}
	if !slices.Equal(caps, want) {
		t.Errorf("CapabilityBoundingSet = %v, want %v", caps, want)
	}
	rw := u.fields("Service", "ReadWritePaths")
	for _, p := range []string{"/proc/sys/net", "-" + filepath.Dir(fastpath.DefaultPinPath)} {
		if !slices.Contains(rw, p) {
			t.Errorf("ReadWritePaths %v lacks %s", rw, p)
		}
	}
	ro := u.fields("Service", "ReadOnlyPaths")
	for _, p := range []string{"/sys", "/proc/sys"} {
		if !slices.Contains(ro, p) {
			t.Errorf("ReadOnlyPaths %v lacks %s", ro, p)
		}
	}
	if !slices.Contains(u.fields("Service", "SystemCallFilter"), "bpf") {
		t.Errorf("SystemCallFilter must allow bpf (not in @system-service)")
	}
	if af := u.fields("Service", "RestrictAddressFamilies"); !slices.Contains(af, "AF_NETLINK") {
		t.Errorf("RestrictAddressFamilies %v: nftables, conntrack and rtnetlink need AF_NETLINK", af)
	}
	if got := u.one(t, "Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("WantedBy=%q", got)
	}

	// The directories the unit creates are where hanatd looks by default.
	if d := filepath.Dir(admin.DefaultSocketPath); d != "/run/hanat" {
		t.Errorf("admin socket %s is not in RuntimeDirectory=hanat", admin.DefaultSocketPath)
	}
	if d := config.Default().StateDir; d != "/var/lib/hanat" {
		t.Errorf("state_dir %s is not StateDirectory=hanat", d)
	}
	if d := filepath.Dir(config.DefaultPath); d != "/etc/hanat" {
		t.Errorf("config %s is not in ConfigurationDirectory=hanat", config.DefaultPath)
	}
}

// TestHandoverUnit: hanat-handover.service hands the route tables over at
// shutdown (stopped before hanatd, its ExecStop waits for the peer) and
// never on a restart of hanatd.
func TestHandoverUnit(t *testing.T) {
	u := parseUnit(t, "systemd/hanat-handover.service")
	for key, want := range map[string]string{
		"Type":            "oneshot",
		"RemainAfterExit": "yes",
		"ExecStart":       "/bin/true",
		"ExecStop":        "/usr/bin/hanatctl maintenance on --wait=10s",
	} {
		if got := u.one(t, "Service", key); got != want {
			t.Errorf("[Service] %s=%q, want %q", key, got, want)
		}
	}
	if d, err := time.ParseDuration(strings.TrimSpace(u.one(t, "Service", "TimeoutStopSec"))); err != nil || d <= 10*time.Second {
		t.Errorf("TimeoutStopSec=%q: must exceed the --wait of 10s", u["Service"]["TimeoutStopSec"])
	}
	// Started after hanatd, so stopped before it at shutdown.
	if !slices.Contains(u.fields("Unit", "After"), "hanatd.service") || !slices.Contains(u.fields("Unit", "Wants"), "hanatd.service") {
		t.Errorf("[Unit] After=%v Wants=%v, want hanatd.service in both", u["Unit"]["After"], u["Unit"]["Wants"])
	}
	// A restart or stop of hanatd must not propagate to it.
	for _, key := range []string{"Requires", "BindsTo", "PartOf", "Requisite", "Upholds", "PropagatesStopTo", "StopPropagatedFrom"} {
		if v := u["Unit"][key]; len(v) > 0 {
			t.Errorf("[Unit] %s=%q: a restart of hanatd would run the handover", key, v)
		}
	}
	if got := u.one(t, "Install", "WantedBy"); got != "multi-user.target" {
		t.Errorf("WantedBy=%q", got)
	}
	d := parseUnit(t, "systemd/hanatd.service")
	if !slices.Contains(d.fields("Unit", "Wants"), "hanat-handover.service") {
		t.Errorf("hanatd.service does not want hanat-handover.service (a hanatd started by hand would not hand over at shutdown)")
	}
	for _, key := range []string{"Requires", "BindsTo", "PartOf", "Upholds", "PropagatesStopTo"} {
		if slices.Contains(d.fields("Unit", key), "hanat-handover.service") {
			t.Errorf("hanatd.service %s=hanat-handover.service: a restart of hanatd would run the handover", key)
		}
	}
}

func TestSystemFiles(t *testing.T) {
	b, err := os.ReadFile("sysusers.d/hanat.conf")
	if err != nil {
		t.Fatal(err)
	}
	if !hasLine(string(b), "g "+admin.DefaultGroup+" - -") {
		t.Errorf("sysusers.d does not create group %q:\n%s", admin.DefaultGroup, b)
	}
	b, err = os.ReadFile("tmpfiles.d/hanat.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"/var/lib/hanat", "/run/hanat"} {
		if !strings.Contains(string(b), "d "+d+" ") {
			t.Errorf("tmpfiles.d does not create %s", d)
		}
	}
	b, err = os.ReadFile("sysctl.d/60-hanat.conf")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"net.ipv4.ip_forward = 1", "net.ipv4.conf.all.rp_filter = 2", "net.ipv4.conf.all.send_redirects = 0"} {
		if !hasLine(string(b), l) {
			t.Errorf("sysctl.d lacks %q", l)
		}
	}
}

func hasLine(s, want string) bool {
	for l := range strings.Lines(s) {
		if strings.TrimSpace(l) == want {
			return true
		}
	}
	return false
}

// TestManPages renders both pages with man(1) and wants no warning.
func TestManPages(t *testing.T) {
	testtool.Require(t, "man") // man-db, which `make deps` installs
	for _, page := range []string{"man/hanatd.8", "man/hanatctl.8"} {
		cmd := exec.Command("man", "--warnings", "-l", "-Tutf8", page)
		cmd.Env = append(os.Environ(), "MANWIDTH=80")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Errorf("man %s: %v\n%s", page, err, stderr.String())
		}
		// Strip the overstrike bold/underline man prints (X\bX, _\bX).
		text := regexp.MustCompile(".\b").ReplaceAllString(string(out), "")
		if !strings.Contains(text, "EXIT STATUS") {
			t.Errorf("%s has no EXIT STATUS section", page)
		}
	}
}

// TestScripts checks the shell scripts parse (sh -n).
func TestScripts(t *testing.T) {
	scripts, _ := filepath.Glob("scripts/*.sh")
	scripts = append(scripts, "package.sh", "ami/provision.sh")
	for _, s := range scripts {
		if out, err := exec.Command("sh", "-n", s).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", s, err, out)
		}
	}
}

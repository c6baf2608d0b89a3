package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/internal/testtool"
)

// complete runs the generated bash completion for the words of a command
// line (the last one being completed) and returns COMPREPLY.
func complete(t *testing.T, script string, words ...string) []string {
	t.Helper()
	var quoted []string
	for _, w := range words {
		quoted = append(quoted, "'"+strings.ReplaceAll(w, "'", `'\''`)+"'")
	}
	prog := script + "\nCOMP_WORDS=(hanatctl " + strings.Join(quoted, " ") + ")\nCOMP_CWORD=" + strconv.Itoa(len(words)) + "\n_hanatctl\nprintf '%s\\n' \"${COMPREPLY[@]}\"\n"
	out, err := exec.Command("bash", "--norc", "--noprofile", "-c", prog).CombinedOutput()
	if err != nil {
		t.Fatalf("bash completion for %q: %v\n%s", words, err, out)
	}
	return strings.Fields(string(out))
}

func TestBashCompletion(t *testing.T) {
	testtool.Require(t, "bash")
	o := hanatctl(t, "completion", "bash")
	o.want(t, 0)
	script := o.stdout
	if out, err := exec.Command("bash", "-n", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("bash -n: %v\n%s", err, out)
	}
	for _, c := range []struct {
		words []string
		want  string // space-separated, exact
	}{
		{[]string{"st"}, "status"},
		{[]string{"--json", "c"}, "config completion"},
		{[]string{"--socket", "/tmp/x.sock", "ver"}, "version"},
		{[]string{"flows", "--p"}, "--protocol"},
		{[]string{"flows", "--protocol", ""}, "tcp udp icmp"},
		{[]string{"flows", "--protocol", "u"}, "udp"},
		{[]string{"maintenance", "o"}, "on off"},
		{[]string{"maintenance", "on", "o"}, ""},
		{[]string{"completion", ""}, "--json --socket bash zsh"},
		{[]string{"version", "--c"}, "--client"},
		{[]string{"help", "fl"}, "flows"},
		{[]string{"failover", "--table", ""}, ""},
	} {
		got := strings.Join(complete(t, script, c.words...), " ")
		if got != c.want {
			t.Errorf("complete %q = %q, want %q", c.words, got, c.want)
		}
	}
}

func TestZshCompletion(t *testing.T) {
	testtool.Require(t, "zsh")
	o := hanatctl(t, "completion", "zsh")
	o.want(t, 0)
	if !strings.HasPrefix(o.stdout, "#compdef hanatctl\n") {
		t.Errorf("zsh script does not start with #compdef: %.40q", o.stdout)
	}
	f := filepath.Join(t.TempDir(), "_hanatctl")
	if err := os.WriteFile(f, []byte(o.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("zsh", "-n", f).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	// Sourced after compinit, it registers itself for hanatctl.
	cmd := exec.Command("zsh", "-f", "-c", `autoload -U compinit && compinit -u -D && source "$1" && print -r -- ${_comps[hanatctl]}`, "zsh", f)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "_hanatctl" {
		t.Fatalf("zsh: source the script: %v: %q", err, out)
	}
	for _, want := range []string{"'maintenance:", "'1:argument:(on off)'", ":protocol:(tcp udp icmp)", "'--client["} {
		if !strings.Contains(o.stdout, want) {
			t.Errorf("zsh script lacks %q", want)
		}
	}
}

func TestCompletionUnknownShell(t *testing.T) {
	hanatctl(t, "completion", "fish").want(t, exitUsage)
	hanatctl(t, "completion").want(t, exitUsage)
}

func TestVersion(t *testing.T) {
	sock := startDaemon(t, &fakeBackend{})
	o := hanatctl(t, "--socket", sock, "version")
	o.want(t, 0)
	if !strings.HasPrefix(o.stdout, "hanatctl ") || !strings.Contains(o.stdout, "hanatd   0.1.0-test\n") {
		t.Errorf("version:\n%s", o.stdout)
	}
	o = hanatctl(t, "--socket", sock, "--json", "version")
	o.want(t, 0)
	var vi versionInfo
	if err := json.Unmarshal([]byte(o.stdout), &vi); err != nil || vi.Daemon != "0.1.0-test" || vi.Client == "" || vi.API != "1" {
		t.Errorf("version --json: %v %+v\n%s", err, vi, o.stdout)
	}
	// No daemon: the client's version, and exit 1 (--client: 0).
	gone := filepath.Join(t.TempDir(), "none.sock")
	o = hanatctl(t, "--socket", gone, "version")
	o.want(t, exitError)
	if !strings.HasPrefix(o.stdout, "hanatctl ") || strings.Contains(o.stdout, "hanatd ") {
		t.Errorf("version without a daemon:\n%s", o.stdout)
	}
	o = hanatctl(t, "--socket", gone, "version", "--client")
	o.want(t, 0)
	o = hanatctl(t, "--socket", gone, "version", "--json", "--client")
	o.want(t, 0)
	vi = versionInfo{}
	if err := json.Unmarshal([]byte(o.stdout), &vi); err != nil || vi.Daemon != "" || vi.Error != "" {
		t.Errorf("version --client --json: %v %+v", err, vi)
	}
}

// trafficBackend adds the NAT gateway metrics and a CloudWatch publisher
// to the fake status.
type trafficBackend struct{ fakeBackend }

func (b *trafficBackend) Status(ctx context.Context) (admin.Status, error) {
	st, err := b.fakeBackend.Status(ctx)
	st.Traffic = admin.Traffic{BytesInFromSource: 123456, PacketsInFromSource: 321, BytesInFromDestination: 654321,
		PacketsInFromDestination: 432, ConnectionAttempts: 9, ConnectionsEstablished: 8, PortAllocationErrors: 2,
		IdleTimeouts: 5, PacketsDropped: map[string]uint64{"invalid": 1, "unsolicited": 6}, Fastpath: "off"}
	st.CloudWatch = &admin.CloudWatchStatus{Namespace: "hanat", InstanceID: "i-0abc", Interval: "1m0s", Publications: 4, LastError: "throttled"}
	return st, err
}

func TestStatusTraffic(t *testing.T) {
	sock := startDaemon(t, &trafficBackend{})
	o := hanatctl(t, "--socket", sock, "status")
	o.want(t, 0)
	for _, want := range []string{"Traffic (NAT gateway metrics", "123456", "654321", "9 / 8", "port allocation errors:", "idle timeouts:",
		"packets dropped:", "hanat, InstanceId i-0abc, every 1m0s, 4 batches, last never", "CloudWatch error:", "throttled"} {
		if !strings.Contains(o.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, o.stdout)
		}
	}
	o = hanatctl(t, "--socket", sock, "--json", "status")
	o.want(t, 0)
	var st admin.Status
	if err := json.Unmarshal([]byte(o.stdout), &st); err != nil || st.Traffic.IdleTimeouts != 5 || st.CloudWatch == nil {
		t.Errorf("status --json traffic: %v %+v", err, st.Traffic)
	}
}

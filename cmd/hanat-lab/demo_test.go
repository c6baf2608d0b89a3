package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/hanat/hanat/internal/testtool"
)

// demoBins builds hanatd and hanatctl for the demo.
func demoBins(t *testing.T) (hanatd, hanatctl string) {
	t.Helper()
	dir := t.TempDir()
	for _, b := range []string{"hanatd", "hanatctl"} {
		if out, err := exec.Command("go", "build", "-o", filepath.Join(dir, b), "github.com/hanat/hanat/cmd/"+b).CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", b, err, out)
		}
	}
	return filepath.Join(dir, "hanatd"), filepath.Join(dir, "hanatctl")
}

// runDemo runs `hanat-lab demo` with args and returns its output and exit
// code; the lab must be gone afterwards, whatever the outcome.
func runDemo(t *testing.T, args ...string) (string, int) {
	t.Helper()
	// The lab needs ip and nft; the story's NAT binding line, conntrack.
	testtool.Require(t, "ip", "nft", "conntrack")
	hanatd, hanatctl := demoBins(t)
	prefix := testPrefix()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := cliCmd(ctx, append([]string{"demo", "--hanatd", hanatd, "--hanatctl", hanatctl, "--prefix", prefix}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("run the demo: %v\n%s", err, out.String())
		}
		code = ee.ExitCode()
	}
	t.Logf("the demo took %v, exit %d", time.Since(start).Round(time.Second), code)
	assertGone(t, prefix)
	return out.String(), code
}

// TestDemoHAStory runs `make demo`'s story and checks its lines: nat-a's
// crash moves the route and the EIP to nat-c, the download continues as
// sent from the same public IP:port, nat-a takes its table back after the
// hold-down, and the download ends with the server's digest. A download
// that dies or stalls, or a changed public address, fails it.
func TestDemoHAStory(t *testing.T) {
	needRoot(t)
	out, code := runDemo(t)
	if code != 0 {
		t.Fatalf("the demo exited %d:\n%s", code, out)
	}
	for _, want := range []string{
		`the server sees the download coming from (198\.51\.100\.10:\d+) = nat-a's EIP`,
		`nat-c holds \d+ of nat-a's flows`,
		`\+\d\.\d{3}s  nat-c puts the synced flows into its conntrack table: [1-9]\d* injected`,
		`\+\d\.\d{3}s  EIP 198\.51\.100\.10 \(AZ a's public address\) -> nat-c 10\.0\.2\.\d+`,
		`\+\d\.\d{3}s  route table private-a rtb-\w+ 0\.0\.0\.0/0 -> nat-c eni-\w+`,
		`\+\d\.\d{3}s  the download resumes: its longest stall since the crash was \d\.\d{3}s`,
		`nat-c's conntrack: 10\.0\.11\.10:\d+ -> 203\.0\.113\.10:8019 ESTABLISHED, NATed to 10\.0\.2\.\d+:\d+, which the IGW maps to 198\.51\.100\.10`,
		`nat-a and nat-c both up and healthy: the 5s hold-down starts`,
		`\+\d+\.\d{3}s  route table private-a rtb-\w+ 0\.0\.0\.0/0 -> nat-a eni-\w+`,
		`\+\d+\.\d{3}s  EIP 198\.51\.100\.10 \(AZ a's public address\) -> nat-a 10\.0\.1\.10`,
		`download continued, 134217728 bytes, sha256 [0-9a-f]{16}… = the server's: digest ok`,
		`same public IP for new connections: a fresh request from app-a reaches the server as 198\.51\.100\.10`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("the demo's output has no line matching %q", want)
		}
	}
	// Twice, after the crash and after the failback: the server's socket
	// still talks to the address it saw first.
	first := regexp.MustCompile(`the server sees the download coming from (198\.51\.100\.10:\d+)`).FindStringSubmatch(out)
	if first != nil {
		same := regexp.MustCompile(`same public IP:port: the server's socket still talks to ` + regexp.QuoteMeta(first[1]) + ` `)
		if n := len(same.FindAllString(out, -1)); n != 2 {
			t.Errorf("want the same public IP:port %s twice (after the crash, after the failback), got %d", first[1], n)
		}
	}
	if t.Failed() {
		t.Logf("the demo's output:\n%s", out)
	}
}

// TestDemoWithoutSyncFails: with the state sync off (ha.sync: false) the
// route and the EIP still move, but nat-c has no conntrack entry for the
// download, so it dies; the demo must say so and exit non-zero.
func TestDemoWithoutSyncFails(t *testing.T) {
	needRoot(t)
	out, code := runDemo(t, "--sync=false")
	if code == 0 {
		t.Fatalf("the demo without the state sync exited 0:\n%s", out)
	}
	if !regexp.MustCompile(`FAILED: after the crash: the download (is stuck at \d+ bytes|broke after \d+ bytes)`).MatchString(out) {
		t.Errorf("the demo does not say the download died after the crash:\n%s", out)
	}
	if regexp.MustCompile(`digest ok`).MatchString(out) {
		t.Errorf("the demo without the state sync claims a complete download:\n%s", out)
	}
}

// TestDemoGWLBStory runs `make demo DEMO_ARGS=--gwlb` and checks its
// lines: three healthy targets share the flows, each under its own EIP;
// nat-c's crash makes it unhealthy and new flows go to the two others
// while the survivors' flows go on; nat-a2's drain fails its check, keeps
// its flows and exits after the deregistration delay.
func TestDemoGWLBStory(t *testing.T) {
	needRoot(t)
	testtool.Require(t, "ethtool")
	out, code := runDemo(t, "--gwlb")
	if code != 0 {
		t.Fatalf("the demo exited %d:\n%s", code, out)
	}
	for _, want := range []string{
		`route table private-a rtb-\w+: 0\.0\.0\.0/0 -> GWLB endpoint vpce-\w+`,
		`all three targets healthy`,
		`240 of 240 flows echoed`,
		`\+\d\.\d{3}s  the GWLB marks nat-c unhealthy`,
		`60 new flows, all echoed: nat-a [1-9]\d*, nat-a2 [1-9]\d*, nat-c 0 `,
		`\+\d\.\d{3}s  nat-a2 fails its health check`,
		`\+\d\.\d{3}s  hanatd on nat-a2 exits, after the 3s delay`,
		`done: no namespace, link or process of the lab is left`,
	} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("the demo's output has no line matching %q", want)
		}
	}
	// Twice (the flows shared, after the crash): every member carries
	// flows under its own EIP.
	for _, m := range []string{"nat-a", "nat-c", "nat-a2"} {
		re := regexp.MustCompile(`target ` + m + ` +\w+ +([1-9]\d*) flows \(its conntrack: +([1-9]\d*)\), NATed under (198\.51\.100\.\d+) \(the echo server saw ([1-9]\d*) sources`)
		if n := len(re.FindAllString(out, -1)); n != 2 {
			t.Errorf("want 2 count lines (shared, after the crash) of target %s carrying flows, got %d", m, n)
		}
	}
	if s := regexp.MustCompile(`the survivors' (\d+) flows: (\d+) still echoed`).FindStringSubmatch(out); s == nil || s[1] != s[2] || s[1] == "0" {
		t.Errorf("the survivors' flows after the crash: %v", s)
	}
	// Twice while it drains (at once, halfway through the delay): all the
	// drained member's flows are echoed.
	drained := regexp.MustCompile(`(\d+) of its (\d+) flows still echoed while it drains`).FindAllStringSubmatch(out, -1)
	if len(drained) != 2 {
		t.Errorf("want 2 lines of the drained member's flows, got %v", drained)
	}
	for _, s := range drained {
		if s[1] != s[2] || s[1] == "0" {
			t.Errorf("the drained member's flows: %v", s)
		}
	}
	if t.Failed() {
		t.Logf("the demo's output:\n%s", out)
	}
}

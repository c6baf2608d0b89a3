package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go"

	"github.com/hanat/hanat/internal/vpcsim"
)

// The test binary doubles as the hanat-lab binary: with this variable set
// it runs main (so `up` can re-exec it as `serve`).
const asCLIEnv = "HANAT_LAB_TEST_AS_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(asCLIEnv) == "1" {
		os.Exit(mainCode())
	}
	os.Exit(m.Run())
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the lab creates network namespaces")
	}
}

// cli runs the CLI as a subprocess and returns stdout, stderr and the exit code.
func cli(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := cliCmd(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("run hanat-lab %v: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errb.String(), code
}

func cliCmd(ctx context.Context, args ...string) *exec.Cmd {
	self, _ := os.Executable()
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Env = append(os.Environ(), asCLIEnv+"=1")
	return cmd
}

func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errs, code := cli(t, args...)
	if code != 0 {
		t.Fatalf("hanat-lab %v: exit %d\nstdout: %s\nstderr: %s", args, code, out, errs)
	}
	return out
}

func testPrefix() string { return "hnt" + vpcsim.RandomPrefix()[3:] }

// downAtEnd makes sure the lab is gone when the test ends, and checks it.
func downAtEnd(t *testing.T, prefix string) {
	t.Cleanup(func() {
		if _, errs, code := cli(t, "down", "--prefix", prefix); code != 0 {
			t.Errorf("down: exit %d: %s", code, errs)
		}
		assertGone(t, prefix)
	})
}

// assertGone checks that nothing of the lab is left: no namespace, no
// link, no serve process, no run directory.
func assertGone(t *testing.T, prefix string) {
	t.Helper()
	if out, _ := exec.Command("ip", "netns", "list").CombinedOutput(); strings.Contains(string(out), prefix+"-") {
		t.Errorf("namespaces left: %s", out)
	}
	if out, _ := exec.Command("ip", "-o", "link").CombinedOutput(); strings.Contains(string(out), prefix+"-") {
		t.Errorf("links left: %s", out)
	}
	if out, err := exec.Command("nft", "list", "tables").CombinedOutput(); err == nil && strings.Contains(string(out), prefix) {
		t.Errorf("host nftables tables left: %s", out)
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && alive(pid) &&
			slices.Contains(strings.Split(string(b), "\x00"), prefix) {
			t.Errorf("process left: %d %q", pid, b)
		}
	}
	if _, err := os.Stat(labDir(prefix)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run directory %s left (%v)", labDir(prefix), err)
	}
}

func TestCLILifecycle(t *testing.T) {
	needRoot(t)
	prefix := testPrefix()
	downAtEnd(t, prefix)
	out := mustCLI(t, "up", "--prefix", prefix, "--nat-instances", "1", "--point-routes", "--json")
	var st vpcsim.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("up --json: %v\n%s", err, out)
	}
	if st.Prefix != prefix || len(st.Instances) != 3 || st.EC2Endpoint == "" || st.Credentials.AccessKeyID == "" || st.GWLB != nil {
		t.Fatalf("status after up: %+v", st)
	}
	if _, _, code := cli(t, "up", "--prefix", prefix); code == 0 {
		t.Error("a second up of the same prefix succeeded")
	}

	// The human status names the instances and the credentials.
	human := mustCLI(t, "status", "--prefix", prefix)
	for _, want := range []string{"nat-a", "app-a", "private-a", st.Credentials.AccessKeyID, st.EC2Endpoint} {
		if !strings.Contains(human, want) {
			t.Errorf("status lacks %q:\n%s", want, human)
		}
	}

	// exec runs inside the instance's namespace and passes the exit code.
	if out := mustCLI(t, "exec", "--prefix", prefix, "app-a", "--", "ip", "-o", "-4", "addr", "show", "dev", "eth0"); !strings.Contains(out, "10.0.11.10/24") {
		t.Errorf("exec ip addr in app-a: %q", out)
	}
	if out := mustCLI(t, "exec", "--prefix", prefix, "app-a", "--", "sh", "-c", "echo $AWS_ENDPOINT_URL_EC2"); strings.TrimSpace(out) != st.VPCEndpoint {
		t.Errorf("exec: AWS_ENDPOINT_URL_EC2 = %q, want %q", out, st.VPCEndpoint)
	}
	if _, _, code := cli(t, "exec", "--prefix", prefix, "app-a", "--", "sh", "-c", "exit 3"); code != 3 {
		t.Errorf("exec exit code = %d, want 3", code)
	}
	if _, _, code := cli(t, "exec", "--prefix", prefix, "nobody", "--", "true"); code != 1 {
		t.Errorf("exec in an unknown instance: exit %d, want 1", code)
	}

	// The EC2 API on host loopback answers the SDK; API faults through the CLI.
	api := ec2.New(ec2.Options{Region: st.Region, BaseEndpoint: aws.String(st.EC2Endpoint),
		Credentials: credentials.NewStaticCredentialsProvider(st.Credentials.AccessKeyID, st.Credentials.SecretAccessKey, "")})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := api.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{}); err != nil {
		t.Fatalf("DescribeVpcs: %v", err)
	}
	mustCLI(t, "faults", "api", "--prefix", prefix, "--throttle", "1", "--actions", "DescribeVpcs")
	_, err := api.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{}, func(o *ec2.Options) { o.RetryMaxAttempts = 1 })
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "RequestLimitExceeded" {
		t.Errorf("DescribeVpcs under --throttle 1: %v", err)
	}
	mustCLI(t, "faults", "api", "--prefix", prefix)
	if _, err := api.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{}); err != nil {
		t.Errorf("DescribeVpcs after faults cleared: %v", err)
	}

	// Partitions show in the status and heal.
	mustCLI(t, "faults", "partition", "--prefix", prefix, "nat-a", "app-a", "--proto", "udp", "--port", "7946")
	if got := status(t, prefix).Partitions; len(got) != 1 || got[0].Port != 7946 || got[0].Proto != "udp" {
		t.Errorf("partitions after `faults partition`: %+v", got)
	}
	if _, _, code := cli(t, "faults", "partition", "--prefix", prefix, "nat-a", "nobody"); code != 1 {
		t.Errorf("partition with an unknown instance: exit %d, want 1", code)
	}
	mustCLI(t, "faults", "heal", "--prefix", prefix)
	if got := status(t, prefix).Partitions; len(got) != 0 {
		t.Errorf("partitions after heal: %+v", got)
	}

	// stop kills what runs in the instance; start brings it back.
	sleeper := cliCmd(context.Background(), "exec", "--prefix", prefix, "app-a", "--", "sleep", "300")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	sleepDone := make(chan struct{})
	go func() { _ = sleeper.Wait(); close(sleepDone) }()
	waitForProcessIn(t, prefix+"-app-a")
	mustCLI(t, "stop", "--prefix", prefix, "app-a")
	select {
	case <-sleepDone:
	case <-time.After(10 * time.Second):
		t.Fatal("a process in app-a survived `stop`")
	}
	if s := instState(status(t, prefix), "app-a"); s != "stopped" {
		t.Errorf("app-a state after stop = %q", s)
	}
	mustCLI(t, "start", "--prefix", prefix, "app-a")
	if s := instState(status(t, prefix), "app-a"); s != "running" {
		t.Errorf("app-a state after start = %q", s)
	}
	// crash (= stop --force) kills at once, without a shutdown.
	for _, verb := range [][]string{{"crash"}, {"stop", "--force"}} {
		sleeper := cliCmd(context.Background(), append([]string{}, "exec", "--prefix", prefix, "app-a", "--", "sleep", "300")...)
		if err := sleeper.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { _ = sleeper.Wait(); close(done) }()
		waitForProcessIn(t, prefix+"-app-a")
		mustCLI(t, append(slices.Clone(verb), "--prefix", prefix, "app-a")...)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("a process in app-a survived %v", verb)
		}
		if s := instState(status(t, prefix), "app-a"); s != "stopped" {
			t.Errorf("app-a state after %v = %q", verb, s)
		}
		mustCLI(t, "start", "--prefix", prefix, "app-a")
	}

	// A process left running in the lab is killed by down.
	stray := cliCmd(context.Background(), "exec", "--prefix", prefix, "app-c", "--", "sleep", "300")
	if err := stray.Start(); err != nil {
		t.Fatal(err)
	}
	strayDone := make(chan struct{})
	go func() { _ = stray.Wait(); close(strayDone) }()
	waitForProcessIn(t, prefix+"-app-c")
	mustCLI(t, "down", "--prefix", prefix)
	select {
	case <-strayDone:
	case <-time.After(10 * time.Second):
		t.Fatal("a process in app-c survived `down`")
	}
	assertGone(t, prefix)
}

// waitForProcessIn waits until some process runs inside the namespace.
func waitForProcessIn(t *testing.T, ns string) {
	t.Helper()
	for range 250 {
		if pids, _ := vpcsim.NSProcesses(ns); len(pids) > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no process entered %s", ns)
}

func status(t *testing.T, prefix string) vpcsim.Status {
	t.Helper()
	var st vpcsim.Status
	if err := json.Unmarshal([]byte(mustCLI(t, "status", "--prefix", prefix, "--json")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func instState(st vpcsim.Status, name string) string {
	for _, in := range st.Instances {
		if in.Name == name {
			return in.State
		}
	}
	return ""
}

// `up` killed midway, and a serve process killed after the lab is up:
// `down` removes everything either way.
// TestCLIGWLB: `up --gwlb --nat-instances 3` builds the GWLB with an
// endpoint per AZ as the private route tables' default route and all
// three NATs registered; the pair's lab (no --gwlb) has no GWLB.
func TestCLIGWLB(t *testing.T) {
	needRoot(t)
	prefix := testPrefix()
	downAtEnd(t, prefix)
	out := mustCLI(t, "up", "--prefix", prefix, "--gwlb", "--nat-instances", "3", "--gwlb-interval", "2s", "--gwlb-failover", "rebalance", "--json")
	var st vpcsim.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("up --json: %v\n%s", err, out)
	}
	g := st.GWLB
	if g == nil || len(g.Endpoints) != 2 || len(g.Nodes) != 2 || len(g.Targets) != 3 || g.Attributes.OnDeregistration != "rebalance" ||
		!strings.Contains(g.Attributes.HealthCheck, "TCP:80 every 2s") || g.Attributes.DeregistrationDelay != "5m0s" {
		t.Fatalf("GWLB after up --gwlb: %+v", g)
	}
	for _, tg := range g.Targets {
		if !strings.HasPrefix(tg.Instance, "nat-") || tg.State == "" {
			t.Errorf("target %+v: want a NAT instance with a state", tg)
		}
	}
	for i, rtb := range []string{"private-a", "private-c"} {
		for _, rt := range st.RouteTables {
			if rt.Name != rtb {
				continue
			}
			found := false
			for _, r := range rt.Routes {
				found = found || r.Destination.Bits() == 0 && r.VpcEndpointID == g.Endpoints[i].ID
			}
			if !found {
				t.Errorf("%s has no 0.0.0.0/0 → %s: %+v", rtb, g.Endpoints[i].ID, rt.Routes)
			}
		}
	}
	human := mustCLI(t, "status", "--prefix", prefix)
	for _, want := range []string{"GWLB " + vpcsim.GWLBName, g.Endpoints[0].ID, "TARGET", "nat-a2", "cross-zone false"} {
		if !strings.Contains(human, want) {
			t.Errorf("status lacks %q:\n%s", want, human)
		}
	}
	// Deregistering drains (300 s by default); registering it again is
	// refused while it drains; an instance that is no target is an error.
	mustCLI(t, "gwlb", "deregister", "--prefix", prefix, "nat-a2")
	for _, tg := range lab(t, prefix).GWLB.Targets {
		if tg.Instance == "nat-a2" && tg.State != "draining" {
			t.Errorf("after deregister nat-a2: %+v", tg)
		}
	}
	if _, _, code := cli(t, "gwlb", "register", "--prefix", prefix, "nat-a2"); code != 1 {
		t.Errorf("register of a draining target: exit %d, want 1", code)
	}
	if _, _, code := cli(t, "gwlb", "deregister", "--prefix", prefix, "app-a"); code != 1 {
		t.Errorf("deregister of app-a, no target: exit %d, want 1", code)
	}
	mustCLI(t, "down", "--prefix", prefix)
}

// lab is the lab's status through the CLI.
func lab(t *testing.T, prefix string) vpcsim.Status {
	t.Helper()
	var st vpcsim.Status
	if err := json.Unmarshal([]byte(mustCLI(t, "status", "--prefix", prefix, "--json")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestCLIDownAfterKill(t *testing.T) {
	needRoot(t)
	for _, after := range []time.Duration{30 * time.Millisecond, 150 * time.Millisecond, 400 * time.Millisecond} {
		t.Run("up killed after "+after.String(), func(t *testing.T) {
			prefix := testPrefix()
			up := cliCmd(context.Background(), "up", "--prefix", prefix)
			if err := up.Start(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(after)
			_ = up.Process.Signal(syscall.SIGKILL)
			_ = up.Wait()
			mustCLI(t, "down", "--prefix", prefix)
			assertGone(t, prefix)
		})
	}
	t.Run("serve killed", func(t *testing.T) {
		prefix := testPrefix()
		mustCLI(t, "up", "--prefix", prefix)
		pid, ok := servePID(prefix)
		if !ok {
			t.Fatal("no serve process after up")
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for range 100 {
			if !alive(pid) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if names, _ := vpcsim.Namespaces(prefix); len(names) == 0 {
			t.Fatal("SIGKILLed serve left no namespaces: the test shows nothing")
		}
		// up again over the leftovers works (it cleans them first) …
		mustCLI(t, "up", "--prefix", prefix)
		// … and down removes it all.
		mustCLI(t, "down", "--prefix", prefix)
		assertGone(t, prefix)
	})
}

func TestParseInterleaved(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		pos, rest []string
		port      uint
	}{
		{[]string{"a", "b", "--port", "7"}, []string{"a", "b"}, nil, 7},
		{[]string{"--port", "7", "a", "b"}, []string{"a", "b"}, nil, 7},
		{[]string{"a", "--port=7", "b"}, []string{"a", "b"}, nil, 7},
		{[]string{"app", "--", "ip", "-o", "a"}, []string{"app"}, []string{"ip", "-o", "a"}, 0},
		{[]string{"--port", "1", "--", "x", "--port"}, nil, []string{"x", "--port"}, 1},
		{[]string{"app", "--port", "2", "--", "sh", "--", "y"}, []string{"app"}, []string{"sh", "--", "y"}, 2},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		port := fs.Uint("port", 0, "")
		pos, rest, err := parseInterleaved(fs, tc.args)
		if err != nil || !slices.Equal(pos, tc.pos) || !slices.Equal(rest, tc.rest) || *port != tc.port {
			t.Errorf("%q: pos %q rest %q port %d err %v; want %q %q %d", tc.args, pos, rest, *port, err, tc.pos, tc.rest, tc.port)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	if _, _, err := parseInterleaved(fs, []string{"--nope"}); err == nil {
		t.Error("unknown flag accepted")
	}
}

func TestUsageErrors(t *testing.T) {
	var out, errb bytes.Buffer
	for _, args := range [][]string{
		nil,
		{"bogus"},
		{"up", "--prefix", "BAD PREFIX"},
		{"up", "--nat-instances", "99", "--prefix", "hntx"},
		{"up", "--gwlb", "--point-routes", "--prefix", "hntx"},
		{"gwlb"},
		{"up", "--gwlb-delay", "1s", "--prefix", "hntx"},
		{"up", "--gwlb", "--gwlb-check", "UDP:6081", "--prefix", "hntx"},
		{"gwlb", "drain", "--prefix", "hntx", "nat-a"},
		{"gwlb", "register", "--prefix", "hntx"},
		{"exec", "--prefix", "hntx", "app-a"},
		{"faults"},
		{"faults", "api", "--throttle", "2", "--prefix", "hntx"},
		{"faults", "partition", "--prefix", "hntx", "a"},
		{"stop", "--prefix", "hntx"},
		{"crash", "--prefix", "hntx"},
		{"crash", "--force", "--prefix", "hntx", "app-a"},
	} {
		out.Reset()
		errb.Reset()
		if code := run(context.Background(), args, &out, &errb); code != 2 {
			t.Errorf("%q: exit %d, want 2 (stderr %s)", args, code, errb.String())
		}
	}
}

func TestLoadConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lab.yaml")
	if err := os.WriteFile(p, []byte("prefix: hntcfg\nnat_instances: 3\npoint_private_routes: true\nspare_eips: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(p)
	if err != nil || c != (labConfig{Prefix: "hntcfg", NATInstances: 3, PointPrivateRoutes: true, SpareEIPs: 2}) {
		t.Fatalf("loadConfig = %+v, %v", c, err)
	}
	if err := os.WriteFile(p, []byte("nat_instance: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadConfig(p); err == nil {
		t.Error("unknown key accepted")
	}
}

package testtool

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hanat/hanat/internal/deptest"
)

const helperEnv = "HNT_TESTTOOL_HELPER"

// TestHelperMissingTool is not a test: TestMissingToolUnderCI runs it in a
// child process, with and without CI.
func TestHelperMissingTool(t *testing.T) {
	switch os.Getenv(helperEnv) {
	case "":
		t.Skip("helper process only")
	case "require":
		Require(t, "sh", "hnt-no-such-tool")
	case "have":
		if Have(t, "hnt-no-such-tool") {
			t.Error("Have reported a missing tool as installed")
		}
	case "whoami":
		t.Logf("HELPER uid=%d gid=%d groups=%v", os.Getuid(), os.Getgid(), must(os.Getgroups()))
	}
	t.Log("HELPER went on")
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// A missing tool skips the test (Require) or leaves out a part (Have), and
// under CI fails it instead.
func TestMissingToolUnderCI(t *testing.T) {
	for _, c := range []struct {
		mode, ci string
		fails    bool
		want     string
	}{
		{"require", "", false, "--- SKIP: TestHelperMissingTool"},
		{"require", "1", true, "not installed: hnt-no-such-tool (CI is set"},
		{"have", "", false, "HELPER went on"},
		{"have", "1", true, "hnt-no-such-tool is not installed (CI is set"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperMissingTool$", "-test.count=1", "-test.v")
		cmd.Env = append(os.Environ(), helperEnv+"="+c.mode, "CI="+c.ci)
		out, err := cmd.CombinedOutput()
		cancel()
		if failed := err != nil; failed != c.fails {
			t.Errorf("%s with CI=%q: failed=%v (%v), want %v\n%s", c.mode, c.ci, failed, err, c.fails, out)
		}
		if !strings.Contains(string(out), c.want) {
			t.Errorf("%s with CI=%q: output lacks %q:\n%s", c.mode, c.ci, c.want, out)
		}
		if c.fails && strings.Contains(string(out), "HELPER went on") {
			t.Errorf("%s with CI=%q: the test went on after the failure:\n%s", c.mode, c.ci, out)
		}
	}
	if m := Missing("sh", "hnt-no-such-tool", "true"); len(m) != 1 || m[0] != "hnt-no-such-tool" {
		t.Errorf("Missing = %q", m)
	}
}

// Unprivileged runs the test binary as uid and gid 65534 with no groups.
func TestUnprivileged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := Unprivileged(ctx, t, "TestHelperMissingTool", helperEnv+"=whoami")
	cmd.Args = append(cmd.Args, "-test.v")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.Contains(string(out), "HELPER uid=65534 gid=65534 groups=[]") {
		t.Errorf("the helper did not run as 65534:65534 without groups:\n%s", out)
	}
	if fi, err := os.Stat(cmd.Dir); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("cmd.Dir %s: %v, %v", cmd.Dir, fi.Mode(), err)
	}
}

func TestImports(t *testing.T) { deptest.Allow(t) }

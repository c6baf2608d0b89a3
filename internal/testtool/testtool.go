// Package testtool is support for hanat's tests that need something from
// the machine: a host tool, a plugin directory, another user. What is
// missing skips the test on a developer's machine and fails it under CI
// (environment variable CI set), where `make deps` must have provided it:
// under CI a missing tool is a failure, never a skip. It also holds the
// bounded wait the tests share (Eventually).
package testtool

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// CI reports whether the tests run under CI (CI set and not empty).
func CI() bool { return os.Getenv("CI") != "" }

// Unavailable ends t because something it needs is missing: t.Fatal under
// CI, t.Skip elsewhere. The message says what is missing.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if CI() {
		t.Fatalf("%s (CI is set: a missing tool is a failure; `make deps` installs the host tools)", msg)
	}
	t.Skip(msg)
}

// Missing returns the tools that are not on PATH, in the order given.
func Missing(tools ...string) []string {
	var missing []string
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	return missing
}

// Require skips t, or fails it under CI, unless every tool is on PATH.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	if m := Missing(tools...); len(m) > 0 {
		Unavailable(t, "not installed: %s", strings.Join(m, ", "))
	}
}

// Have reports whether tool is on PATH, for a test that can leave out the
// part needing it. Under CI a missing tool fails t instead.
func Have(t testing.TB, tool string) bool {
	t.Helper()
	if len(Missing(tool)) == 0 {
		return true
	}
	if CI() {
		t.Fatalf("%s is not installed (CI is set: a missing tool is a failure; `make deps` installs the host tools)", tool)
	}
	t.Logf("%s is not installed: the part of the test that needs it is left out", tool)
	return false
}

// Nobody is the unprivileged uid and gid Unprivileged runs a process as.
const Nobody = 65534

// Unprivileged returns a command that runs this test binary again, as uid
// and gid 65534 with no supplementary groups, running only the test named
// test (the caller's helper, which must skip itself unless it finds one of
// env). The copy of the binary sits in a fresh 0755 directory, cmd.Dir, so
// the other uid can execute it (go test's build directory is private);
// the caller may put files that uid needs to reach there too. The
// directory is removed when t ends. Only root can run it: without root it
// skips t, whatever CI says (CI runs as root).
func Unprivileged(ctx context.Context, t testing.TB, test string, env ...string) *exec.Cmd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a process as uid 65534")
	}
	dir, err := os.MkdirTemp("", "hnt-nobody-")
	if err != nil {
		t.Fatalf("temp dir for the unprivileged process: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("chmod %s: %v", dir, err)
	}
	bin := filepath.Join(dir, filepath.Base(os.Args[0]))
	if err := copyExecutable(bin); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, bin, "-test.run=^"+test+"$", "-test.count=1")
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: Nobody, Gid: Nobody, Groups: []uint32{}}}
	return cmd
}

// copyExecutable copies the running test binary to dst, mode 0755.
func copyExecutable(dst string) error {
	src, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the test binary: %w", err)
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("opening the test binary: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return fmt.Errorf("copying the test binary: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying the test binary to %s: %w", dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copying the test binary to %s: %w", dst, err)
	}
	return nil
}

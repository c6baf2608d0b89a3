package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hanat/hanat/admin"
)

// TestReloadRefused: a reload hanatd refuses because the file changes
// keys that need a restart exits 6 with hanatd's message naming them, in
// both output modes; an applied reload exits 0.
func TestReloadRefused(t *testing.T) {
	b := &fakeBackend{err: fmt.Errorf("reload /etc/hanat/hanat.yaml: ha.peer, cloud.region: %w", admin.ErrRestartNeeded)}
	path := startDaemon(t, b)
	for _, args := range [][]string{{"reload"}, {"--json", "reload"}} {
		o := hanatctl(t, append([]string{"--socket", path}, args...)...)
		o.want(t, exitRestartNeeded)
		if !strings.Contains(o.stderr, "reload refused") || !strings.Contains(o.stderr, "ha.peer, cloud.region: need a restart") ||
			!strings.Contains(o.stderr, "nothing was applied") {
			t.Errorf("%v: stderr %q does not name the keys", args, o.stderr)
		}
	}
	b.mu.Lock()
	b.err = nil
	b.mu.Unlock()
	hanatctl(t, "--socket", path, "reload").want(t, exitOK)
	if o := hanatctl(t, "help"); !strings.Contains(o.stdout, "6  reload refused") {
		t.Errorf("help does not document exit code 6:\n%s", o.stdout)
	}
}

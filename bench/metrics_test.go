package bench

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildHanatd builds cmd/hanatd for the /metrics answer time.
func buildHanatd(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hanatd")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/hanat/hanat/cmd/hanatd").CombinedOutput(); err != nil {
		t.Fatalf("go build hanatd: %v\n%s", err, out)
	}
	return bin
}

// TestMetricsAnswerTime runs the /metrics figure alone (RunMetrics, as
// hanat-bench -metrics-only does) on small tables: the real hanatd counts
// the ctnetlink-made flows as its own (the scrape checks
// hanat_active_connections) and each size gets its figures.
func TestMetricsAnswerTime(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace and conntrack entries, runs hanatd")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var logs strings.Builder
	rep, err := RunMetrics(ctx, slog.New(slog.NewTextHandler(&logs, nil)), Options{
		Hanatd: buildHanatd(t), MetricsFlows: []int{2000, 500}, MetricsScrapes: 3,
	})
	if err != nil {
		t.Fatalf("RunMetrics: %v\nlog:\n%s", err, logs.String())
	}
	for _, n := range []string{"500", "2k"} {
		for _, name := range []string{MMetricsPrefix + n, MMetricsPrefix + n + MetricsMaxSuffix, MCensusPrefix + n} {
			if v, ok := rep.Get(name, ModeNftables); !ok || v <= 0 {
				t.Errorf("%s not measured (%v, %v)", name, v, ok)
			}
		}
	}
	var targets []string
	for _, tg := range rep.Targets {
		if strings.HasPrefix(tg.Name, "/metrics") {
			targets = append(targets, tg.Name)
			if tg.Ratio == nil {
				t.Errorf("target %q not evaluated", tg.Name)
			}
		}
	}
	if strings.Join(targets, "|") != "/metrics slowest answer, ms, 2k flows|/metrics answer 2k / 500 flows" {
		t.Errorf("/metrics targets %q", targets)
	}
}

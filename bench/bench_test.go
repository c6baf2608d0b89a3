package bench

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/hanat/hanat/internal/testtool"
)

// TestMain lets the test binary serve as the benchmark's helper processes
// (the short-connection client and server).
func TestMain(m *testing.M) {
	MaybeRunHelper()
	os.Exit(m.Run())
}

// TestSmoke runs the whole harness with tiny durations: every mode is set
// up, carries traffic and is torn down, the program costs run. It checks
// that figures were produced, never how large they are.
func TestSmoke(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, attaches XDP, loads nftables and iptables rules")
	}
	if testing.Short() {
		t.Skip("smoke run of the benchmark harness takes ~10s")
	}
	modes := []Mode{ModeNftables, ModeFastpath}
	// A missing tool leaves its part out, and fails the test under CI.
	if testtool.Have(t, "iptables-legacy") {
		modes = append(modes, ModeIptablesLegacy)
	}
	skipTCP := !testtool.Have(t, "iperf3")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	rep, err := Run(ctx, log, Options{
		Modes:        modes,
		Flows:        64,
		PPSDuration:  200 * time.Millisecond,
		Rounds:       1,
		SkipTCP:      skipTCP,
		TCPDuration:  time.Second,
		ConnDuration: 300 * time.Millisecond,
		ConnWorkers:  2,
		CostRounds:   1,
		ScaleFlows:   []int{1000},
		// The /metrics answer time with the real hanatd, tiny tables.
		Hanatd:         buildHanatd(t),
		MetricsFlows:   []int{1000, 5000},
		MetricsScrapes: 3,
		// The state sync has its own smoke test (TestSyncFigures).
		SkipSync: true,
	})
	if err != nil {
		t.Fatalf("Run: %v\nlog:\n%s", err, logBuf.String())
	}
	if len(rep.Notes) > 1 { // the memory note is expected
		t.Errorf("notes: %q\nlog:\n%s", rep.Notes, logBuf.String())
	}
	for _, m := range modes {
		if v, ok := rep.Get(MUDPPPS, m); !ok || v <= 0 {
			t.Errorf("%s: no UDP packets arrived (%v, %v)", m, v, ok)
		}
		if skipTCP {
			continue
		}
		if v, ok := rep.Get(MTCPBulk, m); !ok || v <= 0 {
			t.Errorf("%s: no TCP throughput (%v, %v)", m, v, ok)
		}
		if v, ok := rep.Get(MConnRate, m); !ok || v <= 0 {
			t.Errorf("%s: no short connections (%v, %v)", m, v, ok)
		}
	}
	if v, ok := rep.Get(MTCPBulkXDP, ModeFastpath); !skipTCP && (!ok || v <= 0) {
		t.Errorf("the XDP program forwarded none of the TCP stream (%v, %v)", v, ok)
	}
	for _, name := range []string{MUDPPPS1, MCeiling, MCeiling1} {
		if v, ok := rep.Get(name, ModeFastpath); !ok || v <= 0 {
			t.Errorf("%s not measured (%v, %v)", name, v, ok)
		}
	}
	if v, ok := rep.Get(MFastShare, ModeFastpath); !ok || v < 50 {
		t.Errorf("fast path carried %v%% of the UDP arrivals (measured %v), want most", v, ok)
	}
	for _, name := range []string{MProgHit, MProgFloor, MProgLookup, scaleName(1000), scaleName(1000) + scaleLookupInfix, MMemPerFlow} {
		if v, ok := rep.Get(name, ModeFastpath); !ok || v <= 0 {
			t.Errorf("%s not measured (%v, %v)", name, v, ok)
		}
	}
	for _, name := range []string{metricsName(1000), metricsName(5000), metricsName(5000) + MetricsMaxSuffix, MCensusPrefix + "5k"} {
		if v, ok := rep.Get(name, ModeNftables); !ok || v <= 0 {
			t.Errorf("%s not measured (%v, %v)", name, v, ok)
		}
	}
	var table, js bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	t.Logf("smoke figures (tiny durations, not a benchmark):\n%s", table.String())
}

package bench

import (
	"context"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/internal/testtool"
)

// TestSyncFigures runs the state sync figures alone (RunSync, as
// hanat-bench -sync-only does) at small sizes: 2k flows synced, held and
// injected in namespaces, and a short storm in both hanat modes. It
// checks that every figure was produced, that the probes reached the
// receiver, and that the targets were evaluated; never how fast.
func TestSyncFigures(t *testing.T) {
	if os.Geteuid() != 0 {
		testtool.Unavailable(t, "needs root: creates network namespaces, conntrack entries, attaches XDP")
	}
	if testing.Short() {
		t.Skip("the state sync figures take ~20s")
	}
	testtool.Require(t, "ip", "ethtool", "conntrack", "sysctl", "nice")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var logs strings.Builder
	const n, rate = 2000, 2000
	rep, err := RunSync(ctx, slog.New(slog.NewTextHandler(&logs, nil)), Options{
		Modes:     []Mode{ModeNftables, ModeFastpath},
		SyncFlows: n, StormRate: rate, StormDuration: 500 * time.Millisecond, StormRounds: 1, StormWorkers: 4,
	})
	if err != nil {
		t.Fatalf("RunSync: %v\nlog:\n%s", err, logs.String())
	}
	if v, ok := rep.Get(MSyncFlows, ModeNftables); !ok || v != n {
		t.Errorf("%s = %v (%v), want %d", MSyncFlows, v, ok, n)
	}
	for _, name := range []string{MSyncFull, MSyncDump, MSyncHeldMem, MSyncInject, MSyncInjectHeld, MSyncInjectRewrite,
		MSyncInjectWrite, MSyncInjectSteps, MSyncBareCreate} {
		if v, ok := rep.Get(name, ModeNftables); !ok || v <= 0 {
			t.Errorf("%s not measured (%v, %v)", name, v, ok)
		}
	}
	if v, _ := rep.Get(MSyncHeldMem, ModeNftables); v > 10_000 {
		t.Errorf("%s = %v: not what the receiver holds", MSyncHeldMem, v)
	}
	for _, m := range []Mode{ModeNftables, ModeFastpath} {
		for _, name := range []string{MStormOff, MStormBare, MStormOn, MStormRatioOn, MStormRatioBare, MStormCPUOn, MStormProbes} {
			if v, ok := rep.Get(name, m); !ok || v <= 0 {
				t.Errorf("%s %s not measured (%v, %v)", m, name, v, ok)
			}
		}
		// The clients are paced to the offered rate.
		if v, _ := rep.Get(MStormOff, m); v > 1.2*rate {
			t.Errorf("%s storm with sync off: %v conn/s, offered %d", m, v, rate)
		}
		// Most probes reached the receiver (a loaded machine may delay
		// some past the hold): the median is a measured lag.
		for _, name := range []string{MStormLagP50, MStormEventLagP50} {
			if v, ok := rep.Get(name, m); !ok || v >= float64(probeHold.Milliseconds()) {
				t.Errorf("%s %s = %v (%v): most probes were not seen\nnotes: %q", m, name, v, ok, rep.Notes)
			}
		}
	}
	var evaluated int
	for _, tg := range rep.Targets {
		if strings.Contains(tg.Name, "sync") || strings.Contains(tg.Name, "inject") || strings.Contains(tg.Name, "held flow") {
			if tg.Met == nil {
				t.Errorf("target %q not evaluated", tg.Name)
			}
			evaluated++
		}
	}
	if evaluated != 7 {
		t.Errorf("%d sync targets, want 7 (full sync, memory, inject, lag and rate in two modes): %+v", evaluated, rep.Targets)
	}
}

func TestSyncTargetsAndBounds(t *testing.T) {
	r := newReport()
	r.set(MSyncFlows, ModeNftables, 250_000)
	r.set(MSyncFull, ModeNftables, 2.5)
	r.set(MSyncDump, ModeNftables, 2)
	r.set(MSyncHeldMem, ModeNftables, 201)
	r.set(MSyncInject, ModeNftables, 1.7)
	r.set(MSyncInjectWrite, ModeNftables, 1.1)
	r.set(MSyncBareKernel, ModeNftables, 0.7)
	r.set(MStormOff, ModeFastpath, 5000)
	r.set(MStormOn, ModeFastpath, 4000) // the median of the rounds' ratios decides, not this
	r.set(MStormRatioOn, ModeFastpath, 0.9)
	r.set(MStormRatioBare, ModeFastpath, 0.98)
	r.set(MStormLagP99, ModeFastpath, 200)
	r.evalTargets()
	met := map[string]*bool{}
	for _, tg := range r.Targets {
		met[tg.Name] = tg.Met
	}
	for name, want := range map[string]bool{
		"full sync of 250k flows, s":              true,
		"receiver memory per held flow, bytes":    false,
		"inject 250k flows at takeover, s":        false,
		"storm sync lag p99, ms (fastpath)":       true, // the bound is inclusive
		"storm new conn/s sync on/off (fastpath)": true, // inclusive
	} {
		if got := met[name]; got == nil {
			t.Errorf("target %q not evaluated, want met %v", name, want)
		} else if *got != want {
			t.Errorf("target %q met = %v, want %v", name, *got, want)
		}
	}
	if got := met["storm new conn/s sync on/off (nftables)"]; got != nil {
		t.Errorf("unmeasured nftables storm target evaluated: %v", *got)
	}
	bounds := map[string][]float64{}
	for _, b := range r.Bounds {
		bounds[b.Target] = append(bounds[b.Target], *b.Ratio)
	}
	if b := bounds["inject 250k flows at takeover, s"]; len(b) != 2 || b[0] != 1.1 || b[1] != 0.7 {
		t.Errorf("inject bounds %v, want the write alone 1.1 and the bare kernel 0.7", b)
	}
	if b := bounds["storm new conn/s sync on/off (fastpath)"]; len(b) != 1 || b[0] != 0.98 {
		t.Errorf("storm bounds %v, want bare/off 0.98", b)
	}
	if b := bounds["full sync of 250k flows, s"]; len(b) != 1 || b[0] != 2 {
		t.Errorf("full sync bounds %v, want the dump's 2", b)
	}
}

func TestLagPercentile(t *testing.T) {
	vs := []float64{5, 1, 3, 2, 4}
	for _, c := range []struct {
		n     int
		p     float64
		want  float64
		short bool
	}{
		{5, 50, 3, false},
		{5, 99, 5, false},
		{10, 50, 5, false}, // the 5th of 10
		{10, 99, float64(probeHold.Milliseconds()), true}, // among the unseen
		{200, 1, 2, false}, // rank 2 of 200: ceil(0.01*200), the second smallest
		{1000, 1, float64(probeHold.Milliseconds()), true}, // rank 10, only 5 seen
	} {
		got, short := lagPercentile(vs, c.n, c.p)
		if got != c.want || short != c.short {
			t.Errorf("lagPercentile(%v, %d, %v) = %v, %v; want %v, %v", vs, c.n, c.p, got, short, c.want, c.short)
		}
	}
}

// TestProbesSightings: a sighting counts once per probe and kind, an early
// one (before the connect returned) as lag 0, an early one from before
// the dial (another flow with that tuple) not at all, and one past the
// hold not as a lag.
func TestProbesSightings(t *testing.T) {
	tuple := func(port uint16) conntrack.Tuple {
		return conntrack.Tuple{Proto: unix.IPPROTO_TCP, Src: netip.AddrPortFrom(privAddr, port), Dst: netip.AddrPortFrom(inetAddr, probePort)}
	}
	t0 := time.Unix(1000, 0)
	p := newProbes()
	p.add(tuple(1), t0, t0.Add(time.Millisecond))
	if !p.waiting(sightEvent) || !p.waiting(sightHeld) {
		t.Fatal("a new probe waits for both sightings")
	}
	p.seen(sightEvent, tuple(1), t0.Add(6*time.Millisecond))
	p.seen(sightEvent, tuple(1), t0.Add(9*time.Millisecond)) // again: ignored
	p.seen(sightHeld, tuple(1), t0.Add(11*time.Millisecond))
	if p.waiting(sightEvent) || p.waiting(sightHeld) {
		t.Error("the probe still waits after both sightings")
	}

	p.seen(sightEvent, tuple(2), t0.Add(20*time.Millisecond)) // before its connect returned
	p.seen(sightEvent, tuple(3), t0.Add(5*time.Millisecond))  // before its dial began
	p.add(tuple(2), t0.Add(19*time.Millisecond), t0.Add(21*time.Millisecond))
	p.add(tuple(3), t0.Add(19*time.Millisecond), t0.Add(21*time.Millisecond))
	p.seen(sightHeld, tuple(3), t0.Add(21*time.Millisecond+probeHold+time.Millisecond)) // too late

	if got, want := p.lags[sightEvent], []float64{5, 0}; !equalFloats(got, want) {
		t.Errorf("event lags %v, want %v", got, want)
	}
	if got, want := p.lags[sightHeld], []float64{10}; !equalFloats(got, want) {
		t.Errorf("held lags %v, want %v", got, want)
	}
	if p.opened != 3 || p.unseen[sightEvent] != 1 || p.unseen[sightHeld] != 1 {
		t.Errorf("opened %d, unseen %v; want 3 opened, one probe (3) without an event, one (2) not held", p.opened, p.unseen)
	}
}

func equalFloats(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-9 {
			return false
		}
	}
	return true
}

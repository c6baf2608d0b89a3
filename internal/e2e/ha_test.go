package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/internal/vpcsim"
	"github.com/hanat/hanat/internal/vpcsim/ec2sim"
)

// The HA pair in the simulated VPC: hanatd on nat-a (AZ a) and nat-c
// (AZ c), each owning its AZ's private route table, a private host per AZ
// fetching a page continuously, 100 ms of EC2 API latency. Outages are
// measured from the probes (the longest gap between two successful
// requests around the event), logged as
//
//	HA-OUTAGE scenario=<name> ms=<n> bound_ms=<bound>
//
// and each one is asserted against the README's bound (checkOutage):
// crash 2 s, crash with a throttled EC2 API 2.5 s, every planned move
// (graceful stop, maintenance on/off, failover, takeover, handback, a
// healed partition) 1 s.
//
// Timings: heartbeat every 200 ms, dead after 5 misses (1 s), hold-down
// 3 s (shortened from the 30 s default so handbacks fit the CI budget),
// health checks every 500 ms. The heartbeat partition lasts the issue's
// 60 s. nat-a is stopped two ways, 5 times each: gracefully (EC2
// StopInstances: the lab runs what hanat-handover.service runs at
// shutdown, `hanatctl maintenance on --wait`, before killing it: the
// outage is one handover, tens of ms) and as a crash (StopInstances
// --force: the outage is the detection floor, dead_after × interval =
// 1 s, plus one ReplaceRoute). Each stop of nat-a also logs its timeline
// (HA-TIMELINE, ms from the stop call) from the probes, the lab's route
// table and nat-c's debug log.

const (
	haHoldDown   = 3 * time.Second
	haPartition  = 60 * time.Second
	haFailRuns   = 5
	haAPILatency = 100 * time.Millisecond
)

type haPair struct {
	root      *testing.T
	lab       *vpcsim.Lab
	dir       string
	key       string
	nodes     map[string]*labNAT
	extra     string // more ha: keys for both nodes
	deadAfter int    // ha.dead_after (missed 200 ms heartbeats)
	probes    map[string]*prober
	rtbA      string
	rtbC      string
	eniA      string
	eniC      string
	stopProbe context.CancelFunc
}

func haConfig(lab *vpcsim.Lab, self, peer, key string, deadAfter int, extra string) string {
	return fmt.Sprintf(`log:
  level: debug
ha:
  peer: %s
  key_file: %s
  interval: 200ms
  dead_after: %d
  preempt: true
  hold_down: %s
  health:
    targets: ["%s:%d"]
    interval: 500ms
    timeout: 500ms
%s`, lab.Instance(peer).PrivateIP, key, deadAfter, haHoldDown, lab.Internet().Addr, vpcsim.InternetHTTPPort, extra)
}

// start runs hanatd on a NAT of the pair. Its process belongs to the
// pair's test (root), not to the subtest that (re)starts it.
func (p *haPair) start(t *testing.T, name string) {
	t.Helper()
	peer := "nat-c"
	if name == "nat-c" {
		peer = "nat-a"
	}
	dir, err := os.MkdirTemp(p.dir, name+"-")
	if err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(dir, "admin.sock")
	cfg := filepath.Join(dir, "hanat.yaml")
	body := fmt.Sprintf("admin:\n  socket: %s\nstate_dir: %s\n%s", socket, filepath.Join(dir, "state"),
		haConfig(p.lab, name, peer, p.key, p.deadAfter, p.extra))
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	proc, err := p.lab.Start(context.Background(), name, bins.hanatd, "--config", cfg)
	if err != nil {
		t.Fatalf("start hanatd in %s: %v", name, err)
	}
	n := &labNAT{proc: proc, socket: socket, client: admin.NewClient(socket)}
	p.nodes[name] = n
	p.root.Cleanup(func() {
		proc.Kill()
		if p.root.Failed() {
			p.root.Logf("hanatd in %s:\n%s", name, proc.Output())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := n.client.Status(ctx)
		cancel()
		if err == nil && st.Ready {
			return
		}
		select {
		case <-proc.Done():
			t.Fatalf("hanatd in %s exited:\n%s", name, proc.Output())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("hanatd in %s not ready within 20s:\n%s", name, proc.Output())
}

func (p *haPair) kill(name string) {
	if n := p.nodes[name]; n != nil {
		n.proc.Kill()
		<-n.proc.Done()
	}
}

func setupHAPair(t *testing.T, extra string) *haPair {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the HA lab needs root (network namespaces)")
	}
	lab := upLab(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "ha.key")
	if err := os.WriteFile(key, []byte("e2e-shared-heartbeat-key-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := &haPair{root: t, lab: lab, deadAfter: 5, dir: dir, key: key, nodes: map[string]*labNAT{}, extra: extra, probes: map[string]*prober{},
		rtbA: lab.RouteTableID("private-a"), rtbC: lab.RouteTableID("private-c"),
		eniA: lab.Instance("nat-a").ENIID, eniC: lab.Instance("nat-c").ENIID}
	// The private route tables carry the tag the IAM policy requires
	// before hanat may write them (discovery of backups looks for it).
	if _, err := labEC2(lab).CreateTags(context.Background(), &ec2.CreateTagsInput{Resources: []string{p.rtbA, p.rtbC},
		Tags: []types.Tag{{Key: aws.String("hanat"), Value: aws.String("")}}}); err != nil {
		t.Fatalf("tag the private route tables: %v", err)
	}
	lab.SetAPIFaults(ec2sim.Faults{Latency: haAPILatency})
	p.start(t, "nat-a")
	p.start(t, "nat-c")
	p.waitRoutes(t, "pair up", 20*time.Second, p.eniA, p.eniC)
	p.waitPeers(t, 20*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	p.stopProbe = cancel
	t.Cleanup(cancel)
	for _, app := range []string{"app-a", "app-c"} {
		pr := &prober{lab: lab, instance: app}
		p.probes[app] = pr
		go pr.run(ctx)
	}
	time.Sleep(time.Second)
	return p
}

// routeTarget is where a lab route table's 0.0.0.0/0 points now.
func routeTarget(lab *vpcsim.Lab, rtb string) string {
	return lab.Status().DefaultRouteENI(rtb)
}

func (p *haPair) waitRoutes(t *testing.T, what string, within time.Duration, a, c string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if routeTarget(p.lab, p.rtbA) == a && routeTarget(p.lab, p.rtbC) == c {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: private-a -> %s (want %s), private-c -> %s (want %s) after %v\n%s", what,
		routeTarget(p.lab, p.rtbA), a, routeTarget(p.lab, p.rtbC), c, within, p.statusDump())
}

func (p *haPair) waitPeers(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		ok := true
		for _, n := range p.nodes {
			st, err := n.client.Status(context.Background())
			if err != nil || st.HA == nil || st.HA.Peer.State != "alive" || !st.HA.Peer.Healthy || !st.HA.Healthy {
				ok = false
			}
		}
		if ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the pair did not see each other alive and healthy within %v\n%s", within, p.statusDump())
}

func (p *haPair) statusDump() string {
	var b strings.Builder
	for name, n := range p.nodes {
		out, err := runCtl(n.socket, "status")
		fmt.Fprintf(&b, "--- %s status (err %v):\n%s\n", name, err, out)
	}
	return b.String()
}

// prober fetches a page from the internet server from a private host
// every 50 ms (each request a fresh flow with a 1 s timeout) and records
// the outcome.
type prober struct {
	lab      *vpcsim.Lab
	instance string
	mu       sync.Mutex
	results  []probe
}

type probe struct {
	start time.Time
	end   time.Time
	ok    bool
	src   netip.Addr
}

func (pr *prober) run(ctx context.Context) {
	sem := make(chan struct{}, 32)
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			continue
		}
		go func() {
			defer func() { <-sem }()
			start := time.Now()
			rctx, cancel := context.WithTimeout(ctx, time.Second)
			src, err := pr.lab.FetchSourceIP(rctx, pr.instance)
			cancel()
			if ctx.Err() != nil {
				return
			}
			pr.mu.Lock()
			pr.results = append(pr.results, probe{start: start, end: time.Now(), ok: err == nil, src: src})
			pr.mu.Unlock()
		}()
	}
}

func (pr *prober) snapshot() []probe {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	out := slices.Clone(pr.results)
	sort.Slice(out, func(i, j int) bool { return out[i].start.Before(out[j].start) })
	return out
}

// outage is the longest gap between two successful requests started in
// [from, to]: the last success before the outage to the first after it.
// It fails the test when no request succeeded after the last failure.
func (pr *prober) outage(t *testing.T, from, to time.Time) time.Duration {
	t.Helper()
	var last time.Time
	var worst time.Duration
	failedSince := false
	for _, r := range pr.snapshot() {
		if r.start.Before(from.Add(-time.Second)) || r.start.After(to) {
			continue
		}
		if !r.ok {
			failedSince = true
			continue
		}
		if !last.IsZero() && r.start.Sub(last) > worst {
			worst = r.start.Sub(last)
		}
		last = r.start
		failedSince = false
	}
	if last.IsZero() || failedSince {
		t.Fatalf("%s: no successful request after the event (window %s .. %s)", pr.instance, from.Format("15:04:05.000"), to.Format("15:04:05.000"))
	}
	return worst
}

// recovered waits until instance has had a few successes after since.
func (pr *prober) recovered(t *testing.T, since time.Time, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		n := 0
		for _, r := range pr.snapshot() {
			if r.start.After(since) && r.ok {
				n++
			}
		}
		if n >= 5 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: requests did not succeed again within %v", pr.instance, within)
}

// sources returns the source addresses the internet saw from successful
// requests started in [from, to].
func (pr *prober) sources(from, to time.Time) map[netip.Addr]int {
	out := map[netip.Addr]int{}
	for _, r := range pr.snapshot() {
		if r.ok && !r.start.Before(from) && !r.start.After(to) {
			out[r.src]++
		}
	}
	return out
}

// The README's outage bounds ("A planned stop vs a crash"), asserted on
// every outage the HA tests measure.
const (
	// haCrashBound: a crash is detected dead_after × interval (1 s) after
	// the last heartbeat, then one ReplaceRoute (100 ms in the lab).
	haCrashBound = 2 * time.Second
	// haThrottledCrashBound: a crash while 30 % of EC2 calls are
	// throttled (a write may need a retry after backoff).
	haThrottledCrashBound = 2500 * time.Millisecond
	// haHandoverBound: a planned move (graceful stop, maintenance on and
	// off, hanatctl failover and takeover, a home table's return by
	// handshake, the handback after a healed partition) is one write
	// while both nodes forward; and a table that does not move is never
	// interrupted.
	haHandoverBound = time.Second
)

// checkOutage logs an outage as HA-OUTAGE and fails the test when it is
// longer than bound.
func checkOutage(t *testing.T, scenario string, d, bound time.Duration) {
	t.Helper()
	t.Logf("HA-OUTAGE scenario=%s ms=%d bound_ms=%d", scenario, d.Milliseconds(), bound.Milliseconds())
	if d > bound {
		t.Errorf("%s: outage %v, want at most %v (the README's bound)", scenario, d.Round(time.Millisecond), bound)
	}
}

// stopNAT stops a NAT instance as EC2 StopInstances does: a graceful
// shutdown in which its hanatd hands its route tables to the peer
// (`hanatctl maintenance on --wait`, as hanat-handover.service runs it),
// then the power goes. With crash, as StopInstances --force (or a host
// failure): hanatd is killed at once and the peer only notices the
// missing heartbeats.
//
// A graceful stop whose handover failed is a test failure unless
// noPeer says there is nobody to hand to.
func (p *haPair) stopNAT(t *testing.T, name string, crash, noPeer bool) time.Time {
	t.Helper()
	at := time.Now()
	stop := p.lab.StopInstance
	if crash {
		stop = p.lab.CrashInstance
	}
	err := stop(context.Background(), name)
	var se *vpcsim.ShutdownError
	switch {
	case err == nil:
	case noPeer && errors.As(err, &se):
		t.Logf("stop %s without a peer: %v", name, err)
	default:
		t.Fatalf("stop %s (crash %v): %v", name, crash, err)
	}
	<-p.nodes[name].proc.Done()
	return at
}

func (p *haPair) startNAT(t *testing.T, name string) {
	t.Helper()
	if err := p.lab.StartInstance(context.Background(), name); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p.start(t, name)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// watchRoute reports when rtb's default route first points at eni (in the
// EC2 model, which the lab's router follows in the same call); zero after
// within.
func (p *haPair) watchRoute(rtb, eni string, within time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	go func() {
		for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
			for _, rt := range p.lab.Model().Snapshot().RouteTables {
				if rt.ID != rtb {
					continue
				}
				for _, r := range rt.Routes {
					if r.Destination.Bits() == 0 && r.NetworkInterfaceID == eni {
						ch <- time.Now()
						return
					}
				}
			}
		}
		ch <- time.Time{}
	}()
	return ch
}

// timeline logs where a failover's outage went, in ms from the stop
// call: the lab stopping nat-a, the successful probes on either side of
// the longest gap between two of them that ends after the stop (the
// outage prober.outage measures, whose window also holds the second
// before; a failed probe is recorded only at its timeout), and
// nat-c's view (last heartbeat, peer declared dead, EC2 calls, its EIP
// associated, route written) from its debug log.
func (p *haPair) timeline(t *testing.T, run int, at, stopped, flip time.Time, pr *prober, natcLog string) {
	t.Helper()
	ms := func(x time.Time) string {
		if x.IsZero() {
			return "?"
		}
		return fmt.Sprintf("%+d", x.Sub(at).Milliseconds())
	}
	var lastOK, firstOK, prev probe
	for _, r := range pr.snapshot() {
		if !r.ok || r.start.Before(at.Add(-time.Second)) {
			continue
		}
		if !prev.start.IsZero() && r.start.After(at) && r.start.Sub(prev.start) > firstOK.start.Sub(lastOK.start) {
			lastOK, firstOK = prev, r
		}
		prev = r
	}
	parts := []string{fmt.Sprintf("HA-TIMELINE run=%d stop_returned=%s last_ok_probe=%s..%s", run, ms(stopped),
		ms(lastOK.start), ms(lastOK.end))}
	for _, line := range strings.Split(natcLog, "\n") {
		var what string
		switch {
		case strings.Contains(line, `msg="peer dead"`):
			what = "dead"
			if i := strings.Index(line, "last_heartbeat="); i >= 0 {
				if hb, err := time.Parse("15:04:05.000", strings.Fields(line[i+len("last_heartbeat="):])[0]); err == nil {
					y, mo, dd := at.Date()
					hb = time.Date(y, mo, dd, hb.Hour(), hb.Minute(), hb.Second(), hb.Nanosecond(), at.Location())
					parts = append(parts, "last_heartbeat="+ms(hb))
				}
			}
		case strings.Contains(line, `msg="ha ec2 call"`):
			what = "ec2(" + logField(line, "call") + " took " + logField(line, "took") + ")"
			if st, err := time.Parse("15:04:05.000", logField(line, "start")); err == nil {
				y, mo, dd := at.Date()
				st = time.Date(y, mo, dd, st.Hour(), st.Minute(), st.Second(), st.Nanosecond(), at.Location())
				what += "@" + ms(st) + " end"
			}
		case strings.Contains(line, `msg="EIP follows its route tables to this node"`):
			what = "eip"
		case strings.Contains(line, "route table now points at this node"):
			what = "written"
		default:
			continue
		}
		lt, err := time.Parse(time.RFC3339Nano, logField(line, "time"))
		if err != nil || lt.Before(at.Add(-2*time.Second)) {
			continue
		}
		parts = append(parts, what+"="+ms(lt))
	}
	parts = append(parts, "route_visible="+ms(flip), fmt.Sprintf("first_ok_probe=%s..%s", ms(firstOK.start), ms(firstOK.end)),
		fmt.Sprintf("outage=%d", firstOK.start.Sub(lastOK.start).Milliseconds()))
	t.Log(strings.Join(parts, " "))
}

// logField returns key's value in a slog text line ("" when absent).
func logField(line, key string) string {
	i := strings.Index(line, " "+key+"=")
	if i < 0 {
		if !strings.HasPrefix(line, key+"=") {
			return ""
		}
		i = -1
	}
	v := line[i+len(key)+2:]
	if strings.HasPrefix(v, `"`) {
		if j := strings.Index(v[1:], `"`); j >= 0 {
			return v[1 : j+1]
		}
	}
	if j := strings.IndexByte(v, ' '); j >= 0 {
		return v[:j]
	}
	return v
}

// stopRuns stops nat-a haFailRuns times (gracefully, or as a crash),
// measures app-a's outage each time and brings nat-a back after the
// hold-down. Outages are logged as HA-OUTAGE scenario=<name>-run<i>,
// <name>-median and <name>-max.
func (p *haPair) stopRuns(t *testing.T, name string, crash bool) {
	appA, appC := p.probes["app-a"], p.probes["app-c"]
	bound := haHandoverBound // the handover unit's maintenance on
	if crash {
		bound = haCrashBound
	}
	var outs []time.Duration
	for run := 1; run <= haFailRuns; run++ {
		flip := p.watchRoute(p.rtbA, p.eniC, 25*time.Second)
		logFrom := len(p.nodes["nat-c"].proc.Output())
		natA := p.nodes["nat-a"].proc
		rewrites := p.counter(t, "nat-c", "handover_rewrites")
		at := p.stopNAT(t, "nat-a", crash, false)
		stopped := time.Now()
		if !crash {
			// The handover finished before the power went: private-a
			// already points at nat-c when the stop returns.
			if got := routeTarget(p.lab, p.rtbA); got != p.eniC {
				t.Errorf("run %d: graceful stop returned with private-a -> %s, want nat-c's %s (handed over first)\nnat-a:\n%s",
					run, got, p.eniC, lastLines(natA.Output(), 30))
			}
			t.Logf("run %d: graceful stop (handover + shutdown) took %v", run, stopped.Sub(at).Round(time.Millisecond))
			// nat-c wrote private-a when nat-a handed it over, its EIP
			// right before: not later, when a describe found the route
			// still at nat-a (its EIP had moved at the claim, app-a's new
			// flows through nat-a had no public address until then).
			if n := p.counter(t, "nat-c", "handover_rewrites"); n != rewrites {
				t.Errorf("run %d: nat-c's handover_rewrites %d -> %d: private-a was written only after a describe showed it still at nat-a",
					run, rewrites, n)
			}
		}
		p.waitRoutes(t, name, 10*time.Second, p.eniC, p.eniC)
		appA.recovered(t, at, 10*time.Second)
		d := appA.outage(t, at, time.Now())
		outs = append(outs, d)
		checkOutage(t, fmt.Sprintf("%s-run%d", name, run), d, bound)
		p.timeline(t, run, at, stopped, <-flip, appA, p.nodes["nat-c"].proc.Output()[logFrom:])

		back := time.Now()
		p.startNAT(t, "nat-a")
		p.waitRoutes(t, "nat-a back", haHoldDown+15*time.Second, p.eniA, p.eniC)
		returned := time.Now()
		appA.recovered(t, returned, 10*time.Second)
		// From nat-a's start: app-a is served by nat-c all along, and a
		// gap that began before the route showed up in the lab's status
		// still counts (a window from the flip would miss its start).
		d = appA.outage(t, back, time.Now())
		checkOutage(t, fmt.Sprintf("%s-returns-run%d", name, run), d, haHandoverBound)
		checkOutage(t, fmt.Sprintf("%s-app-c-never-moved-run%d", name, run), appC.outage(t, at, time.Now()), haHandoverBound)
		st, err := p.nodes["nat-a"].client.Status(context.Background())
		if err == nil && st.HA != nil {
			if st.HA.Maintenance {
				t.Errorf("nat-a came back in maintenance (it must not outlive the stop)")
			}
			for _, tb := range st.HA.Tables {
				if tb.ID == p.rtbA && !strings.Contains(tb.LastReason, "preempt") && !strings.Contains(tb.LastReason, "handshake") {
					t.Errorf("private-a came back with reason %q, want the preempt handshake", tb.LastReason)
				}
			}
		}
		t.Logf("nat-a back after %v (hold-down %v)", returned.Sub(back).Round(time.Millisecond), haHoldDown)
	}
	med, worst := median(outs), slices.Max(outs)
	t.Logf("HA-OUTAGE scenario=%s-median ms=%d", name, med.Milliseconds())
	t.Logf("HA-OUTAGE scenario=%s-max ms=%d runs=%v", name, worst.Milliseconds(), outs)
}

// counter is one of a node's HA counters (0 when not shown: the engine's
// decision counters appear once non-zero).
func (p *haPair) counter(t *testing.T, node, name string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := p.nodes[node].client.Status(ctx)
	if err != nil || st.HA == nil {
		t.Fatalf("status of %s: %v (ha %v)", node, err, st.HA != nil)
	}
	return st.HA.Counters[name]
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestHAPair runs the lab scenarios on one pair, in order.
func TestHAPair(t *testing.T) {
	p := setupHAPair(t, "")
	appA, appC := p.probes["app-a"], p.probes["app-c"]

	// A planned stop (EC2 StopInstances, a reboot): nat-a hands private-a
	// over before it goes down, so app-a barely notices.
	t.Run("graceful stop of nat-a hands over first, start returns after hold-down", func(t *testing.T) {
		p.stopRuns(t, "graceful-stop-nat-a", false)
	})
	// A crash (StopInstances --force, a host failure): nat-c notices only
	// after dead_after missed heartbeats (5 × 200 ms = 1 s, the detection
	// floor), then one ReplaceRoute (100 ms in the lab).
	t.Run("crash of nat-a fails over, start returns after hold-down", func(t *testing.T) {
		p.stopRuns(t, "crash-nat-a", true)
	})

	t.Run("heartbeat partition changes each table at most once", func(t *testing.T) {
		changes := map[string]int{}
		last := map[string]string{p.rtbA: routeTarget(p.lab, p.rtbA), p.rtbC: routeTarget(p.lab, p.rtbC)}
		at := time.Now()
		if err := p.lab.Partition(context.Background(), "nat-a", "nat-c", "udp", 7946); err != nil {
			t.Fatal(err)
		}
		for end := time.Now().Add(haPartition); time.Now().Before(end); {
			for _, rtb := range []string{p.rtbA, p.rtbC} {
				if cur := routeTarget(p.lab, rtb); cur != last[rtb] {
					changes[rtb]++
					t.Logf("partition: %s %s -> %s", rtb, last[rtb], cur)
					last[rtb] = cur
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		healAt := time.Now()
		for _, rtb := range []string{p.rtbA, p.rtbC} {
			if changes[rtb] > 1 {
				t.Errorf("partition changed %s %d times", rtb, changes[rtb])
			}
		}
		for _, pr := range []*prober{appA, appC} {
			// Each side declares the other dead once and takes its
			// tables, as after a crash (both still forward).
			checkOutage(t, "partition-"+pr.instance, pr.outage(t, at, healAt), haCrashBound)
		}
		if err := p.lab.Heal(context.Background(), "nat-a", "nat-c", "udp", 7946); err != nil {
			t.Fatal(err)
		}
		// Healed: both home tables return by handshake after the hold-down.
		p.waitRoutes(t, "after heal", haHoldDown+15*time.Second, p.eniA, p.eniC)
		p.waitPeers(t, 10*time.Second)
		time.Sleep(time.Second)
		for _, pr := range []*prober{appA, appC} {
			checkOutage(t, "partition-heal-"+pr.instance, pr.outage(t, healAt, time.Now()), haHandoverBound)
		}
	})

	t.Run("30% of EC2 calls throttled, failover still completes", func(t *testing.T) {
		p.lab.SetAPIFaults(ec2sim.Faults{Latency: haAPILatency, ThrottleRate: 0.3, Seed: 7})
		defer p.lab.SetAPIFaults(ec2sim.Faults{Latency: haAPILatency})
		at := p.stopNAT(t, "nat-a", true, false)
		p.waitRoutes(t, "nat-a crashed, throttled API", 20*time.Second, p.eniC, p.eniC)
		appA.recovered(t, at, 10*time.Second)
		checkOutage(t, "crash-nat-a-throttled", appA.outage(t, at, time.Now()), haThrottledCrashBound)
		p.startNAT(t, "nat-a")
		p.waitRoutes(t, "nat-a back, throttled API", haHoldDown+30*time.Second, p.eniA, p.eniC)
		st, err := p.nodes["nat-c"].client.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("nat-c counters under throttling: %v", st.HA.Counters)
	})

	t.Run("a node starting while its peer is down discovers the peer's tables", p.natDownAtStart)

	t.Run("hanatctl failover, takeover and maintenance", func(t *testing.T) {
		p.unprivilegedFailoverRefused(t)

		at := time.Now()
		if out, err := runCtl(p.nodes["nat-a"].socket, "failover"); err != nil || !strings.Contains(out, p.rtbA) {
			t.Fatalf("hanatctl failover: %v\n%s", err, out)
		}
		p.waitRoutes(t, "hanatctl failover on nat-a", 10*time.Second, p.eniC, p.eniC)
		time.Sleep(time.Second)
		d := appA.outage(t, at, time.Now())
		checkOutage(t, "hanatctl-failover", d, haHandoverBound)
		// preempt brings it back after the hold-down; takeover does it now.
		at = time.Now()
		if out, err := runCtl(p.nodes["nat-a"].socket, "takeover", "--table", p.rtbA); err != nil {
			t.Fatalf("hanatctl takeover: %v\n%s", err, out)
		}
		p.waitRoutes(t, "hanatctl takeover on nat-a", 10*time.Second, p.eniA, p.eniC)
		time.Sleep(time.Second)
		d = appA.outage(t, at, time.Now())
		checkOutage(t, "hanatctl-takeover", d, haHandoverBound)

		at = time.Now()
		if out, err := runCtl(p.nodes["nat-c"].socket, "maintenance", "on"); err != nil {
			t.Fatalf("hanatctl maintenance on: %v\n%s", err, out)
		}
		p.waitRoutes(t, "maintenance on nat-c", 10*time.Second, p.eniA, p.eniA)
		time.Sleep(time.Second)
		d = appC.outage(t, at, time.Now())
		checkOutage(t, "hanatctl-maintenance-on", d, haHandoverBound)
		// It stays backup well past the hold-down.
		time.Sleep(haHoldDown + 2*time.Second)
		if got := routeTarget(p.lab, p.rtbC); got != p.eniA {
			t.Errorf("private-c went back to %s while nat-c is in maintenance", got)
		}
		status, _ := runCtl(p.nodes["nat-c"].socket, "status")
		if !strings.Contains(status, "maintenance on") || !strings.Contains(status, p.rtbC) {
			t.Errorf("status of nat-c in maintenance:\n%s", status)
		}
		at = time.Now()
		if out, err := runCtl(p.nodes["nat-c"].socket, "maintenance", "off"); err != nil {
			t.Fatalf("hanatctl maintenance off: %v\n%s", err, out)
		}
		p.waitRoutes(t, "maintenance off on nat-c", haHoldDown+10*time.Second, p.eniA, p.eniC)
		time.Sleep(time.Second)
		d = appC.outage(t, at, time.Now())
		checkOutage(t, "hanatctl-maintenance-off", d, haHandoverBound)
	})
}

// haNATDownAtStart: nat-c's hanatd starts while nat-a is stopped, with no
// backup_route_tables configured and no heartbeat to learn nat-a's tables
// from: discovery finds private-a (tagged hanat, another AZ, default
// route a blackhole to stopped nat-a) and nat-c takes it.
func (p *haPair) natDownAtStart(t *testing.T) {
	p.kill("nat-c")
	p.stopNAT(t, "nat-a", false, true) // graceful, but no peer to hand to
	deadline := time.Now().Add(5 * time.Second)
	for routeTarget(p.lab, p.rtbA) != p.eniA && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := routeTarget(p.lab, p.rtbA); got != p.eniA {
		t.Fatalf("private-a points at %s with nat-c's hanatd down, want stopped nat-a's %s", got, p.eniA)
	}
	at := time.Now()
	p.start(t, "nat-c")
	p.waitRoutes(t, "nat-c started alone while nat-a is stopped", 15*time.Second, p.eniC, p.eniC)
	t.Logf("nat-c took private-a %v after its start", time.Since(at).Round(time.Millisecond))
	// The route is visible as soon as the write lands; nat-c holds the
	// table once its answer is in (a describe may still be verifying it).
	var held string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		st, err := p.nodes["nat-c"].client.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		held = "not listed"
		for _, tb := range st.HA.Tables {
			if tb.ID == p.rtbA {
				held = fmt.Sprintf("home=%v claim=%s reason %q", tb.Home, tb.Claim, tb.LastReason)
				if !tb.Home && tb.Claim == "held" {
					held = ""
				}
			}
		}
		if held == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("private-a on nat-c: %s, want a held backup within 5s", held)
			break
		}
	}
	p.probes["app-a"].recovered(t, at, 15*time.Second)
	// nat-a back: its table returns by the preempt handshake.
	p.startNAT(t, "nat-a")
	p.waitRoutes(t, "nat-a back after nat-c started alone", haHoldDown+15*time.Second, p.eniA, p.eniC)
}

// TestHAEIPFollowsTables: with nat-a's EIP following private-a, the
// internet sees app-a as the same address before and after nat-a stops
// (the few requests between the route moving and the EIP association
// landing, ~200 ms, leave as nat-c's own address). This pair runs with
// dead_after 4.
func TestHAEIPFollowsTables(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the HA lab needs root (network namespaces)")
	}
	// The EIP group is known only once the lab exists: start with none,
	// then restart both nodes with it.
	p := setupHAPair(t, "")
	natA := p.lab.Instance("nat-a")
	alloc := p.lab.EIPAllocationID(natA.PublicIP)
	if alloc == "" {
		t.Fatalf("no allocation id for nat-a's EIP %s", natA.PublicIP)
	}
	p.kill("nat-a")
	p.kill("nat-c")
	p.extra = fmt.Sprintf("  eips:\n    - allocation_id: %s\n      route_tables: [%s]\n", alloc, p.rtbA)
	// Also a faster detection than the default: dead after 4 missed
	// heartbeats (800 ms) instead of 5.
	p.deadAfter = 4
	p.start(t, "nat-a")
	p.start(t, "nat-c")
	p.waitPeers(t, 20*time.Second)
	p.waitRoutes(t, "restarted with the EIP group", 10*time.Second, p.eniA, p.eniC)
	appA := p.probes["app-a"]
	before := time.Now()
	appA.recovered(t, before, 10*time.Second)
	time.Sleep(time.Second)

	at := p.stopNAT(t, "nat-a", true, false)
	p.waitRoutes(t, "nat-a stopped", 10*time.Second, p.eniC, p.eniC)
	appA.recovered(t, at, 15*time.Second)
	time.Sleep(2 * time.Second)
	d := appA.outage(t, at, time.Now())
	checkOutage(t, "stop-nat-a-with-eip-dead_after4", d, haCrashBound)

	srcBefore := appA.sources(before, at)
	srcAfter := appA.sources(at, time.Now())
	t.Logf("app-a seen as %v before, %v after", srcBefore, srcAfter)
	if len(srcBefore) != 1 || srcBefore[natA.PublicIP] == 0 {
		t.Errorf("before failover app-a was seen as %v, want only %s", srcBefore, natA.PublicIP)
	}
	if srcAfter[natA.PublicIP] == 0 {
		t.Errorf("after failover app-a was seen as %v, want %s (the EIP follows private-a)", srcAfter, natA.PublicIP)
	}
	// Every success after the EIP moved uses it.
	last := appA.snapshot()
	var tail []probe
	for _, r := range last {
		if r.ok && r.start.After(time.Now().Add(-time.Second)) {
			tail = append(tail, r)
		}
	}
	for _, r := range tail {
		if r.src != natA.PublicIP {
			t.Errorf("app-a seen as %s after failover settled, want %s", r.src, natA.PublicIP)
			break
		}
	}
	st, err := p.nodes["nat-c"].client.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.HA.Counters["eip_associations"] == 0 {
		t.Errorf("nat-c counted no EIP association: %v", st.HA.Counters)
	}
}

// unprivileged is the user the refused-write checks run hanatctl as.
const unprivileged = 65534

// unprivilegedFailoverRefused: an unprivileged user's failover reaches
// nat-a's hanatd (the socket is reachable and world-writable for this
// check, so connect succeeds and reads work) and hanatd's peer-credential
// check refuses it: a 403 naming the caller's uid, exit code 3, the
// refusal in hanatd's log, and the route table stays where it is.
func (p *haPair) unprivilegedFailoverRefused(t *testing.T) {
	t.Helper()
	n := p.nodes["nat-a"]
	ctl := worldExecutable(t, bins.hanatctl)
	socket := reachableSocket(t, n.socket)
	asNobody := func(args ...string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, ctl, append([]string{"--socket", socket}, args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: unprivileged, Gid: unprivileged}}
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		switch {
		case err == nil:
			return string(out), 0
		case errors.As(err, &ee) && ee.Exited():
			return string(out), ee.ExitCode()
		}
		t.Fatalf("hanatctl %v as uid %d: %v\n%s", args, unprivileged, err, out)
		return "", 0
	}
	// Reading needs only a connection: this proves the socket lets the
	// user in, so what follows is hanatd's decision, not connect's.
	if out, code := asNobody("status"); code != 0 {
		t.Fatalf("hanatctl status as uid %d through %s: exit %d, want 0 (the socket must be reachable for this check)\n%s", unprivileged, socket, code, out)
	}
	logFrom := len(n.proc.Output())
	out, code := asNobody("failover")
	refusal := fmt.Sprintf("uid %d", unprivileged)
	if code != 3 || !strings.Contains(out, "(HTTP 403)") || !strings.Contains(out, refusal) {
		t.Errorf("unprivileged failover: exit %d, want 3 with hanatd's 403 naming %q\n%s", code, refusal, out)
	}
	refused := func() bool {
		for _, line := range strings.Split(n.proc.Output()[logFrom:], "\n") {
			if logField(line, "msg") == "admin write refused" && logField(line, "path") == "/v1/failover" &&
				logField(line, "uid") == strconv.Itoa(unprivileged) {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(5 * time.Second)
	for !refused() {
		if time.Now().After(deadline) {
			t.Errorf("hanatd logged no refusal of uid %d's failover:\n%s", unprivileged, lastLines(n.proc.Output()[logFrom:], 20))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	if got := routeTarget(p.lab, p.rtbA); got != p.eniA {
		t.Fatalf("private-a moved to %s after a refused failover", got)
	}
}

// reachableSocket makes hanatd's admin socket (whose directories are the
// test's 0700 temp dirs) reachable by anyone: a hard link to it in a 0755
// directory of its own, and the socket 0666 (hanatd makes it 0660) until
// the test ends.
func reachableSocket(t *testing.T, socket string) string {
	t.Helper()
	fi, err := os.Stat(socket)
	if err != nil {
		t.Fatalf("admin socket: %v", err)
	}
	dir, err := os.MkdirTemp("", "hnt-e2e-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "admin.sock")
	if err := os.Link(socket, link); err != nil {
		t.Fatalf("link the admin socket into %s: %v", dir, err)
	}
	if err := os.Chmod(link, 0o666); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(socket, fi.Mode().Perm()) })
	return link
}

// worldExecutable copies bin where an unprivileged user can run it.
func worldExecutable(t *testing.T, bin string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hnt-e2e-ctl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(bin))
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

//go:build linux

package fastpath

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/hanat/hanat/bpf"
	"github.com/hanat/hanat/conntrack"
)

// Unit tests of the offload engine with a fake flow map, path resolver,
// kernel table and clock: no root needed.

var (
	macNAT    = net.HardwareAddr{0x02, 0, 0x0a, 0, 0x01, 0x0a}
	macRouter = net.HardwareAddr{0x02, 0, 0x0a, 0, 0x01, 0x01}
	macHost   = net.HardwareAddr{0x02, 0, 0x0a, 0, 0x0b, 0x05}

	offFilter = Filter{
		PrivateCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.11.0/24")},
		NATAddrs:     []netip.Addr{netip.MustParseAddr("10.0.1.10")},
	}
)

const eniIfindex = 2

type fakeEntry struct {
	act   bpf.FlowAction
	stats bpf.FlowStats
}

type fakeMap struct {
	mu      sync.Mutex
	m       map[bpf.FlowKey]*fakeEntry
	puts    int
	failPut error
}

func newFakeMap() *fakeMap {
	return &fakeMap{m: make(map[bpf.FlowKey]*fakeEntry)}
}

func (f *fakeMap) PutFlow(k bpf.FlowKey, a bpf.FlowAction) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failPut != nil {
		return f.failPut
	}
	if _, _, err := bpf.NewFlowEntry(k, a); err != nil {
		return err
	}
	f.puts++
	if e, ok := f.m[k]; ok {
		e.act = a // counters kept, as bpf.Objects does
		return nil
	}
	f.m[k] = &fakeEntry{act: a}
	return nil
}

func (f *fakeMap) DeleteFlow(k bpf.FlowKey) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.m[k]; !ok {
		return fmt.Errorf("fake: %w", bpf.ErrFlowNotFound)
	}
	delete(f.m, k)
	return nil
}

func (f *fakeMap) LookupFlow(k bpf.FlowKey) (bpf.FlowAction, bpf.FlowStats, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.m[k]
	if !ok {
		return bpf.FlowAction{}, bpf.FlowStats{}, fmt.Errorf("fake: %w", bpf.ErrFlowNotFound)
	}
	return e.act, e.stats, nil
}

func (f *fakeMap) IterateFlowStats(fn func(bpf.FlowKey, bpf.FlowStats) bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, e := range f.m {
		if !fn(k, e.stats) {
			return nil
		}
	}
	return nil
}

// hit simulates n fast-path packets of key (the map keeps no time).
func (f *fakeMap) hit(t *testing.T, k bpf.FlowKey, n, size uint64) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.m[k]
	if !ok {
		t.Fatalf("hit on %v: not in the map", k)
	}
	e.stats.Packets += n
	e.stats.Bytes += n * size
}

func (f *fakeMap) has(k bpf.FlowKey) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.m[k]
	return ok
}

func (f *fakeMap) len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.m)
}

type fakePaths struct {
	mu    sync.Mutex
	calls int
	err   error
	in    uint32 // ingress ifindex of every path; 0: eniIfindex
}

func (p *fakePaths) Resolve(_ context.Context, src, dst netip.Addr) (Path, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.err != nil {
		return Path{}, p.err
	}
	// Single ENI: everything arrives and leaves on eniIfindex; the
	// next hop toward the internet is the router, toward private hosts
	// the private subnet's router.
	dstMAC := macRouter
	if offFilter.Private(dst) {
		dstMAC = macHost
	}
	in := uint32(eniIfindex)
	if p.in != 0 {
		in = p.in
	}
	return Path{InIfindex: in, OutIfindex: eniIfindex, SrcMAC: macNAT, DstMAC: dstMAC, MTU: 9001}, nil
}

type fakeKernel struct {
	// block, when set, holds every SetTimeout and Get until it is closed
	// (a slow netlink round trip).
	block    chan struct{}
	entered  chan struct{} // receives once per blocked call
	mu       sync.Mutex
	flows    []Event                 // what a dump returns
	known    map[Tuple]Flow          // what a lookup returns …
	timeouts map[Tuple]time.Duration // … with this remaining timeout; absent: gone
	sets     []time.Duration
	dumpErr  error
}

func (k *fakeKernel) Walk(ctx context.Context, reset func(), visit func(Event)) error {
	k.mu.Lock()
	flows := append([]Event(nil), k.flows...)
	err := k.dumpErr
	k.mu.Unlock()
	if err != nil {
		return err
	}
	reset()
	for _, f := range flows {
		visit(f)
	}
	return nil
}

func (k *fakeKernel) wait() {
	k.mu.Lock()
	b, in := k.block, k.entered
	k.mu.Unlock()
	if b != nil {
		select {
		case in <- struct{}{}:
		default:
		}
		<-b
	}
}

func (k *fakeKernel) SetTimeout(_ context.Context, orig Tuple, d time.Duration) error {
	k.wait()
	k.mu.Lock()
	defer k.mu.Unlock()
	if _, ok := k.timeouts[orig]; !ok {
		return fmt.Errorf("fake update %s: %w", orig, conntrack.ErrFlowGone)
	}
	k.timeouts[orig] = d
	k.sets = append(k.sets, d)
	return nil
}

func (k *fakeKernel) timeout(orig Tuple) (time.Duration, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	d, ok := k.timeouts[orig]
	if !ok {
		return 0, conntrack.ErrFlowGone
	}
	return d, nil
}

func (k *fakeKernel) Get(_ context.Context, orig Tuple) (Event, error) {
	k.wait()
	k.mu.Lock()
	defer k.mu.Unlock()
	d, ok := k.timeouts[orig]
	if !ok {
		return Event{}, conntrack.ErrFlowGone
	}
	f := k.known[orig]
	f.Timeout = d
	return Event{Kind: EventUpdate, Flow: f, Plain: true}, nil
}

// has makes the kernel table hold f (for lookups).
func (k *fakeKernel) has(f Flow) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.known[f.Original] = f
	k.timeouts[f.Original] = f.Timeout
}

func (k *fakeKernel) Close() error { return nil }

type engineEnv struct {
	now    time.Duration
	fm     *fakeMap
	paths  *fakePaths
	kernel *fakeKernel
	o      *engine
}

func newEngineEnv(t *testing.T, cfg engineConfig) *engineEnv {
	t.Helper()
	e := &engineEnv{now: 1000 * time.Second, paths: &fakePaths{}, kernel: &fakeKernel{timeouts: map[Tuple]time.Duration{}, known: map[Tuple]Flow{}}}
	e.fm = newFakeMap()
	if cfg.Filter.PrivateCIDRs == nil {
		cfg.Filter = offFilter
	}
	if cfg.SweepInterval == 0 {
		cfg.SweepInterval = 5 * time.Second
	}
	cfg.Clock = func() (time.Duration, error) { return e.now, nil }
	e.o = newEngine(nil, e.fm, e.paths, e.kernel, cfg)
	return e
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// snatTCP is private host :port → 203.0.113.10:443, SNATed to
// 10.0.1.10:natPort.
func snatTCP(id uint32, port, natPort uint16, state string, assured bool) Flow {
	return Flow{
		ID:        id,
		Original:  Tuple{Proto: protoTCP, Src: netip.AddrPortFrom(netip.MustParseAddr("10.0.11.5"), port), Dst: ap("203.0.113.10:443")},
		Reply:     Tuple{Proto: protoTCP, Src: ap("203.0.113.10:443"), Dst: netip.AddrPortFrom(netip.MustParseAddr("10.0.1.10"), natPort)},
		ProtoName: "tcp", TCPState: state, Assured: assured, SNAT: true,
		Timeout: 350 * time.Second,
	}
}

func snatUDP(id uint32, assured bool) Flow {
	return Flow{
		ID:        id,
		Original:  Tuple{Proto: protoUDP, Src: ap("10.0.11.5:5353"), Dst: ap("198.51.100.7:53")},
		Reply:     Tuple{Proto: protoUDP, Src: ap("198.51.100.7:53"), Dst: ap("10.0.1.10:5353")},
		ProtoName: "udp", Assured: assured, SNAT: true, Timeout: 120 * time.Second,
	}
}

func keysOf(f Flow) [2]bpf.FlowKey {
	return [2]bpf.FlowKey{
		{Ifindex: eniIfindex, Proto: f.Original.Proto, Src: f.Original.Src, Dst: f.Original.Dst},
		{Ifindex: eniIfindex, Proto: f.Original.Proto, Src: f.Reply.Src, Dst: f.Reply.Dst},
	}
}

func (e *engineEnv) event(kind EventKind, f Flow) {
	if kind != EventDestroy {
		e.kernel.has(f)
	} else {
		e.kernel.mu.Lock()
		delete(e.kernel.timeouts, f.Original)
		e.kernel.mu.Unlock()
	}
	e.o.apply(context.Background(), []Event{{Kind: kind, Flow: f, Plain: true}})
}

func TestOffloadAssuredTCPBothDirections(t *testing.T) {
	e := newEngineEnv(t, engineConfig{})
	f := snatTCP(1, 40000, 61000, "SYN_RECV", false)
	e.event(EventNew, f)
	if e.fm.len() != 0 {
		t.Fatalf("a flow that is not established was offloaded")
	}
	f.TCPState, f.Assured = "ESTABLISHED", true
	e.event(EventUpdate, f)
	k := keysOf(f)
	out, ok := e.fm.m[k[0]]
	if !ok {
		t.Fatalf("original direction %v not in the map: %v", k[0], e.fm.m)
	}
	wantOut := bpf.FlowAction{NewSrc: ap("10.0.1.10:61000"), NewDst: ap("203.0.113.10:443"), EgressIfindex: eniIfindex, SrcMAC: macNAT, DstMAC: macRouter, MTU: 9001, Outbound: true}
	if !sameActions([2]bpf.FlowAction{out.act, out.act}, [2]bpf.FlowAction{wantOut, wantOut}) {
		t.Errorf("original action %+v, want %+v", out.act, wantOut)
	}
	in, ok := e.fm.m[k[1]]
	if !ok {
		t.Fatalf("reply direction %v not in the map", k[1])
	}
	wantIn := bpf.FlowAction{NewSrc: ap("203.0.113.10:443"), NewDst: ap("10.0.11.5:40000"), EgressIfindex: eniIfindex, SrcMAC: macNAT, DstMAC: macHost, MTU: 9001}
	if !sameActions([2]bpf.FlowAction{in.act, in.act}, [2]bpf.FlowAction{wantIn, wantIn}) {
		t.Errorf("reply action %+v, want %+v", in.act, wantIn)
	}
	if s := e.o.Stats(); s.Offloaded != 1 || s.Offloads != 1 {
		t.Errorf("stats %+v", s)
	}
	// Repeated updates (timeouts, our own refreshes) change nothing.
	puts := e.fm.puts
	e.event(EventUpdate, f)
	if e.fm.puts != puts {
		t.Errorf("an update of an offloaded flow rewrote the map")
	}
}

func TestOffloadDNATPortForward(t *testing.T) {
	e := newEngineEnv(t, engineConfig{})
	f := Flow{
		ID:       9,
		Original: Tuple{Proto: protoTCP, Src: ap("198.51.100.9:50000"), Dst: ap("10.0.1.10:8080")},
		Reply:    Tuple{Proto: protoTCP, Src: ap("10.0.11.5:80"), Dst: ap("198.51.100.9:50000")},
		TCPState: "ESTABLISHED", Assured: true, DNAT: true, Timeout: 350 * time.Second,
	}
	e.event(EventUpdate, f)
	k := keysOf(f)
	if a := e.fm.m[k[0]]; a == nil || a.act.NewDst != ap("10.0.11.5:80") || a.act.NewSrc != ap("198.51.100.9:50000") || a.act.Outbound {
		t.Errorf("inbound (DNAT) entry %+v", a)
	}
	if a := e.fm.m[k[1]]; a == nil || a.act.NewSrc != ap("10.0.1.10:8080") || a.act.NewDst != ap("198.51.100.9:50000") || !a.act.Outbound {
		t.Errorf("reply (un-DNAT) entry %+v, want outbound (from the private host)", a)
	}
}

func TestOffloadNotOffloadable(t *testing.T) {
	cases := map[string]Event{
		"not assured":      {Kind: EventUpdate, Flow: snatUDP(1, false), Plain: true},
		"helper or seqadj": {Kind: EventUpdate, Flow: snatTCP(2, 1, 2, "ESTABLISHED", true), Plain: false},
		"TCP closing":      {Kind: EventUpdate, Flow: snatTCP(3, 1, 2, "TIME_WAIT", true), Plain: true},
		"not hanat's": {Kind: EventUpdate, Plain: true, Flow: func() Flow {
			f := snatTCP(4, 1, 2, "ESTABLISHED", true)
			f.Reply.Dst = ap("192.0.2.1:2")
			return f
		}()},
		"ICMP": {Kind: EventUpdate, Plain: true, Flow: Flow{ID: 5, Assured: true, SNAT: true,
			Original: Tuple{Proto: protoICMP, Src: ap("10.0.11.5:0"), Dst: ap("198.51.100.7:0"), ICMPID: 7},
			Reply:    Tuple{Proto: protoICMP, Src: ap("198.51.100.7:0"), Dst: ap("10.0.1.10:0"), ICMPID: 7}}},
	}
	for name, ev := range cases {
		t.Run(name, func(t *testing.T) {
			e := newEngineEnv(t, engineConfig{})
			e.o.apply(context.Background(), []Event{ev})
			if e.fm.len() != 0 || e.o.Stats().Offloaded != 0 {
				t.Errorf("offloaded: %v", e.fm.m)
			}
		})
	}
}

func TestOffloadFINMovesToSlowPathAndKeepsCounters(t *testing.T) {
	e := newEngineEnv(t, engineConfig{})
	f := snatTCP(1, 40000, 61000, "ESTABLISHED", true)
	e.event(EventUpdate, f)
	k := keysOf(f)
	e.now += time.Second
	e.fm.hit(t, k[0], 100, 1500)
	e.fm.hit(t, k[1], 50, 60)
	e.o.sweep(context.Background())
	c, ok := e.o.Lookup(f.Original)
	if !ok || !c.Offloaded || c.OrigPackets != 100 || c.OrigBytes != 150000 || c.ReplyPackets != 50 {
		t.Fatalf("Lookup = %+v, %v", c, ok)
	}
	e.fm.hit(t, k[0], 10, 1500) // after the sweep, before the FIN
	f.TCPState = "FIN_WAIT"
	e.event(EventUpdate, f)
	if e.fm.has(k[0]) || e.fm.has(k[1]) {
		t.Fatalf("FIN_WAIT flow still in the map")
	}
	c, ok = e.o.Lookup(f.Original)
	if !ok || c.Offloaded || c.OrigPackets != 110 || c.ReplyPackets != 50 {
		t.Errorf("after FIN: Lookup = %+v, %v; want the final counters kept, not offloaded", c, ok)
	}
	if s := e.o.Stats(); s.Offloaded != 0 || s.Removals != 1 || s.Pending != 0 {
		t.Errorf("stats %+v", s)
	}
	e.event(EventDestroy, f)
	if _, ok := e.o.Lookup(f.Original); ok {
		t.Errorf("destroyed flow still known")
	}
}

func TestOffloadDestroyRemoves(t *testing.T) {
	e := newEngineEnv(t, engineConfig{})
	f := snatUDP(7, true)
	e.event(EventUpdate, f)
	if e.fm.len() != 2 {
		t.Fatalf("map has %d entries, want 2", e.fm.len())
	}
	e.event(EventDestroy, f)
	if e.fm.len() != 0 {
		t.Fatalf("map has %d entries after DESTROY", e.fm.len())
	}
	if s := e.o.Stats(); s.Offloaded != 0 || s.Removals != 1 {
		t.Errorf("stats %+v", s)
	}
}

// A tuple reused by a new connection (DESTROY lost): the old entries go,
// the new connection is offloaded afresh.
func TestOffloadTupleReuse(t *testing.T) {
	e := newEngineEnv(t, engineConfig{})
	old := snatTCP(1, 40000, 61000, "ESTABLISHED", true)
	e.event(EventUpdate, old)
	nu := snatTCP(2, 40000, 62000, "ESTABLISHED", true)
	e.event(EventUpdate, nu)
	if e.fm.has(keysOf(old)[1]) || !e.fm.has(keysOf(nu)[1]) {
		t.Errorf("map after reuse: %v", e.fm.m)
	}
	if s := e.o.Stats(); s.Offloaded != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestOffloadBatchLastEventWins(t *testing.T) {
	e := newEngineEnv(t, engineConfig{})
	f := snatTCP(1, 40000, 61000, "ESTABLISHED", true)
	g := f
	g.TCPState = "FIN_WAIT"
	e.o.apply(context.Background(), []Event{
		{Kind: EventNew, Flow: snatTCP(1, 40000, 61000, "SYN_SENT", false), Plain: true},
		{Kind: EventUpdate, Flow: f, Plain: true},
		{Kind: EventUpdate, Flow: g, Plain: true},
	})
	if e.fm.puts != 0 || e.fm.len() != 0 {
		t.Errorf("a flow that closed within the batch was written to the map (%d puts)", e.fm.puts)
	}
}

func TestOffloadUnresolvedPathRetries(t *testing.T) {
	e := newEngineEnv(t, engineConfig{RetryInterval: time.Second})
	e.paths.err = errors.New("neighbour not resolved")
	f := snatUDP(1, true)
	e.event(EventUpdate, f)
	if e.fm.len() != 0 {
		t.Fatal("offloaded without a path")
	}
	if s := e.o.Stats(); s.Pending != 1 || s.PathErrors == 0 {
		t.Fatalf("stats %+v", s)
	}
	// Not before the retry time, and a failed lookup is cached briefly.
	calls := e.paths.calls
	e.o.retry(context.Background())
	if e.paths.calls != calls {
		t.Errorf("retried before RetryInterval")
	}
	e.paths.err = nil
	e.now += 1100 * time.Millisecond
	e.o.retry(context.Background())
	if e.fm.len() != 2 {
		t.Fatalf("not offloaded after the path resolved: %v", e.fm.m)
	}
	if s := e.o.Stats(); s.Pending != 0 || s.Offloaded != 1 {
		t.Errorf("stats %+v", s)
	}
}

// An ingress ifindex beyond the fast path's 24-bit key field keeps the flow
// on the slow path as a path error, without map writes or map errors.
func TestOffloadIfindexBeyondKey(t *testing.T) {
	e := newEngineEnv(t, engineConfig{})
	e.paths.in = bpf.MaxIfindex + 1
	e.event(EventUpdate, snatUDP(1, true))
	if s := e.o.Stats(); e.fm.puts != 0 || s.PathErrors == 0 || s.MapErrors != 0 || s.Pending != 1 {
		t.Fatalf("puts %d, stats %+v; want a pending flow with a path error and no map writes", e.fm.puts, s)
	}
}

// TestOffloadSweepRefreshesActiveFlows: an offloaded flow the fast path
// keeps busy gets its kernel timeout pushed to one idle timeout after its
// last packet; an idle one is left to expire and is removed when the kernel
// drops it, even if the DESTROY event was lost.
func TestOffloadSweepRefreshesActiveFlows(t *testing.T) {
	const timeout = 20 * time.Second
	e := newEngineEnv(t, engineConfig{TCPTimeout: timeout, SweepInterval: time.Second})
	busy := snatTCP(1, 40000, 61000, "ESTABLISHED", true)
	busy.Timeout = timeout
	idle := snatTCP(2, 40001, 61001, "ESTABLISHED", true)
	idle.Timeout = timeout
	e.event(EventUpdate, busy)
	e.event(EventUpdate, idle)
	kb := keysOf(busy)
	ctx := context.Background()

	// 60 s of traffic on busy, none on idle, sweeping every second.
	start := e.now
	for e.now < start+60*time.Second {
		e.now += time.Second
		e.fm.hit(t, kb[0], 10, 1000)
		e.fm.hit(t, kb[1], 10, 100)
		// The kernel's own timer.
		e.kernel.mu.Lock()
		for tu, left := range e.kernel.timeouts {
			if left -= time.Second; left <= 0 {
				delete(e.kernel.timeouts, tu) // expired; the event is "lost"
			} else {
				e.kernel.timeouts[tu] = left
			}
		}
		e.kernel.mu.Unlock()
		e.o.sweep(ctx)
	}
	if _, err := e.kernel.timeout(busy.Original); err != nil {
		t.Fatalf("busy flow expired in the kernel although the fast path carried it: %v", err)
	}
	if !e.fm.has(kb[0]) {
		t.Errorf("busy flow left the map")
	}
	for _, d := range e.kernel.sets {
		if d > timeout {
			t.Errorf("set a kernel timeout of %v, above the idle timeout %v", d, timeout)
		}
	}
	if s := e.o.Stats(); s.Refreshes == 0 || s.Expired != 1 || s.Offloaded != 1 {
		t.Errorf("stats %+v; want refreshes, the idle flow expired, one left", s)
	}
	if e.fm.has(keysOf(idle)[0]) {
		t.Errorf("idle flow still in the map after its kernel entry expired")
	}
	// The refreshes are spaced, not one per sweep.
	if n := len(e.kernel.sets); n > 30 {
		t.Errorf("%d refreshes in 60 sweeps; want them spaced out", n)
	}

	// Busy goes idle: after its last packet it lives one timeout more
	// (within a sweep's slack), then the kernel drops it.
	last := e.now
	for e.now < last+timeout+5*time.Second {
		e.now += time.Second
		e.kernel.mu.Lock()
		if left, ok := e.kernel.timeouts[busy.Original]; ok {
			if left -= time.Second; left <= 0 {
				delete(e.kernel.timeouts, busy.Original)
				t.Logf("kernel entry expired %v after the last packet", e.now-last)
				if d := e.now - last; d < timeout-2*time.Second {
					t.Errorf("expired %v after the last packet, want about %v", d, timeout)
				}
			} else {
				e.kernel.timeouts[busy.Original] = left
			}
		}
		e.kernel.mu.Unlock()
		e.o.sweep(ctx)
	}
	if e.fm.len() != 0 || e.o.Stats().Offloaded != 0 {
		t.Errorf("after both flows went idle: map %v, stats %+v", e.fm.m, e.o.Stats())
	}
}

// tickKernel runs the fake kernel's conntrack timers for d; expired
// entries vanish without an event. It returns whether orig expired.
func (e *engineEnv) tickKernel(d time.Duration, orig Tuple) bool {
	e.kernel.mu.Lock()
	defer e.kernel.mu.Unlock()
	expired := false
	for tu, left := range e.kernel.timeouts {
		if left -= d; left <= 0 {
			delete(e.kernel.timeouts, tu)
			expired = expired || tu == orig
		} else {
			e.kernel.timeouts[tu] = left
		}
	}
	return expired
}

// The map has no last-seen time: a flow whose packets arrive between
// sweeps is active because its counter moved, and once it stops the kernel
// entry expires no earlier than one idle timeout after the last packet and
// no later than a sweep interval (plus the kernel's whole-second rounding)
// after that.
func TestOffloadIdleFromCounterChange(t *testing.T) {
	const timeout, sweep = 30 * time.Second, 5 * time.Second
	e := newEngineEnv(t, engineConfig{TCPTimeout: timeout, SweepInterval: sweep})
	f := snatTCP(1, 40000, 61000, "ESTABLISHED", true)
	f.Timeout = timeout
	e.event(EventUpdate, f)
	k := keysOf(f)
	ctx := context.Background()
	start, last := e.now, e.now
	var expiredAt time.Duration
	for step := 1; step <= 400 && expiredAt == 0; step++ {
		e.now += time.Second
		if e.tickKernel(time.Second, f.Original) {
			expiredAt = e.now
			break
		}
		// Traffic for 100 s, one or two seconds after each sweep, and
		// only in the reply direction half of the time.
		if e.now-start <= 100*time.Second && step%5 >= 1 && step%5 <= 2 {
			if step%10 < 5 {
				e.fm.hit(t, k[0], 1, 100)
			}
			e.fm.hit(t, k[1], 1, 100)
			last = e.now
		}
		if step%5 == 0 {
			e.o.sweep(ctx)
		}
	}
	if expiredAt == 0 {
		t.Fatalf("kernel entry never expired after the traffic stopped at %v", last-start)
	}
	idle := expiredAt - last
	t.Logf("kernel entry expired %v after the last packet", idle)
	if idle < timeout || idle > timeout+sweep+2*time.Second {
		t.Errorf("expired %v after the last packet; want between %v and %v", idle, timeout, timeout+sweep+2*time.Second)
	}
	if last-start < 90*time.Second {
		t.Fatalf("test bug: traffic stopped at %v", last-start)
	}
}

// A counter that steps back (a lost plain add on another CPU) is activity
// too: only "unchanged" means idle.
func TestOffloadCounterStepBackIsActivity(t *testing.T) {
	e := newEngineEnv(t, engineConfig{TCPTimeout: 30 * time.Second, SweepInterval: 5 * time.Second})
	f := snatTCP(1, 40000, 61000, "ESTABLISHED", true)
	f.Timeout = 30 * time.Second
	e.event(EventUpdate, f)
	k := keysOf(f)
	e.fm.hit(t, k[0], 10, 100)
	e.now += 5 * time.Second
	e.o.sweep(context.Background())
	seen := e.o.recs[f.Original].lastSeen
	e.fm.mu.Lock()
	e.fm.m[k[0]].stats.Packets-- // the racy store
	e.fm.mu.Unlock()
	e.now += 5 * time.Second
	e.o.sweep(context.Background())
	if got := e.o.recs[f.Original].lastSeen; got != e.now || got == seen {
		t.Errorf("last activity %v after a changed counter, want the sweep time %v", got, e.now)
	}
}

// A slow-path packet kept an idle-on-the-fast-path flow alive in the
// kernel: the sweep believes the kernel and keeps the flow.
func TestOffloadSweepKeepsKernelKeptFlows(t *testing.T) {
	const timeout = 10 * time.Second
	e := newEngineEnv(t, engineConfig{UDPTimeout: timeout, SweepInterval: time.Second})
	f := snatUDP(1, true)
	f.Timeout = timeout
	e.event(EventUpdate, f)
	e.now += 15 * time.Second
	e.kernel.timeouts[f.Original] = 8 * time.Second // refreshed by the kernel itself
	e.o.sweep(context.Background())
	if e.fm.len() != 2 || e.o.Stats().Expired != 0 {
		t.Errorf("flow alive in the kernel was removed: map %d entries, stats %+v", e.fm.len(), e.o.Stats())
	}
}

// The LRU map evicted one direction: the other goes too, and the flow is
// offloaded again on a later tick.
// Either direction, evicted after a sweep that saw both (the earlier
// sweep's reading must not count for the next).
func TestOffloadEvictionReoffloads(t *testing.T) {
	for dir := range 2 {
		t.Run(fmt.Sprintf("direction %d", dir), func(t *testing.T) { testOffloadEvictionReoffloads(t, dir) })
	}
}

func testOffloadEvictionReoffloads(t *testing.T, dir int) {
	e := newEngineEnv(t, engineConfig{RetryInterval: time.Second})
	f := snatUDP(1, true)
	e.event(EventUpdate, f)
	k := keysOf(f)
	e.o.sweep(context.Background())
	if s := e.o.Stats(); s.Evicted != 0 || s.Sweeps != 1 {
		t.Fatalf("a sweep with both directions in the map: stats %+v", s)
	}
	if err := e.fm.DeleteFlow(k[dir]); err != nil {
		t.Fatal(err)
	}
	e.o.sweep(context.Background())
	if e.fm.has(k[1-dir]) {
		t.Errorf("half a flow left in the map")
	}
	if s := e.o.Stats(); s.Evicted != 1 || s.Pending != 1 {
		t.Errorf("stats %+v", s)
	}
	e.now += 2 * time.Second
	e.o.sweep(context.Background())
	if !e.fm.has(k[0]) || !e.fm.has(k[1]) {
		t.Errorf("not offloaded again: %v", e.fm.m)
	}
}

// dumped is f as a dump of the kernel table delivers it.
func dumped(f Flow) Event { return Event{Kind: EventUpdate, Flow: f, Plain: true} }

// TestOffloadResync: at start (a restarted daemon), the dump takes over
// the flows already in the pinned map without rewriting them or losing
// their counters, offloads the others, and the first sweep deletes map
// entries no live flow owns.
func TestOffloadResync(t *testing.T) {
	e := newEngineEnv(t, engineConfig{})
	kept := snatTCP(1, 40000, 61000, "ESTABLISHED", true)
	fresh := snatUDP(2, true)
	closing := snatTCP(3, 40002, 61002, "TIME_WAIT", true)
	gone := snatTCP(4, 40003, 61003, "ESTABLISHED", true)
	// The previous daemon's map: kept (with traffic) and gone.
	for _, f := range []Flow{kept, gone} {
		var keys [2]bpf.FlowKey = keysOf(f)
		rec := &record{orig: f.Original, reply: f.Reply}
		_, acts, _ := e.o.entries(context.Background(), e.now, rec)
		for i := range keys {
			if err := e.fm.PutFlow(keys[i], acts[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.fm.hit(t, keysOf(kept)[0], 500, 1000)
	puts := e.fm.puts
	e.kernel.flows = []Event{dumped(kept), dumped(fresh), dumped(closing)}
	for _, f := range []Flow{kept, fresh, closing} {
		e.kernel.has(f)
	}
	if err := e.o.resync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := e.o.Stats(); s.Offloaded != 2 || s.Resyncs != 1 {
		t.Errorf("stats after resync %+v, want 2 offloaded", s)
	}
	e.o.sweep(context.Background())
	if e.fm.has(keysOf(gone)[0]) || e.fm.has(keysOf(gone)[1]) {
		t.Errorf("entries of a flow the kernel no longer has survived the sweep")
	}
	if c, _ := e.o.Lookup(kept.Original); c.OrigPackets != 500 {
		t.Errorf("kept flow's counters %+v, want the 500 packets from before the restart", c)
	}
	if e.fm.puts-puts != 4 { // kept rewritten with the same action (no-op in bpf), fresh new
		t.Logf("puts during resync: %d", e.fm.puts-puts)
	}
	if s := e.o.Stats(); s.StaleEntries != 2 {
		t.Errorf("stale entries removed = %d, want 2", s.StaleEntries)
	}

	// The kernel forgot fresh while events were lost: the next resync
	// takes it out.
	e.kernel.flows = []Event{dumped(kept)}
	if err := e.o.resync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if e.fm.has(keysOf(fresh)[0]) || e.o.Stats().Offloaded != 1 {
		t.Errorf("after second resync: map %v, stats %+v", e.fm.m, e.o.Stats())
	}
}

func TestOffloadFilterChange(t *testing.T) {
	e := newEngineEnv(t, engineConfig{})
	f := snatUDP(1, true)
	e.kernel.flows = []Event{dumped(f)}
	e.event(EventUpdate, f)
	if e.fm.len() != 2 {
		t.Fatal("not offloaded")
	}
	e.o.SetFilter(Filter{PrivateCIDRs: offFilter.PrivateCIDRs, NATAddrs: []netip.Addr{netip.MustParseAddr("10.0.1.99")}})
	e.o.maybeResync(context.Background())
	if e.fm.len() != 0 {
		t.Errorf("a flow hanat no longer NATs stayed offloaded")
	}
}

func TestOffloadMaxFlows(t *testing.T) {
	e := newEngineEnv(t, engineConfig{MaxFlows: 3})
	for i := range 5 {
		e.event(EventUpdate, snatTCP(uint32(i+1), uint16(40000+i), uint16(61000+i), "ESTABLISHED", true))
	}
	if s := e.o.Stats(); s.Offloaded != 3 || s.Full != 2 || e.fm.len() != 6 {
		t.Errorf("stats %+v, map %d entries; want 3 offloaded, 2 refused", s, e.fm.len())
	}
}

func TestOffloadMapWriteFailure(t *testing.T) {
	e := newEngineEnv(t, engineConfig{})
	e.fm.failPut = errors.New("map full")
	e.event(EventUpdate, snatUDP(1, true))
	if s := e.o.Stats(); s.MapErrors != 1 || s.Pending != 1 || s.Offloaded != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestOffloadStormDoesNotBlock: a reader faster than the engine never
// blocks; what does not fit the queue is counted and triggers a resync,
// after which the engine agrees with the kernel again.
func TestOffloadStormDoesNotBlock(t *testing.T) {
	e := newEngineEnv(t, engineConfig{QueueLen: 1000, BatchSize: 64})
	const n = 20000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			f := snatTCP(uint32(i+1), uint16(1024+i%60000), uint16(1024+i%60000), "ESTABLISHED", true)
			e.o.enqueue(Event{Kind: EventUpdate, Flow: f, Plain: true})
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("enqueue blocked")
	}
	s := e.o.Stats()
	if s.Events != n || s.EventsDropped != n-1000 {
		t.Errorf("events %d dropped %d; want %d and %d", s.Events, s.EventsDropped, n, n-1000)
	}
	if !e.o.needResync.Load() {
		t.Errorf("no resync requested after dropping events")
	}
	// Run the engine over the queue: it drains the batch and resyncs.
	var flows []Event
	for i := range 100 {
		f := snatTCP(uint32(100000+i), uint16(2000+i), uint16(2000+i), "ESTABLISHED", true)
		flows = append(flows, dumped(f))
		e.kernel.has(f)
	}
	e.kernel.flows = flows
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- e.o.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s := e.o.Stats(); s.Resyncs > 0 && len(e.o.events) == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-runDone; err != nil {
		t.Fatal(err)
	}
	s = e.o.Stats()
	if s.Resyncs == 0 {
		t.Fatalf("no resync: %+v", s)
	}
	// The resync ran first (Run starts with one) and the queued events
	// (flows the kernel does not list) were applied; the next resync
	// would clear them. Bounded by MaxFlows either way.
	if uint64(s.Offloaded) > s.Offloads || s.Offloaded < 100 {
		t.Errorf("stats %+v", s)
	}
}

// Lost events and flows the kernel dropped meanwhile: a resync after the
// overflow makes the engine agree with the kernel.
func TestOffloadOverflowResyncs(t *testing.T) {
	e := newEngineEnv(t, engineConfig{})
	a, b := snatUDP(1, true), snatTCP(2, 40000, 61000, "ESTABLISHED", true)
	e.event(EventUpdate, a)
	e.event(EventUpdate, b)
	e.kernel.flows = []Event{dumped(b)} // a was destroyed; its event lost
	e.o.overflowed()
	e.o.maybeResync(context.Background())
	if e.fm.has(keysOf(a)[0]) || !e.fm.has(keysOf(b)[0]) {
		t.Errorf("after overflow resync: %v", e.fm.m)
	}
	if s := e.o.Stats(); s.Overflows != 1 || s.Resyncs != 1 {
		t.Errorf("stats %+v", s)
	}
	// A second overflow right away waits for the minimum gap.
	e.o.overflowed()
	e.o.maybeResync(context.Background())
	if s := e.o.Stats(); s.Resyncs != 1 {
		t.Errorf("resynced again within %v", minResyncGap)
	}
	e.now += minResyncGap
	e.o.maybeResync(context.Background())
	if s := e.o.Stats(); s.Resyncs != 2 {
		t.Errorf("pending resync did not run after the gap: %+v", s)
	}
}

func TestOffloadConfigDefaults(t *testing.T) {
	c := engineConfig{}.withDefaults()
	if c.TCPTimeout != 350*time.Second || c.UDPTimeout != 120*time.Second || c.SweepInterval != 5*time.Second {
		t.Errorf("defaults %+v", c)
	}
	c = engineConfig{TCPTimeout: 2 * time.Second, UDPTimeout: 2 * time.Second}.withDefaults()
	if c.SweepInterval != 500*time.Millisecond {
		t.Errorf("sweep interval for 2 s timeouts = %v", c.SweepInterval)
	}
}

// An offloaded flow whose FIN event never came (entries created before the
// listener carry no events): the sweep reads the entry before refreshing
// it and takes the flow out instead of keeping it alive.
func TestOffloadSweepNoticesMissedStateChange(t *testing.T) {
	const timeout = 10 * time.Second
	e := newEngineEnv(t, engineConfig{TCPTimeout: timeout, SweepInterval: time.Second})
	f := snatTCP(1, 40000, 61000, "ESTABLISHED", true)
	f.Timeout = timeout
	e.event(EventUpdate, f)
	k := keysOf(f)
	g := f
	g.TCPState, g.Timeout = "TIME_WAIT", 5*time.Second
	e.kernel.has(g) // changed in the kernel, no event
	for range 8 {
		e.now += time.Second
		if e.fm.has(k[0]) {
			e.fm.hit(t, k[0], 1, 60)
		}
		e.o.sweep(context.Background())
	}
	if e.fm.has(k[0]) || e.fm.has(k[1]) {
		t.Errorf("a flow the kernel moved to TIME_WAIT is still offloaded")
	}
	if len(e.kernel.sets) != 0 {
		t.Errorf("refreshed the timeout of a closing Flow: %v", e.kernel.sets)
	}
}

// An idle offloaded flow leaves the fast path before its kernel entry
// expires, so the expiry is the kernel's own (a late segment gets the slow
// path's RST, not a fast-path forward): gone by the retry, it is
// forgotten; kept alive by the slow path, it is offloaded again.
func TestOffloadIdleFlowHandedBackBeforeExpiry(t *testing.T) {
	const timeout = 10 * time.Second
	for _, keptAlive := range []bool{false, true} {
		e := newEngineEnv(t, engineConfig{UDPTimeout: timeout, SweepInterval: 2 * time.Second})
		f := snatUDP(1, true)
		f.Timeout = timeout
		e.event(EventUpdate, f)
		k := keysOf(f)
		e.now += 6 * time.Second // 4 s left: after the next sweep
		e.o.sweep(context.Background())
		if !e.fm.has(k[0]) || !e.fm.has(k[1]) {
			t.Fatalf("flow with 4 s left (sweep every 2 s) left the fast path early")
		}
		e.now += 1500 * time.Millisecond // 2.5 s left: before the next sweep ends
		e.o.sweep(context.Background())
		if e.fm.has(k[0]) || e.fm.has(k[1]) {
			t.Fatalf("idle flow still in the fast path 2.5 s before its kernel entry expires (sweep every 2 s)")
		}
		if s := e.o.Stats(); s.IdleHandbacks != 1 || s.Pending != 1 {
			t.Fatalf("stats %+v", s)
		}
		e.now += 2 * time.Second // still before the deadline + 1 s: no retry
		e.o.sweep(context.Background())
		if e.fm.has(k[0]) {
			t.Fatalf("offloaded again before its kernel deadline")
		}
		e.kernel.mu.Lock()
		if keptAlive {
			e.kernel.timeouts[f.Original] = timeout // slow-path traffic refreshed it
		} else {
			delete(e.kernel.timeouts, f.Original) // expired in the kernel
		}
		e.kernel.mu.Unlock()
		e.now += 2 * time.Second
		e.o.sweep(context.Background())
		s := e.o.Stats()
		if keptAlive {
			if !e.fm.has(k[0]) || !e.fm.has(k[1]) || s.Offloaded != 1 {
				t.Errorf("flow kept alive by the slow path not offloaded again: stats %+v", s)
			}
		} else if e.fm.has(k[0]) || s.Expired != 1 || s.Pending != 0 || s.Offloaded != 0 {
			t.Errorf("expired flow not forgotten: stats %+v", s)
		}
	}
}

// TestOffloadLookupDoesNotWaitForSweep: hanatctl flows calls Lookup once
// per connection while the engine may be in the middle of a sweep whose
// netlink calls are slow; Lookup and Stats answer from what the engine
// published, without waiting for it.
func TestOffloadLookupDoesNotWaitForSweep(t *testing.T) {
	e := newEngineEnv(t, engineConfig{TCPTimeout: 20 * time.Second, SweepInterval: time.Second})
	f := snatTCP(1, 40000, 61000, "ESTABLISHED", true)
	f.Timeout = 2 * time.Second // expires soon: the sweep refreshes it
	e.event(EventUpdate, f)
	k := keysOf(f)
	e.fm.hit(t, k[0], 3, 100)
	e.now += time.Second
	release := make(chan struct{})
	e.kernel.mu.Lock()
	e.kernel.block, e.kernel.entered = release, make(chan struct{}, 1)
	e.kernel.mu.Unlock()
	swept := make(chan struct{})
	go func() { e.o.sweep(context.Background()); close(swept) }()
	defer func() { close(release); <-swept }()
	select { // the sweep is inside its netlink call
	case <-e.kernel.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the sweep made no kernel call")
	}
	answered := make(chan FastCounters, 1)
	go func() {
		c, _ := e.o.Lookup(f.Original)
		_ = e.o.Stats()
		answered <- c
	}()
	select {
	case c := <-answered:
		if !c.Offloaded {
			t.Errorf("Lookup during a sweep = %+v, want the offloaded connection", c)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Lookup waited for a sweep blocked in a netlink call")
	}
}

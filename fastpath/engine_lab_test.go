//go:build linux

package fastpath

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/hanat/hanat/bpf"
	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/internal/natlab"
)

// TestOffloadEngineInNamespace runs the engine against a real kernel: the
// conntrack events and table of a NAT namespace and a real (unattached)
// fast-path flow map. A connection open before the engine starts is taken
// over by the initial resync, one opened later arrives by event; closing a
// connection (FIN) and deleting an entry (DESTROY) take them out of the
// map; the timeout refresh really changes the kernel entry.
func TestOffloadEngineInNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and loads BPF maps")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lab := natlab.New(t, ctx)
	// Events for every entry, not only those created while someone
	// listens (the default, 2, would leave the early connection silent).
	natlab.MustRun(t, ctx, lab.NAT, "sysctl", "-w", "net.netfilter.nf_conntrack_events=1")
	natlab.ServeTCPEcho(t, lab.Inet, "198.51.100.100:7")

	objs, err := bpf.Load(bpf.LoadOptions{MaxFlows: 1024})
	if err != nil {
		t.Fatalf("load fast path: %v", err)
	}
	defer objs.Close()

	early := natlab.TCPRoundTrip(t, lab.Private, "198.51.100.100:7")
	log := slog.New(slog.NewTextHandler(natlab.LogWriter{T: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ns := conntrack.NetNSFD(lab.NAT.FD())
	feed := runFeed(t, ctx, log, ns)
	o, err := openEngine(log, ns, feed, objs, &fakePaths{}, engineConfig{
		Filter:        Filter{PrivateCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.11.0/24")}, NATAddrs: []netip.Addr{natlab.NATOut}},
		SweepInterval: 250 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- o.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	origOf := func(local netip.AddrPort) Tuple {
		return Tuple{Proto: protoTCP, Src: local, Dst: netip.MustParseAddrPort("198.51.100.100:7")}
	}
	inMap := func(local netip.AddrPort) bool {
		_, _, err := objs.LookupFlow(bpf.FlowKey{Ifindex: eniIfindex, Proto: bpf.ProtoTCP, Src: local, Dst: netip.MustParseAddrPort("198.51.100.100:7")})
		return err == nil
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for i := 0; i < 200; i++ {
			if cond() {
				return
			}
			time.Sleep(25 * time.Millisecond)
		}
		t.Fatalf("timed out waiting for %s; stats %+v", what, o.Stats())
	}
	waitFor("the early connection (resync)", func() bool { return inMap(early) })

	var late net.Conn
	if err := lab.Private.Do(func() (err error) {
		late, err = net.DialTimeout("tcp4", "198.51.100.100:7", 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	lateAddr := late.LocalAddr().(*net.TCPAddr).AddrPort()
	if _, err := late.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	_ = late.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := late.Read(buf); err != nil {
		t.Fatal(err)
	}
	waitFor("the late connection (event)", func() bool { return inMap(lateAddr) })
	if c, ok := o.Lookup(origOf(lateAddr)); !ok || !c.Offloaded {
		t.Errorf("Lookup(late) = %+v, %v", c, ok)
	}

	// The sweep's refresh really changes the kernel entry: a busy
	// offloaded flow's timeout is pushed out (the kernel sees none of its
	// packets).
	tbl, err := conntrack.Open(log, ns)
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Close()
	if ev, err := tbl.Get(ctx, origOf(early)); err != nil || !ev.Plain || ev.Flow.TCPState != "ESTABLISHED" {
		t.Errorf("kernel entry of the early connection: %+v, %v", ev, err)
	}

	// FIN: the kernel leaves ESTABLISHED and the flow leaves the map.
	late.Close()
	waitFor("the closed connection to leave the map", func() bool { return !inMap(lateAddr) })

	// DESTROY: deleting the kernel entry takes the flow out.
	if out, err := lab.NAT.Run(ctx, "conntrack", "-D", "-p", "tcp", "--orig-port-src", strconv.Itoa(int(early.Port()))); err != nil {
		t.Fatalf("conntrack -D: %v: %s", err, out)
	}
	waitFor("the deleted entry to leave the map", func() bool { return !inMap(early) })
	s := o.Stats()
	if s.Events == 0 || s.Resyncs == 0 || s.Offloads < 2 || s.Removals < 2 {
		t.Errorf("stats %+v", s)
	}
}

// runFeed runs a conntrack event feed in ns until the test ends.
func runFeed(t *testing.T, ctx context.Context, log *slog.Logger, ns conntrack.NetNS) *conntrack.EventFeed {
	t.Helper()
	feed, err := conntrack.NewEventFeed(log, ns)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- feed.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("feed Run: %v", err)
		}
	})
	return feed
}

// BenchmarkOffloadStorm measures the engine's cost per connection of a
// storm against a real flow map: the ESTABLISHED event offloads both
// directions (two lookups and two updates of the map), the DESTROY event
// removes them. A measurement, not an assertion.
func BenchmarkOffloadStorm(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: loads a BPF map")
	}
	objs, err := bpf.Load(bpf.LoadOptions{MaxFlows: 1 << 17})
	if err != nil {
		b.Fatal(err)
	}
	defer objs.Close()
	now := time.Duration(0)
	o := newEngine(nil, objs, &fakePaths{}, &fakeKernel{timeouts: map[Tuple]time.Duration{}, known: map[Tuple]Flow{}},
		engineConfig{Filter: offFilter, MaxFlows: 1 << 16, Clock: func() (time.Duration, error) { return now, nil }})
	const batch = 512
	up := make([]Event, 0, batch)
	down := make([]Event, 0, batch)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f := snatTCP(uint32(i+1), uint16(1024+i%60000), uint16(1024+(i/60000)%60000), "ESTABLISHED", true)
		f.Original.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 11, byte(i / 60000 % 250)}), f.Original.Src.Port())
		up = append(up, Event{Kind: EventUpdate, Flow: f, Plain: true})
		down = append(down, Event{Kind: EventDestroy, Flow: f, Plain: true})
		if len(up) == batch || i == b.N-1 {
			o.apply(ctx, up)
			o.apply(ctx, down)
			up, down = up[:0], down[:0]
		}
	}
	b.StopTimer()
	if s := o.Stats(); s.Offloads != uint64(b.N) || s.Offloaded != 0 {
		b.Fatalf("stats %+v after %d connections", s, b.N)
	}
}

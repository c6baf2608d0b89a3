//go:build linux

package fastpath

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hanat/hanat/bpf"
	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/datapath"
	"github.com/hanat/hanat/internal/natlab"
)

func TestPassCounters(t *testing.T) {
	m := PassCounters(bpf.Counters{PassSYN: 1, PassFIN: 2, PassRST: 3, PassFragment: 4, PassIPOptions: 5, PassTTL: 6,
		PassNotTCPUDP: 7, PassTooBig: 8, PassNotIPv4: 9, PassParse: 10, PassRedirect: 11, PassUnwritable: 12})
	var sum uint64
	for _, v := range m {
		sum += v
	}
	if len(m) != 12 || sum != 78 {
		t.Errorf("pass counters %v", m)
	}
}

func TestControllerNeedsFeed(t *testing.T) {
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New without an event feed succeeded")
	}
}

// runController runs c until the test ends.
func runController(t *testing.T, ctx context.Context, c *Controller) {
	t.Helper()
	ctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Controller.Run: %v", err)
		}
	})
}

// TestControllerInNamespace drives the Controller as hanatd does, against
// a real NAT in namespaces (the datapath's own table, with the offload
// mark): Apply attaches the program to the NAT's interfaces and starts
// the engine; an established connection is offloaded (Lookup, Status,
// Totals see its packets); a new timeout restarts the engine, which takes
// the flow over; Apply with the fast path disabled detaches and unpins,
// and the connection keeps working on the slow path.
func TestControllerInNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and attaches XDP")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lab, c, cfg, nat := controllerLab(t, ctx, func(c *Controller) {
		if st := c.Status(); st.Attached() || st.Reason == "" {
			t.Errorf("before Apply: %+v", st)
		}
	})
	st := c.Status()
	// auto on veth: tc, whose checksum helpers finish the partial
	// checksums of the lab's locally generated TCP.
	if st.Mode != BackendTC || len(st.Interfaces) != 2 || st.Engine == nil || st.MaxConnections != 512 {
		t.Fatalf("after Apply: %+v", st)
	}

	natlab.ServeTCPEcho(t, lab.Inet, "198.51.100.100:7")
	var conn net.Conn
	if err := lab.Private.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp4", "198.51.100.100:7", 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	orig := conntrack.Tuple{Proto: bpf.ProtoTCP, Src: conn.LocalAddr().(*net.TCPAddr).AddrPort(), Dst: netip.MustParseAddrPort("198.51.100.100:7")}
	echo := func(n int) {
		t.Helper()
		roundTrips(t, conn, 100, n)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for range 200 {
			if cond() {
				return
			}
			echo(1)
			time.Sleep(25 * time.Millisecond)
		}
		t.Fatalf("timed out waiting for %s; status %+v", what, c.Status())
	}
	waitFor("the connection offloaded", func() bool { fc, ok := c.Lookup(orig); return ok && fc.Offloaded })
	before, ok := c.Totals()
	if !ok {
		t.Fatal("Totals unreadable with the program attached")
	}
	echo(20)
	waitFor("fast-path packets in Lookup", func() bool { fc, _ := c.Lookup(orig); return fc.OrigPackets >= 20 && fc.ReplyPackets >= 20 })
	if after, _ := c.Totals(); after.OutPackets < before.OutPackets+20 || after.InPackets < before.InPackets+20 {
		t.Errorf("Totals %+v -> %+v after 20 round trips on the fast path", before, after)
	}
	if st := c.Status(); st.Engine.Offloaded != 1 || st.Counters == nil || st.Counters.Hits < 40 {
		t.Errorf("status with one offloaded connection: engine %+v, counters %+v", st.Engine, st.Counters)
	}

	// A new timeout: a new engine, whose resync takes the flow over.
	cfg.TCPTimeout = 600 * time.Second
	if err := c.Apply(ctx, cfg, nat); err != nil {
		t.Fatal(err)
	}
	waitFor("the new engine to take the flow over", func() bool {
		st := c.Status()
		return st.Engine != nil && st.Engine.Resyncs == 1 && st.Engine.Offloaded == 1
	})

	cfg.Enabled = false
	if err := c.Apply(ctx, cfg, nat); err != nil {
		t.Fatal(err)
	}
	if st := c.Status(); st.Attached() || st.Reason != "disabled in the configuration (fastpath.enabled: false)" || st.Engine != nil {
		t.Errorf("disabled: %+v", st)
	}
	if _, err := os.Stat(labPins(lab)); !os.IsNotExist(err) {
		t.Errorf("pins after disabling: %v, want them removed", err)
	}
	if _, ok := c.Lookup(orig); ok {
		t.Error("Lookup without an engine found the connection")
	}
	echo(5) // the slow path carries it on
}

// controllerLab is a real NAT in namespaces with the datapath's own table
// (offload mark included) and a Controller as hanatd runs it, applied with
// the fast path on in mode auto (tc on the lab's veths); beforeApply, when
// set, sees the Controller before it runs.
func controllerLab(t *testing.T, ctx context.Context, beforeApply func(*Controller)) (*natlab.Lab, *Controller, Config, datapath.NAT) {
	t.Helper()
	lab := natlab.New(t, ctx)
	natlab.MustRun(t, ctx, lab.NAT, "nft", "flush", "ruleset")
	for _, kv := range []string{"net.netfilter.nf_conntrack_events=1", "net.netfilter.nf_conntrack_tcp_be_liberal=1"} {
		natlab.MustRun(t, ctx, lab.NAT, "sysctl", "-w", kv)
	}
	// The hosts' TCP leaves them with partial checksums (CHECKSUM_PARTIAL:
	// the pseudo-header's sum only), and veth would hand them on as such,
	// unverified. With checksum offload off on the NAT's veths the stack
	// finishes them in software on the way out, so the receiving host
	// verifies what the tc program wrote into a partial checksum.
	for _, dev := range []string{"in0", "out0"} {
		natlab.MustRun(t, ctx, lab.NAT, "ethtool", "-K", dev, "tx", "off")
	}
	log := slog.New(slog.NewTextHandler(natlab.LogWriter{T: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	nat := datapath.NAT{
		PrivateCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.11.0/24")},
		SNATAddrs:    []netip.Addr{natlab.NATOut},
		OutsideIface: "out0",
		Offload:      &datapath.Offload{AfterPackets: datapath.DefaultOffloadAfterPackets},
	}
	if _, err := datapath.NewSlowpath(log, lab.NAT.FD()).Apply(ctx, nat); err != nil {
		t.Fatal(err)
	}
	ns := conntrack.NetNSFD(lab.NAT.FD())
	feed := runFeed(t, ctx, log, ns)
	pins := labPins(lab)
	t.Cleanup(func() { _, _ = Remove(nil, pins) })
	c, err := New(log, Options{PinPath: pins, MaxFlows: 1024, Feed: feed, Namespace: lab.NAT, SweepInterval: 250 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if beforeApply != nil {
		beforeApply(c)
	}
	runController(t, ctx, c)
	cfg := Config{Enabled: true, Mode: XDPModeAuto, SysctlsManaged: true}
	if err := c.Apply(ctx, cfg, nat); err != nil {
		t.Fatal(err)
	}
	return lab, c, cfg, nat
}

// labPins is where controllerLab's Controller pins its programs and maps.
func labPins(lab *natlab.Lab) string {
	return filepath.Join("/sys/fs/bpf", "hanat-test-"+filepath.Base(lab.NAT.Name))
}

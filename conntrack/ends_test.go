//go:build linux

package conntrack

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"
)

func TestEndedIdle(t *testing.T) {
	tcp := Tuple{Proto: protoTCP}
	udp := Tuple{Proto: protoUDP}
	for _, c := range []struct {
		name string
		f    Flow
		want bool
	}{
		{"tcp established", Flow{Original: tcp, TCPState: "ESTABLISHED"}, true},
		{"tcp time_wait", Flow{Original: tcp, TCPState: "TIME_WAIT"}, false},
		{"tcp close", Flow{Original: tcp, TCPState: "CLOSE"}, false},
		{"tcp syn_sent", Flow{Original: tcp, TCPState: "SYN_SENT"}, false},
		{"udp answered", Flow{Original: udp, ReplyPackets: 1}, true},
		{"udp assured", Flow{Original: udp, Assured: true}, true},
		{"udp unanswered", Flow{Original: udp, OrigPackets: 3}, false},
		{"icmp", Flow{Original: Tuple{Proto: protoICMP}, ReplyPackets: 1}, false},
	} {
		if got := EndedIdle(c.f); got != c.want {
			t.Errorf("%s: EndedIdle = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestEndWatcherObserveFilters(t *testing.T) {
	w := NewEndWatcher(nil, nil)
	f := Flow{
		Original: Tuple{Proto: protoUDP, Src: netip.MustParseAddrPort("10.0.11.10:5000"), Dst: netip.MustParseAddrPort("198.51.100.100:53")},
		Reply:    Tuple{Proto: protoUDP, Src: netip.MustParseAddrPort("198.51.100.100:53"), Dst: netip.MustParseAddrPort("198.51.100.2:1024")},
		// A DESTROY event carries no status bits: SNAT is false here.
		ReplyPackets: 1,
	}
	w.observe(f) // no filter yet: not hanat's
	w.SetFilter(Filter{PrivateCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.11.0/24")}, NATAddrs: []netip.Addr{tNatOut}})
	w.observe(f)
	other := f
	other.Original.Src = netip.MustParseAddrPort("192.0.2.9:5000")
	w.observe(other)
	closed := f
	closed.ReplyPackets = 0
	w.observe(closed)
	if got := w.Stats(); got.Destroyed != 2 || got.IdleTimeouts != 1 {
		t.Errorf("stats = %+v, want 2 destroyed (hanat's), 1 idle", got)
	}
}

// TestEndsInNamespace: a UDP flow that times out in a real NAT namespace
// (udp timeouts set to 1 s) is counted as an idle timeout, and new flows
// that find no free SNAT port (a one-port range) grow the kernel's
// insert_failed, the ErrorPortAllocation counter.
func TestEndsInNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lab := newNATLab(t, ctx)
	// Replace the lab's SNAT by one with a single source port.
	nft := lab.nat.Command(ctx, "nft", "-f", "-")
	nft.Stdin = strings.NewReader(`flush ruleset
table ip hntest {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.0.11.0/24 meta l4proto udp snat to 198.51.100.2:40000-40000
		ip saddr 10.0.11.0/24 snat to 198.51.100.2
	}
}
`)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft -f - in %s: %v: %s", lab.nat.Name, err, out)
	}
	mustRun(t, ctx, lab.nat, "sysctl", "-w", "net.netfilter.nf_conntrack_udp_timeout=1")
	mustRun(t, ctx, lab.nat, "sysctl", "-w", "net.netfilter.nf_conntrack_udp_timeout_stream=1")
	serveUDPEcho(t, lab.inet, "198.51.100.100:7")

	log := slog.New(slog.NewTextHandler(testLogWriter{T: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	feed, err := NewEventFeed(log, NetNSFD(lab.nat.FD()))
	if err != nil {
		t.Fatal(err)
	}
	w := NewEndWatcher(log, feed)
	w.SetFilter(Filter{PrivateCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.11.0/24")}, NATAddrs: []netip.Addr{tNatOut}})
	runCtx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 2)
	go func() { runErr <- feed.Run(runCtx) }()
	go func() { runErr <- w.Run(runCtx) }()
	defer func() {
		stop()
		for range 2 {
			if err := <-runErr; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}()
	time.Sleep(100 * time.Millisecond) // the socket joins its group

	before, err := ReadKernelStats(ctx, NetNSFD(lab.nat.FD()))
	if err != nil {
		t.Fatal(err)
	}
	// One answered UDP flow holds the only port towards 198.51.100.100:7.
	udpRoundTrip(t, lab.private, "198.51.100.100:7")
	// Three more flows from other source ports to the same destination find
	// no free port.
	for i := 0; i < 3; i++ {
		var c net.Conn
		if err := lab.private.Do(func() (err error) { c, err = net.Dial("udp4", "198.51.100.100:7"); return err }); err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte("no port for me"))
		c.Close()
	}
	after, err := ReadKernelStats(ctx, NetNSFD(lab.nat.FD()))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kernel stats before %+v after %+v", before, after)
	if after.InsertFailed < before.InsertFailed+3 {
		t.Errorf("insert_failed grew by %d, want >= 3 (three flows without a free SNAT port)", after.InsertFailed-before.InsertFailed)
	}

	// The answered flow times out after ~1 s. The conntrack GC may take
	// a while to notice in a quiet namespace; a table dump reaps expired
	// entries at once (and reports their DESTROY).
	tbl, err := Open(nil, NetNSFD(lab.nat.FD()))
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Close()
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < 60 && time.Now().Before(deadline) && w.Stats().IdleTimeouts == 0; i++ {
		time.Sleep(500 * time.Millisecond)
		if _, err := tbl.Flows(ctx, Filter{}); err != nil {
			t.Fatalf("dump: %v", err)
		}
	}
	if s := w.Stats(); s.IdleTimeouts != 1 {
		t.Errorf("end watcher stats %+v, want 1 idle timeout (the answered UDP flow)", s)
	}
}

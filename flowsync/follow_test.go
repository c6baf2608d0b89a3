package flowsync

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/internal/natlab"
)

// TestFollowInNamespace: a sender following a real NAT namespace's
// conntrack events brings an established connection to the receiver
// without a snapshot, and its end takes it away.
func TestFollowInNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lab := natlab.New(t, ctx)
	natlab.MustRun(t, ctx, lab.NAT, "sysctl", "-w", "net.netfilter.nf_conntrack_events=1")
	natlab.ServeTCPEcho(t, lab.Inet, "198.51.100.100:7")
	log := slog.New(slog.NewTextHandler(natlab.LogWriter{T: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ns := conntrack.NetNSFD(lab.NAT.FD())
	feed, err := conntrack.NewEventFeed(log, ns)
	if err != nil {
		t.Fatal(err)
	}
	table, err := conntrack.Open(log, ns)
	if err != nil {
		t.Fatal(err)
	}
	defer table.Close()
	key := []byte("0123456789abcdef0123456789abcdef")
	r, addr := startReceiver(t, key, netip.MustParseAddr("127.0.0.1"))
	ka, dead := fastTimers()
	filter := conntrack.Filter{PrivateCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.11.0/24")}, NATAddrs: []netip.Addr{natlab.NATOut}}
	s, err := NewSender(SenderConfig{Log: log, Key: key, Peer: addr, Filter: filter, Source: table, Keepalive: ka, DeadAfter: dead})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 3)
	go func() { done <- feed.Run(runCtx) }()
	go func() { done <- s.Follow(runCtx, feed, 0) }()
	go func() { done <- s.Run(runCtx) }()
	defer func() {
		stop()
		for range 3 {
			if err := <-done; err != nil && runCtx.Err() == nil {
				t.Errorf("run: %v", err)
			}
		}
	}()
	waitFor(t, "the first (empty) snapshot", func() bool { return !r.Status().LastFullSync.IsZero() })
	snapshots := r.Status().Snapshots

	var c net.Conn
	if err := lab.Private.Do(func() (err error) {
		c, err = net.DialTimeout("tcp4", "198.51.100.100:7", 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	local := c.LocalAddr().(*net.TCPAddr).AddrPort()
	msg := []byte("hanat")
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, msg); err != nil {
		t.Fatal(err)
	}
	held := func() (conntrack.Flow, bool) {
		for _, f := range r.Held() {
			if f.Original.Src == local {
				return f, true
			}
		}
		return conntrack.Flow{}, false
	}
	waitFor(t, "the connection held by the receiver", func() bool { _, ok := held(); return ok })
	if f, _ := held(); f.Reply.Dst.Addr() != natlab.NATOut || f.TCPState != "ESTABLISHED" {
		t.Errorf("held %+v, want the SNAT binding on %s, established", f, natlab.NATOut)
	}
	if got := r.Status().Snapshots; got != snapshots {
		t.Errorf("snapshots %d -> %d: the connection came by snapshot, not by event", snapshots, got)
	}
	natlab.MustRun(t, ctx, lab.NAT, "conntrack", "-D", "-p", "tcp", "--orig-src", local.Addr().String())
	waitFor(t, "the ended connection to leave the receiver", func() bool { _, ok := held(); return !ok })
	c.Close()
}

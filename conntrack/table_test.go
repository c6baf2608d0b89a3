package conntrack

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"testing"
	"time"

	mdnetlink "github.com/mdlayher/netlink"
	ct "github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/hanat/hanat/internal/natlab"
	"github.com/hanat/hanat/internal/netns"
)

// The root tests' NAT lab (internal/natlab) under this package's names.
var (
	tPrivate = natlab.Private
	tNatIn   = natlab.NATIn
	tNatOut  = natlab.NATOut
	tInet    = natlab.Inet
)

type natLab struct {
	private, nat, inet *netns.NS
}

func newNATLab(t *testing.T, ctx context.Context) *natLab {
	l := natlab.New(t, ctx)
	return &natLab{private: l.Private, nat: l.NAT, inet: l.Inet}
}

func mustRun(t *testing.T, ctx context.Context, ns *netns.NS, name string, args ...string) {
	t.Helper()
	natlab.MustRun(t, ctx, ns, name, args...)
}

func serveUDPEcho(t *testing.T, ns *netns.NS, addr string) <-chan netip.AddrPort {
	return natlab.ServeUDPEcho(t, ns, addr)
}

func serveTCPEcho(t *testing.T, ns *netns.NS, addr string) { natlab.ServeTCPEcho(t, ns, addr) }

func udpRoundTrip(t *testing.T, ns *netns.NS, to string) netip.AddrPort {
	return natlab.UDPRoundTrip(t, ns, to)
}

func tcpRoundTrip(t *testing.T, ns *netns.NS, to string) netip.AddrPort {
	return natlab.TCPRoundTrip(t, ns, to)
}

func icmpEcho(t *testing.T, ns *netns.NS, to netip.Addr, id uint16) { natlab.ICMPEcho(t, ns, to, id) }

type testLogWriter = natlab.LogWriter

func TestTableInNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, veths and an nftables NAT table inside them")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lab := newNATLab(t, ctx)

	udpPeers := serveUDPEcho(t, lab.inet, "198.51.100.100:7777")
	serveTCPEcho(t, lab.inet, "198.51.100.100:8080")

	udpClient := udpRoundTrip(t, lab.private, "198.51.100.100:7777")
	var udpSeen netip.AddrPort
	select {
	case udpSeen = <-udpPeers:
	case <-ctx.Done():
		t.Fatal("echo server saw no datagram")
	}
	if udpSeen.Addr() != tNatOut {
		t.Fatalf("internet host saw UDP from %v, want the SNAT address %v", udpSeen, tNatOut)
	}
	tcpClient := tcpRoundTrip(t, lab.private, "198.51.100.100:8080")
	const icmpID = 0x4a7e
	icmpEcho(t, lab.private, tInet, icmpID)

	// A flow of the NAT itself, not NATed: it must not be listed.
	natOwn := udpRoundTrip(t, lab.nat, "198.51.100.100:7777")
	if natOwn.Addr() != tNatOut {
		t.Fatalf("nat's own socket bound to %v, want %v", natOwn, tNatOut)
	}

	// Open on a private copy of the namespace fd and close it right away:
	// the Table must not depend on the caller's fd (the redial after the
	// cancelled dump below proves it).
	fd, err := unix.Dup(lab.nat.FD())
	if err != nil {
		t.Fatal(err)
	}
	tb, err := Open(slog.New(slog.NewTextHandler(io.Discard, nil)), NetNSFD(fd))
	unix.Close(fd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tb.Close() })
	filter := Filter{
		PrivateCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.11.0/24")},
		NATAddrs:     []netip.Addr{tNatOut},
	}

	flows, err := tb.Flows(ctx, filter)
	if err != nil {
		t.Fatal(err)
	}
	var gotUDP, gotTCP, gotICMP bool
	for _, f := range flows {
		t.Logf("flow %d %s %s / %s state=%q snat=%v assured=%v timeout=%v pkts=%d/%d",
			f.ID, f.ProtoName, f.Original, f.Reply, f.TCPState, f.SNAT, f.Assured, f.Timeout, f.OrigPackets, f.ReplyPackets)
		if !f.SNAT || f.NATAddr().Addr() != tNatOut {
			t.Errorf("flow %s: SNAT=%v NATAddr=%v, want SNAT to %v", f.Original, f.SNAT, f.NATAddr(), tNatOut)
		}
		if f.Original.Src.Addr() == tNatOut {
			t.Errorf("the nat namespace's own flow %s was not filtered out", f.Original)
		}
		if f.OrigPackets == 0 || f.ReplyPackets == 0 || f.OrigBytes == 0 {
			t.Errorf("flow %s: counters %d/%d packets with nf_conntrack_acct=1", f.Original, f.OrigPackets, f.ReplyPackets)
		}
		if f.ID == 0 || f.Timeout <= 0 {
			t.Errorf("flow %s: id %d timeout %v", f.Original, f.ID, f.Timeout)
		}
		switch f.ProtoName {
		case "udp":
			gotUDP = true
			if f.Original.Src != udpClient || f.Original.Dst != netip.MustParseAddrPort("198.51.100.100:7777") {
				t.Errorf("UDP flow original %s, want %s -> 198.51.100.100:7777", f.Original, udpClient)
			}
			if f.NATAddr() != udpSeen {
				t.Errorf("UDP NATAddr %v, but the internet host saw %v", f.NATAddr(), udpSeen)
			}
			if f.TCPState != "" {
				t.Errorf("UDP flow with TCP state %q", f.TCPState)
			}
		case "tcp":
			gotTCP = true
			if f.Original.Src != tcpClient || f.TCPState != "ESTABLISHED" || !f.Assured {
				t.Errorf("TCP flow %s state %q assured %v, want %s ESTABLISHED assured", f.Original, f.TCPState, f.Assured, tcpClient)
			}
		case "icmp":
			gotICMP = true
			if f.Original.ICMPID != icmpID || f.Original.Src.Addr() != tPrivate || f.Original.Dst.Addr() != tInet {
				t.Errorf("ICMP flow %s, want %s -> %s id %d", f.Original, tPrivate, tInet, icmpID)
			}
		default:
			t.Errorf("unexpected flow %s %s", f.ProtoName, f.Original)
		}
	}
	if !gotUDP || !gotTCP || !gotICMP || len(flows) != 3 {
		t.Errorf("got %d flows (udp %v tcp %v icmp %v), want exactly the UDP, TCP and ICMP flows", len(flows), gotUDP, gotTCP, gotICMP)
	}

	// The unfiltered table does hold the nat namespace's own flow.
	var sawOwn bool
	err = tb.walk(ctx, netfilter.ProtoIPv4, func() { sawOwn = false }, func(c *ct.Flow) {
		if f := FlowFrom(c); f.Original.Src == natOwn {
			sawOwn = true
			if f.SNAT || filter.Match(f) {
				t.Errorf("nat's own flow %s: SNAT=%v match=%v", f.Original, f.SNAT, filter.Match(f))
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !sawOwn {
		t.Errorf("unfiltered dump lacks the nat namespace's own flow from %v", natOwn)
	}

	st, err := tb.Stats(ctx, filter)
	if err != nil {
		t.Fatal(err)
	}
	if st.Active != 3 || st.TCP != 1 || st.UDP != 1 || st.ICMP != 1 || st.Other != 0 || st.TCPEstablished != 1 || st.Assured < 1 {
		t.Errorf("Stats = %+v, want 3 active: 1 tcp (established, assured), 1 udp, 1 icmp", st)
	}

	// A filter for someone else's NAT address lists nothing.
	other := Filter{PrivateCIDRs: filter.PrivateCIDRs, NATAddrs: []netip.Addr{netip.MustParseAddr("203.0.113.1")}}
	if n, err := tb.Flows(ctx, other); err != nil || len(n) != 0 {
		t.Errorf("flows for another NAT address: %d, %v; want none", len(n), err)
	}

	// A cancelled context stops the dump with its error; the table stays usable.
	cctx, ccancel := context.WithCancel(ctx)
	ccancel()
	if _, err := tb.Flows(cctx, filter); !errors.Is(err, context.Canceled) {
		t.Errorf("Flows with cancelled ctx: %v, want context.Canceled", err)
	}
	if again, err := tb.Flows(ctx, filter); err != nil || len(again) != 3 {
		t.Errorf("Flows after a cancelled dump: %d flows, %v; want 3", len(again), err)
	}
}

func TestOpenRejectsFDZero(t *testing.T) {
	if _, err := Open(nil, NetNSFD(0)); err == nil {
		t.Error("Open(fd 0) succeeded, want an error (fd 0 reads as the current namespace)")
	}
}

// TestTableLargeDump fills a namespace's table with many entries, so that a
// dump spans many netlink datagrams, and checks that the streamed walk sees
// every one exactly once.
func TestTableLargeDump(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace and conntrack entries inside it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ns, err := netns.Create(netns.UniqueName("hnt-ctbig-"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Errorf("delete namespace %s: %v", ns.Name, err)
		}
	})
	c, err := ct.Dial(&mdnetlink.Config{NetNS: ns.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const n = 5000
	src, dst := netip.MustParseAddr("10.0.11.20"), netip.MustParseAddr("203.0.113.7")
	for i := range n {
		f := ct.NewFlow(protoUDP, 0, src, dst, uint16(10000+i), 53, 120, 0)
		if err := c.Create(f); err != nil {
			t.Fatalf("create entry %d in %s: %v", i, ns.Name, err)
		}
	}

	tb, err := Open(nil, NetNSFD(ns.FD()))
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	seen := make(map[uint16]int, n)
	err = tb.walk(ctx, netfilter.ProtoIPv4, func() { clear(seen) }, func(c *ct.Flow) {
		if f := FlowFrom(c); f.Original.Src.Addr() == src && f.Original.Dst == netip.AddrPortFrom(dst, 53) {
			seen[f.Original.Src.Port()]++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Errorf("walk saw %d distinct entries, want %d", len(seen), n)
	}
	for port, k := range seen {
		if k != 1 {
			t.Errorf("entry from port %d seen %d times", port, k)
		}
	}
	// None of them is NATed, so hanat's view is empty.
	st, err := tb.Stats(ctx, Filter{PrivateCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")}, NATAddrs: []netip.Addr{dst}})
	if err != nil || st != (Stats{}) {
		t.Errorf("Stats over un-NATed entries = %+v, %v; want zero", st, err)
	}
}

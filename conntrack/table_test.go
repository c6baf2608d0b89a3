package conntrack

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	mdnetlink "github.com/mdlayher/netlink"
	ct "github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"

	"github.com/hanat/hanat/internal/netns"
)

// The root test builds the smallest NAT, all inside namespaces it creates:
//
//	private 10.0.11.10/24 ──eth0 · in0 10.0.11.1── nat ──out0 198.51.100.2 · eth0── 198.51.100.100/24 internet
//
// nat SNATs 10.0.11.0/24 to 198.51.100.2 with a throwaway nftables table.
var (
	tPrivate = netip.MustParseAddr("10.0.11.10")
	tNatIn   = netip.MustParseAddr("10.0.11.1")
	tNatOut  = netip.MustParseAddr("198.51.100.2")
	tInet    = netip.MustParseAddr("198.51.100.100")
)

const snatRuleset = `table ip hntest {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.0.11.0/24 snat to 198.51.100.2
	}
}
`

type natLab struct {
	private, nat, inet *netns.NS
}

func newNATLab(t *testing.T, ctx context.Context) *natLab {
	t.Helper()
	mk := func(role string) *netns.NS {
		ns, err := netns.Create(netns.UniqueName("hnt-ct" + role + "-"))
		if err != nil {
			t.Fatalf("create %s namespace: %v", role, err)
		}
		t.Cleanup(func() {
			if err := ns.Close(); err != nil {
				t.Errorf("delete namespace %s: %v", ns.Name, err)
			}
		})
		return ns
	}
	lab := &natLab{private: mk("p"), nat: mk("n"), inet: mk("i")}

	link := func(local string, localAddr netip.Prefix, peer *netns.NS, peerAddr netip.Prefix, gw netip.Addr) {
		t.Helper()
		if err := lab.nat.Veth(local, localAddr, peer, "eth0", peerAddr, gw); err != nil {
			t.Fatal(err)
		}
	}
	link("in0", netip.PrefixFrom(tNatIn, 24), lab.private, netip.PrefixFrom(tPrivate, 24), tNatIn)
	link("out0", netip.PrefixFrom(tNatOut, 24), lab.inet, netip.PrefixFrom(tInet, 24), netip.Addr{})

	mustRun(t, ctx, lab.nat, "sysctl", "-w", "net.ipv4.ip_forward=1")
	nft := lab.nat.Command(ctx, "nft", "-f", "-")
	nft.Stdin = strings.NewReader(snatRuleset)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft -f - in %s: %v: %s", lab.nat.Name, err, out)
	}
	// The NAT table pulls conntrack into the namespace; turn on its
	// per-namespace byte/packet accounting so the counters are filled.
	mustRun(t, ctx, lab.nat, "sysctl", "-w", "net.netfilter.nf_conntrack_acct=1")
	return lab
}

func mustRun(t *testing.T, ctx context.Context, ns *netns.NS, name string, args ...string) {
	t.Helper()
	if _, err := ns.Run(ctx, name, args...); err != nil {
		t.Fatal(err)
	}
}

// serveUDPEcho answers every datagram with its payload; peers receives the
// source address of each one.
func serveUDPEcho(t *testing.T, ns *netns.NS, addr string) <-chan netip.AddrPort {
	t.Helper()
	var pc net.PacketConn
	if err := ns.Do(func() (err error) { pc, err = net.ListenPacket("udp4", addr); return err }); err != nil {
		t.Fatalf("listen udp %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { pc.Close() })
	c := pc.(*net.UDPConn)
	peers := make(chan netip.AddrPort, 16)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return // closed by cleanup
			}
			select {
			case peers <- from:
			default:
			}
			_, _ = c.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return peers
}

// serveTCPEcho echoes every connection until the test ends.
func serveTCPEcho(t *testing.T, ns *netns.NS, addr string) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp4", addr); return err }); err != nil {
		t.Fatalf("listen tcp %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
			go func() { _, _ = io.Copy(c, c) }()
		}
	}()
}

// udpRoundTrip sends from a socket opened in ns and waits for the echo; it
// returns the socket's local address. The socket stays open until the test
// ends so the flow stays in the table.
func udpRoundTrip(t *testing.T, ns *netns.NS, to string) netip.AddrPort {
	t.Helper()
	var c net.Conn
	if err := ns.Do(func() (err error) { c, err = net.Dial("udp4", to); return err }); err != nil {
		t.Fatalf("dial udp %s from %s: %v", to, ns.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	msg := []byte("hanat conntrack test")
	buf := make([]byte, 1500)
	for try := 0; try < 3; try++ {
		if _, err := c.Write(msg); err != nil {
			t.Fatalf("udp write to %s: %v", to, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err == nil && bytes.Equal(buf[:n], msg) {
			return c.LocalAddr().(*net.UDPAddr).AddrPort()
		}
	}
	t.Fatalf("no UDP echo from %s to %s", to, ns.Name)
	return netip.AddrPort{}
}

// tcpRoundTrip opens a TCP connection from ns, exchanges one echo and leaves
// the connection open (ESTABLISHED) until the test ends.
func tcpRoundTrip(t *testing.T, ns *netns.NS, to string) netip.AddrPort {
	t.Helper()
	var c net.Conn
	d := net.Dialer{Timeout: 5 * time.Second}
	if err := ns.Do(func() (err error) { c, err = d.Dial("tcp4", to); return err }); err != nil {
		t.Fatalf("dial tcp %s from %s: %v", to, ns.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := []byte("ping over tcp")
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("tcp write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || !bytes.Equal(buf, msg) {
		t.Fatalf("tcp echo: %q, %v", buf, err)
	}
	return c.LocalAddr().(*net.TCPAddr).AddrPort()
}

// icmpEcho sends one ICMP echo request with the given identifier from a raw
// socket opened in ns and waits for the reply.
func icmpEcho(t *testing.T, ns *netns.NS, to netip.Addr, id uint16) {
	t.Helper()
	var pc net.PacketConn
	if err := ns.Do(func() (err error) { pc, err = net.ListenPacket("ip4:icmp", "0.0.0.0"); return err }); err != nil {
		t.Fatalf("raw icmp socket in %s: %v", ns.Name, err)
	}
	defer pc.Close()
	req := []byte{8, 0, 0, 0, 0, 0, 0, 1, 'h', 'a', 'n', 'a', 't'} // echo request, seq 1
	binary.BigEndian.PutUint16(req[4:], id)
	binary.BigEndian.PutUint16(req[2:], inetChecksum(req))
	dst := &net.IPAddr{IP: net.IP(to.AsSlice())}
	buf := make([]byte, 1500)
	for try := 0; try < 3; try++ {
		if _, err := pc.WriteTo(req, dst); err != nil {
			t.Fatalf("icmp echo to %s: %v", to, err)
		}
		_ = pc.SetReadDeadline(time.Now().Add(2 * time.Second))
		for range 16 { // skip other ICMP the raw socket sees
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				break
			}
			if n >= 8 && buf[0] == 0 && binary.BigEndian.Uint16(buf[4:]) == id {
				return
			}
		}
	}
	t.Fatalf("no ICMP echo reply from %s with id %d", to, id)
}

func inetChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

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
	tb, err := Open(slog.New(slog.NewTextHandler(io.Discard, nil)), fd)
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
	if _, err := Open(nil, 0); err == nil {
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

	tb, err := Open(nil, ns.FD())
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

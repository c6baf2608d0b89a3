// Package natlab builds, for hanat's root tests, the smallest NAT inside
// network namespaces the test creates and removes, plus the echo servers
// and round trips that put flows into its conntrack table.
package natlab

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hanat/hanat/internal/netns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The lab's addresses (read only).
var (
	Private = netip.MustParseAddr("10.0.11.10")
	NATIn   = netip.MustParseAddr("10.0.11.1")
	NATOut  = netip.MustParseAddr("198.51.100.2")
	Inet    = netip.MustParseAddr("198.51.100.100")
)

// SNATRuleset is the lab's throwaway nftables NAT table (it also loads the
// kernel's NAT).
const SNATRuleset = `table ip hntest {
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr 10.0.11.0/24 snat to 198.51.100.2
	}
}
`

// Lab is the smallest NAT, all inside namespaces the test creates:
//
//	private 10.0.11.10/24 ──eth0 · in0 10.0.11.1── nat ──out0 198.51.100.2 · eth0── 198.51.100.100/24 internet
//
// nat SNATs 10.0.11.0/24 to 198.51.100.2 with a throwaway nftables table.
type Lab struct {
	Private, NAT, Inet *netns.NS
}

// New builds the lab; the test's cleanup removes it.
func New(t testing.TB, ctx context.Context) *Lab {
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
	lab := &Lab{Private: mk("p"), NAT: mk("n"), Inet: mk("i")}

	link := func(local string, localAddr netip.Prefix, peer *netns.NS, peerAddr netip.Prefix, gw netip.Addr) {
		t.Helper()
		if err := lab.NAT.Veth(local, localAddr, peer, "eth0", peerAddr, gw); err != nil {
			t.Fatal(err)
		}
	}
	link("in0", netip.PrefixFrom(NATIn, 24), lab.Private, netip.PrefixFrom(Private, 24), NATIn)
	link("out0", netip.PrefixFrom(NATOut, 24), lab.Inet, netip.PrefixFrom(Inet, 24), netip.Addr{})

	MustRun(t, ctx, lab.NAT, "sysctl", "-w", "net.ipv4.ip_forward=1")
	nft := lab.NAT.Command(ctx, "nft", "-f", "-")
	nft.Stdin = strings.NewReader(SNATRuleset)
	if out, err := nft.CombinedOutput(); err != nil {
		t.Fatalf("nft -f - in %s: %v: %s", lab.NAT.Name, err, out)
	}
	// The NAT table pulls conntrack into the namespace; turn on its
	// per-namespace byte/packet accounting so the counters are filled.
	MustRun(t, ctx, lab.NAT, "sysctl", "-w", "net.netfilter.nf_conntrack_acct=1")
	return lab
}

func MustRun(t testing.TB, ctx context.Context, ns *netns.NS, name string, args ...string) {
	t.Helper()
	if _, err := ns.Run(ctx, name, args...); err != nil {
		t.Fatal(err)
	}
}

// ServeUDPEcho answers every datagram with its payload; peers receives the
// source address of each one.
func ServeUDPEcho(t testing.TB, ns *netns.NS, addr string) <-chan netip.AddrPort {
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

// ServeTCPEcho echoes every connection until the test ends.
func ServeTCPEcho(t testing.TB, ns *netns.NS, addr string) {
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

// UDPRoundTrip sends from a socket opened in ns and waits for the echo; it
// returns the socket's local address. The socket stays open until the test
// ends so the flow stays in the table.
func UDPRoundTrip(t testing.TB, ns *netns.NS, to string) netip.AddrPort {
	t.Helper()
	return UDPRoundTripFrom(t, ns, "", to)
}

// UDPRoundTripFrom is UDPRoundTrip from the local address from ("": the
// kernel's choice).
func UDPRoundTripFrom(t testing.TB, ns *netns.NS, from, to string) netip.AddrPort {
	t.Helper()
	var d net.Dialer
	if from != "" {
		d.LocalAddr = &net.UDPAddr{IP: net.ParseIP(from)}
	}
	var c net.Conn
	if err := ns.Do(func() (err error) { c, err = d.Dial("udp4", to); return err }); err != nil {
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

// TCPRoundTrip opens a TCP connection from ns, exchanges one echo and leaves
// the connection open (ESTABLISHED) until the test ends.
func TCPRoundTrip(t testing.TB, ns *netns.NS, to string) netip.AddrPort {
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

// ICMPEcho sends one ICMP echo request with the given identifier from a raw
// socket opened in ns and waits for the reply.
func ICMPEcho(t testing.TB, ns *netns.NS, to netip.Addr, id uint16) {
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

func inetChecksum(b []byte) uint16 { return ^OnesSum(b) }

// OnesSum is the folded one's-complement sum of b's 16-bit words (an odd
// length padded with a zero byte), not complemented: RFC 1071's sum.
func OnesSum(b []byte) uint16 {
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
	return uint16(sum)
}

// LogWriter sends a slog text handler's lines to the test log.
type LogWriter struct{ T testing.TB }

func (w LogWriter) Write(p []byte) (int, error) {
	w.T.Helper()
	w.T.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// NewNS creates a namespace named after prefix (unique) that the test's
// cleanup deletes; it skips the test unless it runs as root.
func NewNS(t testing.TB, prefix string) *netns.NS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	ns, err := netns.Create(netns.UniqueName(prefix))
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Errorf("close namespace %s: %v", ns.Name, err)
		}
	})
	return ns
}

// Handle is a netlink handle in ns, closed by the test's cleanup.
func Handle(t testing.TB, ns *netns.NS) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns.Handle())
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", ns.Name, err)
	}
	t.Cleanup(h.Close)
	return h
}

// Veth makes a veth pair from h's namespace (name) to peerNS (peer, whose
// handle is hp), both up.
func Veth(t testing.TB, h *netlink.Handle, name string, peerNS *netns.NS, hp *netlink.Handle, peer string) {
	t.Helper()
	err := h.LinkAdd(&netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name},
		PeerName:      peer,
		PeerNamespace: netlink.NsFd(peerNS.FD()),
	})
	if err != nil {
		t.Fatalf("add veth %s -> %s/%s: %v", name, peerNS.Name, peer, err)
	}
	if err := h.LinkSetUp(LinkByName(t, h, name)); err != nil {
		t.Fatal(err)
	}
	if err := hp.LinkSetUp(LinkByName(t, hp, peer)); err != nil {
		t.Fatal(err)
	}
}

// LinkByName is h's link called name.
func LinkByName(t testing.TB, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatalf("link %s: %v", name, err)
	}
	return l
}

// AddrAdd adds cidr to l.
func AddrAdd(t testing.TB, h *netlink.Handle, l netlink.Link, cidr string) {
	t.Helper()
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(l, a); err != nil {
		t.Fatalf("add %s to %s: %v", cidr, l.Attrs().Name, err)
	}
}

// Ping sends one ICMP echo request to dst on a raw socket (created in
// the calling thread's namespace) and waits for the reply.
func Ping(dst netip.Addr, timeout time.Duration) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
	if err != nil {
		return fmt.Errorf("raw icmp socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return err
	}
	const id, seq = 0x4e54, 1
	msg := []byte{8, 0, 0, 0, id >> 8, id & 0xff, 0, seq, 'h', 'a', 'n', 'a', 't'}
	binary.BigEndian.PutUint16(msg[2:], inetChecksum(msg))
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrInet4{Addr: dst.As4()}); err != nil {
		return fmt.Errorf("send echo to %s: %w", dst, err)
	}
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	for i := 0; i < 16 && time.Now().Before(deadline); i++ {
		n, from, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return fmt.Errorf("wait for echo reply from %s: %w", dst, err)
		}
		sa, ok := from.(*unix.SockaddrInet4)
		if !ok || netip.AddrFrom4(sa.Addr) != dst || n < 20 {
			continue
		}
		ihl := int(buf[0]&0x0f) * 4
		if n >= ihl+8 && buf[ihl] == 0 && binary.BigEndian.Uint16(buf[ihl+4:]) == id {
			return nil
		}
	}
	return fmt.Errorf("no echo reply from %s within %v", dst, timeout)
}

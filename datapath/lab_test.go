package datapath

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hanat/hanat/internal/natlab"
	"github.com/hanat/hanat/internal/netns"
	"github.com/vishvananda/netlink"
)

// TestSysctlsInNamespace applies the NAT's sysctls inside a fresh
// namespace: ip_forward becomes 1 there and stays as it was on the host;
// keys the namespace cannot change are reported, not failed.
func TestSysctlsInNamespace(t *testing.T) {
	ns := newTestNS(t)
	ctx := testContext(t)
	h := nsHandle(t, ns)
	outside := "hnto" + netns.UniqueName("")[:4]
	addVethInside(t, h, outside, outside+"p")

	// nf_conntrack's sysctls appear once the module is in use: apply the
	// table first, as hanatd does.
	if _, err := NewSlowpath(testLogger(t), ns.FD()).Apply(ctx, representativeNAT()); err != nil {
		t.Fatalf("Apply table: %v", err)
	}

	hostBefore := readHostSysctl(t, "net/ipv4/ip_forward")
	state := filepath.Join(t.TempDir(), "sysctl-state.json")
	s := &Sysctls{StatePath: state}
	want := DesiredSysctls(SysctlSettings{}, 8<<30, outside)

	var results []SysctlResult
	var nsForward, nsForwardOrig string
	err := ns.Do(func() error {
		b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		if err != nil {
			return err
		}
		nsForwardOrig = string(b)
		results, err = s.Apply(ctx, want)
		if err != nil {
			return err
		}
		b, err = os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		nsForward = string(b)
		return err
	})
	if err != nil {
		t.Fatalf("Apply sysctls in namespace: %v", err)
	}
	for _, r := range results {
		t.Logf("%s want %s old %q now %q applied %t %s", r.Key, r.Want, r.Old, r.Now, r.Applied, r.Note)
	}
	if nsForward != "1\n" {
		t.Errorf("ip_forward in namespace = %q, want 1", nsForward)
	}
	if got := readHostSysctl(t, "net/ipv4/ip_forward"); got != hostBefore {
		t.Errorf("host ip_forward changed from %q to %q", hostBefore, got)
	}
	byKey := make(map[string]SysctlResult)
	for _, r := range results {
		byKey[r.Key] = r
	}
	for _, k := range []string{"net.ipv4.ip_forward", "net.ipv4.conf." + outside + ".rp_filter",
		"net.ipv4.conf." + outside + ".send_redirects", "net.netfilter.nf_conntrack_acct",
		"net.netfilter.nf_conntrack_tcp_timeout_established"} {
		if r := byKey[k]; !r.Applied {
			t.Errorf("%s not applied: %+v", k, r)
		}
	}
	// nf_conntrack_max is read-only outside the initial namespace on this
	// kernel: reported with a note, or applied if the kernel allows it.
	if r := byKey["net.netfilter.nf_conntrack_max"]; !r.Applied && r.Note == "" {
		t.Errorf("nf_conntrack_max neither applied nor explained: %+v", r)
	}

	var restored string
	err = ns.Do(func() error {
		if _, err := s.Restore(ctx); err != nil {
			return err
		}
		b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
		restored = string(b)
		return err
	})
	if err != nil {
		t.Fatalf("Restore in namespace: %v", err)
	}
	if restored != nsForwardOrig {
		t.Errorf("ip_forward after Restore = %q, want the original %q", restored, nsForwardOrig)
	}
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file after Restore: %v", err)
	}
}

func TestDefaultRouteAndInterfaceIPv4s(t *testing.T) {
	ns := newTestNS(t)
	ctx := testContext(t)
	h := nsHandle(t, ns)

	if _, _, err := DefaultRoute(ctx, h); !errors.Is(err, ErrNoDefaultRoute) {
		t.Errorf("DefaultRoute without route = %v, want ErrNoDefaultRoute", err)
	}

	name := "hntr" + netns.UniqueName("")[:4]
	link := addVethInside(t, h, name, name+"p")
	for _, a := range []string{"192.0.2.10/24", "192.0.2.11/24", "198.51.100.10/24"} {
		mustAddrAdd(t, h, link, a)
	}
	gw := net.ParseIP("192.0.2.1")
	// A worse default route on the other end, to check the metric wins.
	peer, err := h.LinkByName(name + "p")
	if err != nil {
		t.Fatal(err)
	}
	mustAddrAdd(t, h, peer, "203.0.113.10/24")
	if err := h.RouteAdd(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: net.ParseIP("203.0.113.1"), Priority: 200}); err != nil {
		t.Fatalf("add default route metric 200: %v", err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw, Priority: 100}); err != nil {
		t.Fatalf("add default route: %v", err)
	}
	iface, src, err := DefaultRoute(ctx, h)
	if err != nil || iface != name || src != mustAddr("192.0.2.10") {
		t.Errorf("DefaultRoute = %q, %v, %v; want %q, 192.0.2.10", iface, src, err, name)
	}

	// A preferred source on the route wins over the first address.
	if err := h.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw, Priority: 100, Src: net.ParseIP("192.0.2.11")}); err != nil {
		t.Fatalf("replace default route with src: %v", err)
	}
	if iface, src, err := DefaultRoute(ctx, h); err != nil || iface != name || src != mustAddr("192.0.2.11") {
		t.Errorf("DefaultRoute with src = %q, %v, %v; want %q, 192.0.2.11", iface, src, err, name)
	}

	got, err := InterfaceIPv4s(h, name)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{mustPrefix("192.0.2.10/24"), mustPrefix("198.51.100.10/24"), mustPrefix("192.0.2.11/24")}
	if !slices.Equal(got, want) {
		t.Errorf("InterfaceIPv4s = %v, want %v (primaries first)", got, want)
	}
	if _, err := InterfaceIPv4s(h, "hnt-nosuch"); err == nil {
		t.Errorf("InterfaceIPv4s of a missing interface: nil error")
	}
}

// TestSlowpathTraffic sends real packets through the table: a private host
// reaches an internet host only thanks to SNAT, the internet host cannot
// open connections to the private host, and a port forward works.
//
//	priv (10.0.11.2) --- nat (10.0.11.1 | 203.0.113.1, .3) --- inet (203.0.113.100)
//
// slowLab is three namespaces around a NAT:
//
//	priv 10.0.11.2 ── inside 10.0.11.1 · nat · outside 203.0.113.1 ── 203.0.113.100 inet
//
// with the private host's default route through the NAT.
type slowLab struct {
	priv, nat, inet *netns.NS
	hp, hn, hi      *netlink.Handle
	inside, outside string // the NAT's interfaces
	privIf          string // the private host's interface
}

func newSlowLab(t *testing.T) *slowLab {
	t.Helper()
	l := &slowLab{priv: newTestNS(t), nat: newTestNS(t), inet: newTestNS(t)}
	l.hp, l.hn, l.hi = nsHandle(t, l.priv), nsHandle(t, l.nat), nsHandle(t, l.inet)
	sfx := netns.UniqueName("")[:4]
	l.inside, l.outside, l.privIf = "hnti"+sfx, "hnto"+sfx, "hntp"+sfx
	veth(t, l.hn, l.inside, l.priv, l.hp, l.privIf)
	veth(t, l.hn, l.outside, l.inet, l.hi, "hntn"+sfx)
	mustAddrAdd(t, l.hn, linkByName(t, l.hn, l.inside), "10.0.11.1/24")
	mustAddrAdd(t, l.hn, linkByName(t, l.hn, l.outside), "203.0.113.1/24")
	mustAddrAdd(t, l.hp, linkByName(t, l.hp, l.privIf), "10.0.11.2/24")
	mustAddrAdd(t, l.hi, linkByName(t, l.hi, "hntn"+sfx), "203.0.113.100/24")
	if err := l.hp.RouteAdd(&netlink.Route{LinkIndex: linkByName(t, l.hp, l.privIf).Attrs().Index, Gw: net.ParseIP("10.0.11.1")}); err != nil {
		t.Fatalf("private default route: %v", err)
	}
	return l
}

// routePrivateAtNAT makes the internet host route the private subnet at
// the NAT, as an attacker next to it could.
func (l *slowLab) routePrivateAtNAT(t *testing.T) {
	t.Helper()
	if err := l.hi.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.IP{10, 0, 11, 0}, Mask: net.CIDRMask(24, 32)}, Gw: net.ParseIP("203.0.113.1")}); err != nil {
		t.Fatalf("internet route to private: %v", err)
	}
}

// apply installs n's table and the NAT's sysctls in the NAT namespace.
func (l *slowLab) apply(t *testing.T, ctx context.Context, n NAT) *Slowpath {
	t.Helper()
	sp := NewSlowpath(testLogger(t), l.nat.FD())
	if _, err := sp.Apply(ctx, n); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	sys := &Sysctls{StatePath: filepath.Join(t.TempDir(), "sysctl.json")}
	if err := l.nat.Do(func() error {
		_, err := sys.Apply(ctx, DesiredSysctls(SysctlSettings{}, 1<<30, l.outside))
		return err
	}); err != nil {
		t.Fatalf("sysctls: %v", err)
	}
	return sp
}

func TestSlowpathTraffic(t *testing.T) {
	l := newSlowLab(t)
	priv, nat, inet := l.priv, l.nat, l.inet
	hp, hn := l.hp, l.hn
	ctx := testContext(t)
	outside := l.outside
	mustAddrAdd(t, hn, linkByName(t, hn, outside), "203.0.113.3/24")

	n := NAT{
		PrivateCIDRs: []netip.Prefix{mustPrefix("10.0.11.0/24")},
		SNATAddrs:    []netip.Addr{mustAddr("203.0.113.1"), mustAddr("203.0.113.3")},
		OutsideIface: outside,
		PortForwards: []PortForward{{Protocol: "tcp", Port: 8081, To: netip.MustParseAddrPort("10.0.11.2:8080")}},
		HostInput:    &HostInput{TCPPorts: []uint16{2222}},
	}
	sp := l.apply(t, ctx, n)

	inetLn := listenIn(t, inet, "203.0.113.100:8080")
	privLn := listenIn(t, priv, "10.0.11.2:8080")

	// TCP out: the internet host sees a SNAT address and a port in range,
	// the same address for every flow of this private host.
	var seen []netip.AddrPort
	for range 3 {
		remote, err := roundTrip(ctx, priv, "203.0.113.100:8080", inetLn)
		if err != nil {
			t.Fatalf("TCP private -> internet: %v", err)
		}
		seen = append(seen, remote)
	}
	for _, r := range seen {
		if !slices.Contains(n.SNATAddrs, r.Addr()) || r.Port() < DefaultPortMin {
			t.Errorf("internet host saw %v, want a SNAT address and port >= %d", r, DefaultPortMin)
		}
		if r.Addr() != seen[0].Addr() {
			t.Errorf("SNAT address changed between flows of one host: %v", seen)
		}
	}
	// More private sources: each is SNATed to one of the addresses, and
	// the jhash spreads them over both.
	used := make(map[netip.Addr][]netip.Addr)
	for i := 3; i <= 10; i++ {
		src := netip.AddrFrom4([4]byte{10, 0, 11, byte(i)})
		mustAddrAdd(t, hp, linkByName(t, hp, l.privIf), src.String()+"/24")
		remote, err := roundTripFrom(ctx, priv, src, "203.0.113.100:8080", inetLn, 3*time.Second)
		if err != nil {
			out, _ := nat.Run(ctx, "nft", "list", "table", "inet", TableName)
			t.Fatalf("TCP %s -> internet: %v\n%s", src, err, out)
		}
		if !slices.Contains(n.SNATAddrs, remote.Addr()) {
			t.Errorf("%s reached the internet host as %v, want a SNAT address", src, remote)
		}
		used[remote.Addr()] = append(used[remote.Addr()], src)
	}
	t.Logf("SNAT address per source: %v", used)
	if len(used) != len(n.SNATAddrs) {
		t.Errorf("8 sources used %d of %d SNAT addresses: %v", len(used), len(n.SNATAddrs), used)
	}

	// ICMP echo out, through snat_other.
	if err := priv.Do(func() error { return icmpEcho(mustAddr("203.0.113.100"), 2*time.Second) }); err != nil {
		t.Errorf("ICMP echo private -> internet: %v", err)
	}

	// Port forward in: the private host sees the internet host's address.
	remote, err := roundTrip(ctx, inet, "203.0.113.1:8081", privLn)
	if err != nil {
		t.Fatalf("TCP internet -> port forward: %v", err)
	}
	if remote.Addr() != mustAddr("203.0.113.100") {
		t.Errorf("private host saw %v through the port forward, want 203.0.113.100", remote)
	}

	// Host input: the NAT itself is open on 2222 to anyone, on 2223 only
	// to private sources; ICMP always passes.
	natOpen := listenIn(t, nat, "0.0.0.0:2222")
	natClosed := listenIn(t, nat, "0.0.0.0:2223")
	if _, err := roundTrip(ctx, inet, "203.0.113.1:2222", natOpen); err != nil {
		t.Errorf("internet -> NAT open port 2222: %v", err)
	}
	if _, err := roundTripFrom(ctx, inet, netip.Addr{}, "203.0.113.1:2223", natClosed, 700*time.Millisecond); err == nil {
		t.Errorf("internet -> NAT closed port 2223 connected")
	}
	if _, err := roundTrip(ctx, priv, "10.0.11.1:2223", natClosed); err != nil {
		t.Errorf("private -> NAT port 2223: %v", err)
	}
	if err := inet.Do(func() error { return icmpEcho(mustAddr("203.0.113.1"), 2*time.Second) }); err != nil {
		t.Errorf("ICMP echo internet -> NAT: %v", err)
	}

	// Unsolicited: even with a route to the private subnet, the internet
	// host cannot reach the private host, nor a port that is not forwarded.
	l.routePrivateAtNAT(t)
	before, err := sp.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := roundTripFrom(ctx, inet, netip.Addr{}, "10.0.11.2:8080", privLn, 700*time.Millisecond); err == nil {
		t.Errorf("unsolicited TCP internet -> private host connected")
	}
	after, err := sp.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after[RuleDropUnsolicited].Packets <= before[RuleDropUnsolicited].Packets {
		t.Errorf("drop_unsolicited did not count: before %v after %v", before[RuleDropUnsolicited], after[RuleDropUnsolicited])
	}
	for _, name := range []string{RuleForwardNewPrivate, RuleForwardEstablished, RuleForwardEstablishedSource, RuleConnEstablished, RuleSNAT, RuleSNATOther, RuleForwardDNAT, "dnat_tcp_8081",
		RuleInputTCP, RuleInputPrivate, RuleInputICMP, RuleInputEstablished, RuleInputDrop} {
		if after[name].Packets == 0 {
			t.Errorf("counter %s = 0, want traffic (all: %v)", name, after)
		}
	}
}

func nsHandle(t *testing.T, ns *netns.NS) *netlink.Handle { return natlab.Handle(t, ns) }

// addVethInside makes a veth pair with both ends in h's namespace, up.
func addVethInside(t *testing.T, h *netlink.Handle, name, peer string) netlink.Link {
	t.Helper()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: peer}); err != nil {
		t.Fatalf("add veth %s/%s: %v", name, peer, err)
	}
	for _, n := range []string{name, peer} {
		if err := h.LinkSetUp(linkByName(t, h, n)); err != nil {
			t.Fatalf("set %s up: %v", n, err)
		}
	}
	return linkByName(t, h, name)
}

// veth makes a veth pair from h's namespace (name) to peerNS (peer), both up.
func veth(t *testing.T, h *netlink.Handle, name string, peerNS *netns.NS, hp *netlink.Handle, peer string) {
	t.Helper()
	natlab.Veth(t, h, name, peerNS, hp, peer)
}

func linkByName(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	return natlab.LinkByName(t, h, name)
}

func mustAddrAdd(t *testing.T, h *netlink.Handle, l netlink.Link, cidr string) {
	t.Helper()
	natlab.AddrAdd(t, h, l, cidr)
}

func readHostSysctl(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/" + rel)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// listenIn opens a TCP listener inside ns; the socket stays in ns.
func listenIn(t *testing.T, ns *netns.NS, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatalf("listen %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// roundTrip dials addr from inside ns, accepts on ln, echoes one line and
// returns the client address the server saw.
func roundTrip(ctx context.Context, ns *netns.NS, addr string, ln net.Listener) (netip.AddrPort, error) {
	return roundTripFrom(ctx, ns, netip.Addr{}, addr, ln, 3*time.Second)
}

// roundTripFrom is roundTrip from the local address local (zero: any),
// giving up after d.
func roundTripFrom(ctx context.Context, ns *netns.NS, local netip.Addr, addr string, ln net.Listener, d time.Duration) (netip.AddrPort, error) {
	type accepted struct {
		remote netip.AddrPort
		err    error
	}
	acc := make(chan accepted, 1)
	go func() {
		if tl, ok := ln.(*net.TCPListener); ok {
			_ = tl.SetDeadline(time.Now().Add(d + time.Second))
		}
		c, err := ln.Accept()
		if err != nil {
			acc <- accepted{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(d))
		buf := make([]byte, 5)
		if _, err := io.ReadFull(c, buf); err != nil {
			acc <- accepted{err: err}
			return
		}
		if _, err := c.Write(buf); err != nil {
			acc <- accepted{err: err}
			return
		}
		acc <- accepted{remote: c.RemoteAddr().(*net.TCPAddr).AddrPort()}
	}()

	var conn net.Conn
	err := ns.Do(func() (err error) {
		dctx, cancel := context.WithTimeout(ctx, d)
		defer cancel()
		var dialer net.Dialer
		if local.IsValid() {
			dialer.LocalAddr = &net.TCPAddr{IP: local.AsSlice()}
		}
		conn, err = dialer.DialContext(dctx, "tcp", addr)
		return err
	})
	if err != nil {
		if tl, ok := ln.(*net.TCPListener); ok {
			_ = tl.SetDeadline(time.Now()) // unblock Accept
		}
		<-acc
		if tl, ok := ln.(*net.TCPListener); ok {
			_ = tl.SetDeadline(time.Time{})
		}
		return netip.AddrPort{}, fmt.Errorf("dial %s from %s: %w", addr, ns.Name, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(d))
	if _, err := conn.Write([]byte("hello")); err != nil {
		return netip.AddrPort{}, err
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(conn, buf); err != nil {
		return netip.AddrPort{}, fmt.Errorf("read echo from %s: %w", addr, err)
	}
	a := <-acc
	if tl, ok := ln.(*net.TCPListener); ok {
		_ = tl.SetDeadline(time.Time{})
	}
	return a.remote, a.err
}

func icmpEcho(dst netip.Addr, timeout time.Duration) error { return natlab.Ping(dst, timeout) }

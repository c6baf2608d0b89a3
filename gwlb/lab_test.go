//go:build linux

package gwlb

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/hanat/hanat/datapath"
	"github.com/hanat/hanat/geneve"
	"github.com/hanat/hanat/internal/natlab"
	"github.com/hanat/hanat/internal/netns"
	"github.com/hanat/hanat/internal/testtool"
	"github.com/vishvananda/netlink"
)

// The lab: a VPC router joining the member's ENI subnet, the GWLB's
// subnet and the internet (no IGW: the server sees the ENI's address).
//
//	nat eni0 10.0.1.10 ── 10.0.1.1 router 10.0.2.1 ── 10.0.2.50 gwlb (and 10.0.2.99, no GWLB)
//	                                     198.51.100.1 ── 198.51.100.100 inet
var (
	labENI     = netip.MustParseAddr("10.0.1.10")
	labGWLB    = netip.MustParseAddr("10.0.2.50")
	labForeign = netip.MustParseAddr("10.0.2.99")
	labServer  = netip.MustParseAddrPort("198.51.100.100:7")
	labHost    = netip.MustParseAddrPort("10.0.11.5:5353")
	labOpts    = geneve.Options{EndpointID: 0x0fedcba987654321, AttachmentID: 0x0a0b0c0d0e0f1011, FlowCookie: 0x5eed1234}
)

type lab struct {
	nat, router, gwlb, inet *netns.NS
	dp                      *Datapath
}

// newLab builds the lab and attaches the datapath to the member's ENI;
// beforeAttach, when set, runs just before that.
func newLab(t *testing.T, ctx context.Context, beforeAttach func(*lab)) *lab {
	t.Helper()
	testtool.Require(t, "ethtool")
	l := &lab{
		nat: natlab.NewNS(t, "hnt-gwn-"), router: natlab.NewNS(t, "hnt-gwr-"),
		gwlb: natlab.NewNS(t, "hnt-gwg-"), inet: natlab.NewNS(t, "hnt-gwi-"),
	}
	pfx := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	for _, v := range []struct {
		local, addr string
		peer        *netns.NS
		peerAddr    string
	}{
		{"r-nat", "10.0.1.1/24", l.nat, "10.0.1.10/24"},
		{"r-gwlb", "10.0.2.1/24", l.gwlb, "10.0.2.50/24"},
		{"r-inet", "198.51.100.1/24", l.inet, "198.51.100.100/24"},
	} {
		peerName := "eth0"
		if v.peer == l.nat {
			peerName = "eni0"
		}
		p := pfx(v.addr)
		if err := l.router.Veth(v.local, p, v.peer, peerName, pfx(v.peerAddr), p.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	natlab.MustRun(t, ctx, l.router, "sysctl", "-w", "net.ipv4.ip_forward=1")
	// The private hosts' subnet is routed to the member only so that the
	// unsolicited-inbound checks reach it.
	if err := l.router.Do(func() error {
		return netlink.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.IP{10, 0, 11, 0}, Mask: net.CIDRMask(24, 32)}, Gw: net.IP{10, 0, 1, 10}})
	}); err != nil {
		t.Fatal(err)
	}
	// An address in the GWLB's subnet that is not a GWLB.
	if err := l.gwlb.Do(func() error { return netns.AddrUp("eth0", netip.PrefixFrom(labForeign, 24)) }); err != nil {
		t.Fatal(err)
	}
	// The server's replies carry whole checksums (a veth would leave
	// them to an offload that the GENEVE packet's receiver never does).
	natlab.MustRun(t, ctx, l.inet, "ethtool", "-K", "eth0", "tx", "off")

	// hanat's own ruleset and sysctls on the member.
	nat := datapath.NAT{PrivateCIDRs: []netip.Prefix{pfx("10.0.11.0/24")}, SNATAddrs: []netip.Addr{labENI}, OutsideIface: "eni0"}
	if _, err := datapath.NewSlowpath(nil, l.nat.FD()).Apply(ctx, nat); err != nil {
		t.Fatal(err)
	}
	sys := &datapath.Sysctls{StatePath: filepath.Join(t.TempDir(), "sysctl.json")}
	if err := l.nat.Do(func() error {
		_, err := sys.Apply(ctx, datapath.DesiredSysctls(datapath.SysctlSettings{}, 1<<30, "eni0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}

	if beforeAttach != nil {
		beforeAttach(l)
	}
	pins := filepath.Join("/sys/fs/bpf", "hanat-test-"+l.nat.Name)
	t.Cleanup(func() { _ = os.RemoveAll(pins) })
	if err := l.nat.Do(func() (err error) {
		l.dp, err = Attach(ctx, Config{Link: "eni0", LocalAddr: labENI, GWLBAddrs: []netip.Addr{labGWLB}, PinDir: pins})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.dp.Detach(); err != nil {
			t.Errorf("detach: %v", err)
		}
	})
	return l
}

// genevePeer is a UDP socket on port 6081 in ns at a, sending without a
// UDP checksum (as a GWLB may; the skb is then CHECKSUM_NONE).
func genevePeer(t *testing.T, ns *netns.NS, a netip.Addr) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := ns.Do(func() (err error) {
		c, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, geneve.Port)))
		if err != nil {
			return err
		}
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_NO_CHECK, 1) }); err != nil {
			return err
		}
		return serr
	})
	if err != nil {
		t.Fatalf("GENEVE socket at %v in %s: %v", a, ns.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// sendGeneve sends inner to the member encapsulated with opts.
func sendGeneve(t *testing.T, c *net.UDPConn, opts geneve.Options, inner []byte) {
	t.Helper()
	p, err := geneve.Encap(geneve.Header{Options: opts}, inner)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteToUDPAddrPort(p, netip.AddrPortFrom(labENI, geneve.Port)); err != nil {
		t.Fatalf("send GENEVE: %v", err)
	}
}

// recvGeneve returns the next GENEVE datagram within d: its source, header
// and inner packet; ok is false when none came.
func recvGeneve(t *testing.T, c *net.UDPConn, d time.Duration) (netip.AddrPort, geneve.Header, []byte, bool) {
	t.Helper()
	buf := make([]byte, 9000)
	_ = c.SetReadDeadline(time.Now().Add(d))
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return from, geneve.Header{}, nil, false
		}
		t.Fatalf("receive GENEVE: %v", err)
	}
	h, inner, err := geneve.Parse(buf[:n])
	if err != nil {
		t.Fatalf("datagram from %v is not GWLB's GENEVE: %v", from, err)
	}
	return from, h, inner, true
}

func (l *lab) counters(t *testing.T) map[string]uint64 {
	t.Helper()
	c, err := l.dp.Counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestMemberInNamespaces: a private host's UDP flow arrives from the GWLB
// GENEVE-encapsulated, leaves the member SNATed to its ENI address, and
// the reply goes back to the GWLB encapsulated with the flow's options,
// checksums right. GENEVE from a non-GWLB address is dropped and counted;
// unsolicited inbound towards the private host is not forwarded, not even
// as the reverse of a remembered flow.
func TestMemberInNamespaces(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := newLab(t, ctx, nil)
	peers := natlab.ServeUDPEcho(t, l.inet, labServer.String())
	gw := genevePeer(t, l.gwlb, labGWLB)

	msg := []byte("through the gateway load balancer")
	query := udpPacket(labHost, labServer, msg)
	var from netip.AddrPort
	var h geneve.Header
	var reply []byte
	ok := false
	for try := 0; try < 3 && !ok; try++ { // the first packets may wait for ARP
		sendGeneve(t, gw, labOpts, query)
		from, h, reply, ok = recvGeneve(t, gw, 2*time.Second)
	}
	if !ok {
		t.Fatalf("no encapsulated reply; counters %v", l.counters(t))
	}
	select {
	case p := <-peers:
		if p.Addr() != labENI {
			t.Fatalf("server saw %v, want the member's address %v (SNAT)", p, labENI)
		}
	default:
		t.Fatal("the server saw no query")
	}
	if from != netip.AddrPortFrom(labENI, geneve.Port) || h.Options != labOpts || h.Protocol != geneve.ProtoIPv4 {
		t.Fatalf("reply from %v with %+v, want from %v:%d with options %+v", from, h, labENI, geneve.Port, labOpts)
	}
	if err := verifyIPv4(reply, false); err != nil {
		t.Fatalf("inner reply %x: %v", reply, err)
	}
	if want := udpPacket(labServer, labHost, msg); string(reply[12:]) != string(want[12:]) {
		t.Fatalf("inner reply\n%x\nwant (from the server to the private host, de-NATed)\n%x", reply, want)
	}
	fl, err := l.dp.Flows()
	if err != nil || len(fl) != 1 || fl[0].Src != labHost || fl[0].Dst != labServer || fl[0].GWLB != labGWLB ||
		fl[0].Endpoint() != geneve.EndpointName(labOpts.EndpointID) {
		t.Fatalf("flows %+v (%v), want the one UDP flow from %v through %v", fl, err, labHost, labGWLB)
	}

	// GENEVE from an address that is no GWLB: dropped, counted, nothing
	// reaches the server.
	before := l.counters(t)
	foreign := genevePeer(t, l.gwlb, labForeign)
	sendGeneve(t, foreign, labOpts, udpPacket(netip.MustParseAddrPort("10.0.11.6:4000"), labServer, msg))
	if _, _, _, got := recvGeneve(t, foreign, 500*time.Millisecond); got {
		t.Fatal("a reply came back for GENEVE from a non-GWLB address")
	}
	if d := delta(before, l.counters(t)); d[ReasonForeignSource] != 1 || d[ReasonDecap] != 0 {
		t.Fatalf("counters changed %v, want foreign_source +1 and no decap", d)
	}
	select {
	case p := <-peers:
		t.Fatalf("the server got a query from %v out of foreign GENEVE", p)
	default:
	}

	// Unsolicited inbound to the private host, from another port and from
	// the remembered flow's own server address and port (sent raw from the
	// router, so the echo server's socket needs no sharing): not
	// forwarded, so nothing is encapsulated towards the GWLB.
	before = l.counters(t)
	back := sniffFrom(t, l.router, "r-nat")
	for _, src := range []netip.AddrPort{netip.MustParseAddrPort("198.51.100.100:9999"), labServer} {
		sendRaw(t, l.router, udpPacket(src, labHost, []byte("unsolicited")))
	}
	if pkt := back(500 * time.Millisecond); pkt != nil {
		t.Fatalf("the member forwarded unsolicited inbound: %x", pkt)
	}
	if _, _, inner, got := recvGeneve(t, gw, 500*time.Millisecond); got {
		t.Fatalf("unsolicited inbound reached the GWLB encapsulated: %x", inner)
	}
	if d := delta(before, l.counters(t)); d[ReasonEncap] != 0 {
		t.Fatalf("counters changed %v, want no encap", d)
	}
	labMACCache(t, l, gw, query)
}

// sendRaw sends a whole IPv4 packet from ns (IP_HDRINCL).
func sendRaw(t *testing.T, ns *netns.NS, pkt []byte) {
	t.Helper()
	err := ns.Do(func() error {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_RAW)
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		to := &syscall.SockaddrInet4{Addr: [4]byte(pkt[16:20])}
		return syscall.Sendto(fd, pkt, 0, to)
	})
	if err != nil {
		t.Fatalf("raw send in %s: %v", ns.Name, err)
	}
}

// attached lists the programs on ifindex's tcx hook and their links.
func attached(t *testing.T, ifindex int, hook ebpf.AttachType) []link.AttachedProgram {
	t.Helper()
	r, err := link.QueryPrograms(link.QueryOptions{Target: ifindex, Attach: hook})
	if err != nil {
		t.Fatalf("query %v programs on ifindex %d: %v", hook, ifindex, err)
	}
	return r.Programs
}

func progID(t *testing.T, p *ebpf.Program) ebpf.ProgramID {
	t.Helper()
	info, err := p.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, _ := info.ID()
	return id
}

// pinnedENI is an ENI (eni0, a veth) in a new namespace and a Config
// pinning under a bpffs directory of the test's; inNS runs f in the
// namespace, failing the test on its error.
func pinnedENI(t *testing.T, prefix string) (ifindex int, pins string, cfg Config, inNS func(func() error)) {
	t.Helper()
	ns := natlab.NewNS(t, prefix)
	h := natlab.Handle(t, ns)
	natlab.Veth(t, h, "eni0", ns, h, "eni0p")
	ifindex = natlab.LinkByName(t, h, "eni0").Attrs().Index
	pins = filepath.Join("/sys/fs/bpf", "hanat-test-"+ns.Name)
	t.Cleanup(func() { _ = os.RemoveAll(pins) })
	cfg = Config{Link: "eni0", LocalAddr: addrENI, GWLBAddrs: []netip.Addr{addrGWLB}, PinDir: pins}
	inNS = func(f func() error) {
		t.Helper()
		if err := ns.Do(f); err != nil {
			t.Fatal(err)
		}
	}
	return ifindex, pins, cfg, inNS
}

// TestAttachAdoptsPins: Close leaves both programs attached through their
// pinned links; the next Attach takes those links over (no second program
// on a hook), points them at its programs and finds the flows remembered;
// Detach removes programs and pins.
func TestAttachAdoptsPins(t *testing.T) {
	ifindex, pins, cfg, inNS := pinnedENI(t, "hnt-gwp-")
	ctx := context.Background()
	hooks := []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress}

	var d1, d2 *Datapath
	inNS(func() (err error) { d1, err = Attach(ctx, cfg); return err })
	if v, _ := mustRun(t, "ingress", d1.objs.HanatGwlbIngress, encapFrame(addrGWLB, opts, udpPacket(hostUDP, srvUDP, nil))); v != tcNext {
		t.Fatalf("decap verdict %d", v)
	}
	linkIDs := map[ebpf.AttachType]link.ID{}
	inNS(func() error {
		for _, hook := range hooks {
			p := attached(t, ifindex, hook)
			if len(p) != 1 {
				t.Fatalf("%v: %d programs after Attach, want 1", hook, len(p))
			}
			linkIDs[hook], _ = p[0].LinkID()
		}
		return nil
	})
	if err := d1.Close(); err != nil {
		t.Fatal(err)
	}
	inNS(func() error {
		for _, hook := range hooks {
			if p := attached(t, ifindex, hook); len(p) != 1 {
				t.Fatalf("%v: %d programs after Close, want 1 (the pinned link keeps it)", hook, len(p))
			}
		}
		return nil
	})

	cfg.GWLBAddrs = []netip.Addr{addrGWLB2}
	inNS(func() (err error) { d2, err = Attach(ctx, cfg); return err })
	inNS(func() error {
		for hook, prog := range map[ebpf.AttachType]*ebpf.Program{ebpf.AttachTCXIngress: d2.objs.HanatGwlbIngress, ebpf.AttachTCXEgress: d2.objs.HanatGwlbEgress} {
			p := attached(t, ifindex, hook)
			if id, _ := p[0].LinkID(); len(p) != 1 || id != linkIDs[hook] || p[0].ID != progID(t, prog) {
				t.Fatalf("%v after the second Attach: %+v, want link %d adopted running program %d", hook, p, linkIDs[hook], progID(t, prog))
			}
		}
		return nil
	})
	fl, err := d2.Flows()
	if err != nil || len(fl) != 1 || fl[0].Src != hostUDP || fl[0].Options != opts {
		t.Fatalf("flows after the restart: %+v %v, want the one remembered before", fl, err)
	}
	if a, err := d2.GWLBAddrs(); err != nil || len(a) != 1 || a[0] != addrGWLB2 {
		t.Fatalf("GWLB addresses %v %v, want only %v", a, err, addrGWLB2)
	}

	if err := d2.Detach(); err != nil {
		t.Fatal(err)
	}
	inNS(func() error {
		for _, hook := range hooks {
			if p := attached(t, ifindex, hook); len(p) != 0 {
				t.Fatalf("%v: %d programs after Detach", hook, len(p))
			}
		}
		return nil
	})
	if left, _ := filepath.Glob(filepath.Join(pins, "*")); len(left) != 0 {
		t.Fatalf("pins left after Detach: %v", left)
	}
}

// sniffFrom opens a packet socket on ns's interface ifname; the function it
// returns gives the first IPv4 packet received there (not sent) towards the
// private subnet 10.0.11.0/24 within d, nil when none came.
func sniffFrom(t *testing.T, ns *netns.NS, ifname string) func(d time.Duration) []byte {
	t.Helper()
	var fd int
	err := ns.Do(func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		// htons(ETH_P_IP)
		proto := int(binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, syscall.ETH_P_IP)))
		fd, err = syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM, proto)
		if err != nil {
			return err
		}
		return syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: l.Attrs().Index})
	})
	if err != nil {
		t.Fatalf("packet socket on %s in %s: %v", ifname, ns.Name, err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	return func(d time.Duration) []byte {
		deadline := time.Now().Add(d)
		buf := make([]byte, 2048)
		for time.Now().Before(deadline) {
			tv := syscall.NsecToTimeval(int64(time.Until(deadline)) + 1)
			_ = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
			n, from, err := syscall.Recvfrom(fd, buf, 0)
			if err != nil {
				return nil // timed out
			}
			if ll, ok := from.(*syscall.SockaddrLinklayer); ok && ll.Pkttype == syscall.PACKET_OUTGOING {
				continue
			}
			if n >= 20 && buf[16] == 10 && buf[17] == 0 && buf[18] == 11 {
				return append([]byte(nil), buf[:n]...)
			}
		}
		return nil
	}
}

// TestMemberTCPInNamespaces: a TCP connection of a private host, its
// segments written by hand and carried by the fake GWLB, through the
// member's ruleset to a TCP echo server: the handshake completes, the
// data comes back echoed, every segment back encapsulated with the
// flow's options and a right TCP checksum.
func TestMemberTCPInNamespaces(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l := newLab(t, ctx, nil)
	natlab.ServeTCPEcho(t, l.inet, "198.51.100.100:7007")
	server := netip.MustParseAddrPort("198.51.100.100:7007")
	host := netip.MustParseAddrPort("10.0.11.5:40000")
	gw := genevePeer(t, l.gwlb, labGWLB)
	const (
		syn, rst, psh, ack = 0x02, 0x04, 0x08, 0x10
		iss                = 1000
	)
	// next returns the next segment of the connection back from the
	// GWLB, checked; nil when none came within d.
	next := func(d time.Duration) []byte {
		t.Helper()
		_, h, inner, ok := recvGeneve(t, gw, d)
		if !ok {
			return nil
		}
		if h.Options != labOpts {
			t.Fatalf("segment back with options %+v, want %+v", h.Options, labOpts)
		}
		if err := verifyIPv4(inner, false); err != nil {
			t.Fatalf("segment back %x: %v", inner, err)
		}
		if inner[9] != protoTCP || netip.AddrFrom4([4]byte(inner[12:16])) != server.Addr() || netip.AddrFrom4([4]byte(inner[16:20])) != host.Addr() ||
			binary.BigEndian.Uint16(inner[20:]) != server.Port() || binary.BigEndian.Uint16(inner[22:]) != host.Port() {
			t.Fatalf("segment back %x is not from %v to %v", inner, server, host)
		}
		return inner[20:]
	}

	var synack []byte
	for try := 0; try < 3 && synack == nil; try++ {
		sendGeneve(t, gw, labOpts, tcpSegment(host, server, iss, 0, syn, nil))
		synack = next(2 * time.Second)
	}
	if synack == nil || synack[13] != syn|ack || binary.BigEndian.Uint32(synack[8:]) != iss+1 {
		t.Fatalf("no SYN-ACK for the SYN: %x; counters %v", synack, l.counters(t))
	}
	srvSeq := binary.BigEndian.Uint32(synack[4:]) + 1
	msg := []byte("a tcp stream through the gwlb")
	sendGeneve(t, gw, labOpts, tcpSegment(host, server, iss+1, srvSeq, psh|ack, msg))
	var echoed []byte
	for i := 0; i < 8 && len(echoed) < len(msg); i++ {
		seg := next(2 * time.Second)
		if seg == nil {
			break
		}
		if seg[13]&rst != 0 {
			t.Fatalf("the server reset the connection: %x", seg)
		}
		echoed = append(echoed, seg[int(seg[12]>>4)*4:]...)
	}
	if string(echoed) != string(msg) {
		t.Fatalf("echoed %q, want %q", echoed, msg)
	}
	fl, err := l.dp.Flows()
	if err != nil || len(fl) != 1 || fl[0].Proto != protoTCP || fl[0].Src != host || fl[0].Dst != server {
		t.Fatalf("flows %+v (%v), want the one TCP flow", fl, err)
	}
	sendGeneve(t, gw, labOpts, tcpSegment(host, server, iss+1+uint32(len(msg)), srvSeq+uint32(len(msg)), rst, nil))
}

// TestCheckAndCleanup: Check passes while both programs are on the ENI
// and names the missing one once a program is detached behind the
// datapath's back; Cleanup (hanatd --cleanup) detaches what a closed
// datapath left pinned and removes every pin.
func TestCheckAndCleanup(t *testing.T) {
	ifindex, pins, cfg, inNS := pinnedENI(t, "hnt-gwc-")
	ctx := context.Background()
	var d *Datapath
	inNS(func() (err error) { d, err = Attach(ctx, cfg); return err })
	inNS(d.Check)
	// Someone removes the ingress program: its pin and the last handle.
	if err := os.Remove(filepath.Join(pins, pinIngress+"eni0")); err != nil {
		t.Fatal(err)
	}
	if err := d.links[0].Close(); err != nil {
		t.Fatal(err)
	}
	inNS(func() error {
		if err := d.Check(); err == nil || !strings.Contains(err.Error(), "no longer attached at") {
			t.Fatalf("Check with ingress detached: %v", err)
		}
		return nil
	})
	d.links = d.links[1:]
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	inNS(func() (err error) { d, err = Attach(ctx, cfg); return err })
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	inNS(func() error {
		if n := len(attached(t, ifindex, ebpf.AttachTCXIngress)); n != 1 {
			t.Fatalf("%d ingress programs after Close, want the pinned one", n)
		}
		return nil
	})
	if err := Cleanup(pins); err != nil {
		t.Fatal(err)
	}
	inNS(func() error {
		for _, hook := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
			if p := attached(t, ifindex, hook); len(p) != 0 {
				t.Fatalf("%v: %d programs after Cleanup", hook, len(p))
			}
		}
		return nil
	})
	if _, err := os.Stat(pins); !os.IsNotExist(err) {
		left, _ := filepath.Glob(filepath.Join(pins, "*"))
		t.Fatalf("pin directory after Cleanup: %v, left %v", err, left)
	}
	if err := Cleanup(pins); err != nil {
		t.Fatalf("a second Cleanup: %v", err)
	}
}

// labMACCache: the replies so far went out with bpf_redirect_neigh (no MAC
// cached); RefreshNeighbours caches the router's MAC (the GWLB's next hop)
// and the ENI's, and the next reply leaves through the cache, no miss.
func labMACCache(t *testing.T, l *lab, gw *net.UDPConn, query []byte) {
	t.Helper()
	if c := l.counters(t); c[ReasonNeighMiss] == 0 || c[ReasonNeighMiss] != c[ReasonEncap] {
		t.Fatalf("before the MAC cache: counters %v, want every encap a neigh_miss", c)
	}
	var cached []Neighbour
	var hop, eni net.HardwareAddr
	if err := l.nat.Do(func() (err error) {
		if cached, err = l.dp.RefreshNeighbours(context.Background()); err != nil {
			return err
		}
		lnk, err := netlink.LinkByName("eni0")
		if err != nil {
			return err
		}
		eni = lnk.Attrs().HardwareAddr
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := l.router.Do(func() error {
		lnk, err := netlink.LinkByName("r-nat")
		if err == nil {
			hop = lnk.Attrs().HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(cached) != 1 || cached[0].GWLB != labGWLB || cached[0].NextHop != netip.MustParseAddr("10.0.1.1") ||
		cached[0].Dst.String() != hop.String() || cached[0].Src.String() != eni.String() {
		t.Fatalf("cached %+v, want GWLB %v via 10.0.1.1 at %v from %v", cached, labGWLB, hop, eni)
	}
	before := l.counters(t)
	sendGeneve(t, gw, labOpts, query)
	if _, h, _, ok := recvGeneve(t, gw, 2*time.Second); !ok || h.Options != labOpts {
		t.Fatalf("no encapsulated reply through the MAC cache (%+v); counters %v", h, l.counters(t))
	}
	if d := delta(before, l.counters(t)); d[ReasonEncap] != 1 || d[ReasonNeighMiss] != 0 {
		t.Fatalf("through the MAC cache: counters changed %v, want encap +1 and no neigh_miss", d)
	}
}

package fastpath

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hanat/hanat/bpf"
	"github.com/hanat/hanat/datapath"
	"github.com/hanat/hanat/internal/natlab"
	"github.com/hanat/hanat/internal/netns"
)

// bpffsDir mounts a private bpffs on a temporary directory (the standard
// /sys/fs/bpf is left alone) and returns it; it is unmounted at cleanup.
func bpffsDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount bpffs %s: %v", dir, err)
		}
	})
	return dir
}

// fastTopo is priv ──(hntp|in)── nat ──(out|hntn)── inet, with the NAT's
// default route via the internet host.
type fastTopo struct {
	priv, nat, inet *netns.NS
	hp, hn, hi      *netlink.Handle
	in, out         string // NAT-side interface names
	privIf, inetIf  string
}

func newFastTopo(t *testing.T) *fastTopo {
	t.Helper()
	ft := &fastTopo{priv: newTestNS(t), nat: newTestNS(t), inet: newTestNS(t)}
	ft.hp, ft.hn, ft.hi = natlab.Handle(t, ft.priv), natlab.Handle(t, ft.nat), natlab.Handle(t, ft.inet)
	sfx := netns.UniqueName("")[:4]
	ft.in, ft.out, ft.privIf, ft.inetIf = "hnti"+sfx, "hnto"+sfx, "hntp"+sfx, "hntn"+sfx
	natlab.Veth(t, ft.hn, ft.in, ft.priv, ft.hp, ft.privIf)
	natlab.Veth(t, ft.hn, ft.out, ft.inet, ft.hi, ft.inetIf)
	natlab.AddrAdd(t, ft.hn, natlab.LinkByName(t, ft.hn, ft.in), "10.0.11.1/24")
	natlab.AddrAdd(t, ft.hn, natlab.LinkByName(t, ft.hn, ft.out), "203.0.113.1/24")
	natlab.AddrAdd(t, ft.hp, natlab.LinkByName(t, ft.hp, ft.privIf), "10.0.11.2/24")
	natlab.AddrAdd(t, ft.hi, natlab.LinkByName(t, ft.hi, ft.inetIf), "203.0.113.100/24")
	if err := ft.hp.RouteAdd(&netlink.Route{LinkIndex: natlab.LinkByName(t, ft.hp, ft.privIf).Attrs().Index, Gw: net.ParseIP("10.0.11.1")}); err != nil {
		t.Fatalf("private default route: %v", err)
	}
	if err := ft.hn.RouteAdd(&netlink.Route{LinkIndex: natlab.LinkByName(t, ft.hn, ft.out).Attrs().Index, Gw: net.ParseIP("203.0.113.100")}); err != nil {
		t.Fatalf("NAT default route: %v", err)
	}
	return ft
}

func (ft *fastTopo) nat44() NAT {
	return NAT{
		PrivateCIDRs: []netip.Prefix{mustPrefix("10.0.11.0/24")},
		SNATAddrs:    []netip.Addr{mustAddr("203.0.113.1")},
		OutsideIface: ft.out,
	}
}

// peersGRO turns GRO on at the NAT's veth peers, which gives them NAPI to
// receive native XDP frames: "xdp" then runs native XDP there.
func (ft *fastTopo) peersGRO(t *testing.T, on bool) {
	t.Helper()
	state := map[bool]string{true: "on", false: "off"}[on]
	for _, c := range []struct {
		ns  *netns.NS
		dev string
	}{{ft.priv, ft.privIf}, {ft.inet, ft.inetIf}} {
		if out, err := c.ns.Run(testContext(t), "ethtool", "-K", c.dev, "gro", state); err != nil {
			t.Fatalf("ethtool: %v: %s", err, out)
		}
	}
}

func openFast(t *testing.T, ft *fastTopo, pinPath, mode string) *XDP {
	t.Helper()
	var f *XDP
	err := ft.nat.Do(func() (err error) {
		f, err = OpenXDP(testLogger(t), XDPOptions{Mode: mode, PinPath: pinPath, MaxFlows: 1024})
		return err
	})
	if err != nil {
		t.Fatalf("OpenXDP: %v", err)
	}
	return f
}

func syncFast(t *testing.T, ft *fastTopo, f *XDP, ifaces ...string) State {
	t.Helper()
	var st State
	if err := ft.nat.Do(func() error {
		st = f.Sync(context.Background(), ifaces)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return st
}

func xdpOn(t *testing.T, h *netlink.Handle, name string) (mode string, progID uint32) {
	t.Helper()
	l := natlab.LinkByName(t, h, name)
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		return currentXDPMode(l), x.ProgId
	}
	return XDPOff, 0
}

// TestFastpathAttachPinRestart attaches in native mode,
// closes the process's handles (the pinned link keeps the program on the
// interface), takes the attachment over from a "restarted" daemon with the
// new program and no gap, switches to generic, detaches an interface that
// is no longer wanted, and removes everything as --cleanup does.
func TestFastpathAttachPinRestart(t *testing.T) {
	ft := newFastTopo(t)
	ft.peersGRO(t, true)
	pin := filepath.Join(bpffsDir(t), "hanat")

	f := openFast(t, ft, pin, XDPModeNative)
	st := syncFast(t, ft, f, ft.in, ft.out)
	if st.Mode != XDPNative || len(st.Interfaces) != 2 {
		t.Fatalf("state after attach = %+v, want native on 2 interfaces", st)
	}
	if !f.Attached(natlab.LinkByName(t, ft.hn, ft.in).Attrs().Index) {
		t.Errorf("Attached(%s) = false", ft.in)
	}
	// Idempotent.
	if st2 := syncFast(t, ft, f, ft.out, ft.in); st2.Mode != XDPNative {
		t.Errorf("second Sync = %+v", st2)
	}
	mode, firstProg := xdpOn(t, ft.hn, ft.in)
	if mode != XDPNative {
		t.Fatalf("kernel reports %s on %s, want native", mode, ft.in)
	}
	for _, n := range []string{"flows", "tx_ports", "counters", linkPinPrefix + ft.in, linkPinPrefix + ft.out} {
		if _, err := os.Stat(filepath.Join(pin, n)); err != nil {
			t.Errorf("pin %s: %v", n, err)
		}
	}
	// A flow in the map survives the "restart".
	k := bpf.FlowKey{Ifindex: 7, Proto: bpf.ProtoUDP, Src: netip.MustParseAddrPort("10.0.11.2:1000"), Dst: netip.MustParseAddrPort("203.0.113.100:53")}
	a := bpf.FlowAction{NewSrc: netip.MustParseAddrPort("203.0.113.1:1000"), NewDst: k.Dst, EgressIfindex: 8,
		SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, MTU: 1500}
	if err := f.Objects().PutFlow(k, a); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if mode, _ := xdpOn(t, ft.hn, ft.in); mode != XDPNative {
		t.Fatalf("after Close the program left %s (mode %s); the pinned link should keep it", ft.in, mode)
	}

	// xdp (native) keeps the native attachment found pinned.
	f2 := openFast(t, ft, pin, XDPModeNative)
	st = syncFast(t, ft, f2, ft.in, ft.out)
	if st.Mode != XDPNative {
		t.Fatalf("state after restart = %+v", st)
	}
	mode, secondProg := xdpOn(t, ft.hn, ft.in)
	if mode != XDPNative || secondProg == firstProg {
		t.Errorf("after restart: mode %s prog %d (before %d), want native with the new program", mode, secondProg, firstProg)
	}
	if _, _, err := f2.Objects().LookupFlow(k); err != nil {
		t.Errorf("flow lost across restart: %v", err)
	}
	f2.Close()

	// Configured generic: re-attached in generic mode; the inside
	// interface is dropped from the set and detached.
	f3 := openFast(t, ft, pin, XDPModeGeneric)
	st = syncFast(t, ft, f3, ft.out)
	if st.Mode != XDPGeneric || len(st.Interfaces) != 1 {
		t.Errorf("generic state = %+v", st)
	}
	if mode, _ := xdpOn(t, ft.hn, ft.out); mode != XDPGeneric {
		t.Errorf("kernel mode on %s = %s, want generic", ft.out, mode)
	}
	if mode, _ := xdpOn(t, ft.hn, ft.in); mode != XDPOff {
		t.Errorf("%s still has XDP (%s) after leaving the set", ft.in, mode)
	}
	if _, err := os.Stat(filepath.Join(pin, linkPinPrefix+ft.in)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin of %s left behind: %v", ft.in, err)
	}
	f3.Close()

	var removed bool
	err := ft.nat.Do(func() (err error) {
		removed, err = Remove(testLogger(t), pin)
		return err
	})
	if err != nil || !removed {
		t.Fatalf("Remove = %v, %v", removed, err)
	}
	if mode, _ := xdpOn(t, ft.hn, ft.out); mode != XDPOff {
		t.Errorf("after cleanup %s still has XDP (%s)", ft.out, mode)
	}
	if _, err := os.Stat(pin); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pin directory left after cleanup: %v", err)
	}
	if removed, err := Remove(testLogger(t), pin); removed || err != nil {
		t.Errorf("second Remove = %v, %v; want nothing to do", removed, err)
	}
}

// TestFastpathAttachFailure: an interface that cannot take XDP (missing)
// leaves the fast path off there with a reason, never an error.
func TestFastpathAttachFailure(t *testing.T) {
	ft := newFastTopo(t)
	ft.peersGRO(t, true)
	pin := filepath.Join(bpffsDir(t), "hanat")
	f := openFast(t, ft, pin, XDPModeNative)
	defer f.Close()
	st := syncFast(t, ft, f, "hntnosuch0")
	if st.Mode != XDPOff || st.Reason == "" || len(st.Interfaces) != 1 || st.Interfaces[0].Error == "" {
		t.Fatalf("state = %+v, want off with a reason", st)
	}
	t.Logf("reason: %s", st.Reason)
	st = syncFast(t, ft, f, "hntnosuch0", ft.in)
	if st.Mode != XDPNative || st.Reason == "" {
		t.Errorf("partial state = %+v, want native with the failing interface named", st)
	}
}

// TestFastpathAutoOnVeth: auto runs tc on veth (a tcx link) and says why.
func TestFastpathAutoOnVeth(t *testing.T) {
	ft := newFastTopo(t)
	pin := filepath.Join(bpffsDir(t), "hanat")
	f := openFast(t, ft, pin, XDPModeAuto)
	defer f.Close()
	st := syncFast(t, ft, f, ft.in)
	if st.Mode != BackendTC || len(st.Interfaces) != 1 || st.Interfaces[0].Note == "" {
		t.Fatalf("state = %+v, want tc with a note", st)
	}
	if mode, _ := xdpOn(t, ft.hn, ft.in); mode != XDPOff {
		t.Errorf("kernel XDP mode %s, want none", mode)
	}
	if _, err := os.Stat(filepath.Join(pin, tcLinkPinPrefix+ft.in)); err != nil {
		t.Errorf("tcx link pin: %v", err)
	}
	t.Logf("reason %q, note %q", st.Reason, st.Interfaces[0].Note)
}

// TestFastpathNativeVethPeerWithoutNAPI: forced native XDP on a veth whose
// peer has neither an XDP program nor GRO would blackhole every frame it
// sends; the interface runs tc and says why, and switches to native once
// the peer has NAPI (GRO on).
func TestFastpathNativeVethPeerWithoutNAPI(t *testing.T) {
	ft := newFastTopo(t)
	ft.peersGRO(t, false)
	pin := filepath.Join(bpffsDir(t), "hanat")
	f := openFast(t, ft, pin, XDPModeNative)
	defer f.Close()
	st := syncFast(t, ft, f, ft.in, ft.out)
	if st.Mode != BackendTC || len(st.Interfaces) != 2 {
		t.Fatalf("state = %+v, want tc on both", st)
	}
	for _, is := range st.Interfaces {
		if is.Mode != BackendTC || !strings.Contains(is.Note, "neither an XDP program nor GRO") {
			t.Errorf("%s: mode %s note %q, want tc saying the peer has no NAPI", is.Name, is.Mode, is.Note)
		}
	}
	if mode, _ := xdpOn(t, ft.hn, ft.in); mode != XDPOff {
		t.Errorf("kernel XDP mode %s on %s, want none", mode, ft.in)
	}
	ft.peersGRO(t, true)
	st = syncFast(t, ft, f, ft.in, ft.out)
	if st.Mode != XDPNative {
		t.Fatalf("with GRO on the peers: state = %+v, want native", st)
	}
	if mode, _ := xdpOn(t, ft.hn, ft.in); mode != XDPNative {
		t.Errorf("kernel XDP mode %s on %s, want native", mode, ft.in)
	}
	if _, err := os.Stat(filepath.Join(pin, tcLinkPinPrefix+ft.in)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("tcx link pin left after switching to native: %v", err)
	}
}

func TestFastpathBadMode(t *testing.T) {
	if _, err := OpenXDP(nil, XDPOptions{Mode: "turbo", PinPath: t.TempDir() + "/x"}); err == nil {
		t.Fatal("mode turbo accepted")
	}
}

// TestFastpathNeedsBPFFS: a pin path outside a bpffs is refused with the
// mount command to fix it (nothing is mounted outside /sys/fs/bpf).
func TestFastpathNeedsBPFFS(t *testing.T) {
	_, err := OpenXDP(nil, XDPOptions{PinPath: filepath.Join(t.TempDir(), "hanat")})
	if err == nil {
		t.Fatal("pin path on tmpfs accepted")
	}
	t.Log(err)
}

func TestFastpathInterfaces(t *testing.T) {
	ft := newFastTopo(t)
	got, err := Interfaces(ft.hn, ft.nat44())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{ft.in, ft.out}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("Interfaces = %v, want %v", got, want)
	}
	// Single-ENI layout: the private subnet is reached via the default
	// route, so only the outside interface.
	n := ft.nat44()
	n.PrivateCIDRs = []netip.Prefix{mustPrefix("10.0.99.0/24")}
	if got, err := Interfaces(ft.hn, n); err != nil || !slices.Equal(got, []string{ft.out}) {
		t.Errorf("single ENI: %v, %v; want [%s]", got, err, ft.out)
	}
}

// TestFastpathPathResolver resolves both directions of a NATed flow: the
// next hop's MAC must come from the neighbour table, and a next hop not
// resolved yet is an ErrNeighbourUnresolved, never a guess.
func TestFastpathPathResolver(t *testing.T) {
	ft := newFastTopo(t)
	ctx := testContext(t)
	priv, inet := mustAddr("10.0.11.2"), mustAddr("203.0.113.100")
	sys := &Sysctls{}
	if err := ft.nat.Do(func() error {
		_, err := sys.Apply(ctx, []Sysctl{{Key: "net.ipv4.ip_forward", Value: "1"}})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	inIdx := uint32(natlab.LinkByName(t, ft.hn, ft.in).Attrs().Index)
	outIdx := uint32(natlab.LinkByName(t, ft.hn, ft.out).Attrs().Index)

	r := NewPathResolver(ft.hn, nil)
	if _, err := r.Resolve(ctx, priv, inet); !errors.Is(err, ErrNeighbourUnresolved) {
		t.Fatalf("before any traffic: %v, want ErrNeighbourUnresolved", err)
	}
	// Traffic through the NAT (routed, no SNAT needed here) teaches it
	// both neighbours.
	if err := ft.hi.RouteAdd(&netlink.Route{Dst: &net.IPNet{IP: net.IP{10, 0, 11, 0}, Mask: net.CIDRMask(24, 32)}, Gw: net.ParseIP("203.0.113.1")}); err != nil {
		t.Fatal(err)
	}
	if err := ft.priv.Do(func() error { return icmpEcho(inet, 2*time.Second) }); err != nil {
		t.Fatalf("ping through the NAT: %v", err)
	}
	out, err := r.Resolve(ctx, priv, inet)
	if err != nil {
		t.Fatalf("private -> internet: %v", err)
	}
	in, err := r.Resolve(ctx, inet, priv)
	if err != nil {
		t.Fatalf("internet -> private: %v", err)
	}
	inetMAC := natlab.LinkByName(t, ft.hi, ft.inetIf).Attrs().HardwareAddr
	privMAC := natlab.LinkByName(t, ft.hp, ft.privIf).Attrs().HardwareAddr
	outMAC := natlab.LinkByName(t, ft.hn, ft.out).Attrs().HardwareAddr
	inMAC := natlab.LinkByName(t, ft.hn, ft.in).Attrs().HardwareAddr
	if out.InIfindex != inIdx || out.OutIfindex != outIdx || out.SrcMAC.String() != outMAC.String() ||
		out.DstMAC.String() != inetMAC.String() || out.MTU != 1500 {
		t.Errorf("private -> internet path %+v; want in %d out %d src %s dst %s mtu 1500", out, inIdx, outIdx, outMAC, inetMAC)
	}
	if in.InIfindex != outIdx || in.OutIfindex != inIdx || in.SrcMAC.String() != inMAC.String() ||
		in.DstMAC.String() != privMAC.String() {
		t.Errorf("internet -> private path %+v; want in %d out %d src %s dst %s", in, outIdx, inIdx, inMAC, privMAC)
	}
	// Only interfaces the fast path runs on.
	onlyOut := NewPathResolver(ft.hn, func(i int) bool { return uint32(i) == outIdx })
	if _, err := onlyOut.Resolve(ctx, priv, inet); !errors.Is(err, ErrNotFastPathPort) {
		t.Errorf("with %s off the fast path: %v, want ErrNotFastPathPort", ft.in, err)
	}
	// A failed neighbour is unresolved too.
	if err := ft.hn.NeighSet(&netlink.Neigh{LinkIndex: int(outIdx), Family: netlink.FAMILY_V4, State: netlink.NUD_FAILED,
		IP: net.ParseIP("203.0.113.100")}); err != nil {
		t.Logf("set neighbour failed: %v (skipping that case)", err)
	} else if _, err := r.Resolve(ctx, priv, inet); !errors.Is(err, ErrNeighbourUnresolved) {
		t.Errorf("failed neighbour: %v, want ErrNeighbourUnresolved", err)
	}
}

// TestFastpathForwardsVeth puts both directions of a SNATed UDP flow into
// the flow map by hand (what conntrack/'s offload engine does) and checks
// that the datagrams then cross the NAT as fast-path hits, rewritten
// exactly as the slow path would.
func TestFastpathForwardsVeth(t *testing.T) {
	for _, mode := range []string{XDPModeAuto, XDPModeNative} {
		t.Run(mode, func(t *testing.T) { testFastpathForwards(t, mode, false) })
	}
	// tc on veths as they come: the hosts' datagrams arrive
	// CHECKSUM_PARTIAL (their checksum field the pseudo header's sum) and
	// leave so, the NAT rewriting ports as well as addresses; packet
	// sockets at both hosts check the field the NAT left.
	t.Run("tc-partial", func(t *testing.T) { testFastpathForwards(t, XDPModeAuto, true) })
}

// udpPair is a UDP server on the internet host (203.0.113.100:5353) and a
// client connected to it from the private host (10.0.11.2:40000); both are
// closed at cleanup.
func (ft *fastTopo) udpPair(t *testing.T) (srv, cl *net.UDPConn) {
	t.Helper()
	if err := ft.inet.Do(func() (err error) {
		srv, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IP{203, 0, 113, 100}, Port: 5353})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if err := ft.priv.Do(func() (err error) {
		cl, err = net.DialUDP("udp4", &net.UDPAddr{IP: net.IP{10, 0, 11, 2}, Port: 40000}, &net.UDPAddr{IP: net.IP{203, 0, 113, 100}, Port: 5353})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return srv, cl
}

// slowPath sets the NAT up: its nftables table and sysctls.
func (ft *fastTopo) slowPath(t *testing.T, ctx context.Context) {
	t.Helper()
	if _, err := datapath.NewSlowpath(testLogger(t), ft.nat.FD()).Apply(ctx, ft.nat44()); err != nil {
		t.Fatal(err)
	}
	if err := ft.nat.Do(func() error {
		_, err := (&Sysctls{}).Apply(ctx, datapath.DesiredSysctls(datapath.SysctlSettings{FastPath: true}, 1<<30, ft.out))
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

func testFastpathForwards(t *testing.T, mode string, partial bool) {
	ft := newFastTopo(t)
	ctx := testContext(t)
	ft.slowPath(t, ctx)
	// Locally generated traffic on veth carries partial checksums, which
	// an XDP rewrite cannot fix up: send full checksums. Native XDP_TX and
	// redirect on veth need NAPI on the receiving peer: GRO on.
	for _, c := range []struct {
		ns  *netns.NS
		dev string
	}{{ft.priv, ft.privIf}, {ft.inet, ft.inetIf}} {
		if partial {
			break
		}
		if out, err := c.ns.Run(ctx, "ethtool", "-K", c.dev, "tx", "off", "gro", "on"); err != nil {
			t.Fatalf("ethtool: %v: %s", err, out)
		}
	}
	pin := filepath.Join(bpffsDir(t), "hanat")
	f := openFast(t, ft, pin, mode)
	defer f.Close()
	st := syncFast(t, ft, f, ft.in, ft.out)
	if st.Mode == XDPOff {
		t.Fatalf("fast path off: %+v", st)
	}
	if partial && st.Mode != BackendTC {
		t.Fatalf("fast path mode %s, want tc (%+v)", st.Mode, st)
	}

	srv, cl := ft.udpPair(t)

	exchange := func(i int) (netip.AddrPort, error) {
		msg := []byte{byte(i), 'x', 'y'}
		if _, err := cl.Write(msg); err != nil {
			return netip.AddrPort{}, err
		}
		_ = srv.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 64)
		nr, from, err := srv.ReadFromUDPAddrPort(buf)
		if err != nil {
			return netip.AddrPort{}, err
		}
		if _, err := srv.WriteToUDPAddrPort(buf[:nr], from); err != nil {
			return netip.AddrPort{}, err
		}
		_ = cl.SetReadDeadline(time.Now().Add(2 * time.Second))
		nr, err = cl.Read(buf)
		if err != nil {
			return from, err
		}
		if nr != len(msg) || buf[0] != byte(i) {
			return from, errors.New("echo mismatch")
		}
		return from, nil
	}
	seen, err := exchange(0)
	if err != nil {
		t.Fatalf("slow path exchange: %v", err)
	}
	// Offload both directions, as the engine would from the conntrack entry.
	priv, inet := netip.MustParseAddrPort("10.0.11.2:40000"), netip.MustParseAddrPort("203.0.113.100:5353")
	r := NewPathResolver(ft.hn, f.Attached)
	po, err := r.Resolve(ctx, priv.Addr(), inet.Addr())
	if err != nil {
		t.Fatal(err)
	}
	pr, err := r.Resolve(ctx, inet.Addr(), priv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	objs := f.Objects()
	var capInet, capPriv *udpCapture
	if partial {
		// The flows are written by hand: give the fast path its own
		// SNAT port, so that it rewrites the ports too (the slow path
		// kept the host's), and watch both hosts' interfaces.
		seen = netip.AddrPortFrom(seen.Addr(), seen.Port()^0x0400)
		capInet, capPriv = captureUDP(t, ft.inet, ft.inetIf), captureUDP(t, ft.priv, ft.privIf)
	}
	kOut := bpf.FlowKey{Ifindex: po.InIfindex, Proto: bpf.ProtoUDP, Src: priv, Dst: inet}
	kIn := bpf.FlowKey{Ifindex: pr.InIfindex, Proto: bpf.ProtoUDP, Src: inet, Dst: seen}
	if err := objs.PutFlow(kOut, bpf.FlowAction{NewSrc: seen, NewDst: inet, EgressIfindex: po.OutIfindex, SrcMAC: po.SrcMAC, DstMAC: po.DstMAC, MTU: po.MTU}); err != nil {
		t.Fatal(err)
	}
	if err := objs.PutFlow(kIn, bpf.FlowAction{NewSrc: inet, NewDst: priv, EgressIfindex: pr.OutIfindex, SrcMAC: pr.SrcMAC, DstMAC: pr.DstMAC, MTU: pr.MTU}); err != nil {
		t.Fatal(err)
	}
	before, err := objs.Counters()
	if err != nil {
		t.Fatal(err)
	}
	const rounds = 20
	for i := 1; i <= rounds; i++ {
		from, err := exchange(i)
		if err != nil {
			c, _ := objs.Counters()
			t.Fatalf("fast path exchange %d: %v (counters %+v)", i, err, c)
		}
		if from != seen {
			t.Fatalf("server saw %v on the fast path, %v on the slow path", from, seen)
		}
	}
	after, err := objs.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if hits := after.Hits - before.Hits; hits < 2*rounds {
		t.Errorf("fast-path hits = %d, want >= %d (counters %+v)", hits, 2*rounds, after)
	}
	if partial {
		out, in := capInet.checkUDP(t, inet.Port()), capPriv.checkUDP(t, priv.Port())
		if out < rounds || in < rounds {
			t.Errorf("CHECKSUM_PARTIAL datagrams checked: %d at the internet host, %d at the private host; want >= %d each", out, in, rounds)
		}
	}
	_, sOut, err := objs.LookupFlow(kOut)
	if err != nil || sOut.Packets < rounds {
		t.Errorf("outbound flow stats %+v, %v; want >= %d packets", sOut, err, rounds)
	}
}

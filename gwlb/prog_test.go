//go:build linux

package gwlb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"maps"
	"net/netip"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/hanat/hanat/bpf"
	"github.com/hanat/hanat/geneve"
)

// tc verdicts as BPF_PROG_TEST_RUN returns them.
const (
	tcNext     = ^uint32(0) // TC_ACT_UNSPEC, tcx's TCX_NEXT
	tcOK       = 0          // TC_ACT_OK, tcx's TCX_PASS
	tcShot     = 2
	tcRedirect = 7
)

var (
	addrENI   = netip.MustParseAddr("10.0.1.10")
	addrGWLB  = netip.MustParseAddr("10.0.2.50")
	addrGWLB2 = netip.MustParseAddr("10.0.3.50")
	addrOther = netip.MustParseAddr("10.0.2.99") // in the VPC, not a GWLB

	hostUDP = netip.MustParseAddrPort("10.0.11.5:5353")
	srvUDP  = netip.MustParseAddrPort("198.51.100.7:53")
	hostTCP = netip.MustParseAddrPort("10.0.11.5:40000")
	srvTCP  = netip.MustParseAddrPort("203.0.113.10:443")
	host    = hostUDP.Addr()

	opts  = geneve.Options{EndpointID: 0x0123456789abcdef, AttachmentID: 0x1122334455667788, FlowCookie: 0xdeadbeef}
	opts2 = geneve.Options{EndpointID: 0x00000000000000aa, AttachmentID: 0xbb, FlowCookie: 0xcc}
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: loading BPF programs and BPF_PROG_TEST_RUN need root (CI runs as root)")
	}
}

// env is the programs loaded (not attached) with the ENI's and the GWLBs'
// addresses set.
type env struct {
	objs *bpf.GwlbObjects
	maps tables
}

func newEnv(t testing.TB) *env {
	t.Helper()
	requireRoot(t)
	objs, err := bpf.LoadGWLB("", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	e := &env{objs: objs, maps: tables{&objs.GwlbMaps}}
	if err := e.maps.setLocal(addrENI); err != nil {
		t.Fatal(err)
	}
	if err := e.maps.setGWLBAddrs([]netip.Addr{addrGWLB, addrGWLB2}); err != nil {
		t.Fatal(err)
	}
	return e
}

func run(prog *ebpf.Program, frame []byte) (uint32, []byte, error) {
	var ctx [48]uint32 // struct __sk_buff
	o := &ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+256), Context: ctx, Repeat: 1}
	v, err := prog.Run(o)
	return v, o.DataOut, err
}

func (e *env) ingress(t testing.TB, frame []byte) (uint32, []byte) {
	t.Helper()
	return mustRun(t, "ingress", e.objs.HanatGwlbIngress, frame)
}

func (e *env) egress(t testing.TB, frame []byte) (uint32, []byte) {
	t.Helper()
	return mustRun(t, "egress", e.objs.HanatGwlbEgress, frame)
}

func mustRun(t testing.TB, what string, prog *ebpf.Program, frame []byte) (uint32, []byte) {
	t.Helper()
	v, out, err := run(prog, frame)
	if err != nil {
		t.Fatalf("%s test run of %x: %v", what, frame, err)
	}
	return v, out
}

func (e *env) counters(t testing.TB) map[string]uint64 {
	t.Helper()
	c, err := e.maps.counters()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// delta is what changed between two counter reads.
func delta(before, after map[string]uint64) map[string]uint64 {
	d := map[string]uint64{}
	for k, v := range after {
		if v != before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}

func (e *env) flow(t testing.TB, proto uint8, src, dst netip.AddrPort) (Flow, bool) {
	t.Helper()
	fl, err := e.maps.flows()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fl {
		if f.Proto == proto && f.Src == src && f.Dst == dst {
			return f, true
		}
	}
	return Flow{}, false
}

// TestCountersAllReasons: every reason is a counter, at zero before any
// packet, and the names are unique.
func TestCountersAllReasons(t *testing.T) {
	e := newEnv(t)
	c := e.counters(t)
	if len(c) != int(bpf.GwlbGwlbReasonGWLB_REASON_MAX) || len(c) != len(Reasons()) {
		t.Fatalf("%d counters %v, want %d", len(c), c, bpf.GwlbGwlbReasonGWLB_REASON_MAX)
	}
	for _, r := range geneve.Reasons {
		if v, ok := c[string(r)]; !ok || v != 0 {
			t.Errorf("geneve reason %q: counter %d present %v, want 0 present", r, v, ok)
		}
	}
	for name, v := range c {
		if name == "" || v != 0 {
			t.Errorf("counter %q = %d", name, v)
		}
	}
}

// TestDecap: GWLB's UDP, TCP and ICMP echo packets leave the program as
// the inner packet behind the same Ethernet header, counted, with the flow
// remembered under the inner 5-tuple with GWLB's options.
func TestDecap(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name     string
		inner    []byte
		proto    uint8
		src, dst netip.AddrPort
		gwlb     netip.Addr
		opts     geneve.Options
	}{
		{"udp", udpPacket(hostUDP, srvUDP, []byte("query")), protoUDP, hostUDP, srvUDP, addrGWLB, opts},
		{"tcp syn", tcpPacket(hostTCP, srvTCP, 0x02, nil), protoTCP, hostTCP, srvTCP, addrGWLB2, opts2},
		{"icmp echo", icmpEcho(host, srvTCP.Addr(), 8, 0x4242), protoICMP,
			netip.AddrPortFrom(host, 0x4242), netip.AddrPortFrom(srvTCP.Addr(), 0x4242), addrGWLB, opts},
	} {
		before := e.counters(t)
		v, out := e.ingress(t, encapFrame(tc.gwlb, tc.opts, tc.inner))
		if want := ether(0x0800, tc.inner); v != tcNext || !bytes.Equal(out, want) {
			t.Fatalf("%s: verdict %d out\n%x\nwant TC_ACT_UNSPEC and\n%x", tc.name, v, out, want)
		}
		if err := verifyIPv4(out[14:], false); err != nil {
			t.Fatalf("%s: decapsulated: %v", tc.name, err)
		}
		if d := delta(before, e.counters(t)); !maps.Equal(d, map[string]uint64{ReasonDecap: 1}) {
			t.Fatalf("%s: counters changed %v, want decap +1", tc.name, d)
		}
		f, ok := e.flow(t, tc.proto, tc.src, tc.dst)
		if !ok || f.GWLB != tc.gwlb || f.Options != tc.opts {
			t.Fatalf("%s: flow %+v (found %v), want GWLB %v options %+v", tc.name, f, ok, tc.gwlb, tc.opts)
		}
	}
	// A flow that moves to another GWLB (or endpoint) is remembered anew.
	e.ingress(t, encapFrame(addrGWLB2, opts2, udpPacket(hostUDP, srvUDP, nil)))
	if f, _ := e.flow(t, protoUDP, hostUDP, srvUDP); f.GWLB != addrGWLB2 || f.Options != opts2 {
		t.Fatalf("flow after a packet from another GWLB: %+v", f)
	}
}

// genevePayload is GWLB's GENEVE header (options in AWS's order) and
// inner, changed by mut.
func genevePayload(inner []byte, mut func([]byte) []byte) []byte {
	b := append(geneve.Append(nil, geneve.Header{Protocol: geneve.ProtoIPv4, Options: opts}), inner...)
	return mut(b)
}

// fourthOption adds an option of class, type and words data words after
// GWLB's three.
func fourthOption(class uint16, typ uint8, words int) func([]byte) []byte {
	return func(b []byte) []byte {
		opt := append(binary.BigEndian.AppendUint16(nil, class), typ, byte(words))
		opt = append(opt, make([]byte, 4*words)...)
		b[0] += byte(len(opt) / 4)
		return append(append(b[:40:40], opt...), b[40:]...)
	}
}

// TestRefused: every refusal is a drop, counted once under its reason,
// and remembers no flow.
func TestRefused(t *testing.T) {
	e := newEnv(t)
	inner := udpPacket(hostUDP, srvUDP, []byte("x"))
	keep := func(b []byte) []byte { return b }
	gen := func(mut func([]byte) []byte) []byte {
		return outerUDP(addrGWLB, addrENI, 40000, geneve.Port, genevePayload(inner, mut))
	}
	ipv6 := append([]byte{0x60, 0, 0, 0, 0, 8, 17, 64}, make([]byte, 32+8)...)
	for _, tc := range []struct {
		name  string
		frame []byte
		want  string
	}{
		{"foreign source", outerUDP(addrOther, addrENI, 40000, geneve.Port, genevePayload(inner, keep)), ReasonForeignSource},
		{"empty payload", outerUDP(addrGWLB, addrENI, 40000, geneve.Port, nil), string(geneve.ReasonTruncated)},
		{"base cut", gen(func(b []byte) []byte { return b[:7] }), string(geneve.ReasonTruncated)},
		{"options cut", gen(func(b []byte) []byte { return b[:30] }), string(geneve.ReasonTruncated)},
		{"version 1", gen(func(b []byte) []byte { b[0] |= 0x40; return b }), string(geneve.ReasonVersion)},
		{"oam", gen(func(b []byte) []byte { b[1] |= 0x80; return b }), string(geneve.ReasonOAM)},
		{"ethernet inside", gen(func(b []byte) []byte { b[2], b[3] = 0x65, 0x58; return b }), string(geneve.ReasonProtocol)},
		{"foreign class", gen(func(b []byte) []byte { b[9] = 0x09; return b }), string(geneve.ReasonUnknownOption)},
		{"type 4", gen(func(b []byte) []byte { b[10] = 4; return b }), string(geneve.ReasonUnknownOption)},
		{"endpoint twice", gen(func(b []byte) []byte { copy(b[20:32], b[8:20]); return b }), string(geneve.ReasonDuplicate)},
		{"no cookie", gen(func(b []byte) []byte { b[0] = 6; return append(b[:32], inner...) }), string(geneve.ReasonMissingOption)},
		{"no options", gen(func(b []byte) []byte { b[0] = 0; return append(b[:8], inner...) }), string(geneve.ReasonMissingOption)},
		{"short endpoint", gen(func(b []byte) []byte {
			b[11] = 1
			b[12], b[13], b[14], b[15] = 0x01, 0x08, 9, 0
			return b
		}), string(geneve.ReasonOptionLength)},
		{"option past header", gen(func(b []byte) []byte { b[35] = 3; return b }), string(geneve.ReasonTruncated)},
		{"fourth option unknown", gen(fourthOption(0x0109, 1, 1)), string(geneve.ReasonUnknownOption)},
		{"fourth option a second cookie", gen(fourthOption(geneve.ClassAWS, geneve.OptFlowCookie, 1)), string(geneve.ReasonDuplicate)},
		{"fourth option past header", gen(func(b []byte) []byte { b = fourthOption(geneve.ClassAWS, 9, 1)(b); b[43] = 2; return b }), string(geneve.ReasonTruncated)},
		{"inner ipv6", gen(func(b []byte) []byte { b[2], b[3] = 0x86, 0xdd; return append(b[:40], ipv6...) }), ReasonInnerIPv6},
		{"inner short", gen(func(b []byte) []byte { return b[:40+19] }), ReasonInnerMalformed},
		{"inner version 5", gen(func(b []byte) []byte { b[40] = 0x55; return b }), ReasonInnerMalformed},
		{"inner total length", gen(func(b []byte) []byte { b[42]++; return b }), ReasonInnerMalformed},
		{"outer checksum", func() []byte { f := gen(keep); f[14+10] ^= 1; return f }(), ReasonOuterMalformed},
		{"outer options", func() []byte {
			f := gen(keep)
			ip := append(append([]byte{0x46}, f[15:34]...), 1, 1, 1, 1)
			binary.BigEndian.PutUint16(ip[2:], binary.BigEndian.Uint16(ip[2:])+4)
			ip[10], ip[11] = 0, 0
			binary.BigEndian.PutUint16(ip[10:], csumFinish(csumSum(0, ip)))
			return append(append(f[:14:14], ip...), f[34:]...)
		}(), ReasonOuterMalformed},
		{"first fragment", func() []byte {
			f := gen(keep)
			f[14+6] |= 0x20
			f[14+10], f[14+11] = 0, 0
			binary.BigEndian.PutUint16(f[14+10:], csumFinish(csumSum(0, f[14:34])))
			return f
		}(), ReasonFragment},
		{"udp length past ip", func() []byte { f := gen(keep); f[34+4]++; return f }(), string(geneve.ReasonTruncated)},
		{"udp length short", func() []byte { f := gen(keep); f[34+4], f[34+5] = 0, 7; return f }(), string(geneve.ReasonTruncated)},
	} {
		if r, ok := wantIngress(tc.frame); !ok || r.verdict != tcShot || r.reason != tc.want {
			t.Fatalf("%s: the model says %+v, want a drop for %s", tc.name, r, tc.want)
		}
		before := e.counters(t)
		flowsBefore, _ := e.maps.flows()
		v, _ := e.ingress(t, tc.frame)
		if v != tcShot {
			t.Errorf("%s: verdict %d, want TC_ACT_SHOT", tc.name, v)
		}
		if d := delta(before, e.counters(t)); !maps.Equal(d, map[string]uint64{tc.want: 1}) {
			t.Errorf("%s: counters changed %v, want %s +1", tc.name, d, tc.want)
		}
		if fl, _ := e.maps.flows(); len(fl) != len(flowsBefore) {
			t.Errorf("%s: %d flows, %d before", tc.name, len(fl), len(flowsBefore))
		}
	}
}

// TestIngressPassThrough: what is not GENEVE to the ENI is not touched
// and not counted.
func TestIngressPassThrough(t *testing.T) {
	e := newEnv(t)
	good := genevePayload(udpPacket(hostUDP, srvUDP, nil), func(b []byte) []byte { return b })
	laterFragment := outerUDP(addrGWLB, addrENI, 40000, geneve.Port, good)
	laterFragment[14+7] = 0x10
	laterFragment[14+10], laterFragment[14+11] = 0, 0
	binary.BigEndian.PutUint16(laterFragment[14+10:], csumFinish(csumSum(0, laterFragment[14:34])))
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"arp", ether(0x0806, make([]byte, 28))},
		{"ipv6", ether(0x86dd, make([]byte, 60))},
		{"tcp to the eni", ether(0x0800, tcpPacket(netip.AddrPortFrom(addrGWLB, 40000), netip.AddrPortFrom(addrENI, geneve.Port), 0x02, nil))},
		{"udp to another port", outerUDP(addrGWLB, addrENI, 40000, 6082, good)},
		{"geneve to another address", outerUDP(addrGWLB, addrOther, 40000, geneve.Port, good)},
		{"a private host's packet", ether(0x0800, udpPacket(hostUDP, srvUDP, []byte("plain")))},
		{"a later fragment", laterFragment},
	} {
		before := e.counters(t)
		v, out := e.ingress(t, tc.frame)
		if v != tcNext || !bytes.Equal(out, tc.frame) {
			t.Errorf("%s: verdict %d, frame changed %v; want TC_ACT_UNSPEC untouched", tc.name, v, !bytes.Equal(out, tc.frame))
		}
		if d := delta(before, e.counters(t)); len(d) != 0 {
			t.Errorf("%s: counters changed %v", tc.name, d)
		}
	}
}

// TestEncap: the de-NATed reply of a remembered flow leaves wrapped: outer
// IPv4 from the ENI to the flow's GWLB (checksum right), UDP 6081, the
// flow's options, the reply itself unchanged behind them.
func TestEncap(t *testing.T) {
	e := newEnv(t)
	e.ingress(t, encapFrame(addrGWLB2, opts2, udpPacket(hostUDP, srvUDP, []byte("query"))))
	e.ingress(t, encapFrame(addrGWLB, opts, icmpEcho(host, srvTCP.Addr(), 8, 0x4242)))
	for _, tc := range []struct {
		name  string
		reply []byte
		gwlb  netip.Addr
		opts  geneve.Options
	}{
		{"udp", udpPacket(srvUDP, hostUDP, []byte("answer")), addrGWLB2, opts2},
		{"icmp echo reply", icmpEcho(srvTCP.Addr(), host, 0, 0x4242), addrGWLB, opts},
		{"port unreachable about the udp flow", icmpError(srvUDP.Addr(), host, 3, 3, udpPacket(hostUDP, srvUDP, []byte("query"))), addrGWLB2, opts2},
		{"time exceeded about the echo", icmpError(netip.MustParseAddr("192.0.2.1"), host, 11, 0, icmpEcho(host, srvTCP.Addr(), 8, 0x4242)), addrGWLB, opts},
	} {
		before := e.counters(t)
		v, out := e.egress(t, ether(0x0800, tc.reply))
		if v != tcRedirect {
			t.Fatalf("%s: verdict %d, want TC_ACT_REDIRECT (bpf_redirect_neigh: no MAC cached)", tc.name, v)
		}
		if d := delta(before, e.counters(t)); !maps.Equal(d, map[string]uint64{ReasonEncap: 1, ReasonNeighMiss: 1}) {
			t.Fatalf("%s: counters changed %v, want encap +1 neigh_miss +1", tc.name, d)
		}
		// The whole frame, built independently: Ethernet as it was, then
		// IPv4 (DF, TTL 64, id 0) and UDP 6081 -> 6081 checksum 0.
		p, _ := geneve.Encap(geneve.Header{Options: tc.opts}, tc.reply)
		udp := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, geneve.Port), geneve.Port)
		udp = append(binary.BigEndian.AppendUint16(udp, uint16(8+len(p))), 0, 0)
		ip := ipv4(addrENI, tc.gwlb, protoUDP, 64, append(udp, p...), -1)
		ip[4], ip[5], ip[6] = 0, 0, 0x40
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], csumFinish(csumSum(0, ip[:20])))
		if want := ether(0x0800, ip); !bytes.Equal(out, want) {
			t.Fatalf("%s: encapsulated\n%x\nwant\n%x", tc.name, out, want)
		}
		if err := verifyIPv4(out[14:], true); err != nil {
			t.Fatalf("%s: outer: %v", tc.name, err)
		}
		h, in, err := geneve.Parse(out[14+28:])
		if err != nil || h.Options != tc.opts || !bytes.Equal(in, tc.reply) {
			t.Fatalf("%s: GENEVE %+v %v", tc.name, h, err)
		}
	}
}

// TestEgressPassThrough: packets of no remembered flow leave untouched
// (the member's own SNATed traffic, replies of other flows, the
// encapsulated packet itself); a flow whose GWLB was removed is dropped,
// never sent anywhere else.
func TestEgressPassThrough(t *testing.T) {
	e := newEnv(t)
	e.ingress(t, encapFrame(addrGWLB, opts, udpPacket(hostUDP, srvUDP, nil)))
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"snated outbound", ether(0x0800, udpPacket(netip.AddrPortFrom(addrENI, 61000), srvUDP, nil))},
		{"the flow's own direction", ether(0x0800, udpPacket(hostUDP, srvUDP, nil))},
		{"another port", ether(0x0800, udpPacket(srvUDP, netip.AddrPortFrom(host, 5354), nil))},
		{"tcp with the udp flow's ports", ether(0x0800, tcpPacket(srvUDP, hostUDP, 0x10, nil))},
		{"arp", ether(0x0806, make([]byte, 28))},
		{"encapsulated", encapFrame(addrENI, opts, udpPacket(srvUDP, hostUDP, nil))},
		{"an error about another flow", ether(0x0800, icmpError(srvUDP.Addr(), host, 3, 3, udpPacket(netip.AddrPortFrom(host, 5354), srvUDP, nil)))},
		{"an error to another host quoting the flow", ether(0x0800, icmpError(srvUDP.Addr(), addrOther, 3, 3, udpPacket(hostUDP, srvUDP, nil)))},
	} {
		before := e.counters(t)
		v, out := e.egress(t, tc.frame)
		if v != tcNext || !bytes.Equal(out, tc.frame) {
			t.Errorf("%s: verdict %d, changed %v; want TC_ACT_UNSPEC untouched", tc.name, v, !bytes.Equal(out, tc.frame))
		}
		if d := delta(before, e.counters(t)); len(d) != 0 {
			t.Errorf("%s: counters changed %v", tc.name, d)
		}
	}
	if err := e.maps.setGWLBAddrs([]netip.Addr{addrGWLB2}); err != nil {
		t.Fatal(err)
	}
	before := e.counters(t)
	if v, _ := e.egress(t, ether(0x0800, udpPacket(srvUDP, hostUDP, nil))); v != tcShot {
		t.Fatalf("reply of a flow whose GWLB was removed: verdict %d, want TC_ACT_SHOT", v)
	}
	if d := delta(before, e.counters(t)); !maps.Equal(d, map[string]uint64{ReasonGWLBGone: 1}) {
		t.Fatalf("counters changed %v, want gwlb_gone +1", d)
	}
}

// ingressResult is what the ingress program must do with a frame.
type ingressResult struct {
	verdict uint32
	reason  string // the counter, "" for a pass
	out     []byte // the decapsulated frame
	flow    Flow   // the flow remembered (decap only)
}

// wantIngress is the model of the ingress program, written from the
// geneve package and the brief rather than from the C: ok is false when
// the kernel refuses to test-run the frame.
func wantIngress(frame []byte) (ingressResult, bool) {
	pass := ingressResult{verdict: tcNext}
	drop := func(r string) (ingressResult, bool) { return ingressResult{verdict: tcShot, reason: r}, true }
	if len(frame) < 14 {
		return pass, false
	}
	switch binary.BigEndian.Uint16(frame[12:]) {
	case 0x0800:
		if len(frame) < 34 {
			return pass, false
		}
	case 0x86dd:
		if len(frame) < 54 {
			return pass, false
		}
		return pass, true
	default:
		return pass, true
	}
	ip := frame[14:]
	ihl := int(ip[0]&0xf) * 4
	if ip[0]>>4 != 4 || ihl < 20 || ip[9] != protoUDP || netip.AddrFrom4([4]byte(ip[16:20])) != addrENI {
		return pass, true
	}
	frag := binary.BigEndian.Uint16(ip[6:])
	l4 := 14 + ihl
	if frag&0x1fff != 0 || len(frame) < l4+8 || binary.BigEndian.Uint16(frame[l4+2:]) != geneve.Port {
		return pass, true
	}
	if src := netip.AddrFrom4([4]byte(ip[12:16])); src != addrGWLB && src != addrGWLB2 {
		return drop(ReasonForeignSource)
	}
	if ihl != 20 || csumFinish(csumSum(0, ip[:20])) != 0 {
		return drop(ReasonOuterMalformed)
	}
	if frag&0x2000 != 0 {
		return drop(ReasonFragment)
	}
	ulen := int(binary.BigEndian.Uint16(frame[l4+4:]))
	if ulen < 8 || l4+ulen > 14+int(binary.BigEndian.Uint16(ip[2:])) || l4+ulen > len(frame) {
		return drop(string(geneve.ReasonTruncated))
	}
	h, inner, err := geneve.Parse(frame[l4+8 : l4+ulen])
	if err != nil {
		return drop(string(geneve.ReasonOf(err)))
	}
	if h.Protocol == geneve.ProtoIPv6 {
		return drop(ReasonInnerIPv6)
	}
	if len(inner) < 20 || inner[0]>>4 != 4 || inner[0]&0xf < 5 {
		return drop(ReasonInnerMalformed)
	}
	hl, tot := int(inner[0]&0xf)*4, int(binary.BigEndian.Uint16(inner[2:]))
	if tot < hl || tot > len(inner) {
		return drop(ReasonInnerMalformed)
	}
	f := Flow{Proto: inner[9], GWLB: netip.AddrFrom4([4]byte(ip[12:16])), Options: h.Options}
	var sport, dport uint16
	if binary.BigEndian.Uint16(inner[6:])&0x1fff == 0 {
		switch inner[9] {
		case protoTCP, protoUDP:
			if tot-hl < 4 {
				return drop(ReasonInnerMalformed)
			}
			sport, dport = binary.BigEndian.Uint16(inner[hl:]), binary.BigEndian.Uint16(inner[hl+2:])
		case protoICMP:
			if tot-hl < 8 {
				return drop(ReasonInnerMalformed)
			}
			if inner[hl] == 0 || inner[hl] == 8 {
				sport = binary.BigEndian.Uint16(inner[hl+4:])
				dport = sport
			}
		}
	}
	f.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(inner[12:16])), sport)
	f.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(inner[16:20])), dport)
	hdrEnd := l4 + ulen - len(inner) // where inner starts
	out := append(append([]byte(nil), frame[:14]...), frame[hdrEnd:]...)
	return ingressResult{verdict: tcNext, reason: ReasonDecap, out: out, flow: f}, true
}

// maxTestRunFrame is a frame length the kernel takes for a test run (its
// limit is a page less headroom and tailroom).
const maxTestRunFrame = 3000

// FuzzIngress runs arbitrary frames through the ingress program and checks
// its verdict, output, counter and remembered flow against wantIngress,
// which refuses exactly what geneve.Parse refuses.
func FuzzIngress(f *testing.F) {
	inner := udpPacket(hostUDP, srvUDP, []byte("fuzz"))
	f.Add(encapFrame(addrGWLB, opts, inner), true)
	f.Add(encapFrame(addrGWLB2, opts2, tcpPacket(hostTCP, srvTCP, 0x10, []byte("data"))), true)
	f.Add(encapFrame(addrGWLB, opts, icmpEcho(host, srvTCP.Addr(), 8, 7)), true)
	f.Add(encapFrame(addrOther, opts, inner), true)
	f.Add(outerUDP(addrGWLB, addrENI, 1, geneve.Port, genevePayload(inner, func(b []byte) []byte { b[0] = 0x3f; return b })), true)
	f.Add(outerUDP(addrGWLB, addrENI, 1, geneve.Port, genevePayload(inner, func(b []byte) []byte { b[10] = 2; return b })), true)
	f.Add(ether(0x0800, udpPacket(hostUDP, srvUDP, nil)), true)
	f.Add(ether(0x86dd, make([]byte, 40)), true)
	f.Add([]byte{1, 2, 3}, true)
	requireRoot(f)
	e := newEnv(f)
	// fixOuter rewrites the outer IPv4 checksum, so mutations past the
	// outer header reach the GENEVE parser instead of outer_malformed.
	f.Fuzz(func(t *testing.T, frame []byte, fixOuter bool) {
		if len(frame) > maxTestRunFrame {
			frame = frame[:maxTestRunFrame]
		}
		if fixOuter && len(frame) >= 34 && frame[14]&0xf == 5 {
			frame[24], frame[25] = 0, 0
			binary.BigEndian.PutUint16(frame[24:], csumFinish(csumSum(0, frame[14:34])))
		}
		want, ok := wantIngress(frame)
		before := e.counters(t)
		v, out, err := run(e.objs.HanatGwlbIngress, frame)
		if !ok {
			if !errors.Is(err, unix.EINVAL) {
				t.Fatalf("kernel ran a %d-byte frame: verdict %d err %v", len(frame), v, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("test run of a %d-byte frame %.64x…: %v", len(frame), frame, err)
		}
		if v != want.verdict {
			t.Fatalf("frame %x: verdict %d, want %d (%q)", frame, v, want.verdict, want.reason)
		}
		d := delta(before, e.counters(t))
		switch {
		case want.reason == "" && len(d) != 0:
			t.Fatalf("frame %x passed, counters changed %v", frame, d)
		case want.reason != "" && !maps.Equal(d, map[string]uint64{want.reason: 1}):
			t.Fatalf("frame %x: counters changed %v, want %s +1", frame, d, want.reason)
		}
		switch {
		case want.reason == ReasonDecap:
			if !bytes.Equal(out, want.out) {
				t.Fatalf("frame %x decapsulated to\n%x\nwant\n%x", frame, out, want.out)
			}
			got, found := e.flow(t, want.flow.Proto, want.flow.Src, want.flow.Dst)
			if !found || got != want.flow {
				t.Fatalf("frame %x: flow %+v (found %v), want %+v", frame, got, found, want.flow)
			}
		case v == tcNext && !bytes.Equal(out, frame):
			t.Fatalf("frame %x passed changed: %x", frame, out)
		}
	})
}

// BenchmarkPassThrough is what the programs cost every packet of the ENI
// that is not the GWLB's: ingress on a plain UDP packet, egress on a
// packet of no remembered flow (one LRU lookup), each run b.N times in the
// kernel (ns/op is the kernel's per-run time).
func BenchmarkPassThrough(b *testing.B) {
	e := newEnv(b)
	frame := ether(0x0800, udpPacket(hostUDP, srvUDP, make([]byte, 18)))
	for _, p := range []struct {
		name string
		prog *ebpf.Program
	}{{"ingress", e.objs.HanatGwlbIngress}, {"egress", e.objs.HanatGwlbEgress}} {
		b.Run(p.name, func(b *testing.B) {
			_, d, err := p.prog.Benchmark(frame, b.N, b.ResetTimer)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(d.Nanoseconds()), "ns/pkt")
		})
	}
}

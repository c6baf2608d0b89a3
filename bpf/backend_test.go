//go:build linux

package bpf

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"reflect"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// tc verdicts (include/uapi/linux/pkt_cls.h) as BPF_PROG_TEST_RUN returns
// them.
const (
	tcActUnspec   = ^uint32(0) // TC_ACT_UNSPEC (-1), tcx's TCX_NEXT
	tcActRedirect = 7
)

// backend is one of the two programs over the same maps, with its verdicts
// for what the XDP program calls XDP_PASS, XDP_TX and XDP_REDIRECT (the
// model's terms): the tests and the fuzzer run both on every input.
type backend struct {
	name string
	run  func(e *env, frame []byte, ingress uint32) (uint32, []byte, error)
	// verdict maps an XDP verdict to this program's.
	verdict func(xdpVerdict uint32) uint32
	// refused says the kernel refuses to test-run frame (EINVAL), so the
	// program never sees it.
	refused func(frame []byte) bool
}

var backends = []backend{
	{"xdp", (*env).run, func(v uint32) uint32 { return v }, func(frame []byte) bool { return len(frame) < 14 }},
	{"tc", func(e *env, frame []byte, ingress uint32) (uint32, []byte, error) {
		return runTC(e.tcProgram(), frame, skbCtx{ingress: ingress})
	}, tcVerdict, tcRefused},
	// The tc program on an skb whose checksum state is CHECKSUM_COMPLETE
	// (a NIC that sums every frame, skb->csum over the IP packet): the
	// kernel checks skb->csum against the bytes after the run and fails
	// it (EBADMSG) when a write left it stale.
	{"tc-csum-complete", func(e *env, frame []byte, ingress uint32) (uint32, []byte, error) {
		return runTC(e.tcProgram(), frame, skbCtx{ingress: ingress, csumComplete: true})
	}, tcVerdict, tcRefused},
}

// tcRefused: an skb test run needs an Ethernet header and, when its
// ethertype says IPv4 or IPv6, a whole fixed IP header after it (20 or 40
// bytes; probed on 6.18, the fuzzer found the IPv6 case in CI).
func tcRefused(frame []byte) bool {
	if len(frame) < 14 {
		return true
	}
	switch binary.BigEndian.Uint16(frame[12:]) {
	case ethPIPv4:
		return len(frame) < 14+20
	case ethPIPv6:
		return len(frame) < 14+40
	}
	return false
}

// tcVerdict is the tc program's verdict for the XDP program's: it passes
// with TC_ACT_UNSPEC and sends with bpf_redirect, to the ingress interface
// too.
func tcVerdict(xdp uint32) uint32 {
	if xdp == xdpPass {
		return tcActUnspec
	}
	return tcActRedirect
}

func (e *env) tcProgram() *ebpf.Program {
	p, err := e.objs.TCProgram()
	if err != nil {
		panic(err) // newEnv checked it
	}
	return p
}

// skbCtx is what a test run sets in struct __sk_buff.
type skbCtx struct {
	ingress          uint32 // ingress_ifindex and ifindex
	gsoSegs, gsoSize uint32
	// csumComplete runs on a CHECKSUM_COMPLETE skb
	// (BPF_F_TEST_SKB_CHECKSUM_COMPLETE, Linux 6.11): the kernel sets
	// skb->csum to the sum of the bytes from the network header on, and
	// after the run fails with EBADMSG unless skb->csum still matches
	// them.
	csumComplete bool
}

// skbCtxWords are struct __sk_buff (192 bytes) as 32-bit words, and the
// indexes of the fields a test run may set.
const (
	skbCtxWords       = 48
	skbIngressIfindex = 9
	skbIfindex        = 10
	skbGSOSegs        = 41
	skbGSOSize        = 44
)

// runTC runs a tc program once through BPF_PROG_TEST_RUN. The kernel
// builds an skb of the frame (CHECKSUM_NONE unless c.csumComplete, linear)
// on the device of ifindex (lo when 1).
func runTC(prog *ebpf.Program, frame []byte, c skbCtx) (uint32, []byte, error) {
	var ctx [skbCtxWords]uint32
	ctx[skbIngressIfindex] = c.ingress
	if c.ingress > 1 {
		ctx[skbIfindex] = c.ingress
	}
	ctx[skbGSOSegs], ctx[skbGSOSize] = c.gsoSegs, c.gsoSize
	opts := &ebpf.RunOptions{
		Data:    frame,
		DataOut: make([]byte, len(frame)+256),
		Context: ctx,
		Repeat:  1,
	}
	if c.csumComplete {
		opts.Flags |= unix.BPF_F_TEST_SKB_CHECKSUM_COMPLETE
	}
	verdict, err := prog.Run(opts)
	return verdict, opts.DataOut, err
}

// TestTCProgramLoads: Load loads the tc program onto the XDP program's
// maps, so a flow written once is seen by both.
func TestTCProgramLoads(t *testing.T) {
	e := newEnv(t, noSuchPort)
	mapIDs := func(p *ebpf.Program) []ebpf.MapID {
		info, err := p.Info()
		if err != nil {
			t.Fatal(err)
		}
		ids, _ := info.MapIDs()
		return ids
	}
	id := func(m *ebpf.Map) ebpf.MapID {
		info, err := m.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		return id
	}
	xdpMaps, tcMaps := mapIDs(e.objs.Program()), mapIDs(e.tcProgram())
	for _, m := range []*ebpf.Map{e.objs.objs.Flows, e.objs.objs.Counters} {
		if !slices.Contains(xdpMaps, id(m)) || !slices.Contains(tcMaps, id(m)) {
			t.Fatalf("map %v (id %d): xdp program uses %v, tc program %v; want both", m, id(m), xdpMaps, tcMaps)
		}
	}
	if !slices.Contains(tcMaps, id(e.objs.objs.TcPorts)) || !slices.Contains(tcMaps, id(e.objs.objs.TcPortSlots)) || len(tcMaps) != 4 {
		t.Fatalf("tc program uses maps %v, want flows, counters, tc_ports (%d) and tc_port_slots (%d)", tcMaps, id(e.objs.objs.TcPorts), id(e.objs.objs.TcPortSlots))
	}
}

// TestTCPortCache: the tc program redirects to a port while tc_ports has it
// and never after, whatever its cache slot holds: two ports sharing a slot
// (the later one cached, the earlier found in tc_ports), either removed.
func TestTCPortCache(t *testing.T) {
	e := newEnv(t, noSuchPort)
	// Interfaces that need not exist: a test run's bpf_redirect only
	// returns TC_ACT_REDIRECT.
	const a, b = 1000, 1000 + 64 // one slot
	flowTo := map[uint32]FlowKey{}
	for i, port := range []uint32{a, b} {
		k := tcpRedir
		k.Src = netip.AddrPortFrom(k.Src.Addr(), k.Src.Port()+uint16(i)+1)
		act := tcpRedirAct
		act.EgressIfindex = port
		if err := e.objs.PutFlow(k, act); err != nil {
			t.Fatal(err)
		}
		flowTo[port] = k
	}
	prog := e.tcProgram()
	want := func(step string, port uint32, redirect bool) {
		t.Helper()
		for _, complete := range []bool{false, true} {
			verdict, _, err := runTC(prog, packet(flowTo[port], tcpACK, nil).build(), skbCtx{ingress: loIfindex, csumComplete: complete})
			if err != nil {
				t.Fatalf("%s: flow to %d: %v", step, port, err)
			}
			if got := verdict == tcActRedirect; got != redirect || (!got && verdict != tcActUnspec) {
				t.Fatalf("%s: flow to %d: verdict %d, want redirect %v", step, port, verdict, redirect)
			}
		}
	}
	do := func(step string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	want("no ports", a, false)
	do("add a", e.objs.AddTCPort(a))
	want("a added (cached)", a, true)
	do("add b", e.objs.AddTCPort(b))
	want("b added: a's slot holds b", a, true)
	want("b added", b, true)
	do("remove b", e.objs.RemoveTxPort(b))
	want("b removed (its slot cleared)", b, false)
	want("b removed", a, true)
	do("add b again", e.objs.AddTCPort(b))
	do("remove a", e.objs.RemoveTxPort(a))
	want("a removed while its slot holds b", a, false)
	want("a removed", b, true)
	do("remove b", e.objs.RemoveTxPort(b))
	want("both removed", b, false)
}

// TestFastpathTCGSO: a GSO packet (a GRO aggregate, which tc sees and
// generic XDP would have made linear) is checked against the MTU per
// segment and counted as its segments.
func TestFastpathTCGSO(t *testing.T) {
	e := newEnv(t, noSuchPort)
	prog := e.tcProgram()
	// Three 1000-byte segments of payload: 3040 bytes of IPv4, over the
	// 1500 MTU as a whole, each segment 1040.
	o := packet(tcpOut, tcpACK, make([]byte, 3000))
	in, want := o.build(), rewritten(o, tcpOutAct).build()
	before, sBefore := e.counters(t), e.stats(t, tcpOut)
	verdict, out, err := runTC(prog, in, skbCtx{ingress: loIfindex, gsoSegs: 3, gsoSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if verdict != tcActRedirect || !bytes.Equal(out, want) {
		t.Fatalf("GSO packet within the MTU per segment: verdict %d, frame equal %v; want TC_ACT_REDIRECT and the rewrite", verdict, bytes.Equal(out, want))
	}
	if err := verifyChecksums(out, false); err != nil {
		t.Fatal(err)
	}
	after := e.counters(t)
	if d := counterDelta(before, after); !reflect.DeepEqual(d, map[FastpathCounterId]uint64{FastpathCounterIdCOUNTER_HIT: 3}) {
		t.Fatalf("counter changes %v, want 3 hits (one per segment)", d)
	}
	// The segments leave as 3 IPv4 packets of 20+20+1000 bytes.
	if s := e.stats(t, tcpOut); s.Packets-sBefore.Packets != 3 || s.Bytes-sBefore.Bytes != 3*1040 {
		t.Fatalf("flow stats %+v after %+v, want 3 more packets of 1040 bytes", s, sBefore)
	}
	if after.OutPackets-before.OutPackets != 3 || after.OutBytes-before.OutBytes != 3*1040 {
		t.Fatalf("out totals +%d packets +%d bytes, want 3 and %d", after.OutPackets-before.OutPackets, after.OutBytes-before.OutBytes, 3*1040)
	}

	// Segments of 1461 payload bytes are 1501 bytes of IPv4: too big.
	before = e.counters(t)
	verdict, out, err = runTC(prog, in, skbCtx{ingress: loIfindex, gsoSegs: 3, gsoSize: 1461})
	if err != nil {
		t.Fatal(err)
	}
	if verdict != tcActUnspec || !bytes.Equal(out[:len(in)], in) {
		t.Fatalf("GSO segments over the MTU: verdict %d; want unmodified TC_ACT_UNSPEC", verdict)
	}
	if d := counterDelta(before, e.counters(t)); !reflect.DeepEqual(d, map[FastpathCounterId]uint64{FastpathCounterIdCOUNTER_PASS_TOO_BIG: 1}) {
		t.Fatalf("counter changes %v, want one too_big", d)
	}
}

package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/hanat/hanat/geneve"
	"github.com/hanat/hanat/internal/testtool"
)

// TestGenGeneve runs the GWLB generator (bench_gen_geneve) with
// BPF_PROG_RUN on a zeroed frame, as the GWLB shape does, and checks every
// flow's frame from scratch: outer IPv4 from the GWLB to the ENI with a
// right checksum, UDP 6081 with a right (non-zero) checksum over the whole
// datagram, a GENEVE header package geneve accepts with the bench's
// options, and the flow's inner datagram with right IPv4 and UDP
// checksums. Needs root (CAP_BPF), no namespace.
func TestGenGeneve(t *testing.T) {
	if os.Geteuid() != 0 {
		testtool.Unavailable(t, "needs root to load BPF")
	}
	const flows, ports = testGenFlows, testGenPorts
	tp := &topo{privMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, natInMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}}
	tmpl, sum := gwlbTemplate(tp)
	objs := loadGenerator(t, map[string]any{"gg_tmpl": tmpl, "gg_outer_sum": be16(sum)})
	out := make([]byte, gwlbFrameLen)
	for i := 0; i < flows; i++ {
		ret, err := objs.BenchGenGeneve.Run(&ebpf.RunOptions{Data: make([]byte, gwlbFrameLen), DataOut: out})
		if err != nil || ret != 3 { // XDP_TX
			t.Fatalf("flow %d: ret %d, %v", i, ret, err)
		}
		if !bytes.Equal(out[0:6], tp.natInMAC) || !bytes.Equal(out[6:12], tp.privMAC) || binary.BigEndian.Uint16(out[12:]) != 0x0800 {
			t.Fatalf("flow %d: Ethernet header %x", i, out[:14])
		}
		outer := out[14:]
		if s := onesSum(outer[:20]); s != 0xffff || outer[0] != 0x45 || int(binary.BigEndian.Uint16(outer[2:])) != gwlbFrameLen-14 {
			t.Fatalf("flow %d: outer IPv4 header %x (sum %#04x)", i, outer[:20], s)
		}
		if src, dst := netip.AddrFrom4([4]byte(outer[12:16])), netip.AddrFrom4([4]byte(outer[16:20])); src != gwlbAddr || dst != natOut {
			t.Fatalf("flow %d: outer %v -> %v, want the GWLB %v -> the ENI %v", i, src, dst, gwlbAddr, natOut)
		}
		if sp, dp := binary.BigEndian.Uint16(outer[20:]), binary.BigEndian.Uint16(outer[22:]); sp != geneve.Port || dp != geneve.Port {
			t.Fatalf("flow %d: outer UDP %d -> %d", i, sp, dp)
		}
		udpSumOK(t, out)
		ulen := int(binary.BigEndian.Uint16(outer[24:]))
		h, inner, err := geneve.Parse(outer[28 : 20+ulen])
		if err != nil {
			t.Fatalf("flow %d: GENEVE: %v", i, err)
		}
		if h.Options != gwlbBenchOptions || h.Protocol != geneve.ProtoIPv4 || h.OAM || h.VNI != 0 {
			t.Fatalf("flow %d: GENEVE header %+v, want options %+v, IPv4", i, h, gwlbBenchOptions)
		}
		if len(inner) != genFrameLen-14 || onesSum(inner[:20]) != 0xffff ||
			netip.AddrFrom4([4]byte(inner[12:16])) != privAddr || netip.AddrFrom4([4]byte(inner[16:20])) != inetAddr {
			t.Fatalf("flow %d: inner packet %x", i, inner)
		}
		if sp, dp := binary.BigEndian.Uint16(inner[20:]), binary.BigEndian.Uint16(inner[22:]); sp != uint16(genSportBase+i%ports) || dp != uint16(genDport+i/ports) {
			t.Fatalf("flow %d: inner ports %d -> %d, want %d -> %d", i, sp, dp, genSportBase+i%ports, genDport+i/ports)
		}
		udpSumOK(t, append(make([]byte, 14), inner...))
	}
}

// TestReportGWLB: the GWLB rows carry their units, the targets are plain
// pps over GWLB pps per mode (at most 1.3), the bounds plain NAT plus the
// bare decap forwarder's decap cost, and the table prints them.
func TestReportGWLB(t *testing.T) {
	r := newReport()
	r.set(MUDPPPS1, ModeNftables, 400_000)
	r.set(MUDPPPS1, ModeFastpathTC, 800_000)
	r.set(MUDPPPSGWLB, ModeNftables, 320_000)
	r.set(MUDPPPSGWLB, ModeFastpathTC, 500_000)
	r.set(MUDPPPSGWLBReply, ModeNftables, 400_000)
	r.set(MCeilingTC1, ModeFastpathTC, 1_000_000)
	r.set(MCeilingDecapTC, ModeFastpathTC, 800_000)
	r.set(MCeilingEncapTC, ModeFastpathTC, 500_000)
	r.set(MUDPPPSGWLBPlain, ModeNftables, 320_000)
	got := map[string]Target{}
	for _, tg := range r.Targets {
		got[tg.Name] = tg
	}
	for name, want := range map[string]struct {
		ratio float64
		met   bool
	}{
		"GWLB/plain NAT per-packet cost, one ENI (nftables)":    {1.25, true},
		"GWLB/plain NAT per-packet cost, one ENI (fastpath_tc)": {1.6, false},
		"GWLB reply/plain NAT per-packet cost (nftables)":       {1, true},
	} {
		tg, ok := got[name]
		if !ok || tg.Ratio == nil || math.Abs(*tg.Ratio-want.ratio) > 1e-9 || tg.Met == nil || *tg.Met != want.met || tg.Want != "<= 1.3" {
			t.Errorf("target %q: %+v, want ratio %v met %v", name, tg, want.ratio, want.met)
		}
	}
	if tg := got["GWLB reply/plain NAT per-packet cost (fastpath_tc)"]; tg.Ratio != nil {
		t.Errorf("unmeasured reply target %+v", tg)
	}
	bounds := map[string]float64{}
	var plainFrames []float64
	for _, b := range r.Bounds {
		switch {
		case strings.Contains(b.From, MUDPPPSGWLBPlain):
			if b.Target != "GWLB/plain NAT per-packet cost, one ENI (nftables)" {
				t.Errorf("plain frames' bound %+v on another target", b)
			}
			plainFrames = append(plainFrames, *b.Ratio)
		case strings.HasPrefix(b.Target, "GWLB"):
			bounds[b.Target] = *b.Ratio
		}
	}
	if len(plainFrames) != 1 || plainFrames[0] != 1.25 {
		t.Errorf("plain frames' bounds %v, want 1.25 (400k / 320k)", plainFrames)
	}
	// decap: 1/800k - 1/1M = 0.25 us a packet; encap 1/500k - 1/1M = 1 us.
	for name, want := range map[string]float64{
		"GWLB/plain NAT per-packet cost, one ENI (nftables)":    1.1,
		"GWLB/plain NAT per-packet cost, one ENI (fastpath_tc)": 1.2,
		"GWLB reply/plain NAT per-packet cost (nftables)":       1.4,
		"GWLB reply/plain NAT per-packet cost (fastpath_tc)":    1.8,
	} {
		if math.Abs(bounds[name]-want) > 1e-9 {
			t.Errorf("bound of %q: %v, want %v", name, bounds[name], want)
		}
	}
	if len(bounds) != 4 {
		t.Errorf("GWLB bounds %v, want 4", bounds)
	}
	for _, name := range []string{MUDPPPSGWLB, MCeilingDecapTC, MCeilingEncapTC} {
		for _, m := range r.Measurements {
			if m.Name == name && m.Unit != "pps" {
				t.Errorf("%s: unit %q, want pps", name, m.Unit)
			}
		}
	}
	var buf bytes.Buffer
	if err := r.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{MUDPPPSGWLB, MCeilingDecapTC, "GWLB/plain NAT per-packet cost, one ENI (fastpath_tc)", "1.60  MISSED", "1.25  met"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table has no %q:\n%s", want, buf.String())
		}
	}
}

// TestGWLBFigures runs the GWLB shape briefly (one round, tiny samples):
// both directions arrive through a member in each GWLB mode, the tc fast
// path carries most of them, the bare decap and encap forwarders are measured, and no
// sample leaves a note (a drop counted by gwlb, an untranslated arrival):
// the report's one note says the XDP mode is the slow path here.
func TestGWLBFigures(t *testing.T) {
	if os.Geteuid() != 0 {
		testtool.Unavailable(t, "needs root: creates network namespaces, attaches tc and XDP programs, loads nftables rules")
	}
	testtool.Require(t, "ip", "ethtool", "conntrack", "sysctl")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, nil))
	dir, bpffs, cleanup, err := scratchDirs("hanat-bench-gwlb-")
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	opts := Options{Modes: []Mode{ModeNftables, ModeFastpathTC}, Flows: 64, PPSDuration: 300 * time.Millisecond, GWLBRounds: 1}
	opts.defaults()
	rep := newReport()
	if err := runGWLB(ctx, log, opts, rep, bpffs, dir); err != nil {
		t.Fatalf("runGWLB: %v\nlog:\n%s", err, logBuf.String())
	}
	// The one note expected: the native XDP mode is the slow path here.
	if len(rep.Notes) != 1 || rep.Notes[0] != gwlbXDPNote {
		t.Errorf("notes: %q, want only the XDP mode's\nlog:\n%s", rep.Notes, logBuf.String())
	}
	for _, m := range opts.Modes {
		for _, name := range []string{MUDPPPSGWLB, MUDPPPSGWLBReply, MUDPPPSGWLBPlain} {
			if v, ok := rep.Get(name, m); !ok || v <= 0 {
				t.Errorf("%s %s not measured (%v, %v)", name, m, v, ok)
			}
		}
	}
	for _, name := range []string{MFastShareGWLB, MFastShareGWLBReply} {
		if v, ok := rep.Get(name, ModeFastpathTC); !ok || v < 50 {
			t.Errorf("%s: the tc fast path carried %v%% (measured %v), want most", name, v, ok)
		}
	}
	for _, name := range []string{MCeilingDecapTC, MCeilingEncapTC} {
		if v, ok := rep.Get(name, ModeFastpathTC); !ok || v <= 0 {
			t.Errorf("%s not measured (%v, %v)", name, v, ok)
		}
	}
	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	t.Logf("GWLB figures (tiny durations, not a benchmark):\n%s", table.String())
}

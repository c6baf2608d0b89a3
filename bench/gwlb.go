package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/hanat/hanat/datapath"
	"github.com/hanat/hanat/geneve"
	"github.com/hanat/hanat/gwlb"
)

// Issue 16: the per-packet cost of a GWLB fleet member (package gwlb, two-
// arm mode) against plain NAT on one ENI. The GWLB shape is the single-ENI
// shape with the GWLB's address on the peer too:
//
//	vpc: eth0 198.51.100.100 (inet) + 198.51.100.50/32 (GWLB) ──out0─ member 198.51.100.2
//
// bench_gen_geneve sends the single-ENI shape's 64-byte datagrams (priv ->
// inet, 1024 flows) GENEVE-wrapped with AWS's three options from the GWLB
// to the ENI; the member decapsulates (gwlb's ingress at the head of tcx),
// NATs (slow path, or the tc fast path after gwlb's ingress) and sends
// out0; the native XDP counter on the peer counts the NATed datagrams, as
// in the single-ENI shape. The reply direction: bench_gen sends inet ->
// the NAT address datagrams of the same flows, the member de-NATs and
// gwlb's egress wraps them again to the GWLB, counted as GENEVE from the
// ENI. The warm-up (both directions, as every mode's) primes the member's
// flow memory. The bound: bench_decap_fwd_tc, decap and a bare forwarder.

// gwlbAddr is the GWLB's address in the GWLB shape (on the peer).
var gwlbAddr = netip.MustParseAddr("198.51.100.50")

// gwlbBenchOptions are the options every generated GENEVE packet carries.
var gwlbBenchOptions = geneve.Options{EndpointID: 0x0123456789abcdef, AttachmentID: 0x0fedcba987654321, FlowCookie: 0xc001d00d}

// gwlbFrameLen: the single-ENI shape's frame inside GWLB's encapsulation.
const gwlbFrameLen = genFrameLen + geneve.Overhead

// gwlbTmplLen is the header template bench_gen_geneve copies (gg_tmpl):
// every header, and two payload bytes to make whole words.
const gwlbTmplLen = 14 + geneve.Overhead + 20 + 8 + 2

// The GWLB shape's figures.
const (
	MUDPPPSGWLB         = "udp_64b_pps_gwlb"
	MUDPPPSGWLBReply    = "udp_64b_pps_gwlb_reply"
	MFastShareGWLB      = "udp_fastpath_hit_share_gwlb"
	MFastShareGWLBReply = "udp_fastpath_hit_share_gwlb_reply"
	MCeilingDecapTC     = "udp_64b_pps_bare_tc_decap_forwarder_gwlb"
	MCeilingEncapTC     = "udp_64b_pps_bare_tc_encap_forwarder_gwlb_reply"
	MUDPPPSGWLBPlain    = "udp_64b_pps_gwlb_member_plain_frames"
	MGWLBOverBareTC     = "udp_64b_pps_gwlb_over_bare_tc_forwarder_single_eni"
)

// gwlbRows are the GWLB shape's measurements, declared on first use (a run
// with -skip-gwlb has none).
var gwlbRows = map[string]struct{ unit, help string }{
	MUDPPPSGWLB:         {"pps", "one GWLB fleet member, one ENI: 64-byte inner UDP datagrams/s (GENEVE from the GWLB, decapsulated by gwlb's tc ingress, NATed, out the same ENI) arriving translated, native XDP counter as the single-ENI shape's"},
	MUDPPPSGWLBReply:    {"pps", "the reply direction: server -> NAT address datagrams/s de-NATed and wrapped again to the GWLB by gwlb's egress, arriving as GENEVE from the ENI"},
	MFastShareGWLB:      {"%", "GWLB arrivals forwarded as tc fast-path hits (after gwlb's decap)"},
	MFastShareGWLBReply: {"%", "GWLB reply arrivals forwarded as tc fast-path hits (then gwlb's encap)"},
	MCeilingDecapTC:     {"pps", "the GWLB shape's bound: a bare tc forwarder that strips the outer headers (no GWLB check, no options, no flow memory, no NAT) in place of the member"},
	MUDPPPSGWLBPlain:    {"pps", "the same member (gwlb's programs attached, same flows, same lab) sent the inner frames unwrapped: plain NAT plus gwlb's early exits (ingress: not GENEVE; egress: a flow-map miss per packet)"},
	MCeilingEncapTC:     {"pps", "the reply direction's bound: a bare tc forwarder that wraps the server's datagrams in fixed outer headers (no flow lookup, no de-NAT, no neighbour lookup) in place of the member"},
	MGWLBOverBareTC:     {"ratio", "the member's pps over the bare tc forwarder's, one ENI (" + MCeilingTC1 + ")"},
}

// gwlbTarget is issue 16's: decap + NAT + return encap at most 1.3 times
// plain NAT's per-packet cost.
const gwlbTarget = 1.3

// gwlbModes are the modes the GWLB shape measures: the slow path and the
// tc fast path. Under the native XDP mode GENEVE reaches XDP before gwlb's
// tc ingress decapsulates it: the XDP fast path never sees an inner flow,
// every packet takes the slow path (not measured; gwlbXDPNote).
var gwlbModes = []Mode{ModeNftables, ModeFastpathTC}

const gwlbXDPNote = "GWLB under the native XDP mode (fastpath) = the slow path: GENEVE reaches XDP before gwlb's tc ingress decapsulates it, so the XDP fast path sees no inner flow (not measured; its figures are the nftables column's)"

// gwlbTargets are issue 16's targets (plain single-ENI pps over the GWLB
// pps: the ratio of per-packet costs) and their bounds: plain NAT plus only
// the decap (outbound) or the encap (reply) as a bare tc forwarder pays it.
func (r *Report) gwlbTargets(ratio func(string, Mode, string, Mode) *float64) ([]target, []Bound) {
	var ts []target
	var bounds []Bound
	want := fmt.Sprintf("<= %g", gwlbTarget)
	for _, m := range gwlbModes {
		for _, d := range []struct {
			name, figure, bare, what string
		}{
			{fmt.Sprintf("GWLB/plain NAT per-packet cost, one ENI (%s)", m), MUDPPPSGWLB, MCeilingDecapTC, "decap"},
			{fmt.Sprintf("GWLB reply/plain NAT per-packet cost (%s)", m), MUDPPPSGWLBReply, MCeilingEncapTC, "encap"},
		} {
			ts = append(ts, target{d.name, want, ratio(MUDPPPS1, m, d.figure, m), false, gwlbTarget})
			if d.figure == MUDPPPSGWLB {
				// The member doing strictly less: no decap, no options.
				if b := ratio(MUDPPPS1, m, MUDPPPSGWLBPlain, m); b != nil {
					bounds = append(bounds, Bound{d.name, b, fmt.Sprintf("%s / %s: the member's programs attached, plain frames", MUDPPPS1, MUDPPPSGWLBPlain)})
				}
			}
			if plain, ok := r.Get(MUDPPPS1, m); ok {
				if extra := r.gwlbExtraCost(d.bare); extra != nil {
					b := 1 + plain**extra
					bounds = append(bounds, Bound{d.name, &b, fmt.Sprintf("plain NAT + only the %s: 1 + %s x (1/%s - 1/%s)", d.what, MUDPPPS1, d.bare, MCeilingTC1)})
				}
			}
		}
	}
	return ts, bounds
}

// gwlbExtraCost is the time per packet the bare forwarder bare (decap or
// encap) takes more than the bare tc forwarder (in the chain's lockstep,
// seconds); nil unless both were measured.
func (r *Report) gwlbExtraCost(bare string) *float64 {
	d, ok1 := r.Get(bare, ModeFastpathTC)
	f, ok2 := r.Get(MCeilingTC1, ModeFastpathTC)
	if !ok1 || !ok2 || d <= 0 || f <= 0 {
		return nil
	}
	c := 1/d - 1/f
	return &c
}

// gwlbLab is a GWLB shape's namespaces with its two traffics.
type gwlbLab struct {
	t    *topo
	out  *traffic // GENEVE from the GWLB; counts the NATed inner datagrams (and owns the warm-up's reply sockets)
	back *traffic // server -> NAT address; counts GENEVE from the ENI to the GWLB
}

// newGWLBLab builds the GWLB shape. On error everything created so far is
// removed; otherwise the caller calls close.
func newGWLBLab(ctx context.Context, log *slog.Logger, flows int) (_ *gwlbLab, err error) {
	if flows > genPorts {
		return nil, fmt.Errorf("bench gwlb: %d flows: at most %d (one destination port; the replies' ports are the flows')", flows, genPorts)
	}
	l := &gwlbLab{}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.close())
		}
	}()
	if l.t, err = newSingleENITopo(ctx); err != nil {
		return nil, err
	}
	if err := runIn(ctx, []nsCommand{{l.t.priv, []string{"ip", "addr", "add", netip.PrefixFrom(gwlbAddr, 32).String(), "dev", hostDev}}}); err != nil {
		return nil, err
	}
	tmpl, sum := gwlbTemplate(l.t)
	if l.out, err = newTrafficWith(log, l.t, flows, map[string]any{"gg_tmpl": tmpl, "gg_outer_sum": be16(sum)}); err != nil {
		return nil, err
	}
	l.out.gen, l.out.frame = l.out.objs.BenchGenGeneve, make([]byte, gwlbFrameLen)
	l.back, err = loadTraffic(log, l.t, flows, map[string]any{
		"gen_saddr":      inetAddr.As4(),
		"gen_daddr":      natOut.As4(),
		"gen_sport_base": uint16(genDport),
		"gen_dport":      be16(genSportBase),
		"gen_ports":      uint32(1), // flow i: inet:9999 -> NAT address:20000+i (SNAT kept the ports)
		"gen_ip_check":   be16(ipv4Checksum(inetAddr, natOut, genFrameLen-14, 64, unix.IPPROTO_UDP)),
		"cnt_dport":      be16(geneve.Port),
		"cnt_dports":     uint16(1),
		"gg_encap":       gwlbEncap(),
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

func (l *gwlbLab) close() error {
	for _, tr := range []*traffic{l.back, l.out} {
		if tr != nil {
			tr.close()
		}
	}
	if l.t == nil {
		return nil
	}
	if err := l.t.close(); err != nil {
		return fmt.Errorf("bench gwlb lab cleanup: %w", err)
	}
	return nil
}

// gwlbTemplate is bench_gen_geneve's header template for flow ports 0 and
// UDP checksums 0, and the one's-complement sum of the outer checksum's
// constant part (pseudo-header and datagram, in host order).
func gwlbTemplate(t *topo) ([gwlbTmplLen]byte, uint16) {
	f := make([]byte, gwlbFrameLen)
	copy(f[0:], t.natInMAC)
	copy(f[6:], t.privMAC)
	binary.BigEndian.PutUint16(f[12:], unix.ETH_P_IP)
	outerLen := uint16(gwlbFrameLen - 14)
	putIPv4(f[14:], gwlbAddr, natOut, outerLen)
	udp := f[34:]
	binary.BigEndian.PutUint16(udp[0:], geneve.Port)
	binary.BigEndian.PutUint16(udp[2:], geneve.Port)
	binary.BigEndian.PutUint16(udp[4:], outerLen-20)
	copy(udp[8:], geneve.Append(nil, geneve.Header{Protocol: geneve.ProtoIPv4, Options: gwlbBenchOptions}))
	inner := udp[8+geneve.HeaderLen:]
	putIPv4(inner, privAddr, inetAddr, genFrameLen-14)
	binary.BigEndian.PutUint16(inner[24:], genFrameLen-14-20)

	ph := make([]byte, 0, 12+len(udp))
	ph = append(ph, f[26:34]...) // the outer addresses
	ph = append(ph, 0, unix.IPPROTO_UDP)
	ph = binary.BigEndian.AppendUint16(ph, outerLen-20)
	ph = append(ph, udp...)
	var tmpl [gwlbTmplLen]byte
	copy(tmpl[:], f)
	return tmpl, onesSum(ph)
}

// gwlbEncap is the outer headers bench_encap_fwd_tc puts on the reply
// direction's frames: from the ENI to the GWLB, UDP 6081 (checksum 0, as
// gwlb's egress sends), GENEVE with the bench's options.
func gwlbEncap() [geneve.Overhead]byte {
	var e [geneve.Overhead]byte
	outerLen := uint16(geneve.Overhead + genFrameLen - 14)
	putIPv4(e[:], natOut, gwlbAddr, outerLen)
	binary.BigEndian.PutUint16(e[20:], geneve.Port)
	binary.BigEndian.PutUint16(e[22:], geneve.Port)
	binary.BigEndian.PutUint16(e[24:], outerLen-20)
	copy(e[28:], geneve.Append(nil, geneve.Header{Protocol: geneve.ProtoIPv4, Options: gwlbBenchOptions}))
	return e
}

// putIPv4 writes an option-less IPv4 header for UDP (TTL 64, id 0, not
// fragmented) with its checksum.
func putIPv4(b []byte, src, dst netip.Addr, totLen uint16) {
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:], totLen)
	b[8], b[9] = 64, unix.IPPROTO_UDP
	s, d := src.As4(), dst.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	binary.BigEndian.PutUint16(b[10:], 0)
	binary.BigEndian.PutUint16(b[10:], ^onesSum(b[:20]))
}

// gwlbSample is one round's figures of one mode in the GWLB shape; NaN
// where not measured.
type gwlbSample struct {
	pps, replyPPS, share, replyShare float64
	plainPPS                         float64 // the member's plain frames
	notes                            []string
}

// runGWLB measures the GWLB shape in opts.GWLBRounds rounds: every GWLB
// mode of opts.Modes in a lab of its own, then the bare decap and encap
// forwarders in another; the medians go in the report. A failed sample is
// a note. Without a GWLB mode in opts.Modes only the XDP mode's note.
func runGWLB(ctx context.Context, log *slog.Logger, opts Options, rep *Report, bpffs, dir string) error {
	var modes []Mode
	for _, m := range opts.Modes {
		if slices.Contains(gwlbModes, m) {
			modes = append(modes, m)
		}
	}
	rep.note(gwlbXDPNote)
	if len(modes) == 0 {
		return nil
	}
	samples := map[Mode][]gwlbSample{}
	var decapBound, encapBound []float64
	for r := 0; r < opts.GWLBRounds; r++ {
		for _, m := range modes {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			mlog := log.With("mode", m, "round", r+1)
			s, err := inGWLBLab(ctx, mlog, opts.Flows, func(l *gwlbLab) (gwlbSample, error) {
				return runGWLBMode(ctx, mlog, l, m, opts, bpffs, dir)
			})
			for _, n := range s.notes {
				rep.note(fmt.Sprintf("gwlb %s round %d: %s", m, r+1, n))
			}
			if err != nil {
				log.Error("bench gwlb mode failed", "mode", m, "round", r+1, "err", err)
				rep.note(fmt.Sprintf("gwlb %s round %d: %v", m, r+1, err))
				continue
			}
			samples[m] = append(samples[m], s)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		_, err := inGWLBLab(ctx, log, opts.Flows, func(l *gwlbLab) (gwlbSample, error) {
			for _, b := range []struct {
				what string
				tr   *traffic
				prog *ebpf.Program
				to   *[]float64
			}{
				{"bare tc decap forwarder", l.out, l.out.objs.BenchDecapFwdTc, &decapBound},
				{"bare tc encap forwarder", l.back, l.back.objs.BenchEncapFwdTc, &encapBound},
			} {
				pps, err := l.bound(ctx, opts.PPSDuration, b.tr, b.prog)
				if err != nil {
					rep.note(fmt.Sprintf("gwlb %s round %d: %v", b.what, r+1, err))
					continue
				}
				log.Info("bench: gwlb, "+b.what, "pps", int(pps), "round", r+1)
				*b.to = append(*b.to, pps)
			}
			return gwlbSample{}, nil
		})
		if err != nil {
			rep.note(fmt.Sprintf("gwlb bare forwarders round %d: %v", r+1, err))
		}
	}
	for _, m := range modes {
		for _, f := range []struct {
			name string
			get  func(gwlbSample) float64
		}{
			{MUDPPPSGWLB, func(s gwlbSample) float64 { return s.pps }},
			{MUDPPPSGWLBReply, func(s gwlbSample) float64 { return s.replyPPS }},
			{MFastShareGWLB, func(s gwlbSample) float64 { return s.share }},
			{MFastShareGWLBReply, func(s gwlbSample) float64 { return s.replyShare }},
			{MUDPPPSGWLBPlain, func(s gwlbSample) float64 { return s.plainPPS }},
		} {
			var vs []float64
			for _, s := range samples[m] {
				if v := f.get(s); !math.IsNaN(v) {
					vs = append(vs, v)
				}
			}
			if len(vs) > 0 {
				rep.set(f.name, m, medianOf(vs))
			}
			if len(vs) > 1 && (f.name == MUDPPPSGWLB || f.name == MUDPPPSGWLBReply) {
				rep.note(fmt.Sprintf("%s %s: %d samples from %s to %s", m, f.name, len(vs), fmtVal(&vs[0]), fmtVal(&vs[len(vs)-1])))
			}
		}
		if pps, ok := rep.Get(MUDPPPSGWLB, m); ok {
			if bare, ok := rep.Get(MCeilingTC1, ModeFastpathTC); ok && bare > 0 {
				rep.set(MGWLBOverBareTC, m, pps/bare)
			}
		}
	}
	for name, vs := range map[string][]float64{MCeilingDecapTC: decapBound, MCeilingEncapTC: encapBound} {
		if len(vs) > 0 {
			rep.set(name, ModeFastpathTC, medianOf(vs))
		}
	}
	return nil
}

// inGWLBLab runs fn in a new GWLB lab and removes the lab afterwards.
func inGWLBLab(ctx context.Context, log *slog.Logger, flows int, fn func(*gwlbLab) (gwlbSample, error)) (gwlbSample, error) {
	l, err := newGWLBLab(ctx, log, flows)
	if err != nil {
		return gwlbSample{}, err
	}
	s, err := fn(l)
	if cerr := l.close(); cerr != nil {
		log.Error("bench: gwlb lab cleanup", "err", cerr)
		err = errors.Join(err, cerr)
	}
	return s, err
}

// runGWLBMode configures mode m with a GWLB member on out0 (gwlb's
// programs at the head of tcx, after the mode's own), warms the flows up
// through it, and measures both directions.
func runGWLBMode(ctx context.Context, log *slog.Logger, l *gwlbLab, m Mode, opts Options, bpffs, dir string) (s gwlbSample, err error) {
	nan := math.NaN()
	s = gwlbSample{pps: nan, replyPPS: nan, share: nan, replyShare: nan, plainPPS: nan}
	t := l.t
	log.Info("bench: configuring")
	nm, err := setupMode(ctx, log, t, m, bpffs, dir)
	if err != nil {
		return s, err
	}
	defer func() {
		if terr := nm.teardown(context.WithoutCancel(ctx)); terr != nil {
			err = errors.Join(err, fmt.Errorf("teardown: %w", terr))
		}
	}()
	var dp *gwlb.Datapath
	if err := t.nat.Do(func() (err error) {
		dp, err = gwlb.Attach(ctx, gwlb.Config{Link: natOutX, LocalAddr: natOut, GWLBAddrs: []netip.Addr{gwlbAddr}})
		return err
	}); err != nil {
		return s, err
	}
	defer func() {
		if derr := dp.Detach(); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	if err := t.resolveNeighbours(ctx); err != nil {
		return s, err
	}
	if err := t.resolveNeighbour(ctx, natOutX, gwlbAddr); err != nil {
		return s, err
	}
	// The replies' MAC cache, as the member's health check keeps it:
	// filled now, and confirmed again before each sample (its entries
	// expire in seconds).
	refreshNeighbours := func() error {
		return t.nat.Do(func() error {
			n, err := dp.RefreshNeighbours(ctx)
			if err == nil && len(n) == 0 {
				err = fmt.Errorf("gwlb: no MAC cached for GWLB %v", gwlbAddr)
			}
			return err
		})
	}
	if err := refreshNeighbours(); err != nil {
		return s, err
	}
	var offloaded func() (int, error)
	if nm.fast != nil {
		offloaded = nm.offloaded
	}
	if err := l.out.attachCounter(); err != nil {
		return s, err
	}
	defer l.out.detachCounter()
	log.Info("bench: warming up flows through the GWLB member", "flows", opts.Flows)
	if err := l.out.warmUp(ctx, offloaded, datapath.DefaultOffloadAfterPackets); err != nil {
		return s, fmt.Errorf("%w (gwlb counters %v)", err, gwlbCounters(dp))
	}
	if fl, err := dp.Flows(); err != nil || len(fl) < opts.Flows {
		return s, fmt.Errorf("gwlb: the member remembers %d flows (%v), want the %d warmed up", len(fl), err, opts.Flows)
	}
	// The member's plain frames: l.out's generator and counter, bench_gen's
	// frames (the inner ones, unwrapped) of the same flows.
	plain := *l.out
	plain.gen, plain.frame, plain.countLink = l.out.objs.BenchGen, make([]byte, genFrameLen), nil
	var noShare float64
	dirs := []struct {
		tr         *traffic
		pps, share *float64
		what       string
	}{{l.out, &s.pps, &s.share, "outbound"}, {l.back, &s.replyPPS, &s.replyShare, "reply"}, {&plain, &s.plainPPS, &noShare, "plain frames"}}
	for _, d := range dirs {
		for _, tr := range []*traffic{l.out, l.back, &plain} {
			tr.detachCounter()
		}
		if err := d.tr.attachCounterOf(true); err != nil {
			return s, err
		}
		if err := refreshNeighbours(); err != nil {
			return s, err
		}
		var before map[string]uint64
		var fastBefore uint64
		if before, err = dp.Counters(); err != nil {
			return s, err
		}
		if nm.fast != nil {
			c, err := nm.counters()
			if err != nil {
				return s, err
			}
			fastBefore = c.Hits
		}
		ps, err := d.tr.measure(ctx, opts.PPSDuration)
		if err != nil {
			return s, fmt.Errorf("gwlb %s: %w", d.what, err)
		}
		*d.pps = ps.pps()
		after, err := dp.Counters()
		if err != nil {
			return s, err
		}
		log.Info("bench: gwlb udp", "direction", d.what, "pps", int(*d.pps), "offered_pps", int(ps.offered()),
			"decap", after[gwlb.ReasonDecap]-before[gwlb.ReasonDecap], "encap", after[gwlb.ReasonEncap]-before[gwlb.ReasonEncap])
		if ps.untranslated > 0 {
			s.notes = append(s.notes, fmt.Sprintf("%s: %d datagrams arrived untranslated", d.what, ps.untranslated))
		}
		for k, v := range after {
			if k != gwlb.ReasonDecap && k != gwlb.ReasonEncap && v > before[k] {
				s.notes = append(s.notes, fmt.Sprintf("%s: gwlb counted %d %s", d.what, v-before[k], k))
			}
		}
		if nm.fast != nil && ps.arrived > 0 {
			c, err := nm.counters()
			if err != nil {
				return s, err
			}
			*d.share = 100 * float64(c.Hits-fastBefore) / float64(ps.arrived)
		}
	}
	return s, nil
}

// gwlbCounters is the datapath's counters for an error message.
func gwlbCounters(dp *gwlb.Datapath) map[string]uint64 {
	c, _ := dp.Counters()
	return c
}

// bound measures the GWLB shape's chain with prog, a bare forwarder, on
// out0's tc ingress in place of the member (no mode: nothing else on
// out0), tr's generator and counter: every generated datagram counted on
// arrival, translated or not.
func (l *gwlbLab) bound(ctx context.Context, d time.Duration, tr *traffic, prog *ebpf.Program) (float64, error) {
	var lnk link.Link
	if err := l.t.nat.Do(func() (err error) {
		lnk, err = link.AttachTCX(link.TCXOptions{Program: prog, Interface: l.t.natOutIdx, Attach: ebpf.AttachTCXIngress})
		return err
	}); err != nil {
		return 0, fmt.Errorf("attach %v to %s: %w", prog, natOutX, err)
	}
	defer lnk.Close()
	if err := tr.attachCounterOf(true); err != nil {
		return 0, err
	}
	defer tr.detachCounter()
	ps, err := tr.measure(ctx, d)
	if err != nil {
		return 0, err
	}
	if n := ps.arrived + ps.untranslated; n > 0 {
		return float64(n) / ps.took.Seconds(), nil
	}
	return 0, fmt.Errorf("%v: nothing arrived of %d datagrams sent", prog, ps.sent)
}

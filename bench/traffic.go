package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/netip"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// UDP flows of the packet-rate test: priv:genSportBase+i → inet:genDport.
const (
	genSportBase = 20000
	genDport     = 9999
	genFrameLen  = 60 // 64 bytes on the wire with the FCS
	// genCall is the number of frames of the first BPF_PROG_RUN call
	// while measuring; the calls after it are sized to last genChunk.
	// Every live-frames call costs some 25 ms on top of its frames here
	// (6.18, 2 vCPUs; a call of 64 frames takes as long as one of 4096),
	// time in which no frame moves: calls of a fixed frame count would
	// charge a faster mode a larger share of that dead time, calls of a
	// fixed duration charge every mode the same share.
	genCall  = 1 << 16
	genChunk = 500 * time.Millisecond
	maxCall  = 1 << 24
	// paceCall: frames per call while warming up (the kernel runs them
	// in batches of 64, each drained through the NAT and the receivers
	// before the next, so none is lost to a full veth ring).
	paceCall = 4096
	// genPorts: flows per destination port. Beyond it the generator
	// moves to the next destination port (genDport+1, ...), as one SNAT
	// address has a source port range per destination.
	genPorts = 40_000
	// maxFlows: 1 M flows of the scale test, and some.
	maxFlows = 1 << 21
)

// xdpMd is struct xdp_md, the context of an XDP test run.
type xdpMd struct {
	Data, DataEnd, DataMeta, IngressIfindex, RxQueueIndex, EgressIfindex uint32
}

// traffic is the packet generator on priv's veth and the counter on inet's.
type traffic struct {
	log   *slog.Logger
	t     *topo
	flows int

	objs      benchXDPObjects
	gen       *ebpf.Program // the generator send runs: objs.BenchGen unless set otherwise
	countLink link.Link
	reply     []*net.UDPConn // inet's sockets for the warm-up replies, one per destination port
	frame     []byte
	// minOffloaded: the share of the flows warmUp waits to see offloaded
	// (1 but for the scale test's large tables, where a shortfall after
	// the wait is a note in shortfall, not an error: the hit share says
	// what the fast path carried).
	minOffloaded float64
	shortfall    string
}

// genLayout is how flows spread over source and destination ports.
func genLayout(flows int) (ports, dports int) {
	ports = min(flows, genPorts)
	return ports, (flows + ports - 1) / ports
}

func newTraffic(log *slog.Logger, t *topo, flows int) (*traffic, error) {
	return newTrafficWith(log, t, flows, nil)
}

// newTrafficWith is newTraffic with the programs' globals of override
// (loadTraffic).
func newTrafficWith(log *slog.Logger, t *topo, flows int, override map[string]any) (*traffic, error) {
	tr, err := loadTraffic(log, t, flows, override)
	if err != nil {
		return nil, err
	}
	_, dports := genLayout(flows)
	if err := t.inet.Do(func() error {
		for d := range dports {
			c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(inetAddr, uint16(genDport+d))))
			if err != nil {
				return err
			}
			tr.reply = append(tr.reply, c)
		}
		return nil
	}); err != nil {
		tr.close()
		return nil, fmt.Errorf("bench traffic: reply socket: %w", err)
	}
	return tr, nil
}

// loadTraffic loads the benchmark's programs for flows in t, the
// read-only globals of the priv -> inet flows set, then those of
// override (a traffic of another direction or frame); no reply sockets.
func loadTraffic(log *slog.Logger, t *topo, flows int, override map[string]any) (*traffic, error) {
	if flows < 1 || flows > maxFlows {
		return nil, fmt.Errorf("bench traffic: %d flows: want 1..%d", flows, maxFlows)
	}
	tr := &traffic{log: log, t: t, flows: flows, frame: make([]byte, genFrameLen), minOffloaded: 1}
	ports, dports := genLayout(flows)
	spec, err := loadBenchXDP()
	if err != nil {
		return nil, fmt.Errorf("bench traffic: load spec: %w", err)
	}
	totLen := uint16(genFrameLen - 14)
	ipCheck := ipv4Checksum(privAddr, inetAddr, totLen, 64, unix.IPPROTO_UDP)
	set := map[string]any{
		"gen_src_mac":    mac6(t.privMAC),
		"gen_dst_mac":    mac6(t.natInMAC),
		"gen_saddr":      privAddr.As4(),
		"gen_daddr":      inetAddr.As4(),
		"gen_sport_base": uint16(genSportBase),
		"gen_dport":      be16(genDport),
		"gen_flows":      uint32(flows),
		"gen_ports":      uint32(ports),
		"cnt_dports":     uint16(dports),
		"gen_ip_check":   be16(ipCheck),
		"gen_tot_len":    be16(totLen),
		"cnt_saddr":      natOut.As4(),
		"fwd_src_mac":    mac6(t.natOutMAC),
		"fwd_dst_mac":    mac6(t.inetMAC),
		"fwd_ifindex":    fwdIfindex(t),
		"cnt_dport":      be16(genDport),
	}
	maps.Copy(set, override)
	if err := setVars(spec, set); err != nil {
		return nil, fmt.Errorf("bench traffic: %w", err)
	}
	if err := spec.LoadAndAssign(&tr.objs, nil); err != nil {
		return nil, fmt.Errorf("bench traffic: load programs: %w", err)
	}
	tr.gen = tr.objs.BenchGen
	return tr, nil
}

// fwdIfindex is where the bare forwarder sends: out0, or 0 (XDP_TX) when
// the NAT has a single interface.
func fwdIfindex(t *topo) uint32 {
	if t.singleENI {
		return 0
	}
	return uint32(t.natOutIdx)
}

// forwarder is a bare forwarder (no NAT, no lookup) the ceiling puts in
// place of the NAT on its receiving interface, with the counter that
// counts its frames.
type forwarder int

const (
	// fwdXDP: bench_fwd in native mode: frames redirected (or sent back
	// with XDP_TX), built into socket buffers at the receiver.
	fwdXDP forwarder = iota
	// fwdXDPSKB: the same program in generic mode: the NAT's interface
	// builds a socket buffer and sends it, as the slow path modes do.
	fwdXDPSKB
	// fwdTC: bench_fwd_tc on tc ingress (tcx), the tc backend's bound.
	fwdTC
	// fwdXDPXC, fwdXDPSKBXC: fwdXDP and fwdXDPSKB counted by the native
	// XDP counter (bench_count), the benchmark's counter before: it
	// copies every socket buffer into a page, not the frames.
	fwdXDPXC
	fwdXDPSKBXC
	fwdKinds
)

func (k forwarder) String() string {
	return [...]string{
		"bare XDP forwarder (native redirect, frames)",
		"bare XDP forwarder (generic, socket buffers)",
		"bare tc forwarder",
		"bare XDP forwarder (native redirect), native XDP counter",
		"bare XDP forwarder (generic), native XDP counter",
	}[k]
}

// mode is the column of the report a forwarder's figure is in: that of
// the backend it bounds.
func (k forwarder) mode() Mode {
	if k == fwdTC {
		return ModeFastpathTC
	}
	return ModeFastpath
}

// ceiling measures the chain's packet rate with forwarder k in place of
// the NAT on its receiving interface: frames arrive at the counter
// untranslated. The NAT namespace must have no program attached (run it
// in a lab of no mode).
func (tr *traffic) ceiling(ctx context.Context, d time.Duration, k forwarder) (float64, error) {
	var l link.Link
	if err := tr.t.nat.Do(func() (err error) {
		if !tr.t.singleENI {
			if err := tr.objs.FwdPort.Put(uint32(tr.t.natOutIdx), uint32(tr.t.natOutIdx)); err != nil {
				return fmt.Errorf("forwarder port %d: %w", tr.t.natOutIdx, err)
			}
		}
		switch k {
		case fwdTC:
			l, err = link.AttachTCX(link.TCXOptions{Program: tr.objs.BenchFwdTc, Interface: tr.t.natInIdx, Attach: ebpf.AttachTCXIngress})
		case fwdXDPSKB, fwdXDPSKBXC:
			l, err = link.AttachXDP(link.XDPOptions{Program: tr.objs.BenchFwd, Interface: tr.t.natInIdx, Flags: link.XDPGenericMode})
		default:
			l, err = link.AttachXDP(link.XDPOptions{Program: tr.objs.BenchFwd, Interface: tr.t.natInIdx, Flags: link.XDPDriverMode})
		}
		return err
	}); err != nil {
		return 0, fmt.Errorf("ceiling: attach the %s: %w", k, err)
	}
	defer l.Close()
	return tr.measureUntranslated(ctx, d, k == fwdXDPXC || k == fwdXDPSKBXC || tr.t.singleENI)
}

// measureUntranslated is the rate of datagrams arriving untranslated (a
// bare forwarder's) over d, counted by the tc counter or, with xdp, the
// native XDP one.
func (tr *traffic) measureUntranslated(ctx context.Context, d time.Duration, xdp bool) (float64, error) {
	if err := tr.attachCounterOf(xdp); err != nil {
		return 0, err
	}
	defer tr.detachCounter()
	ps, err := tr.measure(ctx, d)
	if err != nil {
		return 0, err
	}
	return float64(ps.untranslated) / ps.took.Seconds(), nil
}

func (tr *traffic) close() {
	for _, c := range tr.reply {
		_ = c.Close()
	}
	tr.detachCounter()
	_ = tr.objs.Close()
}

// attachCounter puts the arrival counter on inet's veth, on tc ingress
// (tcx, before the tc wire): every mode's packets reach it as socket
// buffers, the fast path's frames built into one by the veth, as a NIC
// driver builds them, the slow path's as they were sent. So the counter
// does the same work per packet in every mode; the native XDP counter
// (attachCounterOf(true)) did not: a veth with XDP copies every socket
// buffer it receives into a page first, a redirected frame not. It
// stays there only for the UDP tests.
//
// The single-ENI shape keeps the native XDP counter: on this kernel
// (6.18) frames sent back with XDP_TX to a veth with GRO but no XDP
// program are stuck in its ring after the first 256 (the NAT's out0
// counts the rest as xdp_tx_errors), so nothing would be counted there.
func (tr *traffic) attachCounter() error { return tr.attachCounterOf(tr.t.singleENI) }

// attachCounterOf attaches the tc counter, or with xdp the native XDP
// counter (bench_count).
func (tr *traffic) attachCounterOf(xdp bool) error {
	if tr.countLink != nil {
		return nil
	}
	return tr.t.inet.Do(func() error {
		var l link.Link
		var err error
		if xdp {
			l, err = link.AttachXDP(link.XDPOptions{Program: tr.objs.BenchCount, Interface: tr.t.inetIfindex, Flags: link.XDPDriverMode})
		} else {
			l, err = link.AttachTCX(link.TCXOptions{Program: tr.objs.BenchCountTc, Interface: tr.t.inetIfindex,
				Attach: ebpf.AttachTCXIngress, Anchor: link.Head()})
		}
		if err != nil {
			return fmt.Errorf("attach counter to %s in %s: %w", hostDev, tr.t.inet.Name, err)
		}
		tr.countLink = l
		return nil
	})
}

func (tr *traffic) detachCounter() {
	if tr.countLink != nil {
		_ = tr.countLink.Close()
		tr.countLink = nil
	}
}

// send runs the generator in priv until n frames are sent or d has passed
// (whichever first; n 0 means no count limit), perCall frames per
// BPF_PROG_RUN call. It returns the frames sent and the time taken.
func (tr *traffic) send(ctx context.Context, n uint64, d time.Duration, perCall uint32) (sent uint64, took time.Duration, err error) {
	opts := &ebpf.RunOptions{
		Data:    tr.frame,
		Flags:   unix.BPF_F_TEST_XDP_LIVE_FRAMES,
		Context: xdpMd{DataEnd: uint32(len(tr.frame)), IngressIfindex: uint32(tr.t.privIfindex)},
	}
	// The ingress ifindex is looked up in the calling thread's namespace.
	err = tr.t.priv.Do(func() error {
		start := time.Now()
		defer func() { took = time.Since(start) }()
		// Bounded: at most maxCalls calls, each of a bounded size.
		maxCalls := 1 << 20
		var rate float64 // frames/s of the last call, measuring
		for i := 0; i < maxCalls; i++ {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if d > 0 && time.Since(start) >= d {
				return nil
			}
			r := perCall
			if perCall == genCall && rate > 0 {
				r = uint32(min(max(rate*genChunk.Seconds(), genCall), maxCall))
			}
			if n > 0 {
				if sent >= n {
					return nil
				}
				r = uint32(min(uint64(perCall), n-sent))
			}
			opts.Repeat = r
			callStart := time.Now()
			if _, err := tr.gen.Run(opts); err != nil {
				return fmt.Errorf("generator BPF_PROG_RUN (live frames, %d frames): %w", r, err)
			}
			rate = float64(r) / time.Since(callStart).Seconds()
			sent += uint64(r)
		}
		return fmt.Errorf("generator: %d calls without reaching the end", maxCalls)
	})
	return sent, took, err
}

// received sums the counter's per-CPU slots: datagrams that arrived
// translated to the NAT's address, and those that arrived untranslated.
func (tr *traffic) received() (translated, untranslated uint64, err error) {
	for k, dst := range []*uint64{&translated, &untranslated} {
		var per []uint64
		if err := tr.objs.CntPackets.Lookup(uint32(k), &per); err != nil {
			return 0, 0, fmt.Errorf("read arrival counter %d: %w", k, err)
		}
		for _, v := range per {
			*dst += v
		}
	}
	return translated, untranslated, nil
}

// resetFlow makes the generator start again at flow 0.
func (tr *traffic) resetFlow() error {
	if err := tr.objs.GenNext.Set(uint32(0)); err != nil {
		return fmt.Errorf("reset generator: %w", err)
	}
	return nil
}

// sendReplies sends one datagram from inet back to every flow's translated
// address (SNAT keeps the source port when it is free, as it is here after
// a conntrack flush), so conntrack sees both directions.
func (tr *traffic) sendReplies(ctx context.Context) error {
	payload := make([]byte, genFrameLen-42)
	ports, _ := genLayout(tr.flows)
	for i := 0; i < tr.flows; i++ {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		to := netip.AddrPortFrom(natOut, uint16(genSportBase+i%ports))
		if _, err := tr.reply[i/ports].WriteToUDPAddrPort(payload, to); err != nil {
			return fmt.Errorf("reply to %s: %w", to, err)
		}
		if i%256 == 255 {
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}

// warmUp makes every flow an ASSURED UDP stream in the NAT's conntrack:
// one datagram per flow, a reply per flow, and more than two seconds later
// (the kernel's UDP stream delay) another datagram per flow. Then, if
// offloaded is not nil, it waits until that many flows are offloaded.
// afterPackets is the fast path's offload threshold (both directions
// counted), for which every mode gets as many datagrams per flow.
func (tr *traffic) warmUp(ctx context.Context, offloaded func() (int, error), afterPackets int) error {
	tr.shortfall = ""
	if err := tr.resetFlow(); err != nil {
		return err
	}
	before, _, err := tr.received()
	if err != nil {
		return err
	}
	start := time.Now()
	if _, _, err := tr.send(ctx, uint64(tr.flows), 0, paceCall); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	time.Sleep(20 * time.Millisecond)
	after, _, err := tr.received()
	if err != nil {
		return err
	}
	if got := after - before; got < uint64(tr.flows) {
		tr.log.Warn("warm-up: not every first datagram arrived", "sent", tr.flows, "arrived", got)
	}
	tr.log.Info("warm-up: first datagrams sent", "took", time.Since(start))
	if err := tr.sendReplies(ctx); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	tr.log.Info("warm-up: replies sent", "took", time.Since(start))
	if wait := 2200*time.Millisecond - time.Since(start); wait > 0 {
		if err := sleepCtx(ctx, wait); err != nil {
			return err
		}
	}
	// Enough datagrams per flow for the fast path's offload threshold
	// (both directions counted; three are in already), sent the same way
	// in every mode.
	for i := 0; i < afterPackets-2; i++ {
		if _, _, err := tr.send(ctx, uint64(tr.flows), 0, paceCall); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	tr.log.Info("warm-up: datagrams sent", "took", time.Since(start))
	if offloaded == nil {
		return nil
	}
	var n int
	// The engine offloads some 100 k connections a second here.
	wait := 15*time.Second + time.Duration(tr.flows/50)*time.Millisecond
	deadline := time.Now().Add(wait)
	want := int(math.Ceil(tr.minOffloaded * float64(tr.flows)))
	for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
		if n, err = offloaded(); err != nil {
			return err
		}
		if n >= want {
			return nil
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	err = fmt.Errorf("warm-up: %d of %d flows offloaded after %s (want %d)", n, tr.flows, wait, want)
	if tr.minOffloaded < 1 {
		tr.shortfall = err.Error()
		return nil
	}
	return err
}

// ppsSample is one packet-rate measurement.
type ppsSample struct {
	sent, arrived, untranslated uint64
	took                        time.Duration
}

func (s ppsSample) pps() float64     { return float64(s.arrived) / s.took.Seconds() }
func (s ppsSample) offered() float64 { return float64(s.sent) / s.took.Seconds() }

// measure runs the generator flat out for d and counts arrivals.
func (tr *traffic) measure(ctx context.Context, d time.Duration) (ppsSample, error) {
	ok0, bad0, err := tr.received()
	if err != nil {
		return ppsSample{}, err
	}
	sent, took, err := tr.send(ctx, 0, d, genCall)
	if err != nil {
		return ppsSample{}, err
	}
	// Frames still in the veth rings are a few hundred at most.
	time.Sleep(20 * time.Millisecond)
	ok1, bad1, err := tr.received()
	if err != nil {
		return ppsSample{}, err
	}
	return ppsSample{sent: sent, arrived: ok1 - ok0, untranslated: bad1 - bad0, took: took}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// setVars sets the named read-only globals of a spec.
func setVars(spec *ebpf.CollectionSpec, vars map[string]any) error {
	for name, v := range vars {
		vs, ok := spec.Variables[name]
		if !ok {
			return fmt.Errorf("variable %q not in the BPF object", name)
		}
		if err := vs.Set(v); err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return nil
}

// be16 is v as it lies in a packet (network byte order), as a byte array
// so that the loader copies it verbatim.
func be16(v uint16) [2]byte {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return b
}

func mac6(m net.HardwareAddr) [6]byte {
	var b [6]byte
	copy(b[:], m)
	return b
}

// ipv4Checksum is the header checksum of an option-less IPv4 header with
// id 0 and no fragmentation, in host order (write it big-endian).
func ipv4Checksum(src, dst netip.Addr, totLen uint16, ttl, proto uint8) uint16 {
	var h [20]byte
	h[0] = 0x45
	binary.BigEndian.PutUint16(h[2:], totLen)
	h[8], h[9] = ttl, proto
	s, d := src.As4(), dst.As4()
	copy(h[12:], s[:])
	copy(h[16:], d[:])
	return ^onesSum(h[:])
}

// onesSum is the folded one's-complement sum of b's 16-bit words.
func onesSum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hanat/hanat/bpf"
	"github.com/hanat/hanat/datapath"
	"github.com/hanat/hanat/fastpath"
	"github.com/hanat/hanat/internal/netns"
)

// Options configure Run. Zero values mean the defaults of a full run.
type Options struct {
	Modes []Mode // default AllModes, in that order

	// Rounds: every round sets up each mode in turn, warms its flows up
	// and takes one sample of each figure; the report has the medians. So
	// background load drifting during a run hits all modes alike.
	Rounds int // default 3

	Flows       int           // UDP flows of the packet-rate test; default 1024
	PPSDuration time.Duration // one packet-rate sample; default 2s

	SkipTCP       bool          // skip iperf3 and the connection rate
	SkipSingleENI bool          // skip the packet-rate test in the single-ENI shape
	SkipTwoENI    bool          // skip the two-ENI rounds (packet rate, TCP, bare forwarders)
	TCPDuration   time.Duration // one iperf3 sample (after a 1 s warm-up iperf3 omits when >= 2s); default 3s
	ConnDuration  time.Duration // one short-connection sample; default 2s
	ConnWorkers   int           // concurrent clients; default 4

	CostRounds int   // BPF_PROG_TEST_RUN rounds per cost figure (median); default 7
	ScaleFlows []int // flow-map sizes of the scale test; default 1k, 100k, 1M
	// ProfileDir: when set, every packet-rate sample at scale is
	// profiled (profile.go) into files there, and its BPF programs' run
	// times are notes.
	ProfileDir string
	// ScalePPSFlows: concurrent flows of the packet rate at scale
	// (scale.go); default 1k, 100k, 1M; empty (not nil) leaves it out.
	ScalePPSFlows []int

	Iperf3 string // iperf3 binary; default "iperf3"

	// The /metrics answer time with many flows in conntrack (metrics.go).
	SkipMetrics    bool   // leave it out
	Hanatd         string // hanatd binary; default hanatd next to this executable, else $PATH
	MetricsFlows   []int  // conntrack sizes; default 10k and 1M
	MetricsScrapes int    // requests per size (median and max reported); default 9

	// Issue 14's state sync (sync.go, storm.go).
	SkipSync      bool          // leave it out
	SyncFlows     int           // flows of the full sync and the inject; default 250k
	StormRate     int           // new connections/s the storm offers; default 10k
	StormDuration time.Duration // one storm sample; default 3s
	StormRounds   int           // samples of each storm variant (median); default 5
	StormWorkers  int           // concurrent storm clients; default 32

	// Issue 16's GWLB shape (gwlb.go): a fleet member against plain NAT
	// on one ENI.
	SkipGWLB   bool // leave it out
	GWLBRounds int  // rounds of its samples (medians); default 2
}

func (o *Options) defaults() {
	if len(o.Modes) == 0 {
		o.Modes = AllModes
	}
	if o.Rounds == 0 {
		o.Rounds = 3
	}
	if o.Flows == 0 {
		o.Flows = 1024
	}
	if o.PPSDuration == 0 {
		o.PPSDuration = 2 * time.Second
	}
	if o.TCPDuration == 0 {
		o.TCPDuration = 3 * time.Second
	}
	if o.ConnDuration == 0 {
		o.ConnDuration = 2 * time.Second
	}
	if o.ConnWorkers == 0 {
		o.ConnWorkers = 4
	}
	if o.CostRounds == 0 {
		o.CostRounds = 7
	}
	if o.ScaleFlows == nil {
		o.ScaleFlows = []int{1000, 100_000, 1_000_000}
	}
	if o.ScalePPSFlows == nil {
		o.ScalePPSFlows = []int{1000, 100_000, 1_000_000}
	}
	if o.Iperf3 == "" {
		o.Iperf3 = "iperf3"
	}
	if len(o.MetricsFlows) == 0 {
		o.MetricsFlows = []int{10_000, 1_000_000}
	}
	if o.MetricsScrapes <= 0 {
		o.MetricsScrapes = 9
	}
	if o.SyncFlows <= 0 {
		o.SyncFlows = 250_000
	}
	if o.StormRate <= 0 {
		o.StormRate = 10_000
	}
	if o.StormDuration <= 0 {
		o.StormDuration = 3 * time.Second
	}
	if o.StormRounds <= 0 {
		o.StormRounds = 5
	}
	if o.StormWorkers <= 0 {
		o.StormWorkers = 32
	}
	if o.GWLBRounds <= 0 {
		o.GWLBRounds = 2
	}
}

// Measurement names in the report.
const (
	MUDPPPS       = "udp_64b_pps"
	MFastShare    = "udp_fastpath_hit_share"
	MUDPPPS1      = "udp_64b_pps_single_eni"
	MCeiling      = "udp_64b_pps_bare_xdp_forwarder"
	MCeiling1     = "udp_64b_pps_bare_xdp_forwarder_single_eni"
	MCeilingSKB   = "udp_64b_pps_bare_xdp_forwarder_skb"
	MCeilingSKB1  = "udp_64b_pps_bare_xdp_forwarder_skb_single_eni"
	MCeilingTC    = "udp_64b_pps_bare_tc_forwarder"
	MCeilingTC1   = "udp_64b_pps_bare_tc_forwarder_single_eni"
	MCeilingXC    = "udp_64b_pps_bare_xdp_forwarder_xdp_counter"
	MCeilingSKBXC = "udp_64b_pps_bare_xdp_forwarder_skb_xdp_counter"
	MFastShare1   = "udp_fastpath_hit_share_single_eni"
	MTCPBulk      = "tcp_bulk_throughput"
	MTCPRetrans   = "tcp_bulk_retransmits"
	MTCPBulkXDP   = "tcp_bulk_xdp_forwarded"
	MConnRate     = "tcp_new_conn_per_s"
	MProgHit      = "prog_cost_nat_hit"
	MProgFloor    = "prog_cost_xdp_tx_floor"
	MProgLookup   = "prog_cost_floor_plus_flow_lookup"
	MProgDriver   = "prog_cost_driver_empty"
	MProgAbove    = "prog_cost_nat_above_floor"
	MScalePrefix  = "fastpath_cost_flows_"
	MMemPerFlow   = "flow_map_bytes_per_flow"
	MMemPerConn   = "flow_map_bytes_per_connection"
	scaleRawInfix = "_raw"
	// scaleLookupInfix: the kernel's flow lookup alone (bench_lookup less
	// the floor) at that map size.
	scaleLookupInfix = "_lookup_only"
)

// Run builds the topology, measures every mode and the program costs, and
// tears everything down (also on error or cancellation). Failures of one
// mode or measurement are recorded in the report's notes and leave its
// figures empty; Run's error is for what stops the whole benchmark.
func Run(ctx context.Context, log *slog.Logger, opts Options) (*Report, error) {
	opts.defaults()
	if os.Geteuid() != 0 {
		return nil, errors.New("bench: needs root (network namespaces, XDP, nftables)")
	}
	tools := []string{"ethtool", "conntrack", "sysctl"}
	if !opts.SkipTCP {
		tools = append(tools, opts.Iperf3)
	}
	if slices.Contains(opts.Modes, ModeIptablesLegacy) {
		tools = append(tools, "iptables-legacy")
	}
	if err := lookTools(tools...); err != nil {
		return nil, err
	}
	rep := newReport()

	dir, bpffs, cleanup, err := scratchDirs("hanat-bench-")
	if err != nil {
		return nil, err
	}
	defer cleanup()

	// Every mode of every round measures in a namespace set of its own
	// (lab): see newLab.
	if !opts.SkipTwoENI {
		if err := runRounds(ctx, log, false, opts, rep, bpffs, dir, twoENINames); err != nil {
			return rep, err
		}
	}
	if !opts.SkipSingleENI {
		udpOnly := opts
		udpOnly.SkipTCP = true
		if err := runRounds(ctx, log.With("shape", "single-eni"), true, udpOnly, rep, bpffs, dir, singleENINames); err != nil {
			if ctx.Err() != nil {
				return rep, err
			}
			log.Error("bench single-ENI packet rate failed", "err", err)
			rep.note(fmt.Sprintf("single-ENI packet rate: %v", err))
		}
	}
	if !opts.SkipGWLB && ctx.Err() == nil {
		if err := runGWLB(ctx, log.With("shape", "gwlb"), opts, rep, bpffs, dir); err != nil {
			log.Error("bench GWLB shape failed", "err", err)
			rep.note(fmt.Sprintf("GWLB shape: %v", err))
		}
	}
	if ctx.Err() == nil {
		if err := runScalePPS(ctx, log, opts, rep, bpffs, dir); err != nil {
			log.Error("bench packet rate at scale failed", "err", err)
			rep.note(fmt.Sprintf("packet rate at scale: %v", err))
		}
	}
	if ctx.Err() == nil {
		if err := probeAuto(ctx, log, opts, rep, bpffs, dir); err != nil {
			log.Error("bench: auto's backends", "err", err)
			rep.note(fmt.Sprintf("auto's backends: %v", err))
		}
	}

	// Program costs: no traffic leaves (BPF_PROG_TEST_RUN without live
	// frames); run on a thread in a namespace of their own all the same,
	// whose loopback is the ingress interface.
	if err := inScratchNS("hnt-benchc-", func() error { return runCosts(log, opts, rep) }); err != nil {
		log.Error("bench program costs failed", "err", err)
		rep.note(fmt.Sprintf("program costs: %v", err))
	}
	if !opts.SkipMetrics && ctx.Err() == nil {
		if err := runMetrics(ctx, log, opts, rep); err != nil {
			log.Error("bench /metrics answer time failed", "err", err)
			rep.note(fmt.Sprintf("/metrics answer time: %v", err))
		}
	}
	if !opts.SkipSync && ctx.Err() == nil {
		if err := runSync(ctx, log, opts, rep, bpffs, dir); err != nil {
			log.Error("bench state sync failed", "err", err)
			rep.note(fmt.Sprintf("state sync: %v", err))
		}
	}
	return rep, ctx.Err()
}

// lookTools fails unless every tool is on $PATH.
func lookTools(tools ...string) error {
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("bench: %s not found: %w", tool, err)
		}
	}
	return nil
}

// scratchDirs makes a temporary directory named with prefix and mounts a
// private bpffs in it for the fast path's pins (the host's /sys/fs/bpf is
// left alone); cleanup unmounts it and removes the directory.
func scratchDirs(prefix string) (dir, bpffs string, cleanup func(), err error) {
	dir, err = os.MkdirTemp("", prefix)
	if err != nil {
		return "", "", nil, fmt.Errorf("bench: %w", err)
	}
	bpffs = filepath.Join(dir, "bpffs")
	if err := os.Mkdir(bpffs, 0o700); err != nil {
		os.RemoveAll(dir)
		return "", "", nil, fmt.Errorf("bench: %w", err)
	}
	if err := unix.Mount("bpf", bpffs, "bpf", 0, "mode=0700"); err != nil {
		os.RemoveAll(dir)
		return "", "", nil, fmt.Errorf("bench: mount bpffs on %s: %w", bpffs, err)
	}
	return dir, bpffs, func() {
		_ = unix.Unmount(bpffs, unix.MNT_DETACH)
		os.RemoveAll(dir)
	}, nil
}

// inScratchNS runs fn on a thread in a new, empty network namespace,
// deleted afterwards.
func inScratchNS(prefix string, fn func() error) error {
	ns, err := netns.Create(netns.UniqueName(prefix))
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return errors.Join(ns.Do(fn), ns.Close())
}

// shapeNames are the report's names of a shape's packet-rate figures.
type shapeNames struct {
	pps, share string
	// The bare forwarders (see forwarder), by kind.
	fwd [fwdKinds]string
}

var (
	twoENINames    = shapeNames{MUDPPPS, MFastShare, [fwdKinds]string{MCeiling, MCeilingSKB, MCeilingTC, MCeilingXC, MCeilingSKBXC}}
	singleENINames = shapeNames{MUDPPPS1, MFastShare1, [fwdKinds]string{MCeiling1, MCeilingSKB1, MCeilingTC1}} // the shape counts with XDP: no _xdp_counter figures
)

// runRounds measures every mode in the shape, rounds interleaved (each
// round sets every mode up in turn and takes one sample of each figure,
// then one of each bare forwarder), and puts the medians in the report
// under the shape's names. Each mode's sample, and each round's bare
// forwarders, are taken in a lab of their own, removed before the next
// is built. A failed mode is a note; only cancellation stops it.
func runRounds(ctx context.Context, log *slog.Logger, singleENI bool, opts Options, rep *Report, bpffs, dir string, names shapeNames) error {
	shape := ""
	if singleENI {
		shape = "single-ENI "
	}
	samples := map[Mode][]modeSample{}
	var ceilings [fwdKinds][]float64 // bare forwarders, packets/s
	var tcpCeilings []float64        // TCP bulk through a bare tc forwarder, Gbit/s
	for r := 0; r < opts.Rounds; r++ {
		for _, m := range opts.Modes {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			mlog := log.With("mode", m, "round", r+1)
			s, err := inLab(ctx, mlog, opts, singleENI, func(l *lab) (modeSample, error) {
				return runMode(ctx, mlog, l, m, opts, bpffs, dir)
			})
			for _, n := range s.notes {
				rep.note(fmt.Sprintf("%s%s round %d: %s", shape, m, r+1, n))
			}
			if err != nil {
				log.Error("bench mode failed", "mode", m, "round", r+1, "err", err)
				rep.note(fmt.Sprintf("%s%s round %d: %v", shape, m, r+1, err))
				continue
			}
			samples[m] = append(samples[m], s)
		}
		// The bare forwarders (a failure is a note: the modes' figures
		// stand alone).
		if ctx.Err() != nil {
			return ctx.Err()
		}
		_, err := inLab(ctx, log, opts, singleENI, func(l *lab) (modeSample, error) {
			for k := range forwarder(fwdKinds) {
				if singleENI && (k == fwdXDPXC || k == fwdXDPSKBXC) {
					continue // the shape's counter is the native XDP one already
				}
				pps, err := l.tr.ceiling(ctx, opts.PPSDuration, k)
				if err != nil {
					rep.note(fmt.Sprintf("%s%s round %d: %v", shape, k, r+1, err))
					continue
				}
				log.Info("bench: udp, "+k.String(), "pps", int(pps), "round", r+1)
				ceilings[k] = append(ceilings[k], pps)
			}
			if l.iperf == nil {
				return modeSample{}, nil
			}
			gbps, err := tcpCeiling(ctx, l.t, opts.Iperf3, opts.TCPDuration)
			if err != nil {
				rep.note(fmt.Sprintf("%sTCP bulk through a bare tc forwarder round %d: %v", shape, r+1, err))
				return modeSample{}, nil
			}
			log.Info("bench: iperf3 through a bare tc forwarder", "gbps", gbps, "round", r+1)
			tcpCeilings = append(tcpCeilings, gbps)
			return modeSample{}, nil
		})
		if err != nil {
			rep.note(fmt.Sprintf("%sbare forwarders round %d: %v", shape, r+1, err))
		}
	}
	for _, m := range opts.Modes {
		summarize(rep, m, samples[m], names.pps, names.share)
	}
	if len(tcpCeilings) > 0 {
		rep.set(MTCPBulkBareTC, ModeFastpathTC, medianOf(tcpCeilings))
	}
	for k, vs := range ceilings {
		if len(vs) > 0 {
			// In the column of the backend they bound.
			rep.set(names.fwd[k], forwarder(k).mode(), medianOf(vs))
		}
	}
	return nil
}

// inLab runs fn in a new lab of the shape and removes the lab afterwards.
func inLab(ctx context.Context, log *slog.Logger, opts Options, singleENI bool, fn func(*lab) (modeSample, error)) (modeSample, error) {
	l, err := newLab(ctx, log, opts, singleENI)
	if err != nil {
		return modeSample{}, err
	}
	log.Debug("bench lab up", "priv", l.t.priv.Name, "nat", l.t.nat.Name, "inet", l.t.inet.Name)
	s, err := fn(l)
	if cerr := l.close(); cerr != nil {
		log.Error("bench: lab cleanup", "err", cerr)
		err = errors.Join(err, cerr)
	}
	return s, err
}

// medianOf returns the median of vs (the upper one of an even count);
// vs is sorted in place.
func medianOf(vs []float64) float64 {
	slices.Sort(vs)
	return vs[len(vs)/2]
}

// modeSample is one round's figures of one mode; NaN where not measured.
type modeSample struct {
	pps, fastShare    float64
	bulkGbps, retrans float64
	bulkXDPGbps       float64 // what the XDP program forwarded itself during iperf3
	connPerS          float64
	notes             []string
}

// runMode configures one mode, takes one sample of each figure and tears
// the mode down.
func runMode(ctx context.Context, log *slog.Logger, l *lab, m Mode, opts Options, bpffs, dir string) (s modeSample, err error) {
	return runModeAs(ctx, log, l, m, modeTweaks{}, opts, bpffs, dir)
}

// runModeAs is runMode with the mode's setup changed by tw.
func runModeAs(ctx context.Context, log *slog.Logger, l *lab, m Mode, tw modeTweaks, opts Options, bpffs, dir string) (s modeSample, err error) {
	t, tr := l.t, l.tr
	nan := math.NaN()
	s = modeSample{pps: nan, fastShare: nan, bulkGbps: nan, bulkXDPGbps: nan, retrans: nan, connPerS: nan}
	log.Info("bench: configuring")
	nm, err := setupModeAs(ctx, log, t, m, tw, bpffs, dir)
	if err != nil {
		return s, err
	}
	defer func() {
		if terr := nm.teardown(context.WithoutCancel(ctx)); terr != nil {
			err = errors.Join(err, fmt.Errorf("teardown: %w", terr))
		}
	}()
	// Resolve the neighbours both ways before any flow is offloaded.
	if err := t.resolveNeighbours(ctx); err != nil {
		return s, err
	}

	var offloaded func() (int, error)
	if nm.fast != nil {
		offloaded = nm.offloaded
	}
	if err := tr.attachCounter(); err != nil {
		return s, err
	}
	defer tr.detachCounter()
	log.Info("bench: warming up flows", "flows", opts.Flows)
	after := datapath.DefaultOffloadAfterPackets
	if tw.offloadAfter > 0 {
		after = tw.offloadAfter
	}
	if err := tr.warmUp(ctx, offloaded, after); err != nil {
		return s, err
	}
	if tr.shortfall != "" {
		s.notes = append(s.notes, tr.shortfall)
	}
	// The mode's namespaces are its own: no other mode's nat table.
	if err := checkNoLegacyNAT(t, m); err != nil {
		return s, err
	}
	var before bpf.Counters
	if nm.fast != nil {
		if before, err = nm.counters(); err != nil {
			return s, err
		}
	}
	var prof *profile
	if tw.profile != "" {
		if prof, err = startProfile(log, opts.ProfileDir, tw.profile, opts.PPSDuration); err != nil {
			return s, err
		}
	}
	ps, err := tr.measure(ctx, opts.PPSDuration)
	if prof != nil {
		lines, perr := prof.stop()
		for _, l := range lines {
			s.notes = append(s.notes, "profile: "+l)
		}
		err = errors.Join(err, perr)
	}
	if err != nil {
		return s, err
	}
	s.pps = ps.pps()
	// offered == pps: the chain runs in lockstep on the generator's CPU.
	log.Info("bench: udp", "pps", int(s.pps), "offered_pps", int(ps.offered()))
	if ps.untranslated > 0 {
		s.notes = append(s.notes, fmt.Sprintf("%d datagrams arrived untranslated", ps.untranslated))
	}
	if nm.fast != nil && ps.arrived > 0 {
		after, err := nm.counters()
		if err != nil {
			return s, err
		}
		s.fastShare = 100 * float64(after.Hits-before.Hits) / float64(ps.arrived)
		if e := nm.fast.Status().Engine; e != nil {
			// What the offload engine's periodic sweep costs at this size.
			log.Info("bench: offload engine sweep", "flows", tr.flows, "sweeps", e.Sweeps, "last_sweep", time.Duration(e.SweepMicros)*time.Microsecond)
		}
	}

	if opts.SkipTCP {
		return s, nil
	}
	tr.detachCounter()
	if nm.fast != nil {
		if before, err = nm.counters(); err != nil {
			return s, err
		}
	}
	tcpStart := time.Now()
	bps, retrans, err := tcpBulk(ctx, t, opts.Iperf3, opts.TCPDuration)
	tcpTook := time.Since(tcpStart)
	if err != nil {
		s.notes = append(s.notes, fmt.Sprintf("tcp bulk: %v", err))
	} else {
		s.bulkGbps, s.retrans = bps/1e9, float64(retrans)
		log.Info("bench: iperf3", "gbps", s.bulkGbps, "retransmits", retrans)
		if nm.fast != nil {
			// What the XDP program itself forwarded of the stream (IPv4
			// bytes, over the whole iperf3 run incl. its omitted first
			// second and the connection setup).
			after, err := nm.counters()
			if err != nil {
				return s, err
			}
			out := after.OutBytes - before.OutBytes
			s.bulkXDPGbps = float64(out) * 8 / tcpTook.Seconds() / 1e9
			log.Info("bench: iperf3 through the XDP program", "outbound_mb", float64(out)/1e6,
				"gbps", s.bulkXDPGbps, "passed", after.Passed()-before.Passed())
		}
	}
	var engineBefore fastpath.EngineStats
	if nm.fast != nil && nm.fast.Status().Engine != nil {
		engineBefore = *nm.fast.Status().Engine
	}
	cr, err := connRate(ctx, t, connLoad{workers: opts.ConnWorkers, d: opts.ConnDuration})
	if st := nm.fast; st != nil && st.Status().Engine != nil {
		// What the short connections cost the offload engine.
		e := *st.Status().Engine
		log.Info("bench: offload engine during the short connections", "events", e.Events-engineBefore.Events,
			"skipped", e.EventsSkipped-engineBefore.EventsSkipped, "offloads", e.Offloads-engineBefore.Offloads)
	}
	if err != nil {
		s.notes = append(s.notes, fmt.Sprintf("connection rate: %v", err))
	} else {
		s.connPerS = cr.perSecond()
		log.Info("bench: short connections", "per_s", int(s.connPerS), "failed", cr.Failed)
		if cr.Failed > 0 {
			s.notes = append(s.notes, fmt.Sprintf("%d of %d short connections failed", cr.Failed, cr.OK+cr.Failed))
		}
	}
	return s, nil
}

// summarize puts the medians of a mode's samples in the report, and the
// spread of the packet rate in a note.
func summarize(rep *Report, m Mode, ss []modeSample, ppsName, shareName string) {
	fields := []struct {
		name string
		get  func(modeSample) float64
	}{
		{ppsName, func(s modeSample) float64 { return s.pps }},
		{shareName, func(s modeSample) float64 { return s.fastShare }},
		{MTCPBulk, func(s modeSample) float64 { return s.bulkGbps }},
		{MTCPBulkXDP, func(s modeSample) float64 { return s.bulkXDPGbps }},
		{MTCPRetrans, func(s modeSample) float64 { return s.retrans }},
		{MConnRate, func(s modeSample) float64 { return s.connPerS }},
	}
	for _, f := range fields {
		var vs []float64
		for _, s := range ss {
			if v := f.get(s); !math.IsNaN(v) {
				vs = append(vs, v)
			}
		}
		if len(vs) == 0 {
			continue
		}
		rep.set(f.name, m, medianOf(vs))
		if len(vs) > 1 && (f.name == ppsName || f.name == MTCPBulk || f.name == MConnRate) {
			rep.note(fmt.Sprintf("%s %s: %d samples from %s to %s", m, f.name, len(vs), fmtVal(&vs[0]), fmtVal(&vs[len(vs)-1])))
		}
	}
}

// runCosts measures the NAT program's cost next to the floor program and
// with many flows in the map (fast path only).
func runCosts(log *slog.Logger, opts Options, rep *Report) error {
	floorProg, err := bpf.LoadFloorProgram()
	if err != nil {
		return fmt.Errorf("program costs: %w", err)
	}
	defer floorProg.Close()
	log.Info("bench: program cost, one flow (BPF_PROG_TEST_RUN)")
	one, err := measureSpray(1, 1, opts.CostRounds, floorProg)
	if err != nil {
		return err
	}
	if one.other > 0 {
		return fmt.Errorf("program cost: %d of %d packets were not hits", one.other, one.other+one.hits)
	}
	rep.set(MProgHit, ModeFastpath, ns(one.raw))
	rep.set(MProgFloor, ModeFastpath, ns(one.floor))
	rep.set(MProgLookup, ModeFastpath, ns(one.lookup))
	rep.set(MProgDriver, ModeFastpath, ns(one.driver))
	rep.set(MProgAbove, ModeFastpath, ns(one.net()))
	log.Info("bench: program cost", "nat_ns", ns(one.raw), "floor_ns", ns(one.floor), "floor_plus_lookup_ns", ns(one.lookup))

	for _, n := range opts.ScaleFlows {
		log.Info("bench: fast path with many flows", "flows", n)
		sc, err := measureSpray(n, 1, opts.CostRounds, floorProg)
		if err != nil {
			rep.note(err.Error())
			continue
		}
		name := scaleName(n)
		rep.set(name, ModeFastpath, ns(sc.net()))
		rep.set(name+scaleRawInfix, ModeFastpath, ns(sc.raw))
		rep.set(name+scaleLookupInfix, ModeFastpath, ns(sc.lookup-sc.floor))
		if sc.other > 0 {
			rep.note(fmt.Sprintf("%d flows: %d of %d packets were not hits (LRU evictions?)", n, sc.other, sc.other+sc.hits))
		}
		if n == slices.Max(opts.ScaleFlows) {
			// Context for the memory-bound case: the same flows, each
			// sending a burst of packets in a row as TCP windows and
			// NAPI batches do.
			b, err := measureSpray(n, scaleBurst, opts.CostRounds, floorProg)
			if err != nil {
				rep.note(err.Error())
			} else {
				rep.set(fmt.Sprintf("%s_burst%d", name, scaleBurst), ModeFastpath, ns(b.net()))
			}
			rep.set(MMemPerFlow, ModeFastpath, sc.bytesPerEntry())
			rep.set(MMemPerConn, ModeFastpath, 2*sc.bytesPerEntry())
			rep.note(fmt.Sprintf("flow map of %d entries: %d bytes of kernel memory (fdinfo memlock); a connection is two entries",
				sc.maxEntries, sc.memlock))
		}
		log.Info("bench: scale", "flows", n, "net_ns", ns(sc.net()), "raw_ns", ns(sc.raw), "floor_ns", ns(sc.floor), "lookup_only_ns", ns(sc.lookup-sc.floor))
	}
	return nil
}

// scaleBurst is the packets per flow in a row of the burst figure.
const scaleBurst = 8

func scaleName(n int) string { return MScalePrefix + humanCount(n) }

func humanCount(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

func ns(d time.Duration) float64 { return float64(d.Nanoseconds()) }

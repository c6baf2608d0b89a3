package bench

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strings"
)

// MScalePPSPrefix names the packet rate at a number of concurrent flows:
// udp_64b_pps_flows_1k, ..._100k, ..._1M, one per backend's column.
const (
	MScalePPSPrefix = "udp_64b_pps_flows_"
	scaleShareInfix = "_hit_share"
	// scaleOffloadAfter: the scale test offloads a flow after this many
	// packets (both directions), not hanatd's 16: warming 1 M flows up
	// with 16 datagrams each, paced so that none is lost, would take
	// half a minute per mode. The figure is the steady state with every
	// flow in the tables, which the threshold does not change.
	scaleOffloadAfter = 4
	// scaleMinOffloaded: the share of a scale run's flows the warm-up
	// waits to see offloaded; less after its wait is a note (the engine's
	// event socket can overflow at 100 k new flows and resync; on a loaded
	// machine a few of 40 k warm-up datagrams are lost, so those flows are
	// never ASSURED: CI's smoke test once saw 99.1 %), and the hit share
	// says what the fast path carried.
	scaleMinOffloaded = 0.99
)

// scaleModes are the backends the scale test compares.
var scaleModes = []Mode{ModeNftables, ModeFastpath, ModeFastpathTC}

func scalePPSName(n int) string { return MScalePPSPrefix + humanCount(n) }

// runScalePPS measures the two-ENI packet rate with each of
// opts.ScalePPSFlows concurrent flows, through the slow path (the kernel's
// conntrack holding them all: the namespace's nf_conntrack_max, and the
// host's and the table's hash size, which are global, raised for the run
// and put back) and each fast-path backend (a flow map with room for
// them), one sample each, each in a lab of its own.
func runScalePPS(ctx context.Context, log *slog.Logger, opts Options, rep *Report, bpffs, dir string) error {
	var modes []Mode
	for _, m := range scaleModes {
		if slices.Contains(opts.Modes, m) {
			modes = append(modes, m)
		}
	}
	if len(opts.ScalePPSFlows) == 0 || len(modes) == 0 {
		return nil
	}
	biggest := slices.Max(opts.ScalePPSFlows)
	ctMax := biggest + biggest/8 + 1024
	restoreMax, err := raiseConntrackMax(log, ctMax)
	if err != nil {
		return err
	}
	defer restoreMax()
	// As many hash buckets as entries (the kernel's own default ratio).
	buckets := 1 << int(math.Ceil(math.Log2(float64(biggest))))
	restoreHash, err := raiseHostSetting(log, "/sys/module/nf_conntrack/parameters/hashsize", "conntrack hash size",
		"a table of "+humanCount(biggest)+" flows in as many buckets", buckets)
	if err != nil {
		return err
	}
	defer restoreHash()
	var fails []string
	for _, n := range opts.ScalePPSFlows {
		o := opts
		o.Flows, o.SkipTCP = n, true
		tw := modeTweaks{offloadAfter: scaleOffloadAfter, conntrackMax: ctMax}
		// Room for every connection (two entries each) and some, so
		// that the LRU map does not evict them.
		tw.maxFlows = uint32(max(4*n, 65_536))
		for _, m := range modes {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			mlog := log.With("mode", m, "flows", n)
			if opts.ProfileDir != "" {
				tw.profile = fmt.Sprintf("%s-%s", m, humanCount(n))
			}
			s, err := inLab(ctx, mlog, o, false, func(l *lab) (modeSample, error) {
				l.tr.minOffloaded = scaleMinOffloaded
				return runModeAs(ctx, mlog, l, m, tw, o, bpffs, dir)
			})
			for _, note := range s.notes {
				rep.note(fmt.Sprintf("scale %s %s flows: %s", m, humanCount(n), note))
			}
			if err != nil {
				mlog.Error("bench scale failed", "err", err)
				fails = append(fails, fmt.Sprintf("%s %s flows: %v", m, humanCount(n), err))
				continue
			}
			mlog.Info("bench: scale", "pps", int(s.pps), "hit_share", s.fastShare)
			rep.set(scalePPSName(n), m, s.pps)
			if !math.IsNaN(s.fastShare) {
				rep.set(scalePPSName(n)+scaleShareInfix, m, s.fastShare)
			}
		}
		if err := scaleLookupBounds(ctx, log, o, rep, modes, tw.maxFlows); err != nil {
			fails = append(fails, fmt.Sprintf("bare forwarders with the lookup at %s flows: %v", humanCount(n), err))
		}
	}
	if len(fails) > 0 {
		return fmt.Errorf("%s", strings.Join(fails, "; "))
	}
	return nil
}

// scaleLookupBounds measures, at opts.Flows concurrent flows, each
// fast-path backend's bounds: its bare forwarder plus the flow lookup in a
// map of maxEntries entries holding them all (lookupCeiling), and the same
// reading and counting the value found, in a lab of no mode, in the
// backend's column.
func scaleLookupBounds(ctx context.Context, log *slog.Logger, opts Options, rep *Report, modes []Mode, maxEntries uint32) error {
	var ks []forwarder
	if slices.Contains(modes, ModeFastpath) {
		ks = append(ks, fwdXDP)
	}
	if slices.Contains(modes, ModeFastpathTC) {
		ks = append(ks, fwdTC)
	}
	if len(ks) == 0 {
		return nil
	}
	_, err := inLab(ctx, log, opts, false, func(l *lab) (modeSample, error) {
		for _, k := range ks {
			for _, value := range []bool{false, true} {
				pps, err := l.tr.lookupCeiling(ctx, opts.PPSDuration, k, maxEntries, value)
				if err != nil {
					return modeSample{}, err
				}
				suffix, what := scaleLookupXDPSuffix, " with the flow lookup"
				if k == fwdTC {
					suffix = scaleLookupTCSuffix
				}
				if value {
					suffix, what = suffix+"_value", " with the flow lookup, the value read and counted"
				}
				log.Info("bench: scale, "+k.String()+what, "flows", opts.Flows, "pps", int(pps))
				rep.set(scalePPSName(opts.Flows)+suffix, k.mode(), pps)
			}
		}
		return modeSample{}, nil
	})
	return err
}

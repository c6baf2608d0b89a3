// Command hanat-bench runs hanat's benchmark (make bench, root): nftables
// slow path, XDP fast path and an iptables-legacy MASQUERADE NAT side by
// side in network namespaces it creates and removes. It prints a table;
// with BENCH_JSON=PATH it also writes the figures as JSON.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/hanat/hanat/bench"
)

func main() {
	bench.MaybeRunHelper()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "hanat-bench:", err)
		os.Exit(1)
	}
}

func run() error {
	var opts bench.Options
	modes := flag.String("modes", allModes(), "modes to measure, in order")
	flag.IntVar(&opts.Flows, "flows", 1024, "UDP flows of the packet-rate test")
	flag.DurationVar(&opts.PPSDuration, "pps-duration", 2*time.Second, "one packet-rate sample")
	flag.IntVar(&opts.Rounds, "rounds", 3, "rounds over all modes, one sample of each figure per round (medians reported)")
	flag.DurationVar(&opts.TCPDuration, "tcp-duration", 3*time.Second, "one iperf3 sample")
	flag.DurationVar(&opts.ConnDuration, "conn-duration", 2*time.Second, "one short-connection sample")
	flag.BoolVar(&opts.SkipTCP, "skip-tcp", false, "skip iperf3 and the connection rate")
	flag.BoolVar(&opts.SkipSingleENI, "skip-single-eni", false, "skip the packet-rate test in the single-ENI shape")
	flag.BoolVar(&opts.SkipTwoENI, "skip-two-eni", false, "skip the two-ENI rounds (packet rate, TCP, bare forwarders)")
	scale := flag.String("scale-flows", "1000,100000,1000000", "flow-map sizes of the scale test")
	scalePPS := flag.String("scale-pps-flows", "1000,100000,1000000", "concurrent flows of the packet rate at scale (slow path, XDP, tc); empty leaves it out")
	timeout := flag.Duration("timeout", 15*time.Minute, "give up (and clean up) after this long")
	flag.IntVar(&opts.CostRounds, "cost-rounds", 0, "BPF_PROG_TEST_RUN rounds per program-cost figure (median); 0 means the default")
	costsOnly := flag.Bool("costs-only", false, "measure only the program costs and the flow-map scale test (BPF_PROG_TEST_RUN, no traffic, no modes)")
	metricsOnly := flag.Bool("metrics-only", false, "measure only hanatd's /metrics answer time with -metrics-flows NATed flows in conntrack")
	flag.BoolVar(&opts.SkipMetrics, "skip-metrics", false, "leave out the /metrics answer time")
	flag.StringVar(&opts.Hanatd, "hanatd", "", "hanatd binary for the /metrics answer time (default: hanatd next to hanat-bench, else on $PATH)")
	metricsFlows := flag.String("metrics-flows", "10000,1000000", "conntrack sizes of the /metrics answer time")
	flag.IntVar(&opts.MetricsScrapes, "metrics-scrapes", 9, "GETs of /metrics per size (median and max reported)")
	syncOnly := flag.Bool("sync-only", false, "measure only the state sync: full sync and inject of -sync-flows flows, and the connection storm with sync off and on")
	flag.BoolVar(&opts.SkipSync, "skip-sync", false, "leave out the state sync figures")
	flag.IntVar(&opts.SyncFlows, "sync-flows", 250_000, "flows of the full sync and the inject at takeover")
	flag.IntVar(&opts.StormRate, "storm-rate", 10_000, "new connections/s the storm offers")
	flag.DurationVar(&opts.StormDuration, "storm-duration", 3*time.Second, "one storm sample")
	flag.IntVar(&opts.StormRounds, "storm-rounds", 5, "storm samples of each variant (sync off, bare subscriber, sync on; medians reported)")
	flag.IntVar(&opts.StormWorkers, "storm-workers", 32, "concurrent storm clients")
	flag.BoolVar(&opts.SkipGWLB, "skip-gwlb", false, "leave out the GWLB shape (a fleet member against plain NAT on one ENI)")
	flag.IntVar(&opts.GWLBRounds, "gwlb-rounds", 2, "rounds of the GWLB shape's samples (medians reported)")
	flag.StringVar(&opts.ProfileDir, "profile-dir", "", "profile every packet-rate sample at scale (BPF programs' run time, perf when installed) into this directory")
	verbose := flag.Bool("v", false, "debug logging")
	jsonPath := flag.String("json", os.Getenv("BENCH_JSON"), "write the figures as JSON here (default $BENCH_JSON)")
	flag.Parse()

	for _, s := range strings.Split(*modes, ",") {
		m, err := bench.ParseMode(strings.TrimSpace(s))
		if err != nil {
			return err
		}
		opts.Modes = append(opts.Modes, m)
	}
	var err error
	if opts.ScaleFlows, err = sizes("-scale-flows", *scale); err != nil {
		return err
	}
	if opts.ScalePPSFlows, err = sizes("-scale-pps-flows", *scalePPS); err != nil {
		return err
	}
	if opts.MetricsFlows, err = sizes("-metrics-flows", *metricsFlows); err != nil {
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	run := bench.Run
	only := 0
	for _, o := range []struct {
		set bool
		run func(context.Context, *slog.Logger, bench.Options) (*bench.Report, error)
	}{{*costsOnly, bench.RunCosts}, {*metricsOnly, bench.RunMetrics}, {*syncOnly, bench.RunSync}} {
		if o.set {
			run = o.run
			only++
		}
	}
	if only > 1 {
		return fmt.Errorf("-costs-only, -metrics-only and -sync-only: choose one")
	}
	rep, err := run(ctx, log, opts)
	if rep != nil {
		if werr := rep.WriteTable(os.Stdout); werr != nil {
			return werr
		}
		if *jsonPath != "" {
			f, ferr := os.Create(*jsonPath)
			if ferr != nil {
				return fmt.Errorf("BENCH_JSON: %w", ferr)
			}
			werr := rep.WriteJSON(f)
			if cerr := f.Close(); werr == nil {
				werr = cerr
			}
			if werr != nil {
				return fmt.Errorf("BENCH_JSON %s: %w", *jsonPath, werr)
			}
		}
	}
	return err
}

// sizes parses a comma-separated list of flow counts.
func sizes(flagName, list string) ([]int, error) {
	out := []int{}
	for _, s := range strings.Split(list, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		var n int
		if _, err := fmt.Sscan(s, &n); err != nil || n < 1 {
			return nil, fmt.Errorf("%s: bad size %q", flagName, s)
		}
		out = append(out, n)
	}
	return out, nil
}

// allModes is bench.AllModes as -modes takes it.
func allModes() string {
	var s []string
	for _, m := range bench.AllModes {
		s = append(s, string(m))
	}
	return strings.Join(s, ",")
}

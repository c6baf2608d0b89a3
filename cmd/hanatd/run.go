package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"strings"

	"github.com/hanat/hanat/config"
	"github.com/hanat/hanat/datapath"
	"github.com/hanat/hanat/fastpath"
	"github.com/hanat/hanat/gwlb"
)

const usage = `hanatd — the hanat NAT daemon

SYNOPSIS
  hanatd [--config FILE]
  hanatd --check-config FILE
  hanatd --cleanup [--config FILE] [--pin-path DIR]
  hanatd --version

DESCRIPTION
  hanatd turns this instance into a NAT for the VPC's private subnets:
  it installs nftables table "inet hanat" (forward filter, SNAT, port
  forwards), sets the sysctls a NAT needs, and serves the admin socket used
  by hanatctl. The datapath outlives the daemon: stopping or restarting
  hanatd leaves NAT in place; --cleanup removes it.

OPTIONS
  --config FILE        configuration file (default /etc/hanat/hanat.yaml;
                       a missing default file means "all defaults")
  --check-config FILE  validate FILE, print every problem with its line, and
                       exit 0 (valid) or 1 (invalid)
  --cleanup            remove exactly what hanat created (its XDP fast path,
                       its nftables table, the sysctls it changed, restored
                       to the recorded values) and exit
  --pin-path DIR       where the XDP fast path pins its maps and links so
                       they outlive the daemon (default /sys/fs/bpf/hanat;
                       its parent must be a bpffs, /sys/fs/bpf is mounted
                       when missing)
  --version            print the version and exit

SIGNALS
  SIGHUP               reload the configuration and reconcile; a file that
                       changes a setting read only at start (ha.*,
                       cloud.*, gwlb.*, admin.*, metrics.*, log.format,
                       state_dir) is refused as a whole, naming each key
                       in the log, and nothing is applied
  SIGTERM, SIGINT      stop the control plane; NAT keeps forwarding. A fleet
                       member (gwlb.enabled) drains first: it fails its
                       GWLB health checks at once and stops when its last
                       flow ends or gwlb.deregistration_delay passes; a
                       second signal stops it at once

EXIT STATUS
  0 success, 1 runtime or configuration error, 2 usage error
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fset := flag.NewFlagSet("hanatd", flag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.Usage = func() { fmt.Fprint(stderr, usage) }
	configPath := fset.String("config", config.DefaultPath, "configuration file")
	checkPath := fset.String("check-config", "", "validate a configuration file and exit")
	cleanup := fset.Bool("cleanup", false, "remove everything hanat installed and exit")
	showVersion := fset.Bool("version", false, "print the version and exit")
	pinPath := fset.String("pin-path", fastpath.DefaultPinPath, "where the XDP fast path pins its maps and links")
	if err := fset.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fset.NArg() > 0 {
		fmt.Fprintf(stderr, "hanatd: unexpected argument %q\n", fset.Arg(0))
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "hanatd %s\n", version)
		return 0
	}
	if *checkPath != "" {
		if _, err := config.Load(*checkPath); err != nil {
			fmt.Fprintf(stderr, "hanatd: configuration file %s is invalid:\n%s\n", *checkPath, indent(err.Error()))
			return 1
		}
		fmt.Fprintf(stdout, "hanatd: configuration file %s is valid\n", *checkPath)
		return 0
	}
	explicit := false
	fset.Visit(func(f *flag.Flag) {
		if f.Name == "config" {
			explicit = true
		}
	})
	cfg, note, err := loadConfig(*configPath, explicit)
	if err != nil {
		fmt.Fprintf(stderr, "hanatd: %s\n", indent(err.Error()))
		return 1
	}
	level := new(slog.LevelVar)
	log := newLogger(cfg.Log, level, stderr)
	if note != "" {
		log.Info(note, "path", *configPath)
	}
	if *cleanup {
		// The fast path first: it would keep forwarding offloaded flows
		// without the table.
		// The GWLB programs too (their pins are under the fast path's).
		gerr := gwlb.Cleanup(gwlbPinDir(*pinPath))
		ferr := fastpath.Cleanup(log, *pinPath)
		if err := errors.Join(gerr, ferr, datapath.Cleanup(ctx, log, cfg.StateDir)); err != nil {
			log.Error("cleanup failed", "err", err)
			return 1
		}
		return 0
	}
	d, err := newDaemon(ctx, log, level, *configPath, explicit, cfg, *pinPath)
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	if err := d.Run(ctx); err != nil {
		log.Error("hanatd stopped with an error", "err", err)
		return 1
	}
	return 0
}

// loadConfig reads the config file. A missing file at the default path is
// not an error: a stock instance runs on defaults (private CIDRs and the
// SNAT address are discovered). A missing explicit path is an error.
func loadConfig(path string, explicit bool) (*config.Config, string, error) {
	cfg, err := config.Load(path)
	if err == nil {
		return cfg, "", nil
	}
	if !explicit && errors.Is(err, fs.ErrNotExist) {
		return config.Default(), "no configuration file, running on defaults", nil
	}
	return nil, "", err
}

// newLogger returns the daemon's logger; its level is level's, set here
// from c.Level (a reload may change it).
func newLogger(c config.Log, level *slog.LevelVar, w io.Writer) *slog.Logger {
	level.Set(parseLevel(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}

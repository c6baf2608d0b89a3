package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/hanat/hanat/admin"
)

// Exit codes, documented in `hanatctl help`.
const (
	exitOK        = 0
	exitError     = 1 // error from hanatd or the connection
	exitUsage     = 2
	exitForbidden = 3 // permission denied (HTTP 403, or the socket refused us)
	// maintenance on --wait: no healthy peer to take the route tables.
	exitNoPeer = 4
	// maintenance on --wait: the time ran out before the peer owned them.
	exitWaitExpired = 5
	// reload: refused, the new configuration changes settings that need a
	// restart; nothing was applied.
	exitRestartNeeded = 6
)

// requestTimeout bounds every call to the daemon.
const requestTimeout = 30 * time.Second

const defaultFlowsLimit = 1000

type command struct {
	name    string
	args    string // flags and arguments, for usage
	summary string
	// flags registers the command's own flags on fs; it may be nil.
	flags func(f *flag.FlagSet, o *options)
	// nargs is how many positional arguments the command takes.
	nargs int
	run   func(ctx context.Context, e *env) error
}

var commands = []command{
	{name: "status", summary: "daemon, NAT, datapath, sysctl and connection summary", run: cmdStatus},
	{
		name: "flows", args: "[--limit N] [--protocol tcp|udp|icmp] [--src IP]",
		summary: "connections NATed by hanat, from the kernel's conntrack table",
		flags: func(f *flag.FlagSet, o *options) {
			f.IntVar(&o.limit, "limit", defaultFlowsLimit, "show at most `N` flows (0: all)")
			f.StringVar(&o.protocol, "protocol", "", "only flows of `PROTO`: tcp, udp or icmp")
			f.StringVar(&o.src, "src", "", "only flows from the private address `IP`")
		},
		run: cmdFlows,
	},
	{name: "config", summary: "the configuration hanatd runs with (JSON)", run: cmdConfig},
	{name: "doctor", summary: "the NAT troubleshooting checklist: IGW, public subnet, EIP, source/dest check, private routes, forwarding, rules (exit 1 when a check fails)", run: cmdDoctor},
	{name: "reload", summary: "reread the configuration file and reconcile the datapath (root or group hanat)", run: cmdReload},
	{
		name: "failover", args: "[--table rtb-…]…", summary: "hand route tables (all this node owns) to the healthy HA peer (root or group hanat)",
		flags: tableFlag, run: cmdFailover,
	},
	{
		name: "takeover", args: "[--table rtb-…]…", summary: "ask the HA peer for route tables (all of the pair's), or take them if the peer is dead (root or group hanat)",
		flags: tableFlag, run: cmdTakeover,
	},
	{
		name: "maintenance", args: "on [--wait[=DURATION]] | off", summary: "on: hand every route table to the healthy peer and stay backup (--wait: until the peer owns them); off: back to normal (root or group hanat)",
		flags: maintenanceFlags, nargs: 1, run: cmdMaintenance,
	},
	{
		name: "version", args: "[--client]", summary: "hanatctl's version and, unless --client, hanatd's",
		flags: func(f *flag.FlagSet, o *options) {
			f.BoolVar(&o.clientOnly, "client", false, "only hanatctl's version; do not ask hanatd")
		},
		run: cmdVersion,
	},
	{name: "completion", args: "bash|zsh", summary: "print the shell completion script (e.g. source <(hanatctl completion bash))", nargs: 1, run: cmdCompletion},
	{name: "help", args: "[COMMAND]", summary: "this text, or the flags of COMMAND"},
}

type options struct {
	socket   string
	json     bool
	limit    int
	protocol string
	src      string
	tables   tableList
	// clientOnly: version --client.
	clientOnly bool
	// wait: maintenance on --wait (0: do not wait).
	wait waitFlag
}

// env is what a command runs with.
type env struct {
	opts   options
	client *admin.Client
	stdout io.Writer
	args   []string // positional arguments (command.nargs)
	// commands is the command table (for completion; passed in to keep
	// the table's initialisation free of cycles).
	commands []command
}

// usageError is a mistake on the command line (exit 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func globalFlags(f *flag.FlagSet, o *options) {
	f.StringVar(&o.socket, "socket", o.socket, "admin socket `PATH` (default "+admin.DefaultSocketPath+", or $HANAT_SOCKET)")
	f.BoolVar(&o.json, "json", o.json, "print the daemon's JSON response, indented")
}

func newFlagSet(name string) *flag.FlagSet {
	f := flag.NewFlagSet(name, flag.ContinueOnError)
	f.SetOutput(io.Discard) // errors are reported by run
	return f
}

// run is hanatctl: it parses args, calls the daemon and prints. It returns
// the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o := options{socket: admin.DefaultSocketPath}
	if s := os.Getenv("HANAT_SOCKET"); s != "" {
		o.socket = s
	}
	gfs := newFlagSet("hanatctl")
	globalFlags(gfs, &o)
	if err := gfs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return exitOK
		}
		return fail(stderr, usagef("%v", err))
	}
	if gfs.NArg() == 0 {
		usage(stderr)
		return exitUsage
	}
	name, rest := gfs.Arg(0), gfs.Args()[1:]
	if name == "help" {
		return help(stdout, stderr, rest)
	}
	cmd, ok := lookup(name)
	if !ok {
		return fail(stderr, usagef("unknown command %q", name))
	}
	cfs := newFlagSet("hanatctl " + cmd.name)
	globalFlags(cfs, &o)
	if cmd.flags != nil {
		cmd.flags(cfs, &o)
	}
	pos, err := parseInterspersed(cfs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			commandUsage(stdout, cmd)
			return exitOK
		}
		return fail(stderr, usagef("%s: %v", cmd.name, err))
	}
	if len(pos) < cmd.nargs {
		return fail(stderr, usagef("%s: missing argument: %s", cmd.name, cmd.args))
	}
	if len(pos) > cmd.nargs {
		return fail(stderr, usagef("%s: unexpected argument %q", cmd.name, pos[cmd.nargs]))
	}
	if o.socket == "" {
		return fail(stderr, usagef("--socket: empty path"))
	}
	// maintenance on --wait may take its whole wait on top of the calls.
	ctx, cancel := context.WithTimeout(ctx, requestTimeout+o.wait.d)
	defer cancel()
	e := &env{opts: o, client: admin.NewClient(o.socket), stdout: stdout, args: pos, commands: commands}
	if err := cmd.run(ctx, e); err != nil {
		return fail(stderr, err)
	}
	return exitOK
}

// parseInterspersed parses flags before, between and after the
// positional arguments (`maintenance on --wait=10s`); after "--"
// everything is positional.
func parseInterspersed(f *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for len(args) > 0 { // args shrinks every round
		if err := f.Parse(args); err != nil {
			return nil, err
		}
		rest := f.Args()
		if len(rest) == 0 {
			break
		}
		if i := len(args) - len(rest) - 1; i >= 0 && args[i] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	return pos, nil
}

func lookup(name string) (command, bool) {
	for _, c := range commands {
		if c.name == name && c.run != nil {
			return c, true
		}
	}
	return command{}, false
}

// fail prints err and maps it to an exit code.
func fail(stderr io.Writer, err error) int {
	var ue *usageError
	var ce *exitCodeError
	switch {
	case errors.As(err, &ce):
		fmt.Fprintf(stderr, "hanatctl: %v\n", err)
		return ce.code
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "hanatctl: %v\nRun 'hanatctl help' for usage.\n", err)
		return exitUsage
	case errors.Is(err, admin.ErrForbidden), errors.Is(err, fs.ErrPermission):
		fmt.Fprintf(stderr, "hanatctl: %v\n", err)
		return exitForbidden
	default:
		fmt.Fprintf(stderr, "hanatctl: %v\n", err)
		return exitError
	}
}

func help(stdout, stderr io.Writer, args []string) int {
	switch len(args) {
	case 0:
		usage(stdout)
		return exitOK
	case 1:
		cmd, ok := lookup(args[0])
		if !ok {
			if args[0] == "help" {
				usage(stdout)
				return exitOK
			}
			return fail(stderr, usagef("help: unknown command %q", args[0]))
		}
		commandUsage(stdout, cmd)
		return exitOK
	default:
		return fail(stderr, usagef("help: too many arguments"))
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, `hanatctl inspects and controls hanatd, the hanat NAT daemon, through its
admin socket.

Usage:
  hanatctl [--socket PATH] [--json] COMMAND [flags]

Commands:
`)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
		if c.args != "" {
			fmt.Fprintf(w, "  %-8s   %s %s\n", "", c.name, c.args)
		}
	}
	fmt.Fprintf(w, `
Global flags (accepted before or after the command):
  --socket PATH  admin socket (default %s; $HANAT_SOCKET overrides the default)
  --json         print the daemon's JSON response, indented, instead of tables

Reading (status, flows, config, doctor, version) needs access to the socket (root or group
hanat); reload needs root or membership of the daemon's admin group.

Exit codes (stable; scripts may rely on them):
  0  success
  1  error from hanatd or on the connection (e.g. hanatd not running);
     doctor: a check failed; version: hanatd did not answer (the client's
     version is still printed)
  2  usage error (unknown command, bad flag or argument)
  3  permission denied (hanatd answered 403, or the socket refused the connection)
  4  maintenance on --wait: no healthy peer can take the route tables (they
     stay on this node); said at once, never waited for
  5  maintenance on --wait: the wait ran out before the peer owned them all
  6  reload refused: the file changes settings that need a restart (the
     message names each key); nothing was applied, the running
     configuration stays in force

Shell completion: source <(hanatctl completion bash), or for zsh
hanatctl completion zsh > "${fpath[1]}/_hanatctl".
`, admin.DefaultSocketPath)
}

func commandUsage(w io.Writer, cmd command) {
	fmt.Fprintf(w, "Usage: hanatctl [--socket PATH] [--json] %s %s\n\n%s.\n", cmd.name, cmd.args, cmd.summary)
	if cmd.flags != nil {
		var o options
		cfs := newFlagSet(cmd.name)
		cmd.flags(cfs, &o)
		fmt.Fprintf(w, "\nFlags:\n")
		cfs.SetOutput(w)
		cfs.PrintDefaults()
	}
}

// printRaw prints a JSON response indented.
func printRaw(w io.Writer, raw json.RawMessage) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return fmt.Errorf("hanatd sent invalid JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

func cmdStatus(ctx context.Context, e *env) error {
	if e.opts.json {
		raw, err := e.client.Raw(ctx, http.MethodGet, "/v1/status", nil)
		if err != nil {
			return err
		}
		return printRaw(e.stdout, raw)
	}
	st, err := e.client.Status(ctx)
	if err != nil {
		return err
	}
	return writeStatus(e.stdout, st, time.Now())
}

func cmdFlows(ctx context.Context, e *env) error {
	q := admin.FlowsQuery{Limit: e.opts.limit, Protocol: strings.ToLower(e.opts.protocol)}
	if q.Limit < 0 {
		return usagef("flows: --limit %d: want 0 (all) or more", q.Limit)
	}
	switch q.Protocol {
	case "", "tcp", "udp", "icmp":
	default:
		return usagef("flows: --protocol %q: want tcp, udp or icmp", e.opts.protocol)
	}
	if e.opts.src != "" {
		a, err := netip.ParseAddr(e.opts.src)
		if err != nil {
			return usagef("flows: --src %q: want an IP address", e.opts.src)
		}
		q.Src = a.String()
	}
	if e.opts.json {
		raw, err := e.client.Raw(ctx, http.MethodGet, admin.FlowsPath(q), nil)
		if err != nil {
			return err
		}
		return printRaw(e.stdout, raw)
	}
	fr, err := e.client.Flows(ctx, q)
	if err != nil {
		return err
	}
	return writeFlows(e.stdout, fr)
}

func cmdConfig(ctx context.Context, e *env) error {
	raw, err := e.client.Config(ctx)
	if err != nil {
		return err
	}
	return printRaw(e.stdout, raw)
}

// errChecksFailed makes doctor exit 1 after printing its report.
var errChecksFailed = errors.New("doctor: some checks failed")

func cmdDoctor(ctx context.Context, e *env) error {
	rep, err := e.client.Doctor(ctx)
	if err != nil {
		return err
	}
	if e.opts.json {
		b, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		if err := printRaw(e.stdout, b); err != nil {
			return err
		}
	} else if err := writeDoctor(e.stdout, rep); err != nil {
		return err
	}
	if !rep.OK {
		return errChecksFailed
	}
	return nil
}

func cmdReload(ctx context.Context, e *env) error {
	if e.opts.json {
		raw, err := e.client.Raw(ctx, http.MethodPost, "/v1/reload", admin.ReloadRequest{})
		if err != nil {
			return reloadError(err)
		}
		return printRaw(e.stdout, raw)
	}
	rr, err := e.client.Reload(ctx, admin.ReloadRequest{})
	if err != nil {
		return reloadError(err)
	}
	_, err = fmt.Fprintf(e.stdout, "reload: %s\n", clean(rr.Message))
	return err
}

// reloadError gives a reload hanatd refused (409: keys that need a
// restart, nothing applied) its own exit code.
func reloadError(err error) error {
	var ae *admin.APIError
	if errors.As(err, &ae) && ae.StatusCode == http.StatusConflict {
		return &exitCodeError{code: exitRestartNeeded, msg: "reload refused: " + clean(ae.Message)}
	}
	return err
}

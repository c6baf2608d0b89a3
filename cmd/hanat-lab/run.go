package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/hanat/hanat/internal/vpcsim"
)

const usage = `hanat-lab: the seed's VPC simulated in network namespaces

usage:
  hanat-lab up [--prefix P] [--nat-instances N] [--point-routes | --gwlb] [--spare-eips N] [--config FILE] [--json]
               [--gwlb-check TCP:80|HTTP:PORT/PATH] [--gwlb-interval 10s] [--gwlb-failover no_rebalance|rebalance]
               [--gwlb-delay 300s] [--gwlb-cross-zone]      (the target group's attributes; AWS's defaults shown)
  hanat-lab down [--prefix P]
  hanat-lab status [--prefix P] [--json]
  hanat-lab exec [--prefix P] NAME -- CMD [ARG…]    (NAME: an instance, router, igw or internet;
                                                   AWS_* variables for the lab's EC2 API are set)
  hanat-lab stop [--prefix P] [--force] INSTANCE
                                                  (EC2 StopInstances: a graceful shutdown first, in
                                                   which each hanatd hands its route tables to its
                                                   peer as hanat-handover.service does, bounded;
                                                   --force: no shutdown, as EC2's --force or a crash)
  hanat-lab crash [--prefix P] INSTANCE             (= stop --force: processes SIGKILLed, links down)
  hanat-lab start [--prefix P] INSTANCE
  hanat-lab gwlb register|deregister [--prefix P] INSTANCE
                                                  (a lab up with --gwlb: add the instance to the
                                                   target group, or deregister it: draining for
                                                   the deregistration delay)
  hanat-lab faults api [--prefix P] [--latency 50ms] [--throttle 0.3] [--error 0.1] [--actions A,B] [--seed N]
  hanat-lab faults partition [--prefix P] A B [--proto tcp|udp|icmp] [--port N]
  hanat-lab faults heal [--prefix P] [A B [--proto …] [--port N]]
  hanat-lab demo [--hanatd bin/hanatd] [--hanatctl bin/hanatctl] [--hold] [--sync=false] [--hold-down 5s]
                                                  (make demo: the HA pair with state sync; a download
                                                   from app-a through nat-a's crash and the failback,
                                                   each step timed, then torn down)
  hanat-lab demo --gwlb [--hanatd …] [--hanatctl …] [--hold]
                                                  (make demo DEMO_ARGS=--gwlb: three hanatd behind the
                                                   lab's GWLB sharing UDP flows; one crashed, one
                                                   drained, per-target flow counts after each)

Without --prefix, commands act on the only lab that is up. The background
process, its log (serve.log) and control socket live in ` + runRoot + `/<prefix>/.
The EC2 API credentials are fixed test keys, printed by status.

exit codes: 0 ok, 1 failure, 2 usage error
`

// runRoot holds one directory per running lab.
const runRoot = "/run/hanat-lab"

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "up":
		err = cmdUp(ctx, args[1:], stdout)
	case "serve":
		err = cmdServe(ctx, args[1:], stderr)
	case "down":
		err = cmdDown(ctx, args[1:], stdout)
	case "status":
		err = cmdStatus(ctx, args[1:], stdout)
	case "exec":
		err = cmdExec(ctx, args[1:], stdout, stderr)
	case "stop", "start", "crash":
		err = cmdStopStart(ctx, args[0], args[1:], stdout)
	case "faults":
		err = cmdFaults(ctx, args[1:], stdout)
	case "gwlb":
		err = cmdGWLB(ctx, args[1:], stdout)
	case "demo":
		err = cmdDemo(ctx, args[1:], stdout)
	default:
		err = usagef("unknown command %q", args[0])
	}
	var ue usageError
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "hanat-lab: %v\n\n%s", err, usage)
		return 2
	case errors.As(err, &ee):
		return int(ee)
	default:
		fmt.Fprintf(stderr, "hanat-lab: %v\n", err)
		return 1
	}
}

// exitError passes a child's exit code through (exec).
type exitError int

func (e exitError) Error() string { return "exit status " + strconv.Itoa(int(e)) }

// parseInterleaved parses flags that may come before, between or after
// positional arguments; "--" ends flag parsing and what follows it is
// returned as rest.
func parseInterleaved(fs *flag.FlagSet, args []string) (pos []string, rest []string, err error) {
	fs.SetOutput(io.Discard)
	for range len(args) + 1 {
		if len(args) > 0 && args[0] == "--" {
			return pos, args[1:], nil
		}
		dd := slices.Index(args, "--")
		if err := fs.Parse(args); err != nil {
			return nil, nil, usagef("%s: %v", fs.Name(), err)
		}
		rem := fs.Args()
		if dd >= 0 && len(rem) == len(args)-dd-1 {
			return pos, rem, nil // Parse consumed the "--"
		}
		if len(rem) == 0 {
			return pos, nil, nil
		}
		pos = append(pos, rem[0])
		args = rem[1:]
	}
	return pos, nil, nil
}

// labDir is the run directory of a lab.
func labDir(prefix string) string { return filepath.Join(runRoot, prefix) }

// resolvePrefix returns the prefix flag's value, or the only lab that is up.
func resolvePrefix(p string) (string, error) {
	if p != "" {
		if err := vpcsim.ValidatePrefix(p); err != nil {
			return "", usagef("%v", err)
		}
		return p, nil
	}
	ents, err := os.ReadDir(runRoot)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("list labs in %s: %w", runRoot, err)
	}
	var labs []string
	for _, e := range ents {
		if e.IsDir() && vpcsim.ValidatePrefix(e.Name()) == nil {
			labs = append(labs, e.Name())
		}
	}
	switch len(labs) {
	case 0:
		return "", fmt.Errorf("no lab is up (nothing in %s); give --prefix", runRoot)
	case 1:
		return labs[0], nil
	}
	return "", fmt.Errorf("several labs are up (%s); choose one with --prefix", strings.Join(labs, ", "))
}

// labConfig is the --config file of `up` (YAML; flags override it).
type labConfig struct {
	Prefix             string `yaml:"prefix"`
	NATInstances       int    `yaml:"nat_instances"`
	PointPrivateRoutes bool   `yaml:"point_private_routes"`
	SpareEIPs          int    `yaml:"spare_eips"`
	Region             string `yaml:"region"`
	GWLB               bool   `yaml:"gwlb"`
}

func loadConfig(path string) (labConfig, error) {
	var c labConfig
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("read config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	return c, nil
}

func cmdUp(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	prefix := fs.String("prefix", "", "lab prefix (default hnl + 4 random hex digits)")
	nats := fs.Int("nat-instances", 0, "NAT instances (default 2; -1 for none)")
	point := fs.Bool("point-routes", false, "point each private route table at its AZ's NAT")
	spare := fs.Int("spare-eips", 0, "unassociated EIPs to allocate")
	region := fs.String("region", "", "region (default "+vpcsim.DefaultRegion+")")
	cfgPath := fs.String("config", "", "YAML file with prefix, nat_instances, point_private_routes, spare_eips, region")
	gwlb := fs.Bool("gwlb", false, "add a Gateway Load Balancer, an endpoint per AZ as the private route tables' 0.0.0.0/0, all NAT instances its targets")
	var gf gwlbFlags
	gf.register(fs)
	asJSON := fs.Bool("json", false, "print the status as JSON")
	pos, _, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("up: unexpected argument %q", pos[0])
	}
	var cfg labConfig
	if *cfgPath != "" {
		if cfg, err = loadConfig(*cfgPath); err != nil {
			return err
		}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["prefix"] || cfg.Prefix == "" {
		cfg.Prefix = *prefix
	}
	if set["nat-instances"] {
		cfg.NATInstances = *nats
	}
	if set["point-routes"] {
		cfg.PointPrivateRoutes = *point
	}
	if set["spare-eips"] {
		cfg.SpareEIPs = *spare
	}
	if set["region"] {
		cfg.Region = *region
	}
	if set["gwlb"] {
		cfg.GWLB = *gwlb
	}
	if cfg.GWLB && cfg.PointPrivateRoutes {
		return usagef("--gwlb points the private route tables at the GWLB endpoints; --point-routes would point them at the NATs")
	}
	gargs := gf.args(set)
	if len(gargs) > 0 && !cfg.GWLB {
		return usagef("--gwlb-… flags need --gwlb")
	}
	if _, err := gf.config(); err != nil {
		return usagef("%v", err)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = vpcsim.RandomPrefix()
	}
	if err := vpcsim.ValidatePrefix(cfg.Prefix); err != nil {
		return usagef("%v", err)
	}
	if cfg.NATInstances < -1 || cfg.NATInstances > vpcsim.MaxNATInstances {
		return usagef("--nat-instances %d: want -1..%d", cfg.NATInstances, vpcsim.MaxNATInstances)
	}
	dir := labDir(cfg.Prefix)
	if pid, ok := servePID(cfg.Prefix); ok {
		return fmt.Errorf("lab %s is already up (serve pid %d); `hanat-lab down --prefix %s` first", cfg.Prefix, pid, cfg.Prefix)
	}
	// Leftovers of a crashed run: remove them before starting again.
	killServe(cfg.Prefix)
	_ = os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(dir, "serve.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create serve log: %w", err)
	}
	defer logf.Close()
	sargs := []string{"serve", "--prefix", cfg.Prefix, "--nat-instances", strconv.Itoa(cfg.NATInstances),
		"--spare-eips", strconv.Itoa(cfg.SpareEIPs)}
	if cfg.PointPrivateRoutes {
		sargs = append(sargs, "--point-routes")
	}
	if cfg.Region != "" {
		sargs = append(sargs, "--region", cfg.Region)
	}
	if cfg.GWLB {
		sargs = append(append(sargs, "--gwlb"), gargs...)
	}
	cmd := exec.Command(self, sargs...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s serve: %w", self, err)
	}
	// The pid file first, so `down` finds the process even if we die now.
	if err := os.WriteFile(filepath.Join(dir, "pid"), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600); err != nil {
		_ = cmd.Process.Kill()
		return fmt.Errorf("write pid file: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	c := newClient(cfg.Prefix)
	deadline := time.NewTimer(90 * time.Second)
	defer deadline.Stop()
	for {
		st, err := c.status(ctx)
		if err == nil {
			return printStatus(stdout, st, *asJSON)
		}
		select {
		case werr := <-exited:
			tail, _ := os.ReadFile(filepath.Join(dir, "serve.log"))
			_ = vpcsim.Cleanup(cfg.Prefix)
			_ = os.RemoveAll(dir)
			return fmt.Errorf("lab %s failed to come up (%v):\n%s", cfg.Prefix, werr, lastLines(string(tail), 20))
		case <-deadline.C:
			return fmt.Errorf("lab %s: no answer on its control socket after 90s; see %s", cfg.Prefix, filepath.Join(dir, "serve.log"))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func cmdDown(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("down", flag.ContinueOnError)
	prefix := fs.String("prefix", "", "lab prefix")
	pos, _, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("down: unexpected argument %q", pos[0])
	}
	p, err := resolvePrefix(*prefix)
	if err != nil {
		return err
	}
	// A graceful stop first (the serve process closes its lab), then
	// whatever is left is killed and removed by prefix.
	if pid, ok := servePID(p); ok {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		for range 100 {
			if !alive(pid) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	killServe(p)
	if err := vpcsim.Cleanup(p); err != nil {
		return err
	}
	if err := os.RemoveAll(labDir(p)); err != nil {
		return fmt.Errorf("remove %s: %w", labDir(p), err)
	}
	fmt.Fprintf(stdout, "lab %s is down\n", p)
	return nil
}

func cmdStatus(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	prefix := fs.String("prefix", "", "lab prefix")
	asJSON := fs.Bool("json", false, "print JSON")
	pos, _, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("status: unexpected argument %q", pos[0])
	}
	p, err := resolvePrefix(*prefix)
	if err != nil {
		return err
	}
	st, err := newClient(p).status(ctx)
	if err != nil {
		return err
	}
	return printStatus(stdout, st, *asJSON)
}

func printStatus(w io.Writer, st vpcsim.Status, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Fprintf(w, "lab %s (region %s, VPC %s, IGW %s)\n", st.Prefix, st.Region, st.VPCID, st.IGWID)
	fmt.Fprintf(w, "EC2 API  %s (inside the VPC: %s)\n", st.EC2Endpoint, st.VPCEndpoint)
	fmt.Fprintf(w, "IMDS     %s (inside instances)\n", st.IMDSEndpoint)
	fmt.Fprintf(w, "creds    AWS_ACCESS_KEY_ID=%s AWS_SECRET_ACCESS_KEY=%s AWS_REGION=%s\n",
		st.Credentials.AccessKeyID, st.Credentials.SecretAccessKey, st.Region)
	fmt.Fprintf(w, "internet %s (HTTP %s, UDP echo %s, discard %s, chargen %s) ns %s\n\n",
		st.Internet.Addr, st.Internet.HTTP, st.Internet.UDPEcho, st.Internet.Discard, st.Internet.Chargen, st.Internet.Namespace)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tID\tSTATE\tSUBNET\tENI\tPRIVATE\tPUBLIC\tSRC/DST CHECK\tNAMESPACE")
	for _, in := range st.Instances {
		for _, e := range in.ENIs {
			ips := []string{e.PrimaryIP.String()}
			for _, s := range e.SecondaryIPs {
				ips = append(ips, s.String())
			}
			pub := "-"
			if e.PublicIP.IsValid() {
				pub = e.PublicIP.String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%v\t%s\n", in.Name, in.ID, in.State, in.Subnet, e.ID, strings.Join(ips, ","), pub, e.SourceDestCheck, in.Namespace)
		}
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "ROUTE TABLE\tID\tSUBNETS\tROUTES")
	for _, r := range st.RouteTables {
		var routes []string
		for _, rt := range r.Routes {
			target := rt.GatewayID
			if rt.NetworkInterfaceID != "" {
				target = rt.NetworkInterfaceID
			}
			if rt.VpcEndpointID != "" {
				target = rt.VpcEndpointID
			}
			s := rt.Destination.String() + "→" + target
			if rt.State != "active" {
				s += " (" + rt.State + ")"
			}
			routes = append(routes, s)
		}
		name := r.Name
		if r.Main {
			name += " (main)"
		}
		subnets := strings.Join(r.Subnets, ",")
		if subnets == "" {
			subnets = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", name, r.ID, subnets, strings.Join(routes, " "))
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "EIP\tALLOCATION\tPRIVATE")
	for _, e := range st.EIPs {
		priv := "-"
		if e.PrivateIP.IsValid() {
			priv = e.PrivateIP.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", e.PublicIP, e.AllocationID, priv)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if g := st.GWLB; g != nil {
		if err := printGWLB(w, g); err != nil {
			return err
		}
	}
	for _, p := range st.Partitions {
		fmt.Fprintf(w, "partition %s ↔ %s proto=%q port=%d\n", p.A, p.B, p.Proto, p.Port)
	}
	f := st.APIFaults
	if f.ErrorRate > 0 || f.ThrottleRate > 0 || f.Latency != "0s" {
		fmt.Fprintf(w, "API faults: latency %s, error rate %g, throttle rate %g, actions %v\n", f.Latency, f.ErrorRate, f.ThrottleRate, f.Actions)
	}
	return nil
}

// printGWLB prints the lab's Gateway Load Balancer: nodes, endpoints,
// attributes, per-target health and flows, and the drops that happened.
func printGWLB(w io.Writer, g *vpcsim.StatusGWLB) error {
	a := g.Attributes
	fmt.Fprintf(w, "\nGWLB %s ns %s\n  %s\n", g.Name, g.Namespace, g.ARN)
	fmt.Fprintf(w, "  health check %s; stickiness %s; failover %s/%s; deregistration delay %s; cross-zone %v\n",
		a.HealthCheck, a.Stickiness, a.OnUnhealthy, a.OnDeregistration, a.DeregistrationDelay, a.CrossZone)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, n := range g.Nodes {
		fmt.Fprintf(tw, "  node\t%s\t%s\t%s\n", n.AZ, n.ENIID, n.Addr)
	}
	for _, e := range g.Endpoints {
		fmt.Fprintf(tw, "  endpoint\t%s\t%s\t%s\t%s\n", e.AZ, e.ID, e.Subnet, e.Addr)
	}
	fmt.Fprintln(tw, "  TARGET\tINSTANCE\tAZ\tSTATE\tFLOWS\tPACKETS\tREPLIES\tLAST CHECK ERROR")
	for _, t := range g.Targets {
		state := string(t.State)
		if t.DrainingFor != "" {
			state += " (" + t.DrainingFor + " left)"
		}
		last := t.LastError
		if last == "" {
			last = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", t.IP, t.Instance, t.AZ, state, t.Flows, t.Packets, t.Replies, last)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var drops []string
	for _, k := range slices.Sorted(maps.Keys(g.Drops)) {
		if g.Drops[k] > 0 {
			drops = append(drops, fmt.Sprintf("%s=%d", k, g.Drops[k]))
		}
	}
	if len(drops) == 0 {
		drops = []string{"none"}
	}
	fmt.Fprintf(w, "  flows %d, forwarded %d, returned %d, drops %s\n", g.Flows, g.Forwarded, g.Returned, strings.Join(drops, " "))
	return nil
}

func cmdExec(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	prefix := fs.String("prefix", "", "lab prefix")
	pos, rest, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || len(rest) == 0 {
		return usagef("exec: want NAME -- CMD…")
	}
	p, err := resolvePrefix(*prefix)
	if err != nil {
		return err
	}
	ns := p + "-" + pos[0]
	if _, err := os.Stat(filepath.Join("/run/netns", ns)); err != nil {
		names, _ := vpcsim.Namespaces(p)
		for i, n := range names {
			names[i] = strings.TrimPrefix(n, p+"-")
		}
		sort.Strings(names)
		return fmt.Errorf("lab %s has no %q (have: %s)", p, pos[0], strings.Join(names, ", "))
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, rest...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	// Like an instance role: the SDK inside finds credentials, region and
	// the in-VPC EC2 endpoint (when the lab's serve process answers).
	cmd.Env = os.Environ()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if st, err := newClient(p).status(sctx); err == nil {
		cmd.Env = append(cmd.Env, st.Env...)
	}
	cancel()
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			return exitError(ee.ExitCode())
		}
		return fmt.Errorf("exec in %s: %w", ns, err)
	}
	return nil
}

func cmdStopStart(ctx context.Context, verb string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(verb, flag.ContinueOnError)
	prefix := fs.String("prefix", "", "lab prefix")
	force := false
	if verb == "stop" {
		fs.BoolVar(&force, "force", false, "no graceful shutdown (as EC2 StopInstances --force): same as crash")
	}
	pos, _, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("%s: want one INSTANCE", verb)
	}
	p, err := resolvePrefix(*prefix)
	if err != nil {
		return err
	}
	if force {
		verb = "crash"
	}
	var rep stopReply
	if err := newClient(p).do(ctx, http.MethodPost, "/v1/instances/"+pos[0]+"/"+verb, nil, &rep); err != nil {
		return err
	}
	if rep.Warning != "" {
		fmt.Fprintf(stdout, "warning: %s\n", rep.Warning)
	}
	done := map[string]string{"stop": "stopped (graceful shutdown first)",
		"crash": "stopped without a shutdown (crash)", "start": "started"}[verb]
	fmt.Fprintf(stdout, "%s: %s\n", pos[0], done)
	return nil
}

func cmdGWLB(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "register" && args[0] != "deregister" {
		return usagef("gwlb: want register or deregister")
	}
	fs := flag.NewFlagSet("gwlb "+args[0], flag.ContinueOnError)
	prefix := fs.String("prefix", "", "lab prefix")
	pos, _, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("gwlb %s: want one INSTANCE", args[0])
	}
	p, err := resolvePrefix(*prefix)
	if err != nil {
		return err
	}
	if err := newClient(p).post(ctx, "/v1/instances/"+pos[0]+"/"+args[0], nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %sed\n", pos[0], args[0])
	return nil
}

func cmdFaults(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return usagef("faults: want api, partition or heal")
	}
	fs := flag.NewFlagSet("faults "+args[0], flag.ContinueOnError)
	prefix := fs.String("prefix", "", "lab prefix")
	switch args[0] {
	case "api":
		latency := fs.Duration("latency", 0, "added latency per call")
		throttle := fs.Float64("throttle", 0, "probability of RequestLimitExceeded")
		errRate := fs.Float64("error", 0, "probability of InternalError")
		actions := fs.String("actions", "", "comma-separated actions (default all)")
		seed := fs.Int64("seed", 0, "random seed")
		pos, _, err := parseInterleaved(fs, args[1:])
		if err != nil {
			return err
		}
		if len(pos) > 0 {
			return usagef("faults api: unexpected argument %q", pos[0])
		}
		if *throttle < 0 || *throttle > 1 || *errRate < 0 || *errRate > 1 || *latency < 0 {
			return usagef("faults api: rates must be within 0..1 and latency not negative")
		}
		p, err := resolvePrefix(*prefix)
		if err != nil {
			return err
		}
		req := apiFaultsRequest{Latency: latency.String(), ThrottleRate: *throttle, ErrorRate: *errRate, Seed: *seed}
		if *actions != "" {
			req.Actions = strings.Split(*actions, ",")
		}
		if err := newClient(p).post(ctx, "/v1/faults/api", req); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "API faults: latency %s, throttle %g, error %g, actions %v\n", latency, *throttle, *errRate, req.Actions)
		return nil
	case "partition", "heal":
		proto := fs.String("proto", "", "tcp, udp or icmp (default all)")
		port := fs.Uint("port", 0, "source or destination port (default all)")
		pos, _, err := parseInterleaved(fs, args[1:])
		if err != nil {
			return err
		}
		if *port > 65535 {
			return usagef("--port %d out of range", *port)
		}
		all := args[0] == "heal" && len(pos) == 0
		if !all && len(pos) != 2 {
			return usagef("faults %s: want two instances A B", args[0])
		}
		p, err := resolvePrefix(*prefix)
		if err != nil {
			return err
		}
		req := partitionRequest{Proto: *proto, Port: uint16(*port)}
		if !all {
			req.A, req.B = pos[0], pos[1]
		}
		if err := newClient(p).post(ctx, "/v1/faults/"+args[0], req); err != nil {
			return err
		}
		switch {
		case all:
			fmt.Fprintln(stdout, "all partitions healed")
		case args[0] == "heal":
			fmt.Fprintf(stdout, "healed %s ↔ %s\n", req.A, req.B)
		default:
			fmt.Fprintf(stdout, "partitioned %s ↔ %s (proto %q, port %d)\n", req.A, req.B, req.Proto, req.Port)
		}
		return nil
	}
	return usagef("faults: unknown kind %q (want api, partition or heal)", args[0])
}

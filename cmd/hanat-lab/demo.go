package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/hanat/hanat/internal/vpcsim"
)

// demoNATs are the NAT instances of the demo, one per AZ, each serving its
// AZ's private host.
var demoNATs = []struct{ nat, app, table string }{
	{"nat-a", "app-a", "private-a"},
	{"nat-c", "app-c", "private-c"},
}

// cmdDemo is `make demo`: the seed's VPC with one hanat NAT instance per
// AZ, each running hanatd with an empty config, shown working end to end.
// Everything is torn down when it finishes, or on Ctrl-C.
func cmdDemo(ctx context.Context, args []string, stdout io.Writer) (err error) {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	hanatd := fs.String("hanatd", "bin/hanatd", "hanatd binary")
	hanatctl := fs.String("hanatctl", "bin/hanatctl", "hanatctl binary")
	hold := fs.Bool("hold", false, "keep the lab up until Ctrl-C so you can try things")
	prefix := fs.String("prefix", "demo", "lab prefix")
	if err := fs.Parse(args); err != nil {
		return usagef("demo: %v", err)
	}
	for _, b := range []*string{hanatd, hanatctl} {
		abs, err := filepath.Abs(*b)
		if err != nil {
			return err
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("demo: %s: %w (run make build first)", abs, err)
		}
		*b = abs
	}
	if os.Geteuid() != 0 {
		return errors.New("demo: needs root (it creates network namespaces)")
	}
	say := func(format string, a ...any) { fmt.Fprintf(stdout, format+"\n", a...) }
	step := func(format string, a ...any) { fmt.Fprintf(stdout, "\n==> "+format+"\n", a...) }

	step("building the seed's VPC in network namespaces (prefix %q)", *prefix)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	lab, err := vpcsim.Up(ctx, log, vpcsim.Options{Prefix: *prefix, PointPrivateRoutesAtNATs: true})
	if err != nil {
		return fmt.Errorf("demo: lab up: %w", err)
	}
	defer func() {
		step("tearing the lab down")
		cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if cerr := lab.Close(cctx); cerr != nil {
			err = errors.Join(err, fmt.Errorf("demo: lab close: %w", cerr))
		} else {
			say("    done: no namespace, link or process of the lab is left")
		}
	}()
	say("    VPC %s 10.0.0.0/16, IGW %s, EC2 API %s (inside the VPC: %s)", lab.VPCID(), lab.IGWID(), lab.EC2Endpoint(), lab.VPCEndpoint())
	for _, name := range lab.Instances() {
		in := lab.Instance(name)
		pub := "no public IP"
		if in.PublicIP.IsValid() {
			pub = "EIP " + in.PublicIP.String()
		}
		say("    %-6s %-10s %s %s  %s  %s", name, in.ID, in.ENIID, in.PrivateIP, in.Subnet, pub)
	}
	for _, d := range demoNATs {
		say("    route table %s (%s): 0.0.0.0/0 -> %s", d.table, lab.RouteTableID(d.table), lab.Instance(d.nat).ENIID)
	}

	step("before hanat: the NATs' source/dest check is on and they do not forward")
	if ip, err := fetch(ctx, lab, "app-a"); err != nil {
		say("    app-a -> http://203.0.113.10/: fails, as it should (%v)", shortErr(err))
	} else {
		say("    app-a -> internet: unexpectedly reached it as %s", ip)
	}

	dir, err := os.MkdirTemp("", "hanat-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sockets := map[string]string{}
	for _, d := range demoNATs {
		step("starting hanatd on %s with an empty config", d.nat)
		sock := filepath.Join(dir, d.nat+".sock")
		cfg := filepath.Join(dir, d.nat+".yaml")
		// The only keys set move the socket and state out of /run and
		// /var/lib, so the demo never touches the host's own hanat.
		body := fmt.Sprintf("# empty apart from where the demo keeps its files\nadmin:\n  socket: %s\nstate_dir: %s\n", sock, filepath.Join(dir, d.nat+"-state"))
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			return err
		}
		p, err := lab.Start(ctx, d.nat, *hanatd, "--config", cfg)
		if err != nil {
			return fmt.Errorf("demo: start hanatd on %s: %w", d.nat, err)
		}
		if err := waitSocket(ctx, *hanatctl, sock, p); err != nil {
			return fmt.Errorf("demo: hanatd on %s: %w\n%s", d.nat, err, p.Output())
		}
		sockets[d.nat] = sock
		say("    ready; it discovered itself over IMDSv2 and disabled its source/dest check")
	}

	step("each private host fetches a page from the internet server through its own AZ's NAT")
	for _, d := range demoNATs {
		nat := lab.Instance(d.nat)
		var ip netip.Addr
		var err error
		for i := 0; i < 50; i++ { // the source/dest check turns off within a second or so
			if ip, err = fetch(ctx, lab, d.app); err == nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("demo: %s through %s: %w", d.app, d.nat, err)
		}
		verdict := "= " + d.nat + "'s EIP"
		if ip != nat.PublicIP {
			verdict = "!= " + d.nat + "'s EIP " + nat.PublicIP.String() + " (unexpected)"
		}
		say("    %s -> http://203.0.113.10/: the server saw %s %s", d.app, ip, verdict)
	}

	step("unsolicited inbound from the internet is refused")
	app := lab.Instance("app-a")
	for _, target := range []string{net.JoinHostPort(app.PrivateIP.String(), "22"), net.JoinHostPort(lab.Instance("nat-a").PublicIP.String(), "8080")} {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		c, err := vpcsim.DialIn(cctx, lab.Internet().NS, "tcp4", target)
		cancel()
		if err == nil {
			c.Close()
			say("    internet -> %s: connected (unexpected)", target)
		} else {
			say("    internet -> %s: refused/dropped (%v)", target, shortErr(err))
		}
	}

	step("hanatctl doctor on nat-a (the seed's troubleshooting checklist)")
	runCtlTo(ctx, stdout, *hanatctl, sockets["nat-a"], "doctor")
	step("hanatctl status on nat-a")
	runCtlTo(ctx, stdout, *hanatctl, sockets["nat-a"], "status")
	step("hanatctl flows on nat-a")
	runCtlTo(ctx, stdout, *hanatctl, sockets["nat-a"], "flows")

	step("what to try next")
	say("    ip netns exec %s-app-a curl -s http://203.0.113.10/     # a private host through its NAT", lab.Prefix())
	say("    %s --socket %s status|flows|doctor", *hanatctl, sockets["nat-a"])
	say("    go test ./internal/e2e/ -run OnEC2 -v                     # the same story as a test")
	if *hold {
		say("\nThe lab stays up until Ctrl-C.")
		<-ctx.Done()
	}
	return nil
}

func fetch(ctx context.Context, lab *vpcsim.Lab, instance string) (netip.Addr, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return lab.FetchSourceIP(ctx, instance)
}

func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

func waitSocket(ctx context.Context, hanatctl, sock string, p *vpcsim.Process) error {
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < 200 && time.Now().Before(deadline); i++ {
		out, err := exec.CommandContext(ctx, hanatctl, "--socket", sock, "--json", "status").CombinedOutput()
		if err == nil && strings.Contains(string(out), `"ready": true`) {
			return nil
		}
		select {
		case <-p.Done():
			return errors.New("hanatd exited")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return errors.New("not ready within 20s")
}

func runCtlTo(ctx context.Context, w io.Writer, hanatctl, sock string, args ...string) {
	cmd := exec.CommandContext(ctx, hanatctl, append([]string{"--socket", sock}, args...)...)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(w, "    (hanatctl %s: %v)\n", strings.Join(args, " "), err)
	}
}

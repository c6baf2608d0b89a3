package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
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
	"slices"
	"strings"
	"time"

	"github.com/hanat/hanat/internal/vpcsim"
	"github.com/hanat/hanat/internal/vpcsim/ec2sim"
)

// The demo's HA pair: nat-a serves AZ a (route table private-a, app-a),
// nat-c serves AZ c; each backs the other up.
const (
	demoNATA, demoNATC = "nat-a", "nat-c"
	demoApp            = "app-a"
	// demoAPILatency is the EC2 API's latency in the lab, about a real
	// region's for the calls a failover makes.
	demoAPILatency = 100 * time.Millisecond
	// demoWithin bounds every wait of the story.
	demoWithin = 30 * time.Second
	// demoObserve is how long the download is watched after a move.
	demoObserve = 3 * time.Second
)

// cmdDemo is `make demo`: the seed's VPC with the hanat HA pair (nat-a,
// nat-c) running state sync, and the HA story told with a download from
// app-a: nat-a crashes mid-download, the route table and the EIP move to
// nat-c, the download continues byte-identical from the same public
// address, nat-a comes back and takes its table back after the hold-down,
// and the download finishes with its digest checked. Each step is printed
// with its time. Everything is torn down when it finishes, or on Ctrl-C.
func cmdDemo(ctx context.Context, args []string, stdout io.Writer) (err error) {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	hanatd := fs.String("hanatd", "bin/hanatd", "hanatd binary")
	hanatctl := fs.String("hanatctl", "bin/hanatctl", "hanatctl binary")
	hold := fs.Bool("hold", false, "keep the lab up until Ctrl-C so you can try things")
	prefix := fs.String("prefix", "demo", "lab prefix")
	syncOn := fs.Bool("sync", true, "the pair's state sync (ha.sync); --sync=false shows the download dying without it")
	holdDown := fs.Duration("hold-down", 5*time.Second, "ha.hold_down: how long nat-a must be back before it takes its table back")
	gwlbOn := fs.Bool("gwlb", false, "the fleet's story instead: three hanatd behind the lab's GWLB, one crashed, one drained")
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
	d := &demo{out: stdout, start: time.Now(), hanatd: *hanatd, hanatctl: *hanatctl, sync: *syncOn, holdDown: *holdDown, nodes: map[string]*demoNode{}}
	if *gwlbOn {
		return cmdDemoGWLB(ctx, d, *prefix, *hold)
	}

	d.step("building the seed's VPC in network namespaces (prefix %q)", *prefix)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	lab, err := vpcsim.Up(ctx, log, vpcsim.Options{Prefix: *prefix, PointPrivateRoutesAtNATs: true})
	if err != nil {
		return fmt.Errorf("demo: lab up: %w", err)
	}
	d.lab = lab
	defer func() {
		err = errors.Join(err, d.teardown(func() {
			for _, n := range d.nodes {
				n.proc.Kill()
			}
		}, nil))
	}()
	if d.dir, err = os.MkdirTemp("", "hanat-demo-"); err != nil {
		return err
	}
	defer os.RemoveAll(d.dir)
	if err := d.run(ctx); err != nil {
		d.say("FAILED: %v", err)
		return fmt.Errorf("demo: %w", err)
	}
	if *hold {
		d.say("\nThe lab stays up until Ctrl-C.")
		<-ctx.Done()
	}
	return nil
}

// demo is one run of the story.
type demo struct {
	out      io.Writer
	start    time.Time
	lab      *vpcsim.Lab
	dir      string
	hanatd   string
	hanatctl string
	sync     bool
	holdDown time.Duration
	key      string
	eips     string // the ha.eips block of both configs
	nodes    map[string]*demoNode
	rtbA     string
	eipA     netip.Addr // nat-a's EIP, the public address of AZ a

	// The download and what the server saw of it.
	srv  *downloadServer
	dl   *download
	side *serverSide
	seen netip.AddrPort
}

type demoNode struct {
	proc   *vpcsim.Process
	socket string
}

// teardown stops what stop stops, closes the lab, then runs after (nil:
// nothing) and says whether all is gone.
func (d *demo) teardown(stop func(), after func() error) error {
	d.step("tearing the lab down")
	stop()
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := d.lab.Close(cctx)
	if err != nil {
		err = fmt.Errorf("demo: lab close: %w", err)
	}
	if after != nil {
		err = errors.Join(err, after())
	}
	if err == nil {
		d.say("done: no namespace, link or process of the lab is left")
	}
	return err
}

// step prints a step with its time since the demo started.
func (d *demo) step(format string, a ...any) {
	fmt.Fprintf(d.out, "\n[%5.1fs] ==> "+format+"\n", append([]any{time.Since(d.start).Seconds()}, a...)...)
}

func (d *demo) say(format string, a ...any) { fmt.Fprintf(d.out, "    "+format+"\n", a...) }

// at prints an event with its time relative to t0.
func (d *demo) at(t0, t time.Time, format string, a ...any) {
	fmt.Fprintf(d.out, "    %+7.3fs  "+format+"\n", append([]any{t.Sub(t0).Seconds()}, a...)...)
}

func (d *demo) run(ctx context.Context) error {
	lab := d.lab
	natA, natC := lab.Instance(demoNATA), lab.Instance(demoNATC)
	d.rtbA, d.eipA = lab.RouteTableID("private-a"), natA.PublicIP
	rtbC := lab.RouteTableID("private-c")
	d.say("VPC %s 10.0.0.0/16, IGW %s, EC2 API %s (inside the VPC: %s), %v API latency", lab.VPCID(), lab.IGWID(), lab.EC2Endpoint(), lab.VPCEndpoint(), demoAPILatency)
	for _, name := range lab.Instances() {
		in := lab.Instance(name)
		pub := "no public IP"
		if in.PublicIP.IsValid() {
			pub = "EIP " + in.PublicIP.String()
		}
		d.say("%-6s %-10s %s %-10s %-9s %s", name, in.ID, in.ENIID, in.PrivateIP, in.Subnet, pub)
	}
	lab.SetAPIFaults(ec2sim.Faults{Latency: demoAPILatency})
	// The tag the IAM policy requires before hanat may write a table.
	if err := lab.Model().Tag([]string{d.rtbA, rtbC}, map[string]string{"hanat": ""}); err != nil {
		return fmt.Errorf("tag the private route tables: %w", err)
	}
	allocA, allocC := lab.EIPAllocationID(natA.PublicIP), lab.EIPAllocationID(natC.PublicIP)
	if allocA == "" || allocC == "" {
		return fmt.Errorf("no allocation ids for the NATs' EIPs %s, %s", natA.PublicIP, natC.PublicIP)
	}
	d.eips = fmt.Sprintf("  eips:\n    - allocation_id: %s\n      route_tables: [%s]\n    - allocation_id: %s\n      route_tables: [%s]\n",
		allocA, d.rtbA, allocC, rtbC)
	d.key = filepath.Join(d.dir, "ha.key")
	if err := os.WriteFile(d.key, []byte(hex.EncodeToString([]byte("hanat-demo-pair-key-0123456789ab"))+"\n"), 0o600); err != nil {
		return err
	}

	d.step("before hanat: the NATs' source/dest check is on and they do not forward")
	if ip, err := fetch(ctx, lab, demoApp); err != nil {
		d.say("%s -> %s: fails, as it should (%v)", demoApp, lab.Internet().HTTPURL(), shortErr(err))
	} else {
		d.say("%s -> internet: unexpectedly reached it as %s", demoApp, ip)
	}

	syncNote := "state sync on"
	if !d.sync {
		syncNote = "state sync OFF (ha.sync: false)"
	}
	d.step("starting the HA pair: hanatd on nat-a and nat-c (peer, key, EIPs that follow their route tables, %s, hold-down %v)", syncNote, d.holdDown)
	for _, name := range []string{demoNATA, demoNATC} {
		if err := d.startNAT(ctx, name); err != nil {
			return err
		}
	}
	t0 := time.Now()
	if err := d.waitPair(ctx); err != nil {
		return err
	}
	d.say("the pair sees each other alive and healthy; the state sync is connected both ways (%.1fs)", time.Since(t0).Seconds())
	d.showOwners()

	d.step("each private host fetches a page from the internet server through its own AZ's NAT")
	for _, p := range []struct{ app, nat string }{{demoApp, demoNATA}, {"app-c", demoNATC}} {
		t0 := time.Now()
		var ip netip.Addr
		err := d.poll(ctx, p.app+" reaches the internet through "+p.nat, func() (bool, error) {
			var err error
			ip, err = fetch(ctx, lab, p.app)
			return err == nil, err
		})
		if err != nil {
			return err
		}
		eip := lab.Instance(p.nat).PublicIP
		d.say("%s -> %s: the server saw %s %s %s's EIP (%.1fs)", p.app, lab.Internet().HTTPURL(), ip, verdict(ip == eip, "=", "!="), p.nat, time.Since(t0).Seconds())
		if ip != eip {
			return fmt.Errorf("%s reaches the internet as %s, not as %s's EIP %s", p.app, ip, p.nat, eip)
		}
	}

	d.step("hanatctl doctor on nat-a")
	runCtlTo(ctx, d.out, d.hanatctl, d.nodes[demoNATA].socket, "doctor")

	if err := d.startDownload(ctx); err != nil {
		return err
	}
	defer d.srv.close()
	defer d.dl.close()
	for _, phase := range []func(context.Context) error{d.crash, d.failback, d.finish} {
		if err := phase(ctx); err != nil {
			return err
		}
	}
	for _, name := range []string{demoNATA, demoNATC} {
		d.step("hanatctl status on %s: its HA section", name)
		d.statusHA(ctx, name)
	}

	d.step("what to try next")
	d.say("ip netns exec %s-app-a curl -s http://203.0.113.10/     # a private host through its NAT", lab.Prefix())
	d.say("%s --socket %s status|flows|doctor|failover", d.hanatctl, d.nodes[demoNATA].socket)
	d.say("make demo DEMO_ARGS=--sync=false                   # the same story without the state sync")
	d.say("go test ./internal/e2e/ -run TestHitlessCrashFailover -v  # the story as a test, 20 streams")
	return nil
}

// startDownload starts the download server and app-a's download, and
// waits until nat-c holds the flow.
func (d *demo) startDownload(ctx context.Context) error {
	lab := d.lab
	downloadAddr := netip.AddrPortFrom(lab.Internet().Addr, downloadPort)
	d.step("app-a starts a long download from the internet server %s (1.6 MB/s, every byte checked)", downloadAddr)
	srv, err := startDownloadServer(lab.Internet().NS, downloadAddr)
	if err != nil {
		return err
	}
	dl, err := startDownload(ctx, func(ctx context.Context) (net.Conn, error) {
		return lab.Dial(ctx, demoApp, "tcp4", downloadAddr.String())
	})
	if err != nil {
		srv.close()
		return fmt.Errorf("start the download from %s: %w", demoApp, err)
	}
	d.srv, d.dl = srv, dl
	if d.side, err = d.serverSide(ctx, srv); err != nil {
		return err
	}
	d.seen = d.side.source
	d.say("app-a %s -> the server sees the download coming from %s %s nat-a's EIP", dl.local, d.seen, verdict(d.seen.Addr() == d.eipA, "=", "!="))
	if d.seen.Addr() != d.eipA {
		return fmt.Errorf("the server sees the download from %s, not from nat-a's EIP %s", d.seen, d.eipA)
	}
	if held, err := d.waitHeld(ctx, demoNATC); err != nil {
		return err
	} else if d.sync {
		d.say("nat-c holds %d of nat-a's flows, the download's among them (the state sync)", held)
	}
	d.natBinding(ctx, demoNATA)
	if err := sleep(ctx, time.Second); err != nil {
		return err
	}
	p := dl.progress()
	if err := p.healthy(); err != nil {
		return fmt.Errorf("before the crash: %w", err)
	}
	d.say("download running: %d bytes, every byte as sent", p.received)
	return nil
}

// crash crashes nat-a and tells what happened to the download.
func (d *demo) crash(ctx context.Context) error {
	d.step("crashing nat-a (EC2 StopInstances --force: SIGKILL, links down, no handover)")
	crashAt := time.Now()
	moved := d.watchMoves(ctx, d.lab.Instance(demoNATC).ENIID, demoNATC)
	if err := d.lab.CrashInstance(ctx, demoNATA); err != nil {
		return fmt.Errorf("crash %s: %w", demoNATA, err)
	}
	d.at(crashAt, time.Now(), "nat-a is down")
	return d.aftermath(ctx, crashAt, <-moved, "the crash", demoNATC)
}

// failback brings nat-a back and tells how it takes its table back.
func (d *demo) failback(ctx context.Context) error {
	d.step("nat-a comes back (EC2 StartInstances, hanatd started); it takes its table back after the %v hold-down", d.holdDown)
	startAt := time.Now()
	moved := d.watchMoves(ctx, d.lab.Instance(demoNATA).ENIID, demoNATA)
	if err := d.lab.StartInstance(ctx, demoNATA); err != nil {
		return fmt.Errorf("start %s: %w", demoNATA, err)
	}
	if err := d.startNAT(ctx, demoNATA); err != nil {
		return err
	}
	d.at(startAt, time.Now(), "nat-a's hanatd is ready")
	if held, err := d.waitHeld(ctx, demoNATA); err != nil {
		return err
	} else if d.sync {
		d.at(startAt, time.Now(), "nat-a holds nat-c's %d flows (its snapshot), so it may count as healthy", held)
	}
	if err := d.poll(ctx, "nat-a and nat-c both up and healthy", func() (bool, error) {
		st, err := d.status(ctx, demoNATA)
		return err == nil && st.HA.Healthy && st.HA.Peer.State == "alive" && st.HA.Peer.Healthy, err
	}); err != nil {
		return err
	}
	d.at(startAt, time.Now(), "nat-a and nat-c both up and healthy: the %v hold-down starts", d.holdDown)
	if err := d.aftermath(ctx, startAt, <-moved, "the failback", demoNATA); err != nil {
		return err
	}
	d.showOwners()
	return nil
}

// finish ends the download unpaced and checks its digest.
func (d *demo) finish(ctx context.Context) error {
	dl := d.dl
	d.step("finishing the download (the rest unpaced) and checking its digest")
	fctx, cancel := context.WithTimeout(ctx, 2*demoWithin)
	defer cancel()
	finishAt, paced := time.Now(), dl.progress().received
	if err := dl.finish(fctx); err != nil {
		return fmt.Errorf("finish the download: %w", err)
	}
	p := dl.progress()
	if err := p.healthy(); err != nil {
		return err
	}
	_, sdigest, serr := d.side.snapshot()
	if serr != nil {
		return fmt.Errorf("the server's side: %w", serr)
	}
	if !slices.Equal(p.digest, sdigest) {
		return fmt.Errorf("the download's sha256 %x differs from what the server sent, %x", p.digest, sdigest)
	}
	d.say("download continued, %d bytes, sha256 %x… = the server's: digest ok (the last %d MiB in %.1fs)",
		p.received, p.digest[:8], (p.received-paced)>>20, time.Since(finishAt).Seconds())
	d.say("one TCP connection from %s to the server as %s from start to end, through a crash and a failback", dl.local, d.seen)
	return nil
}

// statusHA prints the HA section of `hanatctl status` (all of it when
// there is none).
func (d *demo) statusHA(ctx context.Context, name string) {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, d.hanatctl, "--socket", d.nodes[name].socket, "status").CombinedOutput()
	if err != nil {
		d.say("(hanatctl status on %s: %v)", name, err)
	}
	text := string(out)
	if i := strings.Index(text, "\nHA\n"); i >= 0 {
		text = text[i+1:]
	}
	fmt.Fprint(d.out, text)
}

// startNAT writes name's config and starts its hanatd, ready when it
// returns.
func (d *demo) startNAT(ctx context.Context, name string) error {
	peer := demoNATC
	if name == demoNATC {
		peer = demoNATA
	}
	dir, err := os.MkdirTemp(d.dir, name+"-")
	if err != nil {
		return err
	}
	sock, cfg := filepath.Join(dir, "admin.sock"), filepath.Join(dir, "hanat.yaml")
	// The socket and state stay out of /run and /var/lib, so the demo
	// never touches the host's own hanat.
	body := fmt.Sprintf(`admin:
  socket: %s
state_dir: %s
ha:
  peer: %s
  key_file: %s
  interval: 200ms
  dead_after: 5
  preempt: true
  hold_down: %s
  sync: %t
  health:
    targets: ["%s"]
    interval: 500ms
    timeout: 500ms
%s`, sock, filepath.Join(dir, "state"), d.lab.Instance(peer).PrivateIP, d.key, d.holdDown, d.sync, d.lab.Internet().HTTPAddr, d.eips)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		return err
	}
	p, err := d.lab.Start(ctx, name, d.hanatd, "--config", cfg)
	if err != nil {
		return fmt.Errorf("start hanatd on %s: %w", name, err)
	}
	if err := waitSocket(ctx, d.hanatctl, sock, p); err != nil {
		return fmt.Errorf("hanatd on %s: %w\n%s", name, err, lastLines(p.Output(), 20))
	}
	d.nodes[name] = &demoNode{proc: p, socket: sock}
	return nil
}

// nodeStatus is what the demo reads of `hanatctl --json status`.
type nodeStatus struct {
	HA *struct {
		Healthy bool `json:"healthy"`
		Peer    struct {
			State   string `json:"state"`
			Healthy bool   `json:"healthy"`
		} `json:"peer"`
		Sync *struct {
			Enabled bool   `json:"enabled"`
			Standby string `json:"standby"`
			Sent    struct {
				Connected bool `json:"connected"`
			} `json:"sent"`
			Held struct {
				Connected bool `json:"connected"`
				Flows     int  `json:"flows"`
			} `json:"held"`
			LastTakeover *struct {
				At       time.Time `json:"at"`
				Injected int       `json:"injected"`
				Existed  int       `json:"existed"`
				TookMS   int64     `json:"took_ms"`
				Error    string    `json:"error"`
			} `json:"last_takeover"`
		} `json:"sync"`
	} `json:"ha"`
}

func (d *demo) status(ctx context.Context, name string) (nodeStatus, error) {
	var st nodeStatus
	n := d.nodes[name]
	if n == nil {
		return st, fmt.Errorf("no hanatd on %s", name)
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(cctx, d.hanatctl, "--socket", n.socket, "--json", "status").Output()
	if err != nil {
		return st, fmt.Errorf("hanatctl status on %s: %w", name, err)
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return st, fmt.Errorf("hanatctl status on %s: %w", name, err)
	}
	if st.HA == nil {
		return st, fmt.Errorf("hanatd on %s runs no HA", name)
	}
	return st, nil
}

// poll calls ok every 50 ms until it is true, within demoWithin.
func (d *demo) poll(ctx context.Context, what string, ok func() (bool, error)) error {
	deadline := time.Now().Add(demoWithin)
	var last error
	for i := 0; time.Now().Before(deadline) && i < int(demoWithin/(50*time.Millisecond)); i++ {
		done, err := ok()
		if done {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s: not within %v (last: %v)", what, demoWithin, last)
}

// waitPair waits until both nodes see each other alive and healthy and,
// with the sync on, the sync is connected both ways.
func (d *demo) waitPair(ctx context.Context) error {
	return d.poll(ctx, "the pair up", func() (bool, error) {
		for _, name := range []string{demoNATA, demoNATC} {
			st, err := d.status(ctx, name)
			if err != nil {
				return false, err
			}
			h := st.HA
			if !h.Healthy || h.Peer.State != "alive" || !h.Peer.Healthy {
				return false, fmt.Errorf("%s: healthy %v, peer %s (healthy %v)", name, h.Healthy, h.Peer.State, h.Peer.Healthy)
			}
			if d.sync && (h.Sync == nil || !h.Sync.Sent.Connected || !h.Sync.Held.Connected || h.Sync.Standby == "") {
				return false, fmt.Errorf("%s: the state sync is not connected both ways yet", name)
			}
		}
		return true, nil
	})
}

// waitHeld waits until name holds its peer's flows, the download's among
// them (the sync streams the changes within a fraction of a second).
func (d *demo) waitHeld(ctx context.Context, name string) (int, error) {
	if !d.sync {
		d.say("(state sync off: %s holds none of its peer's flows)", name)
		return 0, nil
	}
	var held int
	err := d.poll(ctx, name+" holds its peer's flows", func() (bool, error) {
		st, err := d.status(ctx, name)
		if err != nil {
			return false, err
		}
		if s := st.HA.Sync; s != nil && s.Held.Connected && s.Held.Flows >= 1 {
			held = s.Held.Flows
			return true, nil
		}
		return false, nil
	})
	return held, err
}

// serverSide waits for the server to accept the download.
func (d *demo) serverSide(ctx context.Context, srv *downloadServer) (*serverSide, error) {
	var side *serverSide
	err := d.poll(ctx, "the server accepts the download", func() (bool, error) {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		for _, s := range srv.sent {
			side = s
			return true, nil
		}
		return false, nil
	})
	return side, err
}

// moves is when private-a's default route and nat-a's EIP reached their
// target (zero: not within demoWithin).
type moves struct {
	route, eip time.Time
	eipOn      netip.Addr
}

// watchMoves polls the lab's EC2 model every 10 ms until private-a points
// at eni and nat-a's EIP is on one of instance's addresses.
func (d *demo) watchMoves(ctx context.Context, eni, instance string) <-chan moves {
	ch := make(chan moves, 1)
	go func() {
		var m moves
		deadline := time.Now().Add(demoWithin)
		for time.Now().Before(deadline) && ctx.Err() == nil && (m.route.IsZero() || m.eip.IsZero()) {
			st := d.lab.Status()
			now := time.Now()
			if m.route.IsZero() && st.DefaultRouteENI(d.rtbA) == eni {
				m.route = now
			}
			if m.eip.IsZero() {
				if on, who := eipOf(st, d.eipA); who == instance {
					m.eip, m.eipOn = now, on
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		ch <- m
	}()
	return ch
}

// aftermath tells what happened since t0 (the crash, nat-a's start):
// when nat-a's EIP and private-a's route reached taker, when taker put the
// synced flows into its kernel, the download's longest stall; then, after
// watching the download for demoObserve, that it continues as sent from
// the same public address.
func (d *demo) aftermath(ctx context.Context, t0 time.Time, m moves, event, taker string) error {
	dl, seen := d.dl, d.seen
	if m.eip.IsZero() {
		return fmt.Errorf("after %s: nat-a's EIP %s did not move to %s within %v", event, d.eipA, taker, demoWithin)
	}
	if m.route.IsZero() {
		return fmt.Errorf("after %s: route table private-a (%s) did not move to %s within %v", event, d.rtbA, taker, demoWithin)
	}
	before := dl.progress().received
	if err := sleep(ctx, demoObserve); err != nil {
		return err
	}
	type happening struct {
		at   time.Time
		what string
	}
	hs := []happening{
		{m.eip, fmt.Sprintf("EIP %s (AZ a's public address) -> %s %s", d.eipA, taker, m.eipOn)},
		{m.route, fmt.Sprintf("route table private-a %s 0.0.0.0/0 -> %s %s", d.rtbA, taker, d.lab.Instance(taker).ENIID)},
	}
	if st, err := d.status(ctx, taker); err == nil && st.HA.Sync != nil && st.HA.Sync.LastTakeover != nil {
		if lt := st.HA.Sync.LastTakeover; !lt.At.Before(t0) {
			hs = append(hs, happening{lt.At, fmt.Sprintf("%s puts the synced flows into its conntrack table: %d injected, %d there already (%d ms)", taker, lt.Injected, lt.Existed, lt.TookMS)})
		}
	}
	worst, end := dl.worstStallSince(t0)
	switch {
	case worst < stallMin:
	case end.IsZero():
		hs = append(hs, happening{time.Now(), fmt.Sprintf("the download is stalled, for %.3fs now", worst.Seconds())})
	default:
		hs = append(hs, happening{end, fmt.Sprintf("the download resumes: its longest stall since %s was %.3fs", event, worst.Seconds())})
	}
	slices.SortStableFunc(hs, func(a, b happening) int { return a.at.Compare(b.at) })
	for _, h := range hs {
		d.at(t0, h.at, "%s", h.what)
	}
	if worst < stallMin {
		d.say("no stall: the download never waited %v for data since %s", stallMin, event)
	}
	p := dl.progress()
	if err := p.healthy(); err != nil {
		return fmt.Errorf("after %s: %w", event, err)
	}
	if p.received <= before {
		return fmt.Errorf("after %s: the download is stuck at %d bytes (no data for %.1fs)", event, p.received, worst.Seconds())
	}
	d.say("download continuing: %d bytes so far, every byte as sent (+%d in the last %v)", p.received, p.received-before, demoObserve)
	side := d.srv.side(seen)
	if side == nil {
		return fmt.Errorf("after %s: the server has no download from %s", event, seen)
	}
	sent, _, serr := side.snapshot()
	if serr != nil {
		return fmt.Errorf("after %s: the server's side: %w", event, serr)
	}
	d.say("same public IP:port: the server's socket still talks to %s and has sent %d bytes (only that address can ACK them)", seen, sent)
	d.natBinding(ctx, taker)
	if ip, err := fetch(ctx, d.lab, demoApp); err != nil {
		return fmt.Errorf("after %s: a new request from %s: %w", event, demoApp, err)
	} else if ip != d.eipA {
		return fmt.Errorf("after %s: a new request from %s reaches the server as %s, not AZ a's EIP %s", event, demoApp, ip, d.eipA)
	}
	d.say("same public IP for new connections: a fresh request from %s reaches the server as %s", demoApp, d.eipA)
	return nil
}

// natBinding prints nat's conntrack entry of the download: the NAT
// address and port it translates to, which the IGW maps to the EIP. It
// is an illustration: a missing conntrack tool only says so.
func (d *demo) natBinding(ctx context.Context, nat string) {
	dl := d.dl
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := d.lab.Instance(nat).NS.Run(cctx, "conntrack", "-L", "-p", "tcp", "--src", dl.local.Addr().String(), "--sport", fmt.Sprint(dl.local.Port()))
	if err != nil {
		d.say("(%s's conntrack entry: %v)", nat, shortErr(err))
		return
	}
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "tcp") {
			continue
		}
		var state string
		vals := map[string][]string{}
		for i, f := range strings.Fields(line) {
			if k, v, ok := strings.Cut(f, "="); ok {
				vals[k] = append(vals[k], v)
			} else if i == 3 {
				state = f
			}
		}
		if len(vals["dst"]) < 2 || len(vals["dport"]) < 2 {
			continue
		}
		natAddr := vals["dst"][1] + ":" + vals["dport"][1]
		mapped := ""
		if on, _ := eipOf(d.lab.Status(), d.eipA); on.String() == vals["dst"][1] {
			mapped = fmt.Sprintf(", which the IGW maps to %s", d.eipA)
		}
		d.say("%s's conntrack: %s -> %s:%s %s, NATed to %s%s", nat, dl.local, vals["dst"][0], vals["dport"][0], state, natAddr, mapped)
		return
	}
	d.say("(%s has no conntrack entry for %s)", nat, dl.local)
}

// showOwners prints where the private route tables and the EIPs point.
func (d *demo) showOwners() {
	st := d.lab.Status()
	for _, rt := range st.RouteTables {
		if !strings.HasPrefix(rt.Name, "private-") {
			continue
		}
		d.say("route table %s %s: 0.0.0.0/0 -> %s", rt.Name, rt.ID, st.DefaultRouteENI(rt.ID))
	}
	for _, e := range st.EIPs {
		if on, who := eipOf(st, e.PublicIP); who != "" {
			d.say("EIP %s -> %s %s", e.PublicIP, who, on)
		}
	}
}

// eipOf is the private address an EIP maps to and its instance.
func eipOf(st vpcsim.Status, public netip.Addr) (netip.Addr, string) {
	for _, e := range st.EIPs {
		if e.PublicIP != public || !e.PrivateIP.IsValid() {
			continue
		}
		for _, in := range st.Instances {
			for _, eni := range in.ENIs {
				if eni.PrimaryIP == e.PrivateIP || slices.Contains(eni.SecondaryIPs, e.PrivateIP) {
					return e.PrivateIP, in.Name
				}
			}
		}
		return e.PrivateIP, ""
	}
	return netip.Addr{}, ""
}

// sleep waits for d or the end of ctx.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func verdict(ok bool, yes, no string) string {
	if ok {
		return yes
	}
	return no
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

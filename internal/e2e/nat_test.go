// Package e2e runs a real hanatd in network namespaces the tests create and
// sends real traffic through it. Root only; CI runs as root.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/internal/netns"
)

var bins struct {
	dir      string
	hanatd   string
	hanatctl string
}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("e2e: skipping: needs root to create network namespaces and nftables tables (CI runs as root)")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "hanat-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins.dir = dir
	bins.hanatd = filepath.Join(dir, "hanatd")
	bins.hanatctl = filepath.Join(dir, "hanatctl")
	for bin, pkg := range map[string]string{bins.hanatd: "../../cmd/hanatd", bins.hanatctl: "../../cmd/hanatctl"} {
		out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// hanatd is one daemon process running inside the NAT namespace.
type hanatd struct {
	t      *testing.T
	ns     *netns.NS
	cfg    string
	socket string
	cmd    *exec.Cmd
	log    *bytes.Buffer
}

func startHanatd(t *testing.T, ns *netns.NS, cfgPath, socket string) *hanatd {
	t.Helper()
	h := &hanatd{t: t, ns: ns, cfg: cfgPath, socket: socket, log: &bytes.Buffer{}}
	h.cmd = exec.Command("ip", "netns", "exec", ns.Name, bins.hanatd, "--config", cfgPath)
	h.cmd.Stdout, h.cmd.Stderr = h.log, h.log
	if err := h.cmd.Start(); err != nil {
		t.Fatalf("start hanatd: %v", err)
	}
	t.Cleanup(func() {
		if h.cmd.ProcessState == nil {
			_ = h.cmd.Process.Kill()
			_ = h.cmd.Wait()
		}
		if t.Failed() {
			t.Logf("hanatd log:\n%s", h.log.String())
		}
	})
	h.waitReady()
	return h
}

func (h *hanatd) client() *admin.Client { return admin.NewClient(h.socket) }

func (h *hanatd) waitReady() {
	h.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var last error
	for i := 0; i < 300 && time.Now().Before(deadline); i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := h.client().Status(ctx)
		cancel()
		if err == nil && st.Ready {
			return
		}
		if err == nil {
			last = fmt.Errorf("not ready: %s", st.Datapath.LastError)
		} else {
			last = err
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.t.Fatalf("hanatd not ready within 15s: %v\nlog:\n%s", last, h.log.String())
}

func (h *hanatd) signal(sig syscall.Signal) {
	h.t.Helper()
	// ip netns exec execs hanatd in place, so the pid is hanatd's.
	if err := h.cmd.Process.Signal(sig); err != nil {
		h.t.Fatalf("signal %v: %v", sig, err)
	}
}

func (h *hanatd) wait(timeout time.Duration) {
	h.t.Helper()
	done := make(chan error, 1)
	go func() { done <- h.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(timeout):
		h.t.Fatalf("hanatd did not exit within %v", timeout)
	}
}

func nftList(t *testing.T, ns *netns.NS, args ...string) string {
	t.Helper()
	return mustRun(t, ns, "nft", append([]string{"list"}, args...)...)
}

const keepmeRuleset = `table ip keepme {
	chain forward {
		type filter hook forward priority 10; policy accept;
		ip saddr 203.0.113.0/24 counter accept
	}
}
`

func TestNATEndToEnd(t *testing.T) {
	ctx := context.Background()
	tp := newTopo(t)
	dir := t.TempDir()

	// An unrelated table that hanat must never touch.
	cmd := tp.nat.Command(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(keepmeRuleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("install keepme table: %v: %s", err, out)
	}
	keepBefore := nftList(t, tp.nat, "table", "ip", "keepme")
	fwdBefore := strings.TrimSpace(mustRun(t, tp.nat, "sysctl", "-n", "net.ipv4.ip_forward"))

	socket := filepath.Join(dir, "admin.sock")
	cfgPath := filepath.Join(dir, "hanat.yaml")
	cfg := fmt.Sprintf(`# e2e: private subnet 10.0.11.0/24 behind a NAT whose outside
# interface and SNAT address are discovered from the default route.
private_cidrs: [10.0.11.0/24]
port_forwards:
  - name: web
    protocol: tcp
    port: 8080
    to: 10.0.11.10:80
  - name: dns
    protocol: udp
    port: 5353
    to: 10.0.11.10:53
admin:
  socket: %s
state_dir: %s
`, socket, filepath.Join(dir, "state"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	// Servers: the internet host answers HTTP and UDP echo; the private host
	// runs a web server (reached through the port forward), a UDP service,
	// and an SSH-like listener that must stay unreachable from outside.
	serveHTTP(t, tp.inet, "198.51.100.100:80", "internet")
	inetUDP := serveUDPEcho(t, tp.inet, "198.51.100.100:7")
	serveHTTP(t, tp.priv, "10.0.11.10:80", "private")
	privDNS := serveUDPEcho(t, tp.priv, "10.0.11.10:53")
	privSSH := listenTCP(t, tp.priv, "10.0.11.10:22")
	go acceptAndClose(privSSH)
	privUDPSink := listenUDP(t, tp.priv, "10.0.11.10:9999")
	natHidden := listenTCP(t, tp.nat, "198.51.100.2:2222")
	go acceptAndClose(natHidden)
	natSSH := listenTCP(t, tp.nat, "198.51.100.2:22")
	go acceptAndClose(natSSH)

	// Before hanatd: a fresh namespace does not forward.
	if _, err := httpGet(ctx, tp.priv, "http://198.51.100.100/"); err == nil {
		t.Fatal("private host reached the internet before hanatd ran")
	}

	d := startHanatd(t, tp.nat, cfgPath, socket)

	t.Run("tcp", func(t *testing.T) {
		body, err := httpGet(ctx, tp.priv, "http://198.51.100.100/")
		if err != nil {
			t.Fatalf("private host HTTP through the NAT: %v", err)
		}
		if !strings.HasPrefix(body, "internet saw 198.51.100.2:") {
			t.Fatalf("internet server saw %q, want the NAT address 198.51.100.2 as source", body)
		}
	})
	t.Run("udp", func(t *testing.T) {
		got, err := udpRoundTrip(tp.priv, "198.51.100.100:7", "hello", 2*time.Second)
		if err != nil || got != "hello" {
			t.Fatalf("UDP echo through the NAT: %q, %v", got, err)
		}
		peers := inetUDP.seen()
		if len(peers) == 0 || peers[len(peers)-1].Addr().String() != "198.51.100.2" {
			t.Fatalf("internet UDP server saw %v, want source 198.51.100.2", peers)
		}
		if p := peers[len(peers)-1].Port(); p < 1024 {
			t.Errorf("SNAT source port %d below 1024", p)
		}
	})
	t.Run("icmp", func(t *testing.T) {
		if err := ping(tp.priv, "198.51.100.100", 2*time.Second); err != nil {
			t.Fatalf("ICMP echo through the NAT: %v", err)
		}
		fr, err := d.client().Flows(ctx, admin.FlowsQuery{Protocol: "icmp"})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, f := range fr.Flows {
			if strings.HasPrefix(f.Src, "10.0.11.10") && strings.HasPrefix(f.NATSrc, "198.51.100.2") {
				found = true
			}
		}
		if !found {
			t.Fatalf("no ICMP flow from 10.0.11.10 NATed to 198.51.100.2 in %+v", fr.Flows)
		}
	})
	t.Run("unsolicited_inbound_dropped", func(t *testing.T) {
		if tcpConnects(tp.inet, "10.0.11.10:22", time.Second) {
			t.Error("internet host opened TCP to the private host")
		}
		if udpDelivered(tp.inet, "10.0.11.10:9999", privUDPSink, time.Second) {
			t.Error("internet host delivered UDP to the private host")
		}
		if tcpConnects(tp.inet, "198.51.100.2:2222", time.Second) {
			t.Error("internet host opened TCP to a non-forwarded port on the NAT")
		}
		// host_input.tcp_ports defaults to [22]: SSH to the NAT stays open.
		if !tcpConnects(tp.inet, "198.51.100.2:22", time.Second) {
			t.Error("internet host could not reach SSH (tcp/22) on the NAT, which host_input allows by default")
		}
	})
	t.Run("outside_source_not_forwarded", func(t *testing.T) {
		// The counter already counts the subtests before this one: what
		// this subtest's own traffic added is the delta around it.
		dropsBefore := dropUnsolicited(t, d)
		before := len(inetUDP.seen())
		if _, err := udpRoundTrip(tp.rogue, "198.51.100.100:7", "relay?", time.Second); err == nil {
			t.Error("a source outside the private CIDRs got an answer through the NAT")
		}
		if tcpConnects(tp.rogue, "198.51.100.100:80", time.Second) {
			t.Error("a source outside the private CIDRs opened TCP through the NAT")
		}
		if after := len(inetUDP.seen()); after != before {
			t.Errorf("internet server received %d datagrams from a non-private source", after-before)
		}
		// At least the UDP datagram and one TCP SYN from the rogue source.
		if got := dropUnsolicited(t, d).Packets - dropsBefore.Packets; got < 2 {
			t.Errorf("drop_unsolicited counted %d packets of the non-private source's traffic (%d before, %d after), want at least 2 (its UDP datagram and a TCP SYN)",
				got, dropsBefore.Packets, dropsBefore.Packets+got)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		body, err := httpGet(ctx, tp.nat, "http://127.0.0.1:9469/metrics")
		if err != nil {
			t.Fatalf("scrape the metrics endpoint on the NAT's loopback: %v", err)
		}
		for _, re := range []string{
			`(?m)^hanat_up 1$`,
			`(?m)^hanat_connection_attempts_total [1-9]`,
			`(?m)^hanat_packets_dropped_total\{reason="unsolicited"\} [1-9]`,
			`(?m)^hanat_active_connections \d`,
		} {
			if !regexp.MustCompile(re).MatchString(body) {
				t.Errorf("metrics lack %s:\n%s", re, body)
			}
		}
	})
	t.Run("port_forward", func(t *testing.T) {
		body, err := httpGet(ctx, tp.inet, "http://198.51.100.2:8080/")
		if err != nil {
			t.Fatalf("port forward tcp 8080 → 10.0.11.10:80: %v", err)
		}
		if !strings.HasPrefix(body, "private saw 198.51.100.100:") {
			t.Fatalf("private server answered %q, want it to see the internet client 198.51.100.100", body)
		}
		got, err := udpRoundTrip(tp.inet, "198.51.100.2:5353", "q", 2*time.Second)
		if err != nil || got != "q" {
			t.Fatalf("port forward udp 5353 → 10.0.11.10:53: %q, %v", got, err)
		}
		if p := privDNS.seen(); len(p) == 0 || p[0].Addr().String() != "198.51.100.100" {
			t.Fatalf("private UDP service saw %v", p)
		}
	})
	t.Run("hanatctl", func(t *testing.T) {
		out, err := exec.Command(bins.hanatctl, "--socket", socket, "status").CombinedOutput()
		if err != nil {
			t.Fatalf("hanatctl status: %v\n%s", err, out)
		}
		for _, want := range []string{"198.51.100.2", "10.0.11.0/24", "out0"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("hanatctl status lacks %q:\n%s", want, out)
			}
		}
		out, err = exec.Command(bins.hanatctl, "--socket", socket, "flows").CombinedOutput()
		if err != nil {
			t.Fatalf("hanatctl flows: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "10.0.11.10") {
			t.Errorf("hanatctl flows lacks the private host:\n%s", out)
		}
	})
	t.Run("malformed_admin_request", func(t *testing.T) {
		c := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}}}
		resp, err := c.Post("http://hanatd/v1/reload", "application/json", strings.NewReader(`{"config_path": [`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("malformed reload: status %d, want 400", resp.StatusCode)
		}
		if _, err := d.client().Status(ctx); err != nil {
			t.Fatalf("daemon not answering after a malformed request: %v", err)
		}
	})

	// Idempotence: reload and restart must not change the table at all.
	table1 := nftList(t, tp.nat, "table", "inet", "hanat")
	d.signal(syscall.SIGHUP)
	time.Sleep(300 * time.Millisecond)
	if _, err := d.client().Reload(ctx, admin.ReloadRequest{}); err != nil {
		t.Fatalf("reload over the admin socket: %v", err)
	}
	if table2 := nftList(t, tp.nat, "table", "inet", "hanat"); table2 != table1 {
		t.Fatalf("table changed after reload:\n--- before\n%s\n--- after\n%s", table1, table2)
	}
	d.signal(syscall.SIGTERM)
	d.wait(10 * time.Second)
	// The datapath outlives the daemon.
	if body, err := httpGet(ctx, tp.priv, "http://198.51.100.100/"); err != nil || !strings.Contains(body, "198.51.100.2") {
		t.Fatalf("traffic after SIGTERM: %q, %v", body, err)
	}
	d = startHanatd(t, tp.nat, cfgPath, socket)
	// Traffic ran since table1, so only counter values may differ.
	if table3 := nftList(t, tp.nat, "table", "inet", "hanat"); withoutCounters(table3) != withoutCounters(table1) {
		t.Fatalf("table after restart differs:\n--- first\n%s\n--- now\n%s", table1, table3)
	}

	// SIGKILL: no chance to clean up, NAT keeps working for new flows.
	d.signal(syscall.SIGKILL)
	d.wait(5 * time.Second)
	if body, err := httpGet(ctx, tp.priv, "http://198.51.100.100/"); err != nil || !strings.Contains(body, "198.51.100.2") {
		t.Fatalf("traffic after SIGKILL of hanatd: %q, %v", body, err)
	}

	// --cleanup removes exactly what hanat made.
	out, err := tp.nat.Run(ctx, bins.hanatd, "--cleanup", "--config", cfgPath)
	if err != nil {
		t.Fatalf("hanatd --cleanup: %v\n%s", err, out)
	}
	if tables := nftList(t, tp.nat, "tables"); strings.Contains(tables, "hanat") {
		t.Fatalf("nftables still has hanat after --cleanup:\n%s", tables)
	}
	if got := strings.TrimSpace(mustRun(t, tp.nat, "sysctl", "-n", "net.ipv4.ip_forward")); got != fwdBefore {
		t.Errorf("ip_forward after cleanup = %s, want the original %s", got, fwdBefore)
	}
	if keepAfter := nftList(t, tp.nat, "table", "ip", "keepme"); keepAfter != keepBefore {
		t.Fatalf("unrelated table changed:\n--- before\n%s\n--- after\n%s", keepBefore, keepAfter)
	}
	if _, err := httpGet(ctx, tp.priv, "http://198.51.100.100/"); err == nil {
		t.Fatal("private host still reaches the internet after --cleanup")
	}
}

// dropUnsolicited reads the forward chain's drop_unsolicited counter.
func dropUnsolicited(t *testing.T, d *hanatd) admin.Counter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := d.client().Status(ctx)
	if err != nil {
		t.Fatalf("hanatd status: %v", err)
	}
	c, ok := st.Datapath.Counters["drop_unsolicited"]
	if !ok {
		t.Fatalf("no drop_unsolicited counter in hanatd's status (counters %+v)", st.Datapath.Counters)
	}
	return c
}

var counterRE = regexp.MustCompile(`counter packets \d+ bytes \d+`)

func withoutCounters(table string) string {
	return counterRE.ReplaceAllString(table, "counter")
}

func acceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// ping sends one ICMP echo from ns and waits for the reply.
func ping(ns *netns.NS, dst string, wait time.Duration) error {
	var pc *icmp.PacketConn
	if err := ns.Do(func() (err error) { pc, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0"); return err }); err != nil {
		return fmt.Errorf("icmp socket: %w", err)
	}
	defer pc.Close()
	id := os.Getpid() & 0xffff
	msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: 1, Data: []byte("hanat")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return err
	}
	if _, err := pc.WriteTo(b, &net.IPAddr{IP: net.ParseIP(dst)}); err != nil {
		return fmt.Errorf("send echo: %w", err)
	}
	deadline := time.Now().Add(wait)
	buf := make([]byte, 1500)
	for i := 0; i < 100 && time.Now().Before(deadline); i++ {
		_ = pc.SetReadDeadline(deadline)
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("wait for echo reply: %w", err)
		}
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply || from.String() != dst {
			continue
		}
		return nil
	}
	return fmt.Errorf("no echo reply from %s within %v", dst, wait)
}

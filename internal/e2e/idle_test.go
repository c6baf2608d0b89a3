package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/internal/netns"
)

// The NAT gateway's idle behaviour end to end: with
// sysctl.tcp_established_timeout 10s, a TCP connection through a real
// hanatd is left idle for 13 s; the client's next write must fail with
// ECONNRESET within 1 s (hanat answers the segment of the timed-out flow
// with a RST, as the gateway does), and no segment of the dead flow may
// reach the server (it is neither SNATed again nor forwarded by the fast
// path). Once with the fast path off, once on (generic XDP on veth, the
// flow offloaded before it goes idle).

const (
	idleTimeout = 10 * time.Second
	idleFor     = 13 * time.Second
	idlePort    = 5300
)

func TestIdleTimeoutResets(t *testing.T) {
	for _, mode := range []string{"off", "auto"} {
		t.Run("fastpath_"+mode, func(t *testing.T) { idleSuite(t, mode) })
	}
}

func idleSuite(t *testing.T, mode string) {
	e := &fastEnv{t: t, tp: newTopo(t), mode: mode}
	// Partial checksums of local sockets cannot be fixed up by an XDP
	// rewrite (see fastpath_test.go).
	for _, ns := range []*netns.NS{e.tp.priv, e.tp.inet} {
		mustRun(t, ns, "ethtool", "-K", "eth0", "tx", "off")
	}
	looseBefore := sysctlIn(t, e.tp.nat, "net.netfilter.nf_conntrack_tcp_loose")
	dir := t.TempDir()
	e.pinPath = filepath.Join(mountBPFFS(t), "hanat")
	e.socket = filepath.Join(dir, "admin.sock")
	e.cfgPath = filepath.Join(dir, "hanat.yaml")
	enabled := strconv.FormatBool(mode != "off")
	cfg := fmt.Sprintf("private_cidrs: [10.0.11.0/24]\nsysctl:\n  tcp_established_timeout: %ds\nfastpath:\n  enabled: %s\n  mode: auto\nadmin:\n  socket: %s\nstate_dir: %s\n",
		int(idleTimeout/time.Second), enabled, e.socket, filepath.Join(dir, "state"))
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.start()
	if st := e.status(); (mode == "off") != (st.Datapath.Fastpath == "off") {
		t.Fatalf("fast path %q, want it %s", st.Datapath.Fastpath, mode)
	}
	for key, want := range map[string]string{
		"net.netfilter.nf_conntrack_tcp_loose":               "0",
		"net.netfilter.nf_conntrack_tcp_be_liberal":          "1",
		"net.netfilter.nf_conntrack_tcp_timeout_established": strconv.Itoa(int(idleTimeout / time.Second)),
	} {
		if got := sysctlIn(t, e.tp.nat, key); got != want {
			t.Errorf("%s = %s in the NAT namespace, want %s", key, got, want)
		}
	}

	// The server's side: what its socket receives, and every segment that
	// arrives for its port at all (an nft counter in its own namespace).
	srv := serveIdleEcho(t, e.tp.inet, fmt.Sprintf("%s:%d", inetAddr, idlePort))
	countServerSegments(t, e.tp.inet)

	conn := dialTCP(t, e.tp.priv, fmt.Sprintf("%s:%d", inetAddr, idlePort))
	if err := conn.SetKeepAlive(false); err != nil { // a probe would keep the flow alive
		t.Fatal(err)
	}
	local := conn.LocalAddr().(*net.TCPAddr).AddrPort()
	buf := make([]byte, 64)
	roundTrip := func(i int) {
		t.Helper()
		msg := fmt.Sprintf("line %4d\n", i)
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if _, err := io.ReadFull(conn, buf[:len(msg)]); err != nil || string(buf[:len(msg)]) != msg {
			t.Fatalf("echo %d: %q, %v", i, buf[:len(msg)], err)
		}
	}
	for i := range 20 { // past fastpath.offload_after_packets (16)
		roundTrip(i)
	}
	if mode != "off" {
		e.waitFlow("offloaded before going idle", "tcp", local, func(f admin.Flow, ok bool) bool { return ok && f.Offloaded })
		// The last packets before the pause go through the fast path:
		// the kernel's timer has to be kept (and let go) by the sweep.
		hits := e.counters().hits
		for i := 20; i < 30; i++ {
			roundTrip(i)
		}
		if got := e.counters().hits - hits; got < 10 {
			t.Fatalf("%d fast-path hits for 10 round trips on an offloaded flow, want them on the fast path", got)
		}
	}
	before := e.status().Datapath.Counters
	_, metricsBefore := scrape(t, e.tp.nat)

	time.Sleep(idleFor)

	segsBefore := serverSegments(t, e.tp.inet)
	srvBefore := srv.received()
	start := time.Now()
	_ = conn.SetDeadline(start.Add(3 * time.Second))
	_, werr := conn.Write([]byte("after the idle timeout\n"))
	var rerr error
	if werr == nil {
		_, rerr = conn.Read(buf)
	}
	took := time.Since(start)
	switch err := errors.Join(werr, rerr); {
	case !errors.Is(err, syscall.ECONNRESET):
		t.Errorf("client's write after %v idle: %v after %v, want ECONNRESET", idleFor, err, took)
	case took > time.Second:
		t.Errorf("client reset after %v, want within 1s", took)
	default:
		t.Logf("mode %s: client reset %v after its write (idle %v, timeout %v)", mode, took.Round(time.Microsecond), idleFor, idleTimeout)
	}
	// Give a re-SNATed or fast-path-forwarded segment (and its
	// retransmissions) time to arrive.
	time.Sleep(1500 * time.Millisecond)
	if got := serverSegments(t, e.tp.inet) - segsBefore; got != 0 {
		t.Errorf("%d segment(s) reached the server's port after the flow timed out, want none", got)
	}
	if got := srv.received() - srvBefore; got != 0 {
		t.Errorf("the server's socket received %d bytes of the dead flow, want none", got)
	}

	after := e.status().Datapath.Counters
	if got := after["reset_no_flow"].Packets - before["reset_no_flow"].Packets; got != 1 {
		t.Errorf("hanatctl status counter reset_no_flow grew by %d, want 1", got)
	}
	_, metricsAfter := scrape(t, e.tp.nat)
	const dropped = `hanat_packets_dropped_total{reason="reset_no_flow"}`
	if got := metricsAfter[dropped] - metricsBefore[dropped]; got != 1 {
		t.Errorf("%s grew by %v, want 1", dropped, got)
	}
	if f, ok := e.flow("tcp", local); ok && f.State == "ESTABLISHED" {
		t.Errorf("the dead flow is back in conntrack: %+v", f)
	}

	// --cleanup puts tcp_loose back as it was.
	e.d.signal(syscall.SIGTERM)
	e.d.wait(10 * time.Second)
	if out, err := e.tp.nat.Run(context.Background(), bins.hanatd, "--cleanup", "--config", e.cfgPath, "--pin-path", e.pinPath); err != nil {
		t.Fatalf("hanatd --cleanup: %v\n%s", err, out)
	}
	if got := sysctlIn(t, e.tp.nat, "net.netfilter.nf_conntrack_tcp_loose"); got != looseBefore {
		t.Errorf("nf_conntrack_tcp_loose = %s after --cleanup, want the original %s", got, looseBefore)
	}
}

func sysctlIn(t *testing.T, ns *netns.NS, key string) string {
	t.Helper()
	return strings.TrimSpace(mustRun(t, ns, "sysctl", "-n", key))
}

// idleEcho is a one-connection TCP echo server counting what it received.
type idleEcho struct {
	mu sync.Mutex
	n  int
}

func (s *idleEcho) received() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func serveIdleEcho(t *testing.T, ns *netns.NS, addr string) *idleEcho {
	t.Helper()
	ln := listenTCP(t, ns, addr)
	s := &idleEcho{}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.(*net.TCPConn).SetKeepAlive(false)
		_ = c.SetDeadline(time.Now().Add(60 * time.Second))
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			s.mu.Lock()
			s.n += n
			s.mu.Unlock()
			if err != nil {
				return
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	return s
}

// countServerSegments counts, in the server's own namespace, every TCP
// segment that arrives for idlePort.
func countServerSegments(t *testing.T, ns *netns.NS) {
	t.Helper()
	mustRun(t, ns, "nft", "add", "table", "inet", "idle_test")
	mustRun(t, ns, "nft", "add", "chain", "inet", "idle_test", "in", "{ type filter hook input priority 0; policy accept; }")
	mustRun(t, ns, "nft", "add", "rule", "inet", "idle_test", "in", "tcp", "dport", strconv.Itoa(idlePort), "counter")
}

func serverSegments(t *testing.T, ns *netns.NS) uint64 {
	t.Helper()
	out := mustRun(t, ns, "nft", "list", "chain", "inet", "idle_test", "in")
	i := strings.Index(out, "counter packets ")
	if i < 0 {
		t.Fatalf("no counter in the server's chain:\n%s", out)
	}
	f := strings.Fields(out[i+len("counter packets "):])
	n, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		t.Fatalf("server counter %q: %v", f[0], err)
	}
	return n
}

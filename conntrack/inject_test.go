//go:build linux

package conntrack

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	mdnetlink "github.com/mdlayher/netlink"
	ct "github.com/ti-mo/conntrack"

	"github.com/hanat/hanat/internal/natlab"
	"github.com/hanat/hanat/internal/netns"
	"github.com/hanat/hanat/internal/testtool"
)

// injectLab is newNATLab for the injection tests: root and the host tools
// are required (under CI a missing one fails the test).
func injectLab(t *testing.T, ctx context.Context) *natLab {
	t.Helper()
	if os.Geteuid() != 0 {
		testtool.Unavailable(t, "needs root: creates network namespaces, veths and an nftables NAT table inside them")
	}
	testtool.Require(t, "ip", "nft", "sysctl")
	return newNATLab(t, ctx)
}

func openInjector(t *testing.T, ns *netns.NS) *Injector {
	t.Helper()
	in, err := OpenInjector(nil, NetNSFD(ns.FD()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := in.Close(); err != nil {
			t.Errorf("close injector: %v", err)
		}
	})
	return in
}

var injectFilter = Filter{PrivateCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.11.0/24")}, NATAddrs: []netip.Addr{tNatOut}}

func tcpTuple(src, dst string) Tuple {
	return Tuple{Proto: protoTCP, Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst)}
}

// TestInjectDumpsBack creates one entry of each kind hanat NATs, reads
// them back with Table and deletes them: what goes in comes out, with the
// NAT binding (address and port) exactly as given.
func TestInjectDumpsBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lab := injectLab(t, ctx)
	in := openInjector(t, lab.nat)

	flows := []Flow{
		{ // SNAT TCP, translated to another port than the client's
			Original: tcpTuple("10.0.11.10:40000", "198.51.100.100:443"),
			Reply:    tcpTuple("198.51.100.100:443", "198.51.100.2:61000"),
			TCPState: "ESTABLISHED", Assured: true, SNAT: true, Timeout: 300 * time.Second, Mark: 0x2a,
		},
		{ // SNAT UDP, port kept
			Original: Tuple{Proto: protoUDP, Src: netip.MustParseAddrPort("10.0.11.11:5353"), Dst: netip.MustParseAddrPort("198.51.100.53:53")},
			Reply:    Tuple{Proto: protoUDP, Src: netip.MustParseAddrPort("198.51.100.53:53"), Dst: netip.MustParseAddrPort("198.51.100.2:5353")},
			Assured:  true, SNAT: true, Timeout: 120 * time.Second,
		},
		{ // SNAT ICMP echo, identifier translated
			Original: Tuple{Proto: protoICMP, Src: netip.AddrPortFrom(netip.MustParseAddr("10.0.11.12"), 0), Dst: netip.AddrPortFrom(tInet, 0), ICMPID: 7},
			Reply:    Tuple{Proto: protoICMP, Src: netip.AddrPortFrom(tInet, 0), Dst: netip.AddrPortFrom(tNatOut, 0), ICMPID: 7001},
			SNAT:     true, Timeout: 30 * time.Second,
		},
		{ // port forward (DNAT) TCP
			Original: tcpTuple("203.0.113.9:50000", "198.51.100.2:8080"),
			Reply:    tcpTuple("10.0.11.20:80", "203.0.113.9:50000"),
			TCPState: "ESTABLISHED", Assured: true, DNAT: true, Timeout: 200 * time.Second,
		},
	}
	res, err := in.Inject(ctx, flows)
	if err != nil || res.Created != len(flows) || res.Existed != 0 || res.Failed != 0 {
		t.Fatalf("Inject = %+v, %v; want %d created", res, err, len(flows))
	}

	byOrig := injectedIn(t, ctx, lab.nat)
	for _, want := range flows {
		f, ok := byOrig[want.Original]
		if !ok {
			t.Errorf("injected %s: not in the dump (%d flows dumped: %+v)", want.Original, len(byOrig), byOrig)
			continue
		}
		if f.Reply != want.Reply || f.SNAT != want.SNAT || f.DNAT != want.DNAT || f.Assured != want.Assured ||
			f.Mark != want.Mark || f.TCPState != want.TCPState {
			t.Errorf("injected %+v\ndumped   %+v", want, f)
		}
		if f.Timeout > want.Timeout || f.Timeout < want.Timeout-5*time.Second {
			t.Errorf("%s: timeout %s, want about %s", want.Original, f.Timeout, want.Timeout)
		}
	}

	// Again: every flow is there already.
	res, err = in.Inject(ctx, flows)
	if err != nil || res.Existed != len(flows) || res.Created != 0 || res.Failed != 0 {
		t.Errorf("second Inject = %+v, %v; want %d existed", res, err, len(flows))
	}

	// Failures are counted and named, and do not stop the batch.
	clash := flows[0]
	clash.Original = tcpTuple("10.0.11.99:40000", "198.51.100.100:443") // same translated tuple as flows[0]
	noTime := flows[1]
	noTime.Original.Src = netip.MustParseAddrPort("10.0.11.11:5354")
	noTime.Reply.Dst = netip.MustParseAddrPort("198.51.100.2:5354")
	noTime.Timeout = 0
	fresh := flows[1]
	fresh.Original.Src = netip.MustParseAddrPort("10.0.11.11:5355")
	fresh.Reply.Dst = netip.MustParseAddrPort("198.51.100.2:5355")
	res, err = in.Inject(ctx, []Flow{clash, noTime, fresh})
	if err != nil || res.Created != 1 || res.Failed != 2 || res.Existed != 0 {
		t.Fatalf("Inject(clash, no timeout, fresh) = %+v, %v; want 1 created, 2 failed", res, err)
	}
	if res.FirstErr == nil || !strings.Contains(res.FirstErr.Error(), "10.0.11.99:40000") || !strings.Contains(res.FirstErr.Error(), "in use by another entry") {
		t.Errorf("first error %v: want it to name the clashing flow and why", res.FirstErr)
	}

	for _, f := range append(flows, fresh) {
		if err := in.Delete(ctx, f.Original); err != nil {
			t.Errorf("Delete(%s): %v", f.Original, err)
		}
	}
	if err := in.Delete(ctx, flows[0].Original); !errors.Is(err, ErrNoFlow) {
		t.Errorf("Delete of a deleted entry: %v, want ErrNoFlow", err)
	}
	if left := injectedIn(t, ctx, lab.nat); len(left) != 0 {
		t.Errorf("after deleting all: %d flows left (%+v)", len(left), left)
	}
}

// injectedIn dumps ns's entries of injectFilter by original tuple.
func injectedIn(t *testing.T, ctx context.Context, ns *netns.NS) map[Tuple]Flow {
	t.Helper()
	tb, err := Open(nil, NetNSFD(ns.FD()))
	if err != nil {
		t.Fatal(err)
	}
	defer tb.Close()
	got, err := tb.Flows(ctx, injectFilter)
	if err != nil {
		t.Fatal(err)
	}
	byOrig := make(map[Tuple]Flow, len(got))
	for _, f := range got {
		byOrig[f.Original] = f
	}
	return byOrig
}

// forwardRuleset is the datapath's forward policy in small: a mid-stream
// segment from a private host that conntrack finds INVALID (no entry, with
// nf_conntrack_tcp_loose=0) is answered with a TCP reset, other invalid
// packets are dropped; established flows pass, private hosts may start
// new ones.
const forwardRuleset = `table ip hntestfwd {
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state invalid ip saddr 10.0.11.0/24 tcp flags & (syn | rst | ack) == ack counter name reset_no_flow reject with tcp reset
		ct state invalid counter name drop_invalid drop
		ct state established,related accept
		ct state new ip saddr 10.0.11.0/24 accept
	}
	counter reset_no_flow { }
	counter drop_invalid { }
}
`

// TestInjectedEntryCarriesLiveConnection is the takeover in small: a TCP
// connection through the NAT loses its conntrack entry (as on a node that
// never saw the flow), the entry read before is injected, and the
// connection goes on: a large transfer both ways passes the forward chain,
// translated as before, with no invalid segment. Without the injection the
// next segment is reset, which the control connection shows.
func TestInjectedEntryCarriesLiveConnection(t *testing.T) {
	for _, tc := range []struct {
		name    string
		liberal string // nf_conntrack_tcp_be_liberal
	}{
		{"datapath sysctls", "1"},
		// The entry's own BE_LIBERAL flags must carry it where the
		// namespace tracks windows strictly.
		{"strict window tracking", "0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			lab := injectLab(t, ctx)
			mustRun(t, ctx, lab.nat, "sysctl", "-w", "net.netfilter.nf_conntrack_tcp_loose=0")
			mustRun(t, ctx, lab.nat, "sysctl", "-w", "net.netfilter.nf_conntrack_tcp_be_liberal="+tc.liberal)
			nft := lab.nat.Command(ctx, "nft", "-f", "-")
			nft.Stdin = strings.NewReader(forwardRuleset)
			if out, err := nft.CombinedOutput(); err != nil {
				t.Fatalf("nft -f - in %s: %v: %s", lab.nat.Name, err, out)
			}
			serveTCPEcho(t, lab.inet, "198.51.100.100:7")
			tb, err := Open(nil, NetNSFD(lab.nat.FD()))
			if err != nil {
				t.Fatal(err)
			}
			defer tb.Close()
			in := openInjector(t, lab.nat)

			// dropEntry opens a connection, reads its entry and deletes it.
			dropEntry := func() (net.Conn, Flow) {
				t.Helper()
				c := dialEcho(t, ctx, lab.private, "198.51.100.100:7")
				local := c.LocalAddr().(*net.TCPAddr).AddrPort()
				// Let the delayed ACK of the echo pass first: a segment
				// between the delete and the inject would be reset.
				time.Sleep(300 * time.Millisecond)
				var entry Flow
				flows, err := tb.Flows(ctx, injectFilter)
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range flows {
					if f.Original.Src == local {
						entry = f
					}
				}
				if entry.TCPState != "ESTABLISHED" || !entry.SNAT || entry.Reply.Dst.Addr() != tNatOut {
					t.Fatalf("entry of the connection from %s: %+v (in %+v)", local, entry, flows)
				}
				if err := in.Delete(ctx, entry.Original); err != nil {
					t.Fatal(err)
				}
				return c, entry
			}

			// Control: without the entry the next segment is reset.
			ctl, _ := dropEntry()
			_ = ctl.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := ctl.Write([]byte("after the entry is gone")); err != nil {
				t.Fatalf("control write: %v", err)
			}
			if _, err := ctl.Read(make([]byte, 64)); !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("control connection without an entry: read %v, want a reset (the lab does not catch a missing entry)", err)
			}
			if n := nftCounter(t, ctx, lab.nat, "reset_no_flow"); n == 0 {
				t.Errorf("reset_no_flow counted nothing for the control connection")
			}
			mustRun(t, ctx, lab.nat, "nft", "reset", "counters", "table", "ip", "hntestfwd")

			c, entry := dropEntry()
			res, err := in.Inject(ctx, []Flow{entry})
			if err != nil || res.Created != 1 {
				t.Fatalf("Inject(%+v) = %+v, %v", entry, res, err)
			}
			// 4 MiB each way, far beyond any window the entry could have
			// guessed from one segment.
			payload := bytes.Repeat([]byte("hanat takeover "), 4<<20/15)
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			werr := make(chan error, 1)
			go func() { _, err := c.Write(payload); werr <- err }()
			echo := make([]byte, len(payload))
			if _, err := io.ReadFull(c, echo); err != nil {
				t.Fatalf("echo after the injection: %v (invalid segments: reset %d, dropped %d)", err,
					nftCounter(t, ctx, lab.nat, "reset_no_flow"), nftCounter(t, ctx, lab.nat, "drop_invalid"))
			}
			if err := <-werr; err != nil {
				t.Fatalf("write after the injection: %v", err)
			}
			if !bytes.Equal(echo, payload) {
				t.Fatal("echo differs from what was sent")
			}
			for _, name := range []string{"reset_no_flow", "drop_invalid"} {
				if n := nftCounter(t, ctx, lab.nat, name); n != 0 {
					t.Errorf("%s counted %d packets of the injected flow", name, n)
				}
			}
			after, err := tb.Flows(ctx, injectFilter)
			if err != nil {
				t.Fatal(err)
			}
			var found bool
			for _, f := range after {
				if f.Original == entry.Original {
					found = true
					if f.Reply != entry.Reply || f.TCPState != "ESTABLISHED" || f.OrigBytes < uint64(len(payload)) {
						t.Errorf("entry after the transfer %+v, injected %+v", f, entry)
					}
				}
			}
			if !found {
				t.Errorf("injected entry %s gone after the transfer", entry.Original)
			}
		})
	}
}

// dialEcho connects from ns to an echo server and exchanges one message.
func dialEcho(t *testing.T, ctx context.Context, ns *netns.NS, to string) net.Conn {
	t.Helper()
	c, err := ns.DialContext(ctx, "tcp4", to)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", to, ns.Name, err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	msg := []byte("before the takeover")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, len(msg))); err != nil {
		t.Fatalf("first echo: %v", err)
	}
	return c
}

// nftCounter reads the packets of a named counter of table hntestfwd.
func nftCounter(t *testing.T, ctx context.Context, ns *netns.NS, name string) uint64 {
	t.Helper()
	out, err := ns.Run(ctx, "nft", "list", "counter", "ip", "hntestfwd", name)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(out)
	for i := range f[:len(f)-1] {
		if f[i] == "packets" {
			n, err := strconv.ParseUint(f[i+1], 10, 64)
			if err != nil {
				t.Fatalf("counter %s: %q: %v", name, out, err)
			}
			return n
		}
	}
	t.Fatalf("counter %s: no packets in %q", name, out)
	return 0
}

// BenchmarkInject250k times injecting 250k established, SNATed TCP flows
// into an empty table (the takeover target: 1 s). One op is the whole
// table; the table is flushed between ops, untimed.
//
//	go test ./conntrack/ -run '^$' -bench Inject250k -benchtime 3x
func BenchmarkInject250k(b *testing.B) {
	const n = 250_000
	if os.Geteuid() != 0 {
		testtool.Unavailable(b, "needs root: creates a network namespace and conntrack entries")
	}
	testtool.Require(b, "nft")
	ctx := context.Background()
	ns, err := netns.Create(netns.UniqueName("hnt-ctinj-"))
	if err != nil {
		b.Fatal(err)
	}
	defer ns.Close()
	nft := ns.Command(ctx, "nft", "-f", "-")
	nft.Stdin = strings.NewReader(natlab.SNATRuleset) // loads the kernel's NAT
	if out, err := nft.CombinedOutput(); err != nil {
		b.Fatalf("nft: %v: %s", err, out)
	}
	restore := ensureConntrackMax(b, n+n/8)
	defer restore()

	flows := make([]Flow, n)
	for i := range flows {
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + i%200)}), 443)
		src := netip.AddrPortFrom(tPrivate, uint16(1024+i/200))
		flows[i] = Flow{
			Original: Tuple{Proto: protoTCP, Src: src, Dst: dst},
			Reply:    Tuple{Proto: protoTCP, Src: dst, Dst: netip.AddrPortFrom(tNatOut, src.Port())},
			TCPState: "ESTABLISHED", Assured: true, SNAT: true, Timeout: 350 * time.Second,
		}
	}
	in, err := OpenInjector(nil, NetNSFD(ns.FD()))
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	flusher, err := ct.Dial(&mdnetlink.Config{NetNS: ns.FD()})
	if err != nil {
		b.Fatal(err)
	}
	defer flusher.Close()

	// Where the time goes: the kernel's (system time, creating entries
	// inside sendmsg) and ours (user time, encoding, overlapped).
	var user, sys time.Duration
	b.ResetTimer()
	for range b.N {
		before := cpuTimes(b)
		res, err := in.Inject(ctx, flows)
		if err != nil || res.Created != n {
			b.Fatalf("Inject = %+v, %v", res, err)
		}
		after := cpuTimes(b)
		user += after[0] - before[0]
		sys += after[1] - before[1]
		b.StopTimer()
		if err := flusher.Flush(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	per := b.Elapsed().Seconds() / float64(b.N)
	b.ReportMetric(per, "s/250k")
	b.ReportMetric(per/n*1e9, "ns/flow")
	b.ReportMetric(sys.Seconds()/float64(b.N), "kernel-s/250k")
	b.ReportMetric(user.Seconds()/float64(b.N), "user-s/250k")
}

// cpuTimes is the process's user and system CPU time so far.
func cpuTimes(b *testing.B) [2]time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return [2]time.Duration{time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())}
}

// ensureConntrackMax raises the host's nf_conntrack_max (which bounds every
// namespace's table) to at least want and returns what restores it.
func ensureConntrackMax(b *testing.B, want int) func() {
	const path = "/proc/sys/net/netfilter/nf_conntrack_max"
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	old, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || old >= want {
		return func() {}
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(want)), 0o644); err != nil {
		b.Fatalf("raise %s to %d: %v", path, want, err)
	}
	return func() { _ = os.WriteFile(path, []byte(strconv.Itoa(old)), 0o644) }
}

// TestInjectSeq injects flows as an iterator yields them, across several
// batches: each yielded flow is created once, a bad one fails alone and
// is named, flows beyond the count announced fail without reaching the
// kernel, and Inject of the same flows finds every one existing.
func TestInjectSeq(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lab := injectLab(t, ctx)
	in := openInjector(t, lab.nat)

	const n = 2*injectBatchLen + 88
	flows := make([]Flow, n)
	for i := range flows {
		dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(100 + i%50)}), 443)
		src := netip.AddrPortFrom(netip.MustParseAddr("10.0.11.10"), uint16(20000+i))
		flows[i] = Flow{
			Original: Tuple{Proto: protoTCP, Src: src, Dst: dst},
			Reply:    Tuple{Proto: protoTCP, Src: dst, Dst: netip.AddrPortFrom(tNatOut, src.Port())},
			TCPState: "ESTABLISHED", Assured: true, SNAT: true, Timeout: 300 * time.Second,
		}
	}
	const bad = injectBatchLen + 3
	flows[bad].Timeout = 0
	// Announced one short: the last flow yielded is beyond the count.
	res, err := in.InjectSeq(ctx, n-1, slices.Values(flows))
	if err != nil || res.Created != n-2 || res.Failed != 2 || res.Existed != 0 {
		t.Fatalf("InjectSeq = %+v, %v; want %d created, 2 failed", res, err, n-2)
	}
	if res.FirstErr == nil || !strings.Contains(res.FirstErr.Error(), flows[bad].Original.String()) {
		t.Errorf("first error %v: want it to name flow %d, %s", res.FirstErr, bad, flows[bad].Original)
	}
	have := injectedIn(t, ctx, lab.nat)
	for i, f := range flows {
		if _, in := have[f.Original]; in != (i != bad && i != n-1) {
			t.Errorf("flow %d %s: in the table %v, want %v", i, f.Original, in, !in)
		}
	}
	flows[bad].Timeout = time.Minute
	res, err = in.Inject(ctx, flows)
	if err != nil || res.Created != 2 || res.Existed != n-2 || res.Failed != 0 {
		t.Errorf("Inject of the same flows = %+v, %v; want 2 created, %d existed", res, err, n-2)
	}
}

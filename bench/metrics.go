package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/internal/netns"
)

// The /metrics answer time: the real hanatd (Options.Hanatd) in a
// namespace of its own, with n of its NATed flows in that namespace's
// conntrack table, scraped over HTTP as Prometheus scrapes it.
const (
	// MMetricsPrefix + "10k" / "1M": the median answer time of /metrics,
	// + MetricsMaxSuffix the slowest of the requests.
	MMetricsPrefix   = "metrics_answer_ms_"
	MetricsMaxSuffix = "_max"
	// MCensusPrefix + size: what hanatd's one periodic conntrack reading
	// (conntrack.Census) took at that size, off the request path.
	MCensusPrefix = "metrics_census_dump_ms_"

	// metricsTargetMS is issue 12's bound on the answer time.
	metricsTargetMS = 20
	metricsPort     = 9469
)

var (
	// metricsNAT is the SNAT address of the metrics namespace's hanatd.
	metricsNAT = netip.MustParseAddr("198.51.100.2")
	// metricsDst is the first of the destinations the flows go to.
	metricsDst = netip.MustParseAddr("203.0.113.1")
)

// flowsPerDst is how many flows go to one destination address: each
// keeps its source port through SNAT, so the (NAT address, port,
// destination) tuples stay unique.
const flowsPerDst = 60000

func metricsName(n int) string { return MMetricsPrefix + humanCount(n) }

// RunMetrics measures only the /metrics answer time (no other figure).
// opts.Hanatd, MetricsFlows and MetricsScrapes apply.
func RunMetrics(ctx context.Context, log *slog.Logger, opts Options) (*Report, error) {
	opts.defaults()
	rep := newReport()
	return rep, runMetrics(ctx, log, opts, rep)
}

// runMetrics starts hanatd in a fresh namespace once per size (its census
// reads the table once at start), fills the table up to each size in
// turn, and scrapes /metrics MetricsScrapes times.
func runMetrics(ctx context.Context, log *slog.Logger, opts Options, rep *Report) error {
	if os.Geteuid() != 0 {
		return errors.New("bench: /metrics answer time needs root (network namespace, conntrack)")
	}
	bin, err := findHanatd(opts.Hanatd)
	if err != nil {
		return err
	}
	sizes := slices.Sorted(slices.Values(opts.MetricsFlows))
	biggest := sizes[len(sizes)-1]
	// A namespace's nf_conntrack_max cannot exceed the host's (the kernel
	// refuses it): raise the host's for the run when it is lower, and put
	// it back at the end.
	restore, err := raiseConntrackMax(log, biggest+biggest/8+1024)
	if err != nil {
		return err
	}
	defer restore()

	ns, err := netns.Create(netns.UniqueName("hnt-benchm-"))
	if err != nil {
		return fmt.Errorf("bench metrics: %w", err)
	}
	defer func() {
		if err := ns.Close(); err != nil {
			log.Error("bench metrics: namespace cleanup", "err", err)
		}
	}()
	dir, err := os.MkdirTemp("", "hanat-bench-metrics-")
	if err != nil {
		return fmt.Errorf("bench metrics: %w", err)
	}
	defer os.RemoveAll(dir)
	for _, args := range [][]string{
		{"ip", "link", "set", "lo", "up"},
		// A veth with both ends here (this kernel may lack dummy): the
		// outside interface, which no packet crosses.
		{"ip", "link", "add", natOutX, "type", "veth", "peer", "name", "out1"},
		{"ip", "addr", "add", metricsNAT.String() + "/24", "dev", natOutX},
		{"ip", "link", "set", natOutX, "up"},
		{"ip", "link", "set", "out1", "up"},
		{"ip", "route", "add", "default", "via", "198.51.100.1"},
		{"sysctl", "-q", "-w", fmt.Sprintf("net.netfilter.nf_conntrack_max=%d", biggest+biggest/8+1024)},
	} {
		if _, err := ns.Run(ctx, args[0], args[1:]...); err != nil {
			return fmt.Errorf("bench metrics: %w", err)
		}
	}
	cfgPath := filepath.Join(dir, "hanat.yaml")
	socket := filepath.Join(dir, "admin.sock")
	cfg := fmt.Sprintf(`interfaces: {outside: %s}
private_cidrs: [10.0.0.0/16]
snat: {addresses: [%s]}
sysctl: {manage: false}
fastpath: {enabled: false}
cloud: {discover: false}
ha: {enabled: false}
metrics: {listen: "127.0.0.1:%d"}
admin: {socket: %s, group: root}
state_dir: %s
`, natOutX, metricsNAT, metricsPort, socket, filepath.Join(dir, "state"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("bench metrics: %w", err)
	}
	fill, err := newFlowFiller(ns, newFlowMessage, false)
	if err != nil {
		return err
	}
	defer fill.close()
	client := &http.Client{Transport: &http.Transport{DialContext: ns.DialContext, DisableKeepAlives: true}, Timeout: 30 * time.Second}
	for _, n := range sizes {
		log.Info("bench: /metrics, filling conntrack", "flows", n)
		start := time.Now()
		if err := fill.fillTo(ctx, n); err != nil {
			return err
		}
		log.Info("bench: /metrics, conntrack filled", "flows", n, "took", time.Since(start).Round(time.Millisecond))
		if err := measureMetrics(ctx, log, ns, bin, cfgPath, socket, dir, client, n, opts.MetricsScrapes, rep); err != nil {
			return fmt.Errorf("bench metrics at %d flows: %w", n, err)
		}
	}
	return nil
}

// measureMetrics starts hanatd on a table of n flows, checks that its
// census's first reading counts them all, then times scrapes GETs of
// /metrics.
func measureMetrics(ctx context.Context, log *slog.Logger, ns *netns.NS, bin, cfgPath, socket, dir string,
	client *http.Client, n, scrapes int, rep *Report) (err error) {
	logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("hanatd-%d.log", n)))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := ns.Command(ctx, bin, "--config", cfgPath, "--pin-path", filepath.Join(dir, "pins"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start hanatd: %w", err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		select {
		case <-waited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-waited
		}
		if err != nil {
			if b, rerr := os.ReadFile(logf.Name()); rerr == nil {
				err = fmt.Errorf("%w\nhanatd log:\n%s", err, tail(string(b), 20))
			}
		}
	}()
	// Ready, and the census has read the whole table.
	ac := admin.NewClient(socket)
	var conns admin.Connections
	deadline := time.Now().Add(2 * time.Minute)
	for {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		st, serr := ac.Status(sctx)
		cancel()
		// The table was filled before hanatd started: its first reading
		// must count every flow.
		if serr == nil && st.Ready && st.Connections.AgeMS >= 0 {
			if st.Connections.Active < n {
				return fmt.Errorf("hanatd counted %d of its flows, want %d (status: %+v)", st.Connections.Active, n, st.Connections)
			}
			conns = st.Connections
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("hanatd made no reading of %d flows within 2 minutes (status: %+v, %v)", n, st.Connections, serr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	log.Info("bench: /metrics, hanatd counted the flows", "flows", conns.Active, "census_dump_ms", conns.ReadTookMS)
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	var times []float64
	for i := range scrapes {
		took, active, err := scrape(ctx, client, url)
		if err != nil {
			return err
		}
		if active < float64(n) {
			return fmt.Errorf("scrape %d: hanat_active_connections %v, want %d", i+1, active, n)
		}
		times = append(times, float64(took.Microseconds())/1000)
		time.Sleep(50 * time.Millisecond)
	}
	slices.Sort(times)
	rep.set(metricsName(n), ModeNftables, medianOf(times))
	rep.set(metricsName(n)+MetricsMaxSuffix, ModeNftables, times[len(times)-1])
	rep.set(MCensusPrefix+humanCount(n), ModeNftables, float64(conns.ReadTookMS))
	log.Info("bench: /metrics answer time", "flows", n, "median_ms", medianOf(times), "max_ms", times[len(times)-1], "requests", scrapes)
	return nil
}

// scrape GETs url and returns how long the answer took and the
// hanat_active_connections it carried.
func scrape(ctx context.Context, client *http.Client, url string) (time.Duration, float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0, fmt.Errorf("scrape %s: %w", url, err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	resp.Body.Close()
	took := time.Since(start)
	if err != nil || resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("scrape %s: HTTP %d: %v", url, resp.StatusCode, err)
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "hanat_active_connections "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return took, f, err
		}
	}
	return 0, 0, fmt.Errorf("scrape %s: no hanat_active_connections", url)
}

func tail(s string, lines int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(ls[max(0, len(ls)-lines):], "\n")
}

// findHanatd is the hanatd binary: path when given, else hanatd next to
// this executable (bin/ after make build), else on $PATH.
func findHanatd(path string) (string, error) {
	if path != "" {
		if _, err := os.Stat(path); err != nil {
			return "", fmt.Errorf("bench: hanatd binary: %w", err)
		}
		return path, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "hanatd")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("hanatd")
	if err != nil {
		return "", fmt.Errorf("bench: no hanatd binary (make build, or -hanatd PATH): %w", err)
	}
	return p, nil
}

const hostConntrackMax = "/proc/sys/net/netfilter/nf_conntrack_max"

// raiseConntrackMax makes the host's nf_conntrack_max at least want and
// returns what puts the old value back.
func raiseConntrackMax(log *slog.Logger, want int) (func(), error) {
	return raiseHostSetting(log, hostConntrackMax, "nf_conntrack_max", "a namespace's cannot exceed it", want)
}

// raiseHostSetting makes the host's integer setting at path (a sysctl or
// module parameter, called name) at least want and returns what puts
// the old value back; why is said in the log.
func raiseHostSetting(log *slog.Logger, path, name, why string, want int) (func(), error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	old, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("bench: %s: %q: %w", path, b, err)
	}
	if old >= want {
		return func() {}, nil
	}
	log.Info("bench: raising the host's "+name+" for the run ("+why+")", "from", old, "to", want)
	if err := os.WriteFile(path, []byte(strconv.Itoa(want)), 0o644); err != nil {
		return nil, fmt.Errorf("bench: raise %s to %d: %w", path, want, err)
	}
	return func() {
		if err := os.WriteFile(path, []byte(strconv.Itoa(old)), 0o644); err != nil {
			log.Error("bench: restore the host's "+name, "value", old, "err", err)
		}
	}, nil
}

// flowFiller creates conntrack entries in a namespace with ctnetlink, in
// batches of fillBatch, one sendmsg each: entry i is msg(i). Each entry is
// acknowledged, or with ackLast only a batch's last one (the kernel
// reports every failure anyway), as conntrack.Injector asks.
type flowFiller struct {
	c       *netlink.Conn
	msg     func(i int) (netlink.Message, error)
	ackLast bool
	next    int // flows created so far
}

func newFlowFiller(ns *netns.NS, msg func(int) (netlink.Message, error), ackLast bool) (*flowFiller, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: ns.FD()})
	if err != nil {
		return nil, fmt.Errorf("bench: ctnetlink in %s: %w", ns.Name, err)
	}
	if err := c.SetReadBuffer(4 << 20); err != nil {
		c.Close()
		return nil, fmt.Errorf("bench: ctnetlink read buffer in %s: %w", ns.Name, err)
	}
	return &flowFiller{c: c, msg: msg, ackLast: ackLast}, nil
}

func (f *flowFiller) close() { f.c.Close() }

// ctnetlink constants (linux/netfilter/nfnetlink_conntrack.h).
const (
	ctaTupleOrig  = 1
	ctaTupleReply = 2
	ctaTimeout    = 7
	ctaNATSrc     = 6
	ctaTupleIP    = 1
	ctaTupleProto = 2
	ctaIPv4Src    = 1
	ctaIPv4Dst    = 2
	ctaProtoNum   = 1
	ctaProtoSrc   = 2
	ctaProtoDst   = 3
	ctaNATV4Min   = 1
	ctaNATV4Max   = 2
	ctMsgNew      = 0 // IPCTNL_MSG_CT_NEW
	nfnlSubsysCT  = 1 // NFNL_SUBSYS_CTNETLINK
	fillBatch     = 256
)

// flowTuple is flow i: 10.0.11.10:(1024 + i%flowsPerDst) → metricsDst +
// i/flowsPerDst, port 53.
func flowTuple(i int) (src, dst netip.Addr, sport uint16) {
	d := metricsDst.As4()
	k := uint32(d[0])<<24 | uint32(d[1])<<16 | uint32(d[2])<<8 | uint32(d[3])
	k += uint32(i / flowsPerDst)
	return netip.AddrFrom4([4]byte{10, 0, 11, 10}),
		netip.AddrFrom4([4]byte{byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)}),
		uint16(1024 + i%flowsPerDst)
}

// newFlowMessage is IPCTNL_MSG_CT_NEW for flow i of the /metrics table, a
// UDP entry with source NAT to metricsNAT (the port is kept).
func newFlowMessage(i int) (netlink.Message, error) {
	src, dst, sport := flowTuple(i)
	// The reply as without NAT: the NAT setup finds it differs from the
	// translated tuple, rewrites it and sets IPS_SRC_NAT (a reply given
	// already translated would leave the entry un-NATed).
	e := ctEntry{
		proto:   unix.IPPROTO_UDP,
		orig:    [2]netip.AddrPort{netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, 53)},
		reply:   [2]netip.AddrPort{netip.AddrPortFrom(dst, 53), netip.AddrPortFrom(src, sport)},
		timeout: 3600,
		natSrc:  metricsNAT,
	}
	m, err := e.message()
	if err != nil {
		return netlink.Message{}, fmt.Errorf("conntrack entry %d: %w", i, err)
	}
	return m, nil
}

// ctEntry is one conntrack entry as IPCTNL_MSG_CT_NEW creates it: the
// original and reply tuples (source, destination), the timeout in
// seconds and, when natSrc is valid, source NAT to that address. Nothing
// else: no status, protocol state or mark.
type ctEntry struct {
	proto       uint8
	orig, reply [2]netip.AddrPort
	timeout     uint32
	natSrc      netip.Addr
}

// message encodes e as a create-only request (NLM_F_CREATE|NLM_F_EXCL),
// without NLM_F_ACK.
func (e ctEntry) message() (netlink.Message, error) {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	tuple := func(t [2]netip.AddrPort) func(*netlink.AttributeEncoder) error {
		return func(ae *netlink.AttributeEncoder) error {
			ae.Nested(ctaTupleIP, func(ae *netlink.AttributeEncoder) error {
				ae.Bytes(ctaIPv4Src, t[0].Addr().AsSlice())
				ae.Bytes(ctaIPv4Dst, t[1].Addr().AsSlice())
				return nil
			})
			ae.Nested(ctaTupleProto, func(ae *netlink.AttributeEncoder) error {
				ae.Uint8(ctaProtoNum, e.proto)
				ae.Uint16(ctaProtoSrc, t[0].Port())
				ae.Uint16(ctaProtoDst, t[1].Port())
				return nil
			})
			return nil
		}
	}
	ae.Nested(ctaTupleOrig, tuple(e.orig))
	ae.Nested(ctaTupleReply, tuple(e.reply))
	ae.Uint32(ctaTimeout, e.timeout)
	if e.natSrc.IsValid() {
		ae.Nested(ctaNATSrc, func(ae *netlink.AttributeEncoder) error {
			ae.Bytes(ctaNATV4Min, e.natSrc.AsSlice())
			ae.Bytes(ctaNATV4Max, e.natSrc.AsSlice())
			return nil
		})
	}
	attrs, err := ae.Encode()
	if err != nil {
		return netlink.Message{}, fmt.Errorf("encode conntrack entry %s -> %s: %w", e.orig[0], e.orig[1], err)
	}
	// nfgenmsg: AF_INET, NFNETLINK_V0, res_id 0.
	data := append([]byte{unix.AF_INET, 0, 0, 0}, attrs...)
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(nfnlSubsysCT<<8 | ctMsgNew),
			Flags: netlink.Request | netlink.Create | netlink.Excl,
		},
		Data: data,
	}, nil
}

// fillTo creates entries until n exist (it never removes any).
func (f *flowFiller) fillTo(ctx context.Context, n int) error {
	for f.next < n {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch := make([]netlink.Message, 0, fillBatch)
		for i := f.next; i < n && len(batch) < fillBatch; i++ {
			m, err := f.msg(i)
			if err != nil {
				return err
			}
			if !f.ackLast || i == n-1 || len(batch) == fillBatch-1 {
				m.Header.Flags |= netlink.Acknowledge
			}
			batch = append(batch, m)
		}
		if _, err := f.c.SendMessages(batch); err != nil {
			return fmt.Errorf("bench: send conntrack entries %d..%d: %w", f.next, f.next+len(batch)-1, err)
		}
		want := len(batch)
		if f.ackLast {
			want = 1
		}
		for acked := 0; acked < want; {
			msgs, err := f.c.Receive()
			if err != nil {
				return fmt.Errorf("bench: create conntrack entries %d..%d (raise nf_conntrack_max?): %w", f.next, f.next+len(batch)-1, err)
			}
			acked += len(msgs)
		}
		f.next += len(batch)
	}
	return nil
}

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/smithy-go/encoding/cbor"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/hanat/hanat/internal/cwtest"
	"github.com/hanat/hanat/internal/netns"
)

// scrape reads http://127.0.0.1:9469/metrics inside ns and returns the
// text and its hanat_* samples ("name" or "name{labels}" → value).
func scrape(t *testing.T, ns *netns.NS) (string, map[string]float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{DialContext: dialIn(ns), DisableKeepAlives: true}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:9469/metrics", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("scrape the metrics endpoint on the NAT's loopback: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		t.Fatalf("read /metrics: %v", err)
	}
	samples := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "hanat_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	return string(b), samples
}

// TestMetricsFollowTraffic runs hanatd (slow path only, so every packet
// crosses the rule counters; a one-port SNAT range; UDP timeouts of 1 s)
// and checks on its /metrics, scraped while traffic flows:
//   - the byte and packet counters of both directions grow at least by
//     what was sent each way, and established connections by the flows;
//   - ErrorPortAllocation grows when flows find no free SNAT port;
//   - IdleTimeoutCount grows when an answered UDP flow times out;
//   - the exposition passes promtool's lint.
func TestMetricsFollowTraffic(t *testing.T) {
	ctx := context.Background()
	tp := newTopo(t)
	dir := t.TempDir()
	socket := filepath.Join(dir, "admin.sock")
	cfgPath := filepath.Join(dir, "hanat.yaml")
	cfg := fmt.Sprintf(`private_cidrs: [10.0.11.0/24]
snat:
  ports: 40000-40000
sysctl:
  udp_timeout: 1s
  udp_stream_timeout: 1s
fastpath:
  enabled: false
admin:
  socket: %s
state_dir: %s
`, socket, filepath.Join(dir, "state"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	startHanatd(t, tp.nat, cfgPath, socket)

	// TCP sinks/sources on the internet host: each reads what the client
	// sends until EOF, then writes back `down` bytes. One port per
	// connection: with a one-port SNAT range, only the destination tells
	// the NATed flows apart.
	const up, down, conns = 3 << 20, 5 << 20, 3
	for i := 0; i < conns; i++ {
		ln := listenTCP(t, tp.inet, fmt.Sprintf("198.51.100.100:%d", 9000+i))
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					_ = c.SetDeadline(time.Now().Add(20 * time.Second))
					_, _ = io.Copy(io.Discard, c)
					_, _ = c.Write(make([]byte, down))
				}()
			}
		}()
	}

	body, before := scrape(t, tp.nat)
	if before["hanat_up"] != 1 {
		t.Fatalf("hanat_up = %v before traffic:\n%s", before["hanat_up"], body)
	}
	for i := 0; i < conns; i++ {
		c, err := dialIn(tp.priv)(ctx, "tcp4", fmt.Sprintf("198.51.100.100:%d", 9000+i))
		if err != nil {
			t.Fatalf("connect through the NAT: %v", err)
		}
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := c.Write(make([]byte, up/conns)); err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).CloseWrite()
		n, err := io.Copy(io.Discard, c)
		c.Close()
		if err != nil || n != down {
			t.Fatalf("download %d of %d bytes: %v", n, down, err)
		}
		// Scrape while traffic flows: the counters only go up.
		_, mid := scrape(t, tp.nat)
		for _, name := range []string{"hanat_bytes_out_to_destination_total", "hanat_bytes_in_from_destination_total"} {
			if mid[name] < before[name] {
				t.Errorf("%s went down: %v → %v", name, before[name], mid[name])
			}
		}
	}
	body, after := scrape(t, tp.nat)
	grow := func(name string) float64 { return after[name] - before[name] }
	for _, c := range []struct {
		name string
		min  float64
	}{
		{"hanat_bytes_out_to_destination_total", up},
		{"hanat_bytes_in_from_source_total", up},
		{"hanat_bytes_in_from_destination_total", conns * down},
		{"hanat_bytes_out_to_source_total", conns * down},
		// veth aggregates (GRO/GSO): a "packet" may carry up to 64 KiB.
		{"hanat_packets_out_to_destination_total", up / 65536},
		{"hanat_packets_in_from_source_total", up / 65536},
		{"hanat_packets_in_from_destination_total", conns * down / 65536},
		{"hanat_packets_out_to_source_total", conns * down / 65536},
		{"hanat_connection_attempts_total", conns},
		{"hanat_connections_established_total", conns},
	} {
		if g := grow(c.name); g < c.min {
			t.Errorf("%s grew by %.0f, want at least %.0f", c.name, g, c.min)
		} else {
			t.Logf("%s grew by %.0f (sent %.0f)", c.name, g, c.min)
		}
	}
	// Each flow is counted as established once, not per reply packet.
	if g := grow("hanat_connections_established_total"); g > conns+2 {
		t.Errorf("connections_established grew by %.0f for %d connections", g, conns)
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatalf("lint /metrics: %v", err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}

	t.Run("port_allocation_errors", func(t *testing.T) {
		serveUDPEcho(t, tp.inet, "198.51.100.100:7")
		_, b := scrape(t, tp.nat)
		// The only SNAT port towards 198.51.100.100:7 is taken by the first
		// flow; the next ones (other source ports) find none.
		if _, err := udpRoundTrip(tp.priv, "198.51.100.100:7", "first", 2*time.Second); err != nil {
			t.Fatalf("first UDP flow: %v", err)
		}
		for i := 0; i < 3; i++ {
			if _, err := udpRoundTrip(tp.priv, "198.51.100.100:7", "no port", 200*time.Millisecond); err == nil {
				t.Errorf("flow %d got an answer through a full one-port SNAT range", i)
			}
		}
		_, a := scrape(t, tp.nat)
		if g := a["hanat_port_allocation_errors_total"] - b["hanat_port_allocation_errors_total"]; g < 3 {
			t.Errorf("port_allocation_errors grew by %.0f, want >= 3", g)
		}
	})

	t.Run("idle_timeouts", func(t *testing.T) {
		_, b := scrape(t, tp.nat)
		// Another destination, so the one SNAT port is free for it.
		serveUDPEcho(t, tp.inet, "198.51.100.100:8")
		if _, err := udpRoundTrip(tp.priv, "198.51.100.100:8", "then idle", 2*time.Second); err != nil {
			t.Fatalf("UDP flow: %v", err)
		}
		deadline := time.Now().Add(30 * time.Second)
		var a map[string]float64
		for i := 0; i < 60 && time.Now().Before(deadline); i++ {
			time.Sleep(500 * time.Millisecond)
			// Listing the table reaps expired entries at once (the
			// conntrack GC may take its time in a quiet namespace).
			_, _ = tp.nat.Run(ctx, "conntrack", "-L")
			if _, a = scrape(t, tp.nat); a["hanat_idle_timeouts_total"] > b["hanat_idle_timeouts_total"] {
				return
			}
		}
		t.Errorf("idle_timeouts stayed at %v after a UDP flow idled past its 1 s timeout", a["hanat_idle_timeouts_total"])
	})
}

// cloudWatchEndpoint speaks the CloudWatch protocol the SDK uses (Smithy
// RPC v2 CBOR) for PutMetricData and records what it receives.
type cloudWatchEndpoint struct {
	mu   sync.Mutex
	puts []cwtest.PutMetricData
	errs []string
}

func (e *cloudWatchEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Smithy-Protocol", "rpc-v2-cbor")
	w.Header().Set("Content-Type", "application/cbor")
	put, err := decodePut(r)
	e.mu.Lock()
	defer e.mu.Unlock()
	if err != nil {
		e.errs = append(e.errs, err.Error())
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write(cbor.Encode(cbor.Map{"__type": cbor.String("com.amazonaws.cloudwatch#InvalidParameterValueException"), "message": cbor.String(err.Error())}))
		return
	}
	e.puts = append(e.puts, put)
	_, _ = w.Write(cbor.Encode(cbor.Map{}))
}

func decodePut(r *http.Request) (cwtest.PutMetricData, error) {
	if r.Method != http.MethodPost || !strings.HasSuffix(r.URL.Path, "/operation/PutMetricData") {
		return cwtest.PutMetricData{}, fmt.Errorf("unexpected %s %s", r.Method, r.URL.Path)
	}
	if !strings.Contains(r.Header.Get("Authorization"), "/monitoring/aws4_request") {
		return cwtest.PutMetricData{}, fmt.Errorf("not SigV4-signed for CloudWatch: %q", r.Header.Get("Authorization"))
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return cwtest.PutMetricData{}, err
	}
	return cwtest.DecodePutMetricData(body)
}

// TestCloudWatchPublishing: hanatd on a lab instance publishes the NAT
// gateway's metrics to a CloudWatch endpoint (a local server in the
// instance's namespace) every second, under the configured namespace,
// with the InstanceId IMDS reports, and the byte counters carry the
// traffic a private host sent through it.
func TestCloudWatchPublishing(t *testing.T) {
	lab := upLab(t)
	natA := lab.Instance("nat-a")
	ep := &cloudWatchEndpoint{}
	var ln net.Listener
	if err := natA.NS.Do(func() (err error) { ln, err = net.Listen("tcp4", "127.0.0.1:0"); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: ep, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	n := startLabHanatd(t, lab, "nat-a", fmt.Sprintf(`metrics:
  cloudwatch:
    enabled: true
    namespace: hanat/e2e
    interval: 1s
    endpoint: http://%s
`, ln.Addr()))

	// Traffic through the NAT after the first (baseline) publication.
	for i := 0; i < 3; i++ {
		fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := lab.FetchSourceIP(fctx, "app-a"); err != nil {
			t.Fatalf("private host through hanatd: %v", err)
		}
		cancel()
	}
	want := []string{"ActiveConnectionCount", "BytesInFromDestination", "BytesInFromSource", "BytesOutToDestination",
		"BytesOutToSource", "ConnectionAttemptCount", "ConnectionEstablishedCount", "ErrorPortAllocation",
		"IdleTimeoutCount", "PacketsDropCount", "PacketsInFromDestination", "PacketsInFromSource",
		"PacketsOutToDestination", "PacketsOutToSource"}
	units := map[string]string{"BytesInFromDestination": "Bytes", "BytesInFromSource": "Bytes", "BytesOutToDestination": "Bytes", "BytesOutToSource": "Bytes"}
	sums := map[string]float64{}
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < 200 && time.Now().Before(deadline); i++ {
		time.Sleep(100 * time.Millisecond)
		ep.mu.Lock()
		puts := append([]cwtest.PutMetricData(nil), ep.puts...)
		errs := append([]string(nil), ep.errs...)
		ep.mu.Unlock()
		if len(errs) > 0 {
			t.Fatalf("endpoint refused requests: %v", errs)
		}
		clear(sums)
		full := 0
		for _, p := range puts {
			if p.Namespace != "hanat/e2e" {
				t.Fatalf("namespace %q, want hanat/e2e", p.Namespace)
			}
			names := map[string]bool{}
			for _, d := range p.Data {
				names[d.Name] = true
				sums[d.Name] += d.Value
				if len(d.Dims) != 1 || d.Dims["InstanceId"] != natA.ID {
					t.Fatalf("%s dimensions %v, want only InstanceId=%s", d.Name, d.Dims, natA.ID)
				}
				wantUnit := units[d.Name]
				if wantUnit == "" {
					wantUnit = "Count"
				}
				if d.Unit != wantUnit {
					t.Errorf("%s unit %q, want %q", d.Name, d.Unit, wantUnit)
				}
			}
			if len(names) == len(want) {
				full++
				for _, w := range want {
					if !names[w] {
						t.Fatalf("a period lacks %s: %v", w, names)
					}
				}
			}
		}
		if full > 0 && sums["BytesOutToDestination"] > 0 && sums["BytesInFromDestination"] > 0 && sums["ConnectionEstablishedCount"] >= 3 {
			t.Logf("%d publications; sums %v", len(puts), sums)
			st, err := n.client.Status(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if st.CloudWatch == nil || st.CloudWatch.Publications == 0 || st.CloudWatch.InstanceID != natA.ID {
				t.Errorf("status cloudwatch = %+v", st.CloudWatch)
			}
			// The published increases add up to at most what the daemon
			// counted (the first reading is only a baseline).
			if got, max := sums["BytesOutToDestination"], float64(st.Traffic.BytesOutToDestination); got > max {
				t.Errorf("published BytesOutToDestination %v > counted %v", got, max)
			}
			return
		}
	}
	ep.mu.Lock()
	defer ep.mu.Unlock()
	t.Fatalf("no publication carried the traffic within 20s: %d requests, sums %v", len(ep.puts), sums)
}

// TestMetricsCountFastPath: with the XDP fast path on (generic mode on
// veth), most packets of a bulk transfer never cross the rule counters;
// the byte counters of both directions still grow by at least what was
// sent, because the XDP program's per-direction totals are added.
func TestMetricsCountFastPath(t *testing.T) {
	ctx := context.Background()
	e := &fastEnv{t: t, tp: newTopo(t), mode: "auto"}
	for _, ns := range []*netns.NS{e.tp.priv, e.tp.inet} {
		mustRun(t, ns, "ethtool", "-K", "eth0", "tx", "off")
	}
	dir := t.TempDir()
	e.pinPath = filepath.Join(mountBPFFS(t), "hanat")
	e.socket = filepath.Join(dir, "admin.sock")
	e.cfgPath = filepath.Join(dir, "hanat.yaml")
	cfg := fmt.Sprintf("private_cidrs: [10.0.11.0/24]\nadmin:\n  socket: %s\nstate_dir: %s\n", e.socket, filepath.Join(dir, "state"))
	if err := os.WriteFile(e.cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.start()

	const size = 16 << 20
	ln := listenTCP(t, e.tp.inet, "198.51.100.100:9100")
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		_, _ = io.Copy(io.Discard, c)
		_, _ = c.Write(make([]byte, size))
	}()
	_, before := scrape(t, e.tp.nat)
	c, err := dialIn(e.tp.priv)(ctx, "tcp4", "198.51.100.100:9100")
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	// In chunks, so the flow is offloaded while data still flows.
	chunk := make([]byte, 1<<20)
	for sent := 0; sent < size; sent += len(chunk) {
		if _, err := c.Write(chunk); err != nil {
			t.Fatal(err)
		}
		if sent == 2<<20 {
			time.Sleep(300 * time.Millisecond) // conntrack ASSURED → offloaded
		}
	}
	_ = c.(*net.TCPConn).CloseWrite()
	n, err := io.Copy(io.Discard, c)
	c.Close()
	if err != nil || n != size {
		t.Fatalf("download %d of %d bytes: %v", n, size, err)
	}
	_, after := scrape(t, e.tp.nat)
	grow := func(name string) float64 { return after[name] - before[name] }
	hits := grow("hanat_fastpath_hits_total")
	t.Logf("fast path hits %.0f; out to destination %.0f bytes, in from destination %.0f bytes", hits,
		grow("hanat_bytes_out_to_destination_total"), grow("hanat_bytes_in_from_destination_total"))
	if hits < 100 {
		t.Fatalf("the fast path carried %.0f packets: this test needs it to carry the transfer", hits)
	}
	for _, name := range []string{"hanat_bytes_out_to_destination_total", "hanat_bytes_in_from_source_total",
		"hanat_bytes_in_from_destination_total", "hanat_bytes_out_to_source_total"} {
		if g := grow(name); g < size {
			t.Errorf("%s grew by %.0f, want at least %d (slow path + fast path)", name, g, size)
		}
	}
	if g := grow("hanat_packets_out_to_destination_total") + grow("hanat_packets_in_from_destination_total"); g < hits {
		t.Errorf("packet counters grew by %.0f, fewer than the %.0f fast-path hits", g, hits)
	}
	st := e.status()
	if st.Traffic.Fastpath != "included" {
		t.Errorf("status traffic.fastpath = %q, want included", st.Traffic.Fastpath)
	}
}

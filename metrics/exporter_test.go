package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func fullSnapshot() Snapshot {
	return Snapshot{
		ActiveConnections:        12,
		ConnectionAttempts:       100,
		ConnectionsEstablished:   90,
		BytesOutToDestination:    1000,
		BytesOutToSource:         50000,
		BytesInFromDestination:   50100,
		BytesInFromSource:        1010,
		PacketsOutToDestination:  10,
		PacketsOutToSource:       40,
		PacketsInFromDestination: 41,
		PacketsInFromSource:      11,
		PortAllocationErrors:     2,
		IdleTimeouts:             3,
		PacketsDropped:           map[string]uint64{"invalid": 4, "unsolicited": 5, "not_private": 1},
		Fastpath: &FastpathSnapshot{Hits: 70, Misses: 30, OffloadedFlows: 6,
			Backends: []FastpathBackend{{"ens5", "tc", "tc: native XDP refused"}, {"ens6", "native", ""}}},
		HA: &HASnapshot{
			Role:               "active-active",
			RouteTables:        map[string]bool{"rtb-0a": true, "rtb-0c": false},
			Failovers:          1,
			PeerAlive:          true,
			HeartbeatAge:       150 * time.Millisecond,
			HeartbeatsReceived: 95,
			HeartbeatsMissed:   5,
			HeartbeatsRejected: 2,
		},
	}
}

func staticSource(s Snapshot) Source {
	return func(context.Context) (Snapshot, error) { return s, nil }
}

func newTestExporter(t *testing.T, src Source) *Exporter {
	t.Helper()
	e, err := New(nil, Options{Listen: "127.0.0.1:0", Source: src, Version: "1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// TestLint runs promtool's checks (testutil's linter) over everything the
// exporter exposes, the Go and process collectors included.
func TestLint(t *testing.T) {
	e := newTestExporter(t, staticSource(fullSnapshot()))
	problems, err := testutil.GatherAndLint(e.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	problems, err = testutil.CollectAndLint(&collector{e: e})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint (collector): %s: %s", p.Metric, p.Text)
	}
}

func TestExposition(t *testing.T) {
	e := newTestExporter(t, staticSource(fullSnapshot()))
	want := `
# HELP hanat_active_connections NATed flows in the conntrack table now (NAT gateway: ActiveConnectionCount).
# TYPE hanat_active_connections gauge
hanat_active_connections 12
# HELP hanat_bytes_in_from_destination_total Bytes the NAT received from the internet (NAT gateway: BytesInFromDestination).
# TYPE hanat_bytes_in_from_destination_total counter
hanat_bytes_in_from_destination_total 50100
# HELP hanat_bytes_out_to_destination_total Bytes the NAT sent towards the internet (NAT gateway: BytesOutToDestination).
# TYPE hanat_bytes_out_to_destination_total counter
hanat_bytes_out_to_destination_total 1000
# HELP hanat_packets_in_from_destination_total Packets the NAT received from the internet (NAT gateway: PacketsInFromDestination).
# TYPE hanat_packets_in_from_destination_total counter
hanat_packets_in_from_destination_total 41
# HELP hanat_packets_dropped_total Packets dropped, by reason (NAT gateway: PacketsDropCount is the sum).
# TYPE hanat_packets_dropped_total counter
hanat_packets_dropped_total{reason="invalid"} 4
hanat_packets_dropped_total{reason="not_private"} 1
hanat_packets_dropped_total{reason="unsolicited"} 5
# HELP hanat_port_allocation_errors_total Flows that found no free SNAT source port (NAT gateway: ErrorPortAllocation).
# TYPE hanat_port_allocation_errors_total counter
hanat_port_allocation_errors_total 2
# HELP hanat_idle_timeouts_total Established flows removed after their idle timeout (NAT gateway: IdleTimeoutCount).
# TYPE hanat_idle_timeouts_total counter
hanat_idle_timeouts_total 3
# HELP hanat_connection_attempts_total Flows private hosts started through the NAT (NAT gateway: ConnectionAttemptCount).
# TYPE hanat_connection_attempts_total counter
hanat_connection_attempts_total 100
# HELP hanat_connections_established_total Flows that were answered (NAT gateway: ConnectionEstablishedCount).
# TYPE hanat_connections_established_total counter
hanat_connections_established_total 90
# HELP hanat_fastpath_hits_total Packets the XDP fast path forwarded itself.
# TYPE hanat_fastpath_hits_total counter
hanat_fastpath_hits_total 70
# HELP hanat_fastpath_misses_total Packets the XDP fast path passed to the kernel's slow path.
# TYPE hanat_fastpath_misses_total counter
hanat_fastpath_misses_total 30
# HELP hanat_fastpath_backend The fast path's backend on an interface (native, generic, tc or off) and why, as labels; always 1.
# TYPE hanat_fastpath_backend gauge
hanat_fastpath_backend{backend="tc",interface="ens5",reason="tc: native XDP refused"} 1
hanat_fastpath_backend{backend="native",interface="ens6",reason=""} 1
# HELP hanat_ha_role This node's HA role, as a label; always 1.
# TYPE hanat_ha_role gauge
hanat_ha_role{role="active-active"} 1
# HELP hanat_ha_route_table_owned Whether this node owns the route table (its 0.0.0.0/0 points here): 1 or 0.
# TYPE hanat_ha_route_table_owned gauge
hanat_ha_route_table_owned{route_table="rtb-0a"} 1
hanat_ha_route_table_owned{route_table="rtb-0c"} 0
# HELP hanat_ha_failovers_total Route tables this node took over or gave away.
# TYPE hanat_ha_failovers_total counter
hanat_ha_failovers_total 1
# HELP hanat_ha_heartbeat_age_seconds Seconds since the last valid heartbeat from the peer.
# TYPE hanat_ha_heartbeat_age_seconds gauge
hanat_ha_heartbeat_age_seconds 0.15
# HELP hanat_ha_heartbeat_loss_ratio Missed heartbeats over expected ones since start (0 to 1).
# TYPE hanat_ha_heartbeat_loss_ratio gauge
hanat_ha_heartbeat_loss_ratio 0.05
# HELP hanat_ha_peer_up Whether the peer's heartbeats arrive (1) or not (0).
# TYPE hanat_ha_peer_up gauge
hanat_ha_peer_up 1
# HELP hanat_up Whether the last read of hanatd's counters succeeded (1) or not (0).
# TYPE hanat_up gauge
hanat_up 1
# HELP hanat_build_info hanat's version, as a label; always 1.
# TYPE hanat_build_info gauge
hanat_build_info{version="1.2.3"} 1
`
	names := []string{
		"hanat_active_connections", "hanat_bytes_in_from_destination_total", "hanat_bytes_out_to_destination_total",
		"hanat_packets_in_from_destination_total", "hanat_packets_dropped_total", "hanat_port_allocation_errors_total",
		"hanat_idle_timeouts_total", "hanat_connection_attempts_total", "hanat_connections_established_total",
		"hanat_fastpath_hits_total", "hanat_fastpath_misses_total", "hanat_fastpath_backend", "hanat_ha_role", "hanat_ha_route_table_owned",
		"hanat_ha_failovers_total", "hanat_ha_heartbeat_age_seconds", "hanat_ha_heartbeat_loss_ratio",
		"hanat_ha_peer_up", "hanat_up", "hanat_build_info",
	}
	if err := testutil.GatherAndCompare(e.Registry(), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	// Every NAT gateway quantity is there.
	n, err := testutil.GatherAndCount(e.Registry(),
		"hanat_bytes_out_to_source_total", "hanat_bytes_in_from_source_total",
		"hanat_packets_out_to_destination_total", "hanat_packets_out_to_source_total", "hanat_packets_in_from_source_total",
		"hanat_fastpath_offloaded_flows", "hanat_ha_heartbeats_received_total", "hanat_ha_heartbeats_missed_total",
		"hanat_ha_heartbeats_rejected_total")
	if err != nil || n != 9 {
		t.Errorf("GatherAndCount = %d, %v; want 9 series", n, err)
	}
}

// Without fast path and HA their series are absent, not zero.
func TestOptionalParts(t *testing.T) {
	s := fullSnapshot()
	s.Fastpath, s.HA = nil, nil
	e := newTestExporter(t, staticSource(s))
	n, err := testutil.GatherAndCount(e.Registry(), "hanat_fastpath_hits_total", "hanat_ha_role", "hanat_ha_peer_up")
	if err != nil || n != 0 {
		t.Errorf("fast path / HA series without them: %d, %v", n, err)
	}
	if n, _ := testutil.GatherAndCount(e.Registry(), "hanat_active_connections"); n != 1 {
		t.Errorf("hanat_active_connections missing")
	}
}

func TestSourceError(t *testing.T) {
	e := newTestExporter(t, func(context.Context) (Snapshot, error) { return Snapshot{}, errors.New("daemon busy") })
	want := `
# HELP hanat_up Whether the last read of hanatd's counters succeeded (1) or not (0).
# TYPE hanat_up gauge
hanat_up 0
`
	if err := testutil.GatherAndCompare(e.Registry(), strings.NewReader(want), "hanat_up"); err != nil {
		t.Error(err)
	}
	if n, _ := testutil.GatherAndCount(e.Registry(), "hanat_active_connections"); n != 0 {
		t.Errorf("a failed read must not export stale or zero counters")
	}
}

// A slow Source is bounded by SourceTimeout: the scrape still answers.
func TestSourceTimeout(t *testing.T) {
	e, err := New(nil, Options{Listen: "127.0.0.1:0", SourceTimeout: 50 * time.Millisecond, NoRuntimeMetrics: true,
		Source: func(ctx context.Context) (Snapshot, error) {
			<-ctx.Done()
			return Snapshot{}, ctx.Err()
		}})
	if err != nil {
		t.Fatal(err)
	}
	want := "# HELP hanat_up Whether the last read of hanatd's counters succeeded (1) or not (0).\n# TYPE hanat_up gauge\nhanat_up 0\n"
	if err := testutil.GatherAndCompare(e.Registry(), strings.NewReader(want), "hanat_up"); err != nil {
		t.Errorf("after a timed-out read: %v", err)
	}
}

func TestOptionsValidation(t *testing.T) {
	if _, err := New(nil, Options{}); err == nil {
		t.Error("New without a Source succeeded")
	}
	if _, err := New(nil, Options{Source: staticSource(Snapshot{}), Listen: "no-port"}); err == nil || !strings.Contains(err.Error(), "no-port") {
		t.Errorf("bad listen address: %v", err)
	}
	e, err := New(nil, Options{Source: staticSource(Snapshot{})})
	if err != nil {
		t.Fatal(err)
	}
	if e.opts.Listen != DefaultListen || !strings.HasPrefix(DefaultListen, "127.0.0.1:") {
		t.Errorf("default listen %q, want loopback %s", e.opts.Listen, DefaultListen)
	}
}

// TestServe scrapes Run's HTTP endpoint while the counters grow, then
// stops it.
func TestServe(t *testing.T) {
	var bytesOut atomic.Uint64
	var mu sync.Mutex
	e := newTestExporter(t, func(ctx context.Context) (Snapshot, error) {
		mu.Lock()
		defer mu.Unlock()
		return Snapshot{BytesOutToDestination: bytesOut.Load(), ActiveConnections: 1}, nil
	})
	addr, err := e.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})

	scrape := func() string {
		t.Helper()
		resp, err := http.Get("http://" + addr.String() + MetricsPath)
		if err != nil {
			t.Fatalf("scrape: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("scrape: %s\n%s", resp.Status, b)
		}
		return string(b)
	}
	bytesOut.Store(1500)
	if v := sample(t, scrape(), "hanat_bytes_out_to_destination_total"); v != 1500 {
		t.Errorf("first scrape: %v, want 1500", v)
	}
	bytesOut.Add(1 << 20)
	if v := sample(t, scrape(), "hanat_bytes_out_to_destination_total"); v != 1500+1<<20 {
		t.Errorf("second scrape: %v, want %d", v, 1500+1<<20)
	}
	if out := scrape(); !strings.Contains(out, "go_goroutines") || !strings.Contains(out, "hanat_build_info{version=\"1.2.3\"} 1") {
		t.Errorf("runtime metrics or build info missing")
	}
	// Only loopback was asked for.
	if host, _, _ := net.SplitHostPort(addr.String()); host != "127.0.0.1" {
		t.Errorf("listening on %s", addr)
	}
}

// sample is the value of the unlabelled series name in a text exposition.
func sample(t *testing.T, exposition, name string) float64 {
	t.Helper()
	for l := range strings.Lines(exposition) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), name+" "); ok {
			f, err := strconv.ParseFloat(strings.Fields(v)[0], 64)
			if err != nil {
				t.Fatalf("%s: %v", l, err)
			}
			return f
		}
	}
	t.Fatalf("no %s in the exposition", name)
	return 0
}

// TestSyncExposition: the pair's state sync, both directions.
func TestSyncExposition(t *testing.T) {
	s := fullSnapshot()
	s.HA.Sync = &SyncSnapshot{SentConnected: true, HeldConnected: false, FlowsSent: 250, FlowsHeld: 240,
		Lag: 30 * time.Millisecond, LastFullSync: time.Unix(1700000000, 0), Errors: map[string]uint64{"auth_failed": 3}, Injected: 21}
	e := newTestExporter(t, staticSource(s))
	want := `
# HELP hanat_sync_connected 1 while the state sync to (direction=sent) or from (direction=held) the peer is connected.
# TYPE hanat_sync_connected gauge
hanat_sync_connected{direction="held"} 0
hanat_sync_connected{direction="sent"} 1
# HELP hanat_sync_flows Flows the peer holds of this node (direction=sent) and of the peer's held here (direction=held).
# TYPE hanat_sync_flows gauge
hanat_sync_flows{direction="held"} 240
hanat_sync_flows{direction="sent"} 250
# HELP hanat_sync_lag_seconds Time from a flow change to the peer's acknowledgement of it.
# TYPE hanat_sync_lag_seconds gauge
hanat_sync_lag_seconds 0.03
# HELP hanat_sync_last_full_sync_timestamp_seconds When the peer's last full snapshot arrived (unix time; absent before the first).
# TYPE hanat_sync_last_full_sync_timestamp_seconds gauge
hanat_sync_last_full_sync_timestamp_seconds 1.7e+09
# HELP hanat_sync_errors_total State sync messages dropped and sessions failed, by reason.
# TYPE hanat_sync_errors_total counter
hanat_sync_errors_total{reason="auth_failed"} 3
# HELP hanat_sync_takeover_injected_flows Flows the last takeover put in the kernel before the routes moved.
# TYPE hanat_sync_takeover_injected_flows gauge
hanat_sync_takeover_injected_flows 21
`
	if err := testutil.GatherAndCompare(e.Registry(), strings.NewReader(want), "hanat_sync_connected", "hanat_sync_flows",
		"hanat_sync_lag_seconds", "hanat_sync_last_full_sync_timestamp_seconds", "hanat_sync_errors_total",
		"hanat_sync_takeover_injected_flows"); err != nil {
		t.Error(err)
	}
	s.HA.Sync = nil
	e2 := newTestExporter(t, staticSource(s))
	if n, err := testutil.GatherAndCount(e2.Registry(), "hanat_sync_connected"); err != nil || n != 0 {
		t.Errorf("sync off: %d series, %v; want none", n, err)
	}
}

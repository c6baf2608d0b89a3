package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Defaults of Options.
const (
	// DefaultListen is loopback only: a NAT instance's metrics are for a
	// local agent (Prometheus node agent, CloudWatch agent) or an SSH
	// tunnel, not for the internet the NAT faces.
	DefaultListen = "127.0.0.1:9469"
	// DefaultSourceTimeout bounds one Source call.
	DefaultSourceTimeout = 5 * time.Second
	// MetricsPath is where the exposition is served.
	MetricsPath = "/metrics"
)

// Options configures the exporter.
type Options struct {
	// Listen is the HTTP listen address (default DefaultListen). A port
	// of 0 picks a free one (tests); Addr tells which.
	Listen string
	// Source returns the daemon's counters; required.
	Source Source
	// SourceTimeout bounds one Source call (default DefaultSourceTimeout).
	SourceTimeout time.Duration
	// Version is exported as hanat_build_info{version}.
	Version string
	// NoRuntimeMetrics leaves out the Go runtime and process collectors
	// (go_*, process_*).
	NoRuntimeMetrics bool
}

// Exporter serves the Prometheus endpoint.
type Exporter struct {
	log      *slog.Logger
	opts     Options
	registry *prometheus.Registry

	mu  sync.Mutex
	ln  net.Listener
	ctx context.Context // Run's, for Source calls; Background before
}

// New builds the exporter; nothing listens before Listen or Run.
func New(log *slog.Logger, opts Options) (*Exporter, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Source == nil {
		return nil, errors.New("metrics: Options.Source is required")
	}
	if opts.Listen == "" {
		opts.Listen = DefaultListen
	}
	if _, _, err := net.SplitHostPort(opts.Listen); err != nil {
		return nil, fmt.Errorf("metrics: listen address %q: %w", opts.Listen, err)
	}
	if opts.SourceTimeout <= 0 {
		opts.SourceTimeout = DefaultSourceTimeout
	}
	e := &Exporter{log: log, opts: opts, registry: prometheus.NewRegistry(), ctx: context.Background()}
	if err := e.registry.Register(&collector{e: e}); err != nil {
		return nil, fmt.Errorf("metrics: register hanat collector: %w", err)
	}
	if !opts.NoRuntimeMetrics {
		if err := e.registry.Register(collectors.NewGoCollector()); err != nil {
			return nil, fmt.Errorf("metrics: register Go collector: %w", err)
		}
		if err := e.registry.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
			return nil, fmt.Errorf("metrics: register process collector: %w", err)
		}
	}
	return e, nil
}

// Registry is the exporter's registry (for tests and linting).
func (e *Exporter) Registry() *prometheus.Registry { return e.registry }

// Handler serves the exposition (what Run serves at MetricsPath).
func (e *Exporter) Handler() http.Handler {
	return promhttp.HandlerFor(e.registry, promhttp.HandlerOpts{
		ErrorLog:          slogErrorLog{e.log},
		ErrorHandling:     promhttp.ContinueOnError,
		Timeout:           e.opts.SourceTimeout + 5*time.Second,
		EnableOpenMetrics: true,
	})
}

// Listen binds the listen address now, so a bad or busy address is an
// error at start-up rather than in Run. Run calls it when needed.
func (e *Exporter) Listen() (net.Addr, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ln != nil {
		return e.ln.Addr(), nil
	}
	ln, err := net.Listen("tcp", e.opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("metrics: listen on %s: %w", e.opts.Listen, err)
	}
	e.ln = ln
	return ln.Addr(), nil
}

// Addr is the bound address, nil before Listen.
func (e *Exporter) Addr() net.Addr {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ln == nil {
		return nil
	}
	return e.ln.Addr()
}

// Run serves the endpoint until ctx is done, then shuts the server down.
func (e *Exporter) Run(ctx context.Context) error {
	addr, err := e.Listen()
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.ctx = ctx
	ln := e.ln
	e.mu.Unlock()

	mux := http.NewServeMux()
	mux.Handle(MetricsPath, e.Handler())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintf(w, "hanat metrics: %s\n", MetricsPath)
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	e.log.Info("metrics endpoint listening", "addr", addr.String(), "path", MetricsPath)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics: serve on %s: %w", addr, err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		return fmt.Errorf("metrics: shut down server on %s: %w", addr, err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: serve on %s: %w", addr, err)
	}
	return nil
}

func (e *Exporter) snapshot() (Snapshot, error) {
	e.mu.Lock()
	base := e.ctx
	e.mu.Unlock()
	ctx, cancel := context.WithTimeout(base, e.opts.SourceTimeout)
	defer cancel()
	return e.opts.Source(ctx)
}

// slogErrorLog carries promhttp's errors into slog.
type slogErrorLog struct{ log *slog.Logger }

func (l slogErrorLog) Println(v ...any) { l.log.Warn("metrics: " + fmt.Sprint(v...)) }

// desc is one metric of the collector.
type desc struct {
	*prometheus.Desc
	typ prometheus.ValueType
}

func newDesc(name, help string, typ prometheus.ValueType, labels ...string) desc {
	return desc{prometheus.NewDesc(prometheus.BuildFQName("hanat", "", name), help, labels, nil), typ}
}

// The metrics, with the NAT gateway's CloudWatch name in the help text
// where there is one.
var (
	descUp        = newDesc("up", "Whether the last read of hanatd's counters succeeded (1) or not (0).", prometheus.GaugeValue)
	descBuildInfo = newDesc("build_info", "hanat's version, as a label; always 1.", prometheus.GaugeValue, "version")

	descActive      = newDesc("active_connections", "NATed flows in the conntrack table now (NAT gateway: ActiveConnectionCount).", prometheus.GaugeValue)
	descActiveAge   = newDesc("active_connections_age_seconds", "Age of the active_connections count: hanatd counts the conntrack table periodically, at most a small share of a CPU, never per scrape.", prometheus.GaugeValue)
	descAttempts    = newDesc("connection_attempts_total", "Flows private hosts started through the NAT (NAT gateway: ConnectionAttemptCount).", prometheus.CounterValue)
	descEstablished = newDesc("connections_established_total", "Flows that were answered (NAT gateway: ConnectionEstablishedCount).", prometheus.CounterValue)

	descBytesOutDst = newDesc("bytes_out_to_destination_total", "Bytes the NAT sent towards the internet (NAT gateway: BytesOutToDestination).", prometheus.CounterValue)
	descBytesOutSrc = newDesc("bytes_out_to_source_total", "Bytes the NAT sent to private hosts (NAT gateway: BytesOutToSource).", prometheus.CounterValue)
	descBytesInDst  = newDesc("bytes_in_from_destination_total", "Bytes the NAT received from the internet (NAT gateway: BytesInFromDestination).", prometheus.CounterValue)
	descBytesInSrc  = newDesc("bytes_in_from_source_total", "Bytes the NAT received from private hosts (NAT gateway: BytesInFromSource).", prometheus.CounterValue)
	descPktsOutDst  = newDesc("packets_out_to_destination_total", "Packets the NAT sent towards the internet (NAT gateway: PacketsOutToDestination).", prometheus.CounterValue)
	descPktsOutSrc  = newDesc("packets_out_to_source_total", "Packets the NAT sent to private hosts (NAT gateway: PacketsOutToSource).", prometheus.CounterValue)
	descPktsInDst   = newDesc("packets_in_from_destination_total", "Packets the NAT received from the internet (NAT gateway: PacketsInFromDestination).", prometheus.CounterValue)
	descPktsInSrc   = newDesc("packets_in_from_source_total", "Packets the NAT received from private hosts (NAT gateway: PacketsInFromSource).", prometheus.CounterValue)

	descPortErrors = newDesc("port_allocation_errors_total", "Flows that found no free SNAT source port (NAT gateway: ErrorPortAllocation).", prometheus.CounterValue)
	descIdle       = newDesc("idle_timeouts_total", "Established flows removed after their idle timeout (NAT gateway: IdleTimeoutCount).", prometheus.CounterValue)
	descDropped    = newDesc("packets_dropped_total", "Packets dropped, by reason (NAT gateway: PacketsDropCount is the sum).", prometheus.CounterValue, "reason")

	descFastHits    = newDesc("fastpath_hits_total", "Packets the XDP fast path forwarded itself.", prometheus.CounterValue)
	descFastMisses  = newDesc("fastpath_misses_total", "Packets the XDP fast path passed to the kernel's slow path.", prometheus.CounterValue)
	descFastFlows   = newDesc("fastpath_offloaded_flows", "Flows in the XDP fast path's map now.", prometheus.GaugeValue)
	descFastBackend = newDesc("fastpath_backend", "The fast path's backend on an interface (native, generic, tc or off) and why, as labels; always 1.", prometheus.GaugeValue, "interface", "backend", "reason")

	descHARole      = newDesc("ha_role", "This node's HA role, as a label; always 1.", prometheus.GaugeValue, "role")
	descHATable     = newDesc("ha_route_table_owned", "Whether this node owns the route table (its 0.0.0.0/0 points here): 1 or 0.", prometheus.GaugeValue, "route_table")
	descHAFailovers = newDesc("ha_failovers_total", "Route tables this node took over or gave away.", prometheus.CounterValue)
	descHAPeerUp    = newDesc("ha_peer_up", "Whether the peer's heartbeats arrive (1) or not (0).", prometheus.GaugeValue)
	descHAAge       = newDesc("ha_heartbeat_age_seconds", "Seconds since the last valid heartbeat from the peer.", prometheus.GaugeValue)
	descHARecv      = newDesc("ha_heartbeats_received_total", "Valid heartbeats received from the peer.", prometheus.CounterValue)
	descHAMissed    = newDesc("ha_heartbeats_missed_total", "Heartbeats from the peer that never arrived (by sequence number).", prometheus.CounterValue)
	descHARejected  = newDesc("ha_heartbeats_rejected_total", "Heartbeats dropped as unauthenticated, replayed, stale or malformed.", prometheus.CounterValue)
	descHALoss      = newDesc("ha_heartbeat_loss_ratio", "Missed heartbeats over expected ones since start (0 to 1).", prometheus.GaugeValue)
	descSyncUp      = newDesc("sync_connected", "1 while the state sync to (direction=sent) or from (direction=held) the peer is connected.", prometheus.GaugeValue, "direction")
	descSyncFlows   = newDesc("sync_flows", "Flows the peer holds of this node (direction=sent) and of the peer's held here (direction=held).", prometheus.GaugeValue, "direction")
	descSyncLag     = newDesc("sync_lag_seconds", "Time from a flow change to the peer's acknowledgement of it.", prometheus.GaugeValue)
	descSyncFull    = newDesc("sync_last_full_sync_timestamp_seconds", "When the peer's last full snapshot arrived (unix time; absent before the first).", prometheus.GaugeValue)
	descSyncErrors  = newDesc("sync_errors_total", "State sync messages dropped and sessions failed, by reason.", prometheus.CounterValue, "reason")
	descSyncInject  = newDesc("sync_takeover_injected_flows", "Flows the last takeover put in the kernel before the routes moved.", prometheus.GaugeValue)
)

var allDescs = []desc{
	descUp, descBuildInfo, descActive, descActiveAge, descAttempts, descEstablished,
	descBytesOutDst, descBytesOutSrc, descBytesInDst, descBytesInSrc,
	descPktsOutDst, descPktsOutSrc, descPktsInDst, descPktsInSrc,
	descPortErrors, descIdle, descDropped,
	descFastHits, descFastMisses, descFastFlows, descFastBackend,
	descHARole, descHATable, descHAFailovers, descHAPeerUp, descHAAge,
	descHARecv, descHAMissed, descHARejected, descHALoss,
	descSyncUp, descSyncFlows, descSyncLag, descSyncFull, descSyncErrors, descSyncInject,
}

// collector turns a Snapshot into metrics on every scrape (an unchecked
// collector would hide mistakes; every Desc is declared).
type collector struct{ e *Exporter }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d.Desc
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	if c.e.opts.Version != "" {
		ch <- prometheus.MustNewConstMetric(descBuildInfo.Desc, descBuildInfo.typ, 1, c.e.opts.Version)
	}
	s, err := c.e.snapshot()
	if err != nil {
		c.e.log.Warn("metrics: read hanatd's counters", "err", err)
		ch <- prometheus.MustNewConstMetric(descUp.Desc, descUp.typ, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(descUp.Desc, descUp.typ, 1)
	collectSnapshot(ch, &s)
}

func collectSnapshot(ch chan<- prometheus.Metric, s *Snapshot) {
	emit := func(d desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d.Desc, d.typ, v, labels...)
	}
	emit(descActive, float64(s.ActiveConnections))
	if s.ActiveConnectionsAge >= 0 {
		emit(descActiveAge, s.ActiveConnectionsAge.Seconds())
	}
	emit(descAttempts, float64(s.ConnectionAttempts))
	emit(descEstablished, float64(s.ConnectionsEstablished))
	emit(descBytesOutDst, float64(s.BytesOutToDestination))
	emit(descBytesOutSrc, float64(s.BytesOutToSource))
	emit(descBytesInDst, float64(s.BytesInFromDestination))
	emit(descBytesInSrc, float64(s.BytesInFromSource))
	emit(descPktsOutDst, float64(s.PacketsOutToDestination))
	emit(descPktsOutSrc, float64(s.PacketsOutToSource))
	emit(descPktsInDst, float64(s.PacketsInFromDestination))
	emit(descPktsInSrc, float64(s.PacketsInFromSource))
	emit(descPortErrors, float64(s.PortAllocationErrors))
	emit(descIdle, float64(s.IdleTimeouts))
	for _, reason := range sortedKeys(s.PacketsDropped) {
		emit(descDropped, float64(s.PacketsDropped[reason]), reason)
	}
	if f := s.Fastpath; f != nil {
		emit(descFastHits, float64(f.Hits))
		emit(descFastMisses, float64(f.Misses))
		emit(descFastFlows, float64(f.OffloadedFlows))
		for _, b := range f.Backends {
			emit(descFastBackend, 1, b.Interface, b.Backend, b.Reason)
		}
	}
	if h := s.HA; h != nil {
		if h.Role != "" {
			emit(descHARole, 1, h.Role)
		}
		for _, rt := range sortedKeys(h.RouteTables) {
			emit(descHATable, boolValue(h.RouteTables[rt]), rt)
		}
		emit(descHAFailovers, float64(h.Failovers))
		emit(descHAPeerUp, boolValue(h.PeerAlive))
		emit(descHAAge, h.HeartbeatAge.Seconds())
		emit(descHARecv, float64(h.HeartbeatsReceived))
		emit(descHAMissed, float64(h.HeartbeatsMissed))
		emit(descHARejected, float64(h.HeartbeatsRejected))
		loss := 0.0
		if expected := h.HeartbeatsReceived + h.HeartbeatsMissed; expected > 0 {
			loss = float64(h.HeartbeatsMissed) / float64(expected)
		}
		emit(descHALoss, loss)
		if y := h.Sync; y != nil {
			emit(descSyncUp, boolValue(y.SentConnected), "sent")
			emit(descSyncUp, boolValue(y.HeldConnected), "held")
			emit(descSyncFlows, float64(y.FlowsSent), "sent")
			emit(descSyncFlows, float64(y.FlowsHeld), "held")
			emit(descSyncLag, y.Lag.Seconds())
			if !y.LastFullSync.IsZero() {
				emit(descSyncFull, float64(y.LastFullSync.UnixNano())/1e9)
			}
			for _, r := range sortedKeys(y.Errors) {
				emit(descSyncErrors, float64(y.Errors[r]), r)
			}
			emit(descSyncInject, float64(y.Injected))
		}
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

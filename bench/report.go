package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// Measurement is one row: a figure per mode, null where it does not apply
// or was not measured.
type Measurement struct {
	Name  string            `json:"name"`
	Unit  string            `json:"unit"`
	Modes map[Mode]*float64 `json:"modes"`
	Help  string            `json:"help,omitempty"`
}

// Target is one of issue 5's goals, evaluated on the measured figures.
type Target struct {
	Name  string   `json:"name"`
	Want  string   `json:"want"`
	Ratio *float64 `json:"ratio"` // nil when a figure is missing
	Met   *bool    `json:"met"`
}

// Bound is the best ratio a target could reach here, and from what.
type Bound struct {
	Target string   `json:"target"`
	Ratio  *float64 `json:"ratio"`
	From   string   `json:"from"`
}

// Report is a run's result. Its JSON form is
// {"measurements":[{"name","unit","modes":{"nftables","fastpath","fastpath_tc","iptables_legacy"}}...],"targets":[...],"notes":[...]}.
type Report struct {
	Measurements []*Measurement `json:"measurements"`
	Targets      []Target       `json:"targets"`
	// Bounds are the best ratio any XDP NAT could show on this machine
	// for a target, measured with programs that do less than the NAT:
	// the bare forwarder for the packet rate, floor + flow lookup for
	// the program cost and the flow lookup alone for the scale test.
	Bounds []Bound `json:"bounds,omitempty"`
	// Auto is the backend fastpath.mode auto picks in each shape
	// (probeAuto); the targets give its ratio from that backend's column.
	Auto  []AutoPick `json:"auto,omitempty"`
	Notes []string   `json:"notes,omitempty"`
}

// rows are the measurements in report order with unit and help text.
var rows = []struct{ name, unit, help string }{
	{MUDPPPS, "pps", "64-byte UDP frames/s arriving translated, over Options.Flows flows (default 1024), counted on the receiver's tc ingress (the same work per packet in every mode)"},
	{MFastShare, "%", "arrivals forwarded as XDP fast-path hits"},
	{MUDPPPS1, "pps", "the same in the single-ENI shape (one NAT interface, fast path sends with XDP_TX), counted by the native XDP counter (frames XDP_TX'd to a veth without XDP stall on this kernel)"},
	{MFastShare1, "%", "arrivals forwarded as XDP fast-path hits, single ENI"},
	{MCeiling, "pps", "the same chain with a bare XDP forwarder (MACs + redirect, no NAT, no lookup) in place of the NAT: the most any XDP NAT can reach here"},
	{MCeiling1, "pps", "the same, single ENI (MACs + XDP_TX)"},
	{MCeilingSKB, "pps", "the same bare XDP forwarder in generic mode: its packets reach the counter as socket buffers, as the slow path's do (the other delivery of the same forwarder)"},
	{MCeilingSKB1, "pps", "the same, single ENI"},
	{MCeilingXC, "pps", "the bare XDP forwarder (native) counted by a native XDP counter, the benchmark's counter before (frames, no copy)"},
	{MCeilingSKBXC, "pps", "the bare XDP forwarder (generic) counted by the native XDP counter: every socket buffer copied into a page at the receiver"},
	{MCeilingTC, "pps", "the same chain with a bare tc forwarder (tcx ingress: MACs + bpf_redirect, no NAT, no lookup) in place of the NAT: the tc backend's bound"},
	{MCeilingTC1, "pps", "the same, single ENI (redirect back out of the receiving interface)"},
	{MTCPBulk, "Gbit/s", "iperf3, one stream, priv -> inet"},
	{MTCPBulkXDP, "Gbit/s", "outbound IPv4 bytes the XDP program forwarded itself during the iperf3 run (incl. its omitted first second)"},
	{MTCPBulkBareTC, "Gbit/s", "iperf3 through a bare tc forwarder both ways in place of the NAT (no NAT, no conntrack, no lookup): the TCP bulk bound of every mode"},
	{MTCPRetrans, "segments", "iperf3 sender retransmits"},
	{MConnRate, "conn/s", "short TCP connections (offload on with fastpath, off otherwise)"},
	{MProgHit, "ns/pkt", "NAT program on a hit, one flow (BPF_PROG_TEST_RUN via the header-writing driver)"},
	{MProgFloor, "ns/pkt", "floor: swap MACs + XDP_TX, same driver"},
	{MProgLookup, "ns/pkt", "floor + the fast path's flow lookup alone (same key, same LRU hash map, same driver)"},
	{MProgDriver, "ns/pkt", "the driver alone (it tail-calls an empty program), included in the three above"},
	{MProgAbove, "ns/pkt", "NAT program minus floor: what the NAT adds to a packet"},
}

// syncRows are the state sync's measurements (issue 14): declared on
// first use, as only a run with the sync section has them.
var syncRows = map[string]struct{ unit, help string }{
	MSyncFlows:         {"flows", "the NAT node's SNATed, established TCP flows of the full sync and the inject (Options.SyncFlows)"},
	MSyncFull:          {"s", "full sync to the peer over the sync link: sender start (dial, handshake, dump, seal, TCP) to the receiver holding the completed snapshot"},
	MSyncDump:          {"s", "the sender's conntrack dump of the node's table alone"},
	MSyncHeldMem:       {"bytes", "receiver's Go heap grown by holding the flows (runtime.MemStats after GC, the sender stopped)"},
	MSyncInject:        {"s", "takeover: the held flows' NAT addresses (Receiver.NATAddrs), then each flow rewritten as the injector's encoder takes it (Receiver.InjectTakeover, Injector.InjectSeq) into the peer's kernel"},
	MSyncInjectHeld:    {"s", "of which Receiver.NATAddrs"},
	MSyncInjectWrite:   {"s", "of which InjectTakeover (the rewrite overlapped with the kernel's work)"},
	MSyncInjectKernel:  {"s", "system CPU time of that InjectTakeover: the kernel creating the entries"},
	MSyncInjectRewrite: {"s", "the rewrite alone (Receiver.Takeover), not part of the figure: what InjectTakeover overlaps"},
	MSyncInjectSteps:   {"s", "the same takeover in steps: Receiver.Held, Takeover.Rewrite, then Injector.Inject of the whole list (hanatd's wiring until it calls InjectTakeover)"},
	MSyncBareCreate:    {"s", "the same entries by a ctnetlink create loop with tuples and timeout only (no NAT, status, state, mark), batches of 256 acknowledged once, not pipelined"},
	MSyncBareKernel:    {"s", "system CPU time of that loop: the least the kernel takes for the entries"},
	MStormOffered:      {"conn/s", "short TCP connections/s the storm offers (Options.StormRate); the VM may sustain less"},
	MStormOff:          {"conn/s", "short connections/s through the NAT, sync off"},
	MStormBare:         {"conn/s", "the same with a bare subscriber (counts the events) on the NAT's conntrack event feed"},
	MStormOn:           {"conn/s", "the same with a flowsync.Sender following the feed, streaming to the peer's receiver"},
	MStormEvents:       {"events/s", "conntrack events the bare subscriber received during the storm"},
	MStormRatioOn:      {"x", "median of the rounds' sync-on / sync-off rates (a round's samples are back to back)"},
	MStormRatioBare:    {"x", "median of the rounds' bare-subscriber / sync-off rates"},
	MStormCPUOff:       {"% CPU", "this process's CPU during the storm (fast path engine, probes), sync off"},
	MStormCPUBare:      {"% CPU", "the same with the bare subscriber (its feed included)"},
	MStormCPUOn:        {"% CPU", "the same with the sync (feed, sender, receiver)"},
	MStormLagP50:       {"ms", "sync lag, median: a probe connection's connect to the receiver holding its flow"},
	MStormLagP99:       {"ms", "sync lag, 99th percentile (probes not held within 1 s count as beyond it)"},
	MStormEventLagP50:  {"ms", "event lag, median: a probe's connect to its event reaching the feed's subscribers (same samples as the sync lag)"},
	MStormEventLagP99:  {"ms", "event lag, 99th percentile"},
	MStormAckLagP50:    {"ms", "Sender.Status().Lag sampled every 10 ms (includes the receiver's 50 ms AckInterval), median"},
	MStormAckLagP99:    {"ms", "the same, 99th percentile"},
	MStormProbes:       {"probes", "probe connections of the sync-on samples"},
}

func newReport() *Report {
	r := &Report{}
	for _, row := range rows {
		r.row(row.name, row.unit, row.help)
	}
	return r
}

// row returns the measurement called name, adding it (with every mode
// present and null) when it is new.
func (r *Report) row(name, unit, help string) *Measurement {
	for _, m := range r.Measurements {
		if m.Name == name {
			return m
		}
	}
	m := &Measurement{Name: name, Unit: unit, Help: help, Modes: map[Mode]*float64{}}
	for _, mode := range AllModes {
		m.Modes[mode] = nil
	}
	r.Measurements = append(r.Measurements, m)
	return m
}

// set records a figure; rows not declared in rows are added on first use
// (the scale and memory figures).
func (r *Report) set(name string, mode Mode, v float64) {
	unit, help := "ns/pkt", ""
	if r, ok := syncRows[name]; ok {
		unit, help = r.unit, r.help
	}
	// Issue 16: the GWLB shape's rows (gwlb.go).
	if r, ok := gwlbRows[name]; ok {
		unit, help = r.unit, r.help
	}
	switch {
	case strings.HasPrefix(name, MScalePPSPrefix) && strings.HasSuffix(name, scaleShareInfix):
		unit, help = "%", "arrivals forwarded as fast-path hits at that many flows"
	case strings.HasPrefix(name, MScalePPSPrefix) && (strings.HasSuffix(name, scaleLookupValueXDPSuffix) || strings.HasSuffix(name, scaleLookupValueTCSuffix)):
		unit, help = "pps", "the same forwarder with the lookup also reading the value it found and adding to its counters, as a fast-path hit does: the bound of a fast path keeping its flows in the kernel's hash"
	case strings.HasPrefix(name, MScalePPSPrefix) && (strings.HasSuffix(name, scaleLookupXDPSuffix) || strings.HasSuffix(name, scaleLookupTCSuffix)):
		unit, help = "pps", "the backend's bare forwarder plus the fast path's flow lookup in a map holding that many flows, in place of the NAT: the bound at that size"
	case strings.HasPrefix(name, MScalePPSPrefix):
		unit, help = "pps", "64-byte UDP frames/s arriving translated, two ENIs, with that many concurrent flows (all in conntrack and, with a fast path, in its map), one sample"
	case name == MMemPerFlow:
		unit, help = "bytes", "flow map kernel memory per entry (one direction)"
	case name == MMemPerConn:
		unit, help = "bytes", "two entries"
	case strings.HasPrefix(name, MScalePrefix) && strings.Contains(name, "_burst"):
		unit, help = "ns/pkt", "same flows, 8 packets per flow in a row (context, not a target)"
	case strings.HasPrefix(name, MScalePrefix) && strings.HasSuffix(name, scaleRawInfix):
		unit, help = "ns/pkt", "same, driver included"
	case strings.HasPrefix(name, MScalePrefix):
		unit, help = "ns/pkt", "NAT program's own cost, traffic spread over all flows (driver+floor subtracted)"
	case strings.HasPrefix(name, MMetricsPrefix) && strings.HasSuffix(name, MetricsMaxSuffix):
		unit, help = "ms", "the slowest of those requests"
	case strings.HasPrefix(name, MMetricsPrefix):
		unit, help = "ms", "hanatd's /metrics answer (median of Options.MetricsScrapes GETs) with that many of its NATed flows in conntrack"
	case strings.HasPrefix(name, MCensusPrefix):
		unit, help = "ms", "hanatd's one periodic conntrack reading at that size (off the request path, at most 2% of a CPU)"
	}
	m := r.row(name, unit, help)
	m.Modes[mode] = &v
	r.evalTargets()
}

func (r *Report) note(s string) { r.Notes = append(r.Notes, s) }

// Get returns a figure, if measured.
func (r *Report) Get(name string, mode Mode) (float64, bool) {
	for _, m := range r.Measurements {
		if m.Name == name && m.Modes[mode] != nil {
			return *m.Modes[mode], true
		}
	}
	return 0, false
}

// evalTargets recomputes issue 5's targets from the figures.
func (r *Report) evalTargets() {
	ratio := func(an string, am Mode, bn string, bm Mode) *float64 {
		x, ok1 := r.Get(an, am)
		y, ok2 := r.Get(bn, bm)
		if !ok1 || !ok2 || y == 0 {
			return nil
		}
		v := x / y
		return &v
	}
	scaleLo, scaleHi := r.scaleBounds()
	metricsLo, metricsHi := r.metricsBounds()
	value := func(name string, m Mode) *float64 {
		if v, ok := r.Get(name, m); ok {
			return &v
		}
		return nil
	}
	diff := func(an, bn string, m Mode) *float64 {
		x, ok1 := r.Get(an, m)
		y, ok2 := r.Get(bn, m)
		if !ok1 || !ok2 {
			return nil
		}
		v := x - y
		return &v
	}
	ts := []target{
		{"fastpath/nftables small-packet pps, two ENIs (redirect)", ">= 5", ratio(MUDPPPS, ModeFastpath, MUDPPPS, ModeNftables), true, 5},
		{"fastpath/nftables small-packet pps, single ENI (XDP_TX)", ">= 5", ratio(MUDPPPS1, ModeFastpath, MUDPPPS1, ModeNftables), true, 5},
		{"NAT program / XDP_TX floor", "<= 1.5", ratio(MProgHit, ModeFastpath, MProgFloor, ModeFastpath), false, 1.5},
		{"NAT program above floor + flow lookup, ns", "<= 10", diff(MProgHit, MProgLookup, ModeFastpath), false, 10},
		{"fast path cost " + scaleHi + " / " + scaleLo + " flows", "<= 1.2", ratio(MScalePrefix+scaleHi, ModeFastpath, MScalePrefix+scaleLo, ModeFastpath), false, 1.2},
		{"fastpath/nftables TCP bulk", ">= 1", ratio(MTCPBulk, ModeFastpath, MTCPBulk, ModeNftables), true, 1},
		// Issue 15: the tc backend.
		{"fastpath_tc/nftables small-packet pps, two ENIs", ">= 2", ratio(MUDPPPS, ModeFastpathTC, MUDPPPS, ModeNftables), true, 2},
		{"fastpath_tc/nftables small-packet pps, single ENI", ">= 2", ratio(MUDPPPS1, ModeFastpathTC, MUDPPPS1, ModeNftables), true, 2},
		{"fastpath_tc/nftables TCP bulk", ">= 1.2", ratio(MTCPBulk, ModeFastpathTC, MTCPBulk, ModeNftables), true, 1.2},
		{"fastpath / bare XDP forwarder pps, two ENIs", ">= 0.95", ratio(MUDPPPS, ModeFastpath, MCeiling, ModeFastpath), true, 0.95},
		{"new conn/s offload on/off", ">= 0.95", ratio(MConnRate, ModeFastpath, MConnRate, ModeNftables), true, 0.95},
		// Issue 12: an absolute bound (the "ratio" is the slowest answer in ms) and flatness.
		{"/metrics slowest answer, ms, " + metricsHi + " flows", fmt.Sprintf("<= %d", metricsTargetMS),
			value(MMetricsPrefix+metricsHi+MetricsMaxSuffix, ModeNftables), false, metricsTargetMS},
		{"/metrics answer " + metricsHi + " / " + metricsLo + " flows", "<= 1.5",
			ratio(MMetricsPrefix+metricsHi, ModeNftables, MMetricsPrefix+metricsLo, ModeNftables), false, 1.5},
	}
	bounds := []Bound{
		{ts[0].name, ratio(MCeiling, ModeFastpath, MUDPPPS, ModeNftables), MCeiling + " / nftables " + MUDPPPS},
		{ts[1].name, ratio(MCeiling1, ModeFastpath, MUDPPPS1, ModeNftables), MCeiling1 + " / nftables " + MUDPPPS1},
		{ts[2].name, ratio(MProgLookup, ModeFastpath, MProgFloor, ModeFastpath), MProgLookup + " / " + MProgFloor},
		{ts[4].name, ratio(MScalePrefix+scaleHi+scaleLookupInfix, ModeFastpath, MScalePrefix+scaleLo, ModeFastpath),
			"the lookup alone at " + scaleHi + " / the whole fast path at " + scaleLo},
		{ts[6].name, ratio(MCeilingTC, ModeFastpathTC, MUDPPPS, ModeNftables), MCeilingTC + " / nftables " + MUDPPPS},
		{ts[7].name, ratio(MCeilingTC1, ModeFastpathTC, MUDPPPS1, ModeNftables), MCeilingTC1 + " / nftables " + MUDPPPS1},
		{ts[5].name, ratio(MTCPBulkBareTC, ModeFastpathTC, MTCPBulk, ModeNftables), MTCPBulkBareTC + " / nftables " + MTCPBulk},
		{ts[8].name, ratio(MTCPBulkBareTC, ModeFastpathTC, MTCPBulk, ModeNftables), MTCPBulkBareTC + " / nftables " + MTCPBulk},
	}
	// Issue 15: every fast-path backend at the largest flow count.
	if big := r.scalePPSHi(); big != "" {
		fig := MScalePPSPrefix + big
		for _, b := range []struct {
			m                      Mode
			ceiling, lookup, value string
		}{{ModeFastpath, MCeiling, fig + scaleLookupXDPSuffix, fig + scaleLookupValueXDPSuffix},
			{ModeFastpathTC, MCeilingTC, fig + scaleLookupTCSuffix, fig + scaleLookupValueTCSuffix}} {
			name := fmt.Sprintf("%s/nftables small-packet pps at %s flows", b.m, big)
			ts = append(ts, target{name, ">= 3", ratio(fig, b.m, fig, ModeNftables), true, 3})
			bounds = append(bounds,
				Bound{name, ratio(b.ceiling, b.m, fig, ModeNftables), b.ceiling + " / nftables " + fig},
				Bound{name, ratio(b.lookup, b.m, fig, ModeNftables), b.lookup + " / nftables " + fig},
				Bound{name, ratio(b.value, b.m, fig, ModeNftables), b.value + " / nftables " + fig})
		}
	}
	autoTs := r.autoTargets(ratio)
	ts = append(ts, autoTs...)
	for _, t := range autoTs {
		if strings.Contains(t.name, "TCP bulk") {
			bounds = append(bounds, Bound{t.name, ratio(MTCPBulkBareTC, ModeFastpathTC, MTCPBulk, ModeNftables), MTCPBulkBareTC + " / nftables " + MTCPBulk})
		}
	}
	// Issue 14: the state sync.
	syncTs, syncBounds := r.syncTargets(value)
	ts = append(ts, syncTs...)
	bounds = append(bounds, syncBounds...)
	// Issue 16: the GWLB shape (gwlb.go).
	gwlbTs, gwlbBounds := r.gwlbTargets(ratio)
	ts = append(ts, gwlbTs...)
	bounds = append(bounds, gwlbBounds...)
	r.Bounds = r.Bounds[:0]
	for _, b := range bounds {
		if b.Ratio != nil {
			r.Bounds = append(r.Bounds, b)
		}
	}
	r.Targets = r.Targets[:0]
	for _, t := range ts {
		out := Target{Name: t.name, Want: t.want, Ratio: t.r}
		if t.r != nil {
			met := *t.r <= t.bound
			if t.atLeast {
				met = *t.r >= t.bound
			}
			out.Met = &met
		}
		r.Targets = append(r.Targets, out)
	}
}

// autoShapes are the figures of each shape auto can choose in.
var autoShapes = []struct{ shape, figure, what string }{
	{ShapeSingleENI, MUDPPPS1, "small-packet pps, one ENI"},
	{ShapeTwoENI, MUDPPPS, "small-packet pps, two ENIs"},
	{ShapeTwoENI, MTCPBulk, "TCP bulk, two ENIs"},
	{ShapeTwoENI, MConnRate, "new conn/s, two ENIs"},
}

// autoTargets: auto never below the slow path, in each shape, from the
// column of the backend it picked there (not measured when it picked a
// mix, or nothing was probed).
func (r *Report) autoTargets(ratio func(string, Mode, string, Mode) *float64) []target {
	var ts []target
	for _, sh := range autoShapes {
		name := "auto/nftables " + sh.what
		var v *float64
		for _, p := range r.Auto {
			if p.Shape == sh.shape {
				name = fmt.Sprintf("auto (%s)/nftables %s", p.Backend, sh.what)
				if p.Mode != "" {
					v = ratio(sh.figure, p.Mode, sh.figure, ModeNftables)
				}
			}
		}
		ts = append(ts, target{name, ">= 1", v, true, 1})
	}
	return ts
}

// target is a goal as evalTargets checks it: a figure (or ratio) r, at
// least or at most bound.
type target struct {
	name, want string
	r          *float64
	atLeast    bool
	bound      float64
}

// syncTargets are issue 14's targets and their bounds.
func (r *Report) syncTargets(value func(string, Mode) *float64) ([]target, []Bound) {
	n := "250k"
	if v, ok := r.Get(MSyncFlows, ModeNftables); ok {
		n = humanCount(int(v))
	}
	full := fmt.Sprintf("full sync of %s flows, s", n)
	inject := fmt.Sprintf("inject %s flows at takeover, s", n)
	ts := []target{
		{full, fmt.Sprintf("<= %d", syncFullTargetS), value(MSyncFull, ModeNftables), false, syncFullTargetS},
		{"receiver memory per held flow, bytes", fmt.Sprintf("<= %d", syncMemTargetB), value(MSyncHeldMem, ModeNftables), false, syncMemTargetB},
		{inject, fmt.Sprintf("<= %d", syncInjectTargetS), value(MSyncInject, ModeNftables), false, syncInjectTargetS},
	}
	bounds := []Bound{
		{full, value(MSyncDump, ModeNftables), MSyncDump + ": the sender's dump of the table alone, s"},
		{inject, value(MSyncInjectWrite, ModeNftables), MSyncInjectWrite + ": InjectTakeover alone, s"},
		{inject, value(MSyncInjectKernel, ModeNftables), MSyncInjectKernel + ": the kernel's share of that write, s"},
		{inject, value(MSyncBareKernel, ModeNftables), MSyncBareKernel + ": the kernel creating the same entries without NAT, s"},
	}
	for _, m := range []Mode{ModeNftables, ModeFastpath} {
		lag := fmt.Sprintf("storm sync lag p99, ms (%s)", m)
		rate := fmt.Sprintf("storm new conn/s sync on/off (%s)", m)
		ts = append(ts,
			target{lag, fmt.Sprintf("<= %d", syncLagTargetMS), value(MStormLagP99, m), false, syncLagTargetMS},
			target{rate, fmt.Sprintf(">= %g", syncStormTargetX), value(MStormRatioOn, m), true, syncStormTargetX})
		bounds = append(bounds,
			Bound{lag, value(MStormEventLagP99, m), MStormEventLagP99 + ": the probes' events reaching the feed's subscribers, ms"},
			Bound{rate, value(MStormRatioBare, m), MStormRatioBare + ": a bare subscriber's rate over sync off's"})
	}
	return ts, bounds
}

// scaleBounds names the smallest and largest scale figures present.
func (r *Report) scaleBounds() (lo, hi string) {
	var names []string
	for _, m := range r.Measurements {
		if strings.HasPrefix(m.Name, MScalePrefix) && !strings.HasSuffix(m.Name, scaleRawInfix) &&
			!strings.HasSuffix(m.Name, scaleLookupInfix) && !strings.Contains(m.Name, "_burst") {
			names = append(names, strings.TrimPrefix(m.Name, MScalePrefix))
		}
	}
	if len(names) == 0 {
		return "1k", "1M"
	}
	return names[0], names[len(names)-1]
}

// scalePPSHi names the largest flow count of the packet rate at scale
// ("" when none was measured).
func (r *Report) scalePPSHi() string {
	hi, most := "", -1
	for _, m := range r.Measurements {
		if n, ok := strings.CutPrefix(m.Name, MScalePPSPrefix); ok && !strings.HasSuffix(n, scaleShareInfix) {
			if v := parseHuman(n); v > most {
				hi, most = n, v
			}
		}
	}
	return hi
}

// parseHuman undoes humanCount (-1 when s is not one of its answers).
func parseHuman(s string) int {
	mult := 1
	switch {
	case strings.HasSuffix(s, "M"):
		mult, s = 1_000_000, strings.TrimSuffix(s, "M")
	case strings.HasSuffix(s, "k"):
		mult, s = 1000, strings.TrimSuffix(s, "k")
	}
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		return -1
	}
	return n * mult
}

// metricsBounds names the smallest and largest /metrics sizes present.
func (r *Report) metricsBounds() (lo, hi string) {
	var names []string
	for _, m := range r.Measurements {
		if strings.HasPrefix(m.Name, MMetricsPrefix) && !strings.HasSuffix(m.Name, MetricsMaxSuffix) {
			names = append(names, strings.TrimPrefix(m.Name, MMetricsPrefix))
		}
	}
	if len(names) == 0 {
		return "10k", "1M"
	}
	return names[0], names[len(names)-1]
}

// WriteJSON writes the report as JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	r.evalTargets()
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("bench report JSON: %w", err)
	}
	return nil
}

// WriteTable prints the figures with the fastpath/nftables,
// fastpath_tc/nftables and iptables_legacy/nftables ratios, then the
// targets and notes.
func (r *Report) WriteTable(w io.Writer) error {
	r.evalTargets()
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "measurement\tunit\tnftables\tfastpath\tfastpath_tc\tiptables_legacy\tfast/nft\ttc/nft\tipt/nft\t")
	for _, m := range r.Measurements {
		nft, fast, tc, ipt := m.Modes[ModeNftables], m.Modes[ModeFastpath], m.Modes[ModeFastpathTC], m.Modes[ModeIptablesLegacy]
		if nft == nil && fast == nil && tc == nil && ipt == nil {
			continue
		}
		fr, tr, ir := fmtRatio(fast, nft), fmtRatio(tc, nft), fmtRatio(ipt, nft)
		if m.Name == MTCPRetrans { // counts, not rates: a ratio means nothing
			fr, tr, ir = "-", "-", "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", m.Name, m.Unit,
			fmtVal(nft), fmtVal(fast), fmtVal(tc), fmtVal(ipt), fr, tr, ir)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if len(r.Auto) > 0 {
		fmt.Fprintln(w, "fastpath.mode auto picks (its figures are those of that backend's column):")
		for _, p := range r.Auto {
			col := string(p.Mode)
			if col == "" {
				col = "none (a mix of backends)"
			}
			fmt.Fprintf(w, "  %-10s %-28s column %s  (%s)\n", p.Shape, p.Backend, col, p.Reason)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "targets (issues 5, 12, 14, 15 and 16):")
	for _, t := range r.Targets {
		state := "not measured"
		if t.Met != nil {
			state = "MISSED"
			if *t.Met {
				state = "met"
			}
			state = fmt.Sprintf("%.2f  %s", *t.Ratio, state)
		}
		fmt.Fprintf(w, "  %-42s want %-7s got %s\n", t.Name, t.Want, state)
	}
	if len(r.Bounds) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "bounds (the best figure a target could show here, from programs doing less than the one measured):")
		for _, b := range r.Bounds {
			fmt.Fprintf(w, "  %-42s %.2f  (%s)\n", b.Target, *b.Ratio, b.From)
		}
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "notes:")
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  - %s\n", n)
		}
	}
	return nil
}

func fmtVal(v *float64) string {
	if v == nil {
		return "-"
	}
	x := *v
	switch a := math.Abs(x); {
	case a >= 1e6:
		return fmt.Sprintf("%.3fM", x/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.1fk", x/1e3)
	case a >= 100 || x == math.Trunc(x):
		return fmt.Sprintf("%.0f", x)
	}
	return fmt.Sprintf("%.2f", x)
}

func fmtRatio(a, b *float64) string {
	if a == nil || b == nil || *b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", *a / *b)
}

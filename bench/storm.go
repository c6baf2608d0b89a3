package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/datapath"
	"github.com/hanat/hanat/internal/netns"
)

// The connection storm: short TCP connections (the conn-client helper,
// paced to Options.StormRate) through the NAT of the bench topology in a
// hanat mode (nftables; fastpath, hanatd's default), in three variants
// taken in turn each round (with the sync, or the bare subscriber standing
// in for it, the slow path's table is hanatd's with the sync on: the
// offload mark shapes the conntrack events, as the fast path's always
// does):
//
//   - sync off: the NAT alone, as hanatd runs it: its flow-end watcher
//     on its event feed (and in the fastpath mode its offload engine);
//   - bare subscriber: a subscriber of the NAT's conntrack event feed
//     that only counts the events (the bound: what any consumer of the
//     events costs);
//   - sync on: a flowsync.Sender following the feed (Sender.Follow, as
//     hanatd wires it) and snapshotting the NAT's table, streaming to a
//     Receiver in the peer's namespace over the sync link.
//
// The sync lag is measured on probes: long-lived TCP connections the
// benchmark opens through the same NAT every probeEvery during the storm,
// each exchanging probeEchoes small echoes (enough packets for the fast
// path's ruleset to mark it worth keeping, the event that announces it to
// the sync) and held open for probeHold. A probe's lag is the time from
// its connect returning to the receiver holding its flow (Receiver.Held,
// polled every heldPoll): the NAT's event, the feed, the sender's queue
// and frame, the sealing, the link and the receiver's apply (and the
// probe's own echoes up to its 16th packet, when its mark announces it). In the
// same samples a watcher subscribed to the feed ahead of the sender notes
// when each probe's event arrives: the event lag, the bound of the sync
// lag (what any consumer of the events sees). A probe not seen within
// probeHold counts as beyond every percentile it reaches.
const (
	MStormOffered = "sync_storm_offered_conn_per_s"
	MStormOff     = "sync_storm_conn_per_s_sync_off"
	MStormOn      = "sync_storm_conn_per_s_sync_on"
	MStormBare    = "sync_storm_conn_per_s_bare_subscriber"
	MStormEvents  = "sync_storm_events_per_s"
	// MStormRatio*: the median of the rounds' sync-on (bare subscriber)
	// over sync-off rates; the samples of a round are taken back to back,
	// so drifting background load cancels out better than in the ratio of
	// the medians.
	MStormRatioOn   = "sync_storm_on_off_ratio"
	MStormRatioBare = "sync_storm_bare_off_ratio"
	// MStormCPU*: the CPU this process (the NAT's hanatd part: the fast
	// path's engine, the feed, the sync, and the probes) used during the
	// storm, in % of one CPU.
	MStormCPUOff  = "sync_storm_bench_cpu_pct_sync_off"
	MStormCPUBare = "sync_storm_bench_cpu_pct_bare_subscriber"
	MStormCPUOn   = "sync_storm_bench_cpu_pct_sync_on"
	MStormLagP50  = "sync_storm_lag_p50_ms"
	MStormLagP99  = "sync_storm_lag_p99_ms"
	// MStormEventLag*: the probes' events reaching the feed's subscribers.
	MStormEventLagP50 = "sync_storm_event_lag_p50_ms"
	MStormEventLagP99 = "sync_storm_event_lag_p99_ms"
	// MStormAckLag*: flowsync.Sender.Status().Lag (change handed to the
	// sender → receiver's acknowledgement, which waits for the receiver's
	// AckInterval of 50 ms), sampled every ackLagSample.
	MStormAckLagP50 = "sync_storm_ack_lag_p50_ms"
	MStormAckLagP99 = "sync_storm_ack_lag_p99_ms"
	MStormProbes    = "sync_storm_probes"

	syncLagTargetMS  = 200
	syncStormTargetX = 0.9

	probePort    = 7002
	probeEvery   = 20 * time.Millisecond
	probeHold    = time.Second
	probeEchoes  = 10
	heldPoll     = 2 * time.Millisecond
	ackLagSample = 10 * time.Millisecond
	// stormTimeWait is the NAT's conntrack TIME_WAIT timeout in seconds
	// during the storm.
	stormTimeWait = 1
	// stormNiceness is the storm's client and server processes' nice
	// value. On EC2 they are other machines: the NAT's CPUs run its
	// forwarding (softirq, which no niceness defers) and hanatd. Here they
	// share the CPUs with the NAT; niced, they leave the sync (this
	// process, as hanatd) the CPU it would have, and what the sync uses
	// comes out of the connection rate.
	stormNiceness = 10
)

// stormVariant is one way the storm runs.
type stormVariant int

const (
	stormOff stormVariant = iota
	stormBare
	stormOn
)

func (v stormVariant) String() string {
	return [...]string{"sync off", "bare subscriber", "sync on"}[v]
}

// stormLab is the bench topology with the sync link to a peer namespace,
// the short-connection server and the probe server.
type stormLab struct {
	t    *topo
	peer *netns.NS
	key  []byte
}

// runStorm measures the storm in each hanat mode of opts.Modes.
func runStorm(ctx context.Context, log *slog.Logger, opts Options, rep *Report, bpffs, dir string) (err error) {
	var modes []Mode
	for _, m := range opts.Modes {
		if m == ModeNftables || m == ModeFastpath {
			modes = append(modes, m)
		}
	}
	if len(modes) == 0 {
		return nil
	}
	t, err := newTopo(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if err := t.close(); err != nil {
			log.Error("bench storm: topology cleanup", "err", err)
		}
	}()
	if _, err := t.priv.Run(ctx, "sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=1024 65000"); err != nil {
		return err
	}
	// A sustained storm ends as many connections a second as it opens,
	// and each end costs its DESTROY event. The NAT's entries leave
	// TIME_WAIT after a second instead of two minutes, so that a sample
	// of seconds reaches that steady state (and a sample's ends do not
	// fall into a later one's).
	if _, err := t.nat.Run(ctx, "sysctl", "-q", "-w", fmt.Sprintf("net.netfilter.nf_conntrack_tcp_timeout_time_wait=%d", stormTimeWait)); err != nil {
		return err
	}
	_, peer, closePeer, err := newSyncPair(ctx, log, "", t.nat)
	if err != nil {
		return err
	}
	defer closePeer()
	conns, err := startConnServer(t, stormNiceness)
	if err != nil {
		return err
	}
	defer conns.stop()
	stopProbeServer, err := startProbeServer(ctx, t)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, stopProbeServer()) }()
	lab := &stormLab{t: t, peer: peer, key: make([]byte, 32)}
	_, _ = rand.Read(lab.key)
	log.Info("bench storm topology up", "priv", t.priv.Name, "nat", t.nat.Name, "inet", t.inet.Name, "peer", peer.Name)
	var errs []error
	for _, m := range modes {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err := lab.mode(ctx, log.With("mode", m), m, opts, rep, bpffs, dir); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

// stormResult is one storm sample.
type stormResult struct {
	connPerS  float64
	cpuPct    float64 // this process's CPU time during the storm, % of one CPU
	failed    uint64
	probes    int
	lags      [2][]float64 // ms, of the probes seen, by sighting
	ackLags   []float64    // ms, Sender.Status().Lag samples
	eventsPS  float64      // events the bare subscriber received per second
	overflows uint64       // event socket overruns the bare subscriber saw
	drops     uint64       // sender's queue drops
	resyncs   uint64       // sender's snapshots after the first
}

// mode sets m up, takes opts.StormRounds samples of each variant (their
// order rotating with the round) and reports the figures in m's column.
func (l *stormLab) mode(ctx context.Context, log *slog.Logger, m Mode, opts Options, rep *Report, bpffs, dir string) (err error) {
	nm, err := setupMode(ctx, log, l.t, m, bpffs, dir)
	if err != nil {
		return err
	}
	defer func() {
		if terr := nm.teardown(context.WithoutCancel(ctx)); terr != nil {
			err = errors.Join(err, fmt.Errorf("teardown: %w", terr))
		}
	}()
	if err := l.t.resolveNeighbours(ctx); err != nil {
		return err
	}
	var got [3][]stormResult
	for r := range opts.StormRounds {
		for k := range 3 {
			v := stormVariant((r + k) % 3)
			s, err := l.sample(ctx, log.With("variant", v, "round", r+1), nm, v, opts)
			if err != nil {
				return fmt.Errorf("%s, round %d: %w", v, r+1, err)
			}
			got[v] = append(got[v], s)
		}
	}
	rates := [3]float64{}
	for v, ss := range got {
		var vs []float64
		for _, s := range ss {
			vs = append(vs, s.connPerS)
			if s.failed > 0 {
				rep.note(fmt.Sprintf("storm %s, %s: %d short connections failed", m, stormVariant(v), s.failed))
			}
		}
		rates[v] = medianOf(vs)
		if len(vs) > 1 {
			rep.note(fmt.Sprintf("storm %s, %s: %d samples from %s to %s conn/s", m, stormVariant(v), len(vs), fmtVal(&vs[0]), fmtVal(&vs[len(vs)-1])))
		}
	}
	rep.set(MStormOffered, m, float64(opts.StormRate))
	for v, names := range [3][2]string{stormOff: {MStormOff, MStormCPUOff}, stormBare: {MStormBare, MStormCPUBare}, stormOn: {MStormOn, MStormCPUOn}} {
		rep.set(names[0], m, rates[v])
		var cpu []float64
		for _, s := range got[v] {
			cpu = append(cpu, s.cpuPct)
		}
		rep.set(names[1], m, medianOf(cpu))
	}
	for v, name := range map[stormVariant]string{stormOn: MStormRatioOn, stormBare: MStormRatioBare} {
		var ratios []float64
		for r := range got[v] {
			if off := got[stormOff][r].connPerS; off > 0 {
				ratios = append(ratios, got[v][r].connPerS/off)
			}
		}
		if len(ratios) > 0 {
			rep.set(name, m, medianOf(ratios))
		}
	}
	var events []float64
	for _, s := range got[stormBare] {
		events = append(events, s.eventsPS)
		if s.overflows > 0 {
			rep.note(fmt.Sprintf("storm %s, bare subscriber: the event socket overflowed %d times", m, s.overflows))
		}
	}
	rep.set(MStormEvents, m, medianOf(events))

	var lags [2][]float64
	probes := 0
	for _, s := range got[stormOn] {
		for k := range lags {
			lags[k] = append(lags[k], s.lags[k]...)
		}
		probes += s.probes
	}
	rep.set(MStormProbes, m, float64(probes))
	if probes == 0 {
		return errors.New("bench storm: no probe opened")
	}
	var p99 float64
	for k, names := range [2][2]string{sightEvent: {MStormEventLagP50, MStormEventLagP99}, sightHeld: {MStormLagP50, MStormLagP99}} {
		p50, _ := lagPercentile(lags[k], probes, 50)
		p, short := lagPercentile(lags[k], probes, 99)
		rep.set(names[0], m, p50)
		rep.set(names[1], m, p)
		if short {
			rep.note(fmt.Sprintf("storm %s, sync on: %d of %d probes were not %s within %s; the p99 is that bound, the least it is",
				m, probes-len(lags[k]), probes, probeSight(k), probeHold))
		}
		if k == int(sightHeld) {
			p99 = p
		}
	}
	var ack []float64
	var drops, resyncs uint64
	for _, s := range got[stormOn] {
		ack = append(ack, s.ackLags...)
		drops += s.drops
		resyncs += s.resyncs
	}
	if len(ack) > 0 {
		a50, _ := lagPercentile(ack, len(ack), 50)
		a99, _ := lagPercentile(ack, len(ack), 99)
		rep.set(MStormAckLagP50, m, a50)
		rep.set(MStormAckLagP99, m, a99)
	}
	if drops > 0 || resyncs > 0 {
		rep.note(fmt.Sprintf("storm %s, sync on: the sender's queue dropped %d changes; %d snapshots after the first", m, drops, resyncs))
	}
	log.Info("bench storm", "offered", opts.StormRate, "sync_off", int(rates[stormOff]), "bare", int(rates[stormBare]),
		"sync_on", int(rates[stormOn]), "lag_p99_ms", p99, "probes", probes)
	return nil
}

// sample runs the storm once in variant v.
func (l *stormLab) sample(ctx context.Context, log *slog.Logger, nm *natMode, v stormVariant, opts Options) (res stormResult, err error) {
	// The slow path's table as hanatd has it with the sync on or off (the
	// bare subscriber stands in for a sync).
	if err := nm.synced(ctx, v != stormOff); err != nil {
		return res, fmt.Errorf("bench storm: %w", err)
	}
	pr := newProbes()
	var fns []func(context.Context) error
	feed := nm.feed // the fast path's, which hanatd shares with the sync
	if v != stormOff && feed == nil {
		if feed, err = conntrack.NewEventFeed(log.With("component", "conntrack-events"), conntrack.NetNSFD(l.t.nat.FD())); err != nil {
			return res, fmt.Errorf("bench storm: %w", err)
		}
		fns = append(fns, feed.Run)
	}
	var events, overflows atomic.Uint64
	var recv *syncReceiver
	var sender *syncSender
	switch v {
	case stormBare:
		unsubscribe, err := feed.Subscribe(true, func(conntrack.Event) { events.Add(1) }, func() { overflows.Add(1) })
		if err != nil {
			return res, fmt.Errorf("bench storm: %w", err)
		}
		defer unsubscribe()
	case stormOn:
		// The watcher, ahead of the sender on the feed.
		unsubscribe, err := feed.Subscribe(true, func(ev conntrack.Event) {
			if ev.Flow.Original.Dst.Port() == probePort && ev.Kind != conntrack.EventDestroy && announced(ev.Flow) {
				pr.seen(sightEvent, ev.Flow.Original, time.Now())
			}
		}, func() {})
		if err != nil {
			return res, fmt.Errorf("bench storm: %w", err)
		}
		defer unsubscribe()
		if recv, err = startSyncReceiver(ctx, log, l.peer, l.key); err != nil {
			return res, err
		}
		defer func() { err = errors.Join(err, recv.stop()) }()
		if sender, err = newSyncSender(log, l.t.nat, l.key); err != nil {
			return res, err
		}
		defer sender.close(log)
		fns = append(fns,
			sender.Run,
			func(ctx context.Context) error { return sender.Follow(ctx, feed, datapath.CtMarkOffload) },
			every(heldPoll, func() { pollHeld(recv, pr) }),
			every(ackLagSample, func() {
				if lag := sender.Status().Lag; lag > 0 {
					res.ackLags = append(res.ackLags, float64(lag.Microseconds())/1000)
				}
			}))
	}
	stop := background(ctx, fns...)
	defer func() { err = errors.Join(err, stop()) }()
	if v == stormOn {
		if err := waitUntil(ctx, 10*time.Second, 5*time.Millisecond, func() bool { return recv.Status().Snapshots > 0 }); err != nil {
			return res, fmt.Errorf("bench storm: the receiver's first snapshot: %w", err)
		}
	}

	start := time.Now()
	probeErr := make(chan error, 1)
	go func() { probeErr <- pr.run(ctx, l.t, opts.StormDuration) }()
	u0, s0, err0 := cpuTimes()
	cr, cerr := connRate(ctx, l.t, connLoad{workers: opts.StormWorkers, d: opts.StormDuration, rate: opts.StormRate, niceness: stormNiceness})
	took := time.Since(start)
	u1, s1, err1 := cpuTimes()
	res.cpuPct = 100 * (u1 - u0 + s1 - s0).Seconds() / took.Seconds()
	sysPct := 100 * (s1 - s0).Seconds() / took.Seconds()
	nEvents := events.Load()
	// The probe run ends after its last probe's hold (bounded: d + probeHold).
	perr := <-probeErr
	if sender != nil {
		st := sender.Status()
		res.drops, res.resyncs = st.Counters.QueueDrops, st.Snapshots-min(st.Snapshots, 1)
	}
	if err := errors.Join(cerr, perr, err0, err1, stop()); err != nil {
		return res, err
	}
	res.connPerS, res.failed = cr.perSecond(), cr.Failed
	res.probes, res.lags = pr.opened, pr.lags
	res.eventsPS, res.overflows = float64(nEvents)/took.Seconds(), overflows.Load()
	log.Info("bench storm sample", "conn_per_s", int(res.connPerS), "cpu_pct", int(res.cpuPct), "of_which_kernel_pct", int(sysPct), "failed", res.failed, "probes", res.probes,
		"probe_events", len(res.lags[sightEvent]), "probes_held", len(res.lags[sightHeld]), "events_per_s", int(res.eventsPS))
	return res, nil
}

// announced reports whether an event's flow is one the sync takes: an
// assured flow, established, or marked by the fast path's ruleset as
// worth keeping (its event carries no TCP state).
func announced(f conntrack.Flow) bool {
	return f.Assured && (f.TCPState == "ESTABLISHED" || f.Mark&datapath.CtMarkOffload != 0)
}

// pollHeld notes the probes the receiver holds.
func pollHeld(recv *syncReceiver, pr *probes) {
	if !pr.waiting(sightHeld) {
		return
	}
	held := recv.Held()
	now := time.Now()
	for _, f := range held {
		if f.Original.Dst.Port() == probePort {
			pr.seen(sightHeld, f.Original, now)
		}
	}
}

// every is a background function running fn every d until its context
// ends.
func every(d time.Duration, fn func()) func(context.Context) error {
	return func(ctx context.Context) error {
		tick := time.NewTicker(d)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-tick.C:
				fn()
			}
		}
	}
}

// probeSight is where a probe's flow is seen.
type probeSight int

const (
	sightEvent probeSight = iota // its event reached the feed's subscribers
	sightHeld                    // the receiver holds it
)

func (k probeSight) String() string {
	return [...]string{"announced by an event", "held by the receiver"}[k]
}

// probes are the storm's long-lived probe connections: when each opened
// and how long each sighting of its flow took.
type probes struct {
	mu     sync.Mutex
	open   map[conntrack.Tuple]*probe
	unseen [2]int // probes not yet seen, by sighting
	// early holds sightings of a tuple before a probe had it (its event
	// may beat the dialling goroutine).
	early  [2]map[conntrack.Tuple]time.Time
	lags   [2][]float64 // ms, within probeHold
	opened int
}

type probe struct {
	opened time.Time
	seen   [2]bool
}

func newProbes() *probes {
	return &probes{open: map[conntrack.Tuple]*probe{}, early: [2]map[conntrack.Tuple]time.Time{{}, {}}}
}

// waiting reports whether a probe waits for sighting k.
func (p *probes) waiting(k probeSight) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.unseen[k] > 0
}

// seen notes sighting k of the flow with original tuple t at at: a lag if
// it is a probe's first.
func (p *probes) seen(k probeSight, t conntrack.Tuple, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pb, ok := p.open[t]
	if !ok {
		if _, ok := p.early[k][t]; !ok {
			p.early[k][t] = at
		}
		return
	}
	p.see(pb, k, at)
}

func (p *probes) see(pb *probe, k probeSight, at time.Time) {
	if pb.seen[k] {
		return
	}
	pb.seen[k] = true
	p.unseen[k]--
	if d := at.Sub(pb.opened); d <= probeHold {
		p.lags[k] = append(p.lags[k], float64(max(d, 0).Microseconds())/1000)
	}
}

// add registers a probe whose dial began at dialed and returned at
// opened; a sighting of its tuple since dialed was of its flow, before
// its connect returned (lag 0).
func (p *probes) add(t conntrack.Tuple, dialed, opened time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.opened++
	pb := &probe{opened: opened}
	p.open[t] = pb
	for k := range p.unseen {
		p.unseen[k]++
		if at, ok := p.early[k][t]; ok {
			delete(p.early[k], t)
			if !at.Before(dialed) {
				p.see(pb, probeSight(k), at)
			}
		}
	}
}

// run opens a probe every probeEvery for d, each connection from priv to
// the probe server in inet exchanging probeEchoes echoes and held open for
// probeHold, then waits for the last one's hold and closes them all.
func (p *probes) run(ctx context.Context, t *topo, d time.Duration) error {
	type open struct {
		c     net.Conn
		until time.Time
	}
	var conns []open
	defer func() {
		for _, o := range conns {
			o.c.Close()
		}
	}()
	addr := netip.AddrPortFrom(inetAddr, probePort).String()
	msg := make([]byte, 16)
	buf := make([]byte, len(msg))
	tick := time.NewTicker(probeEvery)
	defer tick.Stop()
	end := time.Now().Add(d)
	for now := time.Now(); now.Before(end) || len(conns) > 0; now = time.Now() {
		for len(conns) > 0 && !now.Before(conns[0].until) {
			conns[0].c.Close()
			conns = conns[1:]
		}
		if now.Before(end) {
			dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			dialed := time.Now()
			c, err := t.priv.DialContext(dctx, "tcp4", addr)
			cancel()
			if err != nil {
				return fmt.Errorf("bench storm: probe %d to %s: %w", p.opened+1, addr, err)
			}
			opened := time.Now()
			local := c.LocalAddr().(*net.TCPAddr).AddrPort()
			p.add(conntrack.Tuple{Proto: unix.IPPROTO_TCP, Src: netip.AddrPortFrom(local.Addr().Unmap(), local.Port()), Dst: netip.AddrPortFrom(inetAddr, probePort)}, dialed, opened)
			conns = append(conns, open{c: c, until: opened.Add(probeHold)})
			_ = c.SetDeadline(time.Now().Add(2 * time.Second))
			for range probeEchoes {
				if _, err := c.Write(msg); err != nil {
					return fmt.Errorf("bench storm: probe %d: write: %w", p.opened, err)
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					return fmt.Errorf("bench storm: probe %d: read the echo: %w", p.opened, err)
				}
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// startProbeServer echoes the probes' connections in inet until the
// returned function stops it.
func startProbeServer(ctx context.Context, t *topo) (func() error, error) {
	addr := netip.AddrPortFrom(inetAddr, probePort).String()
	var ln net.Listener
	if err := t.inet.Do(func() (err error) {
		ln, err = (&net.ListenConfig{}).Listen(ctx, "tcp4", addr)
		return err
	}); err != nil {
		return nil, fmt.Errorf("bench storm: probe server on %s in %s: %w", addr, t.inet.Name, err)
	}
	return background(ctx, func(ctx context.Context) error {
		stop := context.AfterFunc(ctx, func() { ln.Close() })
		defer stop()
		var wg sync.WaitGroup
		defer wg.Wait()
		var mu sync.Mutex
		conns := map[net.Conn]struct{}{}
		defer func() {
			mu.Lock()
			for c := range conns {
				c.Close()
			}
			mu.Unlock()
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("bench storm: probe server: accept: %w", err)
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Go(func() {
				_, _ = io.Copy(c, c)
				c.Close()
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
			})
		}
	}), nil
}

// lagPercentile is the p-th percentile (nearest rank) of n samples of
// which vs were measured; the others (n - len(vs)) lie beyond probeHold.
// short reports that the percentile falls among those: the value is then
// probeHold in ms, the least it is.
func lagPercentile(vs []float64, n int, p float64) (v float64, short bool) {
	s := slices.Sorted(slices.Values(vs))
	rank := int(math.Ceil(p / 100 * float64(n)))
	if rank < 1 {
		rank = 1
	}
	if rank > len(s) {
		return float64(probeHold.Milliseconds()), true
	}
	return s[rank-1], false
}

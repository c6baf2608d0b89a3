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
// hanat mode (nftables; fastpath, hanatd's default, whose ruleset shapes
// the conntrack events), in three variants taken in turn each round:
//
//   - sync off: the NAT alone (in the fastpath mode with its offload
//     engine on its event feed, as hanatd runs it);
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
// polled every heldPoll), so it includes the NAT's event, the feed, the
// sender's queue and frame, the sealing, the link and the receiver's
// apply. A probe not held within probeHold counts as beyond every
// percentile it reaches. With the bare subscriber the same probes give
// the time to the event's arrival (the lag's bound).
const (
	MStormOffered = "sync_storm_offered_conn_per_s"
	MStormOff     = "sync_storm_conn_per_s_sync_off"
	MStormOn      = "sync_storm_conn_per_s_sync_on"
	MStormBare    = "sync_storm_conn_per_s_bare_subscriber"
	MStormEvents  = "sync_storm_events_per_s"
	MStormLagP50  = "sync_storm_lag_p50_ms"
	MStormLagP99  = "sync_storm_lag_p99_ms"
	// MStormEventLagP99: the probes' events reaching the bare subscriber.
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
	_, peer, closePeer, err := newSyncPair(ctx, log, "", t.nat)
	if err != nil {
		return err
	}
	defer closePeer()
	conns, err := startConnServer(t)
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
	failed    uint64
	probes    int
	lags      []float64 // ms, of the probes seen (by the receiver, or the bare subscriber)
	ackLags   []float64 // ms, Sender.Status().Lag samples
	eventsPS  float64   // events the bare subscriber received per second
	overflows uint64    // event socket overruns the bare subscriber saw
	drops     uint64    // sender's queue drops
	resyncs   uint64    // sender's snapshots after the first
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
			// The storm's entries (in TIME_WAIT for two minutes) would
			// fill the table over the rounds: every sample starts empty.
			if err := flushConntrack(ctx, l.t.nat); err != nil {
				return err
			}
		}
	}
	rate := func(v stormVariant) float64 {
		var vs []float64
		for _, s := range got[v] {
			vs = append(vs, s.connPerS)
			if s.failed > 0 {
				rep.note(fmt.Sprintf("storm %s, %s: %d short connections failed", m, v, s.failed))
			}
		}
		return medianOf(vs)
	}
	rep.set(MStormOffered, m, float64(opts.StormRate))
	rep.set(MStormOff, m, rate(stormOff))
	rep.set(MStormBare, m, rate(stormBare))
	rep.set(MStormOn, m, rate(stormOn))
	var events []float64
	for _, s := range got[stormBare] {
		events = append(events, s.eventsPS)
		if s.overflows > 0 {
			rep.note(fmt.Sprintf("storm %s, bare subscriber: the event socket overflowed %d times", m, s.overflows))
		}
	}
	rep.set(MStormEvents, m, medianOf(events))

	lags := func(v stormVariant) (vs []float64, probes int) {
		for _, s := range got[v] {
			vs = append(vs, s.lags...)
			probes += s.probes
		}
		return vs, probes
	}
	on, probes := lags(stormOn)
	rep.set(MStormProbes, m, float64(probes))
	if probes == 0 {
		return errors.New("bench storm: no probe opened")
	}
	p50, _ := lagPercentile(on, probes, 50)
	p99, short := lagPercentile(on, probes, 99)
	rep.set(MStormLagP50, m, p50)
	rep.set(MStormLagP99, m, p99)
	if short {
		rep.note(fmt.Sprintf("storm %s, sync on: %d of %d probes were not held by the receiver within %s; the lag p99 is that bound, the least it is",
			m, probes-len(on), probes, probeHold))
	}
	ev, evProbes := lags(stormBare)
	if p, short := lagPercentile(ev, evProbes, 99); !short {
		rep.set(MStormEventLagP99, m, p)
	} else {
		rep.note(fmt.Sprintf("storm %s, bare subscriber: %d of %d probes' events did not arrive within %s", m, evProbes-len(ev), evProbes, probeHold))
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
	log.Info("bench storm", "offered", opts.StormRate, "sync_off", int(rate(stormOff)), "bare", int(rate(stormBare)),
		"sync_on", int(rate(stormOn)), "lag_p50_ms", p50, "lag_p99_ms", p99, "probes", probes)
	return nil
}

// sample runs the storm once in variant v.
func (l *stormLab) sample(ctx context.Context, log *slog.Logger, nm *natMode, v stormVariant, opts Options) (res stormResult, err error) {
	pr := &probes{pending: map[conntrack.Tuple]time.Time{}}
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
		unsubscribe, err := feed.Subscribe(true, func(ev conntrack.Event) {
			events.Add(1)
			if ev.Flow.Original.Dst.Port() == probePort && ev.Kind != conntrack.EventDestroy && announced(ev.Flow) {
				pr.seen(ev.Flow.Original, time.Now())
			}
		}, func() { overflows.Add(1) })
		if err != nil {
			return res, fmt.Errorf("bench storm: %w", err)
		}
		defer unsubscribe()
	case stormOn:
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
	cr, cerr := connRate(ctx, l.t, opts.StormWorkers, opts.StormDuration, opts.StormRate)
	took := time.Since(start)
	nEvents := events.Load()
	// The probe run ends after its last probe's hold (bounded: d + probeHold).
	perr := <-probeErr
	if sender != nil {
		st := sender.Status()
		res.drops, res.resyncs = st.Counters.QueueDrops, st.Snapshots-min(st.Snapshots, 1)
	}
	if err := errors.Join(cerr, perr, stop()); err != nil {
		return res, err
	}
	res.connPerS, res.failed = cr.perSecond(), cr.Failed
	res.probes, res.lags = pr.opened, pr.lags
	res.eventsPS, res.overflows = float64(nEvents)/took.Seconds(), overflows.Load()
	log.Info("bench storm sample", "conn_per_s", int(res.connPerS), "failed", res.failed, "probes", res.probes,
		"probes_seen", len(res.lags), "events_per_s", int(res.eventsPS))
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
	if !pr.waiting() {
		return
	}
	held := recv.Held()
	now := time.Now()
	for _, f := range held {
		if f.Original.Dst.Port() == probePort {
			pr.seen(f.Original, now)
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

// probes are the storm's long-lived probe connections: when each opened
// and, once its flow is seen, how long that took.
type probes struct {
	mu      sync.Mutex
	pending map[conntrack.Tuple]time.Time // opened, not yet seen
	lags    []float64                     // ms
	opened  int
}

// waiting reports whether a probe waits to be seen.
func (p *probes) waiting() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.pending) > 0
}

// seen notes that the flow with original tuple t was seen at at: a lag if
// it is a probe not seen before.
func (p *probes) seen(t conntrack.Tuple, at time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if opened, ok := p.pending[t]; ok {
		delete(p.pending, t)
		if d := at.Sub(opened); d <= probeHold {
			p.lags = append(p.lags, float64(d.Microseconds())/1000)
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
			c, err := t.priv.DialContext(dctx, "tcp4", addr)
			cancel()
			if err != nil {
				return fmt.Errorf("bench storm: probe %d to %s: %w", p.opened+1, addr, err)
			}
			opened := time.Now()
			local := c.LocalAddr().(*net.TCPAddr).AddrPort()
			tuple := conntrack.Tuple{Proto: unix.IPPROTO_TCP, Src: netip.AddrPortFrom(local.Addr().Unmap(), local.Port()), Dst: netip.AddrPortFrom(inetAddr, probePort)}
			p.mu.Lock()
			p.pending[tuple] = opened
			p.opened++
			p.mu.Unlock()
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

package bench

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/datapath"
	"github.com/hanat/hanat/flowsync"
	"github.com/hanat/hanat/internal/netns"
)

// Issue 14's state sync, measured with the real kernel in namespaces the
// benchmark creates (see the package doc): the full sync of a NAT node's
// table to its peer, the inject of the held flows at takeover, and a
// connection storm with sync off and on (storm.go).
const (
	MSyncFlows = "sync_flows"
	// MSyncFull: from the sender's start (dial, handshake, dump, sealing,
	// TCP) to the receiver holding every flow of the completed snapshot.
	MSyncFull = "sync_full_s"
	// MSyncDump: the sender's dump of the table alone, the least a
	// snapshot costs (the bound of MSyncFull).
	MSyncDump = "sync_full_dump_s"
	// MSyncHeldMem: the receiver's live heap grown by holding the flows.
	MSyncHeldMem = "sync_held_bytes_per_flow"
	// MSyncInject: takeover, from the held flows to their entries in the
	// kernel: Receiver.NATAddrs (what the takeover's address map is made
	// of), then Receiver.InjectTakeover, the rewrite of each flow
	// overlapping the kernel's work on the batch before
	// (Injector.InjectSeq).
	MSyncInject = "sync_inject_s"
	// Its parts: Receiver.NATAddrs, InjectTakeover, and the system CPU
	// time of that (the kernel creating the entries inside sendmsg); and
	// for context the rewrite alone (Receiver.Takeover, not part of the
	// figure: what InjectTakeover overlaps).
	MSyncInjectHeld    = "sync_inject_held_s"
	MSyncInjectWrite   = "sync_inject_write_s"
	MSyncInjectKernel  = "sync_inject_kernel_s"
	MSyncInjectRewrite = "sync_inject_rewrite_s"
	// MSyncInjectSteps: the same takeover in steps, Held, Rewrite, then
	// Inject of the whole list (what hanatd's wiring does until it calls
	// InjectTakeover).
	MSyncInjectSteps = "sync_inject_steps_s"
	// MSyncBareCreate: the same entries created by a ctnetlink loop that
	// sends tuples and timeouts only (no NAT, status, protocol state or
	// mark) in batches acknowledged once, as the injector's are, but
	// without its pipelining; MSyncBareKernel its system CPU time, the
	// least the kernel takes for the entries (the inject's bound).
	MSyncBareCreate = "sync_bare_create_s"
	MSyncBareKernel = "sync_bare_create_kernel_s"

	// Issue 14's targets.
	syncFullTargetS   = 5
	syncMemTargetB    = 200
	syncInjectTargetS = 1
)

// The pair's sync link (a veth from the NAT node's namespace to its
// peer's) and the addresses of a takeover.
const (
	syncDev  = "sync0"
	syncPort = 7947 // ha.sync_port's default
)

var (
	syncNodeAddr = netip.MustParseAddr("10.0.99.1")
	syncPeerAddr = netip.MustParseAddr("10.0.99.2")
	// syncFilter selects the NAT node's flows: the private subnet SNATed
	// to its address.
	syncFilter = conntrack.Filter{PrivateCIDRs: []netip.Prefix{privCIDR}, NATAddrs: []netip.Addr{natOut}}
	// The peer's (survivor's) own SNAT address and the address of it that
	// carries the node's EIP after a takeover, and the pair's subnets.
	syncPeerNAT      = netip.MustParseAddr("198.51.100.3")
	syncTakeoverAddr = netip.MustParseAddr("198.51.100.12")
	syncPairCIDR     = netip.MustParsePrefix("10.0.0.0/16")
)

// takeoverNAT is the peer's slow path once it serves the node's zone: its
// own SNAT address, and the node's subnet translated to the address that
// now carries the node's EIP.
func takeoverNAT() datapath.NAT {
	return datapath.NAT{
		PrivateCIDRs: []netip.Prefix{syncPairCIDR},
		SNATAddrs:    []netip.Addr{syncPeerNAT},
		Zones:        []datapath.ZoneSNAT{{Sources: []netip.Prefix{privCIDR}, Addr: syncTakeoverAddr}},
	}
}

// syncFlow is flow i of the full sync: an established, assured TCP flow
// from private host 10.0.11.(10 + i%200) to 203.0.113.(1 + i%200):443,
// SNATed to natOut with its port kept (1024 + i/200): unique in both
// tuples for i below 200 × 64k.
func syncFlow(i int) conntrack.Flow {
	h := byte(i % 200)
	src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 11, 10 + h}), uint16(1024+i/200))
	dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, 1 + h}), 443)
	return conntrack.Flow{
		Original: conntrack.Tuple{Proto: unix.IPPROTO_TCP, Src: src, Dst: dst},
		Reply:    conntrack.Tuple{Proto: unix.IPPROTO_TCP, Src: dst, Dst: netip.AddrPortFrom(natOut, src.Port())},
		TCPState: "ESTABLISHED", Assured: true, SNAT: true, Timeout: time.Hour,
	}
}

// RunSync measures only the state sync figures (full sync, inject, storm).
// opts.SyncFlows and the Storm options apply, and Modes picks the storm's
// modes (nftables, fastpath).
func RunSync(ctx context.Context, log *slog.Logger, opts Options) (*Report, error) {
	opts.defaults()
	rep := newReport()
	if os.Geteuid() != 0 {
		return rep, errors.New("bench: the sync figures need root (network namespaces, conntrack, XDP)")
	}
	if err := lookTools("ethtool", "conntrack", "sysctl"); err != nil {
		return rep, err
	}
	dir, bpffs, cleanup, err := scratchDirs("hanat-bench-sync-")
	if err != nil {
		return rep, err
	}
	defer cleanup()
	return rep, runSync(ctx, log, opts, rep, bpffs, dir)
}

// runSync measures the full sync and inject, then the storm; a part that
// fails leaves its figures out and its error in the result, and the other
// part still runs.
func runSync(ctx context.Context, log *slog.Logger, opts Options, rep *Report, bpffs, dir string) error {
	var errs []error
	if err := runFullSync(ctx, log.With("part", "sync"), opts, rep); err != nil {
		errs = append(errs, fmt.Errorf("full sync and inject: %w", err))
	}
	if ctx.Err() == nil {
		if err := runStorm(ctx, log.With("part", "storm"), opts, rep, bpffs, dir); err != nil {
			errs = append(errs, fmt.Errorf("connection storm: %w", err))
		}
	}
	return errors.Join(errs...)
}

// runFullSync fills a NAT node's table with opts.SyncFlows SNATed flows
// (through conntrack.Injector), syncs it to a receiver in its peer's
// namespace over the sync link and measures the time and the receiver's
// memory, then injects the held flows, rewritten as at a takeover, into
// the peer's kernel (hanat's ruleset of a survivor loaded), and the same
// entries again without NAT (the bound).
func runFullSync(ctx context.Context, log *slog.Logger, opts Options, rep *Report) (err error) {
	n := opts.SyncFlows
	ctMax := n + n/8 + 1024
	restore, err := raiseConntrackMax(log, ctMax)
	if err != nil {
		return err
	}
	defer restore()
	node, peer, closePair, err := newSyncPair(ctx, log, "hnt-syncn-", nil)
	if err != nil {
		return err
	}
	defer closePair()
	for _, x := range []struct {
		ns  *netns.NS
		nat datapath.NAT
	}{{node, hanatFastNAT()}, {peer, takeoverNAT()}} { // the node's table as hanatd has it with the sync on
		if _, err := x.ns.Run(ctx, "sysctl", "-q", "-w", fmt.Sprintf("net.netfilter.nf_conntrack_max=%d", ctMax)); err != nil {
			return fmt.Errorf("bench sync: %w", err)
		}
		// hanat's ruleset, which also loads the kernel's NAT the
		// injected entries need.
		if _, err := datapath.NewSlowpath(log, x.ns.FD()).Apply(ctx, x.nat); err != nil {
			return fmt.Errorf("bench sync: ruleset in %s: %w", x.ns.Name, err)
		}
	}

	// The node's flows, created as a takeover would create them.
	flows := make([]conntrack.Flow, n)
	for i := range flows {
		flows[i] = syncFlow(i)
	}
	fillStart := time.Now()
	if err := inject(ctx, log, node, flows); err != nil {
		return fmt.Errorf("fill the node's table: %w", err)
	}
	log.Info("bench sync: node's table filled", "flows", n, "took", time.Since(fillStart))
	flows = nil

	key := make([]byte, 32)
	_, _ = rand.Read(key)
	sender, err := newSyncSender(log, node, key)
	if err != nil {
		return err
	}
	defer sender.close(log)
	// The dump alone: the least any snapshot of this table costs.
	dumpStart := time.Now()
	dumped, err := sender.table.Flows(ctx, syncFilter)
	dump := time.Since(dumpStart)
	if err != nil {
		return fmt.Errorf("bench sync: dump the node's table: %w", err)
	}
	if len(dumped) != n {
		return fmt.Errorf("bench sync: the node's table has %d of its %d flows", len(dumped), n)
	}
	dumped = nil
	recv, err := startSyncReceiver(ctx, log, peer, key)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, recv.stop()) }()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	stopSender := background(ctx, sender.Run)
	werr := waitUntil(ctx, 2*time.Minute, 2*time.Millisecond, func() bool {
		st := recv.Status()
		return st.Snapshots > 0 && st.Flows == n
	})
	st := recv.Status()
	if serr := stopSender(); serr != nil {
		log.Warn("bench sync: sender", "err", serr)
	}
	if werr != nil {
		return fmt.Errorf("bench sync: the receiver holds %d of %d flows (%d snapshots) %s after the sender started: %w",
			st.Flows, n, st.Snapshots, time.Since(start).Round(time.Millisecond), werr)
	}
	full := st.LastFullSync.Sub(start)
	// The sender's view died with its Run: what the heap holds now beyond
	// the start is the receiver's.
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	perFlow := (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / float64(n)
	log.Info("bench sync: full sync", "flows", n, "took", full, "dump_alone", dump, "receiver_bytes_per_flow", int(perFlow))
	rep.set(MSyncFlows, ModeNftables, float64(n))
	rep.set(MSyncFull, ModeNftables, full.Seconds())
	rep.set(MSyncDump, ModeNftables, dump.Seconds())
	rep.set(MSyncHeldMem, ModeNftables, perFlow)

	// The node is gone at a takeover: its entries are not in the
	// survivor's kernel (here they would share its hash tables).
	if err := flushConntrack(ctx, node); err != nil {
		return err
	}
	return runTakeover(ctx, log, peer, recv.Receiver, n, rep)
}

// runTakeover injects the held flows into peer as a takeover does and
// checks that the kernel has them NATed to the takeover address; then it
// empties the table and creates the same entries without NAT (the bound).
func runTakeover(ctx context.Context, log *slog.Logger, peer *netns.NS, recv *flowsync.Receiver, n int, rep *Report) error {
	in, err := conntrack.OpenInjector(log, conntrack.NetNSFD(peer.FD()))
	if err != nil {
		return fmt.Errorf("bench sync: %w", err)
	}
	defer in.Close()
	tk := flowsync.Takeover{PrivateCIDRs: []netip.Prefix{syncPairCIDR}, Addrs: map[netip.Addr]netip.Addr{natOut: syncTakeoverAddr}}
	// The rewrite alone, untimed in the takeover (which overlaps it with
	// the kernel's work): what the pipelining hides. Its flows are the
	// bare loop's, below.
	rwStart := time.Now()
	rw := recv.Takeover(tk)
	rwTook := time.Since(rwStart)
	if rw.Refused > 0 || len(rw.Flows) != n {
		return fmt.Errorf("bench sync: takeover rewrote %d of %d held flows, refused %d, first: %v", len(rw.Flows), n, rw.Refused, rw.FirstRefusal)
	}

	// The takeover as hanatd makes it: the held flows' NAT addresses
	// (what its address map is made of), then the rewrite and the inject
	// in one (Receiver.InjectTakeover), the encoder pulling each flow
	// rewritten from the receiver while the kernel creates the batch
	// before.
	start := time.Now()
	if got := recv.NATAddrs(); len(got) != 1 || got[0] != natOut {
		return fmt.Errorf("bench sync: the held flows' NAT addresses are %v, want [%s]", got, natOut)
	}
	addrsAt := time.Now()
	var (
		tres flowsync.TakeoverResult
		res  conntrack.InjectResult
	)
	kernel, ierr := systemTimeOf(func() (err error) {
		tres, res, err = recv.InjectTakeover(ctx, tk, in)
		return err
	})
	took := time.Since(start)
	if err := checkInjected(ctx, log, peer, n, tres, res, ierr); err != nil {
		return err
	}
	log.Info("bench sync: inject at takeover", "flows", n, "took", took, "nat_addrs", addrsAt.Sub(start),
		"inject", start.Add(took).Sub(addrsAt), "kernel", kernel, "rewrite_alone", rwTook)
	rep.set(MSyncInject, ModeNftables, took.Seconds())
	rep.set(MSyncInjectHeld, ModeNftables, addrsAt.Sub(start).Seconds())
	rep.set(MSyncInjectRewrite, ModeNftables, rwTook.Seconds())
	rep.set(MSyncInjectWrite, ModeNftables, start.Add(took).Sub(addrsAt).Seconds())
	rep.set(MSyncInjectKernel, ModeNftables, kernel.Seconds())

	// The takeover in steps, as hanatd's wiring made it before
	// InjectTakeover: Held, Rewrite, then Inject of the whole list.
	if err := flushConntrack(ctx, peer); err != nil {
		return err
	}
	runtime.GC()
	stepStart := time.Now()
	held := recv.Held()
	srw := tk.Rewrite(held)
	held = nil
	res, ierr = in.Inject(ctx, srw.Flows)
	stepTook := time.Since(stepStart)
	if err := checkInjected(ctx, log, peer, n, srw, res, ierr); err != nil {
		return fmt.Errorf("in steps: %w", err)
	}
	srw = flowsync.TakeoverResult{}
	log.Info("bench sync: inject at takeover in steps (Held, Rewrite, Inject)", "flows", n, "took", stepTook)
	rep.set(MSyncInjectSteps, ModeNftables, stepTook.Seconds())

	if err := flushConntrack(ctx, peer); err != nil {
		return err
	}
	bare := rw.Flows
	fill, err := newFlowFiller(peer, func(i int) (netlink.Message, error) {
		f := bare[i]
		return ctEntry{
			proto:   f.Original.Proto,
			orig:    [2]netip.AddrPort{f.Original.Src, f.Original.Dst},
			reply:   [2]netip.AddrPort{f.Reply.Src, f.Reply.Dst},
			timeout: uint32(f.Timeout / time.Second),
		}.message()
	}, true)
	if err != nil {
		return err
	}
	defer fill.close()
	bareStart := time.Now()
	bareKernel, err := systemTimeOf(func() error { return fill.fillTo(ctx, n) })
	if err != nil {
		return fmt.Errorf("bench sync: bare create loop: %w", err)
	}
	bareTook := time.Since(bareStart)
	log.Info("bench sync: bare ctnetlink create loop", "flows", n, "took", bareTook, "kernel", bareKernel)
	rep.set(MSyncBareCreate, ModeNftables, bareTook.Seconds())
	rep.set(MSyncBareKernel, ModeNftables, bareKernel.Seconds())
	return nil
}

// checkInjected checks a takeover's outcome: nothing refused, every flow
// created without error, and the kernel holding them SNATed to the
// takeover address, established and assured.
func checkInjected(ctx context.Context, log *slog.Logger, peer *netns.NS, n int, rw flowsync.TakeoverResult, res conntrack.InjectResult, ierr error) error {
	switch {
	case rw.Refused > 0:
		return fmt.Errorf("bench sync: takeover refused %d of %d held flows, first: %w", rw.Refused, n, rw.FirstRefusal)
	case ierr != nil:
		return fmt.Errorf("bench sync: inject %d flows: %w", n, ierr)
	case res.Created != n:
		return fmt.Errorf("bench sync: inject of %d flows created %d (%d existed, %d failed, first: %v)", n, res.Created, res.Existed, res.Failed, res.FirstErr)
	}
	tb, err := conntrack.Open(log, conntrack.NetNSFD(peer.FD()))
	if err != nil {
		return fmt.Errorf("bench sync: %w", err)
	}
	defer tb.Close()
	stats, err := tb.Stats(ctx, conntrack.Filter{PrivateCIDRs: []netip.Prefix{syncPairCIDR}, NATAddrs: []netip.Addr{syncTakeoverAddr}})
	if err != nil {
		return fmt.Errorf("bench sync: read the injected entries back: %w", err)
	}
	if stats.Active != n || stats.TCPEstablished != n || stats.Assured != n {
		return fmt.Errorf("bench sync: after the inject the kernel has %d entries SNATed to %s (%d established, %d assured), want %d of each",
			stats.Active, syncTakeoverAddr, stats.TCPEstablished, stats.Assured, n)
	}
	return nil
}

// inject creates flows in ns with a conntrack.Injector.
func inject(ctx context.Context, log *slog.Logger, ns *netns.NS, flows []conntrack.Flow) error {
	in, err := conntrack.OpenInjector(log, conntrack.NetNSFD(ns.FD()))
	if err != nil {
		return fmt.Errorf("bench sync: %w", err)
	}
	defer in.Close()
	res, err := in.Inject(ctx, flows)
	if err != nil {
		return fmt.Errorf("bench sync: inject %d flows in %s: %w", len(flows), ns.Name, err)
	}
	if res.Created != len(flows) {
		return fmt.Errorf("bench sync: inject of %d flows in %s created %d (%d existed, %d failed, first: %v)",
			len(flows), ns.Name, res.Created, res.Existed, res.Failed, res.FirstErr)
	}
	return nil
}

// newSyncPair returns the NAT node's namespace (node, or a new one named
// with prefix when node is nil) and a new peer namespace linked to it by
// the sync link (syncNodeAddr on the node, syncPeerAddr on the peer), and
// what deletes the namespaces it created.
func newSyncPair(ctx context.Context, log *slog.Logger, prefix string, node *netns.NS) (_, _ *netns.NS, closeAll func(), err error) {
	var created []*netns.NS
	closeAll = func() {
		for _, ns := range created {
			if err := ns.Close(); err != nil {
				log.Error("bench sync: namespace cleanup", "err", err)
			}
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	if node == nil {
		if node, err = netns.Create(netns.UniqueName(prefix)); err != nil {
			return nil, nil, nil, fmt.Errorf("bench sync: %w", err)
		}
		created = append(created, node)
	}
	peer, err := netns.Create(netns.UniqueName("hnt-syncp-"))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("bench sync: %w", err)
	}
	created = append(created, peer)
	if err := node.Veth(syncDev, netip.PrefixFrom(syncNodeAddr, 24), peer, syncDev, netip.PrefixFrom(syncPeerAddr, 24), netip.Addr{}); err != nil {
		return nil, nil, nil, fmt.Errorf("bench sync: sync link: %w", err)
	}
	return node, peer, closeAll, ctx.Err()
}

// syncReceiver is a flowsync.Receiver serving in the peer's namespace on
// the sync link, as the peer's hanatd runs it.
type syncReceiver struct {
	*flowsync.Receiver
	stop func() error
}

func startSyncReceiver(ctx context.Context, log *slog.Logger, peer *netns.NS, key []byte) (*syncReceiver, error) {
	r, err := flowsync.NewReceiver(flowsync.ReceiverConfig{Log: log.With("component", "flowsync-receiver"), Key: key, Peer: syncNodeAddr})
	if err != nil {
		return nil, fmt.Errorf("bench sync: %w", err)
	}
	addr := netip.AddrPortFrom(syncPeerAddr, syncPort).String()
	var ln net.Listener
	if err := peer.Do(func() (err error) {
		ln, err = (&net.ListenConfig{}).Listen(ctx, "tcp4", addr)
		return err
	}); err != nil {
		return nil, fmt.Errorf("bench sync: listen on %s in %s: %w", addr, peer.Name, err)
	}
	return &syncReceiver{Receiver: r, stop: background(ctx, func(ctx context.Context) error { return r.Serve(ctx, ln) })}, nil
}

// syncSender is a flowsync.Sender in the NAT node's namespace, as the
// node's hanatd runs it: its source is the node's conntrack table, and it
// dials the peer's receiver over the sync link.
type syncSender struct {
	*flowsync.Sender
	table *conntrack.Table
}

func newSyncSender(log *slog.Logger, node *netns.NS, key []byte) (*syncSender, error) {
	table, err := conntrack.Open(log, conntrack.NetNSFD(node.FD()))
	if err != nil {
		return nil, fmt.Errorf("bench sync: %w", err)
	}
	s, err := flowsync.NewSender(flowsync.SenderConfig{
		Log: log.With("component", "flowsync-sender"), Key: key, Peer: netip.AddrPortFrom(syncPeerAddr, syncPort),
		Filter: syncFilter, Source: table, Dial: node.DialContext,
	})
	if err != nil {
		table.Close()
		return nil, fmt.Errorf("bench sync: %w", err)
	}
	return &syncSender{Sender: s, table: table}, nil
}

func (s *syncSender) close(log *slog.Logger) {
	if err := s.table.Close(); err != nil {
		log.Warn("bench sync: close the sender's table", "err", err)
	}
}

// background runs each fn on a goroutine of its own with a context
// derived from ctx; stop cancels that context, waits for every fn and
// returns their errors joined (the same on every call).
func background(ctx context.Context, fns ...func(context.Context) error) (stop func() error) {
	ctx, cancel := context.WithCancel(ctx)
	errs := make(chan error, len(fns))
	for _, fn := range fns {
		go func() { errs <- fn(ctx) }()
	}
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() {
			cancel()
			all := make([]error, 0, len(fns))
			for range fns {
				all = append(all, <-errs)
			}
			err = errors.Join(all...)
		})
		return err
	}
}

// waitUntil polls cond every interval until it holds, ctx ends or limit
// passes.
func waitUntil(ctx context.Context, limit, interval time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
	return nil
}

// systemTimeOf runs fn and returns the system CPU time the process spent
// meanwhile (fn's kernel work, when nothing else runs).
func systemTimeOf(fn func() error) (time.Duration, error) {
	_, before, err := cpuTimes()
	if err != nil {
		return 0, err
	}
	ferr := fn()
	_, after, err := cpuTimes()
	return after - before, errors.Join(ferr, err)
}

// cpuTimes is the process's user and system CPU time so far.
func cpuTimes() (user, sys time.Duration, err error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, 0, fmt.Errorf("bench: getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano()), nil
}

// flushConntrack empties ns's conntrack table.
func flushConntrack(ctx context.Context, ns *netns.NS) error {
	if out, err := ns.Run(ctx, "conntrack", "-F"); err != nil && !strings.Contains(out, "flow entries have been deleted") {
		return err
	}
	return nil
}

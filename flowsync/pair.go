package flowsync

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/hanat/hanat/conntrack"
)

// PairConfig configures one node of an HA pair's state sync.
type PairConfig struct {
	Log  *slog.Logger
	Key  []byte     // the pair's shared key
	Peer netip.Addr // the peer's private IP: its SNAT address
	Port uint16     // the sync port, the same on both nodes
	// Filter selects the flows this node streams: every flow of the
	// private CIDRs translated to this node's addresses (the standby
	// address is added to NATAddrs).
	Filter conntrack.Filter
	// Feed is the daemon's one conntrack event socket; EstablishedMark
	// the ct mark the table sets on a flow worth keeping (Sender.Follow).
	Feed            *conntrack.EventFeed
	EstablishedMark uint32
	// Standby finds or makes the address that carries the peer's EIP
	// here; it is asked once, after the conntrack sockets open. nil or
	// an invalid address: none, the peer's flows keep their entries at a
	// takeover but not their public address.
	Standby func(context.Context) netip.Addr
	// NAT is this node's applied NAT: its private CIDRs and SNAT
	// addresses (the first is where this zone's flows come back to).
	NAT func() (private []netip.Prefix, snat []netip.Addr)
	// Subnets are the subnets of route tables (nil: the peer's zone has
	// no SNAT of its own, see Zones).
	Subnets func(ctx context.Context, tables []string) ([]netip.Prefix, error)
	// PeerEIPHere reports whether the peer's EIP follows its tables to
	// the standby address (nil: always). While it does not, a takeover
	// leaves the peer's own flows unrewritten: refused, since no address
	// here would carry their public IP.
	PeerEIPHere func() bool
}

// Pair is a node's half of the state sync: this node's flows stream to
// the peer (the sender follows the conntrack event feed, a snapshot on
// each connect), the peer's are held here, and at a takeover the held
// flows are injected with their NAT address rewritten to the address
// that will carry the peer's EIP here, before the EIP and the routes
// move.
type Pair struct {
	cfg      PairConfig
	log      *slog.Logger
	sender   *Sender
	receiver *Receiver
	table    *conntrack.Table
	injector *conntrack.Injector
	standby  netip.Addr
	started  time.Time

	mu        sync.Mutex
	last      *TakeoverReport
	zoneOf    string // the backup tables zoneNets were read for
	zoneNets  []netip.Prefix
	zoneAsked time.Time
}

// TakeoverReport is what the last takeover injected.
type TakeoverReport struct {
	At       time.Time
	Tables   []string
	Injected int // new kernel entries
	Existed  int // entries the kernel already had
	Refused  int // flows the rewrite refused
	Failed   int
	Took     time.Duration
	Error    string // the first failure or refusal
}

// PairStatus is the sync's typed state: both streams and the last
// takeover.
type PairStatus struct {
	Standby      netip.Addr
	Sent, Held   Status
	LastTakeover *TakeoverReport // nil before the first
}

// NewPair opens the conntrack sockets the sync needs and builds its
// sender and receiver; nothing runs before Run.
func NewPair(ctx context.Context, cfg PairConfig) (_ *Pair, err error) {
	p := &Pair{cfg: cfg, log: cfg.Log, started: time.Now()}
	if p.table, err = conntrack.Open(p.log, conntrack.NetNS{}); err == nil {
		p.injector, err = conntrack.OpenInjector(p.log, conntrack.NetNS{})
	}
	if err != nil {
		p.close()
		return nil, fmt.Errorf("conntrack: %w", err)
	}
	if cfg.Standby != nil {
		p.standby = cfg.Standby(ctx)
	}
	filter := cfg.Filter
	if p.standby.IsValid() {
		// The peer's zone's flows this node serves: the peer takes
		// them back at failback.
		filter.NATAddrs = append(slices.Clone(filter.NATAddrs), p.standby)
	}
	p.sender, err = NewSender(SenderConfig{Log: p.log, Key: cfg.Key, Peer: netip.AddrPortFrom(cfg.Peer, cfg.Port), Filter: filter, Source: p.table})
	if err == nil {
		p.receiver, err = NewReceiver(ReceiverConfig{Log: p.log, Key: cfg.Key, Peer: cfg.Peer,
			Listen: netip.AddrPortFrom(netip.IPv4Unspecified(), cfg.Port)})
	}
	if err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

func (p *Pair) close() {
	if p.table != nil {
		p.table.Close()
	}
	if p.injector != nil {
		p.injector.Close()
	}
}

// Standby is the address that carries the peer's EIP here (invalid:
// none).
func (p *Pair) Standby() netip.Addr { return p.standby }

// Run streams and receives until ctx is done; sync trouble is logged and
// never stops the NAT.
func (p *Pair) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for name, part := range map[string]func(context.Context) error{
		"sender":   p.sender.Run,
		"receiver": p.receiver.Run,
		"events":   func(ctx context.Context) error { return p.sender.Follow(ctx, p.cfg.Feed, p.cfg.EstablishedMark) },
	} {
		wg.Go(func() {
			if err := part(ctx); err != nil && ctx.Err() == nil {
				p.log.Error("state sync stopped; failovers reset connections", "part", name, "err", err)
			}
		})
	}
	wg.Wait()
	return nil
}

// SyncWait bounds how long a starting node waits for its peer's first
// snapshot before it counts as healthy anyway (a peer that is gone sends
// none).
const SyncWait = 10 * time.Second

// Ready reports whether this node holds the peer's flows, so it may take
// tables back (the HA loop counts it unhealthy until then: a failback
// waits for the snapshot, at most SyncWait after start).
func (p *Pair) Ready() (bool, string) {
	if time.Since(p.started) > SyncWait {
		return true, ""
	}
	if p.receiver.Status().LastFullSync.IsZero() {
		return false, "waiting for the peer's flows (state sync snapshot)"
	}
	return true, ""
}

// TakeoverAddrs maps each NAT address of the held flows to the address
// of this node that carries its EIP here: the peer's own address to the
// standby address (when there is one); any other address of the peer's
// (its standby, with which it served this node's zone) to self, this
// node's SNAT address (when there is one).
func TakeoverAddrs(held []netip.Addr, peer, standby, self netip.Addr) map[netip.Addr]netip.Addr {
	addrs := map[netip.Addr]netip.Addr{}
	if standby.IsValid() {
		addrs[peer] = standby
	}
	if !self.IsValid() {
		return addrs
	}
	for _, a := range held {
		if a != peer && a.IsValid() {
			if _, ok := addrs[a]; !ok {
				addrs[a] = self
			}
		}
	}
	return addrs
}

// Takeover injects the held flows, their NAT address rewritten (see
// TakeoverAddrs), into the kernel before the EIP and the routes move.
func (p *Pair) Takeover(ctx context.Context, tables []string) error {
	start := time.Now()
	private, snat := p.cfg.NAT()
	var self netip.Addr
	if len(snat) > 0 {
		self = snat[0]
	}
	standby := p.standby
	if p.cfg.PeerEIPHere != nil && !p.cfg.PeerEIPHere() {
		standby = netip.Addr{}
	}
	addrs := TakeoverAddrs(p.receiver.NATAddrs(), p.cfg.Peer, standby, self)
	// The offload mark is this node's table's to set: cleared, the
	// flows go on to this node's fast path after its threshold.
	rw, res, err := p.receiver.InjectTakeover(ctx, Takeover{PrivateCIDRs: private, Addrs: addrs, ClearMark: p.cfg.EstablishedMark}, p.injector)
	t := &TakeoverReport{At: start, Tables: tables, Injected: res.Created, Existed: res.Existed, Refused: rw.Refused,
		Failed: res.Failed, Took: time.Since(start)}
	switch {
	case err != nil:
		t.Error = err.Error()
	case res.FirstErr != nil:
		t.Error = res.FirstErr.Error()
	case rw.FirstRefusal != nil:
		t.Error = rw.FirstRefusal.Error()
	}
	p.mu.Lock()
	p.last = t
	p.mu.Unlock()
	held := res.Created + res.Existed + res.Failed + rw.Refused
	p.log.Info("peer's flows injected before the routes move", "tables", tables, "held", held, "injected", res.Created,
		"existed", res.Existed, "refused", rw.Refused, "failed", res.Failed, "took", time.Since(start).Round(time.Millisecond))
	if err != nil {
		return fmt.Errorf("inject the %d held flows: %w", held, err)
	}
	return nil
}

// Status is the sync's typed state.
func (p *Pair) Status() PairStatus {
	st := PairStatus{Standby: p.standby, Sent: p.sender.Status(), Held: p.receiver.Status()}
	p.mu.Lock()
	st.LastTakeover = p.last
	p.mu.Unlock()
	return st
}

// Zones are the sources of the peer's zone while this node has a standby
// address: the private subnets of the peer's route tables (this node's
// backups, read through Subnets when they change, at most once a
// minute) that lie in private. They leave with the standby address,
// which carries the peer's EIP whenever this node serves them.
func (p *Pair) Zones(ctx context.Context, backups []string, private []netip.Prefix) []netip.Prefix {
	if !p.standby.IsValid() || len(backups) == 0 || p.cfg.Subnets == nil {
		return nil
	}
	slices.Sort(backups)
	key := fmt.Sprint(backups)
	p.mu.Lock()
	nets, fresh := p.zoneNets, p.zoneOf == key || time.Since(p.zoneAsked) < time.Minute
	p.mu.Unlock()
	if !fresh {
		got, err := p.cfg.Subnets(ctx, backups)
		p.mu.Lock()
		p.zoneAsked = time.Now()
		if err != nil {
			p.log.Warn("the peer's subnets: new flows from them leave with this node's own address", "route_tables", backups, "err", err)
		} else {
			p.zoneOf, p.zoneNets, nets = key, got, got
		}
		p.mu.Unlock()
	}
	return within(nets, private)
}

// within is the subnets of nets that lie inside one of private.
func within(nets, private []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range nets {
		for _, c := range private {
			if c.Bits() <= p.Bits() && c.Contains(p.Addr()) {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

package gwlb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/hanat/hanat/conntrack"
)

// Discovery's pace: a GWLB gains an ENI only when an AZ is enabled, so a
// minute is soon enough; a failed call is retried sooner.
const (
	rediscoverEvery = time.Minute
	retryDiscover   = 5 * time.Second
)

// MemberConfig is what a fleet member's daemon knows of its datapath.
type MemberConfig struct {
	Log    *slog.Logger
	Local  netip.Addr   // the instance's primary private IP: GENEVE's destination
	Addrs  []netip.Addr // gwlb.addresses (empty: Discover them)
	PinDir string
	// Discover reads the GWLB addresses from EC2 (nil: Addrs are
	// configured, or there is no EC2 client).
	Discover func(context.Context) ([]netip.Addr, error)
	// Link is the outside interface once the NAT has resolved it ("" until
	// then); Filter the NAT's flows as conntrack selects them.
	Link   func() string
	Filter func() conntrack.Filter
}

// Member is the datapath as a fleet member runs it: attached at the first
// Check after the outside interface is known (the programs and the flows'
// return paths are pinned under PinDir, so a restart adopts them), its
// GWLB addresses configured or discovered and rediscovered, its flows the
// ones conntrack still has. Until it is attached, or while its programs
// are off the link, Check fails: a member that cannot decapsulate must
// never draw GWLB's flows.
type Member struct {
	cfg MemberConfig

	mu           sync.Mutex
	addrs        []netip.Addr     // configured, or the last discovered
	nextDiscover time.Time        // when Discover runs again
	dp           *Datapath        // nil until attached
	nextNeigh    time.Time        // when the MAC cache is refreshed again
	neighMisses  uint64           // the neigh_miss counter at the last refresh
	table        *conntrack.Table // nil until the first LiveFlows
}

// NewMember returns the member's datapath, not attached yet.
func NewMember(cfg MemberConfig) *Member {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Member{cfg: cfg, addrs: slices.Clone(cfg.Addrs)}
}

// refreshAddrs rediscovers the GWLB addresses when due and hands a change
// to the attached datapath. It returns the addresses to check against.
func (m *Member) refreshAddrs(ctx context.Context) ([]netip.Addr, error) {
	m.mu.Lock()
	due := m.cfg.Discover != nil && !time.Now().Before(m.nextDiscover)
	addrs := m.addrs
	m.mu.Unlock()
	if !due {
		return addrs, nil
	}
	found, err := m.cfg.Discover(ctx)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.nextDiscover = time.Now().Add(retryDiscover)
		return m.addrs, fmt.Errorf("GWLB addresses from EC2 (gwlb.addresses is empty): %w", err)
	}
	m.nextDiscover = time.Now().Add(rediscoverEvery)
	if slices.Equal(found, m.addrs) {
		return m.addrs, nil
	}
	if m.dp != nil {
		if err := m.dp.SetGWLBAddrs(found); err != nil {
			return m.addrs, fmt.Errorf("GWLB datapath: set the discovered addresses %v: %w", found, err)
		}
	}
	m.cfg.Log.Info("GWLB addresses discovered", "gwlb", found, "before", m.addrs)
	m.addrs = found
	return found, nil
}

func (m *Member) attached(ctx context.Context) (*Datapath, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dp != nil {
		return m.dp, nil
	}
	iface := m.cfg.Link()
	if iface == "" {
		return nil, errors.New("GWLB datapath not attached: the outside interface is not resolved yet")
	}
	dp, err := Attach(ctx, Config{Link: iface, LocalAddr: m.cfg.Local, GWLBAddrs: m.addrs, PinDir: m.cfg.PinDir})
	if err != nil {
		return nil, fmt.Errorf("GWLB datapath not attached: %w", err)
	}
	m.cfg.Log.Info("GWLB datapath attached", "interface", iface, "local", m.cfg.Local, "gwlb", m.addrs, "pins", m.cfg.PinDir)
	m.dp = dp
	return dp, nil
}

// Check attaches the datapath when it is not yet and says whether it
// works: GWLB addresses known, both programs on the link.
func (m *Member) Check(ctx context.Context) error {
	addrs, err := m.refreshAddrs(ctx)
	if len(addrs) == 0 {
		// The datapath would refuse every packet as foreign: a healthy
		// member that drops all its flows.
		if err == nil {
			err = errors.New("none configured (gwlb.addresses) and none found in EC2")
		}
		return fmt.Errorf("GWLB datapath: no GWLB addresses to accept GENEVE from: %w", err)
	}
	if err != nil {
		m.cfg.Log.Warn("GWLB addresses not rediscovered; keeping the last ones", "gwlb", addrs, "err", err)
	}
	dp, err := m.attached(ctx)
	if err != nil {
		return err
	}
	if err := dp.Check(); err != nil {
		return err
	}
	m.refreshNeighbours(ctx, dp)
	return nil
}

// refreshNeighbours refreshes the replies' MAC cache every
// neighRefreshEvery, and sooner when replies were sent without it
// (neigh_miss grew). A failure only costs the fallback: it is logged.
func (m *Member) refreshNeighbours(ctx context.Context, dp *Datapath) {
	c, err := dp.Counters()
	if err != nil {
		m.cfg.Log.Warn("GWLB datapath: counters unreadable; refreshing the MAC cache anyway", "err", err)
	}
	m.mu.Lock()
	misses := c[ReasonNeighMiss]
	due := !time.Now().Before(m.nextNeigh) || misses != m.neighMisses
	if due {
		m.nextNeigh, m.neighMisses = time.Now().Add(neighRefreshEvery), misses
	}
	m.mu.Unlock()
	if !due {
		return
	}
	if _, err := dp.RefreshNeighbours(ctx); err != nil {
		m.cfg.Log.Warn("GWLB datapath: MAC cache not refreshed; replies use bpf_redirect_neigh", "err", err)
	}
}

// LiveFlows are the GWLB's flows that conntrack still has (the flow map
// forgets a flow only under pressure, so a drain would never end on it);
// none before the datapath is attached.
// The conntrack dump runs without the member's lock, so a health check
// never waits behind it (the Table runs its dumps one at a time).
func (m *Member) LiveFlows(ctx context.Context) ([]Flow, error) {
	m.mu.Lock()
	dp := m.dp
	if dp != nil && m.table == nil {
		t, err := conntrack.Open(m.cfg.Log, conntrack.NetNS{})
		if err != nil {
			m.mu.Unlock()
			return nil, err
		}
		m.table = t
	}
	table := m.table
	m.mu.Unlock()
	if dp == nil {
		return nil, nil
	}
	return dp.LiveFlows(ctx, table, m.cfg.Filter())
}

// Addrs are the GWLB addresses the member takes GENEVE from now: the
// configured ones, or (discovered true) the last found in EC2.
func (m *Member) Addrs() (addrs []netip.Addr, discovered bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.addrs), m.cfg.Discover != nil
}

// Counters are the datapath's drop and pass counters (nil before attach).
func (m *Member) Counters() (map[string]uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.dp == nil {
		return nil, nil
	}
	return m.dp.Counters()
}

// Close releases the process's handles; the pinned programs stay.
func (m *Member) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	if m.dp != nil {
		errs = append(errs, m.dp.Close())
		m.dp = nil
	}
	if m.table != nil {
		errs = append(errs, m.table.Close())
		m.table = nil
	}
	return errors.Join(errs...)
}

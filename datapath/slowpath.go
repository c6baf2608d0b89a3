package datapath

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Counter is a rule's packet and byte counter.
type Counter struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Slowpath owns table inet hanat in one network namespace. It never lists,
// flushes or edits any other table. Its methods are safe for concurrent use.
type Slowpath struct {
	log     *slog.Logger
	netnsFD int

	mu sync.Mutex // serialises Apply and Remove
}

// NewSlowpath returns a Slowpath for the namespace netnsFD refers to; -1 is
// the namespace of the calling process.
func NewSlowpath(log *slog.Logger, netnsFD int) *Slowpath {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Slowpath{log: log, netnsFD: netnsFD}
}

func (s *Slowpath) conn() (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if s.netnsFD >= 0 {
		opts = append(opts, nftables.WithNetNSFd(s.netnsFD))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables.New(netns fd %d): %w", s.netnsFD, err)
	}
	return c, nil
}

func hanatTable() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
}

// Apply makes table inet hanat implement n. When the live table already
// carries the hash of the desired one (and the same rules by name; edits of
// set elements or rule bodies by hand are not detected) it does nothing and
// returns false.
// Otherwise it replaces the table in one atomic batch (add, delete, add the
// whole table): packets see either the old table or the new one, never a
// half-built one, and no other table is touched.
func (s *Slowpath) Apply(ctx context.Context, n NAT) (changed bool, err error) {
	want, err := BuildTable(n)
	if err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("nftables apply table inet %s: %w", TableName, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()

	c, err := s.conn()
	if err != nil {
		return false, err
	}
	live, err := readLive(c, want)
	if err != nil {
		return false, err
	}
	if live.upToDate(want) {
		s.log.Debug("nftables table up to date", "table", "inet "+TableName, "hash", want.Hash)
		return false, nil
	}
	if err := queueTable(c, want); err != nil {
		return false, fmt.Errorf("nftables apply table inet %s: %w", TableName, err)
	}
	if err := c.Flush(); err != nil {
		return false, fmt.Errorf("nftables apply table inet %s (%s): %w", TableName, want.Hash, err)
	}
	s.log.Info("nftables table applied", "table", "inet "+TableName,
		"hash", want.Hash, "previous", live.marker, "replaced", live.present,
		"private_cidrs", len(n.PrivateCIDRs), "snat_addrs", len(n.SNATAddrs),
		"port_forwards", len(n.PortForwards))
	return true, nil
}

// queueTable is the one place that queues the table's messages: add table
// (so the delete cannot fail when it is absent), delete it, add it again
// with everything in it. The caller flushes once.
func queueTable(c *nftables.Conn, t Table) error {
	c.AddTable(t.Table)
	c.DelTable(t.Table)
	c.AddTable(t.Table)
	for _, s := range t.Sets {
		if err := c.AddSet(s.Set, s.Elements); err != nil {
			return fmt.Errorf("add set %s: %w", s.Set.Name, err)
		}
	}
	for _, ch := range t.Chains {
		c.AddChain(ch)
	}
	for _, r := range t.Rules {
		c.AddRule(r)
	}
	return nil
}

// Remove deletes table inet hanat if it exists, and nothing else.
func (s *Slowpath) Remove(ctx context.Context) (removed bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("nftables remove table inet %s: %w", TableName, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.conn()
	if err != nil {
		return false, err
	}
	present, err := tablePresent(c)
	if err != nil || !present {
		return false, err
	}
	c.DelTable(hanatTable())
	if err := c.Flush(); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil // removed by someone else in between
		}
		return false, fmt.Errorf("nftables delete table inet %s: %w", TableName, err)
	}
	s.log.Info("nftables table removed", "table", "inet "+TableName)
	return true, nil
}

// Present reports whether table inet hanat exists.
func (s *Slowpath) Present(ctx context.Context) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("nftables get table inet %s: %w", TableName, err)
	}
	c, err := s.conn()
	if err != nil {
		return false, err
	}
	return tablePresent(c)
}

// Counters returns the counter of every named rule of table inet hanat,
// keyed by rule name (RuleDropInvalid, RuleSNAT, PortForward.Name, …);
// rules sharing a name (RuleSNAT with several SNAT addresses) are summed.
// An absent table gives an empty map.
func (s *Slowpath) Counters(ctx context.Context) (map[string]Counter, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("nftables counters of table inet %s: %w", TableName, err)
	}
	c, err := s.conn()
	if err != nil {
		return nil, err
	}
	out := make(map[string]Counter)
	present, err := tablePresent(c)
	if err != nil || !present {
		return out, err
	}
	t := hanatTable()
	for _, chain := range []string{ChainForward, ChainInput, ChainPrerouting, ChainPostroute} {
		rules, err := c.GetRules(t, &nftables.Chain{Name: chain, Table: t})
		if err != nil {
			if isNotExist(err) {
				continue
			}
			return nil, fmt.Errorf("nftables list rules of inet %s %s: %w", TableName, chain, err)
		}
		for _, r := range rules {
			name, ok := ruleComment(r)
			if !ok || name == "" {
				continue
			}
			for _, e := range r.Exprs {
				if ctr, ok := e.(*expr.Counter); ok {
					sum := out[name]
					sum.Packets += ctr.Packets
					sum.Bytes += ctr.Bytes
					out[name] = sum
					break
				}
			}
		}
	}
	return out, nil
}

func tablePresent(c *nftables.Conn) (bool, error) {
	_, err := c.ListTableOfFamily(TableName, nftables.TableFamilyINet)
	switch {
	case err == nil:
		return true, nil
	case isNotExist(err):
		return false, nil
	default:
		return false, fmt.Errorf("nftables get table inet %s: %w", TableName, err)
	}
}

// liveTable is what Apply reads back: the marker hash in the config chain
// ("" when missing) and the rule names of every chain of the desired table.
type liveTable struct {
	present bool
	marker  string
	rules   map[string][]string // chain -> rule comments, in order
}

func readLive(c *nftables.Conn, want Table) (liveTable, error) {
	var lt liveTable
	var err error
	if lt.present, err = tablePresent(c); err != nil || !lt.present {
		return lt, err
	}
	lt.rules = make(map[string][]string)
	t := hanatTable()
	for _, ch := range want.Chains {
		rules, err := c.GetRules(t, &nftables.Chain{Name: ch.Name, Table: t})
		if err != nil {
			if isNotExist(err) {
				continue
			}
			return lt, fmt.Errorf("nftables list rules of inet %s %s: %w", TableName, ch.Name, err)
		}
		names := make([]string, 0, len(rules))
		for _, r := range rules {
			cm, _ := ruleComment(r)
			names = append(names, cm)
			if ch.Name == ChainConfig && lt.marker == "" && strings.HasPrefix(cm, markerPrefix) {
				lt.marker = strings.TrimPrefix(cm, markerPrefix)
			}
		}
		lt.rules[ch.Name] = names
	}
	return lt, nil
}

// upToDate: the live table carries want's marker and the same rules by
// name in every chain (so a rule added or deleted by hand is repaired).
func (lt liveTable) upToDate(want Table) bool {
	if !lt.present || lt.marker != want.Hash {
		return false
	}
	wantRules := make(map[string][]string)
	for _, r := range want.Rules {
		cm, _ := ruleComment(r)
		wantRules[r.Chain.Name] = append(wantRules[r.Chain.Name], cm)
	}
	for _, ch := range want.Chains {
		if !slices.Equal(lt.rules[ch.Name], wantRules[ch.Name]) {
			return false
		}
	}
	return true
}

// isNotExist reports whether a netlink error means "no such table/chain".
// google/nftables sometimes flattens errors with %v, so the text is checked
// too.
func isNotExist(err error) bool {
	if errors.Is(err, unix.ENOENT) {
		return true
	}
	return strings.Contains(err.Error(), "no such file or directory")
}

package conntrack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	ct "github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// dumpAttempts bounds how often one call restarts a dump that the kernel
// interrupted or that overran the socket buffer.
const dumpAttempts = 3

// retryBackoff is the pause before attempt 2, 3, …
var retryBackoff = [...]time.Duration{20 * time.Millisecond, 100 * time.Millisecond}

// Table reads the kernel conntrack table of one network namespace and
// updates its entries. Its methods are safe for concurrent use; dumps run
// one at a time.
type Table struct {
	log     *slog.Logger
	where   string // "netns fd 7" or "current netns", for errors
	dial    func() (dumper, error)
	ns      NetNS        // our duplicate of the namespace
	closeNS func() error // closes it

	sem    chan struct{} // one dump at a time; holds d
	d      dumper        // nil after a failed dump until redialled
	closed bool

	connMu     sync.Mutex
	conn       *ct.Conn // entry updates and lookups, dialled on first use
	connClosed bool
}

// ErrClosed is returned by dumps on a closed Table.
var ErrClosed = errors.New("conntrack table closed")

// Open dials ctnetlink in the network namespace ns. The socket is made in
// that namespace and stays there. Open keeps its own duplicate of the
// namespace fd (to redial after a failed dump), so the caller may close
// its fd afterwards. Reading the table needs CAP_NET_ADMIN in that
// namespace.
func Open(log *slog.Logger, ns NetNS) (*Table, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	own, closeNS, err := ns.dup()
	if err != nil {
		return nil, fmt.Errorf("conntrack.Open(%s): %w", ns, err)
	}
	dial := func() (dumper, error) { return dialNetfilter(own) }
	t, err := newTable(log, ns.String(), dial)
	if err != nil {
		_ = closeNS()
		return nil, fmt.Errorf("conntrack.Open(%s): %w", ns, err)
	}
	t.ns, t.closeNS = own, closeNS
	return t, nil
}

func newTable(log *slog.Logger, where string, dial func() (dumper, error)) (*Table, error) {
	d, err := dial()
	if err != nil {
		return nil, err
	}
	t := &Table{log: log, where: where, dial: dial, sem: make(chan struct{}, 1), d: d, closeNS: func() error { return nil }}
	return t, nil
}

// Close releases the sockets. It waits for a running dump to finish.
func (t *Table) Close() error {
	t.sem <- struct{}{}
	defer func() { <-t.sem }()
	if t.closed {
		return nil
	}
	t.closed = true
	var errs []error
	if t.d != nil {
		errs = append(errs, t.d.close())
		t.d = nil
	}
	t.connMu.Lock()
	t.connClosed = true
	if t.conn != nil {
		errs = append(errs, t.conn.Close())
		t.conn = nil
	}
	t.connMu.Unlock()
	if cerr := t.closeNS(); cerr != nil {
		errs = append(errs, fmt.Errorf("close namespace fd: %w", cerr))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("conntrack table (%s): close: %w", t.where, err)
	}
	return nil
}

// Flows dumps the IPv4 table and returns the flows f matches, in kernel
// order. Only matching flows are held.
func (t *Table) Flows(ctx context.Context, f Filter) ([]Flow, error) {
	flows, _, err := t.FlowsLimit(ctx, f, -1)
	return flows, err
}

// FlowsLimit is Flows keeping at most limit flows (limit < 0: no limit);
// matched is the number of flows that matched, which may exceed len(flows).
// It suits an admin API that shows the first N of a large table.
func (t *Table) FlowsLimit(ctx context.Context, f Filter, limit int) (flows []Flow, matched int, err error) {
	err = t.walk(ctx, netfilter.ProtoIPv4, func() {
		flows, matched = flows[:0], 0
	}, func(c *ct.Flow) {
		fl := FlowFrom(c)
		if !f.Match(fl) {
			return
		}
		matched++
		if limit < 0 || len(flows) < limit {
			flows = append(flows, fl)
		}
	})
	if err != nil {
		return nil, 0, err
	}
	return flows, matched, nil
}

// Stats dumps the IPv4 table and counts the flows f matches, without
// keeping them.
func (t *Table) Stats(ctx context.Context, f Filter) (Stats, error) {
	var s Stats
	err := t.walk(ctx, netfilter.ProtoIPv4, func() { s = Stats{} }, func(c *ct.Flow) {
		fl := FlowFrom(c)
		if f.Match(fl) {
			s.Add(fl)
		}
	})
	if err != nil {
		return Stats{}, err
	}
	return s, nil
}

// walk runs a dump, restarting it (at most dumpAttempts times in all) when
// the kernel interrupted it or the socket overran. reset is called before
// every attempt so that visit's results start afresh.
func (t *Table) walk(ctx context.Context, family netfilter.ProtoFamily, reset func(), visit func(*ct.Flow)) error {
	select {
	case t.sem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("conntrack dump (%s): wait for running dump: %w", t.where, ctx.Err())
	}
	defer func() { <-t.sem }()
	if t.closed {
		return fmt.Errorf("conntrack dump (%s): %w", t.where, ErrClosed)
	}

	var lastErr error
	for attempt := 1; attempt <= dumpAttempts; attempt++ {
		if attempt > 1 {
			timer := time.NewTimer(retryBackoff[min(attempt-2, len(retryBackoff)-1)])
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
				return fmt.Errorf("conntrack dump (%s): %w (after %d attempts, last: %w)", t.where, ctx.Err(), attempt-1, lastErr)
			}
		}
		if t.d == nil {
			d, err := t.dial()
			if err != nil {
				return fmt.Errorf("conntrack dump (%s): redial: %w", t.where, err)
			}
			t.d = d
		}
		reset()
		res, err := t.d.dump(ctx, family, visit)
		if err == nil {
			if res.skipped > 0 {
				t.log.Warn("conntrack dump skipped entries it could not decode",
					"netns", t.where, "skipped", res.skipped, "first_error", res.firstErr)
			}
			return nil
		}
		// The socket may still hold the rest of the abandoned dump: start
		// the next one on a fresh socket.
		if cerr := t.d.close(); cerr != nil {
			t.log.Debug("close conntrack socket after failed dump", "netns", t.where, "err", cerr)
		}
		t.d = nil
		if ctx.Err() != nil {
			return fmt.Errorf("conntrack dump (%s): %w", t.where, ctx.Err())
		}
		if !retryable(err) {
			return fmt.Errorf("conntrack dump (%s): %w", t.where, err)
		}
		lastErr = err
		t.log.Warn("conntrack dump failed, retrying", "netns", t.where, "attempt", attempt, "of", dumpAttempts, "err", err)
	}
	return fmt.Errorf("conntrack dump (%s): gave up after %d attempts: %w", t.where, dumpAttempts, lastErr)
}

// retryable reports whether a fresh dump may succeed where this one failed:
// the table changed under the dump, or the socket buffer overran.
func retryable(err error) bool {
	return errors.Is(err, ErrDumpInterrupted) ||
		errors.Is(err, unix.ENOBUFS) ||
		errors.Is(err, unix.EINTR) ||
		errors.Is(err, unix.EBUSY)
}

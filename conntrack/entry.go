package conntrack

import (
	"context"
	"errors"
	"fmt"
	"time"

	ct "github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// ErrFlowGone is wrapped by entry operations on an entry the kernel does
// not have (it expired or was deleted).
var ErrFlowGone = errors.New("conntrack entry gone")

// Walk dumps the IPv4 table and hands every entry to visit as an update
// event, restarting (reset first) when the kernel interrupted the dump.
func (t *Table) Walk(ctx context.Context, reset func(), visit func(Event)) error {
	return t.walk(ctx, netfilter.ProtoIPv4, reset, func(c *ct.Flow) { visit(entryEvent(c)) })
}

// SetTimeout sets the remaining timeout of the entry whose original tuple
// is orig (rounded up to whole seconds, at least 1); an error wrapping
// ErrFlowGone means there is no such entry.
func (t *Table) SetTimeout(ctx context.Context, orig Tuple, timeout time.Duration) error {
	secs := uint32((timeout + time.Second - 1) / time.Second)
	if secs == 0 {
		secs = 1
	}
	err := t.withConn(ctx, func(c *ct.Conn) error {
		return c.Update(ct.Flow{TupleOrig: ctTupleOf(orig), Timeout: secs})
	})
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("conntrack update %s (%s): %w", orig, t.where, ErrFlowGone)
	}
	if err != nil {
		return fmt.Errorf("conntrack update %s timeout %ds (%s): %w", orig, secs, t.where, err)
	}
	return nil
}

// Get returns the entry whose original tuple is orig as an update event
// would carry it; an error wrapping ErrFlowGone means there is none.
func (t *Table) Get(ctx context.Context, orig Tuple) (Event, error) {
	var f ct.Flow
	err := t.withConn(ctx, func(c *ct.Conn) error {
		var err error
		f, err = c.Get(ct.Flow{TupleOrig: ctTupleOf(orig)})
		return err
	})
	if errors.Is(err, unix.ENOENT) {
		return Event{}, fmt.Errorf("conntrack get %s (%s): %w", orig, t.where, ErrFlowGone)
	}
	if err != nil {
		return Event{}, fmt.Errorf("conntrack get %s (%s): %w", orig, t.where, err)
	}
	return entryEvent(&f), nil
}

// withConn runs op on the table's request socket, dialling it on first
// use; a socket that failed for another reason than the entry is redialled
// next time.
func (t *Table) withConn(ctx context.Context, op func(*ct.Conn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t.connMu.Lock()
	defer t.connMu.Unlock()
	if t.connClosed {
		return ErrClosed
	}
	if t.conn == nil {
		c, err := dialCT(t.ns)
		if err != nil {
			return err
		}
		t.conn = c
	}
	err := op(t.conn)
	if err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EEXIST) {
		_ = t.conn.Close()
		t.conn = nil
	}
	return err
}

func ctTupleOf(t Tuple) ct.Tuple {
	return ct.Tuple{
		IP: ct.IPTuple{SourceAddress: t.Src.Addr(), DestinationAddress: t.Dst.Addr()},
		Proto: ct.ProtoTuple{
			Protocol:        t.Proto,
			SourcePort:      t.Src.Port(),
			DestinationPort: t.Dst.Port(),
		},
	}
}

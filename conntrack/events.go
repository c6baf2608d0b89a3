//go:build linux

package conntrack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mdlayher/netlink"
	ct "github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// The event socket is a NETLINK_NETFILTER socket joined to the conntrack
// UPDATE and DESTROY groups (a NEW flow is never offloadable: the kernel
// then need not build NEW messages for this listener), decoded with ti-mo/conntrack's
// Event.Unmarshal. It is dialled here rather than through ti-mo's
// Conn.Listen for two reasons: the receive buffer must be set with
// SO_RCVBUFFORCE (a storm of events overruns anything net.core.rmem_max
// allows, 208 KiB by default), which needs the socket's fd; and Listen's
// workers stop at the first ENOBUFS, while an overflow is a normal event
// here: the socket keeps working, the engine resyncs.

// conntrack multicast groups (enum nfnetlink_groups).
var ctGroups = []netfilter.NetlinkGroup{netfilter.GroupCTUpdate, netfilter.GroupCTDestroy}

type nlEvents struct {
	log  *slog.Logger
	conn *netlink.Conn
}

// dialEvents opens an event socket in the namespace ns joined to groups,
// with a forced receive buffer of readBuffer bytes.
func dialEvents(ns NetNS, readBuffer int, log *slog.Logger, groups ...netfilter.NetlinkGroup) (*nlEvents, error) {
	c, err := ns.dialNetfilter()
	if err != nil {
		return nil, err
	}
	if err := setReadBuffer(c, readBuffer); err != nil {
		log.Warn("conntrack events: cannot force a large socket buffer; a burst of events may overflow it", "bytes", readBuffer, "err", err)
	}
	for _, g := range groups {
		if err := c.JoinGroup(uint32(g)); err != nil {
			c.Close()
			return nil, fmt.Errorf("join conntrack event group %d: %w", g, err)
		}
	}
	return &nlEvents{log: log, conn: c}, nil
}

// setReadBuffer sets SO_RCVBUFFORCE (CAP_NET_ADMIN), falling back to
// SO_RCVBUF, which the kernel caps at net.core.rmem_max.
func setReadBuffer(c *netlink.Conn, n int) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, n)
	}); err != nil {
		return err
	}
	if serr == nil {
		return nil
	}
	if err := c.SetReadBuffer(n); err != nil {
		return fmt.Errorf("SO_RCVBUFFORCE: %w; SO_RCVBUF: %w", serr, err)
	}
	return fmt.Errorf("SO_RCVBUFFORCE: %w (SO_RCVBUF set, capped by net.core.rmem_max)", serr)
}

// run reads events until ctx is done. Cancelling ctx moves the read
// deadline to the past, which wakes the blocked read.
func (e *nlEvents) run(ctx context.Context, emit func(Event), overflow func()) error {
	stop := context.AfterFunc(ctx, func() { _ = e.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	var decodeErrs uint64
	for {
		if ctx.Err() != nil {
			return nil
		}
		msgs, err := e.conn.Receive()
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.Is(err, unix.ENOBUFS):
				overflow()
				continue
			case errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN):
				continue
			}
			return fmt.Errorf("receive conntrack events: %w", err)
		}
		for _, m := range msgs {
			cev, ok, err := decodeEvent(m)
			if err != nil {
				decodeErrs++
				if decodeErrs == 1 || decodeErrs%1000 == 0 {
					e.log.Warn("conntrack events: cannot decode event; skipped", "err", err, "skipped", decodeErrs)
				}
				continue
			}
			if ok {
				emit(cev)
			}
		}
	}
}

// decodeEvent decodes one message read from the event socket; ok is false
// for a message that carries no flow event (an expectation).
func decodeEvent(m netlink.Message) (ev Event, ok bool, err error) {
	var e ct.Event
	if err := e.Unmarshal(m); err != nil {
		return Event{}, false, fmt.Errorf("conntrack event (message type %#x, %d bytes): %w", uint16(m.Header.Type), len(m.Data), err)
	}
	ev, ok = eventFrom(&e)
	return ev, ok, nil
}

func (e *nlEvents) close() error { return e.conn.Close() }

func (e *nlEvents) join(g netfilter.NetlinkGroup) error  { return e.conn.JoinGroup(uint32(g)) }
func (e *nlEvents) leave(g netfilter.NetlinkGroup) error { return e.conn.LeaveGroup(uint32(g)) }

// dialCT opens the ti-mo/conntrack connection used for entry updates,
// lookups and statistics in the namespace ns.
func dialCT(ns NetNS) (*ct.Conn, error) {
	cfg, err := ns.config()
	if err != nil {
		return nil, err
	}
	c, err := ct.Dial(cfg)
	if err != nil {
		return nil, fmt.Errorf("conntrack dial (%s): %w", ns, err)
	}
	return c, nil
}

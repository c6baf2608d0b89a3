//go:build linux

package conntrack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"syscall"
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

// eventCoalesce is how long the reader lets events gather once it has
// drained the socket, before it reads again. During a connection storm
// every short flow ends in a DESTROY event: read one by one, each would
// wake the daemon (a context switch or two on a NAT whose CPUs the storm
// itself needs); gathered, the daemon wakes once per interval for a
// batch. The consumers learn of an event at most this much later (an
// offload, a flow's end), and the socket's buffer (feedReadBuffer) holds
// far more than a storm sends in that time. An idle socket costs
// nothing: after a pause that gathered nothing, the reader blocks until
// the next event.
const eventCoalesce = 5 * time.Millisecond

// eventReadSize is the reader's buffer: one datagram of the event socket
// (the kernel sends one event per datagram, well under a page).
const eventReadSize = 64 << 10

// run reads events until ctx is done. Cancelling ctx moves the read
// deadline to the past, which wakes the blocked read. It reads with one
// non-blocking recvmsg per datagram into one buffer (readLoop).
func (e *nlEvents) run(ctx context.Context, emit func(Event), overflow func()) error {
	raw, err := e.conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("conntrack events: raw socket: %w", err)
	}
	stop := context.AfterFunc(ctx, func() { _ = e.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	recv := func(buf []byte, block bool) (n, flags int, err error) {
		var rerr error
		err = raw.Read(func(fd uintptr) bool {
			n, _, flags, _, rerr = unix.Recvmsg(int(fd), buf, nil, unix.MSG_DONTWAIT)
			// false: wait until the socket is readable, then call again.
			return !(block && errors.Is(rerr, unix.EAGAIN))
		})
		if err == nil {
			err = rerr
		}
		return n, flags, err
	}
	pause := time.NewTimer(eventCoalesce)
	pause.Stop()
	defer pause.Stop()
	wait := func(ctx context.Context) {
		pause.Reset(eventCoalesce)
		select {
		case <-ctx.Done():
		case <-pause.C:
		}
	}
	return readLoop(ctx, e.log, recv, wait, emit, overflow)
}

// readLoop is the event socket's reader: recv reads one datagram into buf
// (block: wait for one; else EAGAIN when there is none), wait is the
// eventCoalesce pause. After a datagram it reads on without blocking; once
// the socket is drained it pauses, so the events of a burst gather and are
// read in one go; when a pause gathered nothing it blocks until the next
// event.
func readLoop(ctx context.Context, log *slog.Logger, recv func(buf []byte, block bool) (n, flags int, err error),
	wait func(context.Context), emit func(Event), overflow func()) error {
	buf := make([]byte, eventReadSize)
	var decodeErrs uint64
	mayPause := false // the last read returned a datagram
	for {
		if ctx.Err() != nil {
			return nil
		}
		n, flags, err := recv(buf, !mayPause)
		if err != nil {
			switch {
			case ctx.Err() != nil:
				return nil
			case errors.Is(err, unix.EAGAIN):
				// Drained: let the next events gather.
				mayPause = false
				wait(ctx)
				continue
			case errors.Is(err, unix.ENOBUFS):
				overflow()
				continue
			case errors.Is(err, unix.EINTR):
				continue
			}
			return fmt.Errorf("receive conntrack events: %w", err)
		}
		mayPause = true
		if flags&unix.MSG_TRUNC != 0 {
			err = fmt.Errorf("conntrack event datagram truncated at %d bytes", len(buf))
		} else {
			err = decodeDatagram(buf[:min(n, len(buf))], emit)
		}
		if err != nil {
			decodeErrs++
			if decodeErrs == 1 || decodeErrs%1000 == 0 {
				log.Warn("conntrack events: cannot decode event; skipped", "err", err, "skipped", decodeErrs)
			}
		}
	}
}

// decodeDatagram decodes the messages of one datagram read from the event
// socket and emits their flow events; the error is the first message's
// that could not be decoded (the others are emitted all the same).
func decodeDatagram(b []byte, emit func(Event)) error {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err == nil && len(msgs) == 0 {
		err = errors.New("no netlink message")
	}
	if err != nil {
		return fmt.Errorf("conntrack event datagram (%d bytes): %w", len(b), err)
	}
	var first error
	for _, r := range msgs {
		m := netlink.Message{
			Header: netlink.Header{
				Length:   r.Header.Len,
				Type:     netlink.HeaderType(r.Header.Type),
				Flags:    netlink.HeaderFlags(r.Header.Flags),
				Sequence: r.Header.Seq,
				PID:      r.Header.Pid,
			},
			Data: r.Data,
		}
		ev, ok, err := decodeEvent(m)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		if ok {
			emit(ev)
		}
	}
	return first
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

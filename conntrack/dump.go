package conntrack

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	ct "github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// ti-mo/conntrack's Conn.Dump collects the whole multipart reply (and then
// the whole []Flow) before returning, which for a full table is hundreds of
// megabytes. So the dump request goes out through the same netlink socket
// type, but the reply is read one datagram at a time and each entry is
// decoded with ti-mo's exported Event.Unmarshal and handed on at once.

const (
	ctnlMsgGet = 1 // IPCTNL_MSG_CT_GET

	// recvBufSize holds one dump datagram: the kernel caps dump skbs at
	// 32 KiB unless a single entry needs more, in which case the buffer grows.
	recvBufSize = 64 << 10
	maxRecvBuf  = 16 << 20

	// recvIdle bounds the wait for the kernel's next datagram when the
	// caller's context has no earlier deadline.
	recvIdle = 10 * time.Second
)

// ErrDumpInterrupted is returned (wrapped) when the kernel flagged a dump as
// inconsistent (NLM_F_DUMP_INTR) on every attempt.
var ErrDumpInterrupted = errors.New("conntrack dump interrupted (NLM_F_DUMP_INTR)")

// errRecvIdle means the kernel sent nothing for recvIdle in the middle of a dump.
var errRecvIdle = fmt.Errorf("no reply from the kernel for %s", recvIdle)

// dumper streams one dump of the kernel table; Table retries over it.
type dumper interface {
	// dump calls visit for every entry of the given family in kernel order.
	// After an error the socket state is unknown and the dumper is closed.
	dump(ctx context.Context, family netfilter.ProtoFamily, visit func(*ct.Flow)) (dumpResult, error)
	close() error
}

// dumpResult reports what a finished dump could not decode.
type dumpResult struct {
	skipped  int   // entries that failed to decode and were left out
	firstErr error // why the first of them failed
}

// nlDumper is a ctnetlink socket in one network namespace.
type nlDumper struct {
	conn *netlink.Conn
	raw  syscall.RawConn
	buf  []byte
}

// dialNetfilter opens a NETLINK_NETFILTER socket in the namespace ns.
func dialNetfilter(ns NetNS) (*nlDumper, error) {
	c, err := ns.dialNetfilter()
	if err != nil {
		return nil, err
	}
	raw, err := c.SyscallConn()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("netfilter netlink socket: syscall conn: %w", err)
	}
	return &nlDumper{conn: c, raw: raw, buf: make([]byte, recvBufSize)}, nil
}

func (d *nlDumper) close() error { return d.conn.Close() }

func (d *nlDumper) dump(ctx context.Context, family netfilter.ProtoFamily, visit func(*ct.Flow)) (dumpResult, error) {
	req, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlink,
		MessageType: ctnlMsgGet,
		Family:      family, // the kernel skips entries of other L3 families
		Flags:       netlink.Request | netlink.Dump,
	}, nil)
	if err != nil {
		return dumpResult{}, fmt.Errorf("build dump request: %w", err)
	}
	sent, err := d.conn.Send(req)
	if err != nil {
		return dumpResult{}, fmt.Errorf("send dump request: %w", err)
	}

	// Cancelling ctx moves the read deadline to the past, which wakes a
	// blocked read; the read loop re-checks ctx after every deadline change.
	stop := context.AfterFunc(ctx, func() { _ = d.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	var res dumpResult
	for {
		dl := time.Now().Add(recvIdle)
		if cdl, ok := ctx.Deadline(); ok && cdl.Before(dl) {
			dl = cdl
		}
		if err := d.conn.SetReadDeadline(dl); err != nil {
			return res, fmt.Errorf("set read deadline: %w", err)
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		n, err := d.recv()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				if cerr := ctx.Err(); cerr != nil {
					return res, cerr
				}
				return res, errRecvIdle
			}
			return res, err
		}
		done, err := handleDatagram(d.buf[:n], sent.Header.Sequence, visit, &res)
		if err != nil || done {
			return res, err
		}
	}
}

// recv reads one datagram into d.buf (growing it if the datagram is larger)
// and returns its length.
func (d *nlDumper) recv() (int, error) {
	var (
		n    int
		rerr error
	)
	err := d.raw.Read(func(fd uintptr) bool {
		for {
			// MSG_TRUNC makes netlink report the datagram's full length.
			n, _, rerr = unix.Recvfrom(int(fd), d.buf, unix.MSG_PEEK|unix.MSG_TRUNC|unix.MSG_DONTWAIT)
			switch {
			case rerr == unix.EINTR:
				continue
			case rerr == unix.EAGAIN:
				return false // wait for the poller
			case rerr != nil:
				return true
			}
			if n > len(d.buf) {
				if n > maxRecvBuf {
					rerr = fmt.Errorf("netlink datagram of %d bytes exceeds %d", n, maxRecvBuf)
					return true
				}
				d.buf = make([]byte, n)
			}
			n, _, rerr = unix.Recvfrom(int(fd), d.buf, unix.MSG_DONTWAIT)
			if rerr == unix.EINTR {
				continue
			}
			return true
		}
	})
	if err != nil {
		// The poller reports the deadline (ctx cancel or idle) here.
		return 0, fmt.Errorf("recv: %w", err)
	}
	if rerr != nil {
		return 0, fmt.Errorf("recv: %w", rerr)
	}
	return n, nil
}

// handleDatagram decodes the netlink messages of one datagram of the dump
// with sequence number seq, calls visit for each conntrack entry and reports
// whether the dump is complete. Messages of other sequence numbers (left
// over from an earlier, abandoned request) are ignored. Entries that fail to
// decode are counted in res and skipped.
func handleDatagram(b []byte, seq uint32, visit func(*ct.Flow), res *dumpResult) (done bool, err error) {
	if len(b) < unix.NLMSG_HDRLEN {
		return false, fmt.Errorf("netlink datagram of %d bytes is shorter than a header", len(b))
	}
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil {
		return false, fmt.Errorf("parse netlink datagram of %d bytes: %w", len(b), err)
	}
	for _, m := range msgs {
		h := m.Header
		if h.Seq != seq {
			continue
		}
		if h.Flags&unix.NLM_F_DUMP_INTR != 0 {
			return false, ErrDumpInterrupted
		}
		switch h.Type {
		case unix.NLMSG_NOOP:
			continue
		case unix.NLMSG_DONE:
			if errno := nlErrno(m.Data); errno != 0 {
				return false, fmt.Errorf("dump ended with error: %w", errno)
			}
			return true, nil
		case unix.NLMSG_ERROR:
			errno := nlErrno(m.Data)
			if errno == 0 {
				continue // an ack
			}
			return false, fmt.Errorf("netlink error reply: %w", errno)
		case unix.NLMSG_OVERRUN:
			return false, fmt.Errorf("netlink overrun: %w", unix.ENOBUFS)
		}
		var ev ct.Event
		nm := netlink.Message{
			Header: netlink.Header{
				Length:   h.Len,
				Type:     netlink.HeaderType(h.Type),
				Flags:    netlink.HeaderFlags(h.Flags),
				Sequence: h.Seq,
				PID:      h.Pid,
			},
			Data: m.Data,
		}
		if err := ev.Unmarshal(nm); err != nil || ev.Flow == nil {
			if err == nil {
				err = fmt.Errorf("message type %#x carries no flow", h.Type)
			}
			if res.skipped == 0 {
				res.firstErr = err
			}
			res.skipped++
			continue
		}
		visit(ev.Flow)
	}
	return false, nil
}

// nlErrno reads the errno that starts an NLMSG_ERROR or NLMSG_DONE payload
// (stored negated, host byte order).
func nlErrno(data []byte) syscall.Errno {
	if len(data) < 4 {
		return 0
	}
	code := int32(binary.NativeEndian.Uint32(data[:4]))
	if code < 0 {
		code = -code
	}
	return syscall.Errno(code)
}

package flowsync

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// link carries whole messages between the two sides of a session: over
// TCP a length-prefixed stream (tcpLink), in tests a fake that loses and
// duplicates.
type link interface {
	send(ctx context.Context, msg []byte) error
	recv(ctx context.Context) ([]byte, error)
	close() error
}

// maxMessage bounds a message on the wire: a frame, its header and tag.
const maxMessage = maxPlaintext + sealedHeader + 16

// tcpLink frames messages on a TCP connection as u32 length | bytes. Sends
// may come from several goroutines; one goroutine receives.
type tcpLink struct {
	conn net.Conn
	// idle bounds the wait for the next message: a peer that sends
	// nothing (not even keepalives) for that long is gone.
	idle time.Duration
	// writeTimeout bounds one send: a peer that stops reading is gone.
	writeTimeout time.Duration

	wmu sync.Mutex
	r   io.Reader
	hdr [4]byte
}

func newTCPLink(c net.Conn, idle, writeTimeout time.Duration) *tcpLink {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return &tcpLink{conn: c, idle: idle, writeTimeout: writeTimeout, r: c}
}

func (l *tcpLink) send(ctx context.Context, msg []byte) error {
	if len(msg) > maxMessage {
		return fmt.Errorf("send: message of %d bytes exceeds %d", len(msg), maxMessage)
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = l.conn.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := l.conn.SetWriteDeadline(time.Now().Add(l.writeTimeout)); err != nil {
		return fmt.Errorf("send to %s: %w", l.conn.RemoteAddr(), err)
	}
	buf := make([]byte, 4, 4+len(msg))
	binary.BigEndian.PutUint32(buf, uint32(len(msg)))
	if _, err := l.conn.Write(append(buf, msg...)); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("send %d bytes to %s: %w", len(msg), l.conn.RemoteAddr(), err)
	}
	return nil
}

func (l *tcpLink) recv(ctx context.Context) ([]byte, error) {
	stop := context.AfterFunc(ctx, func() { _ = l.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := l.conn.SetReadDeadline(time.Now().Add(l.idle)); err != nil {
		return nil, fmt.Errorf("receive from %s: %w", l.conn.RemoteAddr(), err)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	wrap := func(what string, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("receive from %s: nothing for %s: %w", l.conn.RemoteAddr(), l.idle, err)
		}
		return fmt.Errorf("receive %s from %s: %w", what, l.conn.RemoteAddr(), err)
	}
	if _, err := io.ReadFull(l.r, l.hdr[:]); err != nil {
		return nil, wrap("length", err)
	}
	n := binary.BigEndian.Uint32(l.hdr[:])
	if n > maxMessage {
		return nil, fmt.Errorf("receive from %s: message of %d bytes exceeds %d", l.conn.RemoteAddr(), n, maxMessage)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(l.r, msg); err != nil {
		return nil, wrap(fmt.Sprintf("message of %d bytes", n), err)
	}
	return msg, nil
}

func (l *tcpLink) close() error { return l.conn.Close() }

// backoff is the reconnect delay: doubling from min to max, reset after a
// session that lasted.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur < b.min {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hanat/hanat/internal/netns"
)

// The demo's download: a server in the internet namespace sends a
// deterministic pseudo-random stream (ChaCha8 from a fixed seed) of
// downloadSize bytes, paced at downloadChunk per downloadTick until the
// client sends one byte ("finish"), then as fast as TCP goes. The client
// checks every byte against its own copy of the stream and both sides
// hash what went over the wire, so a byte lost, duplicated or reordered by
// a failover shows as a mismatch at a known offset and a wrong digest.

const (
	downloadPort  = 8019
	downloadSize  = 128 << 20
	downloadChunk = 16 << 10
	downloadTick  = 10 * time.Millisecond // 1.6 MB/s until finish
	// downloadIdle bounds a read: a connection the failover broke
	// silently (no RST) ends the download instead of hanging the demo.
	downloadIdle = 20 * time.Second
)

var downloadSeed = [32]byte{'h', 'a', 'n', 'a', 't', ' ', 'd', 'e', 'm', 'o'}

// downloadServer serves the stream in the internet namespace. It keeps
// what it saw of each connection: the source (the public address and port
// after the NAT and the IGW), the bytes sent and their digest.
type downloadServer struct {
	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	sent   map[netip.AddrPort]*serverSide
	conns  map[net.Conn]struct{}
	closed bool
}

// serverSide is the server's view of one download.
type serverSide struct {
	mu     sync.Mutex
	source netip.AddrPort
	sent   int64
	digest []byte // set when the last byte went out
	err    error
}

func (s *serverSide) snapshot() (sent int64, digest []byte, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent, s.digest, s.err
}

// startDownloadServer listens on addr inside ns.
func startDownloadServer(ns *netns.NS, addr netip.AddrPort) (*downloadServer, error) {
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp4", addr.String())
		return err
	}); err != nil {
		return nil, fmt.Errorf("listen for the download on %s in %s: %w", addr, ns.Name, err)
	}
	s := &downloadServer{ln: ln, sent: map[netip.AddrPort]*serverSide{}, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *downloadServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		src, _ := netip.ParseAddrPort(c.RemoteAddr().String())
		side := &serverSide{source: src}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.sent[src] = side
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			side.serve(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
		}()
	}
}

// side returns the server's view of the download from src.
func (s *downloadServer) side(src netip.AddrPort) *serverSide {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent[src]
}

// close stops accepting, closes the open downloads (one the failover
// broke would otherwise wait for its write deadline) and waits for them.
func (s *downloadServer) close() {
	_ = s.ln.Close()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *serverSide) serve(c net.Conn) {
	defer c.Close()
	var finish atomic.Bool
	go func() { // any byte from the client: send the rest unpaced
		b := make([]byte, 1)
		if n, _ := c.Read(b); n > 0 {
			finish.Store(true)
		}
	}()
	gen := rand.NewChaCha8(downloadSeed)
	h := sha256.New()
	buf := make([]byte, downloadChunk)
	next := time.Now()
	for sent := int64(0); sent < downloadSize; {
		n := min(int64(len(buf)), downloadSize-sent)
		_, _ = gen.Read(buf[:n])
		h.Write(buf[:n])
		_ = c.SetWriteDeadline(time.Now().Add(downloadIdle))
		w, err := c.Write(buf[:n])
		sent += int64(w)
		s.mu.Lock()
		s.sent = sent
		if err != nil {
			s.err = fmt.Errorf("send to %s at byte %d: %w", s.source, sent, err)
		}
		s.mu.Unlock()
		if err != nil {
			return
		}
		if !finish.Load() {
			next = next.Add(downloadTick)
			time.Sleep(time.Until(next))
		}
	}
	s.mu.Lock()
	s.digest = h.Sum(nil)
	s.mu.Unlock()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, c) // until the client closes
}

// download is the client's side, running in the private host.
type download struct {
	conn    net.Conn
	local   netip.AddrPort // the private host's address and port
	started time.Time

	mu       sync.Mutex
	received int64
	last     time.Time // the last data
	stalls   []stall   // waits for data longer than stallMin
	corrupt  int64     // offset of the first byte not as sent, -1 none
	err      error     // why it ended early
	digest   []byte    // set at the end of the stream
	done     chan struct{}
}

type stall struct {
	end time.Time
	d   time.Duration
}

// stallMin is the shortest wait for data worth recording: five times the
// server's pace.
const stallMin = 50 * time.Millisecond

// maxStalls bounds the record (a demo has a handful).
const maxStalls = 1000

func startDownload(ctx context.Context, dial func(ctx context.Context) (net.Conn, error)) (*download, error) {
	c, err := dial(ctx)
	if err != nil {
		return nil, err
	}
	local, _ := netip.ParseAddrPort(c.LocalAddr().String())
	now := time.Now()
	d := &download{conn: c, local: local, started: now, last: now, corrupt: -1, done: make(chan struct{})}
	go d.run()
	return d, nil
}

func (d *download) run() {
	defer close(d.done)
	gen := rand.NewChaCha8(downloadSeed)
	h := sha256.New()
	buf := make([]byte, 64<<10)
	want := make([]byte, len(buf))
	for {
		_ = d.conn.SetReadDeadline(time.Now().Add(downloadIdle))
		n, err := d.conn.Read(buf)
		now := time.Now()
		d.mu.Lock()
		if n > 0 {
			_, _ = gen.Read(want[:n])
			if d.corrupt < 0 && !bytes.Equal(buf[:n], want[:n]) {
				for i := range n {
					if buf[i] != want[i] {
						d.corrupt = d.received + int64(i)
						break
					}
				}
			}
			h.Write(buf[:n])
			d.received += int64(n)
			if gap := now.Sub(d.last); gap >= stallMin && len(d.stalls) < maxStalls {
				d.stalls = append(d.stalls, stall{end: now, d: gap})
			}
			d.last = now
		}
		switch {
		case errors.Is(err, io.EOF) && d.received == downloadSize:
			d.digest = h.Sum(nil)
		case errors.Is(err, io.EOF):
			d.err = fmt.Errorf("the server closed the download after %d of %d bytes", d.received, downloadSize)
		case err != nil:
			d.err = fmt.Errorf("the download broke after %d bytes: %w", d.received, err)
		}
		d.mu.Unlock()
		if err != nil {
			return
		}
	}
}

// finish asks the server for the rest unpaced and waits for the end.
func (d *download) finish(ctx context.Context) error {
	if _, err := d.conn.Write([]byte{'f'}); err != nil {
		return fmt.Errorf("ask the server to finish the download: %w", err)
	}
	select {
	case <-d.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

func (d *download) close() {
	_ = d.conn.Close()
	<-d.done
}

// progress is the download as it is now.
type progress struct {
	received int64
	corrupt  int64
	err      error
	digest   []byte
}

func (d *download) progress() progress {
	d.mu.Lock()
	defer d.mu.Unlock()
	return progress{received: d.received, corrupt: d.corrupt, err: d.err, digest: d.digest}
}

// worstStallSince is the longest wait for data that ended after t, or the
// wait going on now, and when it ended (zero: still waiting).
func (d *download) worstStallSince(t time.Time) (time.Duration, time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var worst time.Duration
	var end time.Time
	for _, s := range d.stalls {
		if s.end.After(t) && s.d > worst {
			worst, end = s.d, s.end
		}
	}
	if cur := time.Since(d.last); cur > worst && d.err == nil && d.digest == nil {
		worst, end = cur, time.Time{}
	}
	return worst, end
}

// healthy says whether the download is still going as sent.
func (p progress) healthy() error {
	if p.corrupt >= 0 {
		return fmt.Errorf("byte %d of the download is not what the server sent", p.corrupt)
	}
	return p.err
}

//go:build linux

package fastpath

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/hanat/hanat/bpf"
	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/internal/natlab"
)

// TestShortFlowsNeverReachTheMap: with the fast path on as hanatd runs it
// (datapath's table with the offload mark, the Controller), short
// connections — a request, its answer and the close, fewer packets than
// offload_after_packets — are never written to the flow map, and their
// ends never reach the engine's queue; a long connection alongside is
// offloaded within a second of its packet count passing the threshold,
// and its end takes it out of the map.
func TestShortFlowsNeverReachTheMap(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and attaches BPF programs")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lab, c, _, _ := controllerLab(t, ctx, nil)
	const server = "198.51.100.100:7"
	natlab.ServeTCPEcho(t, lab.Inet, server)
	tupleOf := func(local netip.AddrPort) conntrack.Tuple {
		return conntrack.Tuple{Proto: bpf.ProtoTCP, Src: local, Dst: netip.MustParseAddrPort(server)}
	}
	dial := func() net.Conn {
		t.Helper()
		var conn net.Conn
		if err := lab.Private.Do(func() (err error) {
			conn, err = net.DialTimeout("tcp4", server, 5*time.Second)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return conn
	}

	const shorts = 50
	var short []conntrack.Tuple
	for range shorts {
		conn := dial()
		roundTrips(t, conn, 64, 1)
		short = append(short, tupleOf(conn.LocalAddr().(*net.TCPAddr).AddrPort()))
		conn.Close()
	}

	long := dial()
	defer long.Close()
	longTuple := tupleOf(long.LocalAddr().(*net.TCPAddr).AddrPort())
	roundTrips(t, long, 64, 10) // 3 handshake packets + 4 per round trip: past 16
	passed := time.Now()
	for !offloaded(c, longTuple) {
		if time.Since(passed) > time.Second {
			t.Fatalf("long connection not offloaded within 1s of passing the threshold; status %+v", c.Status().Engine)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("long connection offloaded %v after passing the threshold", time.Since(passed).Round(time.Millisecond))
	roundTrips(t, long, 64, 5) // on the fast path now

	// End every flow: the short ones' DESTROY events carry no offload
	// mark and stop before the engine's queue; the long one's takes it
	// out of the map.
	before := *c.Status().Engine
	natlab.MustRun(t, ctx, lab.NAT, "conntrack", "-F")
	deadline := time.Now().Add(2 * time.Second)
	for {
		e := *c.Status().Engine
		if e.EventsSkipped-before.EventsSkipped >= shorts && e.Offloaded == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after conntrack -F: engine %+v (before %+v), want %d more skipped and none offloaded", e, before, shorts)
		}
		time.Sleep(10 * time.Millisecond)
	}
	e := c.Status().Engine
	if e.Offloads != 1 || e.MapErrors != 0 || e.PathErrors != 0 {
		t.Errorf("engine %+v: want exactly one offload (the long connection)", e)
	}
	for _, tu := range short {
		if _, ok := c.Lookup(tu); ok {
			t.Errorf("short connection %v was offloaded", tu)
		}
	}
}

func offloaded(c *Controller, orig conntrack.Tuple) bool {
	fc, ok := c.Lookup(orig)
	return ok && fc.Offloaded
}

// roundTrips sends n messages of size bytes on conn and reads each echo.
func roundTrips(t *testing.T, conn net.Conn, size, n int) {
	t.Helper()
	msg := make([]byte, size)
	for range n {
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(conn, msg); err != nil {
			t.Fatal(err)
		}
	}
}

package flowsync

import (
	"net/netip"
	"runtime"
	"testing"
)

// BenchmarkFullSync250k times a full sync of 250k flows to the peer over
// loopback: from the sender's start (dial, handshake, dump of the table,
// sealing, TCP) to the receiver holding the completed snapshot. Target:
// 5 s.
//
//	go test ./flowsync/ -run '^$' -bench 'FullSync|HeldMemory' -benchtime 3x
func BenchmarkFullSync250k(b *testing.B) {
	const n = 250_000
	recv, addr := startReceiver(b, testKey, netip.MustParseAddr("127.0.0.1"))
	table := newFakeTable(n)
	b.ResetTimer()
	for i := range b.N {
		_, stop := startSender(b, testKey, addr, table, 0)
		waitFor(b, "the snapshot", func() bool { return recv.Status().Snapshots == uint64(i+1) })
		b.StopTimer()
		if got := recv.Status().Flows; got != n {
			b.Fatalf("receiver holds %d flows, want %d", got, n)
		}
		stop()
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/250k")
}

// BenchmarkHeldMemory measures the receiver's memory per held flow: the
// live heap grown by holding a snapshot of 250k flows, as a receiver
// builds it. Target: 200 B.
func BenchmarkHeldMemory(b *testing.B) {
	const n = 250_000
	recs := make([]record, n)
	for i := range recs {
		r, err := recordOf(testFlow(i))
		if err != nil {
			b.Fatal(err)
		}
		recs[i] = r
	}
	var perFlow float64
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		c := newReceiverCore()
		_ = c.apply(&frame{kind: kindSnapshotBegin, snapshot: 1})
		for lo := 0; lo < n; lo += snapshotChunk {
			_ = c.apply(&frame{kind: kindSnapshotRecords, snapshot: 1, records: recs[lo:min(lo+snapshotChunk, n)]})
		}
		if err := c.apply(&frame{kind: kindSnapshotEnd, snapshot: 1, total: n}); err != nil || c.flows() != n {
			b.Fatalf("snapshot: %v, %d flows", err, c.flows())
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perFlow = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(c)
	}
	b.ReportMetric(perFlow, "B/flow")
}

// BenchmarkTakeover250k times what a takeover does before the kernel
// sees a message: the held flows of a receiver holding 250k, checked and
// rewritten for injection.
//
//	go test ./flowsync/ -run '^$' -bench Takeover250k -benchtime 5x
func BenchmarkTakeover250k(b *testing.B) {
	const n = 250_000
	c := heldCore(b, n)
	b.ResetTimer()
	for range b.N {
		res := testTakeover.Rewrite(c.heldFlows())
		if len(res.Flows) != n || res.Refused != 0 {
			b.Fatalf("rewrote %d flows, %d refused (%v)", len(res.Flows), res.Refused, res.FirstRefusal)
		}
	}
}

// heldCore is a receiver's core holding the snapshot of flows 0..n-1.
func heldCore(tb testing.TB, n int) *receiverCore {
	c := newReceiverCore()
	_ = c.apply(&frame{kind: kindSnapshotBegin, snapshot: 1})
	for lo := 0; lo < n; lo += snapshotChunk {
		recs := make([]record, 0, snapshotChunk)
		for i := lo; i < min(lo+snapshotChunk, n); i++ {
			r, err := recordOf(testFlow(i))
			if err != nil {
				tb.Fatal(err)
			}
			recs = append(recs, r)
		}
		_ = c.apply(&frame{kind: kindSnapshotRecords, snapshot: 1, records: recs})
	}
	if err := c.apply(&frame{kind: kindSnapshotEnd, snapshot: 1, total: uint32(n)}); err != nil || c.flows() != n {
		tb.Fatalf("snapshot: %v, %d flows", err, c.flows())
	}
	return c
}

// BenchmarkReceiverTakeover250k is BenchmarkTakeover250k's work as
// Receiver.Takeover does it, from the compact view.
func BenchmarkReceiverTakeover250k(b *testing.B) {
	const n = 250_000
	c := heldCore(b, n)
	b.ResetTimer()
	for range b.N {
		res := c.takeover(testTakeover)
		if len(res.Flows) != n || res.Refused != 0 {
			b.Fatalf("rewrote %d flows, %d refused (%v)", len(res.Flows), res.Refused, res.FirstRefusal)
		}
	}
}

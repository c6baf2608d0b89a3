//go:build linux

package fastpath

import (
	"context"
	"testing"
)

const testOffloadMark = 0x40000000

// With OffloadMark, an SNAT flow is offloaded only once the kernel marked
// it, and the marking event (which carries no TCP state) is enough.
func TestOffloadMarkSelectsSNATFlows(t *testing.T) {
	e := newEngineEnv(t, engineConfig{OffloadMark: testOffloadMark})
	f := snatTCP(1, 40000, 61000, "ESTABLISHED", true)
	e.event(EventUpdate, f)
	if e.fm.len() != 0 {
		t.Fatalf("an unmarked established SNAT flow was offloaded")
	}
	// The label event of the offload_flow rule: mark set, no protoinfo.
	f.TCPState, f.Mark = "", testOffloadMark|0x80000000
	e.event(EventUpdate, f)
	k := keysOf(f)
	if !e.fm.has(k[0]) || !e.fm.has(k[1]) {
		t.Fatalf("marked flow not offloaded in both directions: %v", e.fm.m)
	}
	// Its FIN: protoinfo events follow once marked.
	f.TCPState = "FIN_WAIT"
	e.event(EventUpdate, f)
	if e.fm.len() != 0 {
		t.Errorf("marked flow in FIN_WAIT still offloaded")
	}
}

func TestOffloadMarkUDPAndUnassured(t *testing.T) {
	e := newEngineEnv(t, engineConfig{OffloadMark: testOffloadMark})
	u := snatUDP(2, true)
	e.event(EventUpdate, u)
	if e.fm.len() != 0 {
		t.Fatalf("an unmarked UDP SNAT flow was offloaded")
	}
	u.Mark = testOffloadMark
	e.event(EventUpdate, u)
	if e.fm.len() != 2 {
		t.Fatalf("marked UDP flow not offloaded: %v", e.fm.m)
	}
	// A marked flow that is not ASSURED (cannot happen through the rule,
	// which needs established, but a dump may show anything) is not.
	tcp := snatTCP(3, 40001, 61001, "", false)
	tcp.Mark = testOffloadMark
	e.event(EventUpdate, tcp)
	if e.fm.has(keysOf(tcp)[0]) {
		t.Errorf("unassured marked flow offloaded")
	}
}

// Port forwards keep full events and need no mark.
func TestOffloadMarkNotNeededForDNAT(t *testing.T) {
	e := newEngineEnv(t, engineConfig{OffloadMark: testOffloadMark})
	f := snatTCP(4, 40002, 40002, "ESTABLISHED", true)
	// Turn it into an inbound port-forwarded flow: client → NAT:8080 → private host.
	f.SNAT, f.DNAT = false, true
	f.Original.Src, f.Original.Dst = ap("203.0.113.10:50000"), ap("10.0.1.10:8080")
	f.Reply.Src, f.Reply.Dst = ap("10.0.11.5:80"), ap("203.0.113.10:50000")
	e.event(EventUpdate, f)
	if e.fm.len() != 2 {
		t.Errorf("established DNAT flow not offloaded without a mark: %v", e.fm.m)
	}
}

// The DESTROY of an unmarked SNAT flow (a short flow of a connection
// storm: its only event) never reaches the engine's queue; the DESTROYs of
// a marked (offloaded) flow and of a port-forwarded one do, and the
// offloaded flow leaves the map.
func TestOffloadMarkSkipsUnmarkedEnds(t *testing.T) {
	e := newEngineEnv(t, engineConfig{OffloadMark: testOffloadMark})
	for i := range 100 {
		short := snatTCP(uint32(100+i), uint16(41000+i), uint16(62000+i), "TIME_WAIT", true)
		short.Mark = 0x80000000 // answered, never marked for offloading
		e.o.enqueue(Event{Kind: EventDestroy, Flow: short, Plain: true})
	}
	if n := len(e.o.events); n != 0 {
		t.Fatalf("%d unmarked DESTROY events queued", n)
	}
	if s := e.o.Stats(); s.Events != 100 || s.EventsSkipped != 100 {
		t.Fatalf("stats %+v after 100 unmarked ends", s)
	}

	long := snatTCP(5, 40003, 61003, "", true)
	long.Mark = testOffloadMark | 0x80000000
	e.event(EventUpdate, long)
	if e.fm.len() != 2 {
		t.Fatalf("marked flow not offloaded: %v", e.fm.m)
	}
	fwd := snatTCP(6, 40004, 40004, "ESTABLISHED", true)
	fwd.SNAT, fwd.DNAT = false, true
	e.o.enqueue(Event{Kind: EventDestroy, Flow: long, Plain: true})
	e.o.enqueue(Event{Kind: EventDestroy, Flow: fwd, Plain: true})
	if n := len(e.o.events); n != 2 {
		t.Fatalf("%d of the marked and the port-forwarded DESTROY queued, want 2", n)
	}
	e.o.apply(context.Background(), []Event{<-e.o.events, <-e.o.events})
	if e.fm.len() != 0 || e.o.Stats().EventsSkipped != 100 {
		t.Errorf("after the marked flow's DESTROY: map %v, stats %+v", e.fm.m, e.o.Stats())
	}
}

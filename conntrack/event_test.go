package conntrack

import (
	"net/netip"
	"testing"
	"time"

	ct "github.com/ti-mo/conntrack"
)

func ctFlowOf(f Flow) *ct.Flow {
	c := &ct.Flow{ID: f.ID, Timeout: uint32(f.Timeout / time.Second), TupleOrig: ctTupleOf(f.Original), TupleReply: ctTupleOf(f.Reply)}
	if f.Assured {
		c.Status |= ct.StatusAssured
	}
	if f.SNAT {
		c.Status |= ct.StatusSrcNAT
	}
	if f.DNAT {
		c.Status |= ct.StatusDstNAT
	}
	if f.Original.Proto == protoTCP {
		st := uint8(3) // ESTABLISHED
		if f.TCPState != "ESTABLISHED" {
			st = 7 // TIME_WAIT
		}
		c.ProtoInfo.TCP = &ct.ProtoInfoTCP{State: st}
	}
	return c
}

func TestEventFrom(t *testing.T) {
	f := Flow{
		ID:       1,
		Original: Tuple{Proto: protoTCP, Src: netip.MustParseAddrPort("10.0.11.5:40000"), Dst: netip.MustParseAddrPort("203.0.113.10:443")},
		Reply:    Tuple{Proto: protoTCP, Src: netip.MustParseAddrPort("203.0.113.10:443"), Dst: netip.MustParseAddrPort("10.0.1.10:61000")},
		TCPState: "ESTABLISHED", Assured: true, SNAT: true, Timeout: 350 * time.Second,
	}
	c := ctFlowOf(f)
	ev, ok := eventFrom(&ct.Event{Type: ct.EventUpdate, Flow: c})
	if !ok || ev.Kind != EventUpdate || !ev.Plain || ev.Flow.Original != f.Original || !ev.Flow.Assured || ev.Flow.TCPState != "ESTABLISHED" {
		t.Errorf("eventFrom = %+v, %v", ev, ok)
	}
	c.Helper.Name = "ftp"
	if ev, _ := eventFrom(&ct.Event{Type: ct.EventNew, Flow: c}); ev.Plain {
		t.Errorf("flow with a helper is plain")
	}
	c.Helper.Name = ""
	c.SeqAdjOrig = ct.SequenceAdjust{Position: 1}
	if ev, _ := eventFrom(&ct.Event{Type: ct.EventNew, Flow: c}); ev.Plain {
		t.Errorf("flow with sequence adjustment is plain")
	}
	if _, ok := eventFrom(&ct.Event{Type: ct.EventExpNew}); ok {
		t.Errorf("expectation event accepted")
	}
}

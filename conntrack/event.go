package conntrack

import (
	ct "github.com/ti-mo/conntrack"
)

// EventKind is what a conntrack event reports of its flow.
type EventKind uint8

// Event kinds, as the kernel sends them.
const (
	EventNew EventKind = iota + 1
	EventUpdate
	EventDestroy
)

// Event is one decoded conntrack event, or one entry of a dump (an
// EventUpdate: the entry as an update would carry it).
type Event struct {
	Kind EventKind
	Flow Flow
	// Plain: no helper, no sequence adjustment, zone 0, IPv4 — a flow a
	// fast path can forward without the kernel's help.
	Plain bool
}

// plainFlow reports whether the kernel needs to see the flow's packets for
// reasons beyond tracking: a helper (FTP, SIP, …) reads payloads, sequence
// adjustment rewrites TCP sequence numbers, zones and IPv6 are not what the
// fast path's keys describe.
func plainFlow(c *ct.Flow) bool {
	if c.Helper.Name != "" || c.Zone != 0 {
		return false
	}
	if c.SeqAdjOrig != (ct.SequenceAdjust{}) || c.SeqAdjReply != (ct.SequenceAdjust{}) {
		return false
	}
	return c.TupleOrig.IP.SourceAddress.Unmap().Is4() && c.TupleReply.IP.SourceAddress.Unmap().Is4()
}

// entryEvent is a dumped or looked-up entry as an update event.
func entryEvent(c *ct.Flow) Event {
	return Event{Kind: EventUpdate, Flow: FlowFrom(c), Plain: plainFlow(c)}
}

// eventFrom converts a decoded ti-mo event; ok is false for events that
// carry no flow (expectations).
func eventFrom(ev *ct.Event) (Event, bool) {
	if ev.Flow == nil {
		return Event{}, false
	}
	var kind EventKind
	switch ev.Type {
	case ct.EventNew:
		kind = EventNew
	case ct.EventUpdate:
		kind = EventUpdate
	case ct.EventDestroy:
		kind = EventDestroy
	default:
		return Event{}, false
	}
	return Event{Kind: kind, Flow: FlowFrom(ev.Flow), Plain: plainFlow(ev.Flow)}, true
}

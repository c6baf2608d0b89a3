package flowsync

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/hanat/hanat/conntrack"
)

// IP protocol numbers and TCP conntrack states flowsync names.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58

	tcpEstablished = 3 // TCP_CONNTRACK_ESTABLISHED
	tcpFinWait     = 4
	tcpCloseWait   = 5
	tcpStateCount  = 10 // TCP_CONNTRACK_MAX
)

// record is a flow as the protocol carries it: a conntrack entry reduced
// to what a takeover needs to create it again.
type record struct {
	orig, reply         conntrack.Tuple
	tcpState            uint8 // enum tcp_conntrack; 0 for other protocols
	assured, snat, dnat bool
	timeout             uint32 // seconds the entry had left when read
	mark                uint32
}

// recordOf reduces a conntrack flow to a record.
func recordOf(f conntrack.Flow) (record, error) {
	r := record{
		orig: f.Original, reply: f.Reply,
		assured: f.Assured, snat: f.SNAT, dnat: f.DNAT,
		timeout: uint32(min(max(f.Timeout, 0)/time.Second, 1<<32-1)),
		mark:    f.Mark,
	}
	if f.Original.Proto == protoTCP {
		s, ok := tcpStateNumber(f.TCPState)
		if !ok {
			return record{}, fmt.Errorf("flow %s: unknown TCP state %q", f.Original, f.TCPState)
		}
		r.tcpState = s
	}
	if err := r.check(); err != nil {
		return record{}, fmt.Errorf("flow %s: %w", f.Original, err)
	}
	return r, nil
}

// flow is the record as a conntrack flow, to inject.
func (r record) flow() conntrack.Flow {
	f := conntrack.Flow{
		Original: r.orig, Reply: r.reply,
		ProtoName: conntrack.ProtoName(r.orig.Proto),
		Assured:   r.assured, SNAT: r.snat, DNAT: r.dnat,
		Timeout: time.Duration(r.timeout) * time.Second,
		Mark:    r.mark,
	}
	if r.orig.Proto == protoTCP {
		f.TCPState = conntrack.TCPStateName(r.tcpState)
	}
	return f
}

// check reports a record that no kernel entry could have: mixed address
// families, protocols that differ between the directions, a TCP state
// out of range.
func (r record) check() error {
	if r.orig.Proto != r.reply.Proto {
		return fmt.Errorf("original protocol %d differs from the reply's %d", r.orig.Proto, r.reply.Proto)
	}
	v4 := r.orig.Src.Addr().Is4()
	for _, a := range []netip.Addr{r.orig.Src.Addr(), r.orig.Dst.Addr(), r.reply.Src.Addr(), r.reply.Dst.Addr()} {
		if !a.IsValid() || a.Is4In6() || a.Is4() != v4 || a.Zone() != "" {
			return errors.New("tuples mix address families or miss an address")
		}
	}
	if r.tcpState >= tcpStateCount || (r.orig.Proto != protoTCP && r.tcpState != 0) {
		return fmt.Errorf("TCP state %d out of range", r.tcpState)
	}
	if isICMP(r.orig.Proto) {
		if r.orig.Src.Port() != 0 || r.orig.Dst.Port() != 0 || r.reply.Src.Port() != 0 || r.reply.Dst.Port() != 0 {
			return errors.New("ICMP tuple with ports")
		}
	} else if r.orig.ICMPID != 0 || r.reply.ICMPID != 0 {
		return errors.New("echo identifier on a non-ICMP tuple")
	}
	return nil
}

func isICMP(proto uint8) bool { return proto == protoICMP || proto == protoICMPv6 }

// tcpStateNumber is conntrack.TCPStateName's inverse; "" is ESTABLISHED.
func tcpStateNumber(name string) (uint8, bool) {
	if name == "" {
		return tcpEstablished, true
	}
	for s := range uint8(tcpStateCount) {
		if conntrack.TCPStateName(s) == name {
			return s, true
		}
	}
	return 0, false
}

// Syncable reports whether a flow can matter to a takeover, and so is
// synced: a NATed TCP flow past its handshake (ASSURED and ESTABLISHED,
// or half closed with data still flowing one way), or an ASSURED NATed
// UDP flow. A new, closing or unanswered flow is not: the peer would
// reset or time it out before the takeover could help it.
func Syncable(f conntrack.Flow) bool {
	if !f.Assured || !(f.SNAT || f.DNAT) {
		return false
	}
	switch f.Original.Proto {
	case protoTCP:
		s, _ := tcpStateNumber(f.TCPState)
		return f.TCPState != "" && (s == tcpEstablished || s == tcpFinWait || s == tcpCloseWait)
	case protoUDP:
		return true
	}
	return false
}

// The receiver holds its peer's flows in maps keyed by the original tuple,
// with addresses as plain byte arrays: no pointers for the collector to
// scan, and IPv4 flows (all of today's) in 4 bytes an address rather than
// netip.Addr's 24. A held IPv4 flow is a 14-byte key and a 24-byte value.

type addrBytes interface{ [4]byte | [16]byte }

type flowKey[A addrBytes] struct {
	src, dst     A
	sport, dport uint16 // ICMP: sport is the echo identifier
	proto        uint8
}

type flowVal[A addrBytes] struct {
	rsrc, rdst       A
	rsport, rdport   uint16 // ICMP: rsport is the reply's echo identifier
	timeout, mark    uint32
	tcpState, status uint8
}

const (
	statusAssured = 1 << iota
	statusSNAT
	statusDNAT
)

func pack[A addrBytes](a netip.Addr) A {
	var out A
	switch p := any(&out).(type) {
	case *[4]byte:
		*p = a.As4()
	case *[16]byte:
		*p = a.As16()
	}
	return out
}

func unpack[A addrBytes](a A) netip.Addr {
	switch p := any(&a).(type) {
	case *[4]byte:
		return netip.AddrFrom4(*p)
	case *[16]byte:
		return netip.AddrFrom16(*p)
	}
	return netip.Addr{}
}

func keyOf[A addrBytes](t conntrack.Tuple) flowKey[A] {
	k := flowKey[A]{src: pack[A](t.Src.Addr()), dst: pack[A](t.Dst.Addr()), sport: t.Src.Port(), dport: t.Dst.Port(), proto: t.Proto}
	if isICMP(t.Proto) {
		k.sport = t.ICMPID
	}
	return k
}

func tupleOf[A addrBytes](proto uint8, src, dst A, sport, dport uint16) conntrack.Tuple {
	t := conntrack.Tuple{Proto: proto, Src: netip.AddrPortFrom(unpack(src), sport), Dst: netip.AddrPortFrom(unpack(dst), dport)}
	if isICMP(proto) {
		t.ICMPID = sport
		t.Src = netip.AddrPortFrom(t.Src.Addr(), 0)
	}
	return t
}

func valOf[A addrBytes](r record) flowVal[A] {
	v := flowVal[A]{
		rsrc: pack[A](r.reply.Src.Addr()), rdst: pack[A](r.reply.Dst.Addr()),
		rsport: r.reply.Src.Port(), rdport: r.reply.Dst.Port(),
		timeout: r.timeout, mark: r.mark, tcpState: r.tcpState,
	}
	if isICMP(r.orig.Proto) {
		v.rsport = r.reply.ICMPID
	}
	if r.assured {
		v.status |= statusAssured
	}
	if r.snat {
		v.status |= statusSNAT
	}
	if r.dnat {
		v.status |= statusDNAT
	}
	return v
}

func recordFrom[A addrBytes](k flowKey[A], v flowVal[A]) record {
	return record{
		orig:     tupleOf(k.proto, k.src, k.dst, k.sport, k.dport),
		reply:    tupleOf(k.proto, v.rsrc, v.rdst, v.rsport, v.rdport),
		tcpState: v.tcpState, timeout: v.timeout, mark: v.mark,
		assured: v.status&statusAssured != 0, snat: v.status&statusSNAT != 0, dnat: v.status&statusDNAT != 0,
	}
}

// flowTable is a set of records by original tuple.
type flowTable struct {
	v4 map[flowKey[[4]byte]]flowVal[[4]byte]
	v6 map[flowKey[[16]byte]]flowVal[[16]byte]
}

func newFlowTable(sizeHint int) *flowTable {
	return &flowTable{v4: make(map[flowKey[[4]byte]]flowVal[[4]byte], sizeHint), v6: map[flowKey[[16]byte]]flowVal[[16]byte]{}}
}

func (t *flowTable) len() int { return len(t.v4) + len(t.v6) }

// put stores r (check passed) and reports whether that changed what a
// takeover would inject, the timeout aside.
func (t *flowTable) put(r record) bool {
	if r.orig.Src.Addr().Is4() {
		return putIn(t.v4, r)
	}
	return putIn(t.v6, r)
}

func putIn[A addrBytes](m map[flowKey[A]]flowVal[A], r record) bool {
	k, v := keyOf[A](r.orig), valOf[A](r)
	old, ok := m[k]
	m[k] = v
	old.timeout = v.timeout
	return !ok || old != v
}

// del removes the flow with original tuple orig and reports whether there
// was one.
func (t *flowTable) del(orig conntrack.Tuple) bool {
	if orig.Src.Addr().Is4() {
		return delIn(t.v4, orig)
	}
	return delIn(t.v6, orig)
}

func delIn[A addrBytes](m map[flowKey[A]]flowVal[A], orig conntrack.Tuple) bool {
	k := keyOf[A](orig)
	_, ok := m[k]
	delete(m, k)
	return ok
}

// each calls fn for every record until fn returns false.
func (t *flowTable) each(fn func(record) bool) {
	for k, v := range t.v4 {
		if !fn(recordFrom(k, v)) {
			return
		}
	}
	for k, v := range t.v6 {
		if !fn(recordFrom(k, v)) {
			return
		}
	}
}

// get returns the record with original tuple orig.
func (t *flowTable) get(orig conntrack.Tuple) (record, bool) {
	if orig.Src.Addr().Is4() {
		return getIn(t.v4, orig)
	}
	return getIn(t.v6, orig)
}

func getIn[A addrBytes](m map[flowKey[A]]flowVal[A], orig conntrack.Tuple) (record, bool) {
	k := keyOf[A](orig)
	v, ok := m[k]
	if !ok {
		return record{}, false
	}
	return recordFrom(k, v), true
}

// has reports whether the table holds a flow with original tuple orig.
func (t *flowTable) has(orig conntrack.Tuple) bool {
	if orig.Src.Addr().Is4() {
		_, ok := t.v4[keyOf[[4]byte](orig)]
		return ok
	}
	_, ok := t.v6[keyOf[[16]byte](orig)]
	return ok
}

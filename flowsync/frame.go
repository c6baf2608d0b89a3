package flowsync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/hanat/hanat/conntrack"
)

// Frames, version 1. A frame is the plaintext of one sealed message (see
// seal.go), big-endian:
//
//	kind u8 | body
//
//	snapshot-begin    snapshot u32
//	snapshot-records  snapshot u32 | count u16 | count × record
//	snapshot-end      snapshot u32 | total u32 (records in the snapshot)
//	upsert            count u16 | count × record
//	delete            count u16 | count × key
//	keepalive         ack u64 (the receiver: highest sequence applied; the sender: 0)
//	resync            (empty: the receiver asks for a snapshot)
//
//	record  flags u8 (1 IPv6, 2 assured, 4 SNAT, 8 DNAT) | proto u8 | tcp state u8 |
//	        original src addr, dst addr (4 or 16 bytes each), src port u16, dst port u16 |
//	        reply src addr, dst addr, src port, dst port | timeout u32 (s) | mark u32
//	key     flags u8 (1 IPv6) | proto u8 | original src addr, dst addr, src port, dst port
//
// For ICMP the source port field carries the echo identifier and the
// destination port is 0. A snapshot replaces the receiver's whole view
// once its end arrives with the total it announced; upserts and deletes
// change single flows.
const (
	kindSnapshotBegin   = 1
	kindSnapshotRecords = 2
	kindSnapshotEnd     = 3
	kindUpsert          = 4
	kindDelete          = 5
	kindKeepalive       = 6
	kindResync          = 7

	recFlagIPv6    = 1
	recFlagAssured = 2
	recFlagSNAT    = 4
	recFlagDNAT    = 8
	recFlagsKnown  = recFlagIPv6 | recFlagAssured | recFlagSNAT | recFlagDNAT

	// maxPerFrame bounds the records or keys of one frame; with IPv6
	// records (83 bytes) a frame stays under maxPlaintext.
	maxPerFrame = 4096
	// maxPlaintext bounds a frame.
	maxPlaintext = 1 << 19
)

// frame is one decoded frame.
type frame struct {
	kind     uint8
	snapshot uint32 // snapshot-begin, -records, -end
	total    uint32 // snapshot-end
	records  []record
	keys     []conntrack.Tuple
	ack      uint64 // keepalive
}

func kindName(k uint8) string {
	switch k {
	case kindSnapshotBegin:
		return "snapshot-begin"
	case kindSnapshotRecords:
		return "snapshot-records"
	case kindSnapshotEnd:
		return "snapshot-end"
	case kindUpsert:
		return "upsert"
	case kindDelete:
		return "delete"
	case kindKeepalive:
		return "keepalive"
	case kindResync:
		return "resync"
	}
	return fmt.Sprintf("kind-%d", k)
}

// appendFrame encodes f; records must have passed check and there must be
// at most maxPerFrame of them (or of keys).
func appendFrame(b []byte, f *frame) []byte {
	b = append(b, f.kind)
	switch f.kind {
	case kindSnapshotBegin:
		b = binary.BigEndian.AppendUint32(b, f.snapshot)
	case kindSnapshotRecords, kindUpsert:
		if f.kind == kindSnapshotRecords {
			b = binary.BigEndian.AppendUint32(b, f.snapshot)
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(f.records)))
		for i := range f.records {
			b = appendRecord(b, &f.records[i])
		}
	case kindSnapshotEnd:
		b = binary.BigEndian.AppendUint32(b, f.snapshot)
		b = binary.BigEndian.AppendUint32(b, f.total)
	case kindDelete:
		b = binary.BigEndian.AppendUint16(b, uint16(len(f.keys)))
		for _, k := range f.keys {
			b = appendKey(b, k)
		}
	case kindKeepalive:
		b = binary.BigEndian.AppendUint64(b, f.ack)
	}
	return b
}

func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		v := a.As4()
		return append(b, v[:]...)
	}
	v := a.As16()
	return append(b, v[:]...)
}

// appendEnds appends a tuple's addresses and ports (ICMP: id, 0).
func appendEnds(b []byte, t conntrack.Tuple) []byte {
	b = appendAddr(b, t.Src.Addr())
	b = appendAddr(b, t.Dst.Addr())
	sport, dport := t.Src.Port(), t.Dst.Port()
	if isICMP(t.Proto) {
		sport, dport = t.ICMPID, 0
	}
	b = binary.BigEndian.AppendUint16(b, sport)
	return binary.BigEndian.AppendUint16(b, dport)
}

func appendRecord(b []byte, r *record) []byte {
	var flags uint8
	if r.orig.Src.Addr().Is6() {
		flags |= recFlagIPv6
	}
	if r.assured {
		flags |= recFlagAssured
	}
	if r.snat {
		flags |= recFlagSNAT
	}
	if r.dnat {
		flags |= recFlagDNAT
	}
	b = append(b, flags, r.orig.Proto, r.tcpState)
	b = appendEnds(b, r.orig)
	b = appendEnds(b, r.reply)
	b = binary.BigEndian.AppendUint32(b, r.timeout)
	return binary.BigEndian.AppendUint32(b, r.mark)
}

func appendKey(b []byte, t conntrack.Tuple) []byte {
	var flags uint8
	if t.Src.Addr().Is6() {
		flags |= recFlagIPv6
	}
	b = append(b, flags, t.Proto)
	return appendEnds(b, t)
}

// errTruncated is wrapped by decode errors for a frame that ends early.
var errTruncated = errors.New("frame truncated")

// reader reads a frame's fields; the first failure sticks.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b)-r.off < n {
		r.err = fmt.Errorf("%w: %d bytes wanted at offset %d of %d", errTruncated, n, r.off, len(r.b))
		return nil
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

func (r *reader) u8() uint8 {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if p := r.take(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if p := r.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if p := r.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (r *reader) addr(v6 bool) netip.Addr {
	if v6 {
		if p := r.take(16); p != nil {
			return netip.AddrFrom16([16]byte(p))
		}
		return netip.Addr{}
	}
	if p := r.take(4); p != nil {
		return netip.AddrFrom4([4]byte(p))
	}
	return netip.Addr{}
}

func (r *reader) ends(proto uint8, v6 bool) conntrack.Tuple {
	src, dst := r.addr(v6), r.addr(v6)
	sport, dport := r.u16(), r.u16()
	t := conntrack.Tuple{Proto: proto, Src: netip.AddrPortFrom(src, sport), Dst: netip.AddrPortFrom(dst, dport)}
	if isICMP(proto) {
		if dport != 0 && r.err == nil {
			r.err = fmt.Errorf("ICMP tuple with destination port %d", dport)
		}
		t.ICMPID = sport
		t.Src = netip.AddrPortFrom(src, 0)
	}
	return t
}

func (r *reader) flags(known uint8) uint8 {
	f := r.u8()
	if f&^known != 0 && r.err == nil {
		r.err = fmt.Errorf("unknown flags %#x", f&^known)
	}
	return f
}

func (r *reader) record() record {
	flags := r.flags(recFlagsKnown)
	proto, state := r.u8(), r.u8()
	v6 := flags&recFlagIPv6 != 0
	rec := record{
		orig:     r.ends(proto, v6),
		reply:    r.ends(proto, v6),
		tcpState: state,
		assured:  flags&recFlagAssured != 0, snat: flags&recFlagSNAT != 0, dnat: flags&recFlagDNAT != 0,
	}
	rec.timeout, rec.mark = r.u32(), r.u32()
	if r.err == nil {
		if err := rec.check(); err != nil {
			r.err = fmt.Errorf("record %s: %w", rec.orig, err)
		}
	}
	return rec
}

func (r *reader) key() conntrack.Tuple {
	flags := r.flags(recFlagIPv6)
	proto := r.u8()
	return r.ends(proto, flags&recFlagIPv6 != 0)
}

// count reads a record or key count and checks it against what is left
// (each item at least min bytes), so a bad count allocates nothing.
func (r *reader) count(min int) int {
	n := int(r.u16())
	if r.err == nil && (n > maxPerFrame || n*min > len(r.b)-r.off) {
		r.err = fmt.Errorf("count %d does not fit the %d bytes left (at most %d items)", n, len(r.b)-r.off, maxPerFrame)
		return 0
	}
	return n
}

const (
	minRecordLen = 3 + 2*(4+4+2+2) + 8
	minKeyLen    = 2 + 4 + 4 + 2 + 2
)

// decodeFrame decodes one frame. It never panics; the error says what is
// wrong and where.
func decodeFrame(b []byte) (frame, error) {
	if len(b) > maxPlaintext {
		return frame{}, fmt.Errorf("frame of %d bytes exceeds %d", len(b), maxPlaintext)
	}
	r := reader{b: b}
	f := frame{kind: r.u8()}
	switch f.kind {
	case kindSnapshotBegin:
		f.snapshot = r.u32()
	case kindSnapshotRecords, kindUpsert:
		if f.kind == kindSnapshotRecords {
			f.snapshot = r.u32()
		}
		n := r.count(minRecordLen)
		f.records = make([]record, 0, n)
		for i := 0; i < n && r.err == nil; i++ {
			f.records = append(f.records, r.record())
		}
	case kindSnapshotEnd:
		f.snapshot, f.total = r.u32(), r.u32()
	case kindDelete:
		n := r.count(minKeyLen)
		f.keys = make([]conntrack.Tuple, 0, n)
		for i := 0; i < n && r.err == nil; i++ {
			f.keys = append(f.keys, r.key())
		}
	case kindKeepalive:
		f.ack = r.u64()
	case kindResync:
	default:
		if r.err == nil {
			r.err = fmt.Errorf("unknown frame kind %d", f.kind)
		}
	}
	if r.err == nil && r.off != len(b) {
		r.err = fmt.Errorf("%d bytes after the end", len(b)-r.off)
	}
	if r.err != nil {
		return frame{}, fmt.Errorf("decode %s frame (%d bytes): %w", kindName(f.kind), len(b), r.err)
	}
	return f, nil
}

//go:build linux

package conntrack

// The fuzz targets of the two ctnetlink decoders (the dump reader's
// handleDatagram and the event socket's decodeEvent), their seeds captured
// from a real kernel, and the checks that those seeds reach flow decoding.
//
// Seeds: testdata/fuzz/FuzzHandleDatagram/kernel-* and
// testdata/fuzz/FuzzDecodeEvent/kernel-* are conntrack messages the kernel
// sent in a NAT namespace (SNAT, nf_conntrack_acct=1) for a TCP and a UDP
// flow: dump replies, and NEW, UPDATE and DESTROY events. Regenerate them
// (root) with
//
//	go test ./conntrack -run '^TestKernelFuzzSeeds$' -update-fuzz-seeds

import (
	"bytes"
	"context"
	"encoding/binary"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	mdnetlink "github.com/mdlayher/netlink"
	ct "github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

var updateFuzzSeeds = flag.Bool("update-fuzz-seeds", false, "TestKernelFuzzSeeds: write the captured kernel messages as the conntrack fuzz seeds under testdata/fuzz")

// fuzzSeq is the dump sequence number FuzzHandleDatagram decodes.
const fuzzSeq = 1

// kernelSeedPrefix names the seed files TestKernelFuzzSeeds writes (and
// replaces); other files in the corpus directories are left alone.
const kernelSeedPrefix = "kernel-"

// ---- Fuzz targets ----

// FuzzHandleDatagram: any datagram gives an error or decoded flows, never a
// panic; every decoded flow survives a re-encoding (see flowAttrs) and a
// second decode unchanged; a finished dump has no error; skipped entries
// come with their first error.
func FuzzHandleDatagram(f *testing.F) {
	f.Add([]byte{})
	f.Add(doneMsg(fuzzSeq, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		var flows []Flow
		var res dumpResult
		done, err := handleDatagram(b, fuzzSeq, func(c *ct.Flow) { flows = append(flows, FlowFrom(c)) }, &res)
		if done && err != nil {
			t.Fatalf("done with error %v", err)
		}
		if (res.skipped > 0) != (res.firstErr != nil) {
			t.Fatalf("skipped %d entries, first error %v", res.skipped, res.firstErr)
		}
		for _, fl := range flows {
			checkFlow(t, fl)
			data, ok := reencoded(t, fl)
			if !ok {
				continue
			}
			var again []Flow
			var res2 dumpResult
			_, err = handleDatagram(rawMsg(ctNewType, unix.NLM_F_MULTI, fuzzSeq, data), fuzzSeq, func(c *ct.Flow) { again = append(again, FlowFrom(c)) }, &res2)
			if err != nil || res2.skipped != 0 || len(again) != 1 || again[0] != fl {
				t.Fatalf("round trip of %+v: got %+v, skipped %d (%v), err %v", fl, again, res2.skipped, res2.firstErr, err)
			}
		}
	})
}

// FuzzDecodeEvent fuzzes the live event decoder (decodeEvent, what the
// event socket's reader runs on every message) with a message's header
// type and flags and its payload: never a panic; an event's kind is the
// one its header names; the flow survives a re-encoding and a second decode
// unchanged.
func FuzzDecodeEvent(f *testing.F) {
	f.Add(ctNewType, uint16(unix.NLM_F_CREATE|unix.NLM_F_EXCL), []byte{})
	f.Add(uint16(netfilter.NFSubsysCTNetlink)<<8|2, uint16(0), []byte{2, 0, 0, 0})
	f.Fuzz(func(t *testing.T, typ, flags uint16, data []byte) {
		h := mdnetlink.Header{Type: mdnetlink.HeaderType(typ), Flags: mdnetlink.HeaderFlags(flags), Length: uint32(unix.NLMSG_HDRLEN + len(data))}
		ev, ok, err := decodeEvent(mdnetlink.Message{Header: h, Data: data})
		if err != nil {
			if ok {
				t.Fatalf("error %v with an event", err)
			}
			return
		}
		if !ok {
			if sub := netfilter.SubsystemID(typ >> 8); sub != netfilter.NFSubsysCTNetlinkExp {
				t.Fatalf("subsystem %v decoded without error and without an event", sub)
			}
			return
		}
		if want, known := kindOfHeader(typ, flags); !known || ev.Kind != want {
			t.Fatalf("message type %#x flags %#x decoded as kind %d, header says %d (known %v)", typ, flags, ev.Kind, want, known)
		}
		if ev.Plain && !(ev.Flow.Original.Src.Addr().Unmap().Is4() && ev.Flow.Reply.Src.Addr().Unmap().Is4()) {
			t.Fatalf("plain (IPv4) event with tuples %v / %v", ev.Flow.Original, ev.Flow.Reply)
		}
		checkFlow(t, ev.Flow)
		data, canEncode := reencoded(t, ev.Flow)
		if !canEncode {
			return
		}
		again, ok, err := decodeEvent(mdnetlink.Message{Header: h, Data: data})
		if err != nil || !ok || again.Kind != ev.Kind || again.Flow != ev.Flow {
			t.Fatalf("round trip of %+v (kind %d): got %+v (kind %d), ok %v, err %v", ev.Flow, ev.Kind, again.Flow, again.Kind, ok, err)
		}
	})
}

// kindOfHeader is the event kind a ctnetlink message header announces
// (include/uapi/linux/netfilter/nfnetlink_conntrack.h): IPCTNL_MSG_CT_NEW
// is a NEW event with NLM_F_CREATE or NLM_F_EXCL set and an UPDATE
// without; IPCTNL_MSG_CT_DELETE is a DESTROY.
func kindOfHeader(typ, flags uint16) (EventKind, bool) {
	if netfilter.SubsystemID(typ>>8) != netfilter.NFSubsysCTNetlink {
		return 0, false
	}
	switch typ & 0xff {
	case 0: // IPCTNL_MSG_CT_NEW
		if flags&(unix.NLM_F_CREATE|unix.NLM_F_EXCL) != 0 {
			return EventNew, true
		}
		return EventUpdate, true
	case 2: // IPCTNL_MSG_CT_DELETE
		return EventDestroy, true
	}
	return 0, false
}

// checkFlow checks what a decoded Flow promises about itself.
func checkFlow(t *testing.T, f Flow) {
	t.Helper()
	if f.ProtoName != ProtoName(f.Original.Proto) {
		t.Fatalf("flow %+v: ProtoName %q for protocol %d", f, f.ProtoName, f.Original.Proto)
	}
	if f.TCPState != "" && f.Original.Proto != protoTCP {
		t.Fatalf("flow %+v: TCP state on a protocol %d flow", f, f.Original.Proto)
	}
	var nat netip.AddrPort
	switch {
	case f.SNAT:
		nat = f.Reply.Dst
	case f.DNAT:
		nat = f.Original.Dst
	}
	if f.NATAddr() != nat {
		t.Fatalf("flow %+v: NATAddr %v, want %v", f, f.NATAddr(), nat)
	}
}

// reencoded is the ctnetlink payload (nfgenmsg and attributes) of f's
// fields (flowAttrs); ok is false when f cannot be encoded.
func reencoded(t *testing.T, f Flow) ([]byte, bool) {
	t.Helper()
	attrs, ok := flowAttrs(f)
	if !ok {
		return nil, false
	}
	m, err := netfilter.MarshalNetlink(netfilter.Header{SubsystemID: netfilter.NFSubsysCTNetlink, Family: netfilter.ProtoIPv4}, attrs)
	if err != nil {
		t.Fatalf("re-encode %+v: %v", f, err)
	}
	return m.Data, true
}

// flowAttrs encodes the fields a Flow carries as ctnetlink attributes, the
// way the kernel lays them out; ok is false when a tuple lacks an address
// (the kernel never sends that, and there is no encoding of it to compare).
func flowAttrs(f Flow) ([]netfilter.Attribute, bool) {
	to, ok1 := tupleAttrs(1, f.Original) // CTA_TUPLE_ORIG
	tr, ok2 := tupleAttrs(2, f.Reply)    // CTA_TUPLE_REPLY
	if !ok1 || !ok2 {
		return nil, false
	}
	var st ct.Status
	if f.Assured {
		st |= ct.StatusAssured
	}
	if f.SNAT {
		st |= ct.StatusSrcNAT
	}
	if f.DNAT {
		st |= ct.StatusDstNAT
	}
	counters := func(typ uint16, packets, bytes uint64) netfilter.Attribute {
		return netfilter.Attribute{Type: typ, Nested: true, Children: []netfilter.Attribute{
			{Type: 1, Data: binary.BigEndian.AppendUint64(nil, packets)}, // CTA_COUNTERS_PACKETS
			{Type: 2, Data: binary.BigEndian.AppendUint64(nil, bytes)},   // CTA_COUNTERS_BYTES
		}}
	}
	attrs := []netfilter.Attribute{
		to, tr,
		{Type: 3, Data: be32(uint32(st))},                      // CTA_STATUS
		{Type: 7, Data: be32(uint32(f.Timeout / time.Second))}, // CTA_TIMEOUT
		{Type: 8, Data: be32(f.Mark)},                          // CTA_MARK
		counters(9, f.OrigPackets, f.OrigBytes),                // CTA_COUNTERS_ORIG
		counters(10, f.ReplyPackets, f.ReplyBytes),             // CTA_COUNTERS_REPLY
		{Type: 12, Data: be32(f.ID)},                           // CTA_ID
	}
	if f.TCPState != "" {
		attrs = append(attrs, netfilter.Attribute{Type: 4, Nested: true, Children: []netfilter.Attribute{ // CTA_PROTOINFO
			{Type: 1, Nested: true, Children: []netfilter.Attribute{ // CTA_PROTOINFO_TCP
				{Type: 1, Data: []byte{tcpStateNumber(f.TCPState)}}, // CTA_PROTOINFO_TCP_STATE
			}},
		}})
	}
	return attrs, true
}

func tupleAttrs(typ uint16, tu Tuple) (netfilter.Attribute, bool) {
	src, dst := tu.Src.Addr(), tu.Dst.Addr()
	if !src.IsValid() || !dst.IsValid() {
		return netfilter.Attribute{}, false
	}
	srcType, dstType := uint16(1), uint16(2) // CTA_IP_V4_SRC, CTA_IP_V4_DST
	if !src.Is4() {
		srcType = 3 // CTA_IP_V6_SRC
	}
	if !dst.Is4() {
		dstType = 4 // CTA_IP_V6_DST
	}
	proto := []netfilter.Attribute{
		{Type: 1, Data: []byte{tu.Proto}},    // CTA_PROTO_NUM
		{Type: 2, Data: be16(tu.Src.Port())}, // CTA_PROTO_SRC_PORT
		{Type: 3, Data: be16(tu.Dst.Port())}, // CTA_PROTO_DST_PORT
	}
	if tu.ICMPID != 0 {
		proto = append(proto, netfilter.Attribute{Type: 4, Data: be16(tu.ICMPID)}) // CTA_PROTO_ICMP_ID
	}
	return netfilter.Attribute{Type: typ, Nested: true, Children: []netfilter.Attribute{
		{Type: 1, Nested: true, Children: []netfilter.Attribute{ // CTA_TUPLE_IP
			{Type: srcType, Data: src.AsSlice()},
			{Type: dstType, Data: dst.AsSlice()},
		}},
		{Type: 2, Nested: true, Children: proto}, // CTA_TUPLE_PROTO
	}}, true
}

// tcpStateNumber inverts TCPStateName.
func tcpStateNumber(name string) uint8 {
	if i := slices.Index(tcpStates[:], name); i >= 0 {
		return uint8(i)
	}
	n, _ := strconv.ParseUint(strings.TrimPrefix(name, "STATE_"), 10, 8)
	return uint8(n)
}

// refFlow decodes the ctnetlink payload of a well-formed kernel message
// (nfgenmsg and attributes) into a Flow without ti-mo/conntrack, walking
// the attribute tree by hand, as a reference for FlowFrom: a field FlowFrom
// takes from the wrong attribute (or drops) disagrees with it.
func refFlow(payload []byte) (Flow, error) {
	if len(payload) < 4 {
		return Flow{}, fmt.Errorf("payload of %d bytes has no nfgenmsg", len(payload))
	}
	attrs, err := netfilter.UnmarshalAttributes(payload[4:])
	if err != nil {
		return Flow{}, err
	}
	child := func(as []netfilter.Attribute, typ uint16) netfilter.Attribute {
		for _, a := range as {
			if a.Type == typ {
				return a
			}
		}
		return netfilter.Attribute{}
	}
	u := func(a netfilter.Attribute) uint64 { // a big-endian integer of any width
		var v uint64
		for _, b := range a.Data {
			v = v<<8 | uint64(b)
		}
		return v
	}
	tuple := func(a netfilter.Attribute) Tuple {
		ip, proto := child(a.Children, 1), child(a.Children, 2)
		addr := func(v4, v6 uint16) netip.Addr {
			d := child(ip.Children, v4).Data
			if d == nil {
				d = child(ip.Children, v6).Data
			}
			ad, _ := netip.AddrFromSlice(d)
			return ad
		}
		return Tuple{
			Proto:  uint8(u(child(proto.Children, 1))),
			Src:    netip.AddrPortFrom(addr(1, 3), uint16(u(child(proto.Children, 2)))),
			Dst:    netip.AddrPortFrom(addr(2, 4), uint16(u(child(proto.Children, 3)))),
			ICMPID: uint16(u(child(proto.Children, 4))),
		}
	}
	st := ct.Status(u(child(attrs, 3)))
	orig, reply := child(attrs, 9), child(attrs, 10)
	f := Flow{
		ID:           uint32(u(child(attrs, 12))),
		Original:     tuple(child(attrs, 1)),
		Reply:        tuple(child(attrs, 2)),
		Assured:      st&ct.StatusAssured != 0,
		SNAT:         st&ct.StatusSrcNAT != 0,
		DNAT:         st&ct.StatusDstNAT != 0,
		Timeout:      time.Duration(u(child(attrs, 7))) * time.Second,
		Mark:         uint32(u(child(attrs, 8))),
		OrigPackets:  u(child(orig.Children, 1)),
		OrigBytes:    u(child(orig.Children, 2)),
		ReplyPackets: u(child(reply.Children, 1)),
		ReplyBytes:   u(child(reply.Children, 2)),
	}
	f.ProtoName = ProtoName(f.Original.Proto)
	if tcp := child(child(attrs, 4).Children, 1); f.Original.Proto == protoTCP && tcp.Nested {
		f.TCPState = TCPStateName(uint8(u(child(tcp.Children, 1))))
	}
	return f, nil
}

// ---- Seeds ----

// eventSeed is one FuzzDecodeEvent input: a message's header type and
// flags and its payload.
type eventSeed struct {
	typ, flags uint16
	data       []byte
}

func (s eventSeed) decode() (Event, bool, error) {
	return decodeEvent(mdnetlink.Message{Header: mdnetlink.Header{Type: mdnetlink.HeaderType(s.typ), Flags: mdnetlink.HeaderFlags(s.flags)}, Data: s.data})
}

// seedsReachDecoding checks that dump seeds (FuzzHandleDatagram inputs) and
// event seeds (FuzzDecodeEvent inputs) reach flow decoding: TCP and UDP
// flows, NEW, UPDATE and DESTROY events, and flows with NAT and counters,
// each decoded as the reference decoder (refFlow) reads it.
func seedsReachDecoding(t *testing.T, dump [][]byte, events []eventSeed) {
	t.Helper()
	natCounted := func(f Flow) bool {
		return f.SNAT && f.NATAddr().IsValid() && f.OrigPackets > 0 && f.OrigBytes > 0 && f.ReplyPackets > 0 && f.ReplyBytes > 0
	}
	var flows []Flow
	for i, b := range dump {
		var res dumpResult
		var got []Flow
		if _, err := handleDatagram(b, fuzzSeq, func(c *ct.Flow) { got = append(got, FlowFrom(c)) }, &res); err != nil || res.skipped != 0 {
			t.Errorf("dump seed %d: err %v, %d entries skipped (%v)", i, err, res.skipped, res.firstErr)
		}
		var want []Flow
		msgs, err := syscall.ParseNetlinkMessage(b)
		if err != nil {
			t.Fatalf("dump seed %d: %v", i, err)
		}
		for _, m := range msgs {
			if m.Header.Type>>8 != uint16(netfilter.NFSubsysCTNetlink) {
				continue // NLMSG_DONE
			}
			f, err := refFlow(m.Data)
			if err != nil {
				t.Fatalf("dump seed %d: reference decoder: %v", i, err)
			}
			want = append(want, f)
		}
		if !slices.Equal(got, want) {
			t.Errorf("dump seed %d decodes to\n%+v\nthe reference decoder to\n%+v", i, got, want)
		}
		flows = append(flows, got...)
	}
	protos := map[uint8]bool{}
	for _, f := range flows {
		if natCounted(f) {
			protos[f.Original.Proto] = true
		}
	}
	if !protos[protoTCP] || !protos[protoUDP] {
		t.Errorf("FuzzHandleDatagram seeds: %d flows decoded, none with SNAT and counters both ways for TCP (%v) or UDP (%v)", len(flows), protos[protoTCP], protos[protoUDP])
	}

	kinds := map[EventKind]int{}
	natDestroy := false
	for i, s := range events {
		ev, ok, err := s.decode()
		if err != nil || !ok {
			t.Errorf("event seed %d: ok %v err %v", i, ok, err)
			continue
		}
		if want, err := refFlow(s.data); err != nil || ev.Flow != want {
			t.Errorf("event seed %d decodes to\n%+v\nthe reference decoder to\n%+v (%v)", i, ev.Flow, want, err)
		}
		kinds[ev.Kind]++
		natDestroy = natDestroy || ev.Kind == EventDestroy && natCounted(ev.Flow)
	}
	if kinds[EventNew] == 0 || kinds[EventUpdate] == 0 || kinds[EventDestroy] == 0 {
		t.Errorf("FuzzDecodeEvent seeds: %d NEW, %d UPDATE, %d DESTROY events; want each", kinds[EventNew], kinds[EventUpdate], kinds[EventDestroy])
	}
	if !natDestroy {
		t.Errorf("FuzzDecodeEvent seeds: no DESTROY event of a flow with SNAT and counters")
	}
}

// TestFuzzSeedsReachDecoding: the committed kernel seeds decode to flows
// with NAT and counters, and cover every event kind.
func TestFuzzSeedsReachDecoding(t *testing.T) {
	var dump [][]byte
	for _, vals := range readCorpus(t, "FuzzHandleDatagram") {
		dump = append(dump, vals[0].([]byte))
	}
	var events []eventSeed
	for _, vals := range readCorpus(t, "FuzzDecodeEvent") {
		events = append(events, eventSeed{vals[0].(uint16), vals[1].(uint16), vals[2].([]byte)})
	}
	if len(dump) == 0 || len(events) == 0 {
		t.Fatalf("%d FuzzHandleDatagram and %d FuzzDecodeEvent kernel seeds; regenerate them (see fuzz_test.go)", len(dump), len(events))
	}
	seedsReachDecoding(t, dump, events)
}

// TestKernelFuzzSeeds captures, in a NAT namespace, the kernel's conntrack
// messages for a TCP and a UDP flow (NEW and UPDATE events while they are
// set up, a dump of the table, DESTROY events when the table is flushed)
// and checks they reach flow decoding as the committed seeds do; with
// -update-fuzz-seeds it writes them as the seeds.
func TestKernelFuzzSeeds(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lab := newNATLab(t, ctx) // SNAT rule and nf_conntrack_acct=1 in its nat namespace
	mustRun(t, ctx, lab.nat, "sysctl", "-w", "net.netfilter.nf_conntrack_events=1")
	serveTCPEcho(t, lab.inet, "198.51.100.100:7")
	serveUDPEcho(t, lab.inet, "198.51.100.100:7")

	evs, err := dialNetfilter(NetNSFD(lab.nat.FD()))
	if err != nil {
		t.Fatal(err)
	}
	defer evs.close()
	for _, g := range netfilter.GroupsCT {
		if err := evs.conn.JoinGroup(uint32(g)); err != nil {
			t.Fatalf("join conntrack group %v: %v", g, err)
		}
	}

	tcpSrc := tcpRoundTrip(t, lab.private, "198.51.100.100:7")
	udpSrc := udpRoundTrip(t, lab.private, "198.51.100.100:7")
	dump := captureDump(t, lab.nat.FD())
	c, err := dialCT(NetNSFD(lab.nat.FD()))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("flush conntrack in %s: %v", lab.nat.Name, err)
	}
	c.Close()
	datagrams, events := captureEvents(t, evs, tcpSrc, udpSrc)
	seedsReachDecoding(t, dump, events)
	if t.Failed() || !*updateFuzzSeeds {
		return
	}

	var handle [][]any
	for _, b := range dump {
		handle = append(handle, []any{b})
	}
	for _, b := range datagrams {
		handle = append(handle, []any{withSeq(b, fuzzSeq)})
	}
	var decode [][]any
	for _, s := range events {
		decode = append(decode, []any{s.typ, s.flags, s.data})
	}
	writeCorpus(t, "FuzzHandleDatagram", handle)
	writeCorpus(t, "FuzzDecodeEvent", decode)
}

// captureDump dumps the conntrack table of the namespace with sequence
// number fuzzSeq and returns the kernel's reply datagrams as received.
func captureDump(t *testing.T, netnsFD int) [][]byte {
	t.Helper()
	d, err := dialNetfilter(NetNSFD(netnsFD))
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	req, err := netfilter.MarshalNetlink(netfilter.Header{
		SubsystemID: netfilter.NFSubsysCTNetlink,
		MessageType: ctnlMsgGet,
		Family:      netfilter.ProtoIPv4,
		Flags:       mdnetlink.Request | mdnetlink.Dump,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Sequence = fuzzSeq
	if _, err := d.conn.Send(req); err != nil {
		t.Fatalf("send dump request: %v", err)
	}
	if err := d.conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for range 100 {
		n, err := d.recv()
		if err != nil {
			t.Fatalf("dump: %v", err)
		}
		b := bytes.Clone(d.buf[:n])
		out = append(out, b)
		done, err := handleDatagram(b, fuzzSeq, func(*ct.Flow) {}, &dumpResult{})
		if err != nil {
			t.Fatalf("dump: %v", err)
		}
		if done {
			return out
		}
	}
	t.Fatal("dump did not end within 100 datagrams")
	return nil
}

// captureEvents reads event datagrams until the DESTROY events of both
// flows (by original source) have arrived; it returns the datagrams as
// received and their messages as FuzzDecodeEvent inputs.
func captureEvents(t *testing.T, evs *nlDumper, flows ...netip.AddrPort) ([][]byte, []eventSeed) {
	t.Helper()
	if err := evs.conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	destroyed := map[netip.AddrPort]bool{}
	var datagrams [][]byte
	var seeds []eventSeed
	for range 200 {
		n, err := evs.recv()
		if err != nil {
			t.Fatalf("events (destroyed so far: %v): %v", destroyed, err)
		}
		b := bytes.Clone(evs.buf[:n])
		msgs, err := syscall.ParseNetlinkMessage(b)
		if err != nil {
			t.Fatalf("event datagram %x: %v", b, err)
		}
		datagrams = append(datagrams, b)
		for _, m := range msgs {
			s := eventSeed{m.Header.Type, m.Header.Flags, m.Data}
			seeds = append(seeds, s)
			ev, ok, err := s.decode()
			if err != nil || !ok {
				t.Fatalf("event %x: ok %v err %v", b, ok, err)
			}
			t.Logf("event kind %d (message type %#x flags %#x): %+v", ev.Kind, s.typ, s.flags, ev.Flow)
			if ev.Kind == EventDestroy {
				destroyed[ev.Flow.Original.Src] = true
			}
		}
		if !slices.ContainsFunc(flows, func(f netip.AddrPort) bool { return !destroyed[f] }) {
			return datagrams, seeds
		}
	}
	t.Fatalf("no DESTROY events for all of %v within 200 datagrams (got %v)", flows, destroyed)
	return nil, nil
}

// withSeq returns a copy of a datagram with every message's sequence number
// set to seq (kernel events carry 0; handleDatagram decodes only its dump's
// sequence number).
func withSeq(b []byte, seq uint32) []byte {
	b = bytes.Clone(b)
	for off := 0; off+unix.NLMSG_HDRLEN <= len(b); {
		binary.NativeEndian.PutUint32(b[off+8:], seq)
		l := int(binary.NativeEndian.Uint32(b[off:]))
		if l < unix.NLMSG_HDRLEN {
			break
		}
		off += (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1)
	}
	return b
}

// ---- Go's fuzz corpus file format ("go test fuzz v1"), for []byte and
// uint16 values ----

const corpusHeader = "go test fuzz v1\n"

func corpusDir(target string) string { return filepath.Join("testdata", "fuzz", target) }

// writeCorpus replaces the kernel-* seeds of target with seeds.
func writeCorpus(t *testing.T, target string, seeds [][]any) {
	t.Helper()
	dir := corpusDir(target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	old, err := filepath.Glob(filepath.Join(dir, kernelSeedPrefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range old {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	for i, vals := range seeds {
		var b strings.Builder
		b.WriteString(corpusHeader)
		for _, v := range vals {
			switch v := v.(type) {
			case []byte:
				fmt.Fprintf(&b, "[]byte(%q)\n", v)
			case uint16:
				fmt.Fprintf(&b, "uint16(%d)\n", v)
			default:
				t.Fatalf("corpus value of type %T", v)
			}
		}
		p := filepath.Join(dir, fmt.Sprintf("%s%02d", kernelSeedPrefix, i))
		if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wrote %d seeds to %s", len(seeds), dir)
}

// readCorpus returns the values of target's kernel-* seed files.
func readCorpus(t *testing.T, target string) [][]any {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(corpusDir(target), kernelSeedPrefix+"*"))
	if err != nil {
		t.Fatal(err)
	}
	var out [][]any
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		body, ok := strings.CutPrefix(string(raw), corpusHeader)
		if !ok {
			t.Fatalf("%s: not a Go fuzz corpus file", p)
		}
		var vals []any
		for _, line := range strings.Split(strings.TrimSpace(body), "\n") {
			switch {
			case strings.HasPrefix(line, "[]byte(") && strings.HasSuffix(line, ")"):
				s, err := strconv.Unquote(line[len("[]byte(") : len(line)-1])
				if err != nil {
					t.Fatalf("%s: %q: %v", p, line, err)
				}
				vals = append(vals, []byte(s))
			case strings.HasPrefix(line, "uint16(") && strings.HasSuffix(line, ")"):
				n, err := strconv.ParseUint(line[len("uint16("):len(line)-1], 10, 16)
				if err != nil {
					t.Fatalf("%s: %q: %v", p, line, err)
				}
				vals = append(vals, uint16(n))
			default:
				t.Fatalf("%s: unsupported corpus line %q", p, line)
			}
		}
		out = append(out, vals)
	}
	return out
}

// FuzzDecodeDatagram fuzzes the event socket's datagram splitter
// (decodeDatagram, what the reader runs on every datagram): never a
// panic; each emitted event is one decodeEvent would give for a message
// of the datagram, so its kind is one a header names.
func FuzzDecodeDatagram(f *testing.F) {
	f.Add([]byte{})
	f.Add(rawMsg(ctNewType, 0, 0, []byte{2, 0, 0, 0}))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := 0
		err := decodeDatagram(b, func(ev Event) {
			n++
			if ev.Kind < EventNew || ev.Kind > EventDestroy {
				t.Fatalf("event of kind %d", ev.Kind)
			}
			checkFlow(t, ev.Flow)
		})
		if len(b) < unix.NLMSG_HDRLEN && (err == nil || n != 0) {
			t.Fatalf("%d bytes: %d events, err %v", len(b), n, err)
		}
	})
}

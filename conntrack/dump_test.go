package conntrack

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	ct "github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// Hand-built ctnetlink messages, as the kernel sends them in a dump.

const ctNewType = uint16(netfilter.NFSubsysCTNetlink)<<8 | 0 // IPCTNL_MSG_CT_NEW

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

// tupleAttr is CTA_TUPLE_ORIG (1) or CTA_TUPLE_REPLY (2) of a TCP/UDP flow.
func tupleAttr(typ uint16, proto uint8, src, dst netip.AddrPort) netfilter.Attribute {
	return netfilter.Attribute{Type: typ, Nested: true, Children: []netfilter.Attribute{
		{Type: 1, Nested: true, Children: []netfilter.Attribute{ // CTA_TUPLE_IP
			{Type: 1, Data: src.Addr().AsSlice()}, // CTA_IP_V4_SRC
			{Type: 2, Data: dst.Addr().AsSlice()}, // CTA_IP_V4_DST
		}},
		{Type: 2, Nested: true, Children: []netfilter.Attribute{ // CTA_TUPLE_PROTO
			{Type: 1, Data: []byte{proto}},    // CTA_PROTO_NUM
			{Type: 2, Data: be16(src.Port())}, // CTA_PROTO_SRC_PORT
			{Type: 3, Data: be16(dst.Port())}, // CTA_PROTO_DST_PORT
		}},
	}}
}

// flowMsg is one conntrack entry as a raw netlink message with sequence seq.
func flowMsg(t *testing.T, seq uint32, flags uint16, id uint32, status ct.Status, orig, reply [2]netip.AddrPort) []byte {
	t.Helper()
	m, err := netfilter.MarshalNetlink(netfilter.Header{SubsystemID: netfilter.NFSubsysCTNetlink, Family: netfilter.ProtoIPv4}, []netfilter.Attribute{
		tupleAttr(1, protoUDP, orig[0], orig[1]),
		tupleAttr(2, protoUDP, reply[0], reply[1]),
		{Type: 3, Data: be32(uint32(status))}, // CTA_STATUS
		{Type: 7, Data: be32(30)},             // CTA_TIMEOUT
		{Type: 12, Data: be32(id)},            // CTA_ID
	})
	if err != nil {
		t.Fatal(err)
	}
	return rawMsg(ctNewType, unix.NLM_F_MULTI|flags, seq, m.Data)
}

func rawMsg(typ, flags uint16, seq uint32, data []byte) []byte {
	l := unix.NLMSG_HDRLEN + len(data)
	b := make([]byte, (l+unix.NLMSG_ALIGNTO-1)&^(unix.NLMSG_ALIGNTO-1))
	binary.NativeEndian.PutUint32(b[0:], uint32(l))
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint16(b[6:], flags)
	binary.NativeEndian.PutUint32(b[8:], seq)
	copy(b[unix.NLMSG_HDRLEN:], data)
	return b
}

func errnoData(code int32) []byte {
	return binary.NativeEndian.AppendUint32(nil, uint32(code))
}

func doneMsg(seq uint32, errno int32) []byte {
	return rawMsg(unix.NLMSG_DONE, unix.NLM_F_MULTI, seq, errnoData(-errno))
}

var snatPair = [2][2]netip.AddrPort{
	{privateHost, internetUDP},
	{internetUDP, snatAddr},
}

func TestHandleDatagramDecodesAndFinishes(t *testing.T) {
	var b []byte
	b = append(b, flowMsg(t, 7, 0, 1, ct.StatusSrcNAT|ct.StatusAssured, snatPair[0], snatPair[1])...)
	b = append(b, flowMsg(t, 6, 0, 99, ct.StatusSrcNAT, snatPair[0], snatPair[1])...) // stale, other request
	b = append(b, rawMsg(ctNewType, unix.NLM_F_MULTI, 7, []byte{2, 0, 0, 0, 0xff, 0xff})...)
	b = append(b, flowMsg(t, 7, 0, 2, 0, snatPair[0], snatPair[1])...)

	var got []Flow
	var res dumpResult
	visit := func(c *ct.Flow) { got = append(got, FlowFrom(c)) }
	done, err := handleDatagram(b, 7, visit, &res)
	if err != nil || done {
		t.Fatalf("first datagram: done=%v err=%v, want more to come", done, err)
	}
	if len(got) != 2 || got[0].ID != 1 || got[1].ID != 2 {
		t.Fatalf("decoded %+v, want flows 1 and 2 (stale seq 6 ignored)", got)
	}
	if !got[0].SNAT || !got[0].Assured || got[0].NATAddr() != snatAddr || got[0].Timeout.Seconds() != 30 {
		t.Errorf("flow 1 = %+v", got[0])
	}
	if !testFilter.Match(got[0]) || testFilter.Match(got[1]) {
		t.Errorf("filter: flow 1 (SNAT) should match, flow 2 (no NAT) should not")
	}
	if res.skipped != 1 || res.firstErr == nil {
		t.Errorf("undecodable entry: skipped=%d firstErr=%v, want 1 and an error", res.skipped, res.firstErr)
	}

	done, err = handleDatagram(doneMsg(7, 0), 7, visit, &res)
	if err != nil || !done {
		t.Fatalf("NLMSG_DONE: done=%v err=%v", done, err)
	}
}

func TestHandleDatagramErrors(t *testing.T) {
	nop := func(*ct.Flow) {}
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"interrupted", flowMsg(t, 3, unix.NLM_F_DUMP_INTR, 1, 0, snatPair[0], snatPair[1]), ErrDumpInterrupted},
		{"error reply", rawMsg(unix.NLMSG_ERROR, 0, 3, errnoData(-int32(unix.EPERM))), unix.EPERM},
		{"done with error", doneMsg(3, int32(unix.ENOBUFS)), unix.ENOBUFS},
		{"overrun", rawMsg(unix.NLMSG_OVERRUN, 0, 3, nil), unix.ENOBUFS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			done, err := handleDatagram(tt.b, 3, nop, &dumpResult{})
			if done || !errors.Is(err, tt.want) {
				t.Errorf("done=%v err=%v, want error %v", done, err, tt.want)
			}
		})
	}
	// An ack (NLMSG_ERROR with errno 0) is not an error.
	if done, err := handleDatagram(rawMsg(unix.NLMSG_ERROR, 0, 3, errnoData(0)), 3, nop, &dumpResult{}); done || err != nil {
		t.Errorf("ack: done=%v err=%v", done, err)
	}
	// A datagram that is not netlink at all is a clear error, not a panic.
	if _, err := handleDatagram([]byte{1, 2, 3}, 3, nop, &dumpResult{}); err == nil {
		t.Errorf("garbage datagram: no error")
	}
}

// fakeDumper replays scripted dump outcomes.
type fakeDumper struct {
	script *[]error // one entry per dump; consumed in order
	flows  []*ct.Flow
	closed bool
}

func (d *fakeDumper) dump(ctx context.Context, _ netfilter.ProtoFamily, visit func(*ct.Flow)) (dumpResult, error) {
	if len(*d.script) == 0 {
		return dumpResult{}, errors.New("script exhausted")
	}
	err := (*d.script)[0]
	*d.script = (*d.script)[1:]
	// Deliver some flows even on a failing attempt, as a real interrupted
	// dump does: the retry must not double-count them.
	for _, f := range d.flows {
		visit(f)
	}
	return dumpResult{}, err
}

func (d *fakeDumper) close() error { d.closed = true; return nil }

func fakeTable(t *testing.T, script ...error) (*Table, *int) {
	t.Helper()
	c := &ct.Flow{Status: ct.StatusSrcNAT | ct.StatusAssured}
	c.TupleOrig = ctTuple(protoUDP, privateHost, internetUDP)
	c.TupleReply = ctTuple(protoUDP, internetUDP, snatAddr)
	plain := &ct.Flow{}
	plain.TupleOrig = ctTuple(protoUDP, snatAddr, internetUDP)
	plain.TupleReply = ctTuple(protoUDP, internetUDP, snatAddr)
	dials := 0
	s := script
	tb, err := newTable(slog.New(slog.DiscardHandler), "fake", func() (dumper, error) {
		dials++
		return &fakeDumper{script: &s, flows: []*ct.Flow{c, plain}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return tb, &dials
}

func TestWalkRetriesInterruptedDumps(t *testing.T) {
	tb, dials := fakeTable(t, ErrDumpInterrupted, fmt.Errorf("recv: %w", unix.ENOBUFS), nil)
	st, err := tb.Stats(context.Background(), testFilter)
	if err != nil {
		t.Fatalf("Stats after two retryable failures: %v", err)
	}
	if st != (Stats{Active: 1, UDP: 1, Assured: 1}) {
		t.Errorf("Stats = %+v, want the one SNAT flow counted once", st)
	}
	if *dials != 3 {
		t.Errorf("dials = %d, want 3 (fresh socket after each failure)", *dials)
	}
}

func TestWalkGivesUp(t *testing.T) {
	tb, _ := fakeTable(t, ErrDumpInterrupted, ErrDumpInterrupted, ErrDumpInterrupted, nil)
	_, err := tb.Flows(context.Background(), testFilter)
	if !errors.Is(err, ErrDumpInterrupted) || !strings.Contains(err.Error(), "gave up after 3 attempts") {
		t.Errorf("err = %v, want ErrDumpInterrupted after 3 attempts", err)
	}
}

func TestWalkDoesNotRetryOtherErrors(t *testing.T) {
	tb, dials := fakeTable(t, unix.EPERM, nil)
	_, err := tb.Flows(context.Background(), testFilter)
	if !errors.Is(err, unix.EPERM) || *dials != 1 {
		t.Errorf("err = %v dials = %d, want EPERM on the first attempt", err, *dials)
	}
	// The next call redials and succeeds.
	flows, err := tb.Flows(context.Background(), testFilter)
	if err != nil || len(flows) != 1 || *dials != 2 {
		t.Errorf("next call: %d flows, err %v, dials %d", len(flows), err, *dials)
	}
}

func TestWalkRespectsContext(t *testing.T) {
	tb, _ := fakeTable(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	tb.sem <- struct{}{} // a dump is running
	_, err := tb.Flows(ctx, testFilter)
	<-tb.sem
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled while waiting for the running dump", err)
	}
}

func TestFlowsLimit(t *testing.T) {
	tb, _ := fakeTable(t, nil)
	all := testFilter
	all.NATAddrs = append(all.NATAddrs, privateHost.Addr())
	flows, matched, err := tb.FlowsLimit(context.Background(), all, 0)
	if err != nil || len(flows) != 0 || matched != 1 {
		t.Errorf("FlowsLimit(0) = %d flows, %d matched, %v; want 0, 1, nil", len(flows), matched, err)
	}
}

func TestClosedTable(t *testing.T) {
	tb, _ := fakeTable(t, nil, nil)
	if err := tb.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := tb.Stats(context.Background(), testFilter); !errors.Is(err, ErrClosed) {
		t.Errorf("Stats on closed table: %v, want ErrClosed", err)
	}
	if err := tb.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

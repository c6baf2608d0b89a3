package flowsync

import (
	"context"
	"iter"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/hanat/hanat/conntrack"
)

func TestTakeoverRewrites(t *testing.T) {
	snat := testFlow(5)
	snat.Timeout = 2 * time.Second
	fwd := conntrack.Flow{
		Original: tcp("203.0.113.9:50000", "10.0.1.10:8080"),
		Reply:    tcp("10.0.3.20:80", "203.0.113.9:50000"),
		TCPState: "ESTABLISHED", Assured: true, DNAT: true, Timeout: time.Minute,
	}
	res := testTakeover.Rewrite([]conntrack.Flow{snat, fwd})
	if res.Refused != 0 || len(res.Flows) != 2 {
		t.Fatalf("Rewrite = %+v", res)
	}
	got := res.Flows[0]
	if got.Original != snat.Original || got.Reply.Src != snat.Reply.Src ||
		got.Reply.Dst != netip.AddrPortFrom(testOwnNAT, snat.Reply.Dst.Port()) || !got.SNAT || got.TCPState != "ESTABLISHED" {
		t.Errorf("SNAT flow rewritten to %+v", got)
	}
	if got.Timeout != minInjectTimeout {
		t.Errorf("timeout %s, want the floor %s", got.Timeout, minInjectTimeout)
	}
	// The offload mark is cleared (this node's table sets it again), the
	// other bits kept.
	snat.Mark = 0xc0000002
	tk := testTakeover
	tk.ClearMark = 0x40000000
	if res := tk.Rewrite([]conntrack.Flow{snat}); len(res.Flows) != 1 || res.Flows[0].Mark != 0x80000002 {
		t.Errorf("mark rewritten to %#x, want 0x80000002: %+v", res.Flows[0].Mark, res)
	}
	if f := res.Flows[1]; f.Original.Dst != netip.AddrPortFrom(testOwnNAT, 8080) || f.Reply != fwd.Reply || !f.DNAT {
		t.Errorf("port forward rewritten to %+v", f)
	}
}

func TestTakeoverRefuses(t *testing.T) {
	outside := testFlow(1)
	outside.Original.Src = netip.MustParseAddrPort("172.16.0.5:4000")
	otherNAT := testFlow(2)
	otherNAT.Reply.Dst = netip.MustParseAddrPort("198.51.100.7:4000")
	spoofedReply := testFlow(3)
	spoofedReply.Reply.Src = netip.MustParseAddrPort("198.51.100.99:443")
	both := testFlow(4)
	both.DNAT = true
	fwdOutside := conntrack.Flow{
		Original: tcp("203.0.113.9:50000", "10.0.1.10:8080"),
		Reply:    tcp("192.168.7.7:80", "203.0.113.9:50000"),
		TCPState: "ESTABLISHED", Assured: true, DNAT: true, Timeout: time.Minute,
	}
	for _, tc := range []struct {
		name string
		f    conntrack.Flow
		want string
	}{
		{"private side outside the CIDRs", outside, "outside the private CIDRs"},
		{"NAT address not the peer's", otherNAT, "not one of the peer's SNAT addresses"},
		{"reply not from the destination", spoofedReply, "is not the original destination"},
		{"SNAT and DNAT", both, "neither SNAT nor DNAT alone"},
		{"forward to outside the CIDRs", fwdOutside, "outside the private CIDRs"},
	} {
		res := testTakeover.Rewrite([]conntrack.Flow{testFlow(9), tc.f})
		if res.Refused != 1 || len(res.Flows) != 1 || res.FirstRefusal == nil || !strings.Contains(res.FirstRefusal.Error(), tc.want) {
			t.Errorf("%s: Rewrite = %d flows, %d refused, %v; want it refused: %s", tc.name, len(res.Flows), res.Refused, res.FirstRefusal, tc.want)
		}
	}
	if res := testTakeover.Rewrite([]conntrack.Flow{testFlow(9), testFlow(9)}); res.Refused != 1 || len(res.Flows) != 1 {
		t.Errorf("a flow held twice: %d flows, %d refused", len(res.Flows), res.Refused)
	}
}

func TestSyncable(t *testing.T) {
	udp := testFlow(1)
	udp.Original.Proto, udp.Reply.Proto, udp.TCPState = protoUDP, protoUDP, ""
	icmp := testFlow(2)
	icmp.Original = conntrack.Tuple{Proto: protoICMP, Src: netip.MustParseAddrPort("10.0.3.5:0"), Dst: netip.MustParseAddrPort("198.51.100.1:0"), ICMPID: 7}
	icmp.TCPState = ""
	with := func(f conntrack.Flow, edit func(*conntrack.Flow)) conntrack.Flow { edit(&f); return f }
	for _, tc := range []struct {
		name string
		f    conntrack.Flow
		want bool
	}{
		{"established TCP", testFlow(0), true},
		{"half-closed TCP", with(testFlow(0), func(f *conntrack.Flow) { f.TCPState = "CLOSE_WAIT" }), true},
		{"assured UDP", udp, true},
		{"TCP in handshake", with(testFlow(0), func(f *conntrack.Flow) { f.TCPState = "SYN_RECV"; f.Assured = false }), false},
		{"unassured TCP", with(testFlow(0), func(f *conntrack.Flow) { f.Assured = false }), false},
		{"TCP in TIME_WAIT", with(testFlow(0), func(f *conntrack.Flow) { f.TCPState = "TIME_WAIT" }), false},
		{"unanswered UDP", with(udp, func(f *conntrack.Flow) { f.Assured = false }), false},
		{"not NATed", with(testFlow(0), func(f *conntrack.Flow) { f.SNAT = false }), false},
		{"ICMP", icmp, false},
	} {
		if got := Syncable(tc.f); got != tc.want {
			t.Errorf("%s: Syncable = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// seqInjector is a SeqInjector that takes up to stopAfter flows (all when
// 0) and reports them created.
type seqInjector struct {
	stopAfter int
	announced int
	got       []conntrack.Flow
}

func (s *seqInjector) InjectSeq(_ context.Context, n int, flows iter.Seq[conntrack.Flow]) (conntrack.InjectResult, error) {
	s.announced = n
	for f := range flows {
		s.got = append(s.got, f)
		if len(s.got) == s.stopAfter {
			break
		}
	}
	return conntrack.InjectResult{Created: len(s.got)}, nil
}

// TestReceiverInjectTakeover: the receiver's takeover hands the injector
// exactly what Rewrite makes of Held, refusals counted, within the count
// it announces; NATAddrs names the held flows' NAT addresses.
func TestReceiverInjectTakeover(t *testing.T) {
	r, err := NewReceiver(ReceiverConfig{Key: testKey, Peer: testPeerNAT})
	if err != nil {
		t.Fatal(err)
	}
	const n = 700
	r.core = heldCore(t, n)
	outside := testFlow(n)
	outside.Original.Src = netip.MustParseAddrPort("172.16.0.5:4000")
	rec, err := recordOf(outside)
	if err != nil {
		t.Fatal(err)
	}
	r.core.held.put(rec)
	want := testTakeover.Rewrite(r.Held())

	in := &seqInjector{}
	rw, ir, err := r.InjectTakeover(context.Background(), testTakeover, in)
	if err != nil || ir.Created != n || rw.Refused != 1 || rw.FirstRefusal == nil || rw.Flows != nil {
		t.Fatalf("InjectTakeover = %+v, %+v, %v; want %d created, 1 refused", rw, ir, err, n)
	}
	if in.announced < len(in.got) {
		t.Errorf("announced %d flows, yielded %d", in.announced, len(in.got))
	}
	if got := canonTimed(in.got); got != canonTimed(want.Flows) {
		t.Errorf("injected flows differ from Rewrite of Held:\n%s", lineDiff(got, canonTimed(want.Flows)))
	}
	// An injector that stops early (its context ended) stops the rewrite.
	early := &seqInjector{stopAfter: 10}
	if _, ir, err := r.InjectTakeover(context.Background(), testTakeover, early); err != nil || ir.Created != 10 {
		t.Errorf("stopped after 10: %+v, %v", ir, err)
	}
	if got := r.NATAddrs(); len(got) != 1 || got[0] != testPeerNAT {
		t.Errorf("NATAddrs = %v, want [%s]", got, testPeerNAT)
	}
}

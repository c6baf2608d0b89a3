package conntrack

import (
	"net/netip"
	"testing"
	"time"

	ct "github.com/ti-mo/conntrack"
)

var (
	privateHost = netip.MustParseAddrPort("10.0.11.10:40000")
	internetUDP = netip.MustParseAddrPort("198.51.100.100:53")
	snatAddr    = netip.MustParseAddrPort("198.51.100.2:61000")
	testFilter  = Filter{
		PrivateCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.11.0/24"), netip.MustParsePrefix("10.0.12.0/24")},
		NATAddrs:     []netip.Addr{netip.MustParseAddr("198.51.100.2")},
	}
)

func flowOf(proto uint8, snat, dnat bool, oSrc, oDst, rSrc, rDst string) Flow {
	return Flow{
		Original: Tuple{Proto: proto, Src: netip.MustParseAddrPort(oSrc), Dst: netip.MustParseAddrPort(oDst)},
		Reply:    Tuple{Proto: proto, Src: netip.MustParseAddrPort(rSrc), Dst: netip.MustParseAddrPort(rDst)},
		SNAT:     snat,
		DNAT:     dnat,
	}
}

func TestFilterMatch(t *testing.T) {
	tests := []struct {
		name   string
		filter Filter
		flow   Flow
		want   bool
	}{
		{"SNAT flow from a private subnet to the SNAT address", testFilter,
			flowOf(protoUDP, true, false, "10.0.11.10:40000", "198.51.100.100:53", "198.51.100.100:53", "198.51.100.2:61000"), true},
		{"SNAT flow from the second private subnet", testFilter,
			flowOf(protoTCP, true, false, "10.0.12.7:1234", "203.0.113.5:443", "203.0.113.5:443", "198.51.100.2:1234"), true},
		{"DNAT port forward to a private host", testFilter,
			flowOf(protoTCP, false, true, "203.0.113.9:5555", "198.51.100.2:8022", "10.0.11.10:22", "203.0.113.9:5555"), true},
		{"unrelated flow to the NAT itself (no NAT)", testFilter,
			flowOf(protoTCP, false, false, "203.0.113.9:5555", "198.51.100.2:22", "198.51.100.2:22", "203.0.113.9:5555"), false},
		{"unrelated flow from the NAT itself (no NAT)", testFilter,
			flowOf(protoUDP, false, false, "198.51.100.2:5000", "198.51.100.100:53", "198.51.100.100:53", "198.51.100.2:5000"), false},
		{"SNAT flow from outside the private CIDRs", testFilter,
			flowOf(protoUDP, true, false, "192.0.2.10:40000", "198.51.100.100:53", "198.51.100.100:53", "198.51.100.2:61000"), false},
		{"SNAT flow translated to someone else's address", testFilter,
			flowOf(protoUDP, true, false, "10.0.11.10:40000", "198.51.100.100:53", "198.51.100.100:53", "198.51.100.77:61000"), false},
		{"DNAT flow to a host outside the private CIDRs", testFilter,
			flowOf(protoTCP, false, true, "203.0.113.9:5555", "198.51.100.2:8022", "192.0.2.10:22", "203.0.113.9:5555"), false},
		{"private addresses without the SNAT status bit", testFilter,
			flowOf(protoUDP, false, false, "10.0.11.10:40000", "198.51.100.100:53", "198.51.100.100:53", "198.51.100.2:61000"), false},
		{"empty filter matches nothing", Filter{},
			flowOf(protoUDP, true, false, "10.0.11.10:40000", "198.51.100.100:53", "198.51.100.100:53", "198.51.100.2:61000"), false},
		{"IPv6 flow against IPv4 filter", testFilter,
			flowOf(protoUDP, true, false, "[fd00::10]:40000", "[2001:db8::1]:53", "[2001:db8::1]:53", "[2001:db8::2]:61000"), false},
		{"IPv6 flow against IPv6 filter", Filter{
			PrivateCIDRs: []netip.Prefix{netip.MustParsePrefix("fd00::/64")},
			NATAddrs:     []netip.Addr{netip.MustParseAddr("2001:db8::2")},
		}, flowOf(protoUDP, true, false, "[fd00::10]:40000", "[2001:db8::1]:53", "[2001:db8::1]:53", "[2001:db8::2]:61000"), true},
		{"zero flow", testFilter, Flow{}, false},
		{"zero flow with NAT bits", testFilter, Flow{SNAT: true, DNAT: true}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.filter.Match(tt.flow); got != tt.want {
				t.Errorf("Match(%v / %v) = %v, want %v", tt.flow.Original, tt.flow.Reply, got, tt.want)
			}
		})
	}
}

func TestFilterMatchAllocatesNothing(t *testing.T) {
	fl := flowOf(protoUDP, true, false, "10.0.11.10:40000", "198.51.100.100:53", "198.51.100.100:53", "198.51.100.2:61000")
	if n := testing.AllocsPerRun(100, func() { testFilter.Match(fl) }); n != 0 {
		t.Errorf("Match allocates %v times per call, want 0", n)
	}
}

func ctTuple(proto uint8, src, dst netip.AddrPort) ct.Tuple {
	var t ct.Tuple
	t.IP.SourceAddress, t.IP.DestinationAddress = src.Addr(), dst.Addr()
	t.Proto.Protocol, t.Proto.SourcePort, t.Proto.DestinationPort = proto, src.Port(), dst.Port()
	return t
}

func TestFlowFromTCP(t *testing.T) {
	c := &ct.Flow{
		ID:         4242,
		Timeout:    350,
		Status:     ct.StatusSeenReply | ct.StatusAssured | ct.StatusConfirmed | ct.StatusSrcNAT | ct.StatusSrcNATDone,
		Mark:       0x1f,
		TupleOrig:  ctTuple(protoTCP, privateHost, netip.MustParseAddrPort("203.0.113.5:443")),
		TupleReply: ctTuple(protoTCP, netip.MustParseAddrPort("203.0.113.5:443"), snatAddr),
		ProtoInfo:  ct.ProtoInfo{TCP: &ct.ProtoInfoTCP{State: 3}},
	}
	c.CountersOrig = ct.Counter{Packets: 10, Bytes: 1000}
	c.CountersReply = ct.Counter{Direction: true, Packets: 20, Bytes: 30000}

	got := FlowFrom(c)
	want := Flow{
		ID:           4242,
		Original:     Tuple{Proto: protoTCP, Src: privateHost, Dst: netip.MustParseAddrPort("203.0.113.5:443")},
		Reply:        Tuple{Proto: protoTCP, Src: netip.MustParseAddrPort("203.0.113.5:443"), Dst: snatAddr},
		ProtoName:    "tcp",
		TCPState:     "ESTABLISHED",
		Assured:      true,
		SNAT:         true,
		Timeout:      350 * time.Second,
		Mark:         0x1f,
		OrigPackets:  10,
		OrigBytes:    1000,
		ReplyPackets: 20,
		ReplyBytes:   30000,
	}
	if got != want {
		t.Errorf("FlowFrom =\n %+v\nwant\n %+v", got, want)
	}
	if got.NATAddr() != snatAddr {
		t.Errorf("NATAddr = %v, want %v", got.NATAddr(), snatAddr)
	}
	if !testFilter.Match(got) {
		t.Errorf("converted SNAT flow does not match the filter")
	}
}

func TestFlowFromStatusBits(t *testing.T) {
	tests := []struct {
		status              ct.Status
		assured, snat, dnat bool
	}{
		{0, false, false, false},
		{ct.StatusConfirmed | ct.StatusSrcNATDone | ct.StatusDstNATDone, false, false, false}, // null bindings
		{ct.StatusAssured, true, false, false},
		{ct.StatusSrcNAT, false, true, false},
		{ct.StatusDstNAT, false, false, true},
		{ct.StatusNATMask | ct.StatusAssured, true, true, true},
	}
	for _, tt := range tests {
		f := FlowFrom(&ct.Flow{Status: tt.status})
		if f.Assured != tt.assured || f.SNAT != tt.snat || f.DNAT != tt.dnat {
			t.Errorf("status %v: assured/snat/dnat = %v/%v/%v, want %v/%v/%v",
				tt.status, f.Assured, f.SNAT, f.DNAT, tt.assured, tt.snat, tt.dnat)
		}
	}
}

func TestFlowFromICMPAndUDP(t *testing.T) {
	c := &ct.Flow{Status: ct.StatusSrcNAT, Timeout: 29}
	c.TupleOrig = ctTuple(protoICMP, netip.AddrPortFrom(privateHost.Addr(), 0), netip.AddrPortFrom(internetUDP.Addr(), 0))
	c.TupleOrig.Proto.ICMPID, c.TupleOrig.Proto.ICMPv4, c.TupleOrig.Proto.ICMPType = 7, true, 8
	c.TupleReply = ctTuple(protoICMP, netip.AddrPortFrom(internetUDP.Addr(), 0), netip.AddrPortFrom(snatAddr.Addr(), 0))
	c.TupleReply.Proto.ICMPID = 7
	f := FlowFrom(c)
	if f.ProtoName != "icmp" || f.TCPState != "" || f.Original.ICMPID != 7 || f.Reply.ICMPID != 7 {
		t.Errorf("ICMP flow = %+v", f)
	}
	if f.Original.Src.Port() != 0 || f.NATAddr() != netip.AddrPortFrom(snatAddr.Addr(), 0) {
		t.Errorf("ICMP flow ports/NATAddr = %v / %v", f.Original.Src, f.NATAddr())
	}
	if s := f.Original.String(); s != "10.0.11.10 -> 198.51.100.100 id 7" {
		t.Errorf("ICMP tuple String = %q", s)
	}
	if f.Timeout != 29*time.Second {
		t.Errorf("Timeout = %v", f.Timeout)
	}

	// A TCP flow without protoinfo (as in some events) has no state name;
	// a UDP flow never has one, even if protoinfo were present.
	if got := FlowFrom(&ct.Flow{TupleOrig: ctTuple(protoTCP, privateHost, internetUDP)}).TCPState; got != "" {
		t.Errorf("TCP without protoinfo: state %q, want empty", got)
	}
	u := FlowFrom(&ct.Flow{TupleOrig: ctTuple(protoUDP, privateHost, internetUDP), ProtoInfo: ct.ProtoInfo{TCP: &ct.ProtoInfoTCP{State: 3}}})
	if u.ProtoName != "udp" || u.TCPState != "" {
		t.Errorf("UDP flow name/state = %q/%q", u.ProtoName, u.TCPState)
	}
	if s := u.Original.String(); s != "10.0.11.10:40000 -> 198.51.100.100:53" {
		t.Errorf("UDP tuple String = %q", s)
	}
}

func TestNATAddrDNATAndPlain(t *testing.T) {
	d := flowOf(protoTCP, false, true, "203.0.113.9:5555", "198.51.100.2:8022", "10.0.11.10:22", "203.0.113.9:5555")
	if got := d.NATAddr(); got != netip.MustParseAddrPort("198.51.100.2:8022") {
		t.Errorf("DNAT NATAddr = %v", got)
	}
	if got := (Flow{}).NATAddr(); got.IsValid() {
		t.Errorf("plain flow NATAddr = %v, want zero", got)
	}
}

func TestTCPStateName(t *testing.T) {
	for s, want := range map[uint8]string{
		0: "NONE", 1: "SYN_SENT", 2: "SYN_RECV", 3: "ESTABLISHED", 4: "FIN_WAIT",
		5: "CLOSE_WAIT", 6: "LAST_ACK", 7: "TIME_WAIT", 8: "CLOSE", 9: "SYN_SENT2", 42: "STATE_42",
	} {
		if got := TCPStateName(s); got != want {
			t.Errorf("TCPStateName(%d) = %q, want %q", s, got, want)
		}
	}
	for p, want := range map[uint8]string{1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp", 47: "gre", 250: "250"} {
		if got := ProtoName(p); got != want {
			t.Errorf("ProtoName(%d) = %q, want %q", p, got, want)
		}
	}
}

func TestStatsAdd(t *testing.T) {
	var s Stats
	s.Add(Flow{Original: Tuple{Proto: protoTCP}, TCPState: "ESTABLISHED", Assured: true})
	s.Add(Flow{Original: Tuple{Proto: protoTCP}, TCPState: "TIME_WAIT"})
	s.Add(Flow{Original: Tuple{Proto: protoUDP}, Assured: true})
	s.Add(Flow{Original: Tuple{Proto: protoICMP}})
	s.Add(Flow{Original: Tuple{Proto: protoICMPv6}})
	s.Add(Flow{Original: Tuple{Proto: protoGRE}})
	want := Stats{Active: 6, TCP: 2, UDP: 1, ICMP: 2, Other: 1, TCPEstablished: 1, Assured: 2}
	if s != want {
		t.Errorf("Stats = %+v, want %+v", s, want)
	}
}

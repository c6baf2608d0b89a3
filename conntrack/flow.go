// Package conntrack reads the kernel's connection-tracking table for the
// flows hanat NATs: the SNAT flows of the private subnets and the DNAT
// flows of configured port forwards. It is what `hanatctl flows` shows and
// what the active-connection counters count.
//
// The kernel table is read over ctnetlink (github.com/ti-mo/conntrack
// decodes each entry). A dump is streamed and filtered as it arrives, so a
// table of a million entries never sits in memory at once; only the flows
// that match the Filter are kept.
//
// Flow and Tuple hold netip addresses and make no IPv4 assumption, so the
// same types carry IPv6 (NAT64) flows and conntrack events later; Table
// dumps IPv4 today.
package conntrack

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"time"

	ct "github.com/ti-mo/conntrack"
)

// IP protocol numbers hanat names.
const (
	protoICMP    = 1
	protoTCP     = 6
	protoUDP     = 17
	protoDCCP    = 33
	protoGRE     = 47
	protoICMPv6  = 58
	protoSCTP    = 132
	protoUDPLite = 136
)

// Tuple is one direction of a flow as the kernel sees it.
type Tuple struct {
	Proto uint8 // IP protocol number
	// Src and Dst carry the ports for TCP, UDP, SCTP, DCCP and UDP-Lite;
	// the port is 0 for ICMP, whose flows are told apart by ICMPID.
	Src, Dst netip.AddrPort
	ICMPID   uint16 // ICMP/ICMPv6 echo identifier, 0 otherwise
}

// String prints "10.0.11.10:40000 -> 198.51.100.100:53", or for ICMP
// "10.0.11.10 -> 198.51.100.100 id 7".
func (t Tuple) String() string {
	if t.Proto == protoICMP || t.Proto == protoICMPv6 {
		return fmt.Sprintf("%s -> %s id %d", t.Src.Addr(), t.Dst.Addr(), t.ICMPID)
	}
	return t.Src.String() + " -> " + t.Dst.String()
}

// Flow is one conntrack entry. Original is the direction of the packet that
// created it (private host → internet for SNAT flows); Reply is the tuple
// the kernel expects replies to carry, after NAT.
type Flow struct {
	ID              uint32 // kernel conntrack id (stable for the entry's life)
	Original, Reply Tuple
	ProtoName       string // "tcp", "udp", "icmp", "icmpv6", … or the number
	TCPState        string // "ESTABLISHED", "TIME_WAIT", …; "" for non-TCP
	// From the conntrack status bits: ASSURED (seen traffic both ways, not
	// evicted early), SRC_NAT (source translated) and DST_NAT.
	Assured, SNAT, DNAT bool
	Timeout             time.Duration // time left before the kernel expires it
	Mark                uint32        // connmark
	// Counters are only filled when net.netfilter.nf_conntrack_acct=1 in
	// the flow's namespace; otherwise they are 0.
	OrigPackets, OrigBytes, ReplyPackets, ReplyBytes uint64
}

// NATAddr is the NAT's own outside address and port of the flow: the
// translated source (Reply.Dst) of an SNAT flow, or for a port forward
// (DNAT only) the address the client connected to (Original.Dst). It is the
// zero AddrPort for a flow that is not NATed.
func (f Flow) NATAddr() netip.AddrPort {
	switch {
	case f.SNAT:
		return f.Reply.Dst
	case f.DNAT:
		return f.Original.Dst
	}
	return netip.AddrPort{}
}

// FlowFrom converts an entry decoded by ti-mo/conntrack (from a dump or an
// event) into a Flow. It takes a pointer because the source is large; it
// does not keep it.
func FlowFrom(c *ct.Flow) Flow {
	f := Flow{
		ID:           c.ID,
		Original:     tupleFrom(c.TupleOrig),
		Reply:        tupleFrom(c.TupleReply),
		Assured:      c.Status.Assured(),
		SNAT:         c.Status.SrcNAT(),
		DNAT:         c.Status.DstNAT(),
		Timeout:      time.Duration(c.Timeout) * time.Second,
		Mark:         c.Mark,
		OrigPackets:  c.CountersOrig.Packets,
		OrigBytes:    c.CountersOrig.Bytes,
		ReplyPackets: c.CountersReply.Packets,
		ReplyBytes:   c.CountersReply.Bytes,
	}
	f.ProtoName = ProtoName(f.Original.Proto)
	if f.Original.Proto == protoTCP && c.ProtoInfo.TCP != nil {
		f.TCPState = TCPStateName(c.ProtoInfo.TCP.State)
	}
	return f
}

func tupleFrom(t ct.Tuple) Tuple {
	return Tuple{
		Proto:  t.Proto.Protocol,
		Src:    netip.AddrPortFrom(t.IP.SourceAddress, t.Proto.SourcePort),
		Dst:    netip.AddrPortFrom(t.IP.DestinationAddress, t.Proto.DestinationPort),
		ICMPID: t.Proto.ICMPID,
	}
}

// ProtoName names an IP protocol number the way conntrack(8) does, or
// returns the number.
func ProtoName(p uint8) string {
	switch p {
	case protoICMP:
		return "icmp"
	case protoTCP:
		return "tcp"
	case protoUDP:
		return "udp"
	case protoDCCP:
		return "dccp"
	case protoGRE:
		return "gre"
	case protoICMPv6:
		return "icmpv6"
	case protoSCTP:
		return "sctp"
	case protoUDPLite:
		return "udplite"
	}
	return strconv.Itoa(int(p))
}

// tcpStates is enum tcp_conntrack (include/uapi/linux/netfilter/nf_conntrack_tcp.h),
// named as conntrack(8) prints them.
var tcpStates = [...]string{
	"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT",
	"CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2",
}

// TCPStateName names a kernel TCP conntrack state; unknown values print as
// "STATE_<n>".
func TCPStateName(s uint8) string {
	if int(s) < len(tcpStates) {
		return tcpStates[s]
	}
	return "STATE_" + strconv.Itoa(int(s))
}

// Filter selects the flows hanat NATs. Empty lists match nothing: a Filter
// never widens itself to "every flow on the box".
type Filter struct {
	PrivateCIDRs []netip.Prefix // the VPC's private subnets behind the NAT
	NATAddrs     []netip.Addr   // the NAT's SNAT / port-forward addresses
}

// Match reports whether fl is one of hanat's flows:
//   - SNAT: original source in PrivateCIDRs and reply destination (the
//     translated source) in NATAddrs;
//   - DNAT (port forward): original destination in NATAddrs and reply
//     source (the translated destination) in PrivateCIDRs.
//
// It allocates nothing; the lists are short, so a linear scan is the cheap
// choice.
func (f Filter) Match(fl Flow) bool {
	if fl.SNAT && f.Private(fl.Original.Src.Addr()) && f.IsNATAddr(fl.Reply.Dst.Addr()) {
		return true
	}
	if fl.DNAT && f.IsNATAddr(fl.Original.Dst.Addr()) && f.Private(fl.Reply.Src.Addr()) {
		return true
	}
	return false
}

// Private reports whether a is in one of the private CIDRs.
func (f Filter) Private(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range f.PrivateCIDRs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// IsNATAddr reports whether a is one of the NAT addresses.
func (f Filter) IsNATAddr(a netip.Addr) bool {
	a = a.Unmap()
	for _, n := range f.NATAddrs {
		if n.Unmap() == a {
			return true
		}
	}
	return false
}

// Stats counts flows. Active is the total; TCP+UDP+ICMP+Other == Active.
type Stats struct {
	Active, TCP, UDP, ICMP, Other int
	TCPEstablished                int // TCP flows in ESTABLISHED
	Assured                       int
}

// Add counts one flow.
func (s *Stats) Add(f Flow) {
	s.Active++
	switch f.Original.Proto {
	case protoTCP:
		s.TCP++
		if f.TCPState == "ESTABLISHED" {
			s.TCPEstablished++
		}
	case protoUDP:
		s.UDP++
	case protoICMP, protoICMPv6:
		s.ICMP++
	default:
		s.Other++
	}
	if f.Assured {
		s.Assured++
	}
}

// Equal reports whether f and g name the same CIDRs and addresses in the
// same order.
func (f Filter) Equal(g Filter) bool {
	return slices.Equal(f.PrivateCIDRs, g.PrivateCIDRs) && slices.Equal(f.NATAddrs, g.NATAddrs)
}

// FlowQuery narrows a listing of flows (hanatctl flows): by protocol name
// ("tcp", "udp", …; empty: any), by the private host's address (invalid:
// any), and to the first Limit flows (0: all).
type FlowQuery struct {
	Protocol string
	Src      netip.Addr
	Limit    int
}

// Select returns the flows q selects, in the order of their kernel ids,
// and how many matched before the limit.
func (q FlowQuery) Select(flows []Flow) (selected []Flow, matched int) {
	sorted := slices.Clone(flows)
	slices.SortFunc(sorted, func(a, b Flow) int { return cmp.Compare(a.ID, b.ID) })
	selected = []Flow{}
	for _, f := range sorted {
		if q.Protocol != "" && q.Protocol != f.ProtoName {
			continue
		}
		if q.Src.IsValid() && f.Original.Src.Addr() != q.Src {
			continue
		}
		matched++
		if q.Limit <= 0 || len(selected) < q.Limit {
			selected = append(selected, f)
		}
	}
	return selected, matched
}

package datapath

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// TableName is the one nftables table hanat owns, in family inet.
const TableName = "hanat"

// Chain and set names inside table inet hanat.
const (
	SetPrivateV4    = "private_v4"
	ChainForward    = "forward"
	ChainPrerouting = "prerouting"
	ChainPostroute  = "postrouting"
	ChainInput      = "input" // only with NAT.HostInput
	// ChainConfig is a regular chain that nothing jumps to. Its single rule
	// (`return`) carries the hash of the table as a comment, the marker
	// Apply compares to decide whether anything must change.
	ChainConfig = "config"
)

// Rule names: the comment of each rule, and the keys of Slowpath.Counters.
// Port forwards are named by PortForward.Name ("dnat_tcp_8080").
const (
	// RuleResetNoFlow answers a TCP segment of no flow from a private host
	// with a TCP RST, as the NAT gateway does for a connection it timed
	// out: ct state invalid (with nf_conntrack_tcp_loose=0 a non-SYN
	// segment without a conntrack entry gets none), source in
	// private_v4, arriving on the interface its source is routed through,
	// ACK set, SYN and RST clear. See resetNoFlow.
	RuleResetNoFlow = "reset_no_flow"
	RuleDropInvalid = "drop_invalid"
	// RuleConnEstablished only counts (no verdict): the first packet of a
	// flow's reply direction (the flow was answered: the NAT gateway's
	// ConnectionEstablishedCount). It marks the flow with CtMarkAnswered
	// so each flow counts once.
	RuleConnEstablished = "conn_established"
	// RuleForwardEstablishedSource accepts established/related packets
	// from the private hosts (the NAT gateway's "source": BytesInFromSource,
	// BytesOutToDestination); RuleForwardEstablished accepts the others,
	// from the outside ("destination": BytesInFromDestination,
	// BytesOutToSource).
	RuleForwardEstablishedSource = "forward_established_source"
	RuleForwardEstablished       = "forward_established"
	RuleForwardNewPrivate        = "forward_new_private"
	// RuleOffloadFlow (NAT.Offload only) only counts (no verdict): an
	// established SNAT flow that reached Offload.AfterPackets gets
	// CtMarkOffload and its conntrack events widened; its counter is the
	// number of flows handed to the fast path.
	RuleOffloadFlow     = "offload_flow"
	RuleForwardDNAT     = "forward_dnat"
	RuleDropUnsolicited = "drop_unsolicited"
	// RuleSNAT is TCP and UDP, with the port range; RuleSNATOther is ICMP
	// and other protocols, without ports. With several SNAT addresses there
	// is one rule of each per address, all with the same name.
	RuleSNAT      = "snat"
	RuleSNATOther = "snat_other"
	// RuleSNATZone and RuleSNATZoneOther are the same for the sources of
	// a NAT.Zones entry, ahead of the others.
	RuleSNATZone      = "snat_zone"
	RuleSNATZoneOther = "snat_zone_other"

	// Chain input, with NAT.HostInput.
	RuleInputLoopback    = "input_loopback"
	RuleInputIPv6        = "input_ipv6"
	RuleInputInvalid     = "input_drop_invalid"
	RuleInputOwnSocket   = "input_own_socket"
	RuleInputEstablished = "input_established"
	RuleInputICMP        = "input_icmp"
	RuleInputPrivate     = "input_private"
	RuleInputDNAT        = "input_dnat"
	RuleInputTCP         = "input_tcp"
	RuleInputUDP         = "input_udp"
	RuleInputDrop        = "input_drop_unsolicited"
)

// CtMarkAnswered is the conntrack mark bit RuleConnEstablished sets on a
// flow's first forwarded reply packet. hanat uses no other bit of ct mark.
const CtMarkAnswered uint32 = 0x80000000

// CtMarkOffload is the conntrack mark bit RuleOffloadFlow sets on a flow
// the fast path should carry (NAT.Offload). hanat uses these two bits of
// ct mark and no other.
const CtMarkOffload uint32 = 0x40000000

// CtLabelOffload is the conntrack label bit RuleOffloadFlow sets along with
// CtMarkOffload: changing a label raises the IPCT_LABEL event, the one the
// flow's widened event mask lets through (nft cannot parse its own listing
// of `ct event set …,mark`, so the mark event cannot be the trigger).
// hanat uses no other label bit.
const CtLabelOffload = 127

// Conntrack event bits (enum ip_conntrack_events) for ct event set.
const (
	ctEventDestroy   uint32 = 1 << 2
	ctEventAssured   uint32 = 1 << 4
	ctEventProtoinfo uint32 = 1 << 5
	ctEventLabel     uint32 = 1 << 10
)

// markerPrefix starts the comment of the marker rule in ChainConfig.
const markerPrefix = "config "

// Table is the desired nftables table as data: what Apply sends to the
// kernel in one batch, in this order.
type Table struct {
	Table  *nftables.Table
	Sets   []Set // named and anonymous sets and maps, before the rules using them
	Chains []*nftables.Chain
	Rules  []*nftables.Rule // in chain order; each Rule.Chain points into Chains
	// Hash is "sha256:<hex>" over everything above except the marker rule;
	// the marker rule's comment is "config " + Hash.
	Hash string
}

// Set is a set or map with its elements.
type Set struct {
	Set      *nftables.Set
	Elements []nftables.SetElement
}

// Rule returns the first rule whose comment is name, or nil.
func (t Table) Rule(name string) *nftables.Rule {
	if rs := t.RulesNamed(name); len(rs) > 0 {
		return rs[0]
	}
	return nil
}

// RulesNamed returns the rules whose comment is name, in order.
func (t Table) RulesNamed(name string) []*nftables.Rule {
	var out []*nftables.Rule
	for _, r := range t.Rules {
		if c, _ := ruleComment(r); c == name {
			out = append(out, r)
		}
	}
	return out
}

// BuildTable validates n and returns the table that implements it. It is
// pure: no kernel, no root.
func BuildTable(n NAT) (Table, error) {
	n, err := n.normalize()
	if err != nil {
		return Table{}, fmt.Errorf("datapath.BuildTable: %w", err)
	}
	b := &builder{
		t: Table{Table: &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}},
	}
	tbl := b.t.Table

	private := b.addSet(&nftables.Set{
		Table:    tbl,
		Name:     SetPrivateV4,
		KeyType:  nftables.TypeIPAddr,
		Interval: true,
	}, ipv4IntervalElements(n.PrivateCIDRs))

	forward := b.addChain(&nftables.Chain{
		Name:     ChainForward,
		Table:    tbl,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookForward,
		Priority: nftables.ChainPriorityFilter,
		Policy:   policyRef(nftables.ChainPolicyDrop),
	})
	prerouting := b.addChain(&nftables.Chain{
		Name:     ChainPrerouting,
		Table:    tbl,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPrerouting,
		Priority: nftables.ChainPriorityNATDest,
		Policy:   policyRef(nftables.ChainPolicyAccept),
	})
	postrouting := b.addChain(&nftables.Chain{
		Name:     ChainPostroute,
		Table:    tbl,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPostrouting,
		Priority: nftables.ChainPriorityNATSource,
		Policy:   policyRef(nftables.ChainPolicyAccept),
	})

	// forward: filter hook forward priority filter; policy drop.
	// ct state invalid ip saddr @private_v4 tcp flags ack / syn,rst,ack fib saddr . iif oif exists counter reject with tcp reset comment "reset_no_flow"
	b.addRule(forward, RuleResetNoFlow, resetNoFlow(private))
	// ct state invalid counter drop comment "drop_invalid"
	b.addRule(forward, RuleDropInvalid, concat(
		ctStateAny(expr.CtStateBitINVALID),
		counterVerdict(expr.VerdictDrop),
	))
	// ct direction reply ct state established ct mark & 0x80000000 == 0 counter ct mark set ct mark | 0x80000000 comment "conn_established"
	b.addRule(forward, RuleConnEstablished, concat(
		ctDirectionIs(1),
		ctStateAny(expr.CtStateBitESTABLISHED),
		ctMarkBitClear(CtMarkAnswered),
		[]expr.Any{&expr.Counter{}},
		ctMarkBitSet(CtMarkAnswered),
	))
	if n.Offload != nil {
		// ct status snat ct state established ct mark & 0x40000000 == 0 [ct packets >= N] counter ct mark set ct mark | 0x40000000 ct label set 127 ct event set destroy,assured,protoinfo,label comment "offload_flow"
		b.addRule(forward, RuleOffloadFlow, concat(
			ctStatusAny(ctStatusSrcNAT),
			ctStateAny(expr.CtStateBitESTABLISHED),
			ctMarkBitClear(CtMarkOffload),
			ctPacketsAtLeast(n.Offload.AfterPackets),
			[]expr.Any{&expr.Counter{}},
			ctMarkBitSet(CtMarkOffload),
			ctLabelSet(CtLabelOffload),
			// assured: a UDP flow becomes ASSURED only after 2 s of
			// traffic both ways, possibly after it got the mark.
			ctEventSet(ctEventLabel|ctEventAssured|ctEventProtoinfo|ctEventDestroy),
		))
	}
	// ip saddr @private_v4 ct state established,related counter accept comment "forward_established_source"
	b.addRule(forward, RuleForwardEstablishedSource, concat(
		ipSaddrIn(private),
		ctStateAny(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED),
		counterVerdict(expr.VerdictAccept),
	))
	// ct state established,related counter accept comment "forward_established"
	b.addRule(forward, RuleForwardEstablished, concat(
		ctStateAny(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED),
		counterVerdict(expr.VerdictAccept),
	))
	// ip saddr @private_v4 ct state new [ct event set destroy] counter accept comment "forward_new_private"
	var newEvents []expr.Any
	if n.Offload != nil {
		newEvents = ctEventSet(ctEventDestroy)
	}
	b.addRule(forward, RuleForwardNewPrivate, concat(
		ipSaddrIn(private),
		ctStateAny(expr.CtStateBitNEW),
		newEvents,
		counterVerdict(expr.VerdictAccept),
	))
	// ct status dnat ct state new counter accept comment "forward_dnat"
	b.addRule(forward, RuleForwardDNAT, concat(
		ctStatusAny(ctStatusDstNAT),
		ctStateAny(expr.CtStateBitNEW),
		counterVerdict(expr.VerdictAccept),
	))
	// counter drop comment "drop_unsolicited"
	b.addRule(forward, RuleDropUnsolicited, counterVerdict(expr.VerdictDrop))

	// prerouting: nat hook prerouting priority dstnat; one dnat per forward.
	for _, pf := range n.PortForwards {
		b.addRule(prerouting, pf.Name(), b.dnatExprs(n.SNATAddrs, pf))
	}

	// postrouting: nat hook postrouting priority srcnat. With one SNAT
	// address:
	// ip saddr @private_v4 [oifname X] meta l4proto { tcp, udp } counter snat ip to A:PortMin-PortMax comment "snat"
	// ip saddr @private_v4 [oifname X] counter snat ip to A comment "snat_other"
	// With N addresses, each pair of rules exists once per address i and
	// also matches `jhash ip saddr mod N i`, so a private host always gets
	// the same address. (Not one rule with an anonymous jhash map: nft
	// lists such a map's keys byte-swapped and cannot reload the listing.)
	// A zone's sources come first:
	// ip saddr { zone sources } [oifname X] meta l4proto { tcp, udp } counter snat ip to Z:PortMin-PortMax comment "snat_zone"
	// ip saddr { zone sources } [oifname X] counter snat ip to Z comment "snat_zone_other"
	for _, z := range n.Zones {
		for _, rule := range []struct {
			name  string
			l4    []expr.Any
			ports [2]uint16
		}{{RuleSNATZone, b.l4protoTCPUDP(), [2]uint16{n.PortMin, n.PortMax}}, {RuleSNATZoneOther, nil, [2]uint16{}}} {
			src := b.anonSet(&nftables.Set{KeyType: nftables.TypeIPAddr, Interval: true}, ipv4IntervalElements(z.Sources))
			b.addRule(postrouting, rule.name, concat(
				ipSaddrIn(src),
				oifnameIs(n.OutsideIface),
				rule.l4,
				[]expr.Any{&expr.Counter{}},
				snatTo(z.Addr, rule.ports[0], rule.ports[1]),
			))
		}
	}
	for i, a := range n.SNATAddrs {
		b.addRule(postrouting, RuleSNAT, concat(
			ipSaddrIn(private),
			oifnameIs(n.OutsideIface),
			b.l4protoTCPUDP(),
			pickByHash(len(n.SNATAddrs), i),
			[]expr.Any{&expr.Counter{}},
			snatTo(a, n.PortMin, n.PortMax),
		))
	}
	for i, a := range n.SNATAddrs {
		b.addRule(postrouting, RuleSNATOther, concat(
			ipSaddrIn(private),
			oifnameIs(n.OutsideIface),
			pickByHash(len(n.SNATAddrs), i),
			[]expr.Any{&expr.Counter{}},
			snatTo(a, 0, 0),
		))
	}

	if n.HostInput != nil {
		b.hostInput(private, *n.HostInput)
	}

	if b.t.Hash, err = hashTable(b.t); err != nil {
		return Table{}, fmt.Errorf("datapath.BuildTable: %w", err)
	}

	// config: no hook, never jumped to.
	// return comment "config sha256:…"
	config := b.addChain(&nftables.Chain{Name: ChainConfig, Table: tbl})
	b.addRule(config, markerPrefix+b.t.Hash, []expr.Any{
		&expr.Verdict{Kind: expr.VerdictReturn},
	})
	return b.t, nil
}

// hostInput is chain input: filter hook input priority filter; policy drop.
func (b *builder) hostInput(private *nftables.Set, hi HostInput) {
	input := b.addChain(&nftables.Chain{
		Name:     ChainInput,
		Table:    b.t.Table,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookInput,
		Priority: nftables.ChainPriorityFilter,
		Policy:   policyRef(nftables.ChainPolicyDrop),
	})
	// iifname "lo" counter accept comment "input_loopback"
	b.addRule(input, RuleInputLoopback, concat(
		ifnameIs(expr.MetaKeyIIFNAME, "lo"),
		counterVerdict(expr.VerdictAccept),
	))
	// meta nfproto ipv6 counter accept comment "input_ipv6"
	b.addRule(input, RuleInputIPv6, concat(
		[]expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV6}},
		},
		counterVerdict(expr.VerdictAccept),
	))
	// With nf_conntrack_tcp_loose=0 a segment of the host's own TCP
	// connection whose conntrack entry expired (an SSH session idle for
	// longer than the established timeout) is invalid: such ACK segments
	// go on to the rules below, as they did while the kernel picked them
	// up as new flows, and the host's TCP stack, which knows its sockets,
	// answers them. Every other invalid packet is dropped, in two rules
	// of one name (Counters sums them):
	// meta l4proto != tcp ct state invalid counter drop comment "input_drop_invalid"
	// ct state invalid tcp flags != ack / syn,rst,ack counter drop comment "input_drop_invalid"
	b.addRule(input, RuleInputInvalid, concat(
		[]expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		},
		ctStateAny(expr.CtStateBitINVALID),
		counterVerdict(expr.VerdictDrop),
	))
	b.addRule(input, RuleInputInvalid, concat(
		ctStateAny(expr.CtStateBitINVALID),
		tcpFlagsMasked(expr.CmpOpNeq, tcpFlagACK, tcpFlagSYN|tcpFlagRST|tcpFlagACK),
		counterVerdict(expr.VerdictDrop),
	))
	// An invalid ACK segment of a connection a socket of this host holds
	// (the socket lookup finds one bound to a specific address: a
	// connected socket) is accepted: the host's connections opened before
	// conntrack tracked this namespace (hanatd's own EC2 and IMDS
	// connections, made before its first table) stay invalid for good
	// with tcp_loose=0, and the port rules would drop their replies from
	// public addresses. The host's TCP stack judges such segments itself.
	// ct state invalid socket wildcard 0 counter accept comment "input_own_socket"
	b.addRule(input, RuleInputOwnSocket, concat(
		ctStateAny(expr.CtStateBitINVALID),
		[]expr.Any{
			&expr.Socket{Key: expr.SocketKeyWildcard, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0}},
		},
		counterVerdict(expr.VerdictAccept),
	))
	// ct state established,related counter accept comment "input_established"
	b.addRule(input, RuleInputEstablished, concat(
		ctStateAny(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED),
		counterVerdict(expr.VerdictAccept),
	))
	// meta l4proto icmp counter accept comment "input_icmp"
	b.addRule(input, RuleInputICMP, concat(
		[]expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMP}},
		},
		counterVerdict(expr.VerdictAccept),
	))
	// ip saddr @private_v4 counter accept comment "input_private"
	b.addRule(input, RuleInputPrivate, concat(
		ipSaddrIn(private),
		counterVerdict(expr.VerdictAccept),
	))
	// ct status dnat counter accept comment "input_dnat"
	b.addRule(input, RuleInputDNAT, concat(
		ctStatusAny(ctStatusDstNAT),
		counterVerdict(expr.VerdictAccept),
	))
	// tcp dport { P… } counter accept comment "input_tcp"
	if len(hi.TCPPorts) > 0 {
		b.addRule(input, RuleInputTCP, concat(b.thDportIn(unix.IPPROTO_TCP, hi.TCPPorts), counterVerdict(expr.VerdictAccept)))
	}
	// udp dport { P… } counter accept comment "input_udp"
	if len(hi.UDPPorts) > 0 {
		b.addRule(input, RuleInputUDP, concat(b.thDportIn(unix.IPPROTO_UDP, hi.UDPPorts), counterVerdict(expr.VerdictAccept)))
	}
	// counter drop comment "input_drop_unsolicited"
	b.addRule(input, RuleInputDrop, counterVerdict(expr.VerdictDrop))
}

// TCP header flag bits (byte 13 of the header).
const (
	tcpFlagSYN byte = 0x02
	tcpFlagRST byte = 0x04
	tcpFlagACK byte = 0x10
)

// resetNoFlow is RuleResetNoFlow. It runs before RuleDropInvalid and
// matches only what the NAT gateway would reset:
//   - ct state invalid: no conntrack entry (with tcp_loose=0 the kernel
//     never starts one from a mid-stream segment). A segment of a live
//     flow is invalid too when it fails conntrack's window check; hanat
//     sets nf_conntrack_tcp_be_liberal=1 (DesiredSysctls) so that one
//     never is, and a live flow is never reset.
//   - ip saddr @private_v4 and fib saddr . iif oif exists: from a private
//     host, on the interface its address is routed through (a spoofed
//     private source arriving from elsewhere is dropped, not answered).
//   - ACK set, SYN and RST clear: never a RST for a RST, never for a SYN
//     (a SYN is a new flow, or invalid for a reason a RST would not fix);
//     every segment of an established connection carries ACK, and the RST
//     takes its sequence number from that ACK, so the client accepts it.
//
// The RST goes to the client from the server's address and port; the
// segment itself is dropped, so it never reaches the server.
func resetNoFlow(private *nftables.Set) []expr.Any {
	return concat(
		ctStateAny(expr.CtStateBitINVALID),
		ipSaddrIn(private),
		tcpFlagsMasked(expr.CmpOpEq, tcpFlagACK, tcpFlagSYN|tcpFlagRST|tcpFlagACK),
		[]expr.Any{
			&expr.Fib{Register: 1, FlagSADDR: true, FlagIIF: true, ResultOIF: true, FlagPRESENT: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(1)},
			&expr.Counter{},
			&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
		},
	)
}

// tcpFlagsMasked is: tcp flags [!=] want / mask (meta l4proto tcp first).
func tcpFlagsMasked(op expr.CmpOp, want, mask byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{mask}, Xor: []byte{0}},
		&expr.Cmp{Op: op, Register: 1, Data: []byte{want}},
	}
}

// thDportIn is: tcp dport P, or tcp dport { P1, P2 } (udp likewise).
func (b *builder) thDportIn(proto byte, ports []uint16) []expr.Any {
	if len(ports) == 1 {
		return thDportIs(proto, ports[0])
	}
	elems := make([]nftables.SetElement, 0, len(ports))
	for _, p := range ports {
		elems = append(elems, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(p)})
	}
	s := b.anonSet(&nftables.Set{KeyType: nftables.TypeInetService}, elems)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
	}
}

// builder accumulates a Table; set IDs are local to one table so BuildTable
// stays pure (nftables.Conn.AddSet only allocates IDs when ID is 0).
type builder struct {
	t         Table
	nextSetID uint32
}

func (b *builder) addSet(s *nftables.Set, elems []nftables.SetElement) *nftables.Set {
	b.nextSetID++
	s.ID = b.nextSetID
	b.t.Sets = append(b.t.Sets, Set{Set: s, Elements: elems})
	return s
}

// anonSet adds a constant anonymous set (or map) bound to the next rule.
func (b *builder) anonSet(s *nftables.Set, elems []nftables.SetElement) *nftables.Set {
	s.Table = b.t.Table
	s.Anonymous = true
	s.Constant = true
	s.Name = "__set%d"
	if s.IsMap {
		s.Name = "__map%d"
	}
	return b.addSet(s, elems)
}

func (b *builder) addChain(c *nftables.Chain) *nftables.Chain {
	b.t.Chains = append(b.t.Chains, c)
	return c
}

func (b *builder) addRule(c *nftables.Chain, name string, exprs []expr.Any) {
	b.t.Rules = append(b.t.Rules, &nftables.Rule{
		Table:    b.t.Table,
		Chain:    c,
		Exprs:    exprs,
		UserData: userdata.AppendString(nil, userdata.TypeComment, name),
	})
}

// dnatExprs is one port forward:
// ip daddr { SNAT addrs } <proto> dport P [ip saddr { sources }] counter dnat ip to To
func (b *builder) dnatExprs(snat []netip.Addr, pf PortForward) []expr.Any {
	proto := byte(unix.IPPROTO_TCP)
	if pf.Protocol == "udp" {
		proto = unix.IPPROTO_UDP
	}
	var daddr []expr.Any
	if len(snat) == 1 {
		daddr = ipDaddrIs(snat[0])
	} else {
		elems := make([]nftables.SetElement, 0, len(snat))
		for _, a := range sortedAddrs(snat) {
			elems = append(elems, nftables.SetElement{Key: a.AsSlice()})
		}
		daddr = ipDaddrIn(b.anonSet(&nftables.Set{KeyType: nftables.TypeIPAddr}, elems))
	}
	var saddr []expr.Any
	if len(pf.Sources) > 0 {
		saddr = ipSaddrIn(b.anonSet(&nftables.Set{KeyType: nftables.TypeIPAddr, Interval: true},
			ipv4IntervalElements(pf.Sources)))
	}
	return concat(
		daddr,
		thDportIs(proto, pf.Port),
		saddr,
		[]expr.Any{
			&expr.Counter{},
			&expr.Immediate{Register: 1, Data: pf.To.Addr().AsSlice()},
			&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(pf.To.Port())},
			&expr.NAT{
				Type:        expr.NATTypeDestNAT,
				Family:      unix.NFPROTO_IPV4,
				RegAddrMin:  1,
				RegProtoMin: 2,
				Specified:   true,
			},
		},
	)
}

// l4protoTCPUDP is: meta l4proto { tcp, udp }
func (b *builder) l4protoTCPUDP() []expr.Any {
	s := b.anonSet(&nftables.Set{KeyType: nftables.TypeInetProto}, []nftables.SetElement{
		{Key: []byte{unix.IPPROTO_TCP}},
		{Key: []byte{unix.IPPROTO_UDP}},
	})
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
	}
}

// snatHashSeed is the jhash seed of pickByHash. It must be explicit: without
// one the kernel draws a random seed per expression, so the N rules would
// disagree (a source could match none of them) and a table replacement
// would move sources to other SNAT addresses. "hana" in ASCII.
const snatHashSeed = 0x68616e61

// pickByHash is: jhash ip saddr mod n seed 0x68616e61 i (nothing when n is
// 1). It follows an ip saddr match, which already implies meta nfproto ipv4.
func pickByHash(n, i int) []expr.Any {
	if n <= 1 {
		return nil
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 2, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Hash{SourceRegister: 2, DestRegister: 1, Length: 4, Modulus: uint32(n), Seed: snatHashSeed, Type: expr.HashTypeJenkins},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(uint32(i))},
	}
}

// snatTo is: snat ip to A[:min-max]; portMin 0 means no port range.
func snatTo(a netip.Addr, portMin, portMax uint16) []expr.Any {
	out := []expr.Any{&expr.Immediate{Register: 1, Data: a.AsSlice()}}
	nat := &expr.NAT{
		Type:       expr.NATTypeSourceNAT,
		Family:     unix.NFPROTO_IPV4,
		RegAddrMin: 1,
	}
	if portMin != 0 {
		out = append(out,
			&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(portMin)},
			&expr.Immediate{Register: 3, Data: binaryutil.BigEndian.PutUint16(portMax)},
		)
		nat.RegProtoMin, nat.RegProtoMax, nat.Specified = 2, 3, true
	}
	return append(out, nat)
}

// IPS_DST_NAT from linux/netfilter/nf_conntrack_common.h: `ct status dnat`.
const ctStatusDstNAT uint32 = 1 << 5

// ctStatusSrcNAT is IPS_SRC_NAT: the flow's source was translated.
const ctStatusSrcNAT uint32 = 1 << 4

// ctPacketsAtLeast is: ct packets >= n (both directions; conntrack
// accounting). nft compares big-endian, the kernel loads host order: the
// byteorder expression swaps it, as nft itself does. n == 0 matches all.
func ctPacketsAtLeast(n uint64) []expr.Any {
	if n == 0 {
		return nil
	}
	var be [8]byte
	binary.BigEndian.PutUint64(be[:], n)
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyPKTS}, // no direction: original + reply
		&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 8, Size: 8},
		&expr.Cmp{Op: expr.CmpOpGte, Register: 1, Data: be[:]},
	}
}

// ctLabelSet is: ct label set <bit> (the kernel ORs the bit into the
// flow's 128-bit label bitmap, laid out as little-endian longs).
func ctLabelSet(bit int) []expr.Any {
	data := make([]byte, 16)
	data[bit/8] = 1 << (bit % 8)
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: data},
		&expr.Ct{Register: 1, SourceRegister: true, Key: expr.CtKeyLABELS},
	}
}

// ctEventSet is: ct event set <bits>
func ctEventSet(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: binaryutil.NativeEndian.PutUint32(bits)},
		&expr.Ct{Register: 1, SourceRegister: true, Key: expr.CtKeyEVENTMASK},
	}
}

// ipv4Only is the dependency nft adds before an ip header match in an inet
// table: meta nfproto ipv4
func ipv4Only() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV4}},
	}
}

// ipSaddrIn is: ip saddr @set
func ipSaddrIn(s *nftables.Set) []expr.Any {
	return append(ipv4Only(),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
	)
}

// ipDaddrIn is: ip daddr @set
func ipDaddrIn(s *nftables.Set) []expr.Any {
	return append(ipv4Only(),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID},
	)
}

// ipDaddrIs is: ip daddr A
func ipDaddrIs(a netip.Addr) []expr.Any {
	return append(ipv4Only(),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
	)
}

// thDportIs is: tcp dport P (or udp dport P)
func thDportIs(proto byte, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

// oifnameIs is: oifname "X" (nothing when X is empty)
func oifnameIs(name string) []expr.Any {
	return ifnameIs(expr.MetaKeyOIFNAME, name)
}

// ifnameIs is: iifname "X" or oifname "X" (nothing when X is empty)
func ifnameIs(key expr.MetaKey, name string) []expr.Any {
	if name == "" {
		return nil
	}
	data := make([]byte, unix.IFNAMSIZ)
	copy(data, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: data},
	}
}

// ctStateAny is: ct state s1,s2 (any of the bits)
func ctStateAny(bits uint32) []expr.Any {
	return ctBitsAny(expr.CtKeySTATE, bits)
}

// ctDirectionIs is: ct direction original (0) / reply (1)
func ctDirectionIs(dir byte) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyDIRECTION},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{dir}},
	}
}

// ctMarkBitClear is: ct mark & bit == 0
func ctMarkBitClear(bit uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
		&expr.Bitwise{
			SourceRegister: 1,
			DestRegister:   1,
			Len:            4,
			Mask:           binaryutil.NativeEndian.PutUint32(bit),
			Xor:            binaryutil.NativeEndian.PutUint32(0),
		},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

// ctMarkBitSet is: ct mark set ct mark | bit (nft encodes "or" as
// (mark & ^bit) ^ bit).
func ctMarkBitSet(bit uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeyMARK},
		&expr.Bitwise{
			SourceRegister: 1,
			DestRegister:   1,
			Len:            4,
			Mask:           binaryutil.NativeEndian.PutUint32(^bit),
			Xor:            binaryutil.NativeEndian.PutUint32(bit),
		},
		&expr.Ct{Register: 1, SourceRegister: true, Key: expr.CtKeyMARK},
	}
}

// ctStatusAny is: ct status s
func ctStatusAny(bits uint32) []expr.Any {
	return ctBitsAny(expr.CtKeySTATUS, bits)
}

func ctBitsAny(key expr.CtKey, bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: key},
		&expr.Bitwise{
			SourceRegister: 1,
			DestRegister:   1,
			Len:            4,
			Mask:           binaryutil.NativeEndian.PutUint32(bits),
			Xor:            binaryutil.NativeEndian.PutUint32(0),
		},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

// counterVerdict is: counter accept / counter drop
func counterVerdict(kind expr.VerdictKind) []expr.Any {
	return []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: kind}}
}

func concat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func policyRef(p nftables.ChainPolicy) *nftables.ChainPolicy { return &p }

func sortedAddrs(addrs []netip.Addr) []netip.Addr {
	out := slices.Clone(addrs)
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// ipv4IntervalElements encodes IPv4 prefixes as an interval set the way nft
// does: sorted, prefixes contained in another dropped, each range as a start
// element and an interval-end element one past its last address, and a
// leading interval end at 0.0.0.0 when the first range does not start there.
func ipv4IntervalElements(prefixes []netip.Prefix) []nftables.SetElement {
	ps := slices.Clone(prefixes)
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Bits(), b.Bits()) // shorter (wider) first
	})
	var kept []netip.Prefix
	for _, p := range ps {
		if len(kept) > 0 && kept[len(kept)-1].Overlaps(p) {
			continue // sorted by start, wider first: p is inside the previous prefix
		}
		kept = append(kept, p)
	}
	var elems []nftables.SetElement
	if len(kept) > 0 && kept[0].Addr() != netip.IPv4Unspecified() {
		elems = append(elems, nftables.SetElement{Key: netip.IPv4Unspecified().AsSlice(), IntervalEnd: true})
	}
	for _, p := range kept {
		elems = append(elems, nftables.SetElement{Key: p.Addr().AsSlice()})
		if end := lastAddr(p).Next(); end.IsValid() {
			elems = append(elems, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
		}
	}
	return elems
}

// lastAddr is the highest address in the (masked) IPv4 prefix p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	if p.Bits() == 0 {
		host = ^uint32(0)
	}
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// ruleComment extracts the nft comment of a rule.
func ruleComment(r *nftables.Rule) (string, bool) {
	return userdata.GetString(r.UserData, userdata.TypeComment)
}

// hashTable digests the table's content in a canonical text form: the same
// NAT always gives the same hash, and any change to sets, chains or rule
// expressions (including a new hanat version building different rules)
// gives another.
func hashTable(t Table) (string, error) {
	h := sha256.New()
	fam := byte(t.Table.Family)
	fmt.Fprintf(h, "hanat table v1 family=%d name=%s\n", fam, t.Table.Name)
	for _, s := range t.Sets {
		x := s.Set
		fmt.Fprintf(h, "set %s id=%d anon=%t const=%t interval=%t map=%t key=%s/%d data=%s/%d\n",
			x.Name, x.ID, x.Anonymous, x.Constant, x.Interval, x.IsMap,
			x.KeyType.Name, x.KeyType.Bytes, x.DataType.Name, x.DataType.Bytes)
		for _, e := range s.Elements {
			fmt.Fprintf(h, " elem %x %x end=%t\n", e.Key, e.Val, e.IntervalEnd)
		}
	}
	for _, c := range t.Chains {
		fmt.Fprintf(h, "chain %s type=%s", c.Name, c.Type)
		if c.Hooknum != nil {
			fmt.Fprintf(h, " hook=%d", *c.Hooknum)
		}
		if c.Priority != nil {
			fmt.Fprintf(h, " prio=%d", *c.Priority)
		}
		if c.Policy != nil {
			fmt.Fprintf(h, " policy=%d", *c.Policy)
		}
		fmt.Fprintln(h)
	}
	for _, r := range t.Rules {
		fmt.Fprintf(h, "rule %s udata=%x\n", r.Chain.Name, r.UserData)
		for i, e := range r.Exprs {
			b, err := expr.Marshal(fam, e)
			if err != nil {
				return "", fmt.Errorf("marshal expression %d (%T) of rule %x in chain %s: %w", i, e, r.UserData, r.Chain.Name, err)
			}
			fmt.Fprintf(h, " expr %x\n", b)
		}
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

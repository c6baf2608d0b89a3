package vpcsim

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Rules are data: pure functions below build them, and applyTable queues a
// whole table (create, delete, create again, fill) so that one Flush
// replaces it atomically. Every state change recomputes the table from the
// lab's whole state.

// checkedPort is one ENI whose source/dest check is enabled: its router-side
// bridge port and every private IP it owns.
type checkedPort struct {
	Port string
	IPs  []netip.Addr
}

// partitionRule drops traffic between the address sets A and B (both
// directions), optionally only one protocol ("tcp", "udp", "icmp"; "" = all)
// and one port (0 = all; matched as source or destination port).
type partitionRule struct {
	A, B  []netip.Addr
	Proto string
	Port  uint16
}

// igwMapping is one 1:1 NAT entry of the internet gateway.
type igwMapping struct {
	Public, Private netip.Addr
}

func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

func ip4(a netip.Addr) []byte { b := a.As4(); return b[:] }

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func matchIif(name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(name)},
	}
}

func matchOif(name string) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(name)},
	}
}

func matchEtherType(t uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(t)},
	}
}

// matchIPField matches the IPv4 source (offset 12) or destination (16).
func matchIPField(offset uint32, a netip.Addr) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ip4(a)},
	}
}

func matchSaddr(a netip.Addr) []expr.Any { return matchIPField(12, a) }
func matchDaddr(a netip.Addr) []expr.Any { return matchIPField(16, a) }

func matchL4Proto(p byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{p}},
	}
}

// matchTHPort matches the transport source (offset 0) or destination (2) port.
func matchTHPort(offset uint32, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(port)},
	}
}

func verdict(k expr.VerdictKind) expr.Any { return &expr.Verdict{Kind: k} }

func jump(chain string) expr.Any { return &expr.Verdict{Kind: expr.VerdictJump, Chain: chain} }

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// protoNumber maps a partition protocol name to its IP protocol number.
func protoNumber(p string) (byte, error) {
	switch p {
	case "tcp":
		return unix.IPPROTO_TCP, nil
	case "udp":
		return unix.IPPROTO_UDP, nil
	case "icmp":
		return unix.IPPROTO_ICMP, nil
	}
	return 0, fmt.Errorf("unknown protocol %q (want tcp, udp, icmp or empty for all)", p)
}

// partitionExprs returns the drop rules of one partition, for both
// directions and every address pair:
//
//	meta protocol ip ip saddr A ip daddr B [meta l4proto P [th dport|sport N]] drop
func partitionExprs(p partitionRule) ([][]expr.Any, error) {
	type l4 struct {
		proto   byte
		hasPort bool
		offset  uint32
	}
	var variants []l4
	switch {
	case p.Proto == "" && p.Port == 0:
		variants = []l4{{}}
	case p.Proto == "" && p.Port != 0:
		for _, pr := range []byte{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
			variants = append(variants, l4{pr, true, 0}, l4{pr, true, 2})
		}
	default:
		pr, err := protoNumber(p.Proto)
		if err != nil {
			return nil, err
		}
		if p.Port == 0 {
			variants = []l4{{proto: pr}}
		} else {
			if pr == unix.IPPROTO_ICMP {
				return nil, fmt.Errorf("partition: protocol icmp has no ports")
			}
			variants = []l4{{pr, true, 0}, {pr, true, 2}}
		}
	}
	var rules [][]expr.Any
	add := func(src, dst netip.Addr) {
		for _, v := range variants {
			r := cat(matchEtherType(unix.ETH_P_IP), matchSaddr(src), matchDaddr(dst))
			if v.proto != 0 {
				r = append(r, matchL4Proto(v.proto)...)
			}
			if v.hasPort {
				r = append(r, matchTHPort(v.offset, p.Port)...)
			}
			rules = append(rules, append(r, verdict(expr.VerdictDrop)))
		}
	}
	for _, a := range p.A {
		for _, b := range p.B {
			add(a, b)
			add(b, a)
		}
	}
	return rules, nil
}

// portCheckExprs returns the rules of a per-port check chain: ARP passes,
// IPv4 whose address at offset (12 source, 16 destination) is one of ips
// passes, everything else (other addresses, IPv6, other ethertypes) drops.
func portCheckExprs(offset uint32, ips []netip.Addr) [][]expr.Any {
	rules := [][]expr.Any{append(matchEtherType(unix.ETH_P_ARP), verdict(expr.VerdictAccept))}
	for _, a := range ips {
		rules = append(rules, cat(matchEtherType(unix.ETH_P_IP), matchIPField(offset, a), []expr.Any{verdict(expr.VerdictAccept)}))
	}
	return append(rules, []expr.Any{verdict(expr.VerdictDrop)})
}

// queueFreshTable queues the atomic replacement of table t: create (no-op
// if present), delete, create. Chains and rules queued afterwards fill the
// new, empty table; one Flush applies all of it.
func queueFreshTable(c *nftables.Conn, t *nftables.Table) {
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
}

// queueRouterFilter queues the router's bridge table: partitions and the
// per-ENI source/dest check.
//
//	table bridge <name> {
//	  chain pre  { type filter hook prerouting priority -200; <partitions>; iifname <port> jump src_<port> }
//	  chain post { type filter hook postrouting priority -200; oifname <port> jump dst_<port> }
//	  chain src_<port> { arp accept; ip saddr <ip> accept …; drop }
//	  chain dst_<port> { arp accept; ip daddr <ip> accept …; drop }
//	}
func queueRouterFilter(c *nftables.Conn, name string, checked []checkedPort, parts []partitionRule) error {
	t := &nftables.Table{Name: name, Family: nftables.TableFamilyBridge}
	queueFreshTable(c, t)
	prio := nftables.ChainPriorityRef(-200)
	accept := nftables.ChainPolicyAccept
	pre := c.AddChain(&nftables.Chain{Name: "pre", Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookPrerouting, Priority: prio, Policy: &accept})
	post := c.AddChain(&nftables.Chain{Name: "post", Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookPostrouting, Priority: prio, Policy: &accept})
	for _, p := range parts {
		rules, err := partitionExprs(p)
		if err != nil {
			return err
		}
		for _, r := range rules {
			c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: r})
		}
	}
	for _, cp := range checked {
		src := c.AddChain(&nftables.Chain{Name: "src_" + cp.Port, Table: t})
		dst := c.AddChain(&nftables.Chain{Name: "dst_" + cp.Port, Table: t})
		for _, r := range portCheckExprs(12, cp.IPs) {
			c.AddRule(&nftables.Rule{Table: t, Chain: src, Exprs: r})
		}
		for _, r := range portCheckExprs(16, cp.IPs) {
			c.AddRule(&nftables.Rule{Table: t, Chain: dst, Exprs: r})
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: append(matchIif(cp.Port), jump(src.Name))})
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: append(matchOif(cp.Port), jump(dst.Name))})
	}
	return nil
}

func ctBitSet(key expr.CtKey, mask uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: key},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(mask), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

func natTo(kind expr.NATType, a netip.Addr) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: ip4(a)},
		&expr.NAT{Type: kind, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegAddrMax: 1},
	}
}

// ipsDstNAT is IPS_DST_NAT of the conntrack status bits.
const ipsDstNAT = 1 << 5

// queueIGWTable queues the internet gateway's table: 1:1 NAT for every
// mapping, unmapped VPC sources dropped, and from the internet only replies
// and traffic to a mapped public IP let in.
//
//	table ip <name> {
//	  chain pre  { type nat hook prerouting priority dstnat; ip daddr <pub> dnat to <priv> … }
//	  chain post { type nat hook postrouting priority srcnat; ip saddr <priv> snat to <pub> … }
//	  chain fwd  { type filter hook forward priority filter; policy drop;
//	    ct state established,related accept
//	    iifname <vpc> ip saddr <priv> accept …
//	    iifname <vpc> drop
//	    ct status dnat accept }
//	}
func queueIGWTable(c *nftables.Conn, name, vpcLink string, maps []igwMapping) {
	t := &nftables.Table{Name: name, Family: nftables.TableFamilyIPv4}
	queueFreshTable(c, t)
	accept, drop := nftables.ChainPolicyAccept, nftables.ChainPolicyDrop
	pre := c.AddChain(&nftables.Chain{Name: "pre", Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept})
	post := c.AddChain(&nftables.Chain{Name: "post", Table: t, Type: nftables.ChainTypeNAT, Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
	fwd := c.AddChain(&nftables.Chain{Name: "fwd", Table: t, Type: nftables.ChainTypeFilter, Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: append(ctBitSet(expr.CtKeySTATE, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept))})
	for _, m := range maps {
		c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: cat(matchDaddr(m.Public), natTo(expr.NATTypeDestNAT, m.Private))})
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: cat(matchSaddr(m.Private), natTo(expr.NATTypeSourceNAT, m.Public))})
		c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: cat(matchIif(vpcLink), matchSaddr(m.Private), []expr.Any{verdict(expr.VerdictAccept)})})
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: append(matchIif(vpcLink), verdict(expr.VerdictDrop))})
	c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: append(ctBitSet(expr.CtKeySTATUS, ipsDstNAT), verdict(expr.VerdictAccept))})
}

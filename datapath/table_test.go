package datapath

import (
	"bytes"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

func ruleNames(t Table, chain string) []string {
	var out []string
	for _, r := range t.Rules {
		if r.Chain.Name != chain {
			continue
		}
		c, _ := ruleComment(r)
		out = append(out, c)
	}
	return out
}

func findSet(t Table, name string) *Set {
	for i := range t.Sets {
		if t.Sets[i].Set.Name == name {
			return &t.Sets[i]
		}
	}
	return nil
}

// exprOf returns the first expression of type E in r.
func exprOf[E expr.Any](r *nftables.Rule) (E, bool) {
	for _, e := range r.Exprs {
		if x, ok := e.(E); ok {
			return x, true
		}
	}
	var zero E
	return zero, false
}

func TestBuildTableRepresentative(t *testing.T) {
	tbl, err := BuildTable(representativeNAT())
	if err != nil {
		t.Fatalf("BuildTable: %v", err)
	}
	if tbl.Table.Name != TableName || tbl.Table.Family != nftables.TableFamilyINet {
		t.Errorf("table = %s family %d, want inet %s", tbl.Table.Name, tbl.Table.Family, TableName)
	}

	// Chains: hooks, priorities, policies.
	type chainWant struct {
		typ    nftables.ChainType
		hook   *nftables.ChainHook
		prio   *nftables.ChainPriority
		policy nftables.ChainPolicy
	}
	wantChains := map[string]chainWant{
		ChainForward:    {nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter, nftables.ChainPolicyDrop},
		ChainPrerouting: {nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest, nftables.ChainPolicyAccept},
		ChainPostroute:  {nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource, nftables.ChainPolicyAccept},
	}
	var gotChains []string
	for _, c := range tbl.Chains {
		gotChains = append(gotChains, c.Name)
		w, ok := wantChains[c.Name]
		if !ok {
			if c.Name != ChainConfig || c.Hooknum != nil {
				t.Errorf("unexpected chain %q (hook %v)", c.Name, c.Hooknum)
			}
			continue
		}
		if c.Type != w.typ || *c.Hooknum != *w.hook || *c.Priority != *w.prio || *c.Policy != w.policy {
			t.Errorf("chain %s = type %s hook %d prio %d policy %d, want %s %d %d %d",
				c.Name, c.Type, *c.Hooknum, *c.Priority, *c.Policy, w.typ, *w.hook, *w.prio, w.policy)
		}
	}
	if want := []string{ChainForward, ChainPrerouting, ChainPostroute, ChainConfig}; !slices.Equal(gotChains, want) {
		t.Errorf("chains = %v, want %v", gotChains, want)
	}

	// Rule names, in order.
	for chain, want := range map[string][]string{
		ChainForward:    {RuleResetNoFlow, RuleDropInvalid, RuleConnEstablished, RuleForwardEstablishedSource, RuleForwardEstablished, RuleForwardNewPrivate, RuleForwardDNAT, RuleDropUnsolicited},
		ChainPrerouting: {"dnat_tcp_8080", "dnat_udp_5353"},
		ChainPostroute:  {RuleSNAT, RuleSNAT, RuleSNATOther, RuleSNATOther},
		ChainConfig:     {markerPrefix + tbl.Hash},
	} {
		if got := ruleNames(tbl, chain); !slices.Equal(got, want) {
			t.Errorf("chain %s rules = %q, want %q", chain, got, want)
		}
	}
	if !strings.HasPrefix(tbl.Hash, "sha256:") || len(tbl.Hash) != len("sha256:")+64 {
		t.Errorf("Hash = %q, want sha256:<64 hex>", tbl.Hash)
	}

	// Every rule except the marker counts.
	for _, r := range tbl.Rules {
		name, _ := ruleComment(r)
		if _, ok := exprOf[*expr.Counter](r); !ok && r.Chain.Name != ChainConfig {
			t.Errorf("rule %s has no counter", name)
		}
	}

	// Verdicts of the forward chain.
	wantVerdict := map[string]expr.VerdictKind{
		RuleDropInvalid:              expr.VerdictDrop,
		RuleForwardEstablishedSource: expr.VerdictAccept,
		RuleForwardEstablished:       expr.VerdictAccept,
		RuleForwardNewPrivate:        expr.VerdictAccept,
		RuleForwardDNAT:              expr.VerdictAccept,
		RuleDropUnsolicited:          expr.VerdictDrop,
	}
	for name, want := range wantVerdict {
		v, ok := exprOf[*expr.Verdict](tbl.Rule(name))
		if !ok || v.Kind != want {
			t.Errorf("rule %s verdict = %v, want %v", name, v, want)
		}
	}
	// conn_established only counts and marks: no verdict, so the packet
	// goes on to the accept rules.
	if v, ok := exprOf[*expr.Verdict](tbl.Rule(RuleConnEstablished)); ok {
		t.Errorf("rule %s has verdict %v, want none (it only counts)", RuleConnEstablished, v)
	}
	// drop_unsolicited is exactly "counter drop": it matches everything.
	if got := tbl.Rule(RuleDropUnsolicited).Exprs; len(got) != 2 {
		t.Errorf("drop_unsolicited has %d expressions, want counter+drop", len(got))
	}
	// ct state masks.
	for name, bits := range map[string]uint32{
		RuleDropInvalid:              expr.CtStateBitINVALID,
		RuleForwardEstablishedSource: expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED,
		RuleForwardEstablished:       expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED,
	} {
		bw, ok := exprOf[*expr.Bitwise](tbl.Rule(name))
		if !ok || !bytes.Equal(bw.Mask, binaryutil.NativeEndian.PutUint32(bits)) {
			t.Errorf("rule %s ct state mask = %v, want %#x", name, bw, bits)
		}
	}
	// forward_new_private looks up ip saddr in private_v4.
	if lk, ok := exprOf[*expr.Lookup](tbl.Rule(RuleForwardNewPrivate)); !ok || lk.SetName != SetPrivateV4 {
		t.Errorf("forward_new_private lookup = %+v, want set %s", lk, SetPrivateV4)
	}

	// private_v4: interval set with nft's element encoding.
	ps := findSet(tbl, SetPrivateV4)
	if ps == nil || !ps.Set.Interval || ps.Set.KeyType != nftables.TypeIPAddr {
		t.Fatalf("set private_v4 = %+v, want ipv4_addr interval set", ps)
	}
	wantElems := []nftables.SetElement{
		{Key: []byte{0, 0, 0, 0}, IntervalEnd: true},
		{Key: []byte{10, 0, 11, 0}},
		{Key: []byte{10, 0, 12, 0}, IntervalEnd: true},
		{Key: []byte{10, 0, 12, 0}},
		{Key: []byte{10, 0, 13, 0}, IntervalEnd: true},
	}
	if !reflect.DeepEqual(ps.Elements, wantElems) {
		t.Errorf("private_v4 elements = %v, want %v", ps.Elements, wantElems)
	}

	// snat: one rule per SNAT address, picked by jhash ip saddr mod 2,
	// oifname eth0, port range 1024-65535.
	snats := tbl.RulesNamed(RuleSNAT)
	if len(snats) != 2 {
		t.Fatalf("%d snat rules, want one per SNAT address", len(snats))
	}
	for i, snat := range snats {
		cmpIface, cmpHash := false, false
		var hashReg uint32
		for _, e := range snat.Exprs {
			switch x := e.(type) {
			case *expr.Hash:
				if x.Modulus != 2 || x.Type != expr.HashTypeJenkins || x.Seed == 0 {
					t.Errorf("snat[%d] hash = %+v, want jhash mod 2 with an explicit seed", i, x)
				}
				hashReg = x.DestRegister
			case *expr.Cmp:
				if bytes.HasPrefix(x.Data, []byte("eth0\x00")) && len(x.Data) == unix.IFNAMSIZ {
					cmpIface = true
				}
				if hashReg != 0 && x.Register == hashReg && bytes.Equal(x.Data, binaryutil.NativeEndian.PutUint32(uint32(i))) {
					cmpHash = true
				}
			}
		}
		if !cmpIface || !cmpHash {
			t.Errorf("snat[%d]: oifname eth0 %t, jhash == %d %t; want both", i, cmpIface, i, cmpHash)
		}
		nat, ok := exprOf[*expr.NAT](snat)
		if !ok || nat.Type != expr.NATTypeSourceNAT || nat.Family != unix.NFPROTO_IPV4 || nat.RegProtoMin == 0 || nat.RegProtoMax == 0 {
			t.Fatalf("snat[%d] nat = %+v, want snat ip with port range", i, nat)
		}
		var addr []byte
		var ports [][]byte
		for _, e := range snat.Exprs {
			if im, ok := e.(*expr.Immediate); ok {
				switch im.Register {
				case nat.RegAddrMin:
					addr = im.Data
				case nat.RegProtoMin, nat.RegProtoMax:
					ports = append(ports, im.Data)
				}
			}
		}
		if want := representativeNAT().SNATAddrs[i].AsSlice(); !bytes.Equal(addr, want) {
			t.Errorf("snat[%d] to %v, want %v", i, addr, want)
		}
		if want := [][]byte{{0x04, 0x00}, {0xff, 0xff}}; !reflect.DeepEqual(ports, want) {
			t.Errorf("snat[%d] ports = %x, want 1024-65535 %x", i, ports, want)
		}
	}
	// snat_other has no port range (ICMP and others).
	if nat, _ := exprOf[*expr.NAT](tbl.Rule(RuleSNATOther)); nat == nil || nat.RegProtoMin != 0 {
		t.Errorf("snat_other nat = %+v, want no port range", nat)
	}

	// dnat_tcp_8080: tcp dport 8080, dnat to 10.0.11.9:80, source set.
	dn := tbl.Rule("dnat_tcp_8080")
	var sawPort, sawTo, sawToPort bool
	for _, e := range dn.Exprs {
		switch x := e.(type) {
		case *expr.Cmp:
			if bytes.Equal(x.Data, []byte{0x1f, 0x90}) {
				sawPort = true
			}
		case *expr.Immediate:
			if bytes.Equal(x.Data, []byte{10, 0, 11, 9}) {
				sawTo = true
			}
			if bytes.Equal(x.Data, []byte{0, 80}) {
				sawToPort = true
			}
		}
	}
	if !sawPort || !sawTo || !sawToPort {
		t.Errorf("dnat_tcp_8080: dport 8080 %t, to 10.0.11.9 %t, port 80 %t; want all", sawPort, sawTo, sawToPort)
	}
	if nat, _ := exprOf[*expr.NAT](dn); nat == nil || nat.Type != expr.NATTypeDestNAT {
		t.Errorf("dnat_tcp_8080 nat = %+v, want dnat", nat)
	}
	lookups := 0
	for _, e := range dn.Exprs {
		if _, ok := e.(*expr.Lookup); ok {
			lookups++
		}
	}
	if lookups != 2 {
		t.Errorf("dnat_tcp_8080 has %d set lookups, want 2 (daddr set, saddr set)", lookups)
	}

	// Every lookup refers to a set of the table by name and ID.
	for _, r := range tbl.Rules {
		for _, e := range r.Exprs {
			lk, ok := e.(*expr.Lookup)
			if !ok {
				continue
			}
			found := false
			for _, s := range tbl.Sets {
				if s.Set.ID == lk.SetID && s.Set.Name == lk.SetName {
					found = true
				}
			}
			if !found {
				name, _ := ruleComment(r)
				t.Errorf("rule %s looks up unknown set %s/%d", name, lk.SetName, lk.SetID)
			}
		}
	}
}

func TestBuildTableSingleAddressDefaults(t *testing.T) {
	tbl, err := BuildTable(NAT{
		PrivateCIDRs: []netip.Prefix{mustPrefix("10.0.0.0/16"), mustPrefix("10.0.11.0/24")},
		SNATAddrs:    []netip.Addr{mustAddr("10.0.1.5")},
	})
	if err != nil {
		t.Fatalf("BuildTable: %v", err)
	}
	if got := ruleNames(tbl, ChainPostroute); !slices.Equal(got, []string{RuleSNAT, RuleSNATOther}) {
		t.Errorf("postrouting rules = %q, want snat, snat_other", got)
	}
	if got := ruleNames(tbl, ChainPrerouting); len(got) != 0 {
		t.Errorf("prerouting rules = %q, want none", got)
	}
	snat := tbl.Rule(RuleSNAT)
	if _, ok := exprOf[*expr.Hash](snat); ok {
		t.Errorf("single SNAT address uses jhash")
	}
	for _, e := range snat.Exprs {
		if m, ok := e.(*expr.Meta); ok && m.Key == expr.MetaKeyOIFNAME {
			t.Errorf("snat matches oifname although OutsideIface is empty")
		}
	}
	// 10.0.11.0/24 lies inside 10.0.0.0/16: one range.
	want := []nftables.SetElement{
		{Key: []byte{0, 0, 0, 0}, IntervalEnd: true},
		{Key: []byte{10, 0, 0, 0}},
		{Key: []byte{10, 1, 0, 0}, IntervalEnd: true},
	}
	if got := findSet(tbl, SetPrivateV4).Elements; !reflect.DeepEqual(got, want) {
		t.Errorf("private_v4 elements = %v, want %v", got, want)
	}
}

func TestBuildTableHash(t *testing.T) {
	a, err := BuildTable(representativeNAT())
	if err != nil {
		t.Fatal(err)
	}
	b, err := BuildTable(representativeNAT())
	if err != nil {
		t.Fatal(err)
	}
	if a.Hash != b.Hash {
		t.Errorf("same NAT, different hashes %s %s", a.Hash, b.Hash)
	}
	changes := map[string]func(*NAT){
		"port range":   func(n *NAT) { n.PortMin, n.PortMax = 2048, 60000 },
		"iface":        func(n *NAT) { n.OutsideIface = "ens5" },
		"cidr":         func(n *NAT) { n.PrivateCIDRs = n.PrivateCIDRs[:1] },
		"snat order":   func(n *NAT) { slices.Reverse(n.SNATAddrs) },
		"forward port": func(n *NAT) { n.PortForwards[1].To = netip.MustParseAddrPort("10.0.11.10:53") },
		"no forwards":  func(n *NAT) { n.PortForwards = nil },
	}
	for name, change := range changes {
		n := representativeNAT()
		change(&n)
		c, err := BuildTable(n)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c.Hash == a.Hash {
			t.Errorf("%s: hash unchanged", name)
		}
	}
}

func TestBuildTableBadInput(t *testing.T) {
	good := func() NAT {
		return NAT{
			PrivateCIDRs: []netip.Prefix{mustPrefix("10.0.11.0/24")},
			SNATAddrs:    []netip.Addr{mustAddr("10.0.1.5")},
		}
	}
	tests := []struct {
		name    string
		change  func(*NAT)
		wantErr string
	}{
		{"no SNAT address", func(n *NAT) { n.SNATAddrs = nil }, "SNATAddrs"},
		{"IPv6 SNAT address", func(n *NAT) { n.SNATAddrs = []netip.Addr{mustAddr("2001:db8::1")} }, `SNATAddrs[0] "2001:db8::1"`},
		{"zero SNAT address", func(n *NAT) { n.SNATAddrs = []netip.Addr{{}} }, "SNATAddrs[0]"},
		{"duplicate SNAT address", func(n *NAT) { n.SNATAddrs = append(n.SNATAddrs, mustAddr("10.0.1.5")) }, "duplicate"},
		{"4in6 SNAT address", func(n *NAT) { n.SNATAddrs = []netip.Addr{mustAddr("::ffff:10.0.1.5")} }, "not an IPv4 address"},
		{"no private CIDR", func(n *NAT) { n.PrivateCIDRs = nil }, "PrivateCIDRs"},
		{"IPv6 private CIDR", func(n *NAT) { n.PrivateCIDRs = []netip.Prefix{mustPrefix("2001:db8::/64")} }, `PrivateCIDRs[0] "2001:db8::/64"`},
		{"invalid private CIDR", func(n *NAT) { n.PrivateCIDRs = []netip.Prefix{{}} }, "PrivateCIDRs[0]"},
		{"PortMin > PortMax", func(n *NAT) { n.PortMin, n.PortMax = 3000, 2000 }, "PortMin 3000 > PortMax 2000"},
		{"PortMin 0", func(n *NAT) { n.PortMax = 2000 }, "PortMin 0"},
		{"iface too long", func(n *NAT) { n.OutsideIface = "abcdefghijklmnop" }, "OutsideIface"},
		{"iface with slash", func(n *NAT) { n.OutsideIface = "eth/0" }, "OutsideIface"},
		{"forward bad protocol", func(n *NAT) {
			n.PortForwards = []PortForward{{Protocol: "sctp", Port: 80, To: netip.MustParseAddrPort("10.0.11.9:80")}}
		}, `Protocol "sctp"`},
		{"forward port 0", func(n *NAT) {
			n.PortForwards = []PortForward{{Protocol: "tcp", To: netip.MustParseAddrPort("10.0.11.9:80")}}
		}, "Port 0"},
		{"forward IPv6 target", func(n *NAT) {
			n.PortForwards = []PortForward{{Protocol: "tcp", Port: 80, To: netip.MustParseAddrPort("[2001:db8::1]:80")}}
		}, "To"},
		{"forward no target", func(n *NAT) { n.PortForwards = []PortForward{{Protocol: "tcp", Port: 80}} }, "To"},
		{"forward IPv6 source", func(n *NAT) {
			n.PortForwards = []PortForward{{Protocol: "udp", Port: 53, To: netip.MustParseAddrPort("10.0.11.9:53"),
				Sources: []netip.Prefix{mustPrefix("2001:db8::/32")}}}
		}, "Sources[0]"},
		{"duplicate forward", func(n *NAT) {
			n.PortForwards = []PortForward{
				{Protocol: "tcp", Port: 80, To: netip.MustParseAddrPort("10.0.11.9:80")},
				{Protocol: "TCP", Port: 80, To: netip.MustParseAddrPort("10.0.11.10:80")},
			}
		}, "PortForwards[1] tcp/80: duplicates PortForwards[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := good()
			tt.change(&n)
			_, err := BuildTable(n)
			if err == nil {
				t.Fatalf("BuildTable(%+v) = nil error, want one containing %q", n, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
	if _, err := BuildTable(good()); err != nil {
		t.Errorf("good NAT: %v", err)
	}
}

func TestIPv4IntervalElementsEdges(t *testing.T) {
	got := ipv4IntervalElements([]netip.Prefix{mustPrefix("0.0.0.0/0")})
	if want := []nftables.SetElement{{Key: []byte{0, 0, 0, 0}}}; !reflect.DeepEqual(got, want) {
		t.Errorf("0.0.0.0/0 = %v, want %v", got, want)
	}
	got = ipv4IntervalElements([]netip.Prefix{mustPrefix("255.255.255.255/32"), mustPrefix("192.0.2.0/24")})
	want := []nftables.SetElement{
		{Key: []byte{0, 0, 0, 0}, IntervalEnd: true},
		{Key: []byte{192, 0, 2, 0}},
		{Key: []byte{192, 0, 3, 0}, IntervalEnd: true},
		{Key: []byte{255, 255, 255, 255}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestPortForwardName(t *testing.T) {
	n := representativeNAT()
	n.PortForwards[0].Protocol = "TCP"
	n.PortForwards[1].To = netip.AddrPortFrom(mustAddr("10.0.11.9"), 0)
	tbl, err := BuildTable(n)
	if err != nil {
		t.Fatal(err)
	}
	if tbl.Rule("dnat_tcp_8080") == nil {
		t.Errorf("upper-case protocol not normalised: rules %q", ruleNames(tbl, ChainPrerouting))
	}
	// A zero target port means the same port.
	found := false
	for _, e := range tbl.Rule("dnat_udp_5353").Exprs {
		if im, ok := e.(*expr.Immediate); ok && bytes.Equal(im.Data, binaryutil.BigEndian.PutUint16(5353)) {
			found = true
		}
	}
	if !found {
		t.Errorf("dnat_udp_5353 with To port 0 does not forward to port 5353")
	}
}

func TestBuildTableHostInput(t *testing.T) {
	n := representativeNAT()
	tbl, err := BuildTable(n)
	if err != nil {
		t.Fatal(err)
	}
	if got := ruleNames(tbl, ChainInput); len(got) != 0 {
		t.Errorf("input rules without HostInput = %q, want none", got)
	}
	n.HostInput = &HostInput{TCPPorts: []uint16{443, 22, 22}, UDPPorts: []uint16{5000}}
	tbl, err = BuildTable(n)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{RuleInputLoopback, RuleInputIPv6, RuleInputInvalid, RuleInputInvalid, RuleInputOwnSocket, RuleInputEstablished, RuleInputICMP,
		RuleInputPrivate, RuleInputDNAT, RuleInputTCP, RuleInputUDP, RuleInputDrop}
	if got := ruleNames(tbl, ChainInput); !slices.Equal(got, want) {
		t.Errorf("input rules = %q, want %q", got, want)
	}
	for _, c := range tbl.Chains {
		if c.Name == ChainInput && (*c.Hooknum != *nftables.ChainHookInput || *c.Policy != nftables.ChainPolicyDrop) {
			t.Errorf("chain input hook %d policy %d, want input/drop", *c.Hooknum, *c.Policy)
		}
	}
	lk, ok := exprOf[*expr.Lookup](tbl.Rule(RuleInputTCP))
	if !ok {
		t.Fatalf("input_tcp has no port set")
	}
	var ports []nftables.SetElement
	for _, s := range tbl.Sets {
		if s.Set.ID == lk.SetID {
			ports = s.Elements
		}
	}
	if want := []nftables.SetElement{{Key: []byte{0, 22}}, {Key: []byte{1, 187}}}; !reflect.DeepEqual(ports, want) {
		t.Errorf("input_tcp ports = %v, want 22, 443 (sorted, deduplicated)", ports)
	}
	if _, ok := exprOf[*expr.Lookup](tbl.Rule(RuleInputUDP)); ok {
		t.Errorf("a single UDP port should be a plain comparison")
	}
	n.HostInput = &HostInput{TCPPorts: []uint16{0}}
	if _, err := BuildTable(n); err == nil || !strings.Contains(err.Error(), "HostInput.TCPPorts[0]") {
		t.Errorf("port 0 in HostInput: err = %v", err)
	}
}

// TestBuildTableResetNoFlow: the rule that answers a private host's TCP
// segment of no flow with a RST, as the NAT gateway does for a timed-out
// connection. It comes first in forward (before drop_invalid would take
// the segment) and matches exactly: invalid, from private_v4, on the
// interface the source routes through, ACK without SYN or RST.
func TestBuildTableResetNoFlow(t *testing.T) {
	tbl, err := BuildTable(representativeNAT())
	if err != nil {
		t.Fatal(err)
	}
	if got := ruleNames(tbl, ChainForward); len(got) < 2 || got[0] != RuleResetNoFlow || got[1] != RuleDropInvalid {
		t.Fatalf("forward rules = %q, want %s first, then %s", got, RuleResetNoFlow, RuleDropInvalid)
	}
	r := tbl.Rule(RuleResetNoFlow)
	if rs := tbl.RulesNamed(RuleResetNoFlow); len(rs) != 1 {
		t.Errorf("%d rules %s, want 1", len(rs), RuleResetNoFlow)
	}
	// Expression by expression, in order: what the kernel runs.
	want := []string{
		"ct state", "bitwise 01000000", "cmp neq 00000000", // ct state invalid
		"meta nfproto", "cmp eq 02", "payload net+12/4", "lookup private_v4", // ip saddr @private_v4
		"meta l4proto", "cmp eq 06", "payload th+13/1", "bitwise 16", "cmp eq 10", // tcp flags ack / syn,rst,ack
		"fib saddr.iif oif present", "cmp eq 01000000", // fib saddr . iif oif exists
		"counter", "reject tcp-rst",
	}
	var got []string
	for _, e := range r.Exprs {
		switch x := e.(type) {
		case *expr.Ct:
			if x.Key == expr.CtKeySTATE && !x.SourceRegister {
				got = append(got, "ct state")
			} else {
				got = append(got, fmt.Sprintf("ct %+v", x))
			}
		case *expr.Bitwise:
			got = append(got, fmt.Sprintf("bitwise %x", x.Mask))
			if !bytes.Equal(x.Xor, make([]byte, len(x.Mask))) {
				got = append(got, fmt.Sprintf("xor %x", x.Xor))
			}
		case *expr.Cmp:
			op := map[expr.CmpOp]string{expr.CmpOpEq: "eq", expr.CmpOpNeq: "neq"}[x.Op]
			got = append(got, fmt.Sprintf("cmp %s %x", op, x.Data))
		case *expr.Meta:
			got = append(got, map[expr.MetaKey]string{expr.MetaKeyNFPROTO: "meta nfproto", expr.MetaKeyL4PROTO: "meta l4proto"}[x.Key])
		case *expr.Payload:
			base := map[expr.PayloadBase]string{expr.PayloadBaseNetworkHeader: "net", expr.PayloadBaseTransportHeader: "th"}[x.Base]
			got = append(got, fmt.Sprintf("payload %s+%d/%d", base, x.Offset, x.Len))
		case *expr.Lookup:
			got = append(got, "lookup "+x.SetName)
		case *expr.Fib:
			if x.FlagSADDR && x.FlagIIF && x.ResultOIF && x.FlagPRESENT && !x.FlagDADDR && !x.FlagOIF && !x.FlagMARK {
				got = append(got, "fib saddr.iif oif present")
			} else {
				got = append(got, fmt.Sprintf("fib %+v", x))
			}
		case *expr.Counter:
			got = append(got, "counter")
		case *expr.Reject:
			if x.Type == unix.NFT_REJECT_TCP_RST {
				got = append(got, "reject tcp-rst")
			} else {
				got = append(got, fmt.Sprintf("reject %+v", x))
			}
		default:
			got = append(got, fmt.Sprintf("%T", e))
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("reset_no_flow expressions:\n got  %q\n want %q", got, want)
	}
	// The rule's own flags mask and compare, applied to flag bytes: ACK
	// (0x10) set, SYN (0x02) and RST (0x04) clear.
	var mask, wantFlags []byte
	for i, e := range r.Exprs {
		if p, ok := e.(*expr.Payload); ok && p.Base == expr.PayloadBaseTransportHeader && p.Offset == 13 && i+2 < len(r.Exprs) {
			bw, _ := r.Exprs[i+1].(*expr.Bitwise)
			c, _ := r.Exprs[i+2].(*expr.Cmp)
			if bw != nil && c != nil && c.Op == expr.CmpOpEq {
				mask, wantFlags = bw.Mask, c.Data
			}
		}
	}
	if len(mask) != 1 || len(wantFlags) != 1 {
		t.Fatalf("reset_no_flow: no tcp flags match (mask %x, want %x)", mask, wantFlags)
	}
	for _, tc := range []struct {
		flags byte
		reset bool
	}{
		{0x10, true},  // ACK
		{0x18, true},  // PSH|ACK: data
		{0x11, true},  // FIN|ACK
		{0x02, false}, // SYN
		{0x12, false}, // SYN|ACK
		{0x04, false}, // RST: never a RST for a RST
		{0x14, false}, // RST|ACK
		{0x00, false}, // no ACK: malformed, dropped as invalid
		{0x01, false}, // FIN alone
	} {
		if got := tc.flags&mask[0] == wantFlags[0]; got != tc.reset {
			t.Errorf("flags %#02x: reset %t, want %t", tc.flags, got, tc.reset)
		}
	}
}

// TestBuildTableInputInvalidKeepsHostTCP: with tcp_loose=0 a segment of
// the NAT host's own idle TCP connection (an SSH session older than the
// established timeout) has no conntrack entry; input does not drop it as
// invalid but lets it on to the port rules, while every other invalid
// packet is dropped.
func TestBuildTableInputInvalidKeepsHostTCP(t *testing.T) {
	n := representativeNAT()
	n.HostInput = &HostInput{TCPPorts: []uint16{22}}
	tbl, err := BuildTable(n)
	if err != nil {
		t.Fatal(err)
	}
	rs := tbl.RulesNamed(RuleInputInvalid)
	if len(rs) != 2 {
		t.Fatalf("%d rules %s, want 2", len(rs), RuleInputInvalid)
	}
	// First: meta l4proto != tcp.
	m, ok := exprOf[*expr.Cmp](rs[0])
	if !ok || m.Op != expr.CmpOpNeq || !bytes.Equal(m.Data, []byte{unix.IPPROTO_TCP}) {
		t.Errorf("first %s: first compare %+v, want l4proto != tcp", RuleInputInvalid, m)
	}
	// Second: tcp flags != ack / syn,rst,ack.
	var flagCmp *expr.Cmp
	for i, e := range rs[1].Exprs {
		if bw, ok := e.(*expr.Bitwise); ok && bytes.Equal(bw.Mask, []byte{0x16}) && i+1 < len(rs[1].Exprs) {
			flagCmp, _ = rs[1].Exprs[i+1].(*expr.Cmp)
		}
	}
	if flagCmp == nil || flagCmp.Op != expr.CmpOpNeq || !bytes.Equal(flagCmp.Data, []byte{0x10}) {
		t.Errorf("second %s: flags compare %+v, want != ack under mask syn,rst,ack", RuleInputInvalid, flagCmp)
	}
	for _, r := range rs {
		if v, ok := exprOf[*expr.Verdict](r); !ok || v.Kind != expr.VerdictDrop {
			t.Errorf("%s verdict %+v, want drop", RuleInputInvalid, v)
		}
	}
}

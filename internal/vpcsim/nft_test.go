package vpcsim

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/nftables"

	"github.com/hanat/hanat/internal/netns"
)

var (
	ipA1 = netip.MustParseAddr("10.0.1.10")
	ipA2 = netip.MustParseAddr("10.0.1.50")
	ipB  = netip.MustParseAddr("10.0.2.10")
)

func TestPartitionExprs(t *testing.T) {
	for _, tc := range []struct {
		proto string
		port  uint16
		rules int // per address pair and direction
		bad   bool
	}{
		{"", 0, 1, false},
		{"udp", 0, 1, false},
		{"udp", 7946, 2, false}, // sport, dport
		{"", 7946, 4, false},    // tcp and udp, sport and dport
		{"icmp", 0, 1, false},
		{"icmp", 1, 0, true},
		{"sctp", 0, 0, true},
	} {
		rules, err := partitionExprs(partitionRule{A: []netip.Addr{ipA1, ipA2}, B: []netip.Addr{ipB}, Proto: tc.proto, Port: tc.port})
		if tc.bad {
			if err == nil {
				t.Errorf("%q/%d: accepted", tc.proto, tc.port)
			}
			continue
		}
		if err != nil || len(rules) != 2*2*tc.rules {
			t.Errorf("%q/%d: %d rules, %v; want %d", tc.proto, tc.port, len(rules), err, 4*tc.rules)
		}
	}
}

func TestLayout(t *testing.T) {
	specs := layout(Options{NATInstances: 3})
	var names []string
	for _, s := range specs {
		names = append(names, s.name+"@"+s.subnet+"="+s.ip.String()+"/"+s.eip.String())
	}
	want := "nat-a@public-a=10.0.1.10/198.51.100.10 nat-c@public-c=10.0.2.10/198.51.100.11 nat-a2@public-a=10.0.1.11/198.51.100.12 " +
		"app-a@private-a=10.0.11.10/invalid IP app-c@private-c=10.0.12.10/invalid IP"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("layout:\n got %s\nwant %s", got, want)
	}
	if m := macFor(ipA1).String(); m != "02:00:0a:00:01:0a" {
		t.Errorf("macFor(%s) = %s", ipA1, m)
	}
}

func TestValidatePrefix(t *testing.T) {
	for p, ok := range map[string]bool{"hnl1a2b": true, "ab": true, "a": false, "hnl1a2b3c": false, "Hnl": false, "1ab": false, "h-x": false, "": false} {
		if err := ValidatePrefix(p); (err == nil) != ok {
			t.Errorf("ValidatePrefix(%q) = %v", p, err)
		}
	}
	if p := RandomPrefix(); ValidatePrefix(p) != nil || !strings.HasPrefix(p, "hnl") {
		t.Errorf("RandomPrefix() = %q", p)
	}
}

// The rule builders, applied in a fresh namespace, list as the nft lines
// their comments promise.
func TestRulesInNamespace(t *testing.T) {
	needRoot(t)
	ns, err := netns.Create(netns.UniqueName("hnt-vnft-"))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(ns.FD()))
	if err != nil {
		t.Fatal(err)
	}
	err = queueRouterFilter(c, "t_vpc", []checkedPort{{Port: "p0", IPs: []netip.Addr{ipA1, ipA2}}},
		[]partitionRule{{A: []netip.Addr{ipA1}, B: []netip.Addr{ipB}, Proto: "udp", Port: 7946}})
	if err != nil {
		t.Fatal(err)
	}
	queueIGWTable(c, "t_igw", "vpc0", []igwMapping{{Public: netip.MustParseAddr("198.51.100.10"), Private: ipA1}})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	// Applying again replaces the tables (no duplicate rules).
	if err := queueRouterFilter(c, "t_vpc", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	err = queueRouterFilter(c, "t_vpc", []checkedPort{{Port: "p0", IPs: []netip.Addr{ipA1, ipA2}}},
		[]partitionRule{{A: []netip.Addr{ipA1}, B: []netip.Addr{ipB}, Proto: "udp", Port: 7946}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	out, err := ns.Run(context.Background(), "nft", "list", "ruleset")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"ip saddr 10.0.1.10 ip daddr 10.0.2.10 udp sport 7946 drop",
		"ip saddr 10.0.2.10 ip daddr 10.0.1.10 udp dport 7946 drop",
		`iifname "p0" jump src_p0`,
		`oifname "p0" jump dst_p0`,
		"ip saddr 10.0.1.50 accept",
		"ip daddr 10.0.1.10 accept",
		"ip daddr 198.51.100.10 dnat to 10.0.1.10",
		"ip saddr 10.0.1.10 snat to 198.51.100.10",
		"ct state established,related accept",
		`iifname "vpc0" ip saddr 10.0.1.10 accept`,
		`iifname "vpc0" drop`,
		"ct status dnat accept",
		"policy drop",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, `jump src_p0`); n != 1 {
		t.Errorf("re-applied table has %d jumps to src_p0, want 1:\n%s", n, out)
	}
}

package datapath

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hanat/hanat/internal/netns"
)

// newTestNS creates a fresh network namespace for a root test, or skips.
func newTestNS(t *testing.T) *netns.NS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace and programs nftables in it")
	}
	ns, err := netns.Create(netns.UniqueName("hnt-dp-"))
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Errorf("close namespace: %v", err)
		}
	})
	return ns
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// nftList runs `nft [-a] list what…` in ns.
func nftList(t *testing.T, ctx context.Context, ns *netns.NS, what ...string) string {
	t.Helper()
	args := []string{"list"}
	if len(what) > 0 && what[0] == "-a" {
		args = []string{"-a", "list"}
		what = what[1:]
	}
	out, err := ns.Run(ctx, "nft", append(args, what...)...)
	if err != nil {
		t.Fatalf("nft list %v: %v", args, err)
	}
	return out
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }

// representativeNAT has two private CIDRs, two SNAT addresses, an outside
// interface and two port forwards (one restricted by source).
func representativeNAT() NAT {
	return NAT{
		PrivateCIDRs: []netip.Prefix{mustPrefix("10.0.11.0/24"), mustPrefix("10.0.12.0/24")},
		SNATAddrs:    []netip.Addr{mustAddr("10.0.1.5"), mustAddr("10.0.1.6")},
		OutsideIface: "eth0",
		PortForwards: []PortForward{
			{Protocol: "tcp", Port: 8080, To: netip.MustParseAddrPort("10.0.11.9:80"),
				Sources: []netip.Prefix{mustPrefix("198.51.100.0/24"), mustPrefix("203.0.113.7/32")}},
			{Protocol: "udp", Port: 5353, To: netip.MustParseAddrPort("10.0.11.9:53")},
		},
	}
}

// wantListing are lines `nft list table inet hanat` must contain for
// representativeNAT (counters stripped).
var wantListing = []string{
	"set private_v4 {",
	"elements = { 10.0.11.0/24, 10.0.12.0/24 }",
	"type filter hook forward priority filter; policy drop;",
	`ct state invalid ip saddr @private_v4 tcp flags ack / syn,rst,ack fib saddr . iif oif exists counter reject with tcp reset comment "reset_no_flow"`,
	`ct state invalid counter drop comment "drop_invalid"`,
	`ct direction reply ct state established ct mark 0x00000000/1 counter ct mark set ct mark | 0x80000000 comment "conn_established"`,
	`ip saddr @private_v4 ct state established,related counter accept comment "forward_established_source"`,
	`ct state established,related counter accept comment "forward_established"`,
	`ip saddr @private_v4 ct state new counter accept comment "forward_new_private"`,
	`ct status dnat ct state new counter accept comment "forward_dnat"`,
	`counter drop comment "drop_unsolicited"`,
	"type nat hook prerouting priority dstnat; policy accept;",
	`ip daddr { 10.0.1.5, 10.0.1.6 } tcp dport 8080 ip saddr { 198.51.100.0/24, 203.0.113.7 } counter dnat ip to 10.0.11.9:80 comment "dnat_tcp_8080"`,
	`ip daddr { 10.0.1.5, 10.0.1.6 } udp dport 5353 counter dnat ip to 10.0.11.9:53 comment "dnat_udp_5353"`,
	"type nat hook postrouting priority srcnat; policy accept;",
	`ip saddr @private_v4 oifname "eth0" meta l4proto { tcp, udp } jhash ip saddr mod 2 seed 0x68616e61 0 counter snat ip to 10.0.1.5:1024-65535 comment "snat"`,
	`ip saddr @private_v4 oifname "eth0" meta l4proto { tcp, udp } jhash ip saddr mod 2 seed 0x68616e61 1 counter snat ip to 10.0.1.6:1024-65535 comment "snat"`,
	`ip saddr @private_v4 oifname "eth0" jhash ip saddr mod 2 seed 0x68616e61 0 counter snat ip to 10.0.1.5 comment "snat_other"`,
	`ip saddr @private_v4 oifname "eth0" jhash ip saddr mod 2 seed 0x68616e61 1 counter snat ip to 10.0.1.6 comment "snat_other"`,
	`return comment "config sha256:`,
}

// stripCounters removes "packets N bytes M " so listings compare by rules.
func stripCounters(s string) string {
	return counterRE.ReplaceAllString(s, "counter ")
}

var counterRE = regexp.MustCompile(`counter packets \d+ bytes \d+ `)

func TestSlowpathApplyIdempotentAndReplace(t *testing.T) {
	ns := newTestNS(t)
	ctx := testContext(t)
	sp := NewSlowpath(testLogger(t), ns.FD())

	if present, err := sp.Present(ctx); err != nil || present {
		t.Fatalf("Present before Apply = %t, %v; want false", present, err)
	}
	if removed, err := sp.Remove(ctx); err != nil || removed {
		t.Fatalf("Remove without table = %t, %v; want false, nil", removed, err)
	}
	if ctrs, err := sp.Counters(ctx); err != nil || len(ctrs) != 0 {
		t.Fatalf("Counters without table = %v, %v; want empty", ctrs, err)
	}

	n := representativeNAT()
	changed, err := sp.Apply(ctx, n)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if !changed {
		t.Errorf("first Apply: changed = false, want true")
	}
	first := nftList(t, ctx, ns, "table", "inet", TableName)
	flat := stripCounters(first)
	for _, line := range wantListing {
		if !strings.Contains(flat, line) {
			t.Errorf("listing lacks %q", line)
		}
	}
	if t.Failed() {
		t.Logf("listing:\n%s", first)
	}
	tbl, _ := BuildTable(n)
	if !strings.Contains(first, tbl.Hash) {
		t.Errorf("listing lacks the marker %s", tbl.Hash)
	}
	if present, err := sp.Present(ctx); err != nil || !present {
		t.Errorf("Present after Apply = %t, %v; want true", present, err)
	}

	// Same NAT again: nothing changes, byte for byte (handles included).
	firstHandles := nftList(t, ctx, ns, "-a", "table", "inet", TableName)
	for i := range 3 {
		changed, err = sp.Apply(ctx, n)
		if err != nil {
			t.Fatalf("Apply #%d: %v", i+2, err)
		}
		if changed {
			t.Errorf("Apply #%d of the same NAT: changed = true, want false", i+2)
		}
	}
	if again := nftList(t, ctx, ns, "-a", "table", "inet", TableName); again != firstHandles {
		t.Errorf("listing changed after re-Apply:\n--- before\n%s\n--- after\n%s", firstHandles, again)
	}
	// A fresh Slowpath (daemon restart) sees the same marker.
	if changed, err := NewSlowpath(testLogger(t), ns.FD()).Apply(ctx, n); err != nil || changed {
		t.Errorf("Apply after restart = %t, %v; want false, nil", changed, err)
	}

	// Change the NAT: replaced, new listing, no leftovers.
	n2 := n
	n2.SNATAddrs = []netip.Addr{mustAddr("10.0.1.7")}
	n2.PortForwards = n.PortForwards[:1]
	n2.PortMin, n2.PortMax = 20000, 30000
	changed, err = sp.Apply(ctx, n2)
	if err != nil || !changed {
		t.Fatalf("Apply changed NAT = %t, %v; want true, nil", changed, err)
	}
	second := stripCounters(nftList(t, ctx, ns, "table", "inet", TableName))
	for _, line := range []string{
		`ip saddr @private_v4 oifname "eth0" meta l4proto { tcp, udp } counter snat ip to 10.0.1.7:20000-30000 comment "snat"`,
		`ip daddr 10.0.1.7 tcp dport 8080 ip saddr { 198.51.100.0/24, 203.0.113.7 } counter dnat ip to 10.0.11.9:80 comment "dnat_tcp_8080"`,
	} {
		if !strings.Contains(second, line) {
			t.Errorf("new listing lacks %q:\n%s", line, second)
		}
	}
	for _, gone := range []string{"dnat_udp_5353", "10.0.1.5", "jhash"} {
		if strings.Contains(second, gone) {
			t.Errorf("new listing still has %q:\n%s", gone, second)
		}
	}
	if c := strings.Count(second, "table inet hanat"); c != 1 {
		t.Errorf("listing has %d hanat tables", c)
	}

	// Drift is repaired: a table without marker, and one with a rule
	// added by hand, are replaced.
	if _, err := ns.Run(ctx, "nft", "delete", "chain", "inet", TableName, ChainConfig); err != nil {
		t.Fatal(err)
	}
	if changed, err := sp.Apply(ctx, n2); err != nil || !changed {
		t.Errorf("Apply over a table without marker = %t, %v; want true", changed, err)
	}
	clean := nftList(t, ctx, ns, "table", "inet", TableName)
	if _, err := ns.Run(ctx, "nft", "insert", "rule", "inet", TableName, ChainForward, "accept"); err != nil {
		t.Fatal(err)
	}
	if changed, err := sp.Apply(ctx, n2); err != nil || !changed {
		t.Errorf("Apply over a table with a hand-added rule = %t, %v; want true", changed, err)
	}
	if got := nftList(t, ctx, ns, "table", "inet", TableName); got != clean {
		t.Errorf("hand-added rule not removed:\n%s", got)
	}

	ctrs, err := sp.Counters(ctx)
	if err != nil {
		t.Fatalf("Counters: %v", err)
	}
	for _, name := range []string{RuleResetNoFlow, RuleDropInvalid, RuleForwardEstablished, RuleForwardNewPrivate, RuleForwardDNAT,
		RuleDropUnsolicited, RuleSNAT, RuleSNATOther, "dnat_tcp_8080"} {
		if _, ok := ctrs[name]; !ok {
			t.Errorf("Counters lacks %q (got %v)", name, ctrs)
		}
	}
	for name := range ctrs {
		if strings.HasPrefix(name, markerPrefix) {
			t.Errorf("Counters reports the marker %q", name)
		}
	}

	if removed, err := sp.Remove(ctx); err != nil || !removed {
		t.Fatalf("Remove = %t, %v; want true", removed, err)
	}
	if present, err := sp.Present(ctx); err != nil || present {
		t.Errorf("Present after Remove = %t, %v; want false", present, err)
	}
}

// TestSlowpathLeavesOtherTablesAlone: a pre-existing table, even one named
// hanat in another family, is byte-identical after Apply and Remove.
func TestSlowpathLeavesOtherTablesAlone(t *testing.T) {
	ns := newTestNS(t)
	ctx := testContext(t)
	for _, cmd := range [][]string{
		{"add", "table", "ip", "keepme"},
		{"add", "chain", "ip", "keepme", "fwdchain", "{ type filter hook forward priority -10; policy accept; }"},
		{"add", "rule", "ip", "keepme", "fwdchain", "ip saddr 192.0.2.0/24", "counter", "accept"},
		{"add", "chain", "ip", "keepme", "post", "{ type nat hook postrouting priority 50; }"},
		{"add", "rule", "ip", "keepme", "post", "ip saddr 10.0.99.0/24", "counter", "masquerade"},
		{"add", "table", "ip", TableName},
		{"add", "chain", "ip", TableName, "mine", "{ type filter hook input priority 0; }"},
		{"add", "rule", "ip", TableName, "mine", "counter", "comment", `"not hanat's"`},
	} {
		if _, err := ns.Run(ctx, "nft", cmd...); err != nil {
			t.Fatal(err)
		}
	}
	before := nftList(t, ctx, ns, "-a", "ruleset")

	sp := NewSlowpath(testLogger(t), ns.FD())
	if _, err := sp.Apply(ctx, representativeNAT()); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	n2 := representativeNAT()
	n2.OutsideIface = ""
	if _, err := sp.Apply(ctx, n2); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	after := nftList(t, ctx, ns, "-a", "table", "ip", "keepme")
	if !strings.Contains(before, after) {
		t.Errorf("table ip keepme changed by Apply:\n--- before\n%s\n--- after\n%s", before, after)
	}
	afterIPHanat := nftList(t, ctx, ns, "-a", "table", "ip", TableName)
	if !strings.Contains(before, afterIPHanat) {
		t.Errorf("table ip hanat changed by Apply:\n--- before\n%s\n--- after\n%s", before, afterIPHanat)
	}

	if removed, err := sp.Remove(ctx); err != nil || !removed {
		t.Fatalf("Remove = %t, %v", removed, err)
	}
	if final := nftList(t, ctx, ns, "-a", "ruleset"); final != before {
		t.Errorf("ruleset after Apply+Remove differs from before:\n--- before\n%s\n--- after\n%s", before, final)
	}
}

// TestSlowpathListingReloads: what nft lists can be fed back to nft -f, so
// an operator can save and restore the ruleset.
func TestSlowpathListingReloads(t *testing.T) {
	ns := newTestNS(t)
	ctx := testContext(t)
	sp := NewSlowpath(testLogger(t), ns.FD())
	n := representativeNAT()
	n.HostInput = &HostInput{TCPPorts: []uint16{22, 443}, UDPPorts: []uint16{4789}}
	if _, err := sp.Apply(ctx, n); err != nil {
		t.Fatal(err)
	}
	listing := nftList(t, ctx, ns, "table", "inet", TableName)
	for _, line := range []string{
		"type filter hook input priority filter; policy drop;",
		`iifname "lo" counter packets 0 bytes 0 accept comment "input_loopback"`,
		`tcp dport { 22, 443 } counter packets 0 bytes 0 accept comment "input_tcp"`,
		`udp dport 4789 counter packets 0 bytes 0 accept comment "input_udp"`,
		`meta l4proto != tcp ct state invalid counter packets 0 bytes 0 drop comment "input_drop_invalid"`,
		`ct state invalid tcp flags != ack / syn,rst,ack counter packets 0 bytes 0 drop comment "input_drop_invalid"`,
	} {
		if !strings.Contains(listing, line) {
			t.Errorf("listing lacks %q:\n%s", line, listing)
		}
	}
	assertListingReloads(t, ctx, ns, sp, n, listing)
}

// assertListingReloads checks that nft reloads hanat's own listing of the
// table byte for byte, with the marker intact (Apply of n is a no-op after).
func assertListingReloads(t *testing.T, ctx context.Context, ns *netns.NS, sp *Slowpath, n NAT, listing string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "hanat.nft")
	if err := os.WriteFile(f, []byte(listing), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sp.Remove(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ns.Run(ctx, "nft", "-f", f); err != nil {
		t.Fatalf("nft -f of hanat's own listing: %v", err)
	}
	if again := nftList(t, ctx, ns, "table", "inet", TableName); again != listing {
		t.Errorf("reloaded listing differs:\n--- listed\n%s\n--- reloaded\n%s", listing, again)
	}
	// The marker survived the round trip, so Apply sees nothing to do.
	if changed, err := sp.Apply(ctx, n); err != nil || changed {
		t.Errorf("Apply after reload = %t, %v; want false", changed, err)
	}
}

func TestSlowpathCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	sp := NewSlowpath(nil, -1)
	if _, err := sp.Apply(ctx, representativeNAT()); err == nil {
		t.Errorf("Apply with canceled context: nil error")
	}
	if _, err := sp.Apply(context.Background(), NAT{}); err == nil {
		t.Errorf("Apply of an empty NAT: nil error")
	}
}

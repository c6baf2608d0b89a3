package datapath

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
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

func nftList(t *testing.T, ctx context.Context, ns *netns.NS, args ...string) string {
	t.Helper()
	out, err := ns.Run(ctx, "nft", append([]string{"list"}, args...)...)
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

func TestSlowpathApplyListing(t *testing.T) {
	ns := newTestNS(t)
	ctx := testContext(t)
	sp := NewSlowpath(testLogger(t), ns.FD())

	changed, err := sp.Apply(ctx, representativeNAT())
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if !changed {
		t.Errorf("first Apply: changed = false, want true")
	}
	t.Logf("listing:\n%s", nftList(t, ctx, ns, "table", "inet", TableName))
}

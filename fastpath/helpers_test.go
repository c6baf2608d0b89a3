//go:build linux

package fastpath

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/hanat/hanat/datapath"
	"github.com/hanat/hanat/internal/natlab"
	"github.com/hanat/hanat/internal/netns"
)

// NAT is the datapath's NAT, which the fast path serves.
type NAT = datapath.NAT

const protoICMP = 1

func newTestNS(t *testing.T) *netns.NS { return natlab.NewNS(t, "hnt-fp-") }

type (
	Sysctls = datapath.Sysctls
	Sysctl  = datapath.Sysctl
)

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(natlab.LogWriter{T: t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func icmpEcho(dst netip.Addr, timeout time.Duration) error { return natlab.Ping(dst, timeout) }

package datapath

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hanat/hanat/internal/natlab"
)

// emptyNATLab is the NAT lab (root; skipped otherwise) with an empty
// ruleset in the NAT's namespace, and a context bounding the test.
func emptyNATLab(t *testing.T) (context.Context, *natlab.Lab) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	lab := natlab.New(t, ctx)
	natlab.MustRun(t, ctx, lab.NAT, "nft", "flush", "ruleset")
	return ctx, lab
}

// TestHostConnectionOpenedBeforeTheTable: a TCP connection of the NAT
// host itself to a public address, opened before hanat's table (so before
// conntrack tracked the namespace), keeps working once the table is in
// with tcp_loose=0 and no open port: its segments stay invalid, and
// input_own_socket lets them reach the socket that holds the connection.
// Without it the server's replies were dropped as unsolicited (hanatd's
// own EC2 connection hung for its 10 s deadline at start).
func TestHostConnectionOpenedBeforeTheTable(t *testing.T) {
	ctx, lab := emptyNATLab(t)
	natlab.MustRun(t, ctx, lab.NAT, "sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_loose=0")
	server := netip.AddrPortFrom(natlab.Inet, 7007)
	natlab.ServeTCPEcho(t, lab.Inet, server.String())
	c, err := lab.NAT.DialContext(ctx, "tcp4", server.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo := func(msg string) error {
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if string(buf) != msg {
			return io.ErrUnexpectedEOF
		}
		return nil
	}
	if err := echo("before the table"); err != nil {
		t.Fatalf("echo before the table: %v", err)
	}
	nat := NAT{
		PrivateCIDRs: []netip.Prefix{mustPrefix("10.0.11.0/24")},
		SNATAddrs:    []netip.Addr{natlab.NATOut},
		OutsideIface: "out0",
		HostInput:    &HostInput{},
	}
	sp := NewSlowpath(testLogger(t), lab.NAT.FD())
	if _, err := sp.Apply(ctx, nat); err != nil {
		t.Fatal(err)
	}
	listing := stripCounters(nftList(t, ctx, lab.NAT, "table", "inet", TableName))
	if want := `ct state invalid socket wildcard 0 counter accept comment "input_own_socket"`; !strings.Contains(listing, want) {
		t.Errorf("listing lacks %q:\n%s", want, listing)
	}
	for i := range 3 {
		if err := echo("after the table"); err != nil {
			t.Fatalf("echo %d after the table: %v", i, err)
		}
	}
	// A segment to a port nothing listens on is still dropped: a fresh
	// connection from outside gets no answer.
	dctx, dcancel := context.WithTimeout(ctx, time.Second)
	defer dcancel()
	if d, err := lab.Inet.DialContext(dctx, "tcp4", netip.AddrPortFrom(natlab.NATOut, 7008).String()); err == nil {
		d.Close()
		t.Error("a connection from outside to a closed port was accepted")
	} else if !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "timeout") {
		t.Errorf("a connection from outside to a closed port got an answer (%v), want none", err)
	}
}

package gwlb

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/hanat/hanat/conntrack"
)

func testMember(t *testing.T, addrs []netip.Addr, discover func(context.Context) ([]netip.Addr, error)) *Member {
	return NewMember(MemberConfig{Local: netip.MustParseAddr("127.0.0.1"), Addrs: addrs, PinDir: t.TempDir(),
		Discover: discover, Link: func() string { return "hnt-nosuch0" }, Filter: func() conntrack.Filter { return conntrack.Filter{} }})
}

// TestMemberAttachFails: with the outside interface resolved, the member's
// check is the attach's error until it succeeds, and no flows are claimed.
func TestMemberAttachFails(t *testing.T) {
	m := testMember(t, nil, nil)
	if err := m.Check(t.Context()); err == nil || !strings.Contains(err.Error(), "no GWLB addresses") {
		t.Fatalf("Check without GWLB addresses: %v", err)
	}
	m = testMember(t, []netip.Addr{netip.MustParseAddr("10.0.1.5")}, nil)
	if err := m.Check(t.Context()); err == nil || !strings.Contains(err.Error(), `GWLB datapath not attached: gwlb: interface "hnt-nosuch0"`) {
		t.Fatalf("Check on a missing interface: %v", err)
	}
	if fl, err := m.LiveFlows(t.Context()); fl != nil || err != nil {
		t.Fatalf("LiveFlows before attach: %v %v", fl, err)
	}
	if c, err := m.Counters(); c != nil || err != nil || m.Close() != nil {
		t.Fatalf("counters before attach: %v %v", c, err)
	}
}

// TestMemberDiscovers: with no configured addresses the check asks
// Discover, says why when it fails (and asks again only after the retry
// pace), and goes on to attach with what it found.
func TestMemberDiscovers(t *testing.T) {
	found := []netip.Addr{netip.MustParseAddr("10.0.1.5"), netip.MustParseAddr("10.0.2.5")}
	calls, fail := 0, true
	m := testMember(t, nil, func(context.Context) ([]netip.Addr, error) {
		calls++
		if fail {
			return nil, errors.New("InternalError")
		}
		return found, nil
	})
	if err := m.Check(t.Context()); err == nil || !strings.Contains(err.Error(), "from EC2") || !strings.Contains(err.Error(), "InternalError") {
		t.Fatalf("Check with discovery failing: %v", err)
	}
	fail = false
	if err := m.Check(t.Context()); err == nil || calls != 1 {
		t.Fatalf("second Check within the retry pace: %v after %d calls, want no new call", err, calls)
	}
	m.nextDiscover = m.nextDiscover.Add(-retryDiscover) // the retry is due
	if err := m.Check(t.Context()); err == nil || !strings.Contains(err.Error(), "not attached") || calls != 2 {
		t.Fatalf("Check after discovery: %v (%d calls), want the attach's error", err, calls)
	}
	if !slices.Equal(m.addrs, found) {
		t.Fatalf("addresses %v, want %v", m.addrs, found)
	}
}

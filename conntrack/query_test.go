package conntrack

import (
	"net/netip"
	"testing"
)

func TestFlowQuerySelect(t *testing.T) {
	mk := func(id uint32, proto, src string) Flow {
		return Flow{ID: id, ProtoName: proto, Original: Tuple{Src: netip.MustParseAddrPort(src + ":1000")}}
	}
	flows := []Flow{mk(5, "udp", "10.0.11.5"), mk(2, "tcp", "10.0.11.5"), mk(9, "tcp", "10.0.11.6"), mk(1, "tcp", "10.0.11.5")}
	ids := func(fs []Flow) (out []uint32) {
		for _, f := range fs {
			out = append(out, f.ID)
		}
		return out
	}
	for _, c := range []struct {
		name    string
		q       FlowQuery
		want    []uint32
		matched int
	}{
		{"all, by id", FlowQuery{}, []uint32{1, 2, 5, 9}, 4},
		{"tcp", FlowQuery{Protocol: "tcp"}, []uint32{1, 2, 9}, 3},
		{"one host's tcp", FlowQuery{Protocol: "tcp", Src: netip.MustParseAddr("10.0.11.5")}, []uint32{1, 2}, 2},
		{"limited", FlowQuery{Limit: 2}, []uint32{1, 2}, 4},
		{"none", FlowQuery{Protocol: "icmp"}, nil, 0},
	} {
		got, matched := c.q.Select(flows)
		if g := ids(got); matched != c.matched || len(g) != len(c.want) || (len(g) > 0 && !equalIDs(g, c.want)) {
			t.Errorf("%s: %v (%d matched), want %v (%d)", c.name, g, matched, c.want, c.matched)
		}
		if got == nil {
			t.Errorf("%s: nil slice (the admin API shows [])", c.name)
		}
	}
	if flows[0].ID != 5 {
		t.Error("Select reordered its input")
	}
}

func equalIDs(a, b []uint32) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFilterEqual(t *testing.T) {
	p := []netip.Prefix{netip.MustParsePrefix("10.0.11.0/24")}
	a := []netip.Addr{netip.MustParseAddr("198.51.100.2")}
	b := []netip.Addr{netip.MustParseAddr("198.51.100.3")}
	if !(Filter{PrivateCIDRs: p, NATAddrs: a}).Equal(Filter{PrivateCIDRs: p, NATAddrs: a}) {
		t.Error("equal filters differ")
	}
	if (Filter{PrivateCIDRs: p, NATAddrs: a}).Equal(Filter{PrivateCIDRs: p, NATAddrs: b}) {
		t.Error("different NAT addresses compare equal")
	}
	if (Filter{PrivateCIDRs: p}).Equal(Filter{}) {
		t.Error("different CIDR lists compare equal")
	}
}

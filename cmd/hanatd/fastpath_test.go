package main

import (
	"context"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/hanat/hanat/bpf"
	"github.com/hanat/hanat/config"
	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/datapath"
)

func TestFastpathDisabledStatus(t *testing.T) {
	f := newFastpath(slog.New(slog.DiscardHandler), filepath.Join(t.TempDir(), "pins"))
	if st := f.status(); st.Mode != "off" || st.Reason == "" {
		t.Errorf("before the first apply: %+v", st)
	}
	cfg := config.Default()
	cfg.Fastpath.Enabled = false
	f.apply(context.Background(), cfg, datapath.NAT{})
	st := f.status()
	if st.Mode != "off" || st.Reason != "disabled in the configuration (fastpath.enabled: false)" {
		t.Errorf("disabled: %+v", st)
	}
	if _, ok := f.lookup(conntrack.Tuple{}); ok {
		t.Errorf("lookup without an engine found something")
	}
	// run returns when its context ends, with nothing to stop.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.run(ctx); err != nil {
		t.Errorf("run: %v", err)
	}
}

func TestFastpathSameFilter(t *testing.T) {
	p := []netip.Prefix{netip.MustParsePrefix("10.0.11.0/24")}
	a := []netip.Addr{netip.MustParseAddr("198.51.100.2")}
	b := []netip.Addr{netip.MustParseAddr("198.51.100.3")}
	if !sameFilter(conntrack.Filter{PrivateCIDRs: p, NATAddrs: a}, conntrack.Filter{PrivateCIDRs: p, NATAddrs: a}) {
		t.Error("equal filters differ")
	}
	if sameFilter(conntrack.Filter{PrivateCIDRs: p, NATAddrs: a}, conntrack.Filter{PrivateCIDRs: p, NATAddrs: b}) {
		t.Error("different NAT addresses compare equal")
	}
	if sameFilter(conntrack.Filter{PrivateCIDRs: p}, conntrack.Filter{}) {
		t.Error("different CIDR lists compare equal")
	}
}

func TestFastpathPassCounters(t *testing.T) {
	m := passCounters(bpf.Counters{PassSYN: 1, PassFIN: 2, PassRST: 3, PassFragment: 4, PassIPOptions: 5, PassTTL: 6,
		PassNotTCPUDP: 7, PassTooBig: 8, PassNotIPv4: 9, PassParse: 10, PassRedirect: 11})
	var sum uint64
	for _, v := range m {
		sum += v
	}
	if len(m) != 11 || sum != 66 {
		t.Errorf("pass counters %v", m)
	}
}

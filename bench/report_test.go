package bench

import (
	"bytes"
	"encoding/json"
	"math"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestReportJSONHasEveryModeKey(t *testing.T) {
	r := newReport()
	r.set(MUDPPPS, ModeNftables, 400_000)
	r.set(MUDPPPS, ModeFastpath, 2_400_000)
	r.set(MProgHit, ModeFastpath, 60)
	r.set(MProgFloor, ModeFastpath, 40)
	r.set(MProgLookup, ModeFastpath, 70)
	r.set(MCeiling, ModeFastpath, 1_600_000)
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Measurements []struct {
			Name  string              `json:"name"`
			Unit  string              `json:"unit"`
			Modes map[string]*float64 `json:"modes"`
		} `json:"measurements"`
		Targets []Target `json:"targets"`
		Bounds  []Bound  `json:"bounds"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, buf.String())
	}
	if len(doc.Measurements) == 0 {
		t.Fatal("no measurements")
	}
	for _, m := range doc.Measurements {
		if m.Name == "" || m.Unit == "" {
			t.Errorf("measurement without name or unit: %+v", m)
		}
		for _, mode := range []string{"nftables", "fastpath", "fastpath_tc", "iptables_legacy"} {
			if _, ok := m.Modes[mode]; !ok {
				t.Errorf("%s: modes has no %q key (want a value or null)", m.Name, mode)
			}
		}
	}
	pps := doc.Measurements[0]
	if pps.Name != MUDPPPS || pps.Modes["fastpath"] == nil || *pps.Modes["fastpath"] != 2_400_000 || pps.Modes["iptables_legacy"] != nil {
		t.Errorf("first measurement %+v", pps)
	}
	got := map[string]Target{}
	for _, tg := range doc.Targets {
		got[tg.Name] = tg
	}
	if tg := got["fastpath/nftables small-packet pps, two ENIs (redirect)"]; tg.Ratio == nil || *tg.Ratio != 6 || tg.Met == nil || !*tg.Met {
		t.Errorf("pps target %+v, want ratio 6 met", tg)
	}
	if tg := got["NAT program / XDP_TX floor"]; tg.Ratio == nil || *tg.Ratio != 1.5 || tg.Met == nil || !*tg.Met {
		t.Errorf("program target %+v, want ratio 1.5 met (bound inclusive)", tg)
	}
	bounds := map[string]float64{}
	for _, b := range doc.Bounds {
		bounds[b.Target] = *b.Ratio
	}
	if len(bounds) != 2 || bounds["fastpath/nftables small-packet pps, two ENIs (redirect)"] != 4 || bounds["NAT program / XDP_TX floor"] != 1.75 {
		t.Errorf("bounds %v, want the bare forwarder's 4 and floor+lookup's 1.75 only", bounds)
	}
	if tg := got["fastpath/nftables TCP bulk"]; tg.Ratio != nil || tg.Met != nil {
		t.Errorf("unmeasured target %+v, want null ratio and met", tg)
	}
}

func TestReportTable(t *testing.T) {
	r := newReport()
	r.set(MConnRate, ModeNftables, 4000)
	r.set(MConnRate, ModeFastpath, 3000)
	r.set(MConnRate, ModeIptablesLegacy, 4400)
	r.set(MConnRate, ModeFastpathTC, 5000)
	r.set(scaleName(1000), ModeFastpath, 80)
	r.set(scaleName(1_000_000), ModeFastpath, 400)
	r.note("a note")
	var buf bytes.Buffer
	if err := r.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"tcp_new_conn_per_s", "0.75x", "1.10x", "1.25x", "fastpath_tc", "tc/nft",
		"new conn/s offload on/off", "0.75  MISSED",
		"fast path cost 1M / 1k flows", "5.00  MISSED",
		"fastpath/nftables small-packet pps", "not measured",
		"- a note",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, MTCPBulk) {
		t.Errorf("table shows a row with no figures:\n%s", out)
	}
}

func TestParseMode(t *testing.T) {
	for _, m := range AllModes {
		if got, err := ParseMode(string(m)); err != nil || got != m {
			t.Errorf("ParseMode(%q) = %q, %v", m, got, err)
		}
	}
	if _, err := ParseMode("nft"); err == nil {
		t.Error("ParseMode accepted an unknown mode")
	}
}

func TestCoprimeStrideVisitsEveryFlow(t *testing.T) {
	for _, n := range []int{1, 2, 3, 1000, 1024, 4096, 100_000} {
		s := coprimeStride(n)
		if s < 1 || (n > 1 && s >= n) {
			t.Fatalf("n=%d: stride %d out of range", n, s)
		}
		seen := make([]bool, n)
		f := 0
		for i := 0; i < n; i++ {
			if seen[f] {
				t.Fatalf("n=%d stride %d: flow %d visited twice within %d steps", n, s, f, i)
			}
			seen[f] = true
			// The spray program's step.
			f += s
			if f >= n {
				f -= n
			}
		}
	}
}

func TestIPv4Checksum(t *testing.T) {
	// RFC 1071 style check: the header with its checksum sums to 0xffff.
	src, dst := netip.MustParseAddr("10.0.11.10"), netip.MustParseAddr("198.51.100.100")
	c := ipv4Checksum(src, dst, 46, 64, 17)
	h := []byte{0x45, 0, 0, 46, 0, 0, 0, 0, 64, 17, byte(c >> 8), byte(c), 10, 0, 11, 10, 198, 51, 100, 100}
	if s := onesSum(h); s != 0xffff {
		t.Fatalf("header with checksum %#04x sums to %#04x, want 0xffff", c, s)
	}
}

func TestHumanCount(t *testing.T) {
	for n, want := range map[int]string{1000: "1k", 100_000: "100k", 1_000_000: "1M", 1500: "1500", 2_000_000: "2M"} {
		if got := humanCount(n); got != want {
			t.Errorf("humanCount(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestCostArithmetic(t *testing.T) {
	s := sprayCost{driver: 20 * time.Nanosecond, floor: 30 * time.Nanosecond, raw: 45 * time.Nanosecond}
	if got := s.net(); got != 15*time.Nanosecond {
		t.Errorf("above floor %v, want 15ns", got)
	}
	r := newReport()
	r.set(MProgHit, ModeFastpath, 58)
	r.set(MProgLookup, ModeFastpath, 49)
	r.evalTargets()
	found := false
	for _, tg := range r.Targets {
		if tg.Name == "NAT program above floor + flow lookup, ns" {
			found = true
			if tg.Met == nil || !*tg.Met || *tg.Ratio != 9 {
				t.Errorf("target %+v, want 9 ns met", tg)
			}
		}
	}
	if !found {
		t.Error("no target for the NAT program above floor + lookup")
	}
}

// TestReportBoundsOfScaleAndTCP: the 1M-flow targets get the bare
// forwarders with the lookup as bounds, the TCP bulk targets the bare tc
// forwarder's TCP rate.
func TestReportBoundsOfScaleAndTCP(t *testing.T) {
	r := newReport()
	fig := MScalePPSPrefix + "1M"
	r.set(fig, ModeNftables, 500_000)
	r.set(fig, ModeFastpath, 1_000_000)
	r.set(fig, ModeFastpathTC, 800_000)
	r.set(fig+scaleLookupXDPSuffix, ModeFastpath, 1_100_000)
	r.set(fig+scaleLookupTCSuffix, ModeFastpathTC, 900_000)
	r.set(MTCPBulk, ModeNftables, 5)
	r.set(MTCPBulk, ModeFastpathTC, 5)
	r.set(MTCPBulkBareTC, ModeFastpathTC, 5.5)
	r.evalTargets()
	want := map[string]float64{
		"fastpath/nftables small-packet pps at 1M flows":    2.2,
		"fastpath_tc/nftables small-packet pps at 1M flows": 1.8,
		"fastpath_tc/nftables TCP bulk":                     1.1,
		"fastpath/nftables TCP bulk":                        1.1,
	}
	for name, w := range want {
		ok := false
		for _, b := range r.Bounds {
			if b.Target == name && b.Ratio != nil && math.Abs(*b.Ratio-w) < 1e-9 {
				ok = true
			}
		}
		if !ok {
			t.Errorf("no bound %.2f for %q in %+v", w, name, r.Bounds)
		}
	}
}

// TestReportAutoAndTCBounds: auto's ratio per shape comes from the column
// of the backend it picked there (none for a mix), and the bare tc
// forwarder bounds the tc targets.
func TestReportAutoAndTCBounds(t *testing.T) {
	r := newReport()
	r.set(MUDPPPS, ModeNftables, 500_000)
	r.set(MUDPPPS, ModeFastpath, 2_000_000)
	r.set(MUDPPPS, ModeFastpathTC, 1_000_000)
	r.set(MUDPPPS1, ModeNftables, 400_000)
	r.set(MUDPPPS1, ModeFastpath, 1_600_000)
	r.set(MCeilingTC, ModeFastpathTC, 1_500_000)
	r.Auto = []AutoPick{
		{Shape: ShapeTwoENI, Backend: "in0=tc out0=tc", Mode: ModeFastpathTC},
		{Shape: ShapeSingleENI, Backend: "out0=native in0=tc"},
	}
	r.evalTargets()
	got := map[string]Target{}
	for _, tg := range r.Targets {
		got[tg.Name] = tg
	}
	if tg := got["auto (in0=tc out0=tc)/nftables small-packet pps, two ENIs"]; tg.Ratio == nil || *tg.Ratio != 2 || !*tg.Met {
		t.Errorf("auto two ENIs %+v, want the tc column's 2, met", tg)
	}
	if tg, ok := got["auto (out0=native in0=tc)/nftables small-packet pps, one ENI"]; !ok || tg.Ratio != nil {
		t.Errorf("auto one ENI (mixed) %+v (present %v), want listed, not measured", tg, ok)
	}
	if tg := got["fastpath_tc/nftables small-packet pps, two ENIs"]; tg.Ratio == nil || *tg.Ratio != 2 || !*tg.Met {
		t.Errorf("tc pps target %+v, want 2 met", tg)
	}
	found := false
	for _, b := range r.Bounds {
		if b.Target == "fastpath_tc/nftables small-packet pps, two ENIs" {
			found = b.Ratio != nil && *b.Ratio == 3
		}
	}
	if !found {
		t.Errorf("bounds %+v, want the bare tc forwarder's 3 for the tc pps target", r.Bounds)
	}
	var buf bytes.Buffer
	if err := r.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "column fastpath_tc") || !strings.Contains(buf.String(), "none (a mix of backends)") {
		t.Errorf("table does not say what auto picks:\n%s", buf.String())
	}
}

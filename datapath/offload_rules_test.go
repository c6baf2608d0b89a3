package datapath

import (
	"strings"
	"testing"
)

// TestOffloadRulesListAndReload applies a table with NAT.Offload and checks
// that nft renders the event-shaping rules as intended and reloads its own
// listing (the rules are hand-built expressions: a wrong register, byte
// order or key would show up here).
func TestOffloadRulesListAndReload(t *testing.T) {
	ns := newTestNS(t)
	ctx := testContext(t)
	sp := NewSlowpath(testLogger(t), ns.FD())
	n := representativeNAT()
	n.Offload = &Offload{AfterPackets: DefaultOffloadAfterPackets}
	if _, err := sp.Apply(ctx, n); err != nil {
		t.Fatal(err)
	}
	listing := nftList(t, ctx, ns, "table", "inet", TableName)
	for _, want := range []string{
		`ct status snat ct state established ct mark & 0x40000000 == 0x00000000 ct packets >= 16 counter packets 0 bytes 0 ct mark set ct mark | 0x40000000 ct label set 127 ct event set destroy,assured,protoinfo,label comment "offload_flow"`,
		`ct state new ct event set destroy counter packets 0 bytes 0 accept comment "forward_new_private"`,
	} {
		if !strings.Contains(listing, want) {
			t.Errorf("listing lacks %q:\n%s", want, listing)
		}
	}
	assertListingReloads(t, ctx, ns, sp, n, listing)

	// AfterPackets 0: no packet condition.
	n.Offload.AfterPackets = 0
	if _, err := sp.Apply(ctx, n); err != nil {
		t.Fatal(err)
	}
	if l := nftList(t, ctx, ns, "table", "inet", TableName); strings.Contains(l, "ct packets") || !strings.Contains(l, `comment "offload_flow"`) {
		t.Errorf("AfterPackets 0: want offload_flow without a packet condition:\n%s", l)
	}
	// No Offload: no event shaping at all.
	n.Offload = nil
	if _, err := sp.Apply(ctx, n); err != nil {
		t.Fatal(err)
	}
	if l := nftList(t, ctx, ns, "table", "inet", TableName); strings.Contains(l, "ct event") || strings.Contains(l, "offload_flow") {
		t.Errorf("no Offload: want no event rules:\n%s", l)
	}
}

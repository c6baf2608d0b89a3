package fastpath

import "testing"

func TestParseMode(t *testing.T) {
	for in, want := range map[string]string{
		"": XDPModeAuto, "auto": XDPModeAuto,
		"xdp": XDPModeNative, "native": XDPModeNative,
		"xdp-generic": XDPModeGeneric, "generic": XDPModeGeneric,
		"tc": XDPModeTC,
	} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"skb", "tcx", "Native"} {
		if got, err := ParseMode(in); err == nil {
			t.Errorf("ParseMode(%q) = %q, want an error", in, got)
		}
	}
}

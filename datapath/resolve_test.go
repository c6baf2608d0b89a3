package datapath

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
)

func TestResolve(t *testing.T) {
	disc := Discovered{
		OutsideIface: "ens5",
		OutsideAddr:  netip.MustParseAddr("10.0.1.10"),
		IfaceAddr: func(name string) (netip.Addr, error) {
			if name == "ens6" {
				return netip.MustParseAddr("10.0.1.20"), nil
			}
			return netip.Addr{}, errors.New("no such interface")
		},
	}
	vpc := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")}
	// What an empty configuration asks for (cmd/hanatd's natOf).
	empty := NAT{PortMin: 1024, PortMax: 65535, HostInput: &HostInput{TCPPorts: []uint16{22}}}

	t.Run("empty config on EC2", func(t *testing.T) {
		d := disc
		d.VPCCIDRs = vpc
		nat, notes, err := Resolve(empty, d)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(nat.PrivateCIDRs, vpc) || nat.OutsideIface != "ens5" ||
			!slices.Equal(nat.SNATAddrs, []netip.Addr{disc.OutsideAddr}) || nat.PortMin != 1024 || nat.PortMax != 65535 {
			t.Fatalf("nat = %+v", nat)
		}
		if nat.HostInput == nil || !slices.Equal(nat.HostInput.TCPPorts, []uint16{22}) {
			t.Fatalf("host input = %+v, want the default filter with tcp/22 open", nat.HostInput)
		}
		if len(notes) != 3 {
			t.Errorf("notes = %q, want one per discovered value", notes)
		}
	})
	t.Run("empty config off EC2 falls back to RFC 1918", func(t *testing.T) {
		nat, _, err := Resolve(empty, disc)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(nat.PrivateCIDRs, RFC1918) {
			t.Fatalf("private = %v", nat.PrivateCIDRs)
		}
	})
	t.Run("config wins", func(t *testing.T) {
		want := NAT{OutsideIface: "ens6", PrivateCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.11.0/24")}}
		d := disc
		d.VPCCIDRs = vpc
		nat, _, err := Resolve(want, d)
		if err != nil {
			t.Fatal(err)
		}
		if nat.OutsideIface != "ens6" || nat.SNATAddrs[0] != netip.MustParseAddr("10.0.1.20") ||
			!slices.Equal(nat.PrivateCIDRs, want.PrivateCIDRs) || nat.HostInput != nil {
			t.Fatalf("nat = %+v", nat)
		}
	})
	t.Run("no default route and no outside interface", func(t *testing.T) {
		if _, _, err := Resolve(empty, Discovered{}); err == nil {
			t.Fatal("want an error naming the missing outside interface")
		}
	})
	t.Run("configured interface without address", func(t *testing.T) {
		want := empty
		want.OutsideIface = "ens9"
		if _, _, err := Resolve(want, disc); err == nil {
			t.Fatal("want an error for an outside interface without IPv4")
		}
	})
}

package config

import (
	"encoding/json"
	"errors"
	"os"
	"testing"
)

// FuzzParse: Parse never panics; an error is a list of *FieldError naming
// the file; an accepted config re-validates, keeps its invariants, and
// survives Clone and a JSON round trip.
func FuzzParse(f *testing.F) {
	for _, tc := range badCases {
		f.Add([]byte(tc.yaml))
	}
	if data, err := os.ReadFile("example.yaml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(""))
	f.Add([]byte("gwlb:\n  enabled: true\n  addresses: [10.0.1.200]\n  health_check: {address: 10.0.1.10, port: 8081, protocol: http, path: /healthz}\n" +
		"  deregistration_delay: 45s\n  lifecycle_hook: false\n"))
	f.Add([]byte("private_cidrs: [10.0.0.0/16]\nsnat: {addresses: [10.0.1.10], ports: 2000-3000}\n" +
		"port_forwards:\n  - {name: ssh, protocol: tcp, port: 2222, to: 10.0.11.5:22, sources: [203.0.113.0/24]}\n" +
		"  - {protocol: udp, port: 53, to: 10.0.11.6}\n" +
		"sysctl: {conntrack_max: 65536, tcp_established_timeout: 1d, udp_timeout: 45, udp_stream_timeout: 2m}\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			if c != nil {
				t.Fatal("config returned with an error")
			}
			j, ok := err.(interface{ Unwrap() []error })
			if !ok {
				t.Fatalf("error %T is not an errors.Join", err)
			}
			for _, e := range j.Unwrap() {
				var fe *FieldError
				if !errors.As(e, &fe) || fe.File != "fuzz.yaml" || fe.Msg == "" || fe.Line < 0 {
					t.Fatalf("bad error %#v", e)
				}
			}
			return
		}
		if c == nil {
			t.Fatal("nil config without error")
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("accepted config does not re-validate: %v", err)
		}
		if r := c.SNAT.Ports; r.Min < 1 || r.Min > r.Max {
			t.Fatalf("accepted snat.ports %v", r)
		}
		for i, pf := range c.PortForwards {
			if pf.Port == 0 || pf.To.Port() == 0 || !pf.To.Addr().Is4() ||
				(pf.Protocol != ProtocolTCP && pf.Protocol != ProtocolUDP) {
				t.Fatalf("accepted port_forwards[%d] %+v", i, pf)
			}
		}
		for _, p := range c.PrivateCIDRs {
			if !p.Addr().Is4() || p.Masked() != p {
				t.Fatalf("accepted private CIDR %v", p)
			}
		}
		if n := c.Clone(); !n.Equal(c) {
			t.Fatal("Clone not Equal")
		}
		b, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("json.Marshal: %v", err)
		}
		var back Config
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("json.Unmarshal(%s): %v", b, err)
		}
		if !back.Equal(c) {
			t.Fatalf("JSON round trip changed the config: %s", b)
		}
	})
}

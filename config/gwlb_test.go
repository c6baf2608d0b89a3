package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestGWLBDefaults(t *testing.T) {
	c, err := Parse("g.yaml", []byte("gwlb:\n  enabled: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	g := c.GWLB
	if !g.Enabled || len(g.Addresses) != 0 || g.HealthCheck.Address.IsValid() || g.HealthCheck.Port != 80 ||
		g.HealthCheck.Protocol != "tcp" || g.HealthCheck.Path != "/" || g.DeregistrationDelay.Duration != 300*time.Second || !g.LifecycleHook {
		t.Fatalf("defaults = %+v", g)
	}
	if LiveKey("gwlb.enabled") || LiveKey("gwlb.deregistration_delay") {
		t.Fatal("gwlb keys are read at start only")
	}
}

func TestGWLBFull(t *testing.T) {
	in := "gwlb:\n  enabled: true\n  addresses: [10.0.1.200, 10.0.3.200]\n  health_check:\n    address: 10.0.1.10\n    port: 8081\n" +
		"    protocol: http\n    path: /healthz\n  deregistration_delay: 45s\n  lifecycle_hook: false\n"
	c, err := Parse("g.yaml", []byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := GWLB{Enabled: true, Addresses: []netip.Addr{netip.MustParseAddr("10.0.1.200"), netip.MustParseAddr("10.0.3.200")},
		HealthCheck:         GWLBHealthCheck{Address: netip.MustParseAddr("10.0.1.10"), Port: 8081, Protocol: "http", Path: "/healthz"},
		DeregistrationDelay: Duration{45 * time.Second}}
	if !c.GWLB.equal(want) {
		t.Fatalf("gwlb = %+v, want %+v", c.GWLB, want)
	}
	n := c.Clone()
	n.GWLB.Addresses[0] = netip.MustParseAddr("10.0.9.9")
	if c.GWLB.Addresses[0] != want.Addresses[0] || n.Equal(c) {
		t.Fatal("Clone shares gwlb.addresses, or Equal misses it")
	}
	keys, err := ChangedKeys(c, n)
	if err != nil || len(keys) != 1 || keys[0] != "gwlb.addresses" {
		t.Fatalf("ChangedKeys = %v, %v", keys, err)
	}
}

func TestGWLBBad(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"ha:\n  peer: 10.0.2.10\ngwlb:\n  enabled: true\n", `g.yaml:4: gwlb.enabled: "true": a node is a pair member or a fleet member, not both: ha.peer "10.0.2.10" (line 2) is set`},
		{"gwlb:\n  addresses: [10.0.1]\n", `g.yaml:2: gwlb.addresses[0]: "10.0.1": invalid IP address`},
		{"gwlb:\n  addresses: [224.0.0.5]\n", `gwlb.addresses[0]: "224.0.0.5": not a unicast address`},
		{"gwlb:\n  addresses: [10.0.1.200, 10.0.1.200]\n", `gwlb.addresses[1]: "10.0.1.200": duplicate of gwlb.addresses[0]`},
		{"gwlb:\n  health_check:\n    address: 0.0.0.0\n", `gwlb.health_check.address: "0.0.0.0"`},
		{"gwlb:\n  health_check:\n    port: 0\n", `g.yaml:3: gwlb.health_check.port: "0": port out of range`},
		{"gwlb:\n  health_check:\n    protocol: https\n", `gwlb.health_check.protocol: "https": HTTPS is not served`},
		{"gwlb:\n  health_check:\n    protocol: TCP\n", `gwlb.health_check.protocol: "TCP": write it in lower case: tcp`},
		{"gwlb:\n  health_check:\n    protocol: udp\n", `gwlb.health_check.protocol: "udp": must be one of tcp, http`},
		{"gwlb:\n  health_check:\n    path: /h\n", `gwlb.health_check.path: "/h": a path needs protocol http`},
		{"gwlb:\n  health_check:\n    protocol: http\n    path: healthz\n", `gwlb.health_check.path: "healthz": must start with /`},
		{"gwlb:\n  health_check:\n    protocol: http\n    path: \"/a b\"\n", `must be printable ASCII without spaces`},
		{"gwlb:\n  deregistration_delay: 2h\n", `g.yaml:2: gwlb.deregistration_delay: "2h": out of range 0s-3600s`},
		{"gwlb:\n  deregistration_delay: 1500ms\n", `gwlb.deregistration_delay: "1500ms": must be a whole number of seconds`},
		{"gwlb:\n  lifecycle_hooks: true\n", `g.yaml:2: gwlb.lifecycle_hooks: unknown key (did you mean "lifecycle_hook"?)`},
		{"gwlb:\n  lifecycle_hook_name: \"hanat drain\"\n", `g.yaml:2: gwlb.lifecycle_hook_name: "hanat drain": not a lifecycle hook name`},
	} {
		_, err := Parse("g.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
	// A pair peer alone, or a fleet member alone, is fine.
	for _, ok := range []string{"ha:\n  peer: 10.0.2.10\ngwlb:\n  enabled: false\n", "gwlb:\n  enabled: true\n  deregistration_delay: 0\n",
		"gwlb:\n  enabled: true\n  lifecycle_hook_name: hanat-fleet/drain_1\n"} {
		if _, err := Parse("g.yaml", []byte(ok)); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

package config

import (
	"strings"
	"testing"
	"time"
)

func TestHADefaults(t *testing.T) {
	c, err := Parse("h.yaml", nil)
	if err != nil {
		t.Fatal(err)
	}
	h := c.HA
	if !h.Enabled || h.Peer.IsValid() || h.Port != DefaultHAPort || h.Interval.Duration != 200*time.Millisecond ||
		h.DeadAfter != 5 || !h.Preempt || h.HoldDown.Duration != 30*time.Second || h.KeyFile != "/etc/hanat/ha.key" {
		t.Errorf("defaults = %+v", h)
	}
}

func TestHABad(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"ha:\n  peer: 10.0.2\n", `h.yaml:2: ha.peer: "10.0.2": invalid IP address`},
		{"ha:\n  peer: 224.0.0.1\n", `h.yaml:2: ha.peer: "224.0.0.1": not a unicast address`},
		{"ha:\n  peer: 10.0.2.10\n  key_file: ha.key\n", `h.yaml:3: ha.key_file: "ha.key": must be an absolute path (a peer needs the shared key)`},
		{"ha:\n  port: 0\n", `h.yaml:2: ha.port: "0": port out of range`},
		{"ha:\n  interval: 10ms\n", `h.yaml:2: ha.interval: "10ms": out of range 50ms-10s`},
		{"ha:\n  dead_after: 1\n", `h.yaml:2: ha.dead_after: "1": out of range 2-100`},
		{"ha:\n  home_route_tables: [rtb-1, nope]\n", `h.yaml:2: ha.home_route_tables[1]: "nope": not a route table id`},
		{"ha:\n  home_route_tables: [rtb-1]\n  backup_route_tables: [rtb-1]\n", `h.yaml:3: ha.backup_route_tables[0]: "rtb-1": also listed as ha.home_route_tables[0]`},
		{"ha:\n  hold_down: 2h\n", `h.yaml:2: ha.hold_down: "2h": out of range 0s-1h`},
		{"ha:\n  health:\n    targets: [example.com]\n", `h.yaml:3: ha.health.targets[0]: "example.com": want host:port`},
		{"ha:\n  health:\n    targets: [\"example.com:0\"]\n", `ha.health.targets[0]: "example.com:0": port out of range`},
		{"ha:\n  eips:\n    - route_tables: [rtb-1]\n", `ha.eips[0].allocation_id: missing required key`},
		{"ha:\n  eips:\n    - allocation_id: eipalloc-1\n", `ha.eips[0].route_tables: missing required key`},
		{"ha:\n  eips:\n    - {allocation_id: eipalloc-1, route_tables: [rtb-1]}\n    - {allocation_id: eipalloc-2, route_tables: [rtb-1]}\n", `ha.eips[1].route_tables[0]: "rtb-1": already follows ha.eips[0]`},
		{"ha:\n  eips:\n    - {allocation_id: eip-1, route_tables: [rtb-1]}\n", `not an Elastic IP allocation id`},
		{"ha:\n  peeer: 10.0.2.10\n", `h.yaml:2: ha.peeer: unknown key (did you mean "peer"?)`},
	} {
		_, err := Parse("h.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.want)
		}
	}
}

func TestHAClone(t *testing.T) {
	c, err := Parse("h.yaml", []byte("ha:\n  peer: 10.0.2.10\n  home_route_tables: [rtb-1]\n  eips:\n    - {allocation_id: eipalloc-1, route_tables: [rtb-1]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	n := c.Clone()
	n.HA.HomeRouteTables[0] = "rtb-2"
	n.HA.EIPs[0].RouteTables[0] = "rtb-2"
	if c.HA.HomeRouteTables[0] != "rtb-1" || c.HA.EIPs[0].RouteTables[0] != "rtb-1" {
		t.Fatal("Clone shares HA slices")
	}
	if n.Equal(c) {
		t.Fatal("Equal misses HA changes")
	}
}

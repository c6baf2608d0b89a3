package config

import (
	"strings"
	"testing"
	"time"
)

func TestChangedKeys(t *testing.T) {
	a, b := Default(), Default()
	b.HA.HomeRouteTables = []string{}
	if keys, err := ChangedKeys(a, b); err != nil || len(keys) != 0 {
		t.Errorf("nil and empty list: %v, %v", keys, err)
	}
	b.HA.HomeRouteTables = []string{"rtb-1"}
	b.HA.Health.Timeout.Duration = 2 * time.Second
	b.StateDir = "/tmp/x"
	keys, err := ChangedKeys(a, b)
	if err != nil || strings.Join(keys, " ") != "ha.health.timeout ha.home_route_tables state_dir" {
		t.Errorf("changedKeys = %v, %v", keys, err)
	}
	for _, k := range keys {
		if LiveKey(k) {
			t.Errorf("%s is live", k)
		}
	}
}

func TestLiveKeys(t *testing.T) {
	for _, k := range []string{"snat.addresses", "private_cidrs", "port_forwards", "fastpath.mode", "sysctl.conntrack_max", "log.level"} {
		if !LiveKey(k) {
			t.Errorf("%s needs a restart; every reconcile applies it", k)
		}
	}
	for _, k := range []string{"ha.peer", "log.format", "admin.socket", "state_dir"} {
		if LiveKey(k) {
			t.Errorf("%s is live; it is read once at start", k)
		}
	}
}

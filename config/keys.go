package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// LiveKey reports whether a reload applies the configuration key path
// (dotted, as in the file): the datapath, which every reconcile builds
// from the configuration (nftables table, sysctls, fast path), and the
// log level. Everything else — ha.*, cloud.*, admin.*, metrics.*,
// log.format, state_dir, and any key added later until it is made live
// here — is read once at start and needs a restart.
func LiveKey(path string) bool {
	top, _, _ := strings.Cut(path, ".")
	switch top {
	case "interfaces", "private_cidrs", "snat", "port_forwards", "sysctl", "host_input", "fastpath":
		return true
	}
	return path == "log.level"
}

// ChangedKeys lists the dotted keys whose values differ between a and b,
// sorted. It compares the JSON form /v1/config serves, so what it names
// is what an operator sees change there. Lists are compared whole (the
// key is the list's, e.g. ha.home_route_tables); a null list and an
// empty one are the same.
func ChangedKeys(a, b *Config) ([]string, error) {
	fa, err := flatConfig(a)
	if err != nil {
		return nil, err
	}
	fb, err := flatConfig(b)
	if err != nil {
		return nil, err
	}
	var keys []string
	for k, va := range fa {
		if vb, ok := fb[k]; !ok || !reflect.DeepEqual(va, vb) {
			keys = append(keys, k)
		}
	}
	for k := range fb {
		if _, ok := fa[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys, nil
}

// flatConfig maps every leaf of cfg's JSON form to its dotted key.
func flatConfig(cfg *Config) (map[string]any, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	var tree map[string]any
	if err := json.Unmarshal(raw, &tree); err != nil {
		return nil, fmt.Errorf("decode config: %w", err)
	}
	out := map[string]any{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, c := range x {
				walk(prefix+k+".", c)
			}
			return
		case []any:
			if len(x) == 0 {
				v = nil
			}
		}
		out[strings.TrimSuffix(prefix, ".")] = v
	}
	walk("", tree)
	return out, nil
}

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/config"
)

// liveKey reports whether a reload applies the configuration key path
// (dotted, as in the file): the datapath, which every reconcile builds
// from the configuration (nftables table, sysctls, fast path), and the
// log level. Everything else — ha.*, cloud.*, admin.*, metrics.*,
// log.format, state_dir, and any key added later until it is made live
// here — is read once at start and needs a restart.
func liveKey(path string) bool {
	top, _, _ := strings.Cut(path, ".")
	switch top {
	case "interfaces", "private_cidrs", "snat", "port_forwards", "sysctl", "host_input", "fastpath":
		return true
	}
	return path == "log.level"
}

// restartError is a reload refused because the new file changes keys
// that need a restart. It matches admin.ErrRestartNeeded.
type restartError struct {
	keys []string
}

func (e *restartError) Error() string {
	return strings.Join(e.keys, ", ") + ": " + admin.ErrRestartNeeded.Error()
}

func (e *restartError) Unwrap() error { return admin.ErrRestartNeeded }

// changedKeys lists the dotted keys whose values differ between a and b,
// sorted. It compares the JSON form /v1/config serves, so what it names
// is what an operator sees change there. Lists are compared whole (the
// key is the list's, e.g. ha.home_route_tables); a null list and an
// empty one are the same.
func changedKeys(a, b *config.Config) ([]string, error) {
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
func flatConfig(cfg *config.Config) (map[string]any, error) {
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

// reload re-reads the config file and applies it as a whole or not at
// all: an invalid file, or one that changes a key a reload cannot apply
// (see liveKey), leaves the running configuration in force, and the error
// says why (a *restartError names every such key). It reports whether the
// configuration changed.
func (d *daemon) reload(ctx context.Context) (bool, error) {
	cfg, _, err := loadConfig(d.configPath, d.configExplicit)
	if err != nil {
		return false, fmt.Errorf("reload %s: %w", d.configPath, err)
	}
	old := d.config()
	if old.Equal(cfg) {
		d.log.Info("configuration reloaded", "changed", false)
		return false, d.apply(ctx)
	}
	keys, err := changedKeys(old, cfg)
	if err != nil {
		return false, fmt.Errorf("reload %s: %w", d.configPath, err)
	}
	var restart []string
	for _, k := range keys {
		if !liveKey(k) {
			restart = append(restart, k)
		}
	}
	if len(restart) > 0 {
		rerr := &restartError{keys: restart}
		d.log.Error("reload refused: "+rerr.Error(), "config", d.configPath, "keys", restart)
		return false, fmt.Errorf("reload %s: %w", d.configPath, rerr)
	}
	if old.Log.Level != cfg.Log.Level && d.logLevel != nil {
		d.logLevel.Set(parseLevel(cfg.Log.Level))
	}
	d.mu.Lock()
	d.state.cfg = cfg
	d.state.configLoadedAt = time.Now()
	d.mu.Unlock()
	d.log.Info("configuration reloaded", "changed", true, "keys", keys)
	return true, d.apply(ctx)
}

// parseLevel is log.level as a slog level (info when unknown; the config
// validates it).
func parseLevel(s string) slog.Level {
	var level slog.Level
	if err := level.UnmarshalText([]byte(s)); err != nil {
		return slog.LevelInfo
	}
	return level
}

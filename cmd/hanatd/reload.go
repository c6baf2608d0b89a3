package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/config"
)

// restartError is a reload refused because the new file changes keys
// that need a restart. It matches admin.ErrRestartNeeded.
type restartError struct {
	keys []string
}

func (e *restartError) Error() string {
	return strings.Join(e.keys, ", ") + ": " + admin.ErrRestartNeeded.Error()
}

func (e *restartError) Unwrap() error { return admin.ErrRestartNeeded }

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
	keys, err := config.ChangedKeys(old, cfg)
	if err != nil {
		return false, fmt.Errorf("reload %s: %w", d.configPath, err)
	}
	var restart []string
	for _, k := range keys {
		if !config.LiveKey(k) {
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

package datapath

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
)

// HostSysctls are the sysctls of the host's own namespace, with the
// values to restore recorded in stateDir.
func HostSysctls(stateDir string) *Sysctls {
	return &Sysctls{ProcRoot: "/proc/sys", StatePath: filepath.Join(stateDir, "sysctl.json")}
}

// Cleanup removes exactly what the slow path created in the host's
// namespace: its nftables table and the sysctl changes recorded in
// stateDir (restored to the values before).
func Cleanup(ctx context.Context, log *slog.Logger, stateDir string) error {
	var errs []error
	removed, err := NewSlowpath(log, -1).Remove(ctx)
	if err != nil {
		errs = append(errs, err)
	} else if removed {
		log.Info("removed nftables table", "table", "inet "+TableName)
	} else {
		log.Info("no nftables table to remove", "table", "inet "+TableName)
	}
	results, err := HostSysctls(stateDir).Restore(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, r := range results {
		log.Info("sysctl restored", "key", r.Key, "now", r.Now)
	}
	return errors.Join(errs...)
}

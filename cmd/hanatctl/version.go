package main

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime/debug"

	"github.com/hanat/hanat/admin"
)

// version is set at build time (-ldflags "-X main.version=…", see the
// Makefile); "dev" otherwise.
var version = "dev"

// clientVersion is version, or for a plain `go build` the module version
// or VCS revision the toolchain recorded.
func clientVersion() string {
	if version != "dev" {
		return version
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			return "dev-" + s.Value[:12]
		}
	}
	return version
}

// versionInfo is `hanatctl --json version`.
type versionInfo struct {
	Client string `json:"client"`
	// Daemon is hanatd's version; empty with --client or when hanatd did
	// not answer (then Error says why and the exit code is 1).
	Daemon string `json:"daemon,omitempty"`
	API    string `json:"api"`
	Error  string `json:"error,omitempty"`
}

func cmdVersion(ctx context.Context, e *env) error {
	vi := versionInfo{Client: clientVersion(), API: admin.APIVersion}
	var err error
	if !e.opts.clientOnly {
		var st admin.Status
		if st, err = e.client.Status(ctx); err != nil {
			vi.Error = err.Error()
		} else {
			vi.Daemon = st.Version
		}
	}
	if e.opts.json {
		b, jerr := json.Marshal(vi)
		if jerr != nil {
			return jerr
		}
		if perr := printRaw(e.stdout, b); perr != nil {
			return perr
		}
		return err
	}
	fmt.Fprintf(e.stdout, "hanatctl %s (admin API %s)\n", vi.Client, vi.API)
	if vi.Daemon != "" {
		fmt.Fprintf(e.stdout, "hanatd   %s\n", clean(vi.Daemon))
	}
	return err
}

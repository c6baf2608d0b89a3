package main

import (
	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/config"
	"github.com/hanat/hanat/fastpath"
)

// fastpathConfig is what the configuration asks of the fast path.
func fastpathConfig(cfg *config.Config) fastpath.Config {
	return fastpath.Config{
		Enabled:        cfg.Fastpath.Enabled,
		Mode:           cfg.Fastpath.Mode,
		TCPTimeout:     cfg.Sysctl.TCPEstablishedTimeout.Duration,
		UDPTimeout:     cfg.Sysctl.UDPStreamTimeout.Duration,
		SysctlsManaged: cfg.Sysctl.Manage,
	}
}

// fastpathStatus is the fast path as the admin API shows it.
func fastpathStatus(s fastpath.Status) admin.FastpathStatus {
	st := admin.FastpathStatus{Mode: s.Mode, Reason: s.Reason, MaxFlows: s.MaxConnections}
	for _, in := range s.Interfaces {
		st.Interfaces = append(st.Interfaces, admin.FastpathInterface{Name: in.Name, Mode: in.Mode, Error: in.Error, Note: in.Note})
	}
	if c := s.Counters; c != nil {
		st.Hits, st.Misses = c.Hits, c.Misses
		st.Pass = fastpath.PassCounters(*c)
	}
	if e := s.Engine; e != nil {
		st.OffloadedFlows, st.PendingFlows = e.Offloaded, e.Pending
		st.Offload = map[string]uint64{
			"events": e.Events, "events_dropped": e.EventsDropped, "events_skipped": e.EventsSkipped, "overflows": e.Overflows, "resyncs": e.Resyncs,
			"offloads": e.Offloads, "removals": e.Removals, "refreshes": e.Refreshes, "expired": e.Expired,
			"evicted": e.Evicted, "full": e.Full, "path_errors": e.PathErrors, "map_errors": e.MapErrors,
			"stale_entries": e.StaleEntries, "idle_handbacks": e.IdleHandbacks,
			"sweeps": e.Sweeps, "sweep_last_us": e.SweepMicros,
		}
	} else if s.EngineError != "" && st.Reason == "" {
		st.Reason = "offload engine: " + s.EngineError
	}
	return st
}

package ha

// Counters are the HA node's cumulative counters, kept in one place (the
// Engine's, see Engine.Counters): the Engine counts its decisions, the
// Manager its calls. The heartbeats received are the Receiver's
// (ReceiverStats).
type Counters struct {
	// The Engine's decisions.
	Claims, Releases   uint64
	HealthChanges      uint64
	MaintenanceChanges uint64
	// GiveTimeouts: a table handed to the peer was not taken in time;
	// TakeoverTimeouts: the peer did not release a table an operator
	// takeover asked for in time.
	GiveTimeouts     uint64
	TakeoverTimeouts uint64
	// HandoverRewrites: a table claimed at the peer's handover still
	// pointed at the peer and was written.
	HandoverRewrites uint64
	// ObservationsBeforeWrite and ObservationsStaleAfterWrite are
	// describe answers ignored: possibly older than our own write, or
	// within writeSettle of it.
	ObservationsBeforeWrite     uint64
	ObservationsStaleAfterWrite uint64

	// The Manager's calls. RouteWrites counts the writes that changed a
	// route table.
	RouteWrites         uint64
	RouteWriteErrors    uint64
	EIPAssociations     uint64
	TakeoverErrors      uint64 // Options.Takeover failed (the routes moved anyway)
	HeartbeatsSent      uint64
	HeartbeatSendErrors uint64
}

// Named returns the counters by their status names (the admin socket's
// "counters"): the Engine's decision counters once they are non-zero, the
// Manager's call counters always.
func (c Counters) Named() map[string]uint64 {
	out := map[string]uint64{
		"route_writes":          c.RouteWrites,
		"route_write_errors":    c.RouteWriteErrors,
		"eip_associations":      c.EIPAssociations,
		"heartbeats_sent":       c.HeartbeatsSent,
		"heartbeat_send_errors": c.HeartbeatSendErrors,
	}
	for name, v := range map[string]uint64{
		"claims":                         c.Claims,
		"takeover_errors":                c.TakeoverErrors,
		"releases":                       c.Releases,
		"health_changes":                 c.HealthChanges,
		"maintenance_changes":            c.MaintenanceChanges,
		"give_timeouts":                  c.GiveTimeouts,
		"takeover_timeouts":              c.TakeoverTimeouts,
		"handover_rewrites":              c.HandoverRewrites,
		"observations_before_write":      c.ObservationsBeforeWrite,
		"observations_stale_after_write": c.ObservationsStaleAfterWrite,
	} {
		if v != 0 {
			out[name] = v
		}
	}
	return out
}

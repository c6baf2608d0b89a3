package admin

import "time"

// FleetStatus is the node as one target of a Gateway Load Balancer
// (Status.Fleet; nil unless gwlb.enabled).
type FleetStatus struct {
	// Role is "fleet member".
	Role string `json:"role"`
	// HealthCheck is what answers GWLB's checks: "tcp 10.0.1.10:80" or
	// "http 10.0.1.10:80 /".
	HealthCheck    string    `json:"health_check"`
	Healthy        bool      `json:"healthy"`
	HealthNote     string    `json:"health_note,omitempty"` // why not healthy
	CheckedAt      time.Time `json:"checked_at,omitzero"`
	ResponderError string    `json:"responder_error,omitempty"`
	// GWLBAddrs are the GWLB addresses GENEVE is taken from, configured
	// or (GWLBAddrsFrom "EC2") discovered; Peers the GWLB addresses seen.
	GWLBAddrs     []string    `json:"gwlb_addrs"`
	GWLBAddrsFrom string      `json:"gwlb_addrs_from,omitempty"` // "configured" or "EC2"
	Peers         []FleetPeer `json:"peers"`
	// Lifecycle is the Auto Scaling target lifecycle state last read at
	// LifecycleAt ("" then: in no Auto Scaling group; LifecycleAt zero:
	// never read, or not watched).
	Lifecycle      string     `json:"lifecycle,omitempty"`
	LifecycleAt    time.Time  `json:"lifecycle_at,omitzero"`
	LifecycleError string     `json:"lifecycle_error,omitempty"`
	Drain          FleetDrain `json:"drain"`
	// LifecycleAction is the completion of the scale-in's lifecycle
	// action after a lifecycle drain (nil: not attempted).
	LifecycleAction *FleetLifecycleAction `json:"lifecycle_action,omitempty"`
	// FlowsPerEndpoint counts the datapath's flows by GWLB endpoint
	// (vpce-…).
	FlowsPerEndpoint map[string]int `json:"flows_per_endpoint"`
	FlowsError       string         `json:"flows_error,omitempty"`
	// Datapath counts what the GWLB datapath passed and refused, by reason
	// (package gwlb's Reasons); empty before it is attached.
	Datapath      map[string]uint64 `json:"datapath,omitempty"`
	DatapathError string            `json:"datapath_error,omitempty"`
}

// FleetPeer is one GWLB address seen: by its health checks, its flows or
// both.
type FleetPeer struct {
	Address   string    `json:"address"`
	LastCheck time.Time `json:"last_check,omitzero"`
	Checks    uint64    `json:"checks"`
	Flows     int       `json:"flows"`
}

// FleetLifecycleAction is the completion of the scale-in's lifecycle
// action: what was completed (or tried: "i-… of group G, hook H:
// CONTINUE"), when, and why it failed ("": it did not).
type FleetLifecycleAction struct {
	Action string    `json:"action"`
	At     time.Time `json:"at"`
	Error  string    `json:"error,omitempty"`
}

// FleetDrain is the planned removal: not started, running or ended.
type FleetDrain struct {
	Draining bool      `json:"draining"`
	Since    time.Time `json:"since,omitzero"`
	Reason   string    `json:"reason,omitempty"`
	// LeftMS is the time until the deregistration delay passes (while
	// running); Flows the last count (-1: none yet).
	LeftMS    int64  `json:"left_ms"`
	Flows     int    `json:"flows"`
	LastError string `json:"last_error,omitempty"`
	// Ended is how it ended ("last flow ended", "deregistration delay
	// passed", "cut short"); "" while running or not started.
	Ended     string `json:"ended,omitempty"`
	TookMS    int64  `json:"took_ms,omitempty"`
	FlowsLeft int    `json:"flows_left,omitempty"`
}

// Package admin is hanatd's admin API: plain HTTP/1.1 over a unix socket
// (default /run/hanat/admin.sock), versioned paths under /v1/, JSON bodies
// and peer-credential authorization.
//
// Any process that can connect to the socket (mode 0660, root:hanat) may
// read; only root and members of the admin group may call mutating routes.
// The package knows nothing of the datapath, conntrack or the cloud: it
// defines its own API types and the daemon adapts itself to [Backend].
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

const (
	// APIVersion is the version of the admin API spoken by this package.
	// It is sent in every response in the [VersionHeader] header and is the
	// first element of every path (/v1/...).
	APIVersion = "1"
	// VersionHeader is the response header carrying [APIVersion].
	VersionHeader = "Hanat-Api-Version"
	// DefaultSocketPath is where hanatd listens unless configured otherwise.
	DefaultSocketPath = "/run/hanat/admin.sock"
	// DefaultGroup is the group whose members may use mutating routes.
	DefaultGroup = "hanat"
	// MaxRequestBody is the largest request body the server accepts.
	MaxRequestBody = 64 << 10
)

// Backend is what the daemon provides to the admin server. Every method
// gets the request's context and must return when it is done.
type Backend interface {
	Status(ctx context.Context) (Status, error)
	Flows(ctx context.Context, q FlowsQuery) (FlowsResponse, error)
	// Config returns the effective configuration as a JSON object.
	Config(ctx context.Context) (json.RawMessage, error)
	Reload(ctx context.Context, req ReloadRequest) (ReloadResponse, error)
	// Doctor runs the NAT troubleshooting checklist.
	Doctor(ctx context.Context) (DoctorReport, error)
}

// Status is the answer to GET /v1/status.
type Status struct {
	Version        string    `json:"version"`
	Node           string    `json:"node"` // hostname
	StartedAt      time.Time `json:"started_at,omitzero"`
	ConfigLoadedAt time.Time `json:"config_loaded_at,omitzero"`
	ConfigPath     string    `json:"config_path"`
	// Ready reports whether the datapath has been applied from the
	// current configuration.
	Ready       bool           `json:"ready"`
	NAT         NATStatus      `json:"nat"`
	Datapath    DatapathStatus `json:"datapath"`
	Sysctls     []Sysctl       `json:"sysctls"`
	Connections Connections    `json:"connections"`
	// Traffic is the NAT gateway's metrics (what /metrics and CloudWatch
	// publish).
	Traffic Traffic `json:"traffic"`
	// CloudWatch is the metrics publisher (nil when off).
	CloudWatch *CloudWatchStatus `json:"cloudwatch,omitempty"`
	// Cloud is what hanatd knows of the EC2 instance it runs on.
	Cloud CloudStatus `json:"cloud"`
	// HA is the route table ownership and the heartbeat pair (nil when
	// not running).
	HA *HAStatus `json:"ha,omitempty"`
	// Fleet is the node as a Gateway Load Balancer's target (nil unless
	// it is a fleet member).
	Fleet *FleetStatus `json:"fleet,omitempty"`
}

// NATStatus is the NAT the datapath implements.
type NATStatus struct {
	OutsideInterface string        `json:"outside_interface"`
	PrivateCIDRs     []string      `json:"private_cidrs"`
	SNATAddrs        []string      `json:"snat_addrs"`
	Ports            string        `json:"ports"` // SNAT source port range, e.g. "1024-65535"
	PortForwards     []PortForward `json:"port_forwards"`
}

// PortForward is one DNAT rule: Protocol/Port on the NAT to To (addr:port).
type PortForward struct {
	Name     string `json:"name"`
	Protocol string `json:"protocol"`
	Port     int    `json:"port"`
	To       string `json:"to"`
}

// DatapathStatus describes the nftables slow path (and later the fast path).
type DatapathStatus struct {
	Table       string    `json:"table"` // e.g. "inet hanat"
	Present     bool      `json:"present"`
	LastApplied time.Time `json:"last_applied,omitzero"`
	LastError   string    `json:"last_error"`
	// Counters are the table's named counters (e.g. dropped traffic).
	Counters map[string]Counter `json:"counters"`
	// Fastpath is the fast path's backend: "native", "generic", "tc" or "off".
	Fastpath string `json:"fastpath"`
	// FastpathDetail says why the fast path is off or generic, where it
	// runs, what it offloaded and how its packets went.
	FastpathDetail FastpathStatus `json:"fastpath_detail"`
}

// FastpathStatus is the XDP fast path and its conntrack offload engine.
type FastpathStatus struct {
	Mode       string              `json:"mode"` // native, generic, tc or off
	Reason     string              `json:"reason,omitempty"`
	Interfaces []FastpathInterface `json:"interfaces,omitempty"`
	// OffloadedFlows are connections in the fast path now; PendingFlows
	// are offloadable ones waiting for a path (e.g. an unresolved
	// neighbour); MaxFlows bounds OffloadedFlows.
	OffloadedFlows int `json:"offloaded_flows"`
	PendingFlows   int `json:"pending_flows"`
	MaxFlows       int `json:"max_flows"`
	// Hits are packets the fast path forwarded; Misses TCP/UDP packets of
	// flows not in its map (the slow path took them); Pass counts the
	// other packets it sent to the slow path, by reason (syn, fin, rst,
	// fragment, ip_options, ttl, not_tcp_udp, too_big, not_ipv4, parse,
	// redirect).
	Hits   uint64            `json:"hits"`
	Misses uint64            `json:"misses"`
	Pass   map[string]uint64 `json:"pass,omitempty"`
	// Offload counts what the offload engine did (events, events_dropped,
	// events_skipped, overflows, resyncs, offloads, removals, refreshes, expired, evicted,
	// full, path_errors, map_errors, stale_entries).
	Offload map[string]uint64 `json:"offload,omitempty"`
}

// FastpathInterface is the fast path on one interface.
type FastpathInterface struct {
	Name  string `json:"name"`
	Mode  string `json:"mode"` // native, generic, tc or off
	Error string `json:"error,omitempty"`
	// Note says why this backend (e.g. why tc and not native XDP).
	Note string `json:"note,omitempty"`
}

// Counter is a packet and byte count.
type Counter struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Sysctl is one kernel setting the NAT needs, as wanted and as found.
type Sysctl struct {
	Key     string `json:"key"`
	Want    string `json:"want"`
	Now     string `json:"now"`
	Applied bool   `json:"applied"`
	Note    string `json:"note"`
}

// Connections counts the flows NATed by hanat.
//
// The counts come from hanatd's one periodic reading of the conntrack
// table, not from a dump per request: ReadAt is when that reading
// finished, AgeMS its age when the status was made (-1: no reading yet),
// ReadTookMS what the dump cost. Error says why the last reading failed
// (the counts are then the last good ones).
type Connections struct {
	Active         int       `json:"active"`
	TCP            int       `json:"tcp"`
	UDP            int       `json:"udp"`
	ICMP           int       `json:"icmp"`
	Other          int       `json:"other"`
	TCPEstablished int       `json:"tcp_established"`
	ReadAt         time.Time `json:"read_at,omitzero"`
	AgeMS          int64     `json:"age_ms"`
	ReadTookMS     int64     `json:"read_took_ms"`
	Error          string    `json:"error,omitempty"`
}

// Traffic is the NAT gateway's metrics under their CloudWatch names.
// Counters are cumulative: the byte and packet counters since hanatd
// started (slow path rule counters, which hanatd carries across table
// replacements, plus the fast path's), PortAllocationErrors and
// IdleTimeouts as the kernel and hanatd's event watcher count them. The
// NAT gateway's directions: "source" is the private hosts, "destination"
// the hosts they talk to.
type Traffic struct {
	BytesInFromSource        uint64 `json:"bytes_in_from_source"`
	BytesOutToDestination    uint64 `json:"bytes_out_to_destination"`
	BytesInFromDestination   uint64 `json:"bytes_in_from_destination"`
	BytesOutToSource         uint64 `json:"bytes_out_to_source"`
	PacketsInFromSource      uint64 `json:"packets_in_from_source"`
	PacketsOutToDestination  uint64 `json:"packets_out_to_destination"`
	PacketsInFromDestination uint64 `json:"packets_in_from_destination"`
	PacketsOutToSource       uint64 `json:"packets_out_to_source"`
	// ConnectionAttempts counts first packets of flows from private hosts;
	// ConnectionsEstablished the flows that were answered.
	ConnectionAttempts     uint64 `json:"connection_attempts"`
	ConnectionsEstablished uint64 `json:"connections_established"`
	// PortAllocationErrors counts new flows that found no free SNAT port
	// (the kernel's conntrack insert_failed).
	PortAllocationErrors uint64 `json:"port_allocation_errors"`
	// IdleTimeouts counts flows that ended idle (still established when
	// the kernel removed them).
	IdleTimeouts uint64 `json:"idle_timeouts"`
	// PacketsDropped counts dropped packets by reason (invalid,
	// unsolicited, host_input).
	PacketsDropped map[string]uint64 `json:"packets_dropped,omitempty"`
	// Fastpath is "included" when the XDP fast path runs (its
	// per-direction totals are in the byte and packet counters), "off"
	// otherwise.
	Fastpath string `json:"fastpath,omitempty"`
}

// CloudWatchStatus is the CloudWatch metrics publisher.
type CloudWatchStatus struct {
	Namespace     string    `json:"namespace"`
	InstanceID    string    `json:"instance_id"`
	Interval      string    `json:"interval"`
	Publications  uint64    `json:"publications"` // successful PutMetricData batches
	LastPublished time.Time `json:"last_published,omitzero"`
	LastError     string    `json:"last_error,omitempty"`
}

// Flow is one NATed connection as the kernel's conntrack table sees it.
type Flow struct {
	ID       uint32 `json:"id"`
	Protocol string `json:"protocol"`
	State    string `json:"state"` // TCP state; empty for other protocols
	// Src and Dst are the original direction (private host → internet),
	// as addr:port (addr for ICMP).
	Src string `json:"src"`
	Dst string `json:"dst"`
	// NATSrc is the source after SNAT (where replies are addressed).
	NATSrc string `json:"nat_src"`
	// ReplySrc is the source of the reply direction.
	ReplySrc       string `json:"reply_src"`
	TimeoutSeconds int    `json:"timeout_seconds"`
	Assured        bool   `json:"assured"`
	PacketsOut     uint64 `json:"packets_out"`
	BytesOut       uint64 `json:"bytes_out"`
	PacketsIn      uint64 `json:"packets_in"`
	BytesIn        uint64 `json:"bytes_in"`
	// Offloaded is set while the flow is in the XDP fast path. The Fast*
	// counters are the packets and bytes the fast path forwarded for it
	// (the kernel's conntrack never sees those); they are included in
	// PacketsOut/BytesOut/PacketsIn/BytesIn. Updated every few seconds.
	Offloaded      bool   `json:"offloaded"`
	FastPacketsOut uint64 `json:"fast_packets_out,omitempty"`
	FastBytesOut   uint64 `json:"fast_bytes_out,omitempty"`
	FastPacketsIn  uint64 `json:"fast_packets_in,omitempty"`
	FastBytesIn    uint64 `json:"fast_bytes_in,omitempty"`
}

// FlowsQuery selects flows for GET /v1/flows. It travels as query
// parameters: ?limit=N&protocol=tcp|udp|icmp&src=IP.
type FlowsQuery struct {
	// Limit is the most flows returned; 0 means no limit.
	Limit int `json:"limit"`
	// Protocol is "", "tcp", "udp" or "icmp".
	Protocol string `json:"protocol"`
	// Src is a private source address ("" for all).
	Src string `json:"src"`
}

// FlowsResponse is the answer to GET /v1/flows. Total counts every flow
// matching the query; Truncated is set when Limit cut the list short.
type FlowsResponse struct {
	Flows     []Flow `json:"flows"`
	Total     int    `json:"total"`
	Truncated bool   `json:"truncated"`
}

// ReloadRequest is the body of POST /v1/reload. ConfigPath is optional and
// must equal the path hanatd runs from when set.
type ReloadRequest struct {
	ConfigPath string `json:"config_path,omitempty"`
}

// ErrRestartNeeded marks a reload refused because the new configuration
// changes settings hanatd reads only at start: nothing was applied, the
// running configuration stays in force. The server answers 409 Conflict
// with a message naming every such key.
var ErrRestartNeeded = errors.New("need a restart (systemctl restart hanatd); nothing was applied")

// ReloadResponse is the answer to POST /v1/reload.
type ReloadResponse struct {
	Changed bool   `json:"changed"`
	Message string `json:"message"`
}

// CloudStatus describes the EC2 integration. OnEC2 is false off EC2 (no
// IMDS), where Message says hanatd runs from its config file alone.
type CloudStatus struct {
	OnEC2            bool   `json:"on_ec2"`
	Message          string `json:"message,omitempty"`
	InstanceID       string `json:"instance_id,omitempty"`
	Region           string `json:"region,omitempty"`
	AvailabilityZone string `json:"availability_zone,omitempty"`
	VPCID            string `json:"vpc_id,omitempty"`
	SubnetID         string `json:"subnet_id,omitempty"`
	ENIID            string `json:"eni_id,omitempty"`
	PublicIP         string `json:"public_ip,omitempty"`
	// SourceDestCheck is "disabled", "enabled" or "unknown: <why>".
	SourceDestCheck string `json:"source_dest_check,omitempty"`
}

// DoctorReport is the answer to GET /v1/doctor: the seed's troubleshooting
// checklist, each check pass/fail/warn/skip with the fix. OK is false when
// any check failed.
type DoctorReport struct {
	OK     bool          `json:"ok"`
	Checks []DoctorCheck `json:"checks"`
}

// DoctorCheck is one line of the checklist.
type DoctorCheck struct {
	ID     string `json:"id"`
	Title  string `json:"title"`
	Status string `json:"status"` // pass, fail, warn, skip
	Detail string `json:"detail,omitempty"`
	Fix    string `json:"fix,omitempty"`
}

// ErrorResponse is the body of every non-2xx response.
type ErrorResponse struct {
	Error string `json:"error"`
}

// Package config is hanatd's configuration file: the schema, its defaults,
// and a strict parser that reports every mistake with file, line, key path
// and value, e.g.
//
//	hanat.yaml:12: port_forwards[1].to: "10.0.11.5:70000": port out of range 1-65535
//
// An empty file is valid and yields Default(): on a stock EC2 instance the
// outside interface, private CIDRs and SNAT address are discovered at run
// time (by other packages), not here.
package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DefaultPath is where hanatd looks for its configuration file.
const DefaultPath = "/etc/hanat/hanat.yaml"

// Config is the whole hanatd configuration. The JSON form (served by the
// admin socket as the effective config) uses the same keys as the YAML file.
type Config struct {
	// Interfaces names the NAT's interfaces.
	Interfaces Interfaces `yaml:"interfaces" json:"interfaces"`
	// PrivateCIDRs are the prefixes whose sources are NATed. Empty means
	// discovered at run time (the VPC CIDRs from IMDS; outside EC2 the
	// RFC 1918 ranges). IPv4 only for now, canonical (no host bits).
	PrivateCIDRs []netip.Prefix `yaml:"private_cidrs" json:"private_cidrs"`
	// SNAT is what private sources are rewritten to.
	SNAT SNAT `yaml:"snat" json:"snat"`
	// PortForwards are inbound DNAT rules from the NAT address to private hosts.
	PortForwards []PortForward `yaml:"port_forwards" json:"port_forwards"`
	// Sysctl controls the kernel settings hanatd manages.
	Sysctl Sysctl `yaml:"sysctl" json:"sysctl"`
	// HostInput filters unsolicited traffic to the NAT instance itself.
	HostInput HostInput `yaml:"host_input" json:"host_input"`
	// Fastpath controls the XDP fast path.
	Fastpath Fastpath `yaml:"fastpath" json:"fastpath"`
	// Cloud is the EC2 integration (IMDSv2 discovery, EC2 API).
	Cloud Cloud `yaml:"cloud" json:"cloud"`
	// Metrics is the Prometheus endpoint.
	Metrics Metrics `yaml:"metrics" json:"metrics"`
	// HA is the heartbeat pair and route table ownership.
	HA HA `yaml:"ha" json:"ha"`
	// GWLB makes the node a member of a fleet behind a Gateway Load
	// Balancer (instead of half of a pair).
	GWLB GWLB `yaml:"gwlb" json:"gwlb"`
	// Admin is the admin unix socket.
	Admin Admin `yaml:"admin" json:"admin"`
	// Log is the daemon's logging.
	Log Log `yaml:"log" json:"log"`
	// StateDir holds hanatd's state across restarts (absolute path).
	StateDir string `yaml:"state_dir" json:"state_dir"`
}

// Interfaces names the NAT's interfaces.
type Interfaces struct {
	// Outside is the ENI NAT traffic leaves through. "" means the interface
	// holding the IPv4 default route, discovered at run time.
	Outside string `yaml:"outside" json:"outside"`
}

// SNAT is the source NAT applied to private sources going out.
type SNAT struct {
	// Addresses are the SNAT addresses. Empty means the primary IPv4
	// address of the outside interface. IPv4 unicast, no duplicates.
	Addresses []netip.Addr `yaml:"addresses" json:"addresses"`
	// Ports is the source port range used for SNAT (default 1024-65535,
	// as the NAT gateway uses).
	Ports PortRange `yaml:"ports" json:"ports"`
}

// PortForward forwards Protocol/Port on the NAT address to a private host.
type PortForward struct {
	// Name is an optional label: [a-z0-9-_.], at most 63 characters.
	Name string `yaml:"name" json:"name"`
	// Protocol is "tcp" or "udp".
	Protocol string `yaml:"protocol" json:"protocol"`
	// Port is the listen port on the NAT address, 1-65535.
	Port uint16 `yaml:"port" json:"port"`
	// To is the private host and port. In the file the port may be left
	// out ("10.0.11.5"), meaning the same port as Port; the parsed value
	// always carries the port.
	To netip.AddrPort `yaml:"to" json:"to"`
	// Sources is an optional allow-list of client prefixes; empty = any.
	Sources []netip.Prefix `yaml:"sources" json:"sources"`
}

// Sysctl is the kernel settings hanatd manages for the NAT.
type Sysctl struct {
	// Manage makes hanatd set the NAT sysctls (default true).
	Manage bool `yaml:"manage" json:"manage"`
	// ConntrackMax is nf_conntrack_max. 0 = sized from the instance
	// memory; otherwise 1024..67108864.
	ConntrackMax int `yaml:"conntrack_max" json:"conntrack_max"`
	// TCPEstablishedTimeout is nf_conntrack_tcp_timeout_established
	// (default 350s, the NAT gateway's idle timeout; 10s..5d).
	TCPEstablishedTimeout Duration `yaml:"tcp_established_timeout" json:"tcp_established_timeout"`
	// UDPTimeout is nf_conntrack_udp_timeout (default 30s; 1s..1d).
	UDPTimeout Duration `yaml:"udp_timeout" json:"udp_timeout"`
	// UDPStreamTimeout is nf_conntrack_udp_timeout_stream (default 120s; 1s..1d).
	UDPStreamTimeout Duration `yaml:"udp_stream_timeout" json:"udp_stream_timeout"`
}

// Metrics configures the Prometheus endpoint.
type Metrics struct {
	// Listen is the HTTP address of /metrics (default 127.0.0.1:9469,
	// loopback only); "" turns the endpoint off.
	Listen string `yaml:"listen" json:"listen"`
	// CloudWatch publishes the NAT gateway's metrics to CloudWatch.
	CloudWatch CloudWatch `yaml:"cloudwatch" json:"cloudwatch"`
}

// CloudWatch configures publishing the NAT gateway's metrics (the same
// names: ActiveConnectionCount, BytesOutToDestination, …) to CloudWatch
// with an InstanceId dimension. It needs IMDS (the instance id) and
// cloudwatch:PutMetricData, which packaging/iam-policy.json allows for the
// namespaces "hanat" and "hanat/*".
type CloudWatch struct {
	// Enabled turns publishing on (default false).
	Enabled bool `yaml:"enabled" json:"enabled"`
	// Namespace of the metrics (default "hanat"; AWS/ names are AWS's).
	Namespace string `yaml:"namespace" json:"namespace"`
	// Interval between two publications, each one PutMetricData batch
	// (default 60s, the NAT gateway's period; 1s..1h).
	Interval Duration `yaml:"interval" json:"interval"`
	// Endpoint overrides the CloudWatch endpoint (a VPC interface
	// endpoint); "" keeps the SDK's, which honours
	// AWS_ENDPOINT_URL_CLOUDWATCH.
	Endpoint string `yaml:"endpoint" json:"endpoint"`
}

// Cloud configures the EC2 integration.
type Cloud struct {
	// Discover turns on IMDSv2 discovery and the EC2 calls (default true).
	// Off EC2 hanatd notices the missing IMDS by itself; false skips even
	// the attempt.
	Discover bool `yaml:"discover" json:"discover"`
	// IMDSEndpoint overrides http://169.254.169.254 (the SDK's
	// AWS_EC2_METADATA_SERVICE_ENDPOINT works too).
	IMDSEndpoint string `yaml:"imds_endpoint" json:"imds_endpoint"`
	// EC2Endpoint overrides the regional EC2 endpoint, e.g. a VPC interface
	// endpoint (the SDK's AWS_ENDPOINT_URL_EC2 works too).
	EC2Endpoint string `yaml:"ec2_endpoint" json:"ec2_endpoint"`
	// ManageSourceDestCheck lets hanatd disable the source/destination
	// check on the ENIs it forwards through (default true).
	ManageSourceDestCheck bool `yaml:"manage_source_dest_check" json:"manage_source_dest_check"`
}

// HostInput filters traffic addressed to the NAT instance itself, as the
// NAT gateway accepts no unsolicited inbound. Replies, loopback, ICMP and
// sources inside the private CIDRs (the VPC: peers, health checks) always
// pass; from elsewhere only the listed ports are open.
type HostInput struct {
	// Filter turns the filter on (default true).
	Filter bool `yaml:"filter" json:"filter"`
	// TCPPorts open to any source (default [22] for SSH).
	TCPPorts []uint16 `yaml:"tcp_ports" json:"tcp_ports"`
	// UDPPorts open to any source (default none).
	UDPPorts []uint16 `yaml:"udp_ports" json:"udp_ports"`
}

// Fastpath controls the XDP fast path.
type Fastpath struct {
	// Enabled turns the XDP fast path on (default true).
	Enabled bool `yaml:"enabled" json:"enabled"`
	// Mode is the fast path's backend: auto (native XDP where the driver
	// and MTU allow it, else tc), xdp (native XDP), tc, or xdp-generic
	// (generic XDP, only when asked: it turns GRO off); native and
	// generic are accepted for xdp and xdp-generic (default auto).
	Mode string `yaml:"mode" json:"mode"`
	// OffloadAfterPackets is how many packets (both directions) an
	// established flow carries through the slow path before it is
	// offloaded (default 16; 0 offloads at the first established packet).
	// Short flows stay in the slow path, where they are cheapest.
	OffloadAfterPackets int `yaml:"offload_after_packets" json:"offload_after_packets"`
}

// Admin is the admin unix socket.
type Admin struct {
	// Socket is the socket path (absolute; default /run/hanat/admin.sock).
	Socket string `yaml:"socket" json:"socket"`
	// Group may write through the socket besides root (default "hanat").
	Group string `yaml:"group" json:"group"`
}

// Log is the daemon's logging.
type Log struct {
	// Level is debug, info, warn or error (default info).
	Level string `yaml:"level" json:"level"`
	// Format is text or json (default text).
	Format string `yaml:"format" json:"format"`
}

// Enumerations accepted by the schema.
const (
	ProtocolTCP = "tcp"
	ProtocolUDP = "udp"

	FastpathAuto       = "auto"
	FastpathXDP        = "xdp"
	FastpathTC         = "tc"
	FastpathXDPGeneric = "xdp-generic"
	FastpathNative     = "native"  // alias of xdp
	FastpathGeneric    = "generic" // alias of xdp-generic
)

// Default returns the configuration an empty file yields.
func Default() *Config {
	return &Config{
		SNAT: SNAT{Ports: PortRange{Min: 1024, Max: 65535}},
		Sysctl: Sysctl{
			Manage:                true,
			ConntrackMax:          0,
			TCPEstablishedTimeout: Duration{350 * time.Second},
			UDPTimeout:            Duration{30 * time.Second},
			UDPStreamTimeout:      Duration{120 * time.Second},
		},
		HostInput: HostInput{Filter: true, TCPPorts: []uint16{22}},
		Fastpath:  Fastpath{Enabled: true, Mode: FastpathAuto, OffloadAfterPackets: 16},
		Cloud:     Cloud{Discover: true, ManageSourceDestCheck: true},
		Metrics:   Metrics{Listen: "127.0.0.1:9469", CloudWatch: CloudWatch{Namespace: "hanat", Interval: Duration{time.Minute}}},
		Admin:     Admin{Socket: "/run/hanat/admin.sock", Group: "hanat"},
		HA:        defaultHA(),
		GWLB:      defaultGWLB(),
		Log:       Log{Level: "info", Format: "text"},
		StateDir:  "/var/lib/hanat",
	}
}

// Clone returns a deep copy of c (nil for nil).
func (c *Config) Clone() *Config {
	if c == nil {
		return nil
	}
	n := *c
	n.PrivateCIDRs = slices.Clone(c.PrivateCIDRs)
	n.SNAT.Addresses = slices.Clone(c.SNAT.Addresses)
	n.HostInput.TCPPorts = slices.Clone(c.HostInput.TCPPorts)
	n.HostInput.UDPPorts = slices.Clone(c.HostInput.UDPPorts)
	n.HA = c.HA.clone()
	n.GWLB = c.GWLB.clone()
	if c.PortForwards != nil {
		n.PortForwards = make([]PortForward, len(c.PortForwards))
		for i, pf := range c.PortForwards {
			pf.Sources = slices.Clone(pf.Sources)
			n.PortForwards[i] = pf
		}
	}
	return &n
}

// Equal reports whether c and o configure the same thing. A nil list and
// an empty one are equal (both mean "not given").
func (c *Config) Equal(o *Config) bool {
	if c == nil || o == nil {
		return c == o
	}
	return c.Interfaces == o.Interfaces &&
		slices.Equal(c.PrivateCIDRs, o.PrivateCIDRs) &&
		slices.Equal(c.SNAT.Addresses, o.SNAT.Addresses) &&
		c.SNAT.Ports == o.SNAT.Ports &&
		slices.EqualFunc(c.PortForwards, o.PortForwards, PortForward.Equal) &&
		c.Sysctl == o.Sysctl &&
		c.HostInput.Filter == o.HostInput.Filter &&
		slices.Equal(c.HostInput.TCPPorts, o.HostInput.TCPPorts) &&
		slices.Equal(c.HostInput.UDPPorts, o.HostInput.UDPPorts) &&
		c.Fastpath == o.Fastpath &&
		c.Cloud == o.Cloud &&
		c.Metrics == o.Metrics &&
		c.Admin == o.Admin &&
		c.HA.equal(o.HA) &&
		c.GWLB.equal(o.GWLB) &&
		c.Log == o.Log &&
		c.StateDir == o.StateDir
}

// Equal reports whether p and o are the same port forward.
func (p PortForward) Equal(o PortForward) bool {
	return p.Name == o.Name && p.Protocol == o.Protocol && p.Port == o.Port &&
		p.To == o.To && slices.Equal(p.Sources, o.Sources)
}

// PortRange is an inclusive range of ports, written "1024-65535".
type PortRange struct {
	Min uint16
	Max uint16
}

// String returns the range as written in the file, "min-max".
func (r PortRange) String() string {
	return strconv.Itoa(int(r.Min)) + "-" + strconv.Itoa(int(r.Max))
}

// MarshalText implements encoding.TextMarshaler ("1024-65535").
func (r PortRange) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler. It parses the syntax
// only; Config.Validate checks min >= 1 and min <= max.
func (r *PortRange) UnmarshalText(b []byte) error {
	v, err := ParsePortRange(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// ParsePortRange parses "min-max" (spaces around '-' allowed). Each end
// must be a decimal 0..65535; range checks are left to validation.
func ParsePortRange(s string) (PortRange, error) {
	r, msg := parsePortRange(s)
	if msg != "" {
		return PortRange{}, fmt.Errorf("parse port range %q: %s", s, msg)
	}
	return r, nil
}

func parsePortRange(s string) (PortRange, string) {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return PortRange{}, "expected a port range min-max, e.g. 1024-65535"
	}
	first, msg := parsePort(strings.TrimSpace(lo))
	if msg != "" {
		return PortRange{}, msg
	}
	last, msg := parsePort(strings.TrimSpace(hi))
	if msg != "" {
		return PortRange{}, msg
	}
	return PortRange{Min: first, Max: last}, ""
}

// parsePort parses a decimal port. 0 is returned as is: validation rejects
// it with a message that knows the context.
func parsePort(s string) (uint16, string) {
	if !isDecimal(s) {
		return 0, fmt.Sprintf("invalid port %q: not a decimal number", s)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > 65535 {
		return 0, msgPortRange
	}
	return uint16(n), ""
}

// isDecimal reports whether s is a non-empty run of ASCII digits.
func isDecimal(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Duration is a time.Duration written in the file as "350s", "5m50s",
// "1d12h" or a bare integer meaning seconds. It marshals to JSON and text
// as the time.Duration string form ("5m50s").
type Duration struct {
	time.Duration
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler with ParseDuration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// ParseDuration parses a Go duration ("350s", "5m50s"), a duration with a
// leading days part ("5d", "1d12h"), or a bare integer meaning seconds.
func ParseDuration(s string) (time.Duration, error) {
	d, msg := parseDuration(s)
	if msg != "" {
		return 0, fmt.Errorf("parse duration %q: %s", s, msg)
	}
	return d, nil
}

const msgDurationSyntax = "invalid duration: write e.g. 350s, 5m50s, 1d or a number of seconds"

func parseDuration(s string) (time.Duration, string) {
	const tooLarge = "duration too large"
	body := s
	neg := false
	if body != "" && (body[0] == '-' || body[0] == '+') {
		neg = body[0] == '-'
		body = body[1:]
	}
	if body == "" {
		return 0, msgDurationSyntax
	}
	if isDecimal(body) {
		n, err := strconv.ParseInt(body, 10, 64)
		if err != nil || n > int64(maxDuration/time.Second) {
			return 0, tooLarge
		}
		return sign(neg, time.Duration(n)*time.Second), ""
	}
	var days time.Duration
	if i := strings.IndexByte(body, 'd'); i > 0 && isDecimal(body[:i]) {
		n, err := strconv.ParseInt(body[:i], 10, 64)
		if err != nil || n > int64(maxDuration/(24*time.Hour)) {
			return 0, tooLarge
		}
		days = time.Duration(n) * 24 * time.Hour
		body = body[i+1:]
		if body == "" {
			return sign(neg, days), ""
		}
	}
	if c := body[0]; (c < '0' || c > '9') && c != '.' {
		// time.ParseDuration would accept a second sign here.
		return 0, msgDurationSyntax
	}
	rest, err := time.ParseDuration(body)
	if err != nil {
		return 0, msgDurationSyntax
	}
	if rest > maxDuration-days {
		return 0, tooLarge
	}
	return sign(neg, days+rest), ""
}

func sign(neg bool, d time.Duration) time.Duration {
	if neg {
		return -d
	}
	return d
}

const maxDuration = time.Duration(1<<63 - 1)

package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// GWLB health check defaults: a GENEVE target group checks TCP on port 80
// (HTTP: path "/"), and keeps a deregistering target's flows for 300 s.
const (
	DefaultGWLBHealthPort    = 80
	DefaultGWLBHealthPath    = "/"
	DefaultGWLBDeregDelay    = 300 * time.Second
	maxGWLBDeregDelay        = 3600 * time.Second // the target group's limit
	maxGWLBAddresses         = 64
	maxGWLBHealthPathLen     = 1024 // the target group's limit
	GWLBHealthProtocolTCP    = "tcp"
	GWLBHealthProtocolHTTP   = "http"
	msgGWLBHealthProtocolTLS = "HTTPS is not served (a fleet member has no certificate): use tcp or http"
)

// GWLB makes the node a fleet member: one target of an AWS Gateway Load
// Balancer among many, instead of half of a pair. Read once at start.
type GWLB struct {
	// Enabled turns fleet-member mode on (default false). It excludes a
	// pair: with it, ha.peer must be unset and hanatd does not touch route
	// tables (they point at the GWLB's endpoints).
	Enabled bool `yaml:"enabled" json:"enabled"`
	// Addresses are the GWLB's private IPs (its "ELB gwy/…" ENIs), the
	// only sources whose GENEVE is accepted. Empty: discovered from EC2.
	Addresses []netip.Addr `yaml:"addresses" json:"addresses"`
	// HealthCheck is the responder to the target group's health checks.
	HealthCheck GWLBHealthCheck `yaml:"health_check" json:"health_check"`
	// DeregistrationDelay bounds a drain: the target group's
	// deregistration_delay.timeout_seconds (default 300s; 0s-3600s).
	DeregistrationDelay Duration `yaml:"deregistration_delay" json:"deregistration_delay"`
	// LifecycleHook polls IMDS's Auto Scaling target lifecycle state and
	// drains on a scale-in (default true).
	LifecycleHook bool `yaml:"lifecycle_hook" json:"lifecycle_hook"`
	// LifecycleHookName is the group's scale-in lifecycle hook whose
	// action hanatd completes (CONTINUE) when the drain ends; "" (the
	// default) is the group's one hook on EC2_INSTANCE_TERMINATING, as
	// DescribeLifecycleHooks shows it.
	LifecycleHookName string `yaml:"lifecycle_hook_name" json:"lifecycle_hook_name"`
}

// GWLBHealthCheck is what the target group's health check asks.
type GWLBHealthCheck struct {
	// Address answered; unset: the instance's primary private IP, the
	// address GWLB checks.
	Address netip.Addr `yaml:"address" json:"address"`
	// Port (default 80, the GENEVE target group's default).
	Port uint16 `yaml:"port" json:"port"`
	// Protocol is tcp or http (default tcp, as the target group's).
	Protocol string `yaml:"protocol" json:"protocol"`
	// Path of an http check (default "/").
	Path string `yaml:"path" json:"path"`
}

func defaultGWLB() GWLB {
	return GWLB{
		HealthCheck:         GWLBHealthCheck{Port: DefaultGWLBHealthPort, Protocol: GWLBHealthProtocolTCP, Path: DefaultGWLBHealthPath},
		DeregistrationDelay: Duration{DefaultGWLBDeregDelay},
		LifecycleHook:       true,
	}
}

func (g GWLB) clone() GWLB {
	n := g
	n.Addresses = slices.Clone(g.Addresses)
	return n
}

func (g GWLB) equal(o GWLB) bool {
	return g.Enabled == o.Enabled && slices.Equal(g.Addresses, o.Addresses) && g.HealthCheck == o.HealthCheck &&
		g.DeregistrationDelay == o.DeregistrationDelay && g.LifecycleHook == o.LifecycleHook &&
		g.LifecycleHookName == o.LifecycleHookName
}

// decodeGWLB decodes the gwlb section.
func (d *decoder) decodeGWLB(g *GWLB, path string, v *yaml.Node) {
	d.mapping(path, v, map[string]field{
		"enabled":   d.boolean(&g.Enabled),
		"addresses": d.addrs(&g.Addresses),
		"health_check": func(path string, v *yaml.Node) {
			h := &g.HealthCheck
			d.mapping(path, v, map[string]field{
				"address":  d.addr(&h.Address),
				"port":     d.port(&h.Port),
				"protocol": d.str(&h.Protocol),
				"path":     d.str(&h.Path),
			})
		},
		"deregistration_delay": d.duration(&g.DeregistrationDelay),
		"lifecycle_hook":       d.boolean(&g.LifecycleHook),
		"lifecycle_hook_name":  d.str(&g.LifecycleHookName),
	})
}

func validateGWLB(k checker, g *GWLB, ha *HA) {
	if g.Enabled && ha.Peer.IsValid() {
		k.report("gwlb.enabled", "true", "a node is a pair member or a fleet member, not both: %s is set; remove it or turn gwlb off",
			k.ref("ha.peer", ha.Peer.String()))
	}
	if len(g.Addresses) > maxGWLBAddresses {
		k.report("gwlb.addresses", "", "at most %d GWLB addresses", maxGWLBAddresses)
	}
	seen := map[netip.Addr]int{}
	for i, a := range g.Addresses {
		p := fmt.Sprintf("gwlb.addresses[%d]", i)
		if k.d.suppressed(p) {
			continue
		}
		switch msg := checkAddr(a); {
		case msg != "":
			k.report(p, addrText(a), "%s", msg)
		case !a.IsGlobalUnicast():
			k.report(p, a.String(), "not a unicast address: give the private IP of one of the GWLB's ENIs")
		default:
			if j, dup := seen[a]; dup {
				k.report(p, a.String(), "duplicate of %s", k.ref(fmt.Sprintf("gwlb.addresses[%d]", j), a.String()))
			}
			seen[a] = i
		}
	}
	h := &g.HealthCheck
	if h.Address.IsValid() {
		if msg := checkAddr(h.Address); msg != "" {
			k.report("gwlb.health_check.address", addrText(h.Address), "%s", msg)
		} else if !h.Address.IsGlobalUnicast() && !h.Address.IsLoopback() {
			k.report("gwlb.health_check.address", h.Address.String(), "not a unicast address: give this instance's private IP")
		}
	} else if k.written("gwlb.health_check.address") && !k.d.suppressed("gwlb.health_check.address") {
		k.report("gwlb.health_check.address", "", "invalid address")
	}
	if h.Port == 0 {
		k.report("gwlb.health_check.port", "0", "%s", msgPortRange)
	}
	switch strings.ToLower(h.Protocol) {
	case GWLBHealthProtocolTCP, GWLBHealthProtocolHTTP:
		if h.Protocol != strings.ToLower(h.Protocol) {
			k.report("gwlb.health_check.protocol", h.Protocol, "write it in lower case: %s", strings.ToLower(h.Protocol))
		}
	case "https":
		k.report("gwlb.health_check.protocol", h.Protocol, "%s", msgGWLBHealthProtocolTLS)
	default:
		checkEnum(k, "gwlb.health_check.protocol", h.Protocol, GWLBHealthProtocolTCP, GWLBHealthProtocolHTTP)
	}
	switch {
	case h.Protocol == GWLBHealthProtocolTCP && k.written("gwlb.health_check.path") && h.Path != DefaultGWLBHealthPath:
		k.report("gwlb.health_check.path", h.Path, "a path needs protocol http (the tcp check only connects)")
	case !strings.HasPrefix(h.Path, "/"):
		k.report("gwlb.health_check.path", h.Path, "must start with /")
	case len(h.Path) > maxGWLBHealthPathLen:
		k.report("gwlb.health_check.path", h.Path, "longer than the target group's %d characters", maxGWLBHealthPathLen)
	case strings.ContainsFunc(h.Path, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == '?' || r == '#' }):
		k.report("gwlb.health_check.path", h.Path, "must be printable ASCII without spaces, '?' or '#'")
	}
	checkDuration(k, "gwlb.deregistration_delay", g.DeregistrationDelay, 0, maxGWLBDeregDelay, "0s-3600s (the target group's range)")
	if n := g.LifecycleHookName; n != "" && (len(n) > maxLifecycleHookNameLen || strings.ContainsFunc(n, notHookNameRune)) {
		k.report("gwlb.lifecycle_hook_name", n, "not a lifecycle hook name: 1-%d of A-Z a-z 0-9 - _ /", maxLifecycleHookNameLen)
	}
}

// maxLifecycleHookNameLen is Auto Scaling's limit on a hook's name.
const maxLifecycleHookNameLen = 255

// notHookNameRune is a rune Auto Scaling refuses in a hook's name
// ([A-Za-z0-9\-_\/]+).
func notHookNameRune(r rune) bool {
	return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' && r != '_' && r != '/'
}

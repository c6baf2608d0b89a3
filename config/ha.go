package config

import (
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

// DefaultHAPort is the UDP port of the HA heartbeat (the port memberlist,
// and so MetalLB, use too: open it between the pair only).
const DefaultHAPort = 7946

// DefaultSyncPort is the TCP port of the pair's state sync.
const DefaultSyncPort = 7947

// HA is the heartbeat pair and the ownership of the VPC's private route
// tables. Without a peer hanatd still owns its home route tables alone
// (a lone NAT instance re-points its AZ's routes at boot).
type HA struct {
	// Enabled lets hanatd manage route tables at all (default true).
	Enabled bool `yaml:"enabled" json:"enabled"`
	// Peer is the other node's private IPv4 address. Empty: single
	// instance.
	Peer netip.Addr `yaml:"peer" json:"peer"`
	// Port is the UDP heartbeat port on both nodes (default 7946).
	Port uint16 `yaml:"port" json:"port"`
	// Interval between heartbeats (default 200ms; 50ms-10s).
	Interval Duration `yaml:"interval" json:"interval"`
	// DeadAfter is how many missed heartbeats make the peer dead
	// (default 5, i.e. 1 s; 2-100).
	DeadAfter int `yaml:"dead_after" json:"dead_after"`
	// KeyFile holds the shared HMAC-SHA256 key (mode 0600, at least 16
	// bytes; default /etc/hanat/ha.key). Needed with a peer.
	KeyFile string `yaml:"key_file" json:"key_file"`
	// HomeRouteTables are this node's tables. Empty: discovered (private
	// route tables of the node's AZ whose 0.0.0.0/0 points at this node,
	// at its peer, at a stopped instance, or nowhere).
	HomeRouteTables []string `yaml:"home_route_tables" json:"home_route_tables"`
	// BackupRouteTables are the peer's tables this node takes over.
	// Empty: learned from the peer's heartbeats (configure them so a node
	// that starts while its peer is down can take them).
	BackupRouteTables []string `yaml:"backup_route_tables" json:"backup_route_tables"`
	// Preempt returns home tables from a healthy peer by handshake after
	// HoldDown (default true). false: only `hanatctl takeover` does.
	Preempt bool `yaml:"preempt" json:"preempt"`
	// HoldDown is how long this node and its peer must both be up and
	// healthy before home tables return (default 30s; 0-1h).
	HoldDown Duration `yaml:"hold_down" json:"hold_down"`
	// Health is the node's own health check.
	Health HAHealth `yaml:"health" json:"health"`
	// EIPs follow their route tables to the node that owns them. With
	// sync, an EIP that is not the node's own goes to its standby
	// secondary private IP, so the peer's connections keep their public
	// address.
	EIPs []HAEIP `yaml:"eips" json:"eips"`
	// Sync streams this node's NATed flows to its peer (TCP SyncPort,
	// encrypted with keys derived from KeyFile) so a failover keeps
	// established connections (default true; needs a peer). false: every
	// failover resets them, as with any NAT instance.
	Sync bool `yaml:"sync" json:"sync"`
	// SyncPort is the TCP port of the state sync on both nodes (default
	// 7947; allow it between the pair only).
	SyncPort uint16 `yaml:"sync_port" json:"sync_port"`
}

// HAHealth is the upstream check: TCP connects to Targets through the
// node's own public path; healthy when any answers and the datapath is up.
type HAHealth struct {
	// Targets are host:port. Empty: checkip.amazonaws.com:443 and the
	// regional EC2 endpoint on port 443.
	Targets []string `yaml:"targets" json:"targets"`
	// Interval between checks (default 1s; 100ms-1m).
	Interval Duration `yaml:"interval" json:"interval"`
	// Timeout of one connect (default 1s; 100ms-30s).
	Timeout Duration `yaml:"timeout" json:"timeout"`
}

// HAEIP is an Elastic IP that follows a group of route tables: it is
// associated (AllowReassociation) with the primary private IP of the node
// that owns them, so their clients keep one public address.
type HAEIP struct {
	AllocationID string   `yaml:"allocation_id" json:"allocation_id"`
	RouteTables  []string `yaml:"route_tables" json:"route_tables"`
}

func defaultHA() HA {
	return HA{
		Enabled:   true,
		Port:      DefaultHAPort,
		Sync:      true,
		SyncPort:  DefaultSyncPort,
		Interval:  Duration{200 * time.Millisecond},
		DeadAfter: 5,
		KeyFile:   "/etc/hanat/ha.key",
		Preempt:   true,
		HoldDown:  Duration{30 * time.Second},
		Health:    HAHealth{Interval: Duration{time.Second}, Timeout: Duration{time.Second}},
	}
}

func (h HA) clone() HA {
	n := h
	n.HomeRouteTables = slices.Clone(h.HomeRouteTables)
	n.BackupRouteTables = slices.Clone(h.BackupRouteTables)
	n.Health.Targets = slices.Clone(h.Health.Targets)
	if h.EIPs != nil {
		n.EIPs = make([]HAEIP, len(h.EIPs))
		for i, e := range h.EIPs {
			e.RouteTables = slices.Clone(e.RouteTables)
			n.EIPs[i] = e
		}
	}
	return n
}

func (h HA) equal(o HA) bool {
	return h.Enabled == o.Enabled && h.Peer == o.Peer && h.Port == o.Port && h.Interval == o.Interval &&
		h.DeadAfter == o.DeadAfter && h.KeyFile == o.KeyFile &&
		slices.Equal(h.HomeRouteTables, o.HomeRouteTables) && slices.Equal(h.BackupRouteTables, o.BackupRouteTables) &&
		h.Preempt == o.Preempt && h.HoldDown == o.HoldDown && h.Sync == o.Sync && h.SyncPort == o.SyncPort &&
		slices.Equal(h.Health.Targets, o.Health.Targets) && h.Health.Interval == o.Health.Interval &&
		h.Health.Timeout == o.Health.Timeout &&
		slices.EqualFunc(h.EIPs, o.EIPs, func(a, b HAEIP) bool {
			return a.AllocationID == b.AllocationID && slices.Equal(a.RouteTables, b.RouteTables)
		})
}

// decodeHA decodes the ha section.
func (d *decoder) decodeHA(h *HA, path string, v *yaml.Node) {
	d.mapping(path, v, map[string]field{
		"enabled":  d.boolean(&h.Enabled),
		"peer":     d.addr(&h.Peer),
		"port":     d.port(&h.Port),
		"interval": d.duration(&h.Interval),
		"dead_after": func(path string, n *yaml.Node) {
			if x, ok := d.integer(path, n, 0, 1_000_000, "out of range 2-100"); ok {
				h.DeadAfter = int(x)
			}
		},
		"key_file":            d.str(&h.KeyFile),
		"home_route_tables":   d.strings(&h.HomeRouteTables),
		"backup_route_tables": d.strings(&h.BackupRouteTables),
		"preempt":             d.boolean(&h.Preempt),
		"hold_down":           d.duration(&h.HoldDown),
		"sync":                d.boolean(&h.Sync),
		"sync_port":           d.port(&h.SyncPort),
		"health": func(path string, v *yaml.Node) {
			d.mapping(path, v, map[string]field{
				"targets":  d.strings(&h.Health.Targets),
				"interval": d.duration(&h.Health.Interval),
				"timeout":  d.duration(&h.Health.Timeout),
			})
		},
		"eips": func(path string, v *yaml.Node) {
			var out []HAEIP
			d.sequence(path, v, func(path string, _ int, v *yaml.Node) {
				var e HAEIP
				d.mapping(path, v, map[string]field{
					"allocation_id": d.str(&e.AllocationID),
					"route_tables":  d.strings(&e.RouteTables),
				})
				out = append(out, e)
			})
			h.EIPs = out
		},
	})
}

// strings decodes a list of strings.
func (d *decoder) strings(dst *[]string) field {
	return func(path string, v *yaml.Node) {
		out := []string{}
		d.sequence(path, v, func(path string, _ int, v *yaml.Node) {
			var s string
			d.str(&s)(path, v)
			out = append(out, s)
		})
		*dst = out
	}
}

var (
	rtbIDRE    = regexp.MustCompile(`^rtb-[0-9a-f]{1,32}$`)
	eipallocRE = regexp.MustCompile(`^eipalloc-[0-9a-f]{1,32}$`)
)

func validateHA(k checker, h *HA) {
	if h.Peer.IsValid() {
		if msg := checkAddr(h.Peer); msg != "" {
			k.report("ha.peer", addrText(h.Peer), "%s", msg)
		} else if !h.Peer.IsGlobalUnicast() {
			k.report("ha.peer", h.Peer.String(), "not a unicast address: give the peer's private IPv4 address")
		}
	} else if k.written("ha.peer") && !k.d.suppressed("ha.peer") {
		k.report("ha.peer", "", "invalid address")
	}
	if h.Port == 0 {
		k.report("ha.port", "0", "%s", msgPortRange)
	}
	if h.SyncPort == 0 {
		k.report("ha.sync_port", "0", "%s", msgPortRange)
	} else if h.SyncPort == h.Port {
		k.report("ha.sync_port", strconv.Itoa(int(h.SyncPort)), "the same as ha.port: give the state sync a port of its own")
	}
	checkSubsecond(k, "ha.interval", h.Interval, 50*time.Millisecond, 10*time.Second, "50ms-10s")
	if h.DeadAfter < 2 || h.DeadAfter > 100 {
		k.report("ha.dead_after", strconv.Itoa(h.DeadAfter), "out of range 2-100")
	}
	if h.Peer.IsValid() {
		if msg := checkAbsPath(h.KeyFile); msg != "" {
			k.report("ha.key_file", h.KeyFile, "%s (a peer needs the shared key)", msg)
		}
	} else if h.KeyFile != "" {
		if msg := checkAbsPath(h.KeyFile); msg != "" {
			k.report("ha.key_file", h.KeyFile, "%s", msg)
		}
	}
	seen := map[string]string{}
	checkTables := func(path string, ids []string) {
		for i, id := range ids {
			p := fmt.Sprintf("%s[%d]", path, i)
			switch {
			case !rtbIDRE.MatchString(id):
				k.report(p, id, "not a route table id (rtb-…)")
			case seen[id] != "":
				k.report(p, id, "also listed as %s", k.ref(seen[id], id))
			default:
				seen[id] = p
			}
		}
	}
	checkTables("ha.home_route_tables", h.HomeRouteTables)
	checkTables("ha.backup_route_tables", h.BackupRouteTables)
	if len(h.HomeRouteTables)+len(h.BackupRouteTables) > 32 {
		k.report("ha.home_route_tables", "", "at most 32 route tables for the pair")
	}
	checkSubsecond(k, "ha.hold_down", h.HoldDown, 0, time.Hour, "0s-1h")
	if len(h.Health.Targets) > 16 {
		k.report("ha.health.targets", "", "at most 16 targets")
	}
	for i, t := range h.Health.Targets {
		p := fmt.Sprintf("ha.health.targets[%d]", i)
		host, port, err := net.SplitHostPort(t)
		if err != nil || host == "" {
			k.report(p, t, "want host:port, e.g. checkip.amazonaws.com:443")
			continue
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			k.report(p, t, "%s", msgPortRange)
		}
	}
	checkSubsecond(k, "ha.health.interval", h.Health.Interval, 100*time.Millisecond, time.Minute, "100ms-1m")
	checkSubsecond(k, "ha.health.timeout", h.Health.Timeout, 100*time.Millisecond, 30*time.Second, "100ms-30s")
	allocs := map[string]int{}
	grouped := map[string]string{}
	for i, e := range h.EIPs {
		p := fmt.Sprintf("ha.eips[%d]", i)
		if k.d.suppressed(p) {
			continue
		}
		switch {
		case e.AllocationID == "":
			k.report(p+".allocation_id", "", "%s (eipalloc-…)", msgRequired)
		case !eipallocRE.MatchString(e.AllocationID):
			k.report(p+".allocation_id", e.AllocationID, "not an Elastic IP allocation id (eipalloc-…)")
		default:
			if j, dup := allocs[e.AllocationID]; dup {
				k.report(p+".allocation_id", e.AllocationID, "duplicate of %s", k.ref(fmt.Sprintf("ha.eips[%d].allocation_id", j), e.AllocationID))
			}
			allocs[e.AllocationID] = i
		}
		if len(e.RouteTables) == 0 {
			k.report(p+".route_tables", "", "%s: the route tables this EIP follows", msgRequired)
		}
		for j, id := range e.RouteTables {
			q := fmt.Sprintf("%s.route_tables[%d]", p, j)
			switch {
			case !rtbIDRE.MatchString(id):
				k.report(q, id, "not a route table id (rtb-…)")
			case grouped[id] != "":
				k.report(q, id, "already follows %s", k.ref(grouped[id], ""))
			default:
				grouped[id] = p
			}
		}
	}
}

// checkSubsecond checks a duration that may have a millisecond part.
func checkSubsecond(k checker, path string, d Duration, lo, hi time.Duration, rng string) {
	switch {
	case d.Duration%time.Millisecond != 0:
		k.report(path, d.String(), "must be a whole number of milliseconds")
	case d.Duration < lo || d.Duration > hi:
		k.report(path, d.String(), "out of range %s", rng)
	}
}

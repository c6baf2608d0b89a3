package vpcsim

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hanat/hanat/internal/vpcsim/ec2sim"
)

// FleetMember is what a hanatd fleet member behind the lab's GWLB is
// configured with (hanat-lab demo --gwlb and the fleet e2e share it).
type FleetMember struct {
	// CheckPort is the target group's TCP health check port.
	CheckPort uint16
	// DeregistrationDelay is gwlb.deregistration_delay: the longest a
	// drain (SIGTERM) keeps the member's flows.
	DeregistrationDelay time.Duration
	// Discover names no gwlb.addresses: hanatd reads them from EC2 (the
	// GWLB's ENIs).
	Discover bool
	// LifecycleHook turns gwlb.lifecycle_hook on: hanatd drains on a
	// scale-in (ScaleIn) and completes the hook's lifecycle action.
	LifecycleHook bool
}

// FleetConfig is the gwlb and ha.health part of a fleet member's hanatd
// config: gwlb.enabled with the lab GWLB's addresses (none with
// Discover), a TCP health check on m.CheckPort, the lifecycle watch only
// with m.LifecycleHook, and the internet's HTTP server as the member's
// own health target.
func (l *Lab) FleetConfig(m FleetMember) string {
	var addrs []string
	if g := l.gwlbStatus(); g != nil && !m.Discover {
		for _, n := range g.Nodes {
			addrs = append(addrs, n.Addr.String())
		}
	}
	return fmt.Sprintf(`gwlb:
  enabled: true
  addresses: [%s]
  health_check:
    port: %d
    protocol: tcp
  deregistration_delay: %s
  lifecycle_hook: %t
ha:
  health:
    targets: ["%s"]
    interval: 200ms
    timeout: 500ms
`, strings.Join(addrs, ", "), m.CheckPort, m.DeregistrationDelay, m.LifecycleHook, l.Internet().HTTPAddr)
}

// PrepareFleetMember makes instance's ENI compute checksums in software,
// as an ENA does for an encapsulated packet (it offloads no inner
// checksum): a veth would pass the reply's inner UDP checksum on
// unfinished (CHECKSUM_PARTIAL) inside the GENEVE, and the lab's GWLB
// would hand the private host a datagram its kernel drops (InCsumErrors).
func (l *Lab) PrepareFleetMember(ctx context.Context, instance string) error {
	in := l.Instance(instance)
	if in == nil {
		return fmt.Errorf("vpcsim fleet member %q: unknown instance", instance)
	}
	if out, err := in.NS.Run(ctx, "ethtool", "-K", "eth0", "tx", "off"); err != nil {
		return fmt.Errorf("ethtool -K eth0 tx off in %s: %w\n%s", instance, err, out)
	}
	return nil
}

// Target is the GWLB's target on instance (false: none).
func (g *StatusGWLB) Target(instance string) (StatusGWLBTarget, bool) {
	if g == nil {
		return StatusGWLBTarget{}, false
	}
	for _, t := range g.Targets {
		if t.Instance == instance {
			return t, true
		}
	}
	return StatusGWLBTarget{}, false
}

// FleetGroup puts the instances (by name) in Auto Scaling group group
// with one scale-in lifecycle hook, hook, of heartbeat timeout heartbeat
// (default result CONTINUE), as packaging/terraform-fleet makes it.
func (l *Lab) FleetGroup(group, hook string, heartbeat time.Duration, instances ...string) error {
	ids := make([]string, len(instances))
	for i, name := range instances {
		in := l.Instance(name)
		if in == nil {
			return fmt.Errorf("vpcsim Auto Scaling group %q: unknown instance %q", group, name)
		}
		ids[i] = in.ID
	}
	return l.model.CreateAutoScalingGroup(group, ids, []ec2sim.LifecycleHook{
		{Name: hook, Transition: ec2sim.TransitionTerminating, HeartbeatTimeout: heartbeat}})
}

// ScaleIn has Auto Scaling terminate instance (by name): it waits in
// Terminating:Wait for its hook, and IMDS says Terminated.
func (l *Lab) ScaleIn(instance string) error {
	in := l.Instance(instance)
	if in == nil {
		return fmt.Errorf("vpcsim scale in %q: unknown instance", instance)
	}
	return l.model.ScaleIn(in.ID)
}

// LifecycleActions are the lifecycle actions completed for instance (by
// name) through the Auto Scaling API, and its lifecycle state in its
// group now.
func (l *Lab) LifecycleActions(instance string) ([]ec2sim.CompletedAction, string) {
	in := l.Instance(instance)
	if in == nil {
		return nil, ""
	}
	var out []ec2sim.CompletedAction
	for _, a := range l.model.CompletedLifecycleActions() {
		if a.InstanceID == in.ID {
			out = append(out, a)
		}
	}
	return out, l.model.AutoScalingState(in.ID)
}

package fleet

import "strings"

// LifecyclePath is where IMDS serves the instance's Auto Scaling target
// lifecycle state (below latest/meta-data/): the state the instance is
// moving to, updated when a transition (and its lifecycle hook) starts.
// It exists only for an instance of an Auto Scaling group.
const LifecyclePath = "autoscaling/target-lifecycle-state"

// Target lifecycle states, as Amazon EC2 Auto Scaling writes them.
const (
	StateInService  = "InService"
	StateTerminated = "Terminated"
	StateStandby    = "Standby"
	StateDetached   = "Detached"
	// Warm pool states: Warmed:Stopped, Warmed:Running,
	// Warmed:Hibernated, Warmed:Terminated.
	statePrefixWarmed     = "Warmed:"
	StateWarmedTerminated = "Warmed:Terminated"
)

// drainsOn reports whether moving to target lifecycle state state takes
// the instance out of service for good, so the member drains: a scale-in
// (Terminated, Warmed:Terminated), or, once it has served (wasInService),
// a return to the warm pool (Warmed:*: the instance is stopped or kept
// idle, and a later start is a new daemon). Standby and Detached are not
// drained: the instance may come back InService with this daemon, and
// Auto Scaling deregisters it from the target group by itself.
func drainsOn(state string, wasInService bool) bool {
	switch {
	case state == StateTerminated || state == StateWarmedTerminated:
		return true
	case strings.HasPrefix(state, statePrefixWarmed):
		return wasInService
	}
	return false
}

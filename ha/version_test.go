package ha

import (
	"fmt"
	"strings"
	"testing"
)

// versionState is what Engine.Version stands for: the ENI, the tables,
// each one's claim, offer and want, this node's health and maintenance.
func versionState(e *Engine) string {
	var b strings.Builder
	b.WriteString(e.cfg.ENI)
	for _, t := range e.sorted() {
		fmt.Fprintf(&b, "|%s:%s:%t:%t", t.id, t.claim, !t.offeredAt.IsZero(), t.wantSeq != 0)
	}
	fmt.Fprintf(&b, "|%t|%t", e.healthy, e.maintenance)
	return b.String()
}

// TestVersionFollowsState: through the property test's random sequences,
// checked after every step and event, Version moves exactly when the
// state it stands for changed (the Manager writes and sends a heartbeat
// at once on a new Version, and only then).
func TestVersionFollowsState(t *testing.T) {
	st := &simStats{}
	changes := 0
	for seed := uint64(1); seed <= 20; seed++ {
		s := newSim(t, seed, st)
		type seen struct {
			state   string
			version uint64
		}
		last := map[*Engine]seen{}
		check := func(when string) {
			for _, n := range s.nodes {
				if !n.alive {
					continue
				}
				now := seen{versionState(n.eng), n.eng.Version()}
				if l, ok := last[n.eng]; ok {
					if changed, moved := l.state != now.state, l.version != now.version; changed != moved {
						s.fail("seed %d %s: %s: state changed %v (%s -> %s), version moved %v", seed, when, n.name, changed, l.state, now.state, moved)
					} else if changed {
						changes++
					}
				}
				last[n.eng] = now
			}
		}
		for i := 0; i < 30; i++ {
			s.event()
			check("after an event")
			for j := 0; j < 60; j++ {
				s.step()
				check("after a step")
			}
		}
	}
	t.Logf("%d state changes, each with a new version", changes)
	if changes < 100 {
		t.Errorf("only %d state changes exercised", changes)
	}
}

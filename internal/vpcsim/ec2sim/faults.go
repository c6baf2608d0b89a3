package ec2sim

import (
	"context"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Faults are injected into EC2 API calls (after the signature check, before
// the action runs).
type Faults struct {
	Latency      time.Duration // added to every matching call
	ErrorRate    float64       // 0..1: probability of 500 InternalError
	ThrottleRate float64       // 0..1: probability of 503 RequestLimitExceeded
	Actions      []string      // only these actions (empty = all)
	Seed         int64         // the random sequence is a function of Seed alone
}

type faultState struct {
	mu  sync.Mutex
	f   Faults
	rng *rand.Rand
}

func (s *faultState) reset(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f.ErrorRate = min(max(f.ErrorRate, 0), 1)
	f.ThrottleRate = min(max(f.ThrottleRate, 0), 1)
	f.Latency = max(f.Latency, 0)
	f.Actions = slices.Clone(f.Actions)
	s.f = f
	s.rng = rand.New(rand.NewPCG(uint64(f.Seed), 0x68616e6174)) // "hanat"
}

// SetFaults replaces the injected faults and restarts their random sequence
// from f.Seed. The zero Faults turns injection off.
func (m *Model) SetFaults(f Faults) {
	m.faults.reset(f)
	m.log.Info("ec2sim faults set", "latency", f.Latency, "error_rate", f.ErrorRate,
		"throttle_rate", f.ThrottleRate, "actions", f.Actions, "seed", f.Seed)
}

// Faults returns the faults in force.
func (m *Model) Faults() Faults {
	m.faults.mu.Lock()
	defer m.faults.mu.Unlock()
	f := m.faults.f
	f.Actions = slices.Clone(f.Actions)
	return f
}

// inject applies the faults to one call of action: it sleeps the latency
// (returning early if ctx ends) and may return an injected error.
func (s *faultState) inject(ctx context.Context, action string) *APIError {
	s.mu.Lock()
	f := s.f
	if len(f.Actions) > 0 && !slices.Contains(f.Actions, action) {
		s.mu.Unlock()
		return nil
	}
	var draw float64
	if f.ErrorRate > 0 || f.ThrottleRate > 0 {
		draw = s.rng.Float64()
	}
	s.mu.Unlock()

	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return apiErr(http.StatusServiceUnavailable, "Unavailable", "The request was canceled during injected latency")
		}
	}
	switch {
	case draw < f.ThrottleRate:
		return apiErr(http.StatusServiceUnavailable, "RequestLimitExceeded", "Request limit exceeded.")
	case draw < f.ThrottleRate+f.ErrorRate:
		return errInternal("An internal error has occurred")
	}
	return nil
}

// Stats counts what the EC2 handler saw.
type Stats struct {
	Requests       int            `json:"requests"`        // every request that reached the handler
	ByAction       map[string]int `json:"by_action"`       // requests per Action (after authentication)
	AuthFailures   int            `json:"auth_failures"`   // refused signatures
	Throttled      int            `json:"throttled"`       // injected RequestLimitExceeded
	InjectedErrors int            `json:"injected_errors"` // injected InternalError
	Errors         int            `json:"errors"`          // every error answer, injected ones included
}

type statsState struct {
	mu       sync.Mutex
	s        Stats
	byAction map[string]int
}

func (s *statsState) add(fn func(st *Stats, byAction map[string]int)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	fn(&s.s, s.byAction)
}

// Stats returns a copy of the EC2 handler's counters.
func (m *Model) Stats() Stats {
	m.stats.mu.Lock()
	defer m.stats.mu.Unlock()
	st := m.stats.s
	st.ByAction = make(map[string]int, len(m.stats.byAction))
	for k, v := range m.stats.byAction {
		st.ByAction[k] = v
	}
	return st
}

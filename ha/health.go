package ha

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// HealthChecker decides whether this node is fit to carry traffic: its
// datapath is up and at least one upstream target accepts a TCP
// connection through the node's own public path. It has hysteresis:
// FailAfter consecutive failed checks make it unhealthy, RecoverAfter
// consecutive good ones healthy again, so one lost SYN does not move
// route tables.
type HealthChecker struct {
	// Datapath reports whether the NAT datapath is up, and why not.
	// nil: always up.
	Datapath func() (bool, string)
	// Targets are host:port to connect to. Empty: only the datapath is
	// checked.
	Targets []string
	// PublicAway, when set and true, says this node's own public address
	// is carried elsewhere (its zone's EIP is on the peer while the peer
	// serves the zone): the upstream check cannot pass through it, so
	// only the datapath counts until the EIP comes back.
	PublicAway func() bool
	// Timeout bounds one connection attempt (default 1 s).
	Timeout time.Duration
	// Dial connects; nil uses net.Dialer.
	Dial         func(ctx context.Context, network, addr string) (net.Conn, error)
	FailAfter    int // default 3
	RecoverAfter int // default 2

	mu       sync.Mutex
	healthy  bool
	started  bool
	fails    int
	goods    int
	reason   string
	lastDiag string
}

// Check runs one check and returns the (hysteresis-filtered) verdict.
func (h *HealthChecker) Check(ctx context.Context) (bool, string) {
	ok, why := h.probe(ctx)
	h.mu.Lock()
	defer h.mu.Unlock()
	failAfter, recoverAfter := h.FailAfter, h.RecoverAfter
	if failAfter <= 0 {
		failAfter = 3
	}
	if recoverAfter <= 0 {
		recoverAfter = 2
	}
	if !h.started {
		h.started, h.healthy = true, true
	}
	if ok {
		h.fails = 0
		h.goods++
		if !h.healthy && h.goods >= recoverAfter {
			h.healthy, h.reason = true, ""
		}
	} else {
		h.goods = 0
		h.fails++
		h.lastDiag = why
		if h.healthy && h.fails >= failAfter {
			h.healthy = false
		}
		if !h.healthy {
			h.reason = why
		}
	}
	return h.healthy, h.reason
}

func (h *HealthChecker) probe(ctx context.Context) (bool, string) {
	if h.Datapath != nil {
		if up, why := h.Datapath(); !up {
			return false, "datapath down: " + why
		}
	}
	if len(h.Targets) == 0 || (h.PublicAway != nil && h.PublicAway()) {
		return true, ""
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	dial := h.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	type result struct {
		target string
		err    error
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	results := make(chan result, len(h.Targets))
	for _, t := range h.Targets {
		go func() {
			c, err := dial(cctx, "tcp", t)
			if err == nil {
				c.Close()
			}
			results <- result{t, err}
		}()
	}
	var errs []string
	for range h.Targets {
		r := <-results
		if r.err == nil {
			return true, ""
		}
		errs = append(errs, fmt.Sprintf("%s: %v", r.target, shortErr(r.err)))
	}
	return false, "upstream check failed: " + strings.Join(errs, "; ")
}

func shortErr(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

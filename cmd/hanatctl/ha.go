package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hanat/hanat/admin"
)

// tableList is a repeatable --table flag.
type tableList []string

func (l *tableList) String() string { return strings.Join(*l, ",") }

var rtbRE = regexp.MustCompile(`^rtb-[0-9a-f]{1,32}$`)

func (l *tableList) Set(s string) error {
	for _, id := range strings.Split(s, ",") {
		id = strings.TrimSpace(id)
		if !rtbRE.MatchString(id) {
			return fmt.Errorf("%q is not a route table id (rtb-…)", id)
		}
		*l = append(*l, id)
	}
	return nil
}

func tableFlag(f *flag.FlagSet, o *options) {
	f.Var(&o.tables, "table", "only route table `rtb-…` (repeatable, or comma-separated)")
}

func cmdFailover(ctx context.Context, e *env) error {
	return haCommand(ctx, e, "/v1/failover", admin.HARequest{Tables: e.opts.tables}, e.client.Failover)
}

func cmdTakeover(ctx context.Context, e *env) error {
	return haCommand(ctx, e, "/v1/takeover", admin.HARequest{Tables: e.opts.tables}, e.client.Takeover)
}

func haCommand(ctx context.Context, e *env, path string, req admin.HARequest, call func(context.Context, admin.HARequest) (admin.HAResponse, error)) error {
	if e.opts.json {
		raw, err := e.client.Raw(ctx, http.MethodPost, path, req)
		if err != nil {
			return err
		}
		return printRaw(e.stdout, raw)
	}
	resp, err := call(ctx, req)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "%s: %s\n", clean(resp.Message), list(resp.Tables))
	return err
}

// Bounds of maintenance on --wait.
const (
	defaultHandoverWait = 10 * time.Second
	maxHandoverWait     = 5 * time.Minute
	handoverPoll        = 100 * time.Millisecond
)

// waitFlag is --wait[=DURATION]: a boolean flag that also takes a
// duration (--wait alone means defaultHandoverWait).
type waitFlag struct{ d time.Duration }

func (w *waitFlag) IsBoolFlag() bool { return true }

func (w *waitFlag) String() string {
	if w == nil || w.d == 0 {
		return ""
	}
	return w.d.String()
}

func (w *waitFlag) Set(s string) error {
	switch s {
	case "true":
		w.d = defaultHandoverWait
		return nil
	case "false":
		w.d = 0
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (e.g. 10s)", s)
	}
	if d <= 0 || d > maxHandoverWait {
		return fmt.Errorf("%s: want more than 0 and at most %s", d, maxHandoverWait)
	}
	w.d = d
	return nil
}

func maintenanceFlags(f *flag.FlagSet, o *options) {
	f.Var(&o.wait, "wait", "with on: return only once the healthy peer owns every route table this node owned, waiting at most `DURATION` (--wait alone: "+defaultHandoverWait.String()+"); exit 4 at once when there is no healthy peer, 5 when the time runs out")
}

// exitCodeError ends hanatctl with its own exit code (see usage).
type exitCodeError struct {
	code int
	msg  string
}

func (e *exitCodeError) Error() string { return e.msg }

func cmdMaintenance(ctx context.Context, e *env) error {
	var on bool
	switch e.args[0] {
	case "on":
		on = true
	case "off":
	default:
		return usagef("maintenance: %q: want on or off", e.args[0])
	}
	wait := e.opts.wait.d
	if wait > 0 && !on {
		return usagef("maintenance off: --wait only goes with on")
	}
	var before *admin.HAStatus
	if wait > 0 {
		st, err := e.client.Status(ctx)
		if err != nil {
			return err
		}
		// Nothing can take the tables: say so and return at once (a lone
		// NAT's shutdown must not wait for a peer it does not have).
		switch h := st.HA; {
		case h == nil || !h.Enabled:
			why := "hanatd does not run the HA pair"
			if h != nil && h.Message != "" {
				why = clean(h.Message)
			}
			_, err := fmt.Fprintf(e.stdout, "maintenance: HA is off (%s): no route tables to hand over\n", why)
			return err
		case h.Mode != "pair":
			_, err := fmt.Fprintf(e.stdout, "maintenance: single instance (no HA peer configured): its route tables stay on this node\n")
			return err
		}
		before = st.HA
		if !peerEligible(before) {
			return noPeerError(before)
		}
	}
	req := admin.MaintenanceRequest{On: on}
	if e.opts.json {
		raw, err := e.client.Raw(ctx, http.MethodPost, "/v1/maintenance", req)
		if err != nil {
			return err
		}
		if err := printRaw(e.stdout, raw); err != nil {
			return err
		}
	} else {
		resp, err := e.client.Maintenance(ctx, req)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(e.stdout, "%s\n", clean(resp.Message)); err != nil {
			return err
		}
	}
	if wait == 0 {
		return nil
	}
	return waitHandover(ctx, e, before, wait)
}

// peerEligible: the peer can take tables (alive, healthy, not in
// maintenance itself).
func peerEligible(h *admin.HAStatus) bool {
	return h.Peer.State == "alive" && h.Peer.Healthy && !h.Peer.Maintenance
}

func noPeerError(h *admin.HAStatus) error {
	state := clean(h.Peer.State)
	switch {
	case h.Peer.State == "alive" && h.Peer.Maintenance:
		state = "in maintenance"
	case h.Peer.State == "alive" && !h.Peer.Healthy:
		state = "unhealthy"
	}
	if h.Peer.Detail != "" {
		state += ": " + clean(h.Peer.Detail)
	}
	msg := fmt.Sprintf("maintenance: no healthy peer to hand over to (peer %s %s); route tables still on this node: %s",
		orDash(h.Peer.Address), state, list(ownedTables(h)))
	return &exitCodeError{code: exitNoPeer, msg: msg}
}

// ownedTables are the route tables this node owns or claims.
func ownedTables(h *admin.HAStatus) []string {
	var out []string
	for _, t := range h.Tables {
		if t.OwnerNode == "self" || (t.Claim != "" && t.Claim != "none") {
			out = append(out, t.ID)
		}
	}
	return out
}

// waitHandover polls the status until every table this node owned
// (before) is owned by the peer and this node owns or claims none, the
// peer stops being able to take them (exit 4) or wait runs out (exit 5).
func waitHandover(ctx context.Context, e *env, before *admin.HAStatus, wait time.Duration) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	had := ownedTables(before)
	tick := time.NewTicker(handoverPoll)
	defer tick.Stop()
	var last *admin.HAStatus
	var lastErr error
	for {
		st, err := e.client.Status(ctx)
		switch {
		case err != nil:
			lastErr = err
		case st.HA == nil || !st.HA.Enabled:
			why := "-"
			if st.HA != nil {
				why = orDash(st.HA.Message)
			}
			return fmt.Errorf("maintenance: HA stopped while handing over: %s", why)
		default:
			last, lastErr = st.HA, nil
			if handedOver(last, had) {
				if e.opts.json {
					return nil
				}
				_, err := fmt.Fprintf(e.stdout, "maintenance: the peer owns every route table (%s) after %s\n",
					list(had), time.Since(start).Round(time.Millisecond))
				return err
			}
			if !peerEligible(last) {
				return noPeerError(last)
			}
		}
		select {
		case <-ctx.Done():
			msg := fmt.Sprintf("maintenance: --wait=%s expired", wait)
			if last != nil {
				msg += "; route tables still on this node: " + list(ownedTables(last))
			}
			if lastErr != nil {
				msg += fmt.Sprintf(" (last status: %v)", lastErr)
			}
			return &exitCodeError{code: exitWaitExpired, msg: msg}
		case <-tick.C:
		}
	}
}

// handedOver: this node owns and claims nothing, and the peer owns every
// table of had.
func handedOver(h *admin.HAStatus, had []string) bool {
	owner := map[string]string{}
	for _, t := range h.Tables {
		if t.OwnerNode == "self" || (t.Claim != "" && t.Claim != "none") {
			return false
		}
		owner[t.ID] = t.OwnerNode
	}
	for _, id := range had {
		if owner[id] != "peer" {
			return false
		}
	}
	return true
}

// writeHAStatus prints the HA section of status.
func writeHAStatus(w io.Writer, h *admin.HAStatus, now time.Time) error {
	if h == nil {
		return nil
	}
	fmt.Fprintf(w, "\nHA\n")
	tw := newTable(w)
	if !h.Enabled {
		fmt.Fprintf(tw, "  mode:\toff (%s)\n", orDash(h.Message))
		return tw.Flush()
	}
	health := "healthy"
	if !h.Healthy {
		health = "UNHEALTHY: " + clean(h.HealthNote)
	}
	if h.Maintenance {
		health += ", maintenance on"
	}
	fmt.Fprintf(tw, "  node:\t%s (%s): %s\n", orDash(h.NodeID), orDash(h.ENI), health)
	fmt.Fprintf(tw, "  mode:\t%s, preempt %s after %s\n", clean(h.Mode), yesNo(h.Preempt), orDash(h.HoldDown))
	if h.Mode == "pair" {
		p := h.Peer
		state := clean(p.State)
		if p.Detail != "" {
			state += " (" + clean(p.Detail) + ")"
		}
		fmt.Fprintf(tw, "  peer:\t%s %s %s: %s\n", orDash(p.Address), orDash(p.NodeID), orDash(p.ENI), state)
		hb := "never"
		if p.HeartbeatAgeMS >= 0 {
			hb = fmt.Sprintf("%dms ago", p.HeartbeatAgeMS)
		}
		fmt.Fprintf(tw, "  heartbeat:\tlast %s, every %s, dead after %s, loss %.1f%%\n", hb, orDash(h.Interval), orDash(h.DeadAfter), 100*p.Loss)
	}
	if h.LastError != "" {
		fmt.Fprintf(tw, "  last error:\t%s (%s)\n", clean(h.LastError), when(h.LastErrorAt, now))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(h.Tables) > 0 {
		tw = newTable(w)
		fmt.Fprintf(tw, "  ROUTE TABLE\tROLE\tPOINTS AT\tDESIRED\tCHANGES\tLAST CHANGE\n")
		for _, t := range h.Tables {
			role := "backup"
			if t.Home {
				role = "home"
			}
			owner := clean(t.OwnerNode)
			if t.Owner != "" {
				owner += " " + clean(t.Owner)
			}
			if t.Blackhole {
				owner += " (blackhole)"
			}
			last := "-"
			if !t.LastChange.IsZero() {
				last = fmt.Sprintf("%s: %s", when(t.LastChange, now), clean(t.LastReason))
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%s\n", clean(t.ID), role, owner, clean(t.Desired), t.Changes, last)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if len(h.EIPs) > 0 {
		tw = newTable(w)
		for _, e := range h.EIPs {
			on := orDash(e.ENI)
			if e.Address != "" {
				on += " " + clean(e.Address)
			}
			fmt.Fprintf(tw, "  EIP %s\tfollows %s\ton %s\n", clean(e.AllocationID), list(e.RouteTables), on)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if err := writeSync(w, h.Sync, now); err != nil {
		return err
	}
	keys := make([]string, 0, len(h.Counters))
	for k := range h.Counters {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		if h.Counters[k] != 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", clean(k), h.Counters[k]))
		}
	}
	if len(parts) > 0 {
		fmt.Fprintf(w, "  counters: %s\n", strings.Join(parts, " "))
	}
	return nil
}

// writeSync prints the pair's state sync.
func writeSync(w io.Writer, y *admin.HASync, now time.Time) error {
	if y == nil {
		return nil
	}
	tw := newTable(w)
	if !y.Enabled {
		fmt.Fprintf(tw, "  sync:	off (%s)\n", orDash(y.Message))
		return tw.Flush()
	}
	standby := "none (the peer's connections lose their public IP at a failover)"
	if y.Standby != "" {
		standby = clean(y.Standby) + " (carries the peer's EIP while this node serves its zone)"
	}
	fmt.Fprintf(tw, "  sync standby:\t%s\n", standby)
	for _, d := range []struct {
		name string
		s    admin.HASyncStream
	}{{"sync sent", y.Sent}, {"sync held", y.Held}} {
		state := "disconnected"
		if d.s.Connected {
			state = "connected"
		}
		full := "never"
		if !d.s.LastFullSyncAt.IsZero() {
			full = when(d.s.LastFullSyncAt, now)
		}
		fmt.Fprintf(tw, "  %s:\t%s, %d flows, lag %d ms, last full sync %s%s\n", d.name, state, d.s.Flows, d.s.LagMS, full, errorsOf(d.s.Errors))
	}
	if t := y.LastTakeover; t != nil {
		fmt.Fprintf(tw, "  last takeover:\t%s: %d injected, %d already there, %d refused, %d failed in %d ms%s\n", when(t.At, now),
			t.Injected, t.Existed, t.Refused, t.Failed, t.TookMS, map[bool]string{true: " (" + clean(t.Error) + ")", false: ""}[t.Error != ""])
	}
	return tw.Flush()
}

func errorsOf(m map[string]uint64) string {
	if len(m) == 0 {
		return ""
	}
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", clean(k), m[k])
	}
	return ", errors " + strings.Join(parts, " ")
}

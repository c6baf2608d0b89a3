package main

import (
	"context"
	"flag"
	"fmt"
	"io"
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

func cmdMaintenance(ctx context.Context, e *env) error {
	var on bool
	switch e.args[0] {
	case "on":
		on = true
	case "off":
	default:
		return usagef("maintenance: %q: want on or off", e.args[0])
	}
	req := admin.MaintenanceRequest{On: on}
	if e.opts.json {
		raw, err := e.client.Raw(ctx, http.MethodPost, "/v1/maintenance", req)
		if err != nil {
			return err
		}
		return printRaw(e.stdout, raw)
	}
	resp, err := e.client.Maintenance(ctx, req)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(e.stdout, "%s\n", clean(resp.Message))
	return err
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
			fmt.Fprintf(tw, "  EIP %s\tfollows %s\ton %s\n", clean(e.AllocationID), list(e.RouteTables), orDash(e.ENI))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
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

package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/hanat/hanat/admin"
)

// writeFleetStatus prints the node as a Gateway Load Balancer's target:
// its health, the drain, the GWLB addresses seen and the flows per
// endpoint.
func writeFleetStatus(w io.Writer, f *admin.FleetStatus, now time.Time) error {
	if f == nil {
		return nil
	}
	fmt.Fprintf(w, "\nFleet (Gateway Load Balancer target)\n")
	tw := newTable(w)
	health := "healthy"
	if !f.Healthy {
		health = "UNHEALTHY: " + orDash(f.HealthNote)
	}
	fmt.Fprintf(tw, "  role:\t%s: %s\n", orDash(f.Role), health)
	fmt.Fprintf(tw, "  health check:\t%s, evaluated %s\n", orDash(f.HealthCheck), when(f.CheckedAt, now))
	if f.ResponderError != "" {
		fmt.Fprintf(tw, "  responder error:\t%s\n", clean(f.ResponderError))
	}
	lc := clean(f.Lifecycle)
	switch {
	case f.LifecycleAt.IsZero():
		lc = "not read (off EC2, or gwlb.lifecycle_hook off)"
	case lc == "":
		lc = "not in an Auto Scaling group"
	}
	if f.LifecycleError != "" {
		lc += " (last read failed: " + clean(f.LifecycleError) + ")"
	}
	fmt.Fprintf(tw, "  lifecycle:\t%s\n", lc)
	fmt.Fprintf(tw, "  drain:\t%s\n", drainText(f.Drain, now))
	if a := f.LifecycleAction; a != nil {
		text := "completed " + clean(a.Action) + ", " + when(a.At, now)
		if a.Error != "" {
			text = "FAILED " + when(a.At, now) + ": " + clean(a.Error) + " (the hook's heartbeat timeout ends it)"
		}
		fmt.Fprintf(tw, "  lifecycle action:\t%s\n", text)
	}
	gwlb := list(f.GWLBAddrs)
	switch {
	case len(f.GWLBAddrs) == 0 && f.GWLBAddrsFrom == "EC2":
		gwlb = "none found in EC2 yet"
	case len(f.GWLBAddrs) == 0:
		gwlb = "none configured"
	case f.GWLBAddrsFrom == "EC2":
		gwlb += " (from EC2)"
	}
	fmt.Fprintf(tw, "  GWLB addresses:\t%s\n", gwlb)
	if f.FlowsError != "" {
		fmt.Fprintf(tw, "  flows:\tunknown (%s)\n", clean(f.FlowsError))
	}
	if f.DatapathError != "" {
		fmt.Fprintf(tw, "  datapath counters:\tunknown (%s)\n", clean(f.DatapathError))
	}
	if len(f.Datapath) > 0 {
		fmt.Fprintf(tw, "  datapath counters:\t%s\n", counterText(f.Datapath))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	tw = newTable(w)
	if len(f.Peers) == 0 {
		fmt.Fprintf(tw, "  GWLB peers seen:\tnone yet\n")
	} else {
		fmt.Fprintf(tw, "  GWLB PEER\tLAST CHECK\tCHECKS\tFLOWS\n")
		for _, p := range f.Peers {
			fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\n", orDash(p.Address), when(p.LastCheck, now), p.Checks, p.Flows)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	tw = newTable(w)
	endpoints := make([]string, 0, len(f.FlowsPerEndpoint))
	total := 0
	for ep, n := range f.FlowsPerEndpoint {
		endpoints = append(endpoints, ep)
		total += n
	}
	sort.Strings(endpoints)
	if len(endpoints) == 0 {
		fmt.Fprintf(tw, "  flows per endpoint:\tnone\n")
	} else {
		fmt.Fprintf(tw, "  ENDPOINT\tFLOWS\n")
		for _, ep := range endpoints {
			fmt.Fprintf(tw, "  %s\t%d\n", clean(ep), f.FlowsPerEndpoint[ep])
		}
		fmt.Fprintf(tw, "  total\t%d\n", total)
	}
	return tw.Flush()
}

// drainText is one line for the drain: not draining, running, or ended.
func drainText(d admin.FleetDrain, now time.Time) string {
	if !d.Draining {
		return "no"
	}
	s := fmt.Sprintf("since %s: %s", when(d.Since, now), orDash(d.Reason))
	switch {
	case d.Ended != "":
		s += fmt.Sprintf("; DRAINED: %s after %s", clean(d.Ended), age(time.Duration(d.TookMS)*time.Millisecond))
		if d.FlowsLeft > 0 {
			s += fmt.Sprintf(" with %d flows left", d.FlowsLeft)
		}
	case d.Flows < 0:
		s += fmt.Sprintf("; flows not counted yet, %s left of the deregistration delay", age(time.Duration(d.LeftMS)*time.Millisecond))
	default:
		s += fmt.Sprintf("; %d flows left, %s left of the deregistration delay", d.Flows, age(time.Duration(d.LeftMS)*time.Millisecond))
	}
	if d.LastError != "" {
		s += " (flow count failed: " + clean(d.LastError) + ")"
	}
	return s
}

// counterText prints the non-zero counters, by name: "decap 12, bad_option 3".
func counterText(c map[string]uint64) string {
	names := make([]string, 0, len(c))
	for n, v := range c {
		if v > 0 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "all zero"
	}
	sort.Strings(names)
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %d", clean(n), c[n])
	}
	return strings.Join(parts, ", ")
}

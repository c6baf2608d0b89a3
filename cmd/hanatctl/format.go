package main

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hanat/hanat/admin"
)

// clean makes a string from the daemon safe for a terminal table: control
// characters (including tabs, which would break the columns) become '?'.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return clean(s)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func list(xs []string) string {
	if len(xs) == 0 {
		return "-"
	}
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = clean(x)
	}
	return strings.Join(out, ", ")
}

// when prints a time with how long ago it was.
func when(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	ago := now.Sub(t)
	if ago < 0 {
		return t.Format(time.RFC3339)
	}
	return fmt.Sprintf("%s (%s ago)", t.Format(time.RFC3339), age(ago))
}

// age is a duration rounded for humans: 42s, 5m3s, 3h12m, 4d2h.
func age(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		days := d / (24 * time.Hour)
		return fmt.Sprintf("%dd%dh", days, (d-days*24*time.Hour)/time.Hour)
	case d >= time.Hour:
		return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
	default:
		return d.Round(time.Second).String()
	}
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
}

// writeStatus prints st as aligned key/value sections.
func writeStatus(w io.Writer, st admin.Status, now time.Time) error {
	ready := "ready"
	if !st.Ready {
		ready = "NOT READY"
	}
	fmt.Fprintf(w, "hanatd %s on %s: %s\n", orDash(st.Version), orDash(st.Node), ready)
	tw := newTable(w)
	fmt.Fprintf(tw, "  started:\t%s\n", when(st.StartedAt, now))
	fmt.Fprintf(tw, "  config:\t%s\n", orDash(st.ConfigPath))
	fmt.Fprintf(tw, "  config loaded:\t%s\n", when(st.ConfigLoadedAt, now))
	if err := tw.Flush(); err != nil {
		return err
	}

	cl := st.Cloud
	fmt.Fprintf(w, "\nCloud\n")
	tw = newTable(w)
	if !cl.OnEC2 {
		fmt.Fprintf(tw, "  on EC2:\tno\n")
	} else {
		fmt.Fprintf(tw, "  instance:\t%s (%s, %s)\n", orDash(cl.InstanceID), orDash(cl.Region), orDash(cl.AvailabilityZone))
		fmt.Fprintf(tw, "  VPC / subnet:\t%s / %s\n", orDash(cl.VPCID), orDash(cl.SubnetID))
		fmt.Fprintf(tw, "  ENI:\t%s\n", orDash(cl.ENIID))
		fmt.Fprintf(tw, "  public IP:\t%s\n", orDash(cl.PublicIP))
		fmt.Fprintf(tw, "  source/dest check:\t%s\n", orDash(cl.SourceDestCheck))
	}
	if cl.Message != "" {
		fmt.Fprintf(tw, "  note:\t%s\n", clean(cl.Message))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nNAT\n")
	tw = newTable(w)
	fmt.Fprintf(tw, "  outside interface:\t%s\n", orDash(st.NAT.OutsideInterface))
	fmt.Fprintf(tw, "  private CIDRs:\t%s\n", list(st.NAT.PrivateCIDRs))
	fmt.Fprintf(tw, "  SNAT addresses:\t%s\n", list(st.NAT.SNATAddrs))
	fmt.Fprintf(tw, "  SNAT ports:\t%s\n", orDash(st.NAT.Ports))
	if len(st.NAT.PortForwards) == 0 {
		fmt.Fprintf(tw, "  port forwards:\tnone\n")
	}
	for i, pf := range st.NAT.PortForwards {
		key := ""
		if i == 0 {
			key = "port forwards:"
		}
		name := ""
		if pf.Name != "" {
			name = " (" + clean(pf.Name) + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s/%d -> %s%s\n", key, clean(pf.Protocol), pf.Port, clean(pf.To), name)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	d := st.Datapath
	fmt.Fprintf(w, "\nDatapath\n")
	tw = newTable(w)
	present := "present"
	if !d.Present {
		present = "MISSING"
	}
	fmt.Fprintf(tw, "  table:\t%s (%s)\n", orDash(d.Table), present)
	fmt.Fprintf(tw, "  last applied:\t%s\n", when(d.LastApplied, now))
	fmt.Fprintf(tw, "  last error:\t%s\n", orDash(d.LastError))
	fp := orDash(d.Fastpath)
	if d.FastpathDetail.Reason != "" {
		fp += " (" + clean(d.FastpathDetail.Reason) + ")"
	}
	fmt.Fprintf(tw, "  fast path:\t%s\n", fp)
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := writeFastpath(w, d.FastpathDetail); err != nil {
		return err
	}
	if len(d.Counters) > 0 {
		names := make([]string, 0, len(d.Counters))
		for n := range d.Counters {
			names = append(names, n)
		}
		sort.Strings(names)
		tw = newTable(w)
		fmt.Fprintf(tw, "  COUNTER\tPACKETS\tBYTES\n")
		for _, n := range names {
			c := d.Counters[n]
			fmt.Fprintf(tw, "  %s\t%d\t%d\n", clean(n), c.Packets, c.Bytes)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	fmt.Fprintf(w, "\nSysctls\n")
	if len(st.Sysctls) == 0 {
		fmt.Fprintf(w, "  none reported\n")
	} else {
		tw = newTable(w)
		fmt.Fprintf(tw, "  KEY\tWANT\tNOW\tAPPLIED\tNOTE\n")
		for _, s := range st.Sysctls {
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", clean(s.Key), orDash(s.Want), orDash(s.Now), yesNo(s.Applied), orDash(s.Note))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	c := st.Connections
	fmt.Fprintf(w, "\nConnections\n")
	tw = newTable(w)
	fmt.Fprintf(tw, "  active:\t%d\n", c.Active)
	fmt.Fprintf(tw, "  tcp:\t%d (%d established)\n", c.TCP, c.TCPEstablished)
	fmt.Fprintf(tw, "  udp:\t%d\n", c.UDP)
	fmt.Fprintf(tw, "  icmp:\t%d\n", c.ICMP)
	fmt.Fprintf(tw, "  other:\t%d\n", c.Other)
	switch {
	case c.AgeMS < 0:
		fmt.Fprintf(tw, "  counted:\tnot yet (the first conntrack reading is running)\n")
	default:
		fmt.Fprintf(tw, "  counted:\t%s ago (one conntrack reading, took %s)\n",
			age(time.Duration(c.AgeMS)*time.Millisecond), time.Duration(c.ReadTookMS)*time.Millisecond)
	}
	if c.Error != "" {
		fmt.Fprintf(tw, "  last reading failed:\t%s\n", clean(c.Error))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := writeTraffic(w, st.Traffic, st.CloudWatch, now); err != nil {
		return err
	}
	if err := writeHAStatus(w, st.HA, now); err != nil {
		return err
	}
	return writeFleetStatus(w, st.Fleet, now)
}

// writeTraffic prints the NAT gateway's metrics under their CloudWatch
// names, and the CloudWatch publisher.
func writeTraffic(w io.Writer, tr admin.Traffic, cw *admin.CloudWatchStatus, now time.Time) error {
	fmt.Fprintf(w, "\nTraffic (NAT gateway metrics, since hanatd started)\n")
	tw := newTable(w)
	fmt.Fprintf(tw, "  \tBYTES\tPACKETS\n")
	fmt.Fprintf(tw, "  in from source / out to destination:\t%d\t%d\n", tr.BytesInFromSource, tr.PacketsInFromSource)
	fmt.Fprintf(tw, "  in from destination / out to source:\t%d\t%d\n", tr.BytesInFromDestination, tr.PacketsInFromDestination)
	if err := tw.Flush(); err != nil {
		return err
	}
	tw = newTable(w)
	var dropped uint64
	for _, n := range tr.PacketsDropped {
		dropped += n
	}
	fmt.Fprintf(tw, "  connection attempts / established:\t%d / %d\n", tr.ConnectionAttempts, tr.ConnectionsEstablished)
	fmt.Fprintf(tw, "  port allocation errors:\t%d\n", tr.PortAllocationErrors)
	fmt.Fprintf(tw, "  idle timeouts:\t%d\n", tr.IdleTimeouts)
	fmt.Fprintf(tw, "  packets dropped:\t%d\n", dropped)
	if tr.Fastpath != "" {
		fmt.Fprintf(tw, "  fast path traffic:\t%s\n", clean(tr.Fastpath))
	}
	if cw != nil {
		last := "never"
		if !cw.LastPublished.IsZero() {
			last = when(cw.LastPublished, now)
		}
		fmt.Fprintf(tw, "  CloudWatch:\t%s, InstanceId %s, every %s, %d batches, last %s\n",
			orDash(cw.Namespace), orDash(cw.InstanceID), orDash(cw.Interval), cw.Publications, last)
		if cw.LastError != "" {
			fmt.Fprintf(tw, "  CloudWatch error:\t%s\n", clean(cw.LastError))
		}
	}
	return tw.Flush()
}

// writeFlows prints the flows as a table.
func writeFlows(w io.Writer, fr admin.FlowsResponse) error {
	if len(fr.Flows) == 0 {
		_, err := fmt.Fprintf(w, "no NATed flows\n")
		return err
	}
	tw := newTable(w)
	fmt.Fprintf(tw, "PROTO\tSTATE\tSRC\tDST\tNAT-SRC\tPKTS-OUT\tBYTES-OUT\tPKTS-IN\tBYTES-IN\tTIMEOUT\tOFFLOADED\n")
	for _, f := range fr.Flows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n",
			orDash(f.Protocol), orDash(f.State), orDash(f.Src), orDash(f.Dst), orDash(f.NATSrc),
			f.PacketsOut, f.BytesOut, f.PacketsIn, f.BytesIn,
			strconv.Itoa(f.TimeoutSeconds)+"s", offloaded(f))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var err error
	if fr.Truncated || fr.Total > len(fr.Flows) {
		_, err = fmt.Fprintf(w, "showing %d of %d flows (raise --limit, 0 for all)\n", len(fr.Flows), fr.Total)
	} else {
		_, err = fmt.Fprintf(w, "%d flows\n", len(fr.Flows))
	}
	return err
}

// offloaded is the OFFLOADED column: yes or no, and how many packets (out
// / in) the XDP fast path forwarded for the flow when it did any.
func offloaded(f admin.Flow) string {
	s := yesNo(f.Offloaded)
	if f.FastPacketsOut+f.FastPacketsIn > 0 {
		s += fmt.Sprintf(" (fast %d/%d pkts)", f.FastPacketsOut, f.FastPacketsIn)
	}
	return s
}

// passReasons is the order the fast path's pass reasons are printed in.
var passReasons = []string{"syn", "fin", "rst", "fragment", "ip_options", "ttl", "not_tcp_udp", "too_big", "not_ipv4", "parse", "redirect"}

// writeFastpath prints the fast path's section of status; nothing when the
// daemon reported none.
func writeFastpath(w io.Writer, fp admin.FastpathStatus) error {
	if fp.Mode == "" {
		return nil
	}
	fmt.Fprintf(w, "\nFast path (XDP)\n")
	tw := newTable(w)
	fmt.Fprintf(tw, "  mode:\t%s\n", clean(fp.Mode))
	if fp.Reason != "" {
		fmt.Fprintf(tw, "  why:\t%s\n", clean(fp.Reason))
	}
	for i, in := range fp.Interfaces {
		key := ""
		if i == 0 {
			key = "interfaces:"
		}
		line := clean(in.Name) + " " + clean(in.Mode)
		if in.Error != "" {
			line += ": " + clean(in.Error)
		}
		if in.Note != "" {
			line += " (" + clean(in.Note) + ")"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", key, line)
	}
	fmt.Fprintf(tw, "  offloaded flows:\t%d (%d pending, max %d)\n", fp.OffloadedFlows, fp.PendingFlows, fp.MaxFlows)
	fmt.Fprintf(tw, "  hits / misses:\t%d / %d\n", fp.Hits, fp.Misses)
	fmt.Fprintf(tw, "  passed to the slow path:\t%s\n", counts(fp.Pass, passReasons))
	fmt.Fprintf(tw, "  offload engine:\t%s\n", counts(fp.Offload, nil))
	return tw.Flush()
}

// counts prints the non-zero counters of m, in order first and then the
// rest sorted, as "name n, name n"; "none" when all are zero.
func counts(m map[string]uint64, order []string) string {
	var names []string
	for _, n := range order {
		if m[n] > 0 {
			names = append(names, n)
		}
	}
	var rest []string
	for n, v := range m {
		if v > 0 && !slices.Contains(order, n) {
			rest = append(rest, n)
		}
	}
	sort.Strings(rest)
	names = append(names, rest...)
	if len(names) == 0 {
		return "none"
	}
	parts := make([]string, len(names))
	for i, n := range names {
		parts[i] = fmt.Sprintf("%s %d", clean(n), m[n])
	}
	return strings.Join(parts, ", ")
}

// writeDoctor prints one line per check and, under a failing or warning
// check, what is wrong and how to fix it.
func writeDoctor(w io.Writer, rep admin.DoctorReport) error {
	var b strings.Builder
	for _, c := range rep.Checks {
		fmt.Fprintf(&b, "%-4s  %s\n", strings.ToUpper(clean(c.Status)), clean(c.Title))
		if c.Detail != "" {
			fmt.Fprintf(&b, "      %s\n", clean(c.Detail))
		}
		if c.Fix != "" && c.Status != "pass" {
			fmt.Fprintf(&b, "      fix: %s\n", clean(c.Fix))
		}
	}
	if rep.OK {
		b.WriteString("\nno check failed\n")
	} else {
		b.WriteString("\nsome checks failed: see the fixes above\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

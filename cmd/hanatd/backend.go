package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/datapath"
	"github.com/hanat/hanat/doctor"
	"github.com/hanat/hanat/traffic"
)

// backend adapts the daemon to the admin API. The admin package knows
// nothing of the datapath or conntrack; this is the translation.
type backend struct {
	d *daemon
}

func (b *backend) Status(ctx context.Context) (admin.Status, error) {
	s := b.d.snapshot()
	host, _ := os.Hostname()
	st := admin.Status{
		Version:        version,
		Node:           host,
		StartedAt:      b.d.startedAt,
		ConfigLoadedAt: s.configLoadedAt,
		ConfigPath:     b.d.configPath,
		Ready:          s.ready,
		NAT:            natStatus(s),
		Datapath: admin.DatapathStatus{
			Table:       "inet " + datapath.TableName,
			LastApplied: s.lastApplied,
			LastError:   s.lastError,
		},
		Cloud: cloudStatus(b.d.ec2.Status()),
		HA:    b.d.ha.status(),
		Fleet: b.d.fleet.status(ctx),
	}
	st.HA.Sync = b.d.sync.status()
	st.Datapath.FastpathDetail = fastpathStatus(b.d.fast.Status())
	st.Datapath.Fastpath = st.Datapath.FastpathDetail.Mode
	for _, r := range s.sysctls {
		st.Sysctls = append(st.Sysctls, admin.Sysctl{Key: r.Key, Want: r.Want, Now: r.Now, Applied: r.Applied, Note: r.Note})
	}
	var errs []string
	present, err := b.d.slow.Present(ctx)
	if err != nil {
		errs = append(errs, err.Error())
	}
	st.Datapath.Present = present
	if present {
		counters, err := b.d.slow.Counters(ctx)
		if err != nil {
			errs = append(errs, err.Error())
		}
		st.Datapath.Counters = make(map[string]admin.Counter, len(counters))
		for name, c := range counters {
			st.Datapath.Counters[name] = admin.Counter{Packets: c.Packets, Bytes: c.Bytes}
		}
	}
	st.Traffic = trafficStatus(b.d.traffic.Read(ctx))
	st.CloudWatch = cloudWatchStatus(b.d.cw)
	// From the census's last reading: no request dumps the table.
	st.Connections = connectionsOf(b.d.census.Reading(), time.Now())
	if len(errs) > 0 && st.Datapath.LastError == "" {
		st.Datapath.LastError = strings.Join(errs, "; ")
	}
	return st, nil
}

// natStatus is the applied NAT as the admin API shows it.
func natStatus(s state) admin.NATStatus {
	st := admin.NATStatus{
		OutsideInterface: s.nat.OutsideIface,
		PrivateCIDRs:     stringsOf(s.nat.PrivateCIDRs),
		SNATAddrs:        stringsOf(s.nat.SNATAddrs),
		Ports:            fmt.Sprintf("%d-%d", s.nat.PortMin, s.nat.PortMax),
	}
	for i, pf := range s.nat.PortForwards {
		name := ""
		if i < len(s.cfg.PortForwards) {
			name = s.cfg.PortForwards[i].Name
		}
		st.PortForwards = append(st.PortForwards, admin.PortForward{
			Name: name, Protocol: pf.Protocol, Port: int(pf.Port), To: pf.To.String(),
		})
	}
	return st
}

// connectionsOf is a census reading as the admin API shows it.
func connectionsOf(r conntrack.Reading, now time.Time) admin.Connections {
	c := admin.Connections{Active: r.Active, TCP: r.TCP, UDP: r.UDP, ICMP: r.ICMP, Other: r.Other,
		TCPEstablished: r.TCPEstablished, ReadAt: r.At, AgeMS: -1, ReadTookMS: r.Took.Milliseconds()}
	if age := r.Age(now); age >= 0 {
		c.AgeMS = age.Milliseconds()
	}
	if r.Err != nil {
		c.Error = r.Err.Error()
	}
	return c
}

func (b *backend) Flows(ctx context.Context, q admin.FlowsQuery) (admin.FlowsResponse, error) {
	s := b.d.snapshot()
	if len(s.nat.SNATAddrs) == 0 {
		return admin.FlowsResponse{}, fmt.Errorf("datapath not configured yet: %s", s.lastError)
	}
	var src netip.Addr
	if q.Src != "" {
		a, err := netip.ParseAddr(q.Src)
		if err != nil {
			return admin.FlowsResponse{}, fmt.Errorf("src %q: %w", q.Src, err)
		}
		src = a
	}
	flows, matched, err := traffic.Flows(ctx, b.d.log, conntrack.NetNS{}, conntrackFilter(s.nat),
		conntrack.FlowQuery{Protocol: q.Protocol, Src: src, Limit: q.Limit}, b.d.fast)
	if err != nil {
		return admin.FlowsResponse{}, err
	}
	resp := admin.FlowsResponse{Flows: []admin.Flow{}, Total: matched, Truncated: matched > len(flows)}
	for _, f := range flows {
		resp.Flows = append(resp.Flows, admin.Flow{
			ID:             f.ID,
			Protocol:       f.ProtoName,
			State:          f.TCPState,
			Src:            f.Original.Src.String(),
			Dst:            f.Original.Dst.String(),
			NATSrc:         f.Reply.Dst.String(),
			ReplySrc:       f.Reply.Src.String(),
			TimeoutSeconds: int(f.Timeout.Seconds()),
			Assured:        f.Assured,
			PacketsOut:     f.OrigPackets,
			BytesOut:       f.OrigBytes,
			PacketsIn:      f.ReplyPackets,
			BytesIn:        f.ReplyBytes,
			Offloaded:      f.Fast.Offloaded,
			FastPacketsOut: f.Fast.OrigPackets,
			FastBytesOut:   f.Fast.OrigBytes,
			FastPacketsIn:  f.Fast.ReplyPackets,
			FastBytesIn:    f.Fast.ReplyBytes,
		})
	}
	return resp, nil
}

func (b *backend) Config(ctx context.Context) (json.RawMessage, error) {
	cfg := b.d.config()
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return raw, nil
}

func (b *backend) Reload(ctx context.Context, req admin.ReloadRequest) (admin.ReloadResponse, error) {
	if req.ConfigPath != "" && req.ConfigPath != b.d.configPath {
		return admin.ReloadResponse{}, fmt.Errorf("config_path %q: hanatd reads %q; change --config and restart to use another file", req.ConfigPath, b.d.configPath)
	}
	r := reloadRequest{reply: make(chan reloadResult, 1)}
	select {
	case b.d.reloads <- r:
	case <-ctx.Done():
		return admin.ReloadResponse{}, ctx.Err()
	}
	select {
	case res := <-r.reply:
		if res.err != nil {
			return admin.ReloadResponse{}, res.err
		}
		msg := "configuration unchanged; datapath reconciled"
		if res.changed {
			msg = "configuration changed; datapath reconciled"
		}
		return admin.ReloadResponse{Changed: res.changed, Message: msg}, nil
	case <-ctx.Done():
		return admin.ReloadResponse{}, ctx.Err()
	}
}

func stringsOf[T fmt.Stringer](xs []T) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = x.String()
	}
	return out
}

func (b *backend) Doctor(ctx context.Context) (admin.DoctorReport, error) {
	f := b.d.ec2.DoctorFacts(ctx)
	f.IPForward = datapath.IPForward()
	if present, err := b.d.slow.Present(ctx); err == nil {
		f.TablePresent = &present
	}
	f.TableName = "inet " + datapath.TableName
	checks := doctor.Run(f)
	rep := admin.DoctorReport{OK: doctor.OK(checks), Checks: make([]admin.DoctorCheck, len(checks))}
	for i, c := range checks {
		rep.Checks[i] = admin.DoctorCheck{ID: c.ID, Title: c.Title, Status: string(c.Status), Detail: c.Detail, Fix: c.Fix}
	}
	return rep, nil
}

package main

import (
	"strings"
	"testing"
	"time"

	"github.com/hanat/hanat/admin"
)

func TestFastpathStatusFormat(t *testing.T) {
	st := admin.Status{
		Ready: true,
		Datapath: admin.DatapathStatus{
			Table: "inet hanat", Present: true, Fastpath: "generic",
			FastpathDetail: admin.FastpathStatus{
				Mode: "generic", Reason: "generic (skb) mode: the driver refused native XDP",
				Interfaces: []admin.FastpathInterface{
					{Name: "ens5", Mode: "generic", Error: "native: MTU too large", Note: ""},
					{Name: "ens6", Mode: "off", Error: "no\tsuch device"},
				},
				OffloadedFlows: 12, PendingFlows: 1, MaxFlows: 32768,
				Hits: 123456, Misses: 789,
				Pass:    map[string]uint64{"syn": 10, "fin": 4, "rst": 0, "too_big": 2},
				Offload: map[string]uint64{"events": 100, "resyncs": 1, "events_dropped": 0},
			},
		},
	}
	var b strings.Builder
	if err := writeStatus(&b, st, time.Now()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"fast path:", "generic (generic (skb) mode: the driver refused native XDP)",
		"Fast path (XDP)", "ens5 generic: native: MTU too large", "ens6 off: no?such device",
		"12 (1 pending, max 32768)", "123456 / 789",
		"syn 10, fin 4, too_big 2", "events 100, resyncs 1",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "rst 0") || strings.Contains(out, "events_dropped") {
		t.Errorf("zero counters printed:\n%s", out)
	}

	// An old daemon without fast-path details: no section.
	st.Datapath.FastpathDetail = admin.FastpathStatus{}
	b.Reset()
	if err := writeStatus(&b, st, time.Now()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "Fast path (XDP)") {
		t.Errorf("empty fast-path section printed:\n%s", b.String())
	}
}

func TestFastpathFlowsFormat(t *testing.T) {
	fr := admin.FlowsResponse{Total: 2, Flows: []admin.Flow{
		{Protocol: "tcp", State: "ESTABLISHED", Src: "10.0.11.10:40000", Dst: "198.51.100.100:80", NATSrc: "198.51.100.2:40000",
			PacketsOut: 1005, BytesOut: 1500400, PacketsIn: 504, BytesIn: 30000, TimeoutSeconds: 349,
			Offloaded: true, FastPacketsOut: 1000, FastBytesOut: 1500000, FastPacketsIn: 500, FastBytesIn: 29000},
		{Protocol: "udp", Src: "10.0.11.10:5353", Dst: "198.51.100.100:53", NATSrc: "198.51.100.2:1024", TimeoutSeconds: 29},
	}}
	var b strings.Builder
	if err := writeFlows(&b, fr); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if !strings.HasSuffix(lines[1], "yes (fast 1000/500 pkts)") {
		t.Errorf("offloaded row %q", lines[1])
	}
	if !strings.HasSuffix(strings.TrimSpace(lines[2]), "no") {
		t.Errorf("slow-path row %q", lines[2])
	}
}

package metrics_test

// A NAT in network namespaces with real traffic: a private host (priv)
// talks through a NAT namespace doing SNAT (nat) to a server (ext). The
// exporter's Source reads the NAT's conntrack table the way hanatd does
// (flows NATed to the NAT address, with their byte and packet counters), and
// the scraped counters must grow with the traffic.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hanat/hanat/conntrack"
	"github.com/hanat/hanat/internal/netns"
	"github.com/hanat/hanat/metrics"
)

const (
	labPrivAddr = "10.0.11.5"
	labNATIn    = "10.0.11.1"
	labNATOut   = "203.0.113.1"
	labExtAddr  = "203.0.113.10"
	labPort     = 8080
)

func labNS(t *testing.T, prefix string) *netns.NS {
	t.Helper()
	ns, err := netns.Create(netns.UniqueName(prefix))
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	return ns
}

func run(t *testing.T, ctx context.Context, ns *netns.NS, cmd string, args ...string) {
	t.Helper()
	if _, err := ns.Run(ctx, cmd, args...); err != nil {
		t.Fatal(err)
	}
}

// vethPair links namespaces a and b, created inside a (the host's own
// namespace is never touched); names are unique and ≤ 15 characters.
func vethPair(t *testing.T, ctx context.Context, a, b *netns.NS) (string, string) {
	t.Helper()
	suffix := netns.UniqueName("")
	an, bn := "hnta"+suffix, "hntb"+suffix
	run(t, ctx, a, "ip", "link", "add", an, "type", "veth", "peer", "name", bn, "netns", b.Name)
	return an, bn
}

func TestScrapeDuringTraffic(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, nftables and conntrack (CI runs it as root)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	priv, nat, ext := labNS(t, "hnt-mp-"), labNS(t, "hnt-mn-"), labNS(t, "hnt-me-")
	pIf, nIn := vethPair(t, ctx, priv, nat)
	nOut, eIf := vethPair(t, ctx, nat, ext)
	run(t, ctx, priv, "ip", "addr", "add", labPrivAddr+"/24", "dev", pIf)
	run(t, ctx, priv, "ip", "link", "set", pIf, "up")
	run(t, ctx, priv, "ip", "route", "add", "default", "via", labNATIn)
	run(t, ctx, nat, "ip", "addr", "add", labNATIn+"/24", "dev", nIn)
	run(t, ctx, nat, "ip", "addr", "add", labNATOut+"/24", "dev", nOut)
	run(t, ctx, nat, "ip", "link", "set", nIn, "up")
	run(t, ctx, nat, "ip", "link", "set", nOut, "up")
	run(t, ctx, ext, "ip", "addr", "add", labExtAddr+"/24", "dev", eIf)
	run(t, ctx, ext, "ip", "link", "set", eIf, "up")
	run(t, ctx, nat, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	// SNAT of the private subnet to the NAT address, as hanat's table does.
	run(t, ctx, nat, "nft", "add table ip hntlab; add chain ip hntlab post { type nat hook postrouting priority srcnat; }; "+
		"add rule ip hntlab post ip saddr 10.0.11.0/24 oif "+nOut+" snat to "+labNATOut)
	run(t, ctx, nat, "sysctl", "-qw", "net.netfilter.nf_conntrack_acct=1")

	// The server in ext reads everything it gets.
	var ln net.Listener
	if err := ext.Do(func() (err error) {
		ln, err = net.Listen("tcp", fmt.Sprintf("%s:%d", labExtAddr, labPort))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(io.Discard, c) }()
		}
	}()

	// The Source: the NAT's conntrack table, filtered to hanat's flows.
	table, err := conntrack.Open(slog.New(slog.DiscardHandler), conntrack.NetNSFD(nat.FD()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { table.Close() })
	filter := conntrack.Filter{
		PrivateCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.11.0/24")},
		NATAddrs:     []netip.Addr{netip.MustParseAddr(labNATOut)},
	}
	source := func(ctx context.Context) (metrics.Snapshot, error) {
		flows, err := table.Flows(ctx, filter)
		if err != nil {
			return metrics.Snapshot{}, err
		}
		s := metrics.Snapshot{ActiveConnections: uint64(len(flows))}
		for _, f := range flows {
			s.BytesInFromSource += f.OrigBytes
			s.PacketsInFromSource += f.OrigPackets
			s.BytesInFromDestination += f.ReplyBytes
			s.PacketsInFromDestination += f.ReplyPackets
		}
		return s, nil
	}
	exp, err := metrics.New(slog.New(slog.DiscardHandler), metrics.Options{Listen: "127.0.0.1:0", Source: source, NoRuntimeMetrics: true})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := exp.Listen()
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- exp.Run(rctx) }()
	t.Cleanup(func() { rcancel(); <-done })

	// The private host connects through the NAT.
	var conn net.Conn
	if err := priv.Do(func() (err error) {
		d := net.Dialer{Timeout: 5 * time.Second}
		conn, err = d.DialContext(ctx, "tcp", fmt.Sprintf("%s:%d", labExtAddr, labPort))
		return err
	}); err != nil {
		t.Fatalf("connect through the NAT: %v", err)
	}
	t.Cleanup(func() { conn.Close() })

	chunk := make([]byte, 1<<20)
	send := func() {
		t.Helper()
		if err := conn.SetWriteDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Write(chunk); err != nil {
			t.Fatalf("send 1 MiB through the NAT: %v", err)
		}
	}
	// scrapeUntil scrapes until bytes_in_from_source reaches min (the
	// server may still be reading); bounded to 50 tries.
	scrapeUntil := func(min float64) (bytes, packets, active float64) {
		t.Helper()
		for range 50 {
			out := scrape(t, "http://"+addr.String()+metrics.MetricsPath)
			bytes = value(out, "hanat_bytes_in_from_source_total")
			packets = value(out, "hanat_packets_in_from_source_total")
			active = value(out, "hanat_active_connections")
			if bytes >= min {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatalf("hanat_bytes_in_from_source_total stayed at %v, want ≥ %v", bytes, min)
		return
	}

	send()
	b1, p1, active := scrapeUntil(1 << 20)
	if active != 1 {
		t.Errorf("hanat_active_connections = %v, want 1", active)
	}
	send()
	b2, p2, _ := scrapeUntil(b1 + 1<<20)
	if p2 <= p1 {
		t.Errorf("packets did not grow with the traffic: %v → %v", p1, p2)
	}
	t.Logf("bytes in from source %v → %v, packets %v → %v over 2 MiB", b1, b2, p1, p2)
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s\n%s", resp.Status, b)
	}
	return string(b)
}

func value(exposition, name string) float64 {
	for l := range strings.Lines(exposition) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), name+" "); ok {
			f, _ := strconv.ParseFloat(strings.Fields(v)[0], 64)
			return f
		}
	}
	return -1
}

package datapath

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/hanat/hanat/internal/netns"
	"golang.org/x/sys/unix"
)

// TestResetNoFlowTraffic runs hanat's table and sysctls in namespaces and
// checks what the kernel does with TCP segments of no flow:
//
//		priv 10.0.11.2 ── inside 10.0.11.1 · nat · outside 203.0.113.1 ── 203.0.113.100 inet
//
//	  - a segment of a live flow that conntrack's window tracking would
//	    reject is forwarded, never reset (nf_conntrack_tcp_be_liberal=1);
//	  - segments from outside with no flow, and one with a spoofed private
//	    source arriving from outside, are dropped as invalid, not answered;
//	  - once the flow's conntrack entry is gone, the private host's next
//	    segment is answered with a RST at once and never reaches the server
//	    (nf_conntrack_tcp_loose=0: not picked up as a new flow);
//	  - the NAT host's own TCP connection survives the loss of its entry
//	    (input lets the segment on to the port rules).
func TestResetNoFlowTraffic(t *testing.T) {
	l := newSlowLab(t)
	priv, nat, inet := l.priv, l.nat, l.inet
	ctx := testContext(t)
	// The internet host's segments to the private subnet really reach
	// forward.
	l.routePrivateAtNAT(t)
	outside := l.outside

	n := NAT{
		PrivateCIDRs: []netip.Prefix{mustPrefix("10.0.11.0/24")},
		SNATAddrs:    []netip.Addr{mustAddr("203.0.113.1")},
		OutsideIface: outside,
		HostInput:    &HostInput{TCPPorts: []uint16{2222}},
	}
	sp := l.apply(t, ctx, n)
	for key, want := range map[string]string{"net.netfilter.nf_conntrack_tcp_loose": "0", "net.netfilter.nf_conntrack_tcp_be_liberal": "1"} {
		if got := strings.TrimSpace(mustRunNS(t, ctx, nat, "sysctl", "-n", key)); got != want {
			t.Errorf("%s = %s in the NAT namespace, want %s", key, got, want)
		}
	}
	counters := func() map[string]Counter {
		t.Helper()
		c, err := sp.Counters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	flush := func() {
		t.Helper()
		mustRunNS(t, ctx, nat, "conntrack", "-F")
	}

	ln := listenIn(t, inet, "203.0.113.100:8080")
	client, server := connectThrough(t, ctx, priv, "203.0.113.100:8080", ln)
	echo(t, client, server, "hello")
	clientAddr := client.LocalAddr().(*net.TCPAddr).AddrPort()

	// A segment of the live flow far outside its window (conntrack would
	// call it invalid with window tracking on) is not reset.
	before := counters()
	sendSegment(t, priv, clientAddr, netip.MustParseAddrPort("203.0.113.100:8080"), 0x7fff0000, 12345, tcpFlagACK, []byte("zz"))
	time.Sleep(200 * time.Millisecond)
	echo(t, client, server, "alive")
	if got := counters()[RuleResetNoFlow].Packets - before[RuleResetNoFlow].Packets; got != 0 {
		t.Errorf("%s answered %d segment(s) of a live flow (out of window): it would reset it", RuleResetNoFlow, got)
	}

	// From outside, no flow: dropped as invalid, never answered; also a
	// private source that arrives from outside (spoofed).
	before = counters()
	sendSegment(t, inet, netip.MustParseAddrPort("203.0.113.100:8080"), netip.MustParseAddrPort("10.0.11.2:40000"), 1000, 2000, tcpFlagACK, nil)
	sendSegment(t, inet, netip.MustParseAddrPort("10.0.11.77:40000"), netip.MustParseAddrPort("10.0.11.2:8080"), 1000, 2000, tcpFlagACK, nil)
	time.Sleep(200 * time.Millisecond)
	after := counters()
	if got := after[RuleResetNoFlow].Packets - before[RuleResetNoFlow].Packets; got != 0 {
		t.Errorf("%s answered %d segment(s) from outside", RuleResetNoFlow, got)
	}
	if got := after[RuleDropInvalid].Packets - before[RuleDropInvalid].Packets; got != 2 {
		t.Errorf("%s counted %d of the 2 segments from outside with no flow", RuleDropInvalid, got)
	}

	// The flow's entry is gone (as after its idle timeout): the client's
	// next segment is answered with a RST, and the server sees nothing.
	before = counters()
	flush()
	start := time.Now()
	_ = client.SetDeadline(start.Add(3 * time.Second))
	if _, err := client.Write([]byte("after")); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("write after the flow died: %v", err)
	}
	_, err := client.Read(make([]byte, 16))
	took := time.Since(start)
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("client after its flow died: read %v after %v, want ECONNRESET", err, took)
	} else if took > time.Second {
		t.Errorf("client reset after %v, want within 1s", took)
	}
	_ = server.SetReadDeadline(time.Now().Add(time.Second))
	if k, err := server.Read(make([]byte, 16)); k != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("server read %d bytes (%v) of the dead flow, want nothing", k, err)
	}
	if got := counters()[RuleResetNoFlow].Packets - before[RuleResetNoFlow].Packets; got != 1 {
		t.Errorf("%s counted %d segment(s), want 1", RuleResetNoFlow, got)
	}

	// The NAT host's own connection (port 2222 is open) outlives its
	// conntrack entry: input hands the segment to the host's TCP stack.
	hostLn := listenIn(t, nat, "0.0.0.0:2222")
	hc, hs := connectThrough(t, ctx, inet, "203.0.113.1:2222", hostLn)
	echo(t, hc, hs, "host1")
	flush()
	echo(t, hc, hs, "host2")
}

// connectThrough dials addr from ns and returns both ends of the
// connection (the server end accepted on ln); both close at cleanup.
func connectThrough(t *testing.T, ctx context.Context, ns *netns.NS, addr string, ln net.Listener) (client, server net.Conn) {
	t.Helper()
	acc := make(chan net.Conn, 1)
	go func() {
		_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(5 * time.Second))
		c, err := ln.Accept()
		if err != nil {
			acc <- nil
			return
		}
		acc <- c
	}()
	if err := ns.Do(func() (err error) {
		dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		client, err = (&net.Dialer{}).DialContext(dctx, "tcp4", addr)
		return err
	}); err != nil {
		t.Fatalf("dial %s from %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { client.Close() })
	server = <-acc
	if server == nil {
		t.Fatalf("accept on %s failed", ln.Addr())
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// echo sends msg from client to server and back, within 2 s.
func echo(t *testing.T, client, server net.Conn, msg string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	_ = client.SetDeadline(deadline)
	_ = server.SetDeadline(deadline)
	buf := make([]byte, len(msg))
	if _, err := client.Write([]byte(msg)); err != nil {
		t.Fatalf("write %q: %v", msg, err)
	}
	if _, err := io.ReadFull(server, buf); err != nil || string(buf) != msg {
		t.Fatalf("server read %q, %v; want %q", buf, err, msg)
	}
	if _, err := server.Write(buf); err != nil {
		t.Fatalf("echo %q: %v", msg, err)
	}
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != msg {
		t.Fatalf("client read %q, %v; want %q back", buf, err, msg)
	}
}

// sendSegment sends one hand-made IPv4 TCP segment from inside ns on a
// raw socket (any source address, spoofed or not).
func sendSegment(t *testing.T, ns *netns.NS, src, dst netip.AddrPort, seq, ack uint32, flags byte, payload []byte) {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: src.Addr().AsSlice(), DstIP: dst.Addr().AsSlice()}
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Seq: seq, Ack: ack, Window: 65535,
		ACK: flags&tcpFlagACK != 0, SYN: flags&tcpFlagSYN != 0, RST: flags&tcpFlagRST != 0,
	}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ip, tcp, gopacket.Payload(payload)); err != nil {
		t.Fatalf("build segment %v -> %v: %v", src, dst, err)
	}
	err := ns.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, buf.Bytes(), 0, &unix.SockaddrInet4{Addr: dst.Addr().As4()})
	})
	if err != nil {
		t.Fatalf("send segment %v -> %v from %s: %v", src, dst, ns.Name, err)
	}
}

func mustRunNS(t *testing.T, ctx context.Context, ns *netns.NS, name string, args ...string) string {
	t.Helper()
	out, err := ns.Run(ctx, name, args...)
	if err != nil {
		t.Fatalf("%s %v in %s: %v\n%s", name, args, ns.Name, err, out)
	}
	return out
}

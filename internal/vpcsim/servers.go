package vpcsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/hanat/hanat/internal/netns"
)

// Ports of the internet namespace's test servers on 203.0.113.10.
const (
	InternetHTTPPort    = 80
	InternetUDPEchoPort = 7
	InternetDiscardPort = 9
	InternetChargenPort = 19
)

// listenIn opens a listener inside ns; the socket stays in that namespace
// whichever thread serves it later.
func listenIn(ns *netns.NS, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := ns.Do(func() error {
		var err error
		ln, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen %s %s in %s: %w", network, addr, ns.Name, err)
	}
	return ln, nil
}

func (l *Lab) serveHTTP(name string, ln net.Listener, h http.Handler) {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(l.log.Handler(), slog.LevelDebug),
	}
	l.servers = append(l.servers, srv)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			l.log.Error("http server stopped", "server", name, "err", err)
		}
	}()
}

// identify is how IMDS knows its caller: by the source IP of the request.
func (l *Lab) identify(r *http.Request) (string, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return "", false
	}
	return l.model.InstanceByPrivateIP(ap.Addr().Unmap())
}

func (l *Lab) startServers(ctx context.Context) error {
	ec2 := l.model.EC2Handler(l.creds)
	imdsLn, err := listenIn(l.router, "tcp4", IMDSAddr)
	if err != nil {
		return err
	}
	l.serveHTTP("imds", imdsLn, l.model.IMDSHandler(l.identify))
	vpcLn, err := listenIn(l.router, "tcp4", VPCEC2Addr)
	if err != nil {
		return err
	}
	l.serveHTTP("ec2-vpc", vpcLn, ec2)
	asLn, err := listenIn(l.router, "tcp4", VPCAutoScalingAddr)
	if err != nil {
		return err
	}
	l.serveHTTP("autoscaling-vpc", asLn, l.model.AutoScalingHandler(l.creds))
	hostLn, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen for the EC2 API on host loopback: %w", err)
	}
	l.hostEC2URL = "http://" + hostLn.Addr().String() + "/"
	l.serveHTTP("ec2-host", hostLn, ec2)
	return l.startInternet()
}

// startInternet runs the internet namespace's test servers.
func (l *Lab) startInternet() error {
	a := inetAddr.Addr()
	in := &Internet{
		NS:          l.inet,
		Addr:        a,
		HTTPAddr:    netip.AddrPortFrom(a, InternetHTTPPort),
		UDPEchoAddr: netip.AddrPortFrom(a, InternetUDPEchoPort),
		DiscardAddr: netip.AddrPortFrom(a, InternetDiscardPort),
		ChargenAddr: netip.AddrPortFrom(a, InternetChargenPort),
	}
	httpLn, err := listenIn(l.inet, "tcp4", in.HTTPAddr.String())
	if err != nil {
		return err
	}
	l.serveHTTP("internet-http", httpLn, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ap, err := netip.ParseAddrPort(r.RemoteAddr)
		if err != nil {
			http.Error(w, "bad remote address", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Source-Addr", ap.String())
		fmt.Fprintf(w, "%s\n", ap.Addr().Unmap())
	}))
	l.seen = &serverSources{udp: map[netip.AddrPort]uint64{}, tcp: map[netip.AddrPort]int{}}
	var pc net.PacketConn
	if err := l.inet.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp4", in.UDPEchoAddr.String())
		return err
	}); err != nil {
		return fmt.Errorf("listen udp %s in %s: %w", in.UDPEchoAddr, l.inet.Name, err)
	}
	l.closers = append(l.closers, func() { _ = pc.Close() })
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			l.seen.datagram(from)
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	for _, s := range []struct {
		addr   netip.AddrPort
		handle func(net.Conn)
	}{
		{in.DiscardAddr, func(c net.Conn) { _, _ = io.Copy(io.Discard, c) }},
		{in.ChargenAddr, func(c net.Conn) {
			defer l.seen.open(c)()
			chargen(c)
		}},
	} {
		ln, err := listenIn(l.inet, "tcp4", s.addr.String())
		if err != nil {
			return err
		}
		l.serveTCP(ln, s.handle)
	}
	l.internet = in
	return nil
}

// ServerSources is what the internet's servers see of their clients:
// the public addresses the NATs translated them to.
type ServerSources struct {
	// UDPEcho counts the echo server's datagrams per source (the first
	// maxSources sources; Dropped counts datagrams of sources beyond).
	UDPEcho map[netip.AddrPort]uint64
	Dropped uint64
	// Chargen is the source of every open chargen connection.
	Chargen []netip.AddrPort
}

// maxSources bounds the sources the lab remembers.
const maxSources = 4096

type serverSources struct {
	mu      sync.Mutex
	udp     map[netip.AddrPort]uint64
	dropped uint64
	tcp     map[netip.AddrPort]int // open chargen connections per source
}

func (s *serverSources) datagram(from net.Addr) {
	ua, ok := from.(*net.UDPAddr)
	if !ok {
		return
	}
	ap := ua.AddrPort()
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, known := s.udp[ap]; known || len(s.udp) < maxSources {
		s.udp[ap]++
	} else {
		s.dropped++
	}
}

// open records c's source until the returned func runs.
func (s *serverSources) open(c net.Conn) func() {
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return func() {}
	}
	ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	s.mu.Lock()
	s.tcp[ap]++
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.tcp[ap]--; s.tcp[ap] <= 0 {
			delete(s.tcp, ap)
		}
	}
}

// ServerSources says which public sources the internet's servers see.
func (l *Lab) ServerSources() ServerSources {
	s := l.seen
	if s == nil {
		return ServerSources{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := ServerSources{UDPEcho: maps.Clone(s.udp), Dropped: s.dropped}
	for ap := range s.tcp {
		out.Chargen = append(out.Chargen, ap)
	}
	slices.SortFunc(out.Chargen, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return out
}

// serveTCP accepts on ln until the lab closes, running handle per
// connection; Close closes the listener and every open connection.
func (l *Lab) serveTCP(ln net.Listener, handle func(net.Conn)) {
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	closed := false
	l.closers = append(l.closers, func() {
		_ = ln.Close()
		mu.Lock()
		closed = true
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
	})
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				_ = c.Close()
				return
			}
			conns[c] = struct{}{}
			mu.Unlock()
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					_ = c.Close()
				}()
				handle(c)
			}()
		}
	}()
}

// chargen streams a repeating printable pattern until the client closes.
func chargen(c net.Conn) {
	line := make([]byte, 0, 74*95)
	for i := range 95 {
		for j := range 72 {
			line = append(line, byte(' '+(i+j)%95))
		}
		line = append(line, '\r', '\n')
	}
	go func() { _, _ = io.Copy(io.Discard, c) }()
	for {
		if _, err := c.Write(line); err != nil {
			return
		}
	}
}

// Dial opens a connection from inside the instance's namespace (the socket
// belongs to it, so traffic leaves through the instance's ENI).
func (l *Lab) Dial(ctx context.Context, instance, network, addr string) (net.Conn, error) {
	in := l.inst(instance)
	if in == nil {
		return nil, fmt.Errorf("vpcsim Dial from %q: unknown instance", instance)
	}
	return DialIn(ctx, in.ns, network, addr)
}

// DialIn opens a connection from inside ns.
func DialIn(ctx context.Context, ns *netns.NS, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dial %s %s from %s: %w", network, addr, ns.Name, err)
	}
	return c, nil
}

// HTTPClient returns a client whose connections start inside the
// instance's namespace. It keeps no idle connections, so every request is a
// fresh flow through the VPC.
func (l *Lab) HTTPClient(instance string) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return l.Dial(ctx, instance, network, addr)
			},
			DisableKeepAlives: true,
			Proxy:             nil,
		},
	}
}

// FetchSourceIP asks the internet HTTP server, from inside instance, which
// source address it saw.
func (l *Lab) FetchSourceIP(ctx context.Context, instance string) (netip.Addr, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, l.internet.HTTPURL(), nil)
	if err != nil {
		return netip.Addr{}, err
	}
	resp, err := l.HTTPClient(instance).Do(req)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("GET %s from %s: %w", l.internet.HTTPURL(), instance, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("GET %s from %s: read body: %w", l.internet.HTTPURL(), instance, err)
	}
	a, err := netip.ParseAddr(string(trimNL(body)))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("GET %s from %s: body %q: %w", l.internet.HTTPURL(), instance, body, err)
	}
	return a, nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

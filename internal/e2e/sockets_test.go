package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/hanat/hanat/internal/netns"
)

// Sockets opened inside ns.Do belong to that namespace for their whole life,
// so servers and clients run in-process, without external binaries.

func listenTCP(t *testing.T, ns *netns.NS, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp4", addr); return err }); err != nil {
		t.Fatalf("listen tcp %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func listenUDP(t *testing.T, ns *netns.NS, addr string) *net.UDPConn {
	t.Helper()
	var pc net.PacketConn
	if err := ns.Do(func() (err error) { pc, err = net.ListenPacket("udp4", addr); return err }); err != nil {
		t.Fatalf("listen udp %s in %s: %v", addr, ns.Name, err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc.(*net.UDPConn)
}

// serveHTTP answers every request with "<name> saw <remote addr>".
func serveHTTP(t *testing.T, ns *netns.NS, addr, name string) {
	t.Helper()
	ln := listenTCP(t, ns, addr)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s saw %s", name, r.RemoteAddr)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// udpPeers is a UDP echo server that records who sent to it.
type udpPeers struct {
	mu    sync.Mutex
	peers []netip.AddrPort
}

func (u *udpPeers) seen() []netip.AddrPort {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]netip.AddrPort(nil), u.peers...)
}

func serveUDPEcho(t *testing.T, ns *netns.NS, addr string) *udpPeers {
	t.Helper()
	c := listenUDP(t, ns, addr)
	u := &udpPeers{}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			u.mu.Lock()
			u.peers = append(u.peers, from)
			u.mu.Unlock()
			_, _ = c.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return u
}

func dialIn(ns *netns.NS) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := ns.Do(func() (err error) {
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

func httpGet(ctx context.Context, ns *netns.NS, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{DialContext: dialIn(ns), DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return string(b), err
}

// udpRoundTrip sends one datagram from ns and waits for the echo.
func udpRoundTrip(ns *netns.NS, to string, payload string, wait time.Duration) (string, error) {
	c, err := dialIn(ns)(context.Background(), "udp4", to)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := c.Write([]byte(payload)); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// tcpConnects reports whether a TCP connection from ns to addr completes
// within wait.
func tcpConnects(ns *netns.NS, addr string, wait time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := dialIn(ns)(ctx, "tcp4", addr)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// udpDelivered sends a datagram from ns to addr and reports whether the
// receiving socket got it within wait.
func udpDelivered(ns *netns.NS, to string, rx *net.UDPConn, wait time.Duration) bool {
	c, err := dialIn(ns)(context.Background(), "udp4", to)
	if err != nil {
		return false
	}
	defer c.Close()
	_, _ = c.Write([]byte("unsolicited"))
	_ = rx.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 64)
	_, _, err = rx.ReadFrom(buf)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err == nil
}

package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Health check protocols GWLB offers that a member answers (HTTPS is not
// served: a member has no certificate to show).
const (
	ProtocolTCP  = "tcp"
	ProtocolHTTP = "http"
)

// Target group defaults for GWLB health checks: TCP on port 80, path "/"
// for HTTP.
const (
	DefaultHealthCheckPort = 80
	DefaultHealthCheckPath = "/"
)

// retryListen is how long the responder waits before binding again after
// a failure (the port taken by someone else, the address not yet up).
const retryListen = time.Second

// HealthCheck is the responder to GWLB's health checks.
type HealthCheck struct {
	// Listen is the one address and port answered (the instance's private
	// IP; GWLB checks the registered instance's primary address).
	Listen netip.AddrPort
	// Protocol is ProtocolTCP (a connection accepted and closed while
	// healthy, refused while not) or ProtocolHTTP (GET Path: 200
	// "healthy" or 503 and the reason).
	Protocol string
	// Path of the HTTP check (default "/").
	Path string
}

func (h *HealthCheck) check() error {
	if !h.Listen.IsValid() {
		return errors.New("fleet member: no health check address")
	}
	switch h.Protocol {
	case ProtocolTCP:
	case ProtocolHTTP:
		if h.Path == "" {
			h.Path = DefaultHealthCheckPath
		}
		if !strings.HasPrefix(h.Path, "/") {
			return fmt.Errorf("fleet member: health check path %q does not start with /", h.Path)
		}
	default:
		return fmt.Errorf("fleet member: health check protocol %q: want %s or %s", h.Protocol, ProtocolTCP, ProtocolHTTP)
	}
	return nil
}

// String is how the status names the check: "http 10.0.1.5:80 /".
func (h HealthCheck) String() string {
	if h.Protocol == ProtocolHTTP {
		return fmt.Sprintf("%s %s %s", h.Protocol, h.Listen, h.Path)
	}
	return fmt.Sprintf("%s %s", h.Protocol, h.Listen)
}

// respond serves the health checks until ctx is done.
func (m *Member) respond(ctx context.Context) {
	if m.o.HealthCheck.Protocol == ProtocolHTTP {
		m.respondHTTP(ctx)
		return
	}
	m.respondTCP(ctx)
}

// listen binds the check's address, retrying until it works or ctx ends.
func (m *Member) listen(ctx context.Context) (net.Listener, bool) {
	var lc net.ListenConfig
	for {
		ln, err := lc.Listen(ctx, "tcp", m.o.HealthCheck.Listen.String())
		if err == nil {
			m.setResponderErr(nil)
			return ln, true
		}
		err = fmt.Errorf("health check %s: %w", m.o.HealthCheck, err)
		m.setResponderErr(err)
		m.log.Warn("cannot serve GWLB health checks; retrying", "err", err)
		select {
		case <-ctx.Done():
			return nil, false
		case <-m.clock.After(retryListen):
		}
	}
}

// respondHTTP answers GET Path with the verdict; the listener stays open.
func (m *Member) respondHTTP(ctx context.Context) {
	ln, ok := m.listen(ctx)
	if !ok {
		return
	}
	srv := &http.Server{
		Handler:           m.httpHandler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       5 * time.Second,
		WriteTimeout:      5 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(m.log.Handler(), slog.LevelDebug),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		m.setResponderErr(fmt.Errorf("health check %s: %w", m.o.HealthCheck, err))
		m.log.Error("GWLB health check responder stopped", "err", err)
	}
	<-done
}

func (m *Member) httpHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
			m.sawCheck(ap.Addr())
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if r.URL.Path != m.o.HealthCheck.Path {
			http.Error(w, "not found: the health check is "+m.o.HealthCheck.Path, http.StatusNotFound)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		ok, why := m.Health()
		if !ok {
			http.Error(w, "unhealthy: "+why, http.StatusServiceUnavailable)
			return
		}
		_, _ = fmt.Fprintln(w, "healthy")
	})
}

// respondTCP listens only while healthy: GWLB's TCP check passes on the
// handshake, so an unhealthy member must refuse the connection, not
// accept and close it.
func (m *Member) respondTCP(ctx context.Context) {
	var (
		ln   net.Listener
		wg   sync.WaitGroup
		stop = func() {
			if ln != nil {
				_ = ln.Close()
				wg.Wait()
				ln = nil
			}
		}
	)
	defer stop()
	for {
		change := m.awaitChange()
		healthy, why := m.Health()
		switch {
		case healthy && ln == nil:
			l, ok := m.listen(ctx)
			if !ok {
				return
			}
			ln = l
			wg.Go(func() { m.acceptTCP(l) })
			m.log.Debug("GWLB TCP health check open", "listen", m.o.HealthCheck.Listen)
		case !healthy && ln != nil:
			stop()
			m.log.Debug("GWLB TCP health check closed", "reason", why)
		}
		select {
		case <-ctx.Done():
			return
		case <-change:
		}
	}
}

// acceptTCP accepts and closes each check until ln is closed. A check
// that races a verdict change to unhealthy is reset, not closed cleanly.
func (m *Member) acceptTCP(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
			m.sawCheck(ap.Addr())
		}
		if ok, _ := m.Health(); !ok {
			if tc, isTCP := c.(*net.TCPConn); isTCP {
				_ = tc.SetLinger(0)
			}
		}
		_ = c.Close()
	}
}

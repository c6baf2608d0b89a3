package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Server timeouts. Reads are short (requests are tiny); writes leave room
// for a backend that dumps a large conntrack table or reapplies the
// datapath.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = 60 * time.Second
	idleTimeout       = 2 * time.Minute
	backendTimeout    = 50 * time.Second
	shutdownTimeout   = 5 * time.Second
	maxHeaderBytes    = 16 << 10
	// maxFlowsLimit bounds ?limit= so a typo cannot ask for billions.
	maxFlowsLimit = 10_000_000
)

// VersionHeaderDaemon is the response header carrying hanatd's own version
// (ServerOptions.Version), for diagnostics.
const VersionHeaderDaemon = "Hanat-Version"

// ServerOptions configure a [Server].
type ServerOptions struct {
	// SocketPath is where to listen (default [DefaultSocketPath]).
	SocketPath string
	// Group owns the socket and may use mutating routes besides root
	// (default [DefaultGroup]). If it does not exist, only root may write
	// and the socket stays owned by the daemon's own group.
	Group string
	// Version is hanatd's version, sent in the Hanat-Version header.
	Version string
}

// Server serves the admin API on a unix socket.
type Server struct {
	log      *slog.Logger
	b        Backend
	opts     ServerOptions
	groupGID int    // -1: the group does not exist, root only
	procDir  string // where supplementary groups are read (/proc)
	routes   map[string]route
}

type route struct {
	method string
	write  bool // mutating: root or group members only
	serve  func(w http.ResponseWriter, r *http.Request)
}

// NewServer returns a server answering from b. A nil log discards.
func NewServer(log *slog.Logger, b Backend, opts ServerOptions) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.SocketPath == "" {
		opts.SocketPath = DefaultSocketPath
	}
	if opts.Group == "" {
		opts.Group = DefaultGroup
	}
	s := &Server{log: log, b: b, opts: opts, procDir: "/proc"}
	s.groupGID = lookupGroup(log, opts.Group)
	s.routes = map[string]route{
		"/v1/status": {method: http.MethodGet, serve: s.serveStatus},
		"/v1/flows":  {method: http.MethodGet, serve: s.serveFlows},
		"/v1/config": {method: http.MethodGet, serve: s.serveConfig},
		"/v1/reload": {method: http.MethodPost, write: true, serve: s.serveReload},
		"/v1/doctor": {method: http.MethodGet, serve: s.serveDoctor},
	}
	for path, rt := range s.haRoutes() {
		s.routes[path] = rt
	}
	return s
}

// lookupGroup resolves the admin group's gid, or -1 when it does not exist.
func lookupGroup(log *slog.Logger, name string) int {
	g, err := user.LookupGroup(name)
	if err != nil {
		var unknown user.UnknownGroupError
		if errors.As(err, &unknown) {
			log.Info("admin group does not exist: only root may use mutating admin routes", "group", name)
		} else {
			log.Warn("admin group lookup failed: only root may use mutating admin routes", "group", name, "err", err)
		}
		return -1
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil || gid < 0 {
		log.Warn("admin group has an unusable gid: only root may use mutating admin routes", "group", name, "gid", g.Gid)
		return -1
	}
	return gid
}

// Handler returns the HTTP handler of the API. Requests must carry the
// peer's credentials in their context (Run does this for every accepted
// connection); without them, writes are refused.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// Run listens on the socket and serves until ctx is done, then removes the
// socket. A stale socket left by a previous run is removed first; a path
// that is not a socket, or a socket somebody still answers on, is an error.
func (s *Server) Run(ctx context.Context) error {
	path := s.opts.SocketPath
	ln, ident, err := s.listen(ctx, path)
	if err != nil {
		return err
	}
	defer func() {
		// Remove the socket only if it is still ours: a newer hanatd may
		// have replaced it already.
		if fi, err := os.Lstat(path); err == nil && os.SameFile(fi, ident) {
			if err := os.Remove(path); err != nil {
				s.log.Warn("remove admin socket", "path", path, "err", err)
			}
		}
	}()

	srv := &http.Server{
		Handler:           s.Handler(),
		ConnContext:       s.connContext,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	s.log.Info("admin socket listening", "path", path, "group", s.opts.Group, "group_gid", s.groupGID)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve admin socket %s: %w", path, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		s.log.Warn("admin socket shutdown", "path", path, "err", err)
		srv.Close()
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve admin socket %s: %w", path, err)
	}
	return nil
}

// listen creates the socket under a temporary name, sets its mode and
// owner, then renames it into place, so nobody can connect while it is
// still world-accessible. It returns the listener and the socket's
// identity (to remove it on exit only if it is still ours).
func (s *Server) listen(ctx context.Context, path string) (*net.UnixListener, fs.FileInfo, error) {
	if !filepath.IsAbs(path) {
		return nil, nil, fmt.Errorf("admin socket %q: path must be absolute", path)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("admin socket directory: %w", err)
	}
	if err := removeStaleSocket(ctx, path); err != nil {
		return nil, nil, err
	}
	tmp := filepath.Join(dir, "."+filepath.Base(path)+"."+strconv.Itoa(os.Getpid()))
	// sun_path holds 107 bytes plus the terminating NUL.
	if len(tmp) > 107 {
		return nil, nil, fmt.Errorf("admin socket %q: path too long for a unix socket (%d bytes; keep it under %d)", path, len(path), 107-(len(tmp)-len(path)))
	}
	if fi, err := os.Lstat(tmp); err == nil && fi.Mode().Type() == fs.ModeSocket {
		os.Remove(tmp) // left by an earlier process with our pid
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("listen on admin socket: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	fail := func(err error) (*net.UnixListener, fs.FileInfo, error) {
		ln.Close()
		os.Remove(tmp)
		return nil, nil, err
	}
	if err := os.Chmod(tmp, 0o660); err != nil {
		return fail(fmt.Errorf("admin socket mode: %w", err))
	}
	if s.groupGID >= 0 {
		if err := os.Chown(tmp, -1, s.groupGID); err != nil {
			return fail(fmt.Errorf("admin socket group %q (gid %d): %w", s.opts.Group, s.groupGID, err))
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(fmt.Errorf("admin socket: %w", err))
	}
	ident, err := os.Lstat(path)
	if err != nil {
		ln.Close()
		return nil, nil, fmt.Errorf("admin socket: %w", err)
	}
	return ln, ident, nil
}

// removeStaleSocket removes path if it is a socket nobody answers on.
func removeStaleSocket(ctx context.Context, path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("admin socket %s: exists and is not a socket (%s); refusing to remove it", path, fi.Mode().Type())
	}
	d := net.Dialer{Timeout: time.Second}
	c, err := d.DialContext(ctx, "unix", path)
	if err == nil {
		c.Close()
		return fmt.Errorf("admin socket %s: another process answers on it (hanatd already running?)", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("admin socket %s: probing the existing socket: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("admin socket: remove stale socket: %w", err)
	}
	return nil
}

// connContext records the peer's credentials in the connection's context.
func (s *Server) connContext(ctx context.Context, c net.Conn) context.Context {
	cred, err := peerCredOf(c, s.procDir)
	if err != nil {
		s.log.Warn("admin connection without peer credentials: writes will be refused", "err", err)
		return withPeerCredError(ctx, err)
	}
	return withPeerCred(ctx, cred)
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set(VersionHeader, APIVersion)
	if s.opts.Version != "" {
		h.Set(VersionHeaderDaemon, s.opts.Version)
	}
	h.Set("Cache-Control", "no-store")
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("admin handler panic", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
			writeError(w, http.StatusInternalServerError, "internal error (see the hanatd log)")
		}
	}()

	rt, ok := s.routes[r.URL.Path]
	if !ok {
		msg := fmt.Sprintf("no such endpoint: %s", r.URL.Path)
		if !strings.HasPrefix(r.URL.Path, "/v"+APIVersion+"/") {
			msg += fmt.Sprintf(" (this hanatd speaks admin API version %s: /v%s/...)", APIVersion, APIVersion)
		}
		writeError(w, http.StatusNotFound, msg)
		return
	}
	if r.Method != rt.method {
		h.Set("Allow", rt.method)
		writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: method not allowed, use %s", r.Method, r.URL.Path, rt.method))
		return
	}
	cred, credErr := peerCredFrom(r.Context())
	if rt.write {
		if credErr != nil {
			s.log.Warn("admin write refused: peer unknown", "method", r.Method, "path", r.URL.Path, "err", credErr)
			writeError(w, http.StatusForbidden, fmt.Sprintf("permission denied: %s %s: cannot tell who you are (%v)", r.Method, r.URL.Path, credErr))
			return
		}
		if !authorize(cred, s.groupGID, true) {
			s.log.Warn("admin write refused", "method", r.Method, "path", r.URL.Path, "uid", cred.UID, "gid", cred.GID, "pid", cred.PID, "group", s.opts.Group)
			writeError(w, http.StatusForbidden, s.forbiddenMessage(r, cred))
			return
		}
	}
	if credErr == nil {
		s.log.Debug("admin request", "method", r.Method, "path", r.URL.Path, "uid", cred.UID, "pid", cred.PID)
	} else {
		s.log.Debug("admin request", "method", r.Method, "path", r.URL.Path, "peer", "unknown")
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxRequestBody)
	ctx, cancel := context.WithTimeout(r.Context(), backendTimeout)
	defer cancel()
	rt.serve(w, r.WithContext(ctx))
}

func (s *Server) forbiddenMessage(r *http.Request, cred PeerCred) string {
	who := fmt.Sprintf("uid %d", cred.UID)
	if s.groupGID < 0 {
		return fmt.Sprintf("permission denied: %s %s needs root (%s; group %q does not exist)", r.Method, r.URL.Path, who, s.opts.Group)
	}
	return fmt.Sprintf("permission denied: %s %s needs root or membership of group %q (%s)", r.Method, r.URL.Path, s.opts.Group, who)
}

func (s *Server) serveStatus(w http.ResponseWriter, r *http.Request) {
	st, err := s.b.Status(r.Context())
	if err != nil {
		s.backendError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (s *Server) serveFlows(w http.ResponseWriter, r *http.Request) {
	vals, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("flows: query %q: %v", r.URL.RawQuery, err))
		return
	}
	q, err := parseFlowsQuery(vals)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	resp, err := s.b.Flows(r.Context(), q)
	if err != nil {
		s.backendError(w, r, err)
		return
	}
	if resp.Flows == nil {
		resp.Flows = []Flow{}
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) serveConfig(w http.ResponseWriter, r *http.Request) {
	raw, err := s.b.Config(r.Context())
	if err != nil {
		s.backendError(w, r, err)
		return
	}
	if !json.Valid(raw) {
		s.log.Error("admin: backend config is not valid JSON", "bytes", len(raw))
		writeError(w, http.StatusInternalServerError, "config: the daemon produced invalid JSON")
		return
	}
	writeJSON(w, http.StatusOK, raw)
}

func (s *Server) serveReload(w http.ResponseWriter, r *http.Request) {
	req, err := DecodeRequest[ReloadRequest](r.Body, MaxRequestBody)
	if err != nil {
		writeError(w, http.StatusBadRequest, "reload: "+err.Error())
		return
	}
	resp, err := s.b.Reload(r.Context(), req)
	if errors.Is(err, ErrRestartNeeded) {
		s.log.Warn("admin reload refused", "err", err)
		writeError(w, http.StatusConflict, err.Error())
		return
	}
	if err != nil {
		s.backendError(w, r, err)
		return
	}
	s.log.Info("admin reload", "changed", resp.Changed, "message", resp.Message)
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) serveDoctor(w http.ResponseWriter, r *http.Request) {
	rep, err := s.b.Doctor(r.Context())
	if err != nil {
		s.backendError(w, r, err)
		return
	}
	if rep.Checks == nil {
		rep.Checks = []DoctorCheck{}
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) backendError(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("admin request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	writeError(w, http.StatusInternalServerError, err.Error())
}

// parseFlowsQuery validates ?limit=&protocol=&src=. Unknown or repeated
// parameters are errors, so a typo is not silently ignored.
func parseFlowsQuery(v url.Values) (FlowsQuery, error) {
	var q FlowsQuery
	for k, vals := range v {
		if len(vals) > 1 {
			return q, fmt.Errorf("query parameter %q given %d times", k, len(vals))
		}
		val := vals[0]
		switch k {
		case "limit":
			if val == "" {
				continue
			}
			n, err := strconv.Atoi(val)
			if err != nil || n < 0 || n > maxFlowsLimit {
				return q, fmt.Errorf("limit %q: want an integer from 0 (no limit) to %d", val, maxFlowsLimit)
			}
			q.Limit = n
		case "protocol":
			p := strings.ToLower(val)
			switch p {
			case "", "tcp", "udp", "icmp":
				q.Protocol = p
			default:
				return q, fmt.Errorf("protocol %q: want tcp, udp or icmp", val)
			}
		case "src":
			if val == "" {
				continue
			}
			a, err := netip.ParseAddr(val)
			if err != nil {
				return q, fmt.Errorf("src %q: want an IP address", val)
			}
			q.Src = a.Unmap().String()
		default:
			return q, fmt.Errorf("unknown query parameter %q (want limit, protocol, src)", k)
		}
	}
	return q, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Sprintf("encode response: %v", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, msg string) {
	b, _ := json.Marshal(ErrorResponse{Error: msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

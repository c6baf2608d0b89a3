package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeBackend answers from fixed data and records what it was asked.
type fakeBackend struct {
	mu        sync.Mutex
	status    Status
	flows     []Flow
	config    json.RawMessage
	err       error // returned by every method when set
	panicMsg  string
	queries   []FlowsQuery
	reloads   []ReloadRequest
	reloadErr error
}

func (b *fakeBackend) fail() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.panicMsg != "" {
		panic(b.panicMsg)
	}
	return b.err
}

func (b *fakeBackend) Status(ctx context.Context) (Status, error) {
	if err := b.fail(); err != nil {
		return Status{}, err
	}
	return b.status, nil
}

func (b *fakeBackend) Flows(ctx context.Context, q FlowsQuery) (FlowsResponse, error) {
	if err := b.fail(); err != nil {
		return FlowsResponse{}, err
	}
	b.mu.Lock()
	b.queries = append(b.queries, q)
	b.mu.Unlock()
	var resp FlowsResponse
	for _, f := range b.flows {
		if q.Protocol != "" && f.Protocol != q.Protocol {
			continue
		}
		if q.Src != "" && !strings.HasPrefix(f.Src, q.Src+":") && f.Src != q.Src {
			continue
		}
		resp.Total++
		if q.Limit > 0 && len(resp.Flows) >= q.Limit {
			resp.Truncated = true
			continue
		}
		resp.Flows = append(resp.Flows, f)
	}
	return resp, nil
}

func (b *fakeBackend) Config(ctx context.Context) (json.RawMessage, error) {
	if err := b.fail(); err != nil {
		return nil, err
	}
	return b.config, nil
}

func (b *fakeBackend) Reload(ctx context.Context, req ReloadRequest) (ReloadResponse, error) {
	if err := b.fail(); err != nil {
		return ReloadResponse{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reloads = append(b.reloads, req)
	if b.reloadErr != nil {
		return ReloadResponse{}, b.reloadErr
	}
	return ReloadResponse{Changed: true, Message: "configuration changed; datapath reconciled"}, nil
}

func (b *fakeBackend) Doctor(ctx context.Context) (DoctorReport, error) {
	if err := b.fail(); err != nil {
		return DoctorReport{}, err
	}
	return DoctorReport{OK: false, Checks: []DoctorCheck{
		{ID: "ip-forward", Title: "IPv4 forwarding is on", Status: "pass"},
		{ID: "source-dest-check", Title: "source/destination check is disabled", Status: "fail", Detail: "enabled on eni-1", Fix: "--no-source-dest-check"},
	}}, nil
}

func (b *fakeBackend) reloadCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.reloads)
}

func testStatus() Status {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	return Status{
		Version: "0.1.0-test", Node: "nat-a", StartedAt: t0, ConfigLoadedAt: t0.Add(time.Second),
		ConfigPath: "/etc/hanat/hanat.yaml", Ready: true,
		NAT: NATStatus{
			OutsideInterface: "out0", PrivateCIDRs: []string{"10.0.11.0/24", "10.0.12.0/24"},
			SNATAddrs: []string{"198.51.100.2"}, Ports: "1024-65535",
			PortForwards: []PortForward{{Name: "ssh", Protocol: "tcp", Port: 2222, To: "10.0.11.10:22"}},
		},
		Datapath: DatapathStatus{
			Table: "inet hanat", Present: true, LastApplied: t0.Add(2 * time.Second), Fastpath: "off",
			Counters: map[string]Counter{"forward_drop": {Packets: 7, Bytes: 420}, "snat": {Packets: 100, Bytes: 64000}},
		},
		Sysctls: []Sysctl{
			{Key: "net.ipv4.ip_forward", Want: "1", Now: "1", Applied: true},
			{Key: "net.netfilter.nf_conntrack_tcp_timeout_established", Want: "350", Now: "350", Applied: true, Note: "like the NAT gateway"},
		},
		Connections: Connections{Active: 3, TCP: 2, UDP: 1, TCPEstablished: 1},
		Cloud:       CloudStatus{Message: "no IMDS: running from config only"},
	}
}

func testFlows() []Flow {
	return []Flow{
		{ID: 1, Protocol: "tcp", State: "ESTABLISHED", Src: "10.0.11.10:40000", Dst: "198.51.100.100:80", NATSrc: "198.51.100.2:40000", ReplySrc: "198.51.100.100:80", TimeoutSeconds: 349, Assured: true, PacketsOut: 5, BytesOut: 400, PacketsIn: 4, BytesIn: 5000},
		{ID: 2, Protocol: "udp", Src: "10.0.11.10:5353", Dst: "198.51.100.100:53", NATSrc: "198.51.100.2:1024", ReplySrc: "198.51.100.100:53", TimeoutSeconds: 29, PacketsOut: 1, BytesOut: 60, PacketsIn: 1, BytesIn: 90},
		{ID: 3, Protocol: "tcp", State: "SYN_SENT", Src: "10.0.12.7:41000", Dst: "203.0.113.9:443", NATSrc: "198.51.100.2:41000", ReplySrc: "203.0.113.9:443", TimeoutSeconds: 119, PacketsOut: 1, BytesOut: 60},
	}
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{status: testStatus(), flows: testFlows(), config: json.RawMessage(`{"interfaces":{"outside":"out0"},"admin":{"socket":"/run/hanat/admin.sock","group":"hanat"}}`)}
}

// syncBuffer is a log sink safe for concurrent handlers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// testPeer is the peer the test HTTP server pretends every connection
// comes from (nil: no credentials at all).
type testPeer struct {
	mu   sync.Mutex
	cred *PeerCred
}

func (p *testPeer) set(c *PeerCred) { p.mu.Lock(); p.cred = c; p.mu.Unlock() }

// newHandlerServer serves s.Handler() through httptest with injected peer
// credentials. The admin group has gid 990.
func newHandlerServer(t *testing.T, b Backend) (*httptest.Server, *testPeer, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := NewServer(log, b, ServerOptions{SocketPath: "/nonexistent/admin.sock", Group: "hnt-test-no-such-group", Version: "0.1.0-test"})
	s.groupGID = 990
	peer := &testPeer{cred: &PeerCred{PID: 1, UID: 0, GID: 0}}
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.Config.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		peer.mu.Lock()
		defer peer.mu.Unlock()
		if peer.cred == nil {
			return ctx
		}
		return withPeerCred(ctx, *peer.cred)
	}
	ts.Start()
	t.Cleanup(ts.Close)
	return ts, peer, logs
}

type result struct {
	code   int
	header http.Header
	body   []byte
}

func (r result) errMsg(t *testing.T) string {
	t.Helper()
	var e ErrorResponse
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error == "" {
		t.Fatalf("HTTP %d body %q is not an ErrorResponse: %v", r.code, r.body, err)
	}
	return e.Error
}

// call makes one request on a fresh connection (so the peer in effect now
// applies).
func call(t *testing.T, ts *httptest.Server, method, path, body string) result {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, ts.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Close = true
	resp, err := ts.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if v := resp.Header.Get(VersionHeader); v != APIVersion {
		t.Errorf("%s %s: %s = %q, want %q", method, path, VersionHeader, v, APIVersion)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return result{resp.StatusCode, resp.Header, data}
}

func TestRoutes(t *testing.T) {
	b := newFakeBackend()
	ts, _, _ := newHandlerServer(t, b)

	t.Run("status", func(t *testing.T) {
		r := call(t, ts, "GET", "/v1/status", "")
		if r.code != 200 {
			t.Fatalf("status %d: %s", r.code, r.body)
		}
		if got := r.header.Get(VersionHeaderDaemon); got != "0.1.0-test" {
			t.Errorf("%s = %q", VersionHeaderDaemon, got)
		}
		var st Status
		if err := json.Unmarshal(r.body, &st); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(st, testStatus()) {
			t.Errorf("status round trip:\n got %+v\nwant %+v", st, testStatus())
		}
		for _, key := range []string{`"snat_addrs"`, `"private_cidrs"`, `"tcp_established"`, `"outside_interface"`, `"config_loaded_at"`, `"last_applied"`} {
			if !bytes.Contains(r.body, []byte(key)) {
				t.Errorf("status JSON lacks %s: %s", key, r.body)
			}
		}
	})
	t.Run("status zero times omitted", func(t *testing.T) {
		b2 := &fakeBackend{status: Status{Version: "x"}}
		ts2, _, _ := newHandlerServer(t, b2)
		r := call(t, ts2, "GET", "/v1/status", "")
		if bytes.Contains(r.body, []byte("0001-01-01")) {
			t.Errorf("zero times encoded: %s", r.body)
		}
	})
	t.Run("flows", func(t *testing.T) {
		r := call(t, ts, "GET", "/v1/flows", "")
		var fr FlowsResponse
		if err := json.Unmarshal(r.body, &fr); err != nil || r.code != 200 {
			t.Fatalf("%d %s %v", r.code, r.body, err)
		}
		if fr.Total != 3 || len(fr.Flows) != 3 || fr.Truncated {
			t.Errorf("flows = %+v", fr)
		}
		r = call(t, ts, "GET", "/v1/flows?limit=1&protocol=TCP&src=10.0.11.10", "")
		fr = FlowsResponse{}
		if err := json.Unmarshal(r.body, &fr); err != nil || r.code != 200 {
			t.Fatalf("%d %s %v", r.code, r.body, err)
		}
		if len(fr.Flows) != 1 || fr.Flows[0].ID != 1 || fr.Total != 1 {
			t.Errorf("filtered flows = %+v", fr)
		}
		b.mu.Lock()
		q := b.queries[len(b.queries)-1]
		b.mu.Unlock()
		if q != (FlowsQuery{Limit: 1, Protocol: "tcp", Src: "10.0.11.10"}) {
			t.Errorf("backend got query %+v", q)
		}
		r = call(t, ts, "GET", "/v1/flows?limit=1&protocol=tcp", "")
		fr = FlowsResponse{}
		json.Unmarshal(r.body, &fr)
		if len(fr.Flows) != 1 || fr.Total != 2 || !fr.Truncated {
			t.Errorf("limited flows = %+v", fr)
		}
	})
	t.Run("flows empty list is []", func(t *testing.T) {
		ts2, _, _ := newHandlerServer(t, &fakeBackend{})
		r := call(t, ts2, "GET", "/v1/flows", "")
		if !bytes.Contains(r.body, []byte(`"flows":[]`)) {
			t.Errorf("empty flows: %s", r.body)
		}
	})
	t.Run("config", func(t *testing.T) {
		r := call(t, ts, "GET", "/v1/config", "")
		if r.code != 200 || !json.Valid(r.body) || !bytes.Contains(r.body, []byte(`"outside":"out0"`)) {
			t.Errorf("config: %d %s", r.code, r.body)
		}
	})
	t.Run("reload", func(t *testing.T) {
		r := call(t, ts, "POST", "/v1/reload", `{"config_path":"/etc/hanat/hanat.yaml"}`)
		var rr ReloadResponse
		if err := json.Unmarshal(r.body, &rr); err != nil || r.code != 200 || !rr.Changed {
			t.Fatalf("reload: %d %s %v", r.code, r.body, err)
		}
		r = call(t, ts, "POST", "/v1/reload", "")
		if r.code != 200 {
			t.Fatalf("reload with empty body: %d %s", r.code, r.body)
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if want := []ReloadRequest{{ConfigPath: "/etc/hanat/hanat.yaml"}, {}}; !reflect.DeepEqual(b.reloads, want) {
			t.Errorf("backend reloads = %+v, want %+v", b.reloads, want)
		}
	})
}

func TestMethodAndPathErrors(t *testing.T) {
	ts, _, _ := newHandlerServer(t, newFakeBackend())
	for _, tt := range []struct {
		method, path string
		code         int
		allow        string
	}{
		{"POST", "/v1/status", 405, "GET"},
		{"DELETE", "/v1/flows", 405, "GET"},
		{"PUT", "/v1/config", 405, "GET"},
		{"GET", "/v1/reload", 405, "POST"},
		{"HEAD", "/v1/status", 405, "GET"},
		{"GET", "/v1/nope", 404, ""},
		{"GET", "/v1/status/", 404, ""},
		{"GET", "/v2/status", 404, ""},
		{"GET", "/", 404, ""},
		{"GET", "/v1/failover", 405, "POST"},
	} {
		r := call(t, ts, tt.method, tt.path, "")
		if r.code != tt.code {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, r.code, tt.code)
			continue
		}
		if tt.method != "HEAD" {
			r.errMsg(t)
		}
		if got := r.header.Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow %q, want %q", tt.method, tt.path, got, tt.allow)
		}
	}
}

func TestBadRequests(t *testing.T) {
	b := newFakeBackend()
	ts, _, _ := newHandlerServer(t, b)
	for _, path := range []string{
		"/v1/flows?limit=abc", "/v1/flows?limit=-1", "/v1/flows?limit=99999999999999999999",
		"/v1/flows?protocol=sctp", "/v1/flows?src=10.0.11", "/v1/flows?src=10.0.11.0/24",
		"/v1/flows?lmit=3", "/v1/flows?limit=1&limit=2", "/v1/flows?%zz",
	} {
		r := call(t, ts, "GET", path, "")
		if r.code != 400 {
			t.Errorf("GET %s: %d %s, want 400", path, r.code, r.body)
			continue
		}
		if msg := r.errMsg(t); msg == "" {
			t.Errorf("GET %s: empty error", path)
		}
	}
	for _, body := range []string{
		`{"config_path": [`, `{"bogus":true}`, `[]`, `{} {}`, `{"config_path":1}`,
		`{"config_path":"` + strings.Repeat("a", MaxRequestBody) + `"}`,
	} {
		r := call(t, ts, "POST", "/v1/reload", body)
		if r.code != 400 {
			t.Errorf("POST /v1/reload %.30q: %d %s, want 400", body, r.code, r.body)
			continue
		}
		if msg := r.errMsg(t); !strings.HasPrefix(msg, "reload: ") {
			t.Errorf("error %q does not name the request", msg)
		}
		// The server keeps serving after a bad request.
		if r := call(t, ts, "GET", "/v1/status", ""); r.code != 200 {
			t.Fatalf("status after a bad reload body: %d %s", r.code, r.body)
		}
	}
	if n := b.reloadCount(); n != 0 {
		t.Errorf("backend saw %d reloads from bad requests", n)
	}
}

// TestBadRequestSameConnection sends a malformed body and then a good
// request on one keep-alive connection.
func TestBadRequestSameConnection(t *testing.T) {
	ts, _, _ := newHandlerServer(t, newFakeBackend())
	c, err := net.Dial("tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	bad := `{"config_path": [`
	io.WriteString(c, "POST /v1/reload HTTP/1.1\r\nHost: hanatd\r\nContent-Type: application/json\r\nContent-Length: "+strconv.Itoa(len(bad))+"\r\n\r\n"+bad)
	io.WriteString(c, "GET /v1/status HTTP/1.1\r\nHost: hanatd\r\nConnection: close\r\n\r\n")
	data, err := io.ReadAll(io.LimitReader(c, 64<<10))
	if err != nil && !errors.Is(err, io.EOF) && !isTimeout(err) {
		t.Fatal(err)
	}
	s := string(data)
	i400 := strings.Index(s, "HTTP/1.1 400")
	i200 := strings.Index(s, "HTTP/1.1 200")
	if i400 < 0 || i200 < i400 {
		t.Fatalf("want a 400 then a 200 on one connection, got:\n%s", s)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestBackendErrors(t *testing.T) {
	b := newFakeBackend()
	b.err = errors.New("conntrack dump: netlink: operation not permitted")
	ts, _, logs := newHandlerServer(t, b)
	for _, tt := range []struct{ method, path string }{
		{"GET", "/v1/status"}, {"GET", "/v1/flows"}, {"GET", "/v1/config"}, {"POST", "/v1/reload"},
	} {
		r := call(t, ts, tt.method, tt.path, "")
		if r.code != 500 || r.errMsg(t) != b.err.Error() {
			t.Errorf("%s %s: %d %s, want 500 with the backend's message", tt.method, tt.path, r.code, r.body)
		}
	}
	if !strings.Contains(logs.String(), "operation not permitted") {
		t.Errorf("backend error not logged:\n%s", logs)
	}

	b2 := &fakeBackend{config: json.RawMessage(`{"a":`)}
	ts2, _, _ := newHandlerServer(t, b2)
	if r := call(t, ts2, "GET", "/v1/config", ""); r.code != 500 {
		t.Errorf("invalid config JSON: %d %s", r.code, r.body)
	}

	b3 := newFakeBackend()
	b3.panicMsg = "boom"
	ts3, _, logs3 := newHandlerServer(t, b3)
	if r := call(t, ts3, "GET", "/v1/status", ""); r.code != 500 {
		t.Errorf("backend panic: %d %s", r.code, r.body)
	}
	if !strings.Contains(logs3.String(), "boom") {
		t.Errorf("panic not logged:\n%s", logs3)
	}
	b3.mu.Lock()
	b3.panicMsg = ""
	b3.mu.Unlock()
	if r := call(t, ts3, "GET", "/v1/status", ""); r.code != 200 {
		t.Errorf("after a panic: %d %s", r.code, r.body)
	}
}

func TestWriteAuthorization(t *testing.T) {
	b := newFakeBackend()
	ts, peer, logs := newHandlerServer(t, b)

	peer.set(&PeerCred{PID: 4242, UID: 1000, GID: 1000, Groups: []uint32{4, 27}})
	r := call(t, ts, "POST", "/v1/reload", "{}")
	if r.code != 403 {
		t.Fatalf("unprivileged POST: %d %s, want 403", r.code, r.body)
	}
	if msg := r.errMsg(t); !strings.Contains(msg, "permission denied") || !strings.Contains(msg, "hnt-test-no-such-group") {
		t.Errorf("403 message %q", msg)
	}
	for _, want := range []string{"admin write refused", "uid=1000", "pid=4242", "path=/v1/reload", "level=WARN"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("refusal log lacks %q:\n%s", want, logs)
		}
	}
	for _, path := range []string{"/v1/status", "/v1/flows", "/v1/config"} {
		if r := call(t, ts, "GET", path, ""); r.code != 200 {
			t.Errorf("unprivileged GET %s: %d, want 200", path, r.code)
		}
	}
	// A bad body from an unprivileged peer is refused before it is read.
	if r := call(t, ts, "POST", "/v1/reload", "{"); r.code != 403 {
		t.Errorf("unprivileged malformed POST: %d, want 403", r.code)
	}

	peer.set(&PeerCred{PID: 4243, UID: 1000, GID: 990})
	if r := call(t, ts, "POST", "/v1/reload", ""); r.code != 200 {
		t.Errorf("primary-group member POST: %d %s", r.code, r.body)
	}
	peer.set(&PeerCred{PID: 4244, UID: 1001, GID: 1001, Groups: []uint32{27, 990}})
	if r := call(t, ts, "POST", "/v1/reload", ""); r.code != 200 {
		t.Errorf("supplementary-group member POST: %d %s", r.code, r.body)
	}
	peer.set(&PeerCred{PID: 1, UID: 0, GID: 0})
	if r := call(t, ts, "POST", "/v1/reload", ""); r.code != 200 {
		t.Errorf("root POST: %d %s", r.code, r.body)
	}
	// No credentials at all: reads still work, writes do not.
	peer.set(nil)
	if r := call(t, ts, "GET", "/v1/status", ""); r.code != 200 {
		t.Errorf("GET without credentials: %d", r.code)
	}
	if r := call(t, ts, "POST", "/v1/reload", ""); r.code != 403 {
		t.Errorf("POST without credentials: %d, want 403", r.code)
	}
	if n := b.reloadCount(); n != 3 {
		t.Errorf("backend saw %d reloads, want 3", n)
	}
}

func TestForbiddenMessageWithoutGroup(t *testing.T) {
	s := NewServer(nil, newFakeBackend(), ServerOptions{Group: "hnt-test-no-such-group"})
	if s.groupGID != -1 {
		t.Fatalf("groupGID = %d for a missing group", s.groupGID)
	}
	req := httptest.NewRequest("POST", "/v1/reload", nil)
	req = req.WithContext(withPeerCred(req.Context(), PeerCred{UID: 1000, GID: 1000}))
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, req)
	if rec.Code != 403 || !strings.Contains(rec.Body.String(), "needs root") || !strings.Contains(rec.Body.String(), "does not exist") {
		t.Errorf("%d %s", rec.Code, rec.Body)
	}
}

func TestParseFlowsQuery(t *testing.T) {
	q, err := parseFlowsQuery(map[string][]string{"limit": {"10"}, "protocol": {"UDP"}, "src": {"::ffff:10.0.11.10"}})
	if err != nil || q != (FlowsQuery{Limit: 10, Protocol: "udp", Src: "10.0.11.10"}) {
		t.Errorf("parseFlowsQuery = %+v, %v", q, err)
	}
	q, err = parseFlowsQuery(map[string][]string{"limit": {""}, "protocol": {""}, "src": {""}})
	if err != nil || q != (FlowsQuery{}) {
		t.Errorf("empty values = %+v, %v", q, err)
	}
	if FlowsPath(FlowsQuery{}) != "/v1/flows" || FlowsPath(FlowsQuery{Limit: 5, Protocol: "tcp", Src: "10.0.11.10"}) != "/v1/flows?limit=5&protocol=tcp&src=10.0.11.10" {
		t.Errorf("FlowsPath: %q", FlowsPath(FlowsQuery{Limit: 5, Protocol: "tcp", Src: "10.0.11.10"}))
	}
}

package fleet

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hanat/hanat/geneve"
	"github.com/hanat/hanat/internal/testtool"
)

// fakeDatapath is a datapath whose health and flows the test sets.
type fakeDatapath struct {
	mu    sync.Mutex
	err   error
	flows []Flow
}

func (f *fakeDatapath) Check(context.Context) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

func (f *fakeDatapath) Flows(context.Context) ([]Flow, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Flow(nil), f.flows...), nil
}

func (f *fakeDatapath) set(err error, flows ...Flow) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err, f.flows = err, flows
}

type checkFunc func(context.Context) error

func (c checkFunc) Check(ctx context.Context) error { return c(ctx) }

// fakeLifecycle serves the states the test sets.
type fakeLifecycle struct {
	mu    sync.Mutex
	state string
}

func (l *fakeLifecycle) TargetLifecycleState(context.Context) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state, nil
}

func (l *fakeLifecycle) set(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.state = s
}

// freePort is a loopback port nobody listens on now.
func freePort(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// startMember runs a member on loopback with short intervals until the
// test ends.
func startMember(t *testing.T, o Options) *Member {
	t.Helper()
	o.HealthCheck.Listen = freePort(t)
	o.CheckInterval = 10 * time.Millisecond
	o.LifecycleInterval = 10 * time.Millisecond
	o.DrainPoll = 10 * time.Millisecond
	if o.Upstream == nil {
		o.Upstream = checkFunc(func(context.Context) error { return nil })
	}
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("member did not stop")
		}
	})
	return m
}

// get is one HTTP health check.
func get(t *testing.T, m *Member, path string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + m.o.HealthCheck.Listen.String() + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b)
}

// eventually waits (bounded) until cond holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testtool.Eventually(t, 5*time.Second, what, cond)
}

// TestHTTPCheck: 200 "healthy" only while the datapath and the upstream
// are; 503 with the reason otherwise; a draining node fails at once.
func TestHTTPCheck(t *testing.T) {
	dp := &fakeDatapath{}
	var upMu sync.Mutex
	var upErr error
	m := startMember(t, Options{Datapath: dp, HealthCheck: HealthCheck{Protocol: ProtocolHTTP, Path: "/hanat"},
		Upstream: checkFunc(func(context.Context) error { upMu.Lock(); defer upMu.Unlock(); return upErr })})
	eventually(t, "healthy", func() bool { c, _ := get(t, m, "/hanat"); return c == 200 })
	if c, body := get(t, m, "/hanat"); body != "healthy\n" {
		t.Fatalf("healthy answer %d %q", c, body)
	}
	other := "127.0.0.2:" + strconv.Itoa(int(m.o.HealthCheck.Listen.Port()))
	if c, err := net.DialTimeout("tcp", other, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s answered: the check must be served on %s only", other, m.o.HealthCheck.Listen)
	}
	if c, _ := get(t, m, "/other"); c != http.StatusNotFound {
		t.Fatalf("another path: %d, want 404", c)
	}

	dp.set(errors.New("xdp program detached"))
	eventually(t, "datapath failure fails the check", func() bool {
		c, body := get(t, m, "/hanat")
		return c == http.StatusServiceUnavailable && strings.Contains(body, "datapath: xdp program detached")
	})
	dp.set(nil)
	upMu.Lock()
	upErr = errors.New("checkip.amazonaws.com:443: timeout")
	upMu.Unlock()
	eventually(t, "upstream failure fails the check", func() bool {
		c, body := get(t, m, "/hanat")
		return c == http.StatusServiceUnavailable && strings.Contains(body, "upstream: checkip")
	})
	upMu.Lock()
	upErr = nil
	upMu.Unlock()
	eventually(t, "healthy again", func() bool { c, _ := get(t, m, "/hanat"); return c == 200 })

	dp.set(nil, Flow{}) // a flow holds the drain open
	if !m.StartDrain("test") {
		t.Fatal("StartDrain did not start the drain")
	}
	// At once: the very next check fails, no evaluation in between.
	if c, body := get(t, m, "/hanat"); c != http.StatusServiceUnavailable || !strings.Contains(body, "draining since") {
		t.Fatalf("draining node answered %d %q, want 503 draining", c, body)
	}
	if m.StartDrain("again") {
		t.Fatal("a second StartDrain started another drain")
	}
	st := m.Status(t.Context())
	if len(st.Peers) != 1 || st.Peers[0].Addr != netip.MustParseAddr("127.0.0.1") || st.Peers[0].Checks == 0 {
		t.Fatalf("peers seen = %+v, want 127.0.0.1 with its checks", st.Peers)
	}
}

// TestTCPCheck: the port accepts while healthy and refuses while not.
func TestTCPCheck(t *testing.T) {
	dp := &fakeDatapath{}
	m := startMember(t, Options{Datapath: dp, HealthCheck: HealthCheck{Protocol: ProtocolTCP}})
	dial := func() error {
		c, err := net.DialTimeout("tcp", m.o.HealthCheck.Listen.String(), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}
	// Refused, not reset: on loopback a reset of an accepted check fails
	// the dial too, but GWLB, a round trip away, would count the
	// handshake as a success.
	refused := func() bool { return errors.Is(dial(), syscall.ECONNREFUSED) }
	eventually(t, "TCP check accepted", func() bool { return dial() == nil })
	dp.set(errors.New("detached"))
	eventually(t, "TCP check refused while the datapath fails", refused)
	dp.set(nil)
	eventually(t, "TCP check accepted again", func() bool { return dial() == nil })
	m.StartDrain("test")
	eventually(t, "TCP check refused while draining", refused)
}

// TestNotHealthyBeforeTheFirstCheck: a member that never evaluated is
// not healthy.
func TestNotHealthyBeforeTheFirstCheck(t *testing.T) {
	m, err := New(Options{Datapath: &fakeDatapath{}, Upstream: checkFunc(func(context.Context) error { return nil }),
		HealthCheck: HealthCheck{Listen: netip.MustParseAddrPort("127.0.0.1:80"), Protocol: ProtocolTCP}})
	if err != nil {
		t.Fatal(err)
	}
	if ok, why := m.Health(); ok || why != "not checked yet" {
		t.Fatalf("Health() = %v %q before any check", ok, why)
	}
}

// TestTerminatedStartsTheDrain: the lifecycle state Terminated drains
// the member, which ends after its last flow; InService does not.
func TestTerminatedStartsTheDrain(t *testing.T) {
	dp := &fakeDatapath{}
	ep := uint64(0x0123456789abcdef)
	dp.set(nil, Flow{Options: geneve.Options{EndpointID: ep}, GWLB: netip.MustParseAddr("10.0.9.9")},
		Flow{Options: geneve.Options{EndpointID: ep}})
	lc := &fakeLifecycle{state: StateInService}
	m := startMember(t, Options{Datapath: dp, Lifecycle: lc, DeregistrationDelay: time.Hour,
		HealthCheck: HealthCheck{Protocol: ProtocolHTTP}})
	eventually(t, "lifecycle InService read and healthy", func() bool {
		st := m.Status(t.Context())
		return st.Lifecycle == StateInService && st.Healthy
	})
	st := m.Status(t.Context())
	if st.Drain.Draining {
		t.Fatal("InService drained the member")
	}
	if got := st.Flows[geneve.EndpointName(ep)]; got != 2 {
		t.Fatalf("flows per endpoint = %v, want 2 on %s", st.Flows, geneve.EndpointName(ep))
	}
	if len(st.Peers) != 1 || st.Peers[0].Flows != 1 {
		t.Fatalf("peers = %+v, want 10.0.9.9 with one flow", st.Peers)
	}
	lc.set(StateTerminated)
	eventually(t, "Terminated starts the drain", func() bool { return m.Status(t.Context()).Drain.Draining })
	st = m.Status(t.Context())
	if st.Healthy || !strings.Contains(st.Drain.Reason, StateTerminated) || st.Drain.Left <= 0 {
		t.Fatalf("drain status = %+v healthy %v", st.Drain, st.Healthy)
	}
	select {
	case <-m.Drained():
		t.Fatal("drained with two flows left and an hour of delay")
	default:
	}
	dp.set(nil)
	select {
	case <-m.Drained():
	case <-time.After(5 * time.Second):
		t.Fatal("not drained after the last flow")
	}
	if e := m.Status(t.Context()).Drain.Ended; e == nil || e.End != DrainLastFlow {
		t.Fatalf("drain ended as %+v, want the last flow", e)
	}
}

func TestNewRefuses(t *testing.T) {
	ok := checkFunc(func(context.Context) error { return nil })
	listen := netip.MustParseAddrPort("127.0.0.1:80")
	for _, tc := range []struct {
		name string
		o    Options
		want string
	}{
		{"no datapath", Options{Upstream: ok, HealthCheck: HealthCheck{Listen: listen, Protocol: ProtocolTCP}}, "datapath"},
		{"no address", Options{Datapath: &fakeDatapath{}, Upstream: ok, HealthCheck: HealthCheck{Protocol: ProtocolTCP}}, "address"},
		{"https", Options{Datapath: &fakeDatapath{}, Upstream: ok, HealthCheck: HealthCheck{Listen: listen, Protocol: "https"}}, `"https"`},
		{"relative path", Options{Datapath: &fakeDatapath{}, Upstream: ok, HealthCheck: HealthCheck{Listen: listen, Protocol: ProtocolHTTP, Path: "health"}}, "start with /"},
		{"negative delay", Options{Datapath: &fakeDatapath{}, Upstream: ok, DeregistrationDelay: -1, HealthCheck: HealthCheck{Listen: listen, Protocol: ProtocolTCP}}, "negative"},
	} {
		if _, err := New(tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
}

// TestStopIsBounded: Stop waits for the drain, but a done context (a
// second SIGTERM) ends the wait with flows left; once the last flow ends
// the drain does too, and a later Stop returns at once.
func TestStopIsBounded(t *testing.T) {
	dp := &fakeDatapath{}
	dp.set(nil, Flow{})
	m := startMember(t, Options{Datapath: dp, DeregistrationDelay: time.Hour, HealthCheck: HealthCheck{Protocol: ProtocolTCP}})
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	if m.Stop(ctx, "SIGTERM") {
		t.Fatal("Stop reported a drain that ended with a flow left and an hour of delay")
	}
	if st := m.Status(t.Context()); !st.Drain.Draining || st.Drain.Reason != "SIGTERM" || st.Healthy {
		t.Fatalf("after Stop: %+v", st.Drain)
	}
	dp.set(nil)
	ctx2, cancel2 := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel2()
	if !m.Stop(ctx2, "again") {
		t.Fatal("Stop did not see the drain end after the last flow")
	}
	if r := m.Status(t.Context()).Drain; r.Reason != "SIGTERM" || r.Ended == nil || r.Ended.End != DrainLastFlow {
		t.Fatalf("drain = %+v", r)
	}
}

// TestResponderRetriesATakenPort: a health check port held by another
// process is reported in the status, and served once it is free.
func TestResponderRetriesATakenPort(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	listen := netip.MustParseAddrPort(held.Addr().String())
	m, err := New(Options{Datapath: &fakeDatapath{}, Upstream: checkFunc(func(context.Context) error { return nil }),
		HealthCheck: HealthCheck{Listen: listen, Protocol: ProtocolHTTP}, CheckInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	eventually(t, "the taken port in the status", func() bool {
		return strings.Contains(m.Status(t.Context()).ResponderErr, "address already in use")
	})
	held.Close()
	eventually(t, "served once free", func() bool { c, _ := get(t, m, "/"); return c == http.StatusOK })
	if e := m.Status(t.Context()).ResponderErr; e != "" {
		t.Fatalf("responder error %q after it bound", e)
	}
}

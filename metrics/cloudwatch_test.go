package metrics

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

type putCall struct {
	namespace string
	data      []Datum
}

// fakeCloudWatch records PutMetricData calls; fail makes the next calls
// fail.
type fakeCloudWatch struct {
	mu    sync.Mutex
	calls []putCall
	fail  error
}

func (f *fakeCloudWatch) PutMetricData(_ context.Context, ns string, data []Datum) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.calls = append(f.calls, putCall{ns, slices.Clone(data)})
	return nil
}

func (f *fakeCloudWatch) take() []putCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

// natGatewayNames is every NAT gateway metric hanat publishes (the
// gateway's PeakBytesPerSecond and PeakPacketsPerSecond are not).
var natGatewayNames = []string{
	"ActiveConnectionCount", "BytesInFromDestination", "BytesInFromSource", "BytesOutToDestination",
	"BytesOutToSource", "ConnectionAttemptCount", "ConnectionEstablishedCount", "ErrorPortAllocation",
	"IdleTimeoutCount", "PacketsDropCount", "PacketsInFromDestination", "PacketsInFromSource",
	"PacketsOutToDestination", "PacketsOutToSource",
}

type mutableSource struct {
	mu sync.Mutex
	s  Snapshot
}

func (m *mutableSource) get(context.Context) (Snapshot, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.s
	s.PacketsDropped = map[string]uint64{}
	for k, v := range m.s.PacketsDropped {
		s.PacketsDropped[k] = v
	}
	return s, nil
}

func (m *mutableSource) update(fn func(*Snapshot)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fn(&m.s)
}

func byName(calls []putCall) map[string]Datum {
	out := map[string]Datum{}
	for _, c := range calls {
		for _, d := range c.data {
			out[d.Name] = d
		}
	}
	return out
}

func TestCloudWatchPublish(t *testing.T) {
	src := &mutableSource{s: fullSnapshot()}
	fake := &fakeCloudWatch{}
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	cw, err := NewCloudWatch(nil, CloudWatchOptions{Client: fake, Source: src.get, Namespace: "Test/NAT",
		InstanceID: "i-0123456789abcdef0", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// First period: the gauge only, the counters become the baseline.
	if err := cw.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	got := byName(fake.take())
	if len(got) != 1 || got[CWActiveConnectionCount].Value != 12 {
		t.Fatalf("first publication = %v, want ActiveConnectionCount 12 only", got)
	}

	// Second period: increases.
	src.update(func(s *Snapshot) {
		s.ActiveConnections = 20
		s.BytesOutToDestination += 5000
		s.BytesInFromDestination += 70000
		s.PacketsDropped["invalid"] += 3
		s.PacketsDropped["host_input"] = 2 // a new reason
		s.ConnectionAttempts += 7
		s.IdleTimeouts += 1
	})
	now = now.Add(time.Minute)
	if err := cw.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	calls := fake.take()
	if len(calls) != 1 || calls[0].namespace != "Test/NAT" {
		t.Fatalf("calls = %+v, want one to Test/NAT", calls)
	}
	got = byName(calls)
	var names []string
	for n := range got {
		names = append(names, n)
	}
	slices.Sort(names)
	if !slices.Equal(names, natGatewayNames) {
		t.Errorf("names %v\nwant  %v", names, natGatewayNames)
	}
	for name, want := range map[string]float64{
		CWActiveConnectionCount: 20, CWBytesOutToDestination: 5000, CWBytesInFromDestination: 70000,
		CWPacketsDropCount: 5, CWConnectionAttemptCount: 7, CWIdleTimeoutCount: 1, CWBytesOutToSource: 0,
	} {
		if got[name].Value != want {
			t.Errorf("%s = %v, want %v", name, got[name].Value, want)
		}
	}
	for _, d := range got {
		if len(d.Dimensions) != 1 || d.Dimensions[CWDimensionInstanceID] != "i-0123456789abcdef0" {
			t.Errorf("%s dimensions %v", d.Name, d.Dimensions)
		}
		if !d.Timestamp.Equal(now) {
			t.Errorf("%s timestamp %v, want %v", d.Name, d.Timestamp, now)
		}
		wantUnit := UnitCount
		if len(d.Name) > 5 && d.Name[:5] == "Bytes" {
			wantUnit = UnitBytes
		}
		if d.Unit != wantUnit {
			t.Errorf("%s unit %q, want %q", d.Name, d.Unit, wantUnit)
		}
	}
}

// A failed period is carried into the next one: nothing is lost.
func TestCloudWatchCarriesFailedPeriod(t *testing.T) {
	src := &mutableSource{s: fullSnapshot()}
	fake := &fakeCloudWatch{}
	cw, err := NewCloudWatch(nil, CloudWatchOptions{Client: fake, Source: src.get, InstanceID: "i-1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := cw.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	fake.take()
	src.update(func(s *Snapshot) { s.BytesOutToSource += 100 })
	fake.fail = errors.New("throttled")
	if err := cw.Publish(ctx); err == nil {
		t.Fatal("Publish succeeded with a failing client")
	}
	fake.fail = nil
	src.update(func(s *Snapshot) { s.BytesOutToSource += 50 })
	if err := cw.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	if got := byName(fake.take())[CWBytesOutToSource].Value; got != 150 {
		t.Errorf("BytesOutToSource after a failed period = %v, want 150", got)
	}
	// A counter that went down (hanatd restarted) counts from zero.
	src.update(func(s *Snapshot) { s.BytesOutToSource = 30 })
	if err := cw.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	if got := byName(fake.take())[CWBytesOutToSource].Value; got != 30 {
		t.Errorf("BytesOutToSource after a reset = %v, want 30", got)
	}
	if cw.opts.Namespace != DefaultCloudWatchNamespace {
		t.Errorf("default namespace %q", cw.opts.Namespace)
	}
}

func TestCloudWatchBatches(t *testing.T) {
	src := &mutableSource{s: fullSnapshot()}
	fake := &fakeCloudWatch{}
	cw, err := NewCloudWatch(nil, CloudWatchOptions{Client: fake, Source: src.get, InstanceID: "i-1", BatchSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 2 {
		if err := cw.Publish(ctx); err != nil {
			t.Fatal(err)
		}
	}
	calls := fake.take()
	// 1 (first period) + ceil(14/5) = 4 calls, none over 5.
	if len(calls) != 4 {
		t.Fatalf("%d calls, want 4", len(calls))
	}
	total := 0
	for _, c := range calls[1:] {
		if len(c.data) > 5 {
			t.Errorf("batch of %d > 5", len(c.data))
		}
		total += len(c.data)
	}
	if total != len(natGatewayNames) {
		t.Errorf("%d data in the second period, want %d", total, len(natGatewayNames))
	}
}

func TestCloudWatchRun(t *testing.T) {
	src := &mutableSource{s: fullSnapshot()}
	fake := &fakeCloudWatch{}
	cw, err := NewCloudWatch(nil, CloudWatchOptions{Client: fake, Source: src.get, InstanceID: "i-1", Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cw.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		fake.mu.Lock()
		n := len(fake.calls)
		fake.mu.Unlock()
		if n >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d publications in 10s", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestCloudWatchOptions(t *testing.T) {
	src := staticSource(Snapshot{})
	for _, o := range []CloudWatchOptions{
		{Source: src, InstanceID: "i-1"},
		{Client: &fakeCloudWatch{}, InstanceID: "i-1"},
		{Client: &fakeCloudWatch{}, Source: src},
	} {
		if _, err := NewCloudWatch(nil, o); err == nil {
			t.Errorf("NewCloudWatch(%+v) succeeded", o)
		}
	}
}

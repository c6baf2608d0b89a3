package cloud

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go/encoding/cbor"

	"github.com/hanat/hanat/metrics"
)

// cwDatum is one metric datum as the CloudWatch endpoint received it.
type cwDatum struct {
	name, unit string
	value      float64
	dims       map[string]string
	ts         time.Time
}

// fakeCloudWatchAPI is a CloudWatch endpoint speaking the SDK's protocol
// (Smithy RPC v2 CBOR): it decodes PutMetricData and records it.
type fakeCloudWatchAPI struct {
	mu       sync.Mutex
	requests []cwRequest
	status   int // answer with this HTTP status and an error body when set
}

type cwRequest struct {
	namespace string
	data      []cwDatum
	authz     string
}

func (f *fakeCloudWatchAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	const path = "/service/GraniteServiceVersion20100801/operation/"
	op, ok := strings.CutPrefix(r.URL.Path, path)
	if r.Method != http.MethodPost || !ok {
		http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
		return
	}
	w.Header().Set("Smithy-Protocol", "rpc-v2-cbor")
	w.Header().Set("Content-Type", "application/cbor")
	f.mu.Lock()
	status := f.status
	f.mu.Unlock()
	if status != 0 {
		w.WriteHeader(status)
		_, _ = w.Write(cbor.Encode(cbor.Map{"__type": cbor.String("com.amazonaws.cloudwatch#InvalidParameterValueException"), "message": cbor.String("refused by the test")}))
		return
	}
	if op != "PutMetricData" {
		http.Error(w, "operation "+op, http.StatusBadRequest)
		return
	}
	body, _ := io.ReadAll(r.Body)
	req, err := decodePutMetricData(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req.authz = r.Header.Get("Authorization")
	f.mu.Lock()
	f.requests = append(f.requests, req)
	f.mu.Unlock()
	_, _ = w.Write(cbor.Encode(cbor.Map{}))
}

func decodePutMetricData(body []byte) (cwRequest, error) {
	v, err := cbor.Decode(body)
	if err != nil {
		return cwRequest{}, fmt.Errorf("decode CBOR body: %w", err)
	}
	m, ok := v.(cbor.Map)
	if !ok {
		return cwRequest{}, fmt.Errorf("body is %T, want a map", v)
	}
	var req cwRequest
	if s, ok := m["Namespace"].(cbor.String); ok {
		req.namespace = string(s)
	}
	list, _ := m["MetricData"].(cbor.List)
	for _, item := range list {
		dm, ok := item.(cbor.Map)
		if !ok {
			return cwRequest{}, fmt.Errorf("MetricData item is %T", item)
		}
		d := cwDatum{dims: map[string]string{}}
		if s, ok := dm["MetricName"].(cbor.String); ok {
			d.name = string(s)
		}
		if s, ok := dm["Unit"].(cbor.String); ok {
			d.unit = string(s)
		}
		if dm["Value"] != nil {
			if d.value, err = cbor.AsFloat64(dm["Value"]); err != nil {
				return cwRequest{}, fmt.Errorf("%s Value: %w", d.name, err)
			}
		}
		if dm["Timestamp"] != nil {
			if d.ts, err = cbor.AsTime(dm["Timestamp"]); err != nil {
				return cwRequest{}, fmt.Errorf("%s Timestamp: %w", d.name, err)
			}
		}
		dl, _ := dm["Dimensions"].(cbor.List)
		for _, di := range dl {
			dd, _ := di.(cbor.Map)
			n, _ := dd["Name"].(cbor.String)
			v, _ := dd["Value"].(cbor.String)
			d.dims[string(n)] = string(v)
		}
		req.data = append(req.data, d)
	}
	return req, nil
}

func newTestCloudWatch(t *testing.T, h http.Handler) *CloudWatch {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	cw, err := NewCloudWatch(context.Background(), nil, CloudWatchOptions{
		Region:      "eu-west-1",
		Endpoint:    srv.URL,
		CallTimeout: 5 * time.Second,
		MaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
	})
	if err != nil {
		t.Fatal(err)
	}
	return cw
}

// TestCloudWatchPutMetricData sends two periods of the NAT gateway
// metrics through metrics.CloudWatch and this client to a local endpoint,
// and checks names, units, dimensions, values and timestamps there.
func TestCloudWatchPutMetricData(t *testing.T) {
	api := &fakeCloudWatchAPI{}
	cw := newTestCloudWatch(t, api)

	snap := metrics.Snapshot{ActiveConnections: 7, BytesOutToDestination: 1000, BytesInFromDestination: 9000,
		PacketsDropped: map[string]uint64{"invalid": 1}}
	var mu sync.Mutex
	src := func(context.Context) (metrics.Snapshot, error) {
		mu.Lock()
		defer mu.Unlock()
		return snap, nil
	}
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	pub, err := metrics.NewCloudWatch(nil, metrics.CloudWatchOptions{Client: cw, Source: src, Namespace: "hanat/test",
		InstanceID: "i-0abc", Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := pub.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	snap.ActiveConnections = 9
	snap.BytesOutToDestination += 4096
	snap.BytesInFromDestination += 65536
	snap.PacketsInFromDestination += 48
	snap.PacketsDropped = map[string]uint64{"invalid": 3, "unsolicited": 2}
	mu.Unlock()
	now = now.Add(time.Minute)
	if err := pub.Publish(ctx); err != nil {
		t.Fatal(err)
	}

	api.mu.Lock()
	reqs := api.requests
	api.mu.Unlock()
	if len(reqs) != 2 {
		t.Fatalf("%d PutMetricData requests, want 2", len(reqs))
	}
	for _, r := range reqs {
		if r.namespace != "hanat/test" {
			t.Errorf("namespace %q", r.namespace)
		}
		if !strings.Contains(r.authz, "Credential=AKIDTEST/") || !strings.Contains(r.authz, "/monitoring/aws4_request") {
			t.Errorf("request not SigV4-signed for CloudWatch: %q", r.authz)
		}
	}
	if len(reqs[0].data) != 1 || reqs[0].data[0].name != "ActiveConnectionCount" || reqs[0].data[0].value != 7 {
		t.Errorf("first period: %+v", reqs[0].data)
	}
	got := map[string]cwDatum{}
	for _, d := range reqs[1].data {
		got[d.name] = d
	}
	if len(got) != 14 {
		t.Errorf("second period has %d metrics, want the 14 NAT gateway metrics", len(got))
	}
	for name, want := range map[string]struct {
		value float64
		unit  string
	}{
		"ActiveConnectionCount":    {9, "Count"},
		"BytesOutToDestination":    {4096, "Bytes"},
		"BytesInFromDestination":   {65536, "Bytes"},
		"PacketsInFromDestination": {48, "Count"},
		"PacketsDropCount":         {4, "Count"},
		"BytesOutToSource":         {0, "Bytes"},
		"ErrorPortAllocation":      {0, "Count"},
	} {
		d, ok := got[name]
		if !ok {
			t.Errorf("%s not sent", name)
			continue
		}
		if d.value != want.value || d.unit != want.unit {
			t.Errorf("%s = %v %s, want %v %s", name, d.value, d.unit, want.value, want.unit)
		}
		if len(d.dims) != 1 || d.dims["InstanceId"] != "i-0abc" {
			t.Errorf("%s dimensions %v, want InstanceId=i-0abc", name, d.dims)
		}
		if !d.ts.Equal(now) {
			t.Errorf("%s timestamp %v, want %v", name, d.ts, now)
		}
	}
}

func TestCloudWatchErrors(t *testing.T) {
	api := &fakeCloudWatchAPI{status: http.StatusBadRequest}
	cw := newTestCloudWatch(t, api)
	err := cw.PutMetricData(context.Background(), "hanat", []metrics.Datum{{Name: "ActiveConnectionCount", Unit: "Count", Value: 1}})
	if err == nil || !strings.Contains(err.Error(), `cloudwatch PutMetricData namespace "hanat"`) || ErrorCode(err) != "InvalidParameterValueException" {
		t.Errorf("error %v (code %q), want one naming PutMetricData and the namespace, code InvalidParameterValueException", err, ErrorCode(err))
	}
	// Bad data is refused before anything is sent.
	for _, d := range []metrics.Datum{
		{Name: "", Unit: "Count"},
		{Name: "X", Unit: "Furlongs"},
	} {
		if err := cw.PutMetricData(context.Background(), "hanat", []metrics.Datum{d}); err == nil {
			t.Errorf("datum %+v accepted", d)
		}
	}
	// Nothing to send: no request.
	api.mu.Lock()
	api.status = 0
	api.mu.Unlock()
	if err := cw.PutMetricData(context.Background(), "hanat", nil); err != nil {
		t.Error(err)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if len(api.requests) != 0 {
		t.Errorf("%d requests for no data", len(api.requests))
	}
}

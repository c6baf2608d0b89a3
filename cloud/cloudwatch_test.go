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

// TestCloudWatchPutMetricData sends NAT gateway metrics through this
// client to a local endpoint and checks namespace, signature, names,
// units, dimensions, values and timestamps there. (The publisher's
// periods and batching are tested in metrics; hanatd's wiring end to end
// in internal/e2e.)
func TestCloudWatchPutMetricData(t *testing.T) {
	api := &fakeCloudWatchAPI{}
	cw := newTestCloudWatch(t, api)
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	dims := map[string]string{"InstanceId": "i-0abc"}
	data := []MetricDatum{
		{Name: "ActiveConnectionCount", Unit: "Count", Value: 9, Timestamp: now, Dimensions: dims},
		{Name: "BytesOutToDestination", Unit: "Bytes", Value: 4096, Timestamp: now, Dimensions: dims},
		{Name: "PacketsDropCount", Unit: "Count", Value: 4, Timestamp: now, Dimensions: dims},
		{Name: "Unitless", Value: 1, Dimensions: map[string]string{"b": "2", "a": "1"}},
	}
	ctx := context.Background()
	if err := cw.PutMetricData(ctx, "hanat/test", data[:2]); err != nil {
		t.Fatal(err)
	}
	if err := cw.PutMetricData(ctx, "hanat/test", data[2:]); err != nil {
		t.Fatal(err)
	}
	api.mu.Lock()
	reqs := api.requests
	api.mu.Unlock()
	if len(reqs) != 2 {
		t.Fatalf("%d PutMetricData requests, want 2 (one per call)", len(reqs))
	}
	var got []cwDatum
	for _, r := range reqs {
		if r.namespace != "hanat/test" {
			t.Errorf("namespace %q", r.namespace)
		}
		if !strings.Contains(r.authz, "Credential=AKIDTEST/") || !strings.Contains(r.authz, "/monitoring/aws4_request") {
			t.Errorf("request not SigV4-signed for CloudWatch: %q", r.authz)
		}
		got = append(got, r.data...)
	}
	if len(got) != len(data) {
		t.Fatalf("endpoint got %d data, want %d", len(got), len(data))
	}
	for i, want := range data {
		d := got[i]
		unit := want.Unit
		if unit == "" {
			unit = "None"
		}
		if d.name != want.Name || d.unit != unit || d.value != want.Value {
			t.Errorf("datum %d = %s %v %s, want %s %v %s", i, d.name, d.value, d.unit, want.Name, want.Value, unit)
		}
		if len(d.dims) != len(want.Dimensions) {
			t.Errorf("%s dimensions %v, want %v", d.name, d.dims, want.Dimensions)
		}
		for k, v := range want.Dimensions {
			if d.dims[k] != v {
				t.Errorf("%s dimension %s = %q, want %q", d.name, k, d.dims[k], v)
			}
		}
		if !d.ts.Equal(want.Timestamp) {
			t.Errorf("%s timestamp %v, want %v", d.name, d.ts, want.Timestamp)
		}
	}
}

func TestCloudWatchErrors(t *testing.T) {
	api := &fakeCloudWatchAPI{status: http.StatusBadRequest}
	cw := newTestCloudWatch(t, api)
	err := cw.PutMetricData(context.Background(), "hanat", []MetricDatum{{Name: "ActiveConnectionCount", Unit: "Count", Value: 1}})
	if err == nil || !strings.Contains(err.Error(), `cloudwatch PutMetricData namespace "hanat"`) || ErrorCode(err) != "InvalidParameterValueException" {
		t.Errorf("error %v (code %q), want one naming PutMetricData and the namespace, code InvalidParameterValueException", err, ErrorCode(err))
	}
	// Bad data is refused before anything is sent.
	for _, d := range []MetricDatum{
		{Name: "", Unit: "Count"},
		{Name: "X", Unit: "Furlongs"},
	} {
		if err := cw.PutMetricData(context.Background(), "hanat", []MetricDatum{d}); err == nil {
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

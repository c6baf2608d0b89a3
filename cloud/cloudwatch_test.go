package cloud

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/smithy-go/encoding/cbor"

	"github.com/hanat/hanat/internal/cwtest"
)

// fakeCloudWatchAPI is a CloudWatch endpoint speaking the SDK's protocol
// (Smithy RPC v2 CBOR): it decodes PutMetricData and records it.
type fakeCloudWatchAPI struct {
	mu       sync.Mutex
	requests []cwRequest
	status   int // answer with this HTTP status and an error body when set
}

type cwRequest struct {
	cwtest.PutMetricData
	authz string
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
	put, err := cwtest.DecodePutMetricData(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req := cwRequest{PutMetricData: put, authz: r.Header.Get("Authorization")}
	f.mu.Lock()
	f.requests = append(f.requests, req)
	f.mu.Unlock()
	_, _ = w.Write(cbor.Encode(cbor.Map{}))
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
	var got []cwtest.Datum
	for _, r := range reqs {
		if r.Namespace != "hanat/test" {
			t.Errorf("namespace %q", r.Namespace)
		}
		if !strings.Contains(r.authz, "Credential=AKIDTEST/") || !strings.Contains(r.authz, "/monitoring/aws4_request") {
			t.Errorf("request not SigV4-signed for CloudWatch: %q", r.authz)
		}
		got = append(got, r.Data...)
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
		if d.Name != want.Name || d.Unit != unit || d.Value != want.Value {
			t.Errorf("datum %d = %s %v %s, want %s %v %s", i, d.Name, d.Value, d.Unit, want.Name, want.Value, unit)
		}
		if len(d.Dims) != len(want.Dimensions) {
			t.Errorf("%s dimensions %v, want %v", d.Name, d.Dims, want.Dimensions)
		}
		for k, v := range want.Dimensions {
			if d.Dims[k] != v {
				t.Errorf("%s dimension %s = %q, want %q", d.Name, k, d.Dims[k], v)
			}
		}
		if !d.Timestamp.Equal(want.Timestamp) {
			t.Errorf("%s timestamp %v, want %v", d.Name, d.Timestamp, want.Timestamp)
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

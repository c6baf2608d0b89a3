package ec2sim

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// FuzzAutoScalingQuery: any query to any Auto Scaling action is a
// response that encodes, or an APIError of status 4xx; never a crash.
func FuzzAutoScalingQuery(f *testing.F) {
	for _, seed := range []string{
		"Action=DescribeAutoScalingInstances&Version=2011-01-01&InstanceIds.member.1=i-1&MaxRecords=50",
		"Action=DescribeLifecycleHooks&Version=2011-01-01&AutoScalingGroupName=hanat-fleet&LifecycleHookNames.member.1=hanat-drain",
		"Action=CompleteLifecycleAction&Version=2011-01-01&AutoScalingGroupName=hanat-fleet&LifecycleHookName=hanat-drain&LifecycleActionResult=CONTINUE&InstanceId=i-1",
		"AutoScalingGroupName=hanat-fleet&LifecycleHookName=hanat-drain&LifecycleActionResult=ABANDON&LifecycleActionToken=bcd2f1b8",
		"InstanceIds.member.99999999999999999999=i-1",
		"MaxRecords=-1",
		"",
	} {
		f.Add(seed)
	}
	m := fuzzModel()
	id := m.instIDs[0]
	if err := m.CreateAutoScalingGroup("hanat-fleet", []string{id}, []LifecycleHook{{Name: "hanat-drain", Transition: TransitionTerminating, HeartbeatTimeout: time.Minute}}); err != nil {
		f.Fatal(err)
	}
	if err := m.ScaleIn(id); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, query string) {
		p, err := parseParams(strings.ReplaceAll(query, "i-1", id), nil)
		if err != nil {
			return
		}
		for name, fn := range autoScalingActions {
			resp, aerr := fn(m, p)
			switch {
			case (resp == nil) == (aerr == nil):
				t.Fatalf("%s returned neither or both of a response and an error", name)
			case aerr != nil && (aerr.Status < 400 || aerr.Status > 499):
				t.Fatalf("%s: status %d for %q", name, aerr.Status, query)
			case resp != nil:
				if err := writeASResponse(httptest.NewRecorder(), name, "req", resp); err != nil {
					t.Fatalf("%s: encode: %v", name, err)
				}
			}
		}
	})
}

// TestAutoScalingHandlerRefuses: a bad method, an unsigned request and
// an unknown action are Auto Scaling's <ErrorResponse> documents.
func TestAutoScalingHandlerRefuses(t *testing.T) {
	h := fuzzModel().AutoScalingHandler(testCreds)
	for _, tc := range []struct {
		method, body string
		status       int
		code         string
	}{
		{http.MethodPut, "Action=DescribeLifecycleHooks", http.StatusMethodNotAllowed, "InvalidHttpRequest"},
		{http.MethodPost, "Action=DescribeLifecycleHooks&Version=2011-01-01", http.StatusForbidden, "SignatureDoesNotMatch"},
	} {
		req := httptest.NewRequest(tc.method, "/", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if body := rec.Body.String(); rec.Code != tc.status || !strings.Contains(body, "<ErrorResponse xmlns=\""+autoScalingNamespace+"\"><Error><Type>Sender</Type><Code>"+tc.code+"</Code>") {
			t.Errorf("%s %q: %d %s, want %d %s", tc.method, tc.body, rec.Code, body, tc.status, tc.code)
		}
	}
}

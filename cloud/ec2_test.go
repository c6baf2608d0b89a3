package cloud

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/smithy-go"

	"github.com/hanat/hanat/internal/vpcsim/ec2sim"
)

func TestThrottlingRetried(t *testing.T) {
	l := newLab(t)
	c := l.client(t)
	ctx := context.Background()
	l.m.SetFaults(ec2sim.Faults{ThrottleRate: 0.5, Seed: 42})

	// Sequential calls, so the fixed seed gives every run the same draws.
	if _, err := c.DisableSourceDestCheck(ctx, l.natAENI); err != nil {
		t.Fatalf("DisableSourceDestCheck under 50%% throttling: %v", err)
	}
	if _, err := c.EnsureDefaultRoute(ctx, l.rtbC, l.natCENI); err != nil {
		t.Fatalf("EnsureDefaultRoute under 50%% throttling: %v", err)
	}
	if _, err := c.PrivateRouteTables(ctx, l.vpc, azA); err != nil {
		t.Fatalf("PrivateRouteTables under 50%% throttling: %v", err)
	}
	if _, err := c.AssociateEIP(ctx, l.eipSpare, l.natAENI, netip.Addr{}); err != nil {
		t.Fatalf("AssociateEIP under 50%% throttling: %v", err)
	}
	st := l.m.Stats()
	if st.Throttled == 0 {
		t.Fatal("nothing was throttled: the test proves nothing")
	}
	t.Logf("%d requests, %d throttled and retried", st.Requests, st.Throttled)
	l.m.SetFaults(ec2sim.Faults{})
	if on, err := c.SourceDestCheck(ctx, l.natAENI); err != nil || on {
		t.Fatalf("source/dest check after = %v, %v", on, err)
	}
}

func TestErrorsAfterMaxAttempts(t *testing.T) {
	l := newLab(t)
	o := l.options()
	o.MaxAttempts = 4
	c := l.clientWith(t, o)
	ctx := context.Background()
	l.m.SetFaults(ec2sim.Faults{ErrorRate: 1.0, Actions: []string{"ReplaceRoute"}})

	_, err := c.EnsureDefaultRoute(ctx, l.rtbA, l.natCENI)
	if err == nil {
		t.Fatal("ReplaceRoute failing every time: no error")
	}
	msg := err.Error()
	for _, want := range []string{"ec2 ReplaceRoute", l.rtbA, "0.0.0.0/0 -> " + l.natCENI, "InternalError", "gave up after 4 attempts"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	var ce *CallError
	if !errors.As(err, &ce) || ce.Action != "ReplaceRoute" || ErrorCode(err) != "InternalError" {
		t.Errorf("error is not a CallError for ReplaceRoute with code InternalError: %#v", err)
	}
	if n := l.calls("ReplaceRoute"); n != 4 {
		t.Errorf("%d ReplaceRoute attempts, want MaxAttempts = 4", n)
	}

	// Every call fails: the Describe already gives up, naming itself.
	l.m.SetFaults(ec2sim.Faults{ErrorRate: 1.0})
	_, err = c.DisableSourceDestCheck(ctx, l.natAENI)
	if err == nil || !strings.Contains(err.Error(), "ec2 DescribeNetworkInterfaces "+l.natAENI+": InternalError") {
		t.Fatalf("DisableSourceDestCheck with every call failing: %v", err)
	}
	if l.calls("ModifyNetworkInterfaceAttribute") != 0 {
		t.Fatal("modified although the check's state was unknown")
	}
}

func TestCallTimeout(t *testing.T) {
	l := newLab(t)
	o := l.options()
	o.CallTimeout = 100 * time.Millisecond
	c := l.clientWith(t, o)
	l.m.SetFaults(ec2sim.Faults{Latency: 3 * time.Second})

	_, err := c.SourceDestCheck(context.Background(), l.natAENI)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a deadline error, got %v", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "ec2 DescribeNetworkInterfaces "+l.natAENI) || !strings.Contains(msg, "deadline (100ms)") {
		t.Fatalf("error %q does not name the call, the ENI and the deadline", msg)
	}

	// The caller's own, shorter deadline is honoured too.
	o.CallTimeout = time.Minute
	c = l.clientWith(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = c.RouteTables(ctx, RouteTableFilter{VPCID: l.vpc})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "ec2 DescribeRouteTables vpc="+l.vpc+": the caller's context deadline exceeded") {
		t.Fatalf("caller deadline: %v", err)
	}
}

// denyHandler answers UnauthorizedOperation, as IAM does, for the denied
// actions and passes everything else to next.
func denyHandler(next http.Handler, denied ...string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		action, err := peekAction(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if slices.Contains(denied, action) {
			w.Header().Set("Content-Type", "text/xml")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation. User: arn:aws:sts::123456789012:assumed-role/nat/i-0 is not authorized to perform: ec2:%s on resource: arn:aws:ec2:us-sim-1:123456789012:network-interface/eni-0 because no identity-based policy allows the ec2:%s action.</Message></Error></Errors><RequestID>req-denied-1</RequestID></Response>`, action, action)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func TestAccessDenied(t *testing.T) {
	l := newLab(t)
	srv := httptest.NewServer(denyHandler(l.m.EC2Handler(labCreds), "ModifyNetworkInterfaceAttribute"))
	t.Cleanup(srv.Close)
	o := l.options()
	o.Endpoint = srv.URL
	c := l.clientWith(t, o)

	_, err := c.DisableSourceDestCheck(context.Background(), l.natAENI)
	action, ok := IsAccessDenied(err)
	if !ok || action != "ec2:ModifyNetworkInterfaceAttribute" {
		t.Fatalf("IsAccessDenied(%v) = %q, %v", err, action, ok)
	}
	if !strings.Contains(err.Error(), "ec2 ModifyNetworkInterfaceAttribute "+l.natAENI) || !strings.Contains(err.Error(), "request id req-denied-1") {
		t.Fatalf("error %q", err)
	}
	if n := l.calls("ModifyNetworkInterfaceAttribute"); n != 0 {
		t.Fatalf("denied call reached the model %d times", n)
	}
	// Not retried: one refusal is final.
	if IsNotFound(err) || IsThrottled(err) {
		t.Fatal("an access denial is neither NotFound nor throttling")
	}
}

func TestIsAccessDenied(t *testing.T) {
	msg := "You are not authorized to perform this operation. User: arn:aws:sts::1:assumed-role/r/i is not authorized to perform: ec2:ReplaceRoute on resource: arn:aws:ec2:r:1:route-table/rtb-1"
	for _, tc := range []struct {
		name   string
		err    error
		action string
		ok     bool
	}{
		{"bare code", &smithy.GenericAPIError{Code: "UnauthorizedOperation"}, "", true},
		{"action from the message", &smithy.GenericAPIError{Code: "UnauthorizedOperation", Message: msg}, "ec2:ReplaceRoute", true},
		{"action from the call", &CallError{Action: "ModifyNetworkInterfaceAttribute", Resource: "eni-1",
			Err: &smithy.GenericAPIError{Code: "UnauthorizedOperation"}}, "ec2:ModifyNetworkInterfaceAttribute", true},
		{"action from the SDK operation", fmt.Errorf("wrapped: %w", &smithy.OperationError{ServiceID: "EC2", OperationName: "CreateRoute",
			Err: &smithy.GenericAPIError{Code: "Client.UnauthorizedOperation"}}), "ec2:CreateRoute", true},
		{"AccessDenied", &smithy.GenericAPIError{Code: "AccessDenied"}, "", true},
		{"AccessDeniedException", &smithy.GenericAPIError{Code: "AccessDeniedException"}, "", true},
		{"bad credentials are not IAM", &smithy.GenericAPIError{Code: "AuthFailure"}, "", false},
		{"other code", &smithy.GenericAPIError{Code: "InvalidRouteTableID.NotFound"}, "", false},
		{"no API error", context.DeadlineExceeded, "", false},
		{"nil", nil, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			action, ok := IsAccessDenied(tc.err)
			if action != tc.action || ok != tc.ok {
				t.Fatalf("IsAccessDenied = %q, %v; want %q, %v", action, ok, tc.action, tc.ok)
			}
		})
	}
}

func TestIsNotFound(t *testing.T) {
	for code, want := range map[string]bool{
		"InvalidRouteTableID.NotFound":       true,
		"InvalidNetworkInterfaceID.NotFound": true,
		"InvalidAllocationID.NotFound":       true,
		"InvalidRoute.NotFound":              true,
		"NotFound":                           true,
		"InvalidParameterValue":              false,
		"UnauthorizedOperation":              false,
	} {
		if got := IsNotFound(&CallError{Action: "X", Err: &smithy.GenericAPIError{Code: code}}); got != want {
			t.Errorf("IsNotFound(%s) = %v", code, got)
		}
	}
	if IsNotFound(nil) || IsNotFound(errors.New("x.NotFound")) {
		t.Error("IsNotFound without an API error")
	}
}

func TestEndpointAndRegionFromEnvironment(t *testing.T) {
	l := newLab(t)
	isolateEnv(t)
	t.Setenv("AWS_ENDPOINT_URL_EC2", l.srv.URL)
	t.Setenv("AWS_REGION", labRegion)
	t.Setenv("AWS_ACCESS_KEY_ID", labCreds.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", labCreds.SecretAccessKey)
	ctx := context.Background()

	// No options at all: region, endpoint and keys from the SDK's chain.
	c, err := NewEC2(ctx, testLogger(t), EC2Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Region() != labRegion {
		t.Fatalf("region %q, want %q", c.Region(), labRegion)
	}
	if _, err := c.SourceDestCheck(ctx, l.natAENI); err != nil {
		t.Fatalf("through AWS_ENDPOINT_URL_EC2: %v", err)
	}

	// The config key wins over the environment.
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	t.Setenv("AWS_ENDPOINT_URL_EC2", dead.URL)
	c, err = NewEC2(ctx, testLogger(t), EC2Options{Endpoint: l.srv.URL, MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SourceDestCheck(ctx, l.natAENI); err != nil {
		t.Fatalf("Endpoint option over AWS_ENDPOINT_URL_EC2: %v", err)
	}
	// And the environment is really used when the option is empty.
	c, err = NewEC2(ctx, testLogger(t), EC2Options{MaxAttempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SourceDestCheck(ctx, l.natAENI); err == nil {
		t.Fatal("AWS_ENDPOINT_URL_EC2 pointing at a closed port: no error")
	}

	// No region anywhere: a clear error.
	isolateEnv(t)
	if _, err := NewEC2(ctx, testLogger(t), EC2Options{}); err == nil || !strings.Contains(err.Error(), "no region") {
		t.Fatalf("without a region: %v", err)
	}
}

func TestWrongCredentials(t *testing.T) {
	l := newLab(t)
	o := l.options()
	o.Credentials = staticCreds("AKIDWRONG", "wrong")
	c := l.clientWith(t, o)
	_, err := c.SourceDestCheck(context.Background(), l.natAENI)
	if ErrorCode(err) != "AuthFailure" {
		t.Fatalf("wrong keys: %v", err)
	}
	if _, denied := IsAccessDenied(err); denied {
		t.Fatal("AuthFailure reported as an IAM refusal")
	}
}

func TestActionGuard(t *testing.T) {
	l := newLab(t)
	c := l.client(t)
	ctx := context.Background()
	// A wrapper naming an operation outside Actions fails before sending.
	err := c.call(ctx, "DeleteRoute", l.rtbA, func(context.Context) error { t.Fatal("ran"); return nil })
	if err == nil || !strings.Contains(err.Error(), "ec2:DeleteRoute is not in cloud.Actions") {
		t.Fatalf("call outside Actions: %v", err)
	}
	// So does an SDK operation used directly.
	_, err = c.api.DeleteRoute(ctx, nil)
	if err == nil || !strings.Contains(err.Error(), "not in cloud.Actions") {
		t.Fatalf("SDK operation outside Actions: %v", err)
	}
	if l.calls("DeleteRoute") != 0 {
		t.Fatal("the guarded operation reached EC2")
	}
}

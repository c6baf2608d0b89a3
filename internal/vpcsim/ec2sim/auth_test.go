package ec2sim

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

func TestAuthFailure(t *testing.T) {
	l := newTestLab(t)
	ctx := context.Background()

	bad := l.client(t, Credentials{AccessKeyID: testCreds.AccessKeyID, SecretAccessKey: "wrong-secret"}, 3)
	_, err := bad.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{})
	wantCode(t, err, "AuthFailure")
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusUnauthorized {
		t.Fatalf("want HTTP 401, got %v", err)
	}
	// A bad signature must not mutate anything either.
	_, err = bad.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{RouteTableId: aws.String(l.rtbA), DestinationCidrBlock: aws.String("0.0.0.0/0"),
		NetworkInterfaceId: aws.String(l.natCENI)})
	wantCode(t, err, "AuthFailure")
	wantCalls(t, l.fabric)

	unknown := l.client(t, Credentials{AccessKeyID: "AKIDOTHER", SecretAccessKey: testCreds.SecretAccessKey}, 3)
	_, err = unknown.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	wantCode(t, err, "AuthFailure")

	if st := l.m.Stats(); st.AuthFailures != 3 || st.ByAction["DescribeRouteTables"] != 0 {
		t.Fatalf("stats after refused requests: %+v", st)
	}
	// The right credentials work.
	if _, err := l.ec2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{}); err != nil {
		t.Fatal(err)
	}
}

func TestSigV4Raw(t *testing.T) {
	l := newTestLab(t)
	now := time.Now()
	form := func() url.Values {
		return url.Values{"Action": {"DescribeVpcs"}, "Filter.1.Name": {"cidr"}, "Filter.1.Value.1": {"10.0.0.0/16"},
			"Filter.2.Name": {"tag:Name"}, "Filter.2.Value.1": {"hanat sim*"}, "Filter.2.Value.2": {"hanat-sim"}}
	}

	// POST and GET (query string, with characters that need encoding).
	wantRaw(t, l.raw(t, http.MethodPost, form(), testCreds, now), http.StatusOK, "")
	r := l.raw(t, http.MethodGet, form(), testCreds, now)
	wantRaw(t, r, http.StatusOK, "")
	if !strings.Contains(r.body, "<vpcId>"+l.vpc+"</vpcId>") || !strings.Contains(r.body, `xmlns="`+ec2Namespace+`"`) {
		t.Fatalf("GET DescribeVpcs body: %s", r.body)
	}

	// Clock skew beyond 15 minutes either way.
	wantRaw(t, l.raw(t, http.MethodPost, form(), testCreds, now.Add(-20*time.Minute)), http.StatusBadRequest, "RequestExpired")
	wantRaw(t, l.raw(t, http.MethodPost, form(), testCreds, now.Add(20*time.Minute)), http.StatusBadRequest, "RequestExpired")
	wantRaw(t, l.raw(t, http.MethodPost, form(), testCreds, now.Add(-10*time.Minute)), http.StatusOK, "")
	// An injected clock decides.
	l.m.SetClock(func() time.Time { return now.Add(time.Hour) })
	wantRaw(t, l.raw(t, http.MethodPost, form(), testCreds, now), http.StatusBadRequest, "RequestExpired")
	l.m.SetClock(nil)

	// Unsigned.
	wantRaw(t, l.raw(t, http.MethodPost, form(), Credentials{}, now), http.StatusUnauthorized, "AuthFailure")

	// Tampered after signing: body changed, signed header changed.
	req := signedRequest(t, l, form(), now)
	tampered := []byte(strings.Replace(readBody(t, req), "10.0.0.0", "10.9.0.0", 1))
	req.Body = readCloser(tampered)
	req.ContentLength = int64(len(tampered))
	wantRaw(t, doRaw(t, l.srv.Client(), req), http.StatusUnauthorized, "AuthFailure")
	req = signedRequest(t, l, form(), now)
	req.Header.Set("X-Amz-Date", now.Add(time.Second).UTC().Format(amzDateFormat))
	wantRaw(t, doRaw(t, l.srv.Client(), req), http.StatusUnauthorized, "AuthFailure")
	// Scoped to another region or service.
	req = signedRequest(t, l, form(), now)
	req.Header.Set("Authorization", strings.Replace(req.Header.Get("Authorization"), "/"+testRegion+"/", "/us-east-1/", 1))
	wantRaw(t, doRaw(t, l.srv.Client(), req), http.StatusUnauthorized, "AuthFailure")
	req = signedRequest(t, l, form(), now)
	req.Header.Set("Authorization", strings.Replace(req.Header.Get("Authorization"), "/ec2/", "/s3/", 1))
	wantRaw(t, doRaw(t, l.srv.Client(), req), http.StatusUnauthorized, "AuthFailure")
	req = signedRequest(t, l, form(), now)
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 garbage")
	wantRaw(t, doRaw(t, l.srv.Client(), req), http.StatusUnauthorized, "AuthFailure")
	// An X-Amz-Content-Sha256 that does not match the body.
	req = signedRequest(t, l, form(), now)
	req.Header.Set("X-Amz-Content-Sha256", strings.Repeat("0", 64))
	wantRaw(t, doRaw(t, l.srv.Client(), req), http.StatusUnauthorized, "AuthFailure")

	// Protocol errors after a good signature.
	wantRaw(t, l.raw(t, http.MethodPost, url.Values{"Action": {"RunInstances"}}, testCreds, now), http.StatusBadRequest, "InvalidAction")
	wantRaw(t, l.raw(t, http.MethodPost, url.Values{"Foo": {"bar"}}, testCreds, now), http.StatusBadRequest, "MissingAction")
	wantRaw(t, l.raw(t, http.MethodPost, url.Values{"Action": {"DescribeVpcs"}, "Version": {"2014-01-01"}}, testCreds, now),
		http.StatusBadRequest, "InvalidParameterValue")
	wantRaw(t, l.raw(t, http.MethodPost, url.Values{"Action": {"DescribeVpcs"}, "DryRun": {"true"}}, testCreds, now),
		http.StatusPreconditionFailed, "DryRunOperation")
	wantRaw(t, l.raw(t, http.MethodPost, url.Values{"Action": {"DescribeVpcs"}, "Filter.1.Name": {"cidr"}}, testCreds, now),
		http.StatusBadRequest, "InvalidParameterValue")
	wantRaw(t, l.raw(t, http.MethodPost, url.Values{"Action": {"DescribeVpcs"}, "VpcId.0": {"x"}}, testCreds, now),
		http.StatusBadRequest, "InvalidParameterValue")
	resp, err := l.srv.Client().Post(l.srv.URL, "application/x-www-form-urlencoded", strings.NewReader("Action=DescribeVpcs;x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("malformed query: status %d", resp.StatusCode)
	}
}

func signedRequest(t *testing.T, l *testLab, form url.Values, at time.Time) *http.Request {
	t.Helper()
	form.Set("Version", APIVersion)
	body := []byte(form.Encode())
	req, err := http.NewRequest(http.MethodPost, l.srv.URL+"/", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	signInto(t, req, body, at)
	req.Body = readCloser(body)
	return req
}

// TestCanonicalEncoding checks the verifier's encoding helpers against the
// published SigV4 rules.
func TestCanonicalEncoding(t *testing.T) {
	for in, want := range map[string]string{
		"a b":    "a%20b",
		"a+b":    "a%2Bb",
		"~-_.":   "~-_.",
		"é":      "%C3%A9",
		"x/y":    "x%2Fy",
		"tag:Na": "tag%3ANa",
	} {
		if got := uriEncode(in, true); got != want {
			t.Errorf("uriEncode(%q) = %q, want %q", in, got, want)
		}
	}
	if got := canonicalQuery("b=2&a=1&a=0&c=x%20y&d"); got != "a=0&a=1&b=2&c=x%20y&d=" {
		t.Errorf("canonicalQuery = %q", got)
	}
	if got := canonicalURI(&url.URL{Path: "/a b/c"}); got != "/a%2520b/c" {
		t.Errorf("canonicalURI = %q", got)
	}
}

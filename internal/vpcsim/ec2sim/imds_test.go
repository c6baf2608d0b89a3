package ec2sim

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

const testInstanceHeader = "X-Test-Instance"

// imdsServer serves IMDS identifying the caller by a test header.
func (l *testLab) imdsServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(l.m.IMDSHandler(func(r *http.Request) (string, bool) {
		id := r.Header.Get(testInstanceHeader)
		return id, id != ""
	}))
	t.Cleanup(srv.Close)
	return srv
}

type headerTransport struct {
	base   http.RoundTripper
	header string
	value  string
}

func (h headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.header, h.value)
	return h.base.RoundTrip(r)
}

// imdsClient is the SDK's IMDS client, calling as instanceID.
func imdsClient(srv *httptest.Server, instanceID string) *imds.Client {
	return imds.New(imds.Options{
		Endpoint:          srv.URL,
		ClientEnableState: imds.ClientEnabled,
		EnableFallback:    aws.FalseTernary,
		HTTPClient:        &http.Client{Transport: headerTransport{srv.Client().Transport, testInstanceHeader, instanceID}, Timeout: 5 * time.Second},
	})
}

func imdsGet(t *testing.T, c *imds.Client, path string) string {
	t.Helper()
	out, err := c.GetMetadata(context.Background(), &imds.GetMetadataInput{Path: path})
	if err != nil {
		t.Fatalf("GetMetadata(%s): %v", path, err)
	}
	defer out.Content.Close()
	b, err := io.ReadAll(out.Content)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestIMDSWithSDK(t *testing.T) {
	l := newTestLab(t)
	srv := l.imdsServer(t)
	ctx := context.Background()
	c := imdsClient(srv, l.natA)

	region, err := c.GetRegion(ctx, &imds.GetRegionInput{})
	if err != nil || region.Region != testRegion {
		t.Fatalf("GetRegion = %+v, %v", region, err)
	}
	doc, err := c.GetInstanceIdentityDocument(ctx, &imds.GetInstanceIdentityDocumentInput{})
	if err != nil {
		t.Fatal(err)
	}
	if doc.InstanceID != l.natA || doc.Region != testRegion || doc.AvailabilityZone != "us-sim-1a" ||
		doc.PrivateIP != "10.0.1.10" || doc.AccountID != DefaultAccountID || doc.InstanceType == "" || doc.ImageID == "" {
		t.Fatalf("identity document = %+v", doc)
	}

	mac := "02:00:0a:00:01:0a"
	base := "network/interfaces/macs/" + mac + "/"
	for path, want := range map[string]string{
		"instance-id":                            l.natA,
		"placement/region":                       testRegion,
		"placement/availability-zone":            "us-sim-1a",
		"mac":                                    mac,
		"local-ipv4":                             "10.0.1.10",
		"public-ipv4":                            "198.51.100.10",
		"network/interfaces/macs/":               mac + "/",
		base + "interface-id":                    l.natAENI,
		base + "subnet-id":                       l.pubA,
		base + "vpc-id":                          l.vpc,
		base + "vpc-ipv4-cidr-blocks":            "10.0.0.0/16",
		base + "device-number":                   "0",
		base + "local-ipv4s":                     "10.0.1.10",
		base + "public-ipv4s":                    "198.51.100.10",
		base + "subnet-ipv4-cidr-block":          "10.0.1.0/24",
		base + "ipv4-associations/198.51.100.10": "10.0.1.10",
		"placement/":                             "availability-zone\nregion",
	} {
		if got := imdsGet(t, c, path); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}
	listing := imdsGet(t, c, "")
	for _, want := range []string{"instance-id", "mac", "local-ipv4", "public-ipv4", "placement/", "network/"} {
		if !strings.Contains("\n"+listing+"\n", "\n"+want+"\n") {
			t.Errorf("meta-data/ listing lacks %q:\n%s", want, listing)
		}
	}

	// The instance with two ENIs: both MACs listed, each ENI answers.
	m := imdsClient(srv, l.multi)
	if got, want := imdsGet(t, m, "network/interfaces/macs/"), "02:00:0a:00:01:14/\n02:00:0a:00:0b:14/"; got != want {
		t.Fatalf("macs listing = %q, want %q", got, want)
	}
	if got := imdsGet(t, m, "network/interfaces/macs/02:00:0a:00:0b:14/device-number"); got != "1" {
		t.Fatalf("second ENI device-number = %q", got)
	}
	if got := imdsGet(t, m, "network/interfaces/macs/02:00:0a:00:01:14/local-ipv4s"); got != "10.0.1.20\n10.0.1.21" {
		t.Fatalf("first ENI local-ipv4s = %q", got)
	}
	if got := imdsGet(t, m, "network/interfaces/macs/02:00:0a:00:0b:14/interface-id"); got != l.multiENI1 {
		t.Fatalf("second ENI interface-id = %q", got)
	}

	// No public IP: 404, which the SDK surfaces with the status code.
	app := imdsClient(srv, l.appA)
	_, err = app.GetMetadata(ctx, &imds.GetMetadataInput{Path: "public-ipv4"})
	var status interface{ HTTPStatusCode() int }
	if !errors.As(err, &status) || status.HTTPStatusCode() != http.StatusNotFound {
		t.Fatalf("public-ipv4 without a public IP: %v", err)
	}
	if got := imdsGet(t, app, "local-ipv4"); got != "10.0.11.10" {
		t.Fatalf("app-a local-ipv4 = %q", got)
	}

	// The model is read live: a moved EIP shows at once.
	l.m.AssociateAddressNoFabric(l.eipSpare, l.appAENI, l.appAIP)
	if got := imdsGet(t, app, "public-ipv4"); got != "203.0.113.5" {
		t.Fatalf("public-ipv4 after association = %q", got)
	}
}

func imdsDo(t *testing.T, srv *httptest.Server, method, path, instance string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if instance != "" {
		req.Header.Set(testInstanceHeader, instance)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestIMDSTokenFlow(t *testing.T) {
	l := newTestLab(t)
	srv := l.imdsServer(t)
	now := time.Now()
	l.m.SetClock(func() time.Time { return now })

	// No token: 401.
	if resp, _ := imdsDo(t, srv, http.MethodGet, "/latest/meta-data/instance-id", l.natA); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("GET without token: %d", resp.StatusCode)
	}
	// Token TTL bounds.
	for _, ttl := range []string{"", "0", "21601", "-1", "abc"} {
		resp, _ := imdsDo(t, srv, http.MethodPut, "/latest/api/token", l.natA, imdsTTLHeader, ttl)
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("PUT token with TTL %q: %d", ttl, resp.StatusCode)
		}
	}
	if resp, _ := imdsDo(t, srv, http.MethodGet, "/latest/api/token", l.natA, imdsTTLHeader, "60"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET token: %d", resp.StatusCode)
	}
	if resp, _ := imdsDo(t, srv, http.MethodPut, "/latest/api/token", l.natA, imdsTTLHeader, "60", "X-Forwarded-For", "10.0.1.99"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("proxied PUT token: %d", resp.StatusCode)
	}
	resp, tok := imdsDo(t, srv, http.MethodPut, "/latest/api/token", l.natA, imdsTTLHeader, "60")
	if resp.StatusCode != http.StatusOK || tok == "" || resp.Header.Get(imdsTTLHeader) != "60" {
		t.Fatalf("PUT token: %d %q ttl=%q", resp.StatusCode, tok, resp.Header.Get(imdsTTLHeader))
	}
	resp, body := imdsDo(t, srv, http.MethodGet, "/latest/meta-data/instance-id", l.natA, imdsTokenHeader, tok)
	if resp.StatusCode != http.StatusOK || body != l.natA {
		t.Fatalf("GET with token: %d %q", resp.StatusCode, body)
	}
	// A token is bound to its instance.
	if resp, _ := imdsDo(t, srv, http.MethodGet, "/latest/meta-data/instance-id", l.natC, imdsTokenHeader, tok); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("nat-a's token used by nat-c: %d", resp.StatusCode)
	}
	if resp, _ := imdsDo(t, srv, http.MethodGet, "/latest/meta-data/instance-id", l.natA, imdsTokenHeader, tok+"x"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("forged token: %d", resp.StatusCode)
	}
	// Unknown paths and methods.
	if resp, _ := imdsDo(t, srv, http.MethodGet, "/latest/meta-data/nope", l.natA, imdsTokenHeader, tok); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown path: %d", resp.StatusCode)
	}
	if resp, _ := imdsDo(t, srv, http.MethodPost, "/latest/meta-data/instance-id", l.natA, imdsTokenHeader, tok); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST metadata: %d", resp.StatusCode)
	}
	// Directory listings with and without the slash.
	_, withSlash := imdsDo(t, srv, http.MethodGet, "/latest/meta-data/placement/", l.natA, imdsTokenHeader, tok)
	_, without := imdsDo(t, srv, http.MethodGet, "/latest/meta-data/placement", l.natA, imdsTokenHeader, tok)
	if withSlash != "availability-zone\nregion" || without != withSlash {
		t.Fatalf("placement listing %q / %q", withSlash, without)
	}
	_, dyn := imdsDo(t, srv, http.MethodGet, "/latest/dynamic/", l.natA, imdsTokenHeader, tok)
	if dyn != "instance-identity/" {
		t.Fatalf("dynamic listing %q", dyn)
	}
	_, docBody := imdsDo(t, srv, http.MethodGet, "/latest/dynamic/instance-identity/document", l.natA, imdsTokenHeader, tok)
	var doc map[string]any
	if err := json.Unmarshal([]byte(docBody), &doc); err != nil || doc["instanceId"] != l.natA || doc["region"] != testRegion || doc["privateIp"] != "10.0.1.10" {
		t.Fatalf("identity document %q: %v", docBody, err)
	}
	// Expiry follows the model's clock.
	now = now.Add(61 * time.Second)
	if resp, _ := imdsDo(t, srv, http.MethodGet, "/latest/meta-data/instance-id", l.natA, imdsTokenHeader, tok); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("expired token: %d", resp.StatusCode)
	}
	// A caller that is no instance.
	if resp, _ := imdsDo(t, srv, http.MethodPut, "/latest/api/token", "", imdsTTLHeader, "60"); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("unidentified caller: %d", resp.StatusCode)
	}
}

// TestIMDSTargetLifecycleState: every instance is InService until the lab
// sets another state (a scale-in: Terminated), per instance; "" takes
// the item away (no Auto Scaling group: 404); unknown states and
// instances are refused.
func TestIMDSTargetLifecycleState(t *testing.T) {
	l := newTestLab(t)
	srv := l.imdsServer(t)
	const path = "autoscaling/target-lifecycle-state"
	a, b := imdsClient(srv, l.natA), imdsClient(srv, l.appA)
	if got := imdsGet(t, a, path); got != LifecycleInService {
		t.Fatalf("default %s = %q, want InService", path, got)
	}
	if got := imdsGet(t, a, "autoscaling/"); got != "target-lifecycle-state" {
		t.Fatalf("autoscaling/ listing = %q", got)
	}
	if err := l.m.SetTargetLifecycleState(l.natA, LifecycleTerminated); err != nil {
		t.Fatal(err)
	}
	if got := imdsGet(t, a, path); got != LifecycleTerminated {
		t.Fatalf("after a scale-in %s = %q, want Terminated", path, got)
	}
	if got := imdsGet(t, b, path); got != LifecycleInService {
		t.Fatalf("the other instance's %s = %q, want InService", path, got)
	}
	if err := l.m.SetTargetLifecycleState(l.natA, ""); err != nil {
		t.Fatal(err)
	}
	_, err := a.GetMetadata(context.Background(), &imds.GetMetadataInput{Path: path})
	var status interface{ HTTPStatusCode() int }
	if !errors.As(err, &status) || status.HTTPStatusCode() != http.StatusNotFound {
		t.Fatalf("%s outside an Auto Scaling group: %v, want 404", path, err)
	}
	if err := l.m.SetTargetLifecycleState(l.natA, "Terminating:Wait"); err == nil || !strings.Contains(err.Error(), "unknown state") {
		t.Fatalf("a transition state (not a target): %v, want refused", err)
	}
	if err := l.m.SetTargetLifecycleState("i-0000000000000dead", LifecycleInService); err == nil || !strings.Contains(err.Error(), "no such instance") {
		t.Fatalf("unknown instance: %v", err)
	}
}

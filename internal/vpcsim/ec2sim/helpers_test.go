package ec2sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go"
)

const testRegion = "us-sim-1"

var testCreds = Credentials{AccessKeyID: "AKIDHANATSIMULATOR", SecretAccessKey: "hanat-sim-secret-key/for+tests"}

// recordingFabric records every call; fail makes calls whose name (or
// "name arg") starts with a key fail.
type recordingFabric struct {
	mu    sync.Mutex
	calls []string
	fail  map[string]error
}

func (f *recordingFabric) call(s string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
	for k, err := range f.fail {
		if strings.HasPrefix(s, k) {
			return err
		}
	}
	return nil
}

func (f *recordingFabric) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *recordingFabric) Reset(fail map[string]error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls, f.fail = nil, fail
}

func (f *recordingFabric) SetRoute(_ context.Context, rtb string, dst netip.Prefix, t RouteTarget) error {
	if t.VpcEndpointID != "" {
		return f.call(fmt.Sprintf("SetRoute %s %s vpce=%s via=%s", rtb, dst, t.VpcEndpointID, t.NextHop))
	}
	return f.call(fmt.Sprintf("SetRoute %s %s gw=%s eni=%s via=%s", rtb, dst, t.GatewayID, t.NetworkInterfaceID, t.NextHop))
}
func (f *recordingFabric) DeleteRoute(_ context.Context, rtb string, dst netip.Prefix) error {
	return f.call(fmt.Sprintf("DeleteRoute %s %s", rtb, dst))
}
func (f *recordingFabric) SetSourceDestCheck(_ context.Context, eni string, on bool) error {
	return f.call(fmt.Sprintf("SetSourceDestCheck %s %t", eni, on))
}
func (f *recordingFabric) MapPublicIP(_ context.Context, public, private netip.Addr) error {
	return f.call(fmt.Sprintf("MapPublicIP %s %s", public, private))
}
func (f *recordingFabric) UnmapPublicIP(_ context.Context, public netip.Addr) error {
	return f.call(fmt.Sprintf("UnmapPublicIP %s", public))
}
func (f *recordingFabric) AddPrivateIP(_ context.Context, eni string, ip netip.Addr) error {
	return f.call(fmt.Sprintf("AddPrivateIP %s %s", eni, ip))
}
func (f *recordingFabric) RemovePrivateIP(_ context.Context, eni string, ip netip.Addr) error {
	return f.call(fmt.Sprintf("RemovePrivateIP %s %s", eni, ip))
}

// testLab is the seed's VPC as a model behind an httptest server.
type testLab struct {
	m      *Model
	fabric *recordingFabric
	srv    *httptest.Server
	ec2    *ec2.Client

	vpc, igw                      string
	pubA, pubC, privA, privC      string
	rtbMain, rtbPub, rtbA, rtbC   string
	natA, natC, appA, multi       string
	natAENI, natCENI, appAENI     string
	multiENI0, multiENI1          string
	eipA, eipC, eipSpare          string
	eipAAssoc, eipCAssoc          string
	natAIP, natCIP, appAIP        netip.Addr
	multiIP0, multiIP1            netip.Addr
	pubIPA, pubIPC, pubIPSpare    netip.Addr
	macNatA, macMulti0, macMulti1 net.HardwareAddr
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func newTestLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func newTestLab(t *testing.T) *testLab {
	t.Helper()
	l := &testLab{fabric: &recordingFabric{}}
	l.m = NewModel(testRegion, newTestLog(t), l.fabric)
	m := l.m
	pfx := netip.MustParsePrefix
	ip := netip.MustParseAddr
	l.vpc = m.AddVPC(pfx("10.0.0.0/16"), map[string]string{"Name": "hanat-sim"})
	l.igw = m.AddInternetGateway(l.vpc)
	l.pubA = m.AddSubnet(l.vpc, pfx("10.0.1.0/24"), "us-sim-1a", map[string]string{"Name": "public-a"})
	l.pubC = m.AddSubnet(l.vpc, pfx("10.0.2.0/24"), "us-sim-1c", map[string]string{"Name": "public-c"})
	l.privA = m.AddSubnet(l.vpc, pfx("10.0.11.0/24"), "us-sim-1a", map[string]string{"Name": "private-a"})
	l.privC = m.AddSubnet(l.vpc, pfx("10.0.12.0/24"), "us-sim-1c", map[string]string{"Name": "private-c"})
	l.rtbMain = m.AddRouteTable(l.vpc, true, map[string]string{"Name": "main"})
	l.rtbPub = m.AddRouteTable(l.vpc, false, map[string]string{"Name": "public"})
	l.rtbA = m.AddRouteTable(l.vpc, false, map[string]string{"Name": "private-a", "hanat:group": "a"})
	l.rtbC = m.AddRouteTable(l.vpc, false, map[string]string{"Name": "private-c", "hanat:group": "c"})
	m.AssociateRouteTable(l.rtbPub, l.pubA)
	m.AssociateRouteTable(l.rtbPub, l.pubC)
	m.AssociateRouteTable(l.rtbA, l.privA)
	m.AssociateRouteTable(l.rtbC, l.privC)
	if err := m.AddRouteNoFabric(l.rtbPub, pfx("0.0.0.0/0"), RouteTarget{GatewayID: l.igw}); err != nil {
		t.Fatal(err)
	}

	l.natAIP, l.natCIP, l.appAIP = ip("10.0.1.10"), ip("10.0.2.10"), ip("10.0.11.10")
	l.multiIP0, l.multiIP1 = ip("10.0.1.20"), ip("10.0.11.20")
	l.macNatA = mustMAC("02:00:0a:00:01:0a")
	l.macMulti0, l.macMulti1 = mustMAC("02:00:0a:00:01:14"), mustMAC("02:00:0a:00:0b:14")
	l.natA = m.AddInstance("us-sim-1a", l.pubA, map[string]string{"Name": "nat-a"})
	l.natAENI = m.AddNetworkInterface(l.pubA, l.natA, 0, l.macNatA, l.natAIP, nil)
	l.natC = m.AddInstance("us-sim-1c", l.pubC, map[string]string{"Name": "nat-c"})
	l.natCENI = m.AddNetworkInterface(l.pubC, l.natC, 0, nil, l.natCIP, nil)
	l.appA = m.AddInstance("", l.privA, map[string]string{"Name": "app-a"})
	l.appAENI = m.AddNetworkInterface(l.privA, l.appA, 0, nil, l.appAIP, nil)
	l.multi = m.AddInstance("us-sim-1a", l.pubA, map[string]string{"Name": "multi"})
	l.multiENI1 = m.AddNetworkInterface(l.privA, l.multi, 1, l.macMulti1, l.multiIP1, nil)
	l.multiENI0 = m.AddNetworkInterface(l.pubA, l.multi, 0, l.macMulti0, l.multiIP0, []netip.Addr{ip("10.0.1.21")})

	l.pubIPA, l.pubIPC, l.pubIPSpare = ip("198.51.100.10"), ip("198.51.100.20"), ip("203.0.113.5")
	l.eipA = m.AllocateAddress(l.pubIPA)
	l.eipC = m.AllocateAddress(l.pubIPC)
	l.eipSpare = m.AllocateAddress(l.pubIPSpare)
	l.eipAAssoc = m.AssociateAddressNoFabric(l.eipA, l.natAENI, netip.Addr{})
	l.eipCAssoc = m.AssociateAddressNoFabric(l.eipC, l.natCENI, l.natCIP)
	if err := m.AddRouteNoFabric(l.rtbA, pfx("0.0.0.0/0"), RouteTarget{NetworkInterfaceID: l.natAENI}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{l.vpc, l.igw, l.pubA, l.pubC, l.privA, l.privC, l.rtbMain, l.rtbPub, l.rtbA, l.rtbC,
		l.natA, l.natAENI, l.natC, l.natCENI, l.appA, l.appAENI, l.multi, l.multiENI0, l.multiENI1,
		l.eipA, l.eipC, l.eipSpare, l.eipAAssoc, l.eipCAssoc} {
		if id == "" {
			t.Fatal("building the test topology failed (see log)")
		}
	}

	l.srv = httptest.NewServer(m.EC2Handler(testCreds))
	t.Cleanup(l.srv.Close)
	l.ec2 = l.client(t, testCreds, 3)
	return l
}

// client is the real SDK client against the lab, with the standard retryer
// (no backoff sleep, maxAttempts attempts).
func (l *testLab) client(t *testing.T, c Credentials, maxAttempts int) *ec2.Client {
	t.Helper()
	cfg := aws.Config{
		Region:      testRegion,
		Credentials: credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, ""),
		HTTPClient:  l.srv.Client(),
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) {
				o.MaxAttempts = maxAttempts
				o.Backoff = retry.BackoffDelayerFunc(func(int, error) (time.Duration, error) { return time.Millisecond, nil })
			})
		},
	}
	return ec2.NewFromConfig(cfg, func(o *ec2.Options) { o.BaseEndpoint = aws.String(l.srv.URL) })
}

// wantCode asserts err is an API error with code (and, when given, a
// message containing msg).
func wantCode(t *testing.T, err error, code string, msg ...string) {
	t.Helper()
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		t.Fatalf("want API error %s, got %v", code, err)
	}
	if ae.ErrorCode() != code {
		t.Fatalf("want error code %s, got %s (%s)", code, ae.ErrorCode(), ae.ErrorMessage())
	}
	for _, s := range msg {
		if !strings.Contains(ae.ErrorMessage(), s) {
			t.Fatalf("error message %q lacks %q", ae.ErrorMessage(), s)
		}
	}
}

type rawResult struct {
	status int
	code   string
	msg    string
	body   string
}

// raw sends a hand-built EC2 request signed with the SDK's SigV4 signer.
func (l *testLab) raw(t *testing.T, method string, form url.Values, c Credentials, signTime time.Time) rawResult {
	t.Helper()
	if form.Get("Version") == "" {
		form.Set("Version", APIVersion)
	}
	var req *http.Request
	var body []byte
	var err error
	if method == http.MethodGet {
		req, err = http.NewRequest(method, l.srv.URL+"/?"+form.Encode(), nil)
	} else {
		body = []byte(form.Encode())
		req, err = http.NewRequest(method, l.srv.URL+"/", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	}
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(body)
	if c.AccessKeyID != "" {
		if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey},
			req, hex.EncodeToString(sum[:]), "ec2", testRegion, signTime); err != nil {
			t.Fatal(err)
		}
	}
	return doRaw(t, l.srv.Client(), req)
}

func doRaw(t *testing.T, c *http.Client, req *http.Request) rawResult {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := rawResult{status: resp.StatusCode, body: string(b)}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Errors []struct {
				Code    string `xml:"Code"`
				Message string `xml:"Message"`
			} `xml:"Errors>Error"`
			RequestID string `xml:"RequestID"`
		}
		if err := xml.Unmarshal(b, &e); err != nil || len(e.Errors) != 1 || e.RequestID == "" {
			t.Fatalf("status %d: malformed error document %q: %v", resp.StatusCode, b, err)
		}
		r.code, r.msg = e.Errors[0].Code, e.Errors[0].Message
	}
	return r
}

func (l *testLab) rawCall(t *testing.T, kv ...string) rawResult {
	t.Helper()
	form := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		form.Set(kv[i], kv[i+1])
	}
	return l.raw(t, http.MethodPost, form, testCreds, time.Now())
}

func wantRaw(t *testing.T, r rawResult, status int, code string) {
	t.Helper()
	if r.status != status || r.code != code {
		t.Fatalf("want %d %s, got %d %s (%s)", status, code, r.status, r.code, r.msg)
	}
}

// signInto signs req (whose body is body) with the SDK's SigV4 signer.
func signInto(t *testing.T, req *http.Request, body []byte, at time.Time) {
	t.Helper()
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: testCreds.AccessKeyID, SecretAccessKey: testCreds.SecretAccessKey},
		req, hex.EncodeToString(sum[:]), "ec2", testRegion, at); err != nil {
		t.Fatal(err)
	}
}

func readCloser(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }

func readBody(t *testing.T, req *http.Request) string {
	t.Helper()
	b, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

package cloud

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/hanat/hanat/internal/vpcsim/ec2sim"
)

const (
	labRegion = "us-sim-1"
	azA       = "us-sim-1a"
	azC       = "us-sim-1c"
)

var labCreds = ec2sim.Credentials{AccessKeyID: "AKIDHANATCLOUDTEST", SecretAccessKey: "hanat-cloud-test-secret"}

// lab is the seed's VPC as an ec2sim model behind an httptest server:
// public subnets A and C routing to the IGW, private subnets A and C with
// their own tables (A's pointing at NAT-A), a main table, a NAT instance
// per AZ with an EIP, an app host in private A, a spare EIP.
type lab struct {
	m   *ec2sim.Model
	srv *httptest.Server

	mu     sync.Mutex
	firsts map[string]int // first attempts per action (see countFirstAttempts)

	vpc, igw                    string
	pubA, pubC, privA, privC    string
	rtbMain, rtbPub, rtbA, rtbC string
	natA, natC, app             string
	natAENI, natCENI, appENI    string
	eipA, eipC, eipSpare        string
	natAIP, natCIP, appIP       netip.Addr
	pubIPA, pubIPC, pubIPSpare  netip.Addr
	macNatA                     net.HardwareAddr
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func newLab(t *testing.T) *lab {
	t.Helper()
	pfx, ip := netip.MustParsePrefix, netip.MustParseAddr
	l := &lab{m: ec2sim.NewModel(labRegion, testLogger(t), ec2sim.NopFabric{})}
	m := l.m
	l.vpc = m.AddVPC(pfx("10.0.0.0/16"), map[string]string{"Name": "seed"})
	l.igw = m.AddInternetGateway(l.vpc)
	l.pubA = m.AddSubnet(l.vpc, pfx("10.0.1.0/24"), azA, map[string]string{"Name": "public-a"})
	l.pubC = m.AddSubnet(l.vpc, pfx("10.0.2.0/24"), azC, map[string]string{"Name": "public-c"})
	l.privA = m.AddSubnet(l.vpc, pfx("10.0.11.0/24"), azA, map[string]string{"Name": "private-a"})
	l.privC = m.AddSubnet(l.vpc, pfx("10.0.12.0/24"), azC, map[string]string{"Name": "private-c"})
	l.rtbMain = m.AddRouteTable(l.vpc, true, map[string]string{"Name": "main"})
	l.rtbPub = m.AddRouteTable(l.vpc, false, map[string]string{"Name": "public"})
	l.rtbA = m.AddRouteTable(l.vpc, false, map[string]string{"Name": "private-a", "hanat": "a"})
	l.rtbC = m.AddRouteTable(l.vpc, false, map[string]string{"Name": "private-c", "hanat": "c"})
	for _, a := range [][2]string{{l.rtbPub, l.pubA}, {l.rtbPub, l.pubC}, {l.rtbA, l.privA}, {l.rtbC, l.privC}} {
		if m.AssociateRouteTable(a[0], a[1]) == "" {
			t.Fatalf("associate %s with %s failed", a[0], a[1])
		}
	}
	if err := m.AddRouteNoFabric(l.rtbPub, DefaultDestination, ec2sim.RouteTarget{GatewayID: l.igw}); err != nil {
		t.Fatal(err)
	}
	l.natAIP, l.natCIP, l.appIP = ip("10.0.1.10"), ip("10.0.2.10"), ip("10.0.11.10")
	l.macNatA, _ = net.ParseMAC("02:00:0a:00:01:0a")
	l.natA = m.AddInstance(azA, l.pubA, map[string]string{"Name": "nat-a"})
	l.natAENI = m.AddNetworkInterface(l.pubA, l.natA, 0, l.macNatA, l.natAIP, []netip.Addr{ip("10.0.1.100")})
	l.natC = m.AddInstance(azC, l.pubC, map[string]string{"Name": "nat-c"})
	l.natCENI = m.AddNetworkInterface(l.pubC, l.natC, 0, nil, l.natCIP, nil)
	l.app = m.AddInstance("", l.privA, map[string]string{"Name": "app-a"})
	l.appENI = m.AddNetworkInterface(l.privA, l.app, 0, nil, l.appIP, nil)
	l.pubIPA, l.pubIPC, l.pubIPSpare = ip("198.51.100.10"), ip("198.51.100.20"), ip("203.0.113.5")
	l.eipA = m.AllocateAddress(l.pubIPA)
	l.eipC = m.AllocateAddress(l.pubIPC)
	l.eipSpare = m.AllocateAddress(l.pubIPSpare)
	if m.AssociateAddressNoFabric(l.eipA, l.natAENI, netip.Addr{}) == "" || m.AssociateAddressNoFabric(l.eipC, l.natCENI, netip.Addr{}) == "" {
		t.Fatal("associating the NATs' EIPs failed")
	}
	if err := m.AddRouteNoFabric(l.rtbA, DefaultDestination, ec2sim.RouteTarget{NetworkInterfaceID: l.natAENI}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{l.vpc, l.igw, l.pubA, l.pubC, l.privA, l.privC, l.rtbMain, l.rtbPub, l.rtbA, l.rtbC,
		l.natA, l.natC, l.app, l.natAENI, l.natCENI, l.appENI, l.eipA, l.eipC, l.eipSpare} {
		if id == "" {
			t.Fatal("building the lab failed (see the log)")
		}
	}
	l.firsts = map[string]int{}
	l.srv = httptest.NewServer(l.countFirstAttempts(m.EC2Handler(labCreds)))
	t.Cleanup(l.srv.Close)
	return l
}

// countFirstAttempts counts, per action, the requests the SDK sent as the
// first attempt of a call (its amz-sdk-request header): the number of
// calls hanat made, whatever the transport retried.
func (l *lab) countFirstAttempts(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		action, err := peekAction(r)
		if err != nil {
			http.Error(w, "reading the request: "+err.Error(), http.StatusBadRequest)
			return
		}
		if strings.HasPrefix(r.Header.Get("amz-sdk-request"), "attempt=1;") {
			l.mu.Lock()
			l.firsts[action]++
			l.mu.Unlock()
		}
		next.ServeHTTP(w, r)
	})
}

// peekAction reads the Query API action of r's form body and puts the body
// back for the next handler.
func peekAction(r *http.Request) (string, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return "", err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return "", fmt.Errorf("request body: %w", err)
	}
	return form.Get("Action"), nil
}

// testOptions: the lab's endpoint and keys, fast backoff.
func (l *lab) options() EC2Options {
	return EC2Options{
		Region:      labRegion,
		Endpoint:    l.srv.URL,
		CallTimeout: 5 * time.Second,
		MaxAttempts: 8,
		MaxBackoff:  2 * time.Millisecond,
		Credentials: staticCreds(labCreds.AccessKeyID, labCreds.SecretAccessKey),
	}
}

func staticCreds(id, secret string) aws.CredentialsProvider {
	return credentials.NewStaticCredentialsProvider(id, secret, "")
}

func (l *lab) client(t *testing.T) *EC2 {
	t.Helper()
	return l.clientWith(t, l.options())
}

func (l *lab) clientWith(t *testing.T, o EC2Options) *EC2 {
	t.Helper()
	isolateEnv(t)
	c, err := NewEC2(context.Background(), testLogger(t), o)
	if err != nil {
		t.Fatal(err)
	}
	c.confirmDelay = time.Millisecond
	return c
}

// isolateEnv keeps the machine's AWS settings out of the test.
func isolateEnv(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_CONFIG_FILE", dir+"/config")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", dir+"/credentials")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for _, k := range []string{"AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
		"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL_AUTO_SCALING",
		"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"} {
		t.Setenv(k, "") // restored after the test
		os.Unsetenv(k)
	}
}

// calls returns how many requests of action the model has seen, retries
// included.
func (l *lab) calls(action string) int { return l.m.Stats().ByAction[action] }

// requests returns how many calls of action the client made: first
// attempts only, so a transport retry does not count twice.
func (l *lab) requests(action string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.firsts[action]
}

// mutations returns the number of mutating requests the model has seen.
func (l *lab) mutations() int {
	n := 0
	for a, k := range l.m.Stats().ByAction {
		if !strings.HasPrefix(a, "Describe") {
			n += k
		}
	}
	return n
}

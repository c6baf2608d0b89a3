package cloud

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hanat/hanat/internal/vpcsim/ec2sim"
)

// imdsServer serves the lab's IMDS as instanceID (a fixed identity, as if
// every request came from that instance), through wrap when given.
func (l *lab) imdsServer(t *testing.T, instanceID string, wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	var h http.Handler = l.m.IMDSHandler(func(*http.Request) (string, bool) { return instanceID, instanceID != "" })
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func discover(t *testing.T, url string, timeout time.Duration) (*Instance, error) {
	t.Helper()
	c := NewIMDSClient(IMDSOptions{Endpoint: url, Timeout: timeout})
	return Discover(context.Background(), c, timeout)
}

func TestDiscoverNAT(t *testing.T) {
	l := newLab(t)
	srv := l.imdsServer(t, l.natA, nil)
	inst, err := discover(t, srv.URL, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	vpcCIDRs := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/16")}
	if inst.ID != l.natA || inst.Region != labRegion || inst.AvailabilityZone != azA || inst.MAC != l.macNatA.String() ||
		inst.PrivateIP != l.natAIP || inst.PublicIP != l.pubIPA || inst.VPCID != l.vpc || !slices.Equal(inst.VPCCIDRs, vpcCIDRs) {
		t.Fatalf("instance = %+v", inst)
	}
	if len(inst.ENIs) != 1 {
		t.Fatalf("ENIs = %+v", inst.ENIs)
	}
	e := inst.ENIs[0]
	if e.ID != l.natAENI || e.MAC != l.macNatA.String() || e.DeviceNumber != 0 || e.SubnetID != l.pubA || e.VPCID != l.vpc ||
		!slices.Equal(e.VPCCIDRs, vpcCIDRs) || !slices.Equal(e.PrivateIPs, []netip.Addr{l.natAIP, netip.MustParseAddr("10.0.1.100")}) ||
		!slices.Equal(e.PublicIPs, []netip.Addr{l.pubIPA}) {
		t.Fatalf("ENI = %+v", e)
	}
	if got, ok := inst.ENIByMAC(strings.ToUpper(l.macNatA.String())); !ok || got.ID != l.natAENI {
		t.Fatalf("ENIByMAC = %+v, %v", got, ok)
	}
}

func TestDiscoverWithoutPublicIPAndSeveralENIs(t *testing.T) {
	l := newLab(t)
	// A second ENI (device 1, in the private subnet) added before the
	// primary: discovery sorts by device number.
	multi := l.m.AddInstance(azA, l.pubA, nil)
	mac1, _ := net.ParseMAC("02:00:0a:00:0b:14")
	eni1 := l.m.AddNetworkInterface(l.privA, multi, 1, mac1, netip.MustParseAddr("10.0.11.20"), nil)
	eni0 := l.m.AddNetworkInterface(l.pubA, multi, 0, nil, netip.MustParseAddr("10.0.1.20"), nil)
	if multi == "" || eni0 == "" || eni1 == "" {
		t.Fatal("adding the instance failed")
	}
	inst, err := discover(t, l.imdsServer(t, multi, nil).URL, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if inst.PublicIP.IsValid() || inst.PrivateIP != netip.MustParseAddr("10.0.1.20") || len(inst.ENIs) != 2 ||
		inst.ENIs[0].ID != eni0 || inst.ENIs[1].ID != eni1 || inst.ENIs[1].SubnetID != l.privA || len(inst.ENIs[1].PublicIPs) != 0 {
		t.Fatalf("instance = %+v", inst)
	}
	if e, ok := inst.ENIByMAC(mac1.String()); !ok || e.DeviceNumber != 1 {
		t.Fatalf("ENIByMAC(%s) = %+v, %v", mac1, e, ok)
	}
}

func TestDiscoverFailures(t *testing.T) {
	l := newLab(t)
	refuse := func(path string, status int) func(http.Handler) http.Handler {
		return func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == path {
					http.Error(w, http.StatusText(status), status)
					return
				}
				next.ServeHTTP(w, r)
			})
		}
	}
	slow := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(10 * time.Second):
			case <-r.Context().Done():
				return
			}
			next.ServeHTTP(w, r)
		})
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	for _, tc := range []struct {
		name     string
		url      string
		noIMDS   bool   // want ErrNoIMDS (hanatd: "not on EC2")
		mentions string // the error names this
	}{
		{"nothing listening", closed.URL, true, "instance-id"},
		{"slow IMDS", l.imdsServer(t, l.natA, slow).URL, true, "instance-id"},
		{"token refused", l.imdsServer(t, l.natA, refuse("/latest/api/token", http.StatusForbidden)).URL, false, "instance-id"},
		{"IMDSv1 only (no token endpoint)", l.imdsServer(t, l.natA, refuse("/latest/api/token", http.StatusNotFound)).URL, false, "instance-id"},
		{"caller is no instance", l.imdsServer(t, "", nil).URL, false, "instance-id"},
		{"missing region", l.imdsServer(t, l.natA, refuse("/latest/meta-data/placement/region", http.StatusNotFound)).URL, false, "placement/region"},
		{"missing ENI list", l.imdsServer(t, l.natA, refuse("/latest/meta-data/network/interfaces/macs/", http.StatusNotFound)).URL, false, "network/interfaces/macs/"},
		{"missing subnet", l.imdsServer(t, l.natA, refuse("/latest/meta-data/network/interfaces/macs/"+l.macNatA.String()+"/subnet-id", http.StatusNotFound)).URL, false, "subnet-id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inst, err := discover(t, tc.url, 300*time.Millisecond)
			if err == nil {
				t.Fatalf("discovered %+v", inst)
			}
			if errors.Is(err, ErrNoIMDS) != tc.noIMDS {
				t.Fatalf("errors.Is(err, ErrNoIMDS) = %v, want %v: %v", !tc.noIMDS, tc.noIMDS, err)
			}
			if !strings.Contains(err.Error(), tc.mentions) {
				t.Fatalf("error %q does not mention %q", err, tc.mentions)
			}
		})
	}
}

// The SDK gives up on a refused connection long before a generous
// discovery deadline; that must still read as "not on EC2".
func TestDiscoverConnectionRefusedIsNoIMDS(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	_, err := discover(t, closed.URL, 10*time.Second)
	if !errors.Is(err, ErrNoIMDS) {
		t.Fatalf("refused connection: %v, want ErrNoIMDS", err)
	}
}

// TestTargetLifecycleState reads the Auto Scaling target lifecycle state
// through the SDK's IMDSv2 client: InService, then Terminated once the lab
// scales the instance in, "" outside an Auto Scaling group.
func TestTargetLifecycleState(t *testing.T) {
	l := newLab(t)
	c := NewIMDSClient(IMDSOptions{Endpoint: l.imdsServer(t, l.natA, nil).URL, Timeout: 5 * time.Second})
	read := func(want string) {
		t.Helper()
		if got, err := TargetLifecycleState(t.Context(), c); err != nil || got != want {
			t.Fatalf("target lifecycle state = %q, %v; want %q", got, err, want)
		}
	}
	read(ec2sim.LifecycleInService)
	if err := l.m.SetTargetLifecycleState(l.natA, ec2sim.LifecycleTerminated); err != nil {
		t.Fatal(err)
	}
	read(ec2sim.LifecycleTerminated)
	if err := l.m.SetTargetLifecycleState(l.natA, ""); err != nil {
		t.Fatal(err)
	}
	read("")
	if _, err := (&Node{}).TargetLifecycleState(t.Context()); err == nil {
		t.Fatal("a node off EC2 read a lifecycle state")
	}
}

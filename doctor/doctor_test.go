package doctor

import (
	"strings"
	"testing"
)

func ptr[T any](v T) *T { return &v }

func healthy() Facts {
	return Facts{
		OnEC2: true, VPCID: "vpc-1", SubnetID: "subnet-pub-a", AZ: "us-sim-1a", ENIID: "eni-nat-a",
		IGWAttached: ptr(true), IGWID: "igw-1",
		SubnetRouteTable: &RouteTable{ID: "rtb-public", AZs: []string{"us-sim-1a", "us-sim-1c"}, DefaultExists: true, DefaultGateway: "igw-1"},
		PublicIP:         "198.51.100.10",
		SourceDestCheck:  ptr(false),
		PrivateRouteTables: []RouteTable{
			{ID: "rtb-priv-a", AZs: []string{"us-sim-1a"}, DefaultExists: true, DefaultENI: "eni-nat-a"},
			{ID: "rtb-priv-c", AZs: []string{"us-sim-1c"}, DefaultExists: true, DefaultENI: "eni-nat-c"},
		},
		IPForward: ptr(true), TablePresent: ptr(true), TableName: "inet hanat",
	}
}

func byID(checks []Check, id string) (Check, bool) {
	for _, c := range checks {
		if c.ID == id {
			return c, true
		}
	}
	return Check{}, false
}

func TestHealthyPasses(t *testing.T) {
	checks := Run(healthy())
	if !OK(checks) {
		t.Fatalf("healthy NAT failed: %+v", checks)
	}
	for _, c := range checks {
		if c.Status != Pass {
			t.Errorf("check %s = %s (%s), want pass", c.ID, c.Status, c.Detail)
		}
	}
	if _, ok := byID(checks, "private-route:rtb-priv-c"); ok {
		t.Error("the other AZ's table, served by the other NAT, must not be judged")
	}
}

func TestMisconfigurations(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(*Facts)
		id     string
		status Status
		detail string
		fix    string
	}{
		{"no IGW", func(f *Facts) { f.IGWAttached = ptr(false) }, "igw-attached", Fail, "no internet gateway is attached to vpc-1", "attach-internet-gateway"},
		{"NAT in a private subnet", func(f *Facts) {
			f.SubnetRouteTable = &RouteTable{ID: "rtb-priv-a", DefaultExists: true, DefaultENI: "eni-other"}
		}, "nat-in-public-subnet", Fail, "common mistake", "public subnet"},
		{"no IGW route in the NAT's subnet", func(f *Facts) {
			f.SubnetRouteTable = &RouteTable{ID: "rtb-public"}
		}, "nat-in-public-subnet", Fail, "no 0.0.0.0/0 route", "create-route --route-table-id rtb-public --destination-cidr-block 0.0.0.0/0 --gateway-id igw-1"},
		{"no public IP", func(f *Facts) { f.PublicIP = "" }, "nat-public-ip", Fail, "has no public IPv4", "associate-address"},
		{"source/dest check on", func(f *Facts) { f.SourceDestCheck = ptr(true) }, "source-dest-check", Fail, "enabled on eni-nat-a", "--no-source-dest-check"},
		{"private route elsewhere", func(f *Facts) {
			f.PrivateRouteTables[0].DefaultENI = "eni-somewhere"
		}, "private-route:rtb-priv-a", Fail, "0.0.0.0/0 → eni-somewhere, not this NAT", "replace-route --route-table-id rtb-priv-a"},
		{"private route blackhole", func(f *Facts) {
			f.PrivateRouteTables[0].Blackhole = true
		}, "private-route:rtb-priv-a", Fail, "blackhole", "replace-route"},
		{"private route missing", func(f *Facts) {
			f.PrivateRouteTables[0] = RouteTable{ID: "rtb-priv-a", AZs: []string{"us-sim-1a"}}
		}, "private-route:rtb-priv-a", Fail, "no default route", "create-route if it is missing"},
		{"cross-AZ", func(f *Facts) {
			f.PrivateRouteTables[1].DefaultENI = "eni-nat-a"
		}, "private-route:rtb-priv-c", Warn, "this NAT although the table is not one it serves", "own AZ"},
		{"ip_forward off", func(f *Facts) { f.IPForward = ptr(false) }, "ip-forward", Fail, "does not forward", "sysctl"},
		{"table missing", func(f *Facts) { f.TablePresent = ptr(false) }, "nftables-table", Fail, "no NAT rules", "hanatctl reload"},
		{"IAM refused", func(f *Facts) {
			f.SourceDestCheck, f.SourceDestCheckErr = nil, "api error UnauthorizedOperation: not allowed"
		}, "source-dest-check", Skip, "unknown", "iam-policy.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := healthy()
			f.PrivateRouteTables = append([]RouteTable(nil), f.PrivateRouteTables...)
			tc.mutate(&f)
			checks := Run(f)
			c, ok := byID(checks, tc.id)
			if !ok {
				t.Fatalf("no check %s in %+v", tc.id, checks)
			}
			if c.Status != tc.status || !strings.Contains(c.Detail, tc.detail) || !strings.Contains(c.Fix, tc.fix) {
				t.Fatalf("check %s = %+v\nwant status %s, detail containing %q, fix containing %q", tc.id, c, tc.status, tc.detail, tc.fix)
			}
			if tc.status == Fail && OK(checks) {
				t.Error("OK() true with a failing check")
			}
			for _, other := range checks {
				if other.ID != tc.id && other.Status == Fail {
					t.Errorf("unrelated check %s also failed: %s", other.ID, other.Detail)
				}
			}
		})
	}
}

func TestOffEC2SkipsAWSChecks(t *testing.T) {
	checks := Run(Facts{IMDSErr: "dial 169.254.169.254: timeout", IPForward: ptr(true), TablePresent: ptr(true)})
	if !OK(checks) {
		t.Fatalf("off EC2 with a working datapath must not fail: %+v", checks)
	}
	for _, c := range checks {
		if c.ID == "ip-forward" || c.ID == "nftables-table" {
			if c.Status != Pass {
				t.Errorf("%s = %s", c.ID, c.Status)
			}
		} else if c.Status != Skip {
			t.Errorf("%s = %s, want skip off EC2", c.ID, c.Status)
		}
	}
}

package cloud

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/hanat/hanat/internal/vpcsim/ec2sim"
)

// stringOrList is IAM's "one string or a list of strings".
type stringOrList []string

func (s *stringOrList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

type iamPolicy struct {
	Version   string
	Statement []struct {
		Sid       string
		Effect    string
		Action    stringOrList
		NotAction stringOrList
		Resource  stringOrList
		Condition map[string]map[string]any
	}
}

// TestIAMPolicyMatchesActions: packaging/iam-policy.json allows exactly
// the operations the package calls, Describe* on "*" (EC2 cannot scope
// them) and every mutating one on tagged resources only.
func TestIAMPolicyMatchesActions(t *testing.T) {
	b, err := os.ReadFile("../packaging/iam-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	var p iamPolicy
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("iam-policy.json: %v", err)
	}
	if p.Version != "2012-10-17" {
		t.Errorf("Version %q, want 2012-10-17", p.Version)
	}
	var allowed []string
	for _, st := range p.Statement {
		if st.Effect != "Allow" || len(st.NotAction) > 0 {
			t.Errorf("statement %s: only plain Allow statements are expected", st.Sid)
		}
		if len(st.Resource) == 0 {
			t.Errorf("statement %s: no Resource", st.Sid)
		}
		for _, a := range st.Action {
			if strings.ContainsAny(a, "*?") {
				t.Errorf("statement %s: wildcard action %s", st.Sid, a)
			}
			allowed = append(allowed, a)
			describe := strings.HasPrefix(a, "ec2:Describe")
			star := slices.Contains(st.Resource, "*")
			if a == actPutMetricData {
				// No resource to scope: only the namespace condition limits it.
				ns, _ := st.Condition["StringLike"]["cloudwatch:namespace"].([]any)
				if len(st.Resource) != 1 || !star || len(ns) == 0 {
					t.Errorf("statement %s: %s should be on Resource \"*\" with a StringLike cloudwatch:namespace condition", st.Sid, a)
				}
				for _, n := range ns {
					if n != "hanat" && n != "hanat/*" {
						t.Errorf("statement %s: namespace %v, want hanat or hanat/*", st.Sid, n)
					}
				}
				continue
			}
			switch {
			case describe && (!star || len(st.Resource) != 1):
				t.Errorf("statement %s: %s should be on Resource \"*\" (EC2 Describe calls cannot be scoped)", st.Sid, a)
			case !describe && star:
				t.Errorf("statement %s: mutating %s on every resource", st.Sid, a)
			case !describe && len(st.Condition) == 0:
				t.Errorf("statement %s: mutating %s without a condition", st.Sid, a)
			}
		}
		for _, r := range st.Resource {
			if r != "*" && !strings.HasPrefix(r, "arn:aws:ec2:") {
				t.Errorf("statement %s: resource %s is not an EC2 ARN", st.Sid, r)
			}
		}
	}
	slices.Sort(allowed)
	want := Actions()
	slices.Sort(want)
	if !slices.Equal(slices.Compact(allowed), want) {
		t.Fatalf("iam-policy.json allows %v\ncloud.Actions() is     %v", allowed, want)
	}
}

// TestEveryActionIsCalled drives every wrapper once and checks that the
// EC2 operations reaching the simulator are exactly Actions: no stale
// entry in the list (and so in the policy), none missing.
func TestEveryActionIsCalled(t *testing.T) {
	l := newLab(t)
	c := l.client(t)
	ctx := context.Background()
	peer := l.m.AddInstance(azA, l.pubA, nil)
	peerENI := l.m.AddNetworkInterface(l.pubA, peer, 0, nil, netip.MustParseAddr("10.0.1.11"), nil)

	if _, err := c.Facts(ctx, l.vpc, l.pubA, l.natAENI); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DisableSourceDestCheck(ctx, l.natAENI); err != nil {
		t.Fatal(err)
	}
	if _, err := c.EnsureDefaultRoute(ctx, l.rtbC, l.natCENI); err != nil { // CreateRoute
		t.Fatal(err)
	}
	if _, err := c.EnsureDefaultRoute(ctx, l.rtbC, l.natAENI); err != nil { // ReplaceRoute
		t.Fatal(err)
	}
	if _, err := c.AssociateEIP(ctx, l.eipSpare, l.natAENI, netip.MustParseAddr("10.0.1.100")); err != nil {
		t.Fatal(err)
	}
	if err := c.MoveSecondaryIP(ctx, peerENI, netip.MustParseAddr("10.0.1.100")); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for a, n := range l.m.Stats().ByAction {
		if n > 0 {
			seen = append(seen, "ec2:"+a)
		}
	}
	slices.Sort(seen)
	// PutMetricData goes to CloudWatch (TestCloudWatchPutMetricData).
	want := slices.DeleteFunc(Actions(), func(a string) bool { return !strings.HasPrefix(a, "ec2:") })
	slices.Sort(want)
	if !slices.Equal(seen, want) {
		t.Fatalf("operations sent %v\nActions()       %v", seen, want)
	}
	// Every operation the package calls is one the simulator implements.
	for _, a := range want {
		if !slices.Contains(ec2sim.Actions(), strings.TrimPrefix(a, "ec2:")) {
			t.Errorf("ec2sim does not implement %s", a)
		}
	}
}

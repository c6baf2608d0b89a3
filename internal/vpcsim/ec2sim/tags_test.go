package ec2sim

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// tagsOf is every tag of id, through DescribeTags.
func (l *testLab) tagsOf(t *testing.T, id string) map[string]string {
	t.Helper()
	out, err := l.ec2.DescribeTags(context.Background(), &ec2.DescribeTagsInput{Filters: []types.Filter{flt("resource-id", id)}})
	if err != nil {
		t.Fatalf("DescribeTags %s: %v", id, err)
	}
	got := map[string]string{}
	for _, d := range out.Tags {
		got[aws.ToString(d.Key)] = aws.ToString(d.Value)
	}
	return got
}

func (l *testLab) wantTags(t *testing.T, id string, want map[string]string) {
	t.Helper()
	if got := l.tagsOf(t, id); !maps.Equal(got, want) {
		t.Fatalf("tags of %s = %v, want %v", id, got, want)
	}
}

func tag(k string, v ...string) types.Tag {
	tg := types.Tag{Key: aws.String(k)}
	if len(v) > 0 {
		tg.Value = aws.String(v[0])
	}
	return tg
}

// TestDeleteTags drives DeleteTags with the real SDK: a key alone deletes
// the tag whatever its value; a key with a value only when it matches; an
// empty value only an empty tag; no tags every tag but aws: ones; an
// unknown resource is its kind's NotFound and deletes nothing.
func TestDeleteTags(t *testing.T) {
	l := newTestLab(t)
	ctx := context.Background()
	// rtbC starts with Name and hanat:group; add more, and an AWS tag the
	// model carries (as CloudFormation's would be).
	l.m.mu.Lock()
	l.m.setTags(l.rtbC, map[string]string{"aws:cloudformation:stack-name": "vpc"})
	l.m.mu.Unlock()
	_, err := l.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{l.rtbC, l.natCENI},
		Tags: []types.Tag{tag("hanat", "1"), tag("empty", ""), tag("full", "x"), tag("env", "prod")}})
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]string{"Name": "private-c", "hanat:group": "c", "aws:cloudformation:stack-name": "vpc",
		"hanat": "1", "empty": "", "full": "x", "env": "prod"}
	l.wantTags(t, l.rtbC, all)

	del := func(ids []string, tags ...types.Tag) error {
		_, err := l.ec2.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: ids, Tags: tags})
		return err
	}
	// A value that does not match keeps the tag; a key the resource lacks
	// is no error.
	if err := del([]string{l.rtbC}, tag("env", "staging"), tag("hanat", "2"), tag("no-such-key")); err != nil {
		t.Fatal(err)
	}
	l.wantTags(t, l.rtbC, all)
	// An empty value deletes only a tag whose value is empty.
	if err := del([]string{l.rtbC}, tag("empty", ""), tag("full", "")); err != nil {
		t.Fatal(err)
	}
	delete(all, "empty")
	l.wantTags(t, l.rtbC, all)
	// A matching value deletes; a key without a value deletes any value.
	if err := del([]string{l.rtbC}, tag("env", "prod"), tag("full")); err != nil {
		t.Fatal(err)
	}
	delete(all, "env")
	delete(all, "full")
	l.wantTags(t, l.rtbC, all)

	// Several resources in one call.
	if err := del([]string{l.rtbC, l.natCENI}, tag("hanat")); err != nil {
		t.Fatal(err)
	}
	delete(all, "hanat")
	l.wantTags(t, l.rtbC, all)
	l.wantTags(t, l.natCENI, map[string]string{"empty": "", "full": "x", "env": "prod"})

	// Unknown resources: nothing is deleted, not even on the known one.
	for id, code := range map[string]string{
		"rtb-0123456789abcdef0":      "InvalidRouteTableID.NotFound",
		"i-0123456789abcdef0":        "InvalidInstanceID.NotFound",
		"eni-0123456789abcdef0":      "InvalidNetworkInterfaceID.NotFound",
		"eipalloc-0123456789abcdef0": "InvalidAllocationID.NotFound",
		"subnet-0123456789abcdef0":   "InvalidSubnetID.NotFound",
		"vpc-0123456789abcdef0":      "InvalidVpcID.NotFound",
		"bogus":                      "InvalidID",
	} {
		wantCode(t, del([]string{l.natCENI, id}, tag("env")), code, id)
	}
	l.wantTags(t, l.natCENI, map[string]string{"empty": "", "full": "x", "env": "prod"})
	// Reserved and empty keys are refused.
	wantCode(t, del([]string{l.natCENI}, tag("aws:x")), "InvalidParameterValue", "aws:")
	wantCode(t, del([]string{l.natCENI}, tag("AWS:x")), "InvalidParameterValue", "aws:")
	wantCode(t, del([]string{l.natCENI}, types.Tag{Value: aws.String("x")}), "InvalidParameterValue", "empty")

	// No Tag.N: every user tag goes, the aws: one stays.
	if err := del([]string{l.rtbC, l.natCENI}); err != nil {
		t.Fatal(err)
	}
	l.wantTags(t, l.rtbC, map[string]string{"aws:cloudformation:stack-name": "vpc"})
	l.wantTags(t, l.natCENI, map[string]string{})
	// Tags of other resources are untouched.
	l.wantTags(t, l.rtbA, map[string]string{"Name": "private-a", "hanat:group": "a"})

	// The wire answer is EC2's: <return>true</return>; ResourceId.N is
	// required.
	r := l.rawCall(t, "Action", "DeleteTags", "ResourceId.1", l.rtbA, "Tag.1.Key", "Name", "Tag.1.Value", "private-a")
	if r.status != http.StatusOK || !strings.Contains(r.body, "<DeleteTagsResponse") || !strings.Contains(r.body, "<return>true</return>") {
		t.Fatalf("DeleteTags answer %d %s", r.status, r.body)
	}
	l.wantTags(t, l.rtbA, map[string]string{"hanat:group": "a"})
	wantRaw(t, l.rawCall(t, "Action", "DeleteTags", "Tag.1.Key", "k"), http.StatusBadRequest, "MissingParameter")
	wantRaw(t, l.rawCall(t, "Action", "DeleteTags", "ResourceId.1", l.rtbA, "Tag.1.Color", "k"), http.StatusBadRequest, "InvalidParameterValue")
}

// sdkCalls is one real SDK call per action the simulator implements, each
// valid against a fresh test lab and run in this order (later calls
// undo earlier ones where EC2 needs that).
func sdkCalls(l *testLab) []struct {
	action string
	call   func(context.Context) error
} {
	var assoc string
	ec := l.ec2
	return []struct {
		action string
		call   func(context.Context) error
	}{
		{"DescribeInstances", func(ctx context.Context) error {
			_, err := ec.DescribeInstances(ctx, &ec2.DescribeInstancesInput{})
			return err
		}},
		{"DescribeNetworkInterfaces", func(ctx context.Context) error {
			_, err := ec.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{})
			return err
		}},
		{"DescribeSubnets", func(ctx context.Context) error {
			_, err := ec.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{})
			return err
		}},
		{"DescribeVpcs", func(ctx context.Context) error { _, err := ec.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{}); return err }},
		{"DescribeVpcEndpoints", func(ctx context.Context) error {
			_, err := ec.DescribeVpcEndpoints(ctx, &ec2.DescribeVpcEndpointsInput{})
			return err
		}},
		{"DescribeInternetGateways", func(ctx context.Context) error {
			_, err := ec.DescribeInternetGateways(ctx, &ec2.DescribeInternetGatewaysInput{})
			return err
		}},
		{"DescribeRouteTables", func(ctx context.Context) error {
			_, err := ec.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{})
			return err
		}},
		{"DescribeAddresses", func(ctx context.Context) error {
			_, err := ec.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{})
			return err
		}},
		{"DescribeTags", func(ctx context.Context) error { _, err := ec.DescribeTags(ctx, &ec2.DescribeTagsInput{}); return err }},
		{"ModifyNetworkInterfaceAttribute", func(ctx context.Context) error {
			_, err := ec.ModifyNetworkInterfaceAttribute(ctx, &ec2.ModifyNetworkInterfaceAttributeInput{NetworkInterfaceId: aws.String(l.natAENI),
				SourceDestCheck: &types.AttributeBooleanValue{Value: aws.Bool(false)}})
			return err
		}},
		{"ModifyInstanceAttribute", func(ctx context.Context) error {
			_, err := ec.ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{InstanceId: aws.String(l.natC),
				SourceDestCheck: &types.AttributeBooleanValue{Value: aws.Bool(false)}})
			return err
		}},
		{"CreateRoute", func(ctx context.Context) error {
			_, err := ec.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: aws.String(l.rtbC),
				DestinationCidrBlock: aws.String("0.0.0.0/0"), NetworkInterfaceId: aws.String(l.natCENI)})
			return err
		}},
		{"ReplaceRoute", func(ctx context.Context) error {
			_, err := ec.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{RouteTableId: aws.String(l.rtbA),
				DestinationCidrBlock: aws.String("0.0.0.0/0"), NetworkInterfaceId: aws.String(l.natCENI)})
			return err
		}},
		{"DeleteRoute", func(ctx context.Context) error {
			_, err := ec.DeleteRoute(ctx, &ec2.DeleteRouteInput{RouteTableId: aws.String(l.rtbC), DestinationCidrBlock: aws.String("0.0.0.0/0")})
			return err
		}},
		{"AssociateAddress", func(ctx context.Context) error {
			out, err := ec.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: aws.String(l.eipSpare), NetworkInterfaceId: aws.String(l.multiENI0)})
			if err == nil {
				assoc = aws.ToString(out.AssociationId)
			}
			return err
		}},
		{"DisassociateAddress", func(ctx context.Context) error {
			_, err := ec.DisassociateAddress(ctx, &ec2.DisassociateAddressInput{AssociationId: aws.String(assoc)})
			return err
		}},
		{"AssignPrivateIpAddresses", func(ctx context.Context) error {
			_, err := ec.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{NetworkInterfaceId: aws.String(l.natAENI),
				PrivateIpAddresses: []string{"10.0.1.50"}})
			return err
		}},
		{"UnassignPrivateIpAddresses", func(ctx context.Context) error {
			_, err := ec.UnassignPrivateIpAddresses(ctx, &ec2.UnassignPrivateIpAddressesInput{NetworkInterfaceId: aws.String(l.natAENI),
				PrivateIpAddresses: []string{"10.0.1.50"}})
			return err
		}},
		{"CreateTags", func(ctx context.Context) error {
			_, err := ec.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{l.rtbC}, Tags: []types.Tag{tag("hanat", "c")}})
			return err
		}},
		{"DeleteTags", func(ctx context.Context) error {
			_, err := ec.DeleteTags(ctx, &ec2.DeleteTagsInput{Resources: []string{l.rtbC}, Tags: []types.Tag{tag("hanat")}})
			return err
		}},
	}
}

// repoRoot is the repository's top directory (this package is
// internal/vpcsim/ec2sim).
const repoRoot = "../../.."

// namedEC2Actions are the EC2 actions the project names: the ec2:* actions
// of packaging/iam-policy.json (what hanatd may call), and the EC2 API
// calls the README, the Terraform example and its README name.
func namedEC2Actions(t *testing.T) map[string][]string {
	t.Helper()
	named := map[string][]string{} // action → where
	b, err := os.ReadFile(filepath.Join(repoRoot, "packaging", "iam-policy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var policy struct {
		Statement []struct {
			Action json.RawMessage
		}
	}
	if err := json.Unmarshal(b, &policy); err != nil {
		t.Fatalf("packaging/iam-policy.json: %v", err)
	}
	for i, st := range policy.Statement {
		var list []string
		if err := json.Unmarshal(st.Action, &list); err != nil {
			var one string
			if err := json.Unmarshal(st.Action, &one); err != nil {
				t.Fatalf("packaging/iam-policy.json: statement %d: Action is neither a string nor a list: %s", i, st.Action)
			}
			list = []string{one}
		}
		for _, a := range list {
			if name, ok := strings.CutPrefix(a, "ec2:"); ok {
				named[name] = append(named[name], "packaging/iam-policy.json")
			}
		}
	}
	if len(named) == 0 {
		t.Fatal("packaging/iam-policy.json names no ec2: action")
	}
	// In prose and HCL: ec2:Action, or an EC2 API verb with its noun.
	ec2Name := regexp.MustCompile(`\bec2:([A-Z][A-Za-z]+)|\b((?:Describe|Create|Delete|Replace|Modify|Associate|Disassociate|Assign|Unassign|Attach|Detach|Allocate|Release)(?:Addresses?|Routes?|RouteTables?|Tags|NetworkInterfaces?|NetworkInterfaceAttribute|InstanceAttribute|Instances|Subnets|Vpcs|InternetGateways|PrivateIpAddresses))\b`)
	docs, _ := filepath.Glob(filepath.Join(repoRoot, "packaging", "terraform", "*"))
	docs = append(docs, filepath.Join(repoRoot, "README.md"))
	for _, f := range docs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(repoRoot, f)
		for _, m := range ec2Name.FindAllStringSubmatch(string(b), -1) {
			name := m[1] + m[2]
			if !slices.Contains(named[name], rel) {
				named[name] = append(named[name], rel)
			}
		}
	}
	return named
}

// TestNamedActionsAnswered: every EC2 action the IAM policy, the README or
// the Terraform example names is routed by the simulator, and answers a
// real SDK call; so does every other action it implements.
func TestNamedActionsAnswered(t *testing.T) {
	l := newTestLab(t)
	calls := sdkCalls(l)
	var called []string
	for _, c := range calls {
		called = append(called, c.action)
	}
	named := namedEC2Actions(t)
	for _, a := range slices.Sorted(maps.Keys(named)) {
		if !slices.Contains(Actions(), a) {
			t.Errorf("%s (named in %s) is not implemented by the simulator", a, strings.Join(named[a], ", "))
		}
		if !slices.Contains(called, a) {
			t.Errorf("%s (named in %s) has no SDK call in this test", a, strings.Join(named[a], ", "))
		}
	}
	if !slices.Equal(slices.Sorted(slices.Values(called)), Actions()) {
		t.Errorf("the SDK calls here cover %v, the simulator implements %v", slices.Sorted(slices.Values(called)), Actions())
	}
	for _, c := range calls {
		if err := c.call(context.Background()); err != nil {
			t.Errorf("%s: %v", c.action, err)
		}
	}
	if st := l.m.Stats(); st.Errors != 0 || st.ByAction["DeleteTags"] != 1 {
		t.Errorf("stats after the calls: %+v", st)
	}
	t.Logf("named EC2 actions: %v", slices.Sorted(maps.Keys(named)))
}

// TestModelTag: the lab's own Tag adds to a resource's tags as CreateTags
// does (DescribeTags shows them); an unknown id is NotFound and tags
// nothing.
func TestModelTag(t *testing.T) {
	l := newTestLab(t)
	if err := l.m.Tag([]string{l.rtbA}, map[string]string{"hanat": ""}); err != nil {
		t.Fatalf("Tag %s: %v", l.rtbA, err)
	}
	l.wantTags(t, l.rtbA, map[string]string{"Name": "private-a", "hanat:group": "a", "hanat": ""})
	err := l.m.Tag([]string{l.rtbC, "rtb-0000000000000dead"}, map[string]string{"hanat": ""})
	var aerr *APIError
	if !errors.As(err, &aerr) || !strings.Contains(aerr.Code, "NotFound") {
		t.Fatalf("Tag of an unknown route table: %v, want a NotFound APIError", err)
	}
	l.wantTags(t, l.rtbC, map[string]string{"Name": "private-c", "hanat:group": "c"})
}

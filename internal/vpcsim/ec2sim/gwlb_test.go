package ec2sim

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// gwlbLab is the test VPC with a GWLB in both public subnets and one
// endpoint per AZ in the private subnets.
type gwlbLab struct {
	*testLab
	arn, service       string
	gwlbENIs           []string
	vpceA, vpceC       string
	vpceAENI, vpceCENI string
}

func newGWLBLab(t *testing.T) *gwlbLab {
	t.Helper()
	l := &gwlbLab{testLab: newTestLab(t)}
	ip := netip.MustParseAddr
	var err error
	l.arn, l.service, l.gwlbENIs, err = l.m.AddGatewayLoadBalancer("hanat-gwlb", []string{l.pubA, l.pubC}, []netip.Addr{ip("10.0.1.5"), ip("10.0.2.5")})
	if err != nil {
		t.Fatal(err)
	}
	if l.vpceA, l.vpceAENI, err = l.m.AddGatewayLoadBalancerEndpoint(l.service, l.privA, ip("10.0.11.5")); err != nil {
		t.Fatal(err)
	}
	if l.vpceC, l.vpceCENI, err = l.m.AddGatewayLoadBalancerEndpoint(l.service, l.privC, ip("10.0.12.5")); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestGWLBModelRefusals(t *testing.T) {
	l := newGWLBLab(t)
	ip := netip.MustParseAddr
	if _, _, _, err := l.m.AddGatewayLoadBalancer("two-in-a", []string{l.pubA, l.privA}, []netip.Addr{ip("10.0.1.6"), ip("10.0.11.6")}); err == nil {
		t.Fatal("a GWLB with two subnets in one AZ was accepted")
	}
	if _, _, _, err := l.m.AddGatewayLoadBalancer("taken", []string{l.pubA}, []netip.Addr{l.natAIP}); err == nil {
		t.Fatal("a GWLB ENI on nat-a's address was accepted")
	}
	if _, _, err := l.m.AddGatewayLoadBalancerEndpoint(l.service, l.pubA, ip("10.0.1.7")); err == nil {
		t.Fatal("a second endpoint of the service in AZ a was accepted")
	}
	if _, _, err := l.m.AddGatewayLoadBalancerEndpoint("com.amazonaws.vpce.us-sim-1.vpce-svc-none", l.pubA, ip("10.0.1.7")); err == nil {
		t.Fatal("an endpoint of an unknown service was accepted")
	}
}

func TestRoutesToGWLBEndpoint(t *testing.T) {
	l := newGWLBLab(t)
	ctx := context.Background()

	// ReplaceRoute points private-a's default route at AZ a's endpoint.
	_, err := l.ec2.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{RouteTableId: aws.String(l.rtbA),
		DestinationCidrBlock: aws.String("0.0.0.0/0"), VpcEndpointId: aws.String(l.vpceA)})
	if err != nil {
		t.Fatal(err)
	}
	wantCalls(t, l.fabric, "SetRoute "+l.rtbA+" 0.0.0.0/0 vpce="+l.vpceA+" via=10.0.11.5")
	r, _ := l.route(t, l.rtbA, "0.0.0.0/0")
	if aws.ToString(r.GatewayId) != l.vpceA || r.NetworkInterfaceId != nil || r.State != types.RouteStateActive {
		t.Fatalf("DescribeRouteTables after ReplaceRoute to %s: %+v", l.vpceA, r)
	}

	// CreateRoute in private-c, found by the route.gateway-id filter.
	l.fabric.Reset(nil)
	if _, err := l.ec2.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: aws.String(l.rtbC),
		DestinationCidrBlock: aws.String("0.0.0.0/0"), VpcEndpointId: aws.String(l.vpceC)}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, l.fabric, "SetRoute "+l.rtbC+" 0.0.0.0/0 vpce="+l.vpceC+" via=10.0.12.5")
	out, err := l.ec2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{Filters: []types.Filter{
		{Name: aws.String("route.gateway-id"), Values: []string{l.vpceC}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.RouteTables) != 1 || aws.ToString(out.RouteTables[0].RouteTableId) != l.rtbC {
		t.Fatalf("route.gateway-id=%s matched %d route tables, want only %s", l.vpceC, len(out.RouteTables), l.rtbC)
	}

	// Errors as AWS gives them, and no fabric call.
	l.fabric.Reset(nil)
	_, err = l.ec2.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{RouteTableId: aws.String(l.rtbA),
		DestinationCidrBlock: aws.String("0.0.0.0/0"), VpcEndpointId: aws.String("vpce-0123456789abcdef0")})
	wantCode(t, err, "InvalidVpcEndpointId.NotFound", "vpce-0123456789abcdef0")
	_, err = l.ec2.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: aws.String(l.rtbA),
		DestinationCidrBlock: aws.String("203.0.113.0/24"), VpcEndpointId: aws.String(l.vpceA), NetworkInterfaceId: aws.String(l.natAENI)})
	wantCode(t, err, "InvalidParameterCombination")
	_, err = l.ec2.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: aws.String(l.rtbA),
		DestinationCidrBlock: aws.String("203.0.113.0/24"), GatewayId: aws.String(l.vpceA)})
	wantCode(t, err, "InvalidParameterValue", "VpcEndpointId")
	wantCalls(t, l.fabric)
	if r, _ := l.route(t, l.rtbA, "0.0.0.0/0"); aws.ToString(r.GatewayId) != l.vpceA {
		t.Fatalf("a refused ReplaceRoute changed the route: %+v", r)
	}
}

func TestDescribeVpcEndpoints(t *testing.T) {
	l := newGWLBLab(t)
	ctx := context.Background()
	out, err := l.ec2.DescribeVpcEndpoints(ctx, &ec2.DescribeVpcEndpointsInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.VpcEndpoints) != 2 {
		t.Fatalf("%d endpoints, want 2", len(out.VpcEndpoints))
	}
	e := out.VpcEndpoints[0]
	if aws.ToString(e.VpcEndpointId) != l.vpceA || e.VpcEndpointType != types.VpcEndpointTypeGatewayLoadBalancer ||
		aws.ToString(e.ServiceName) != l.service || e.State != "available" /* what AWS sends; the SDK enum says Available */ || aws.ToString(e.VpcId) != l.vpc ||
		!slices.Equal(e.SubnetIds, []string{l.privA}) || !slices.Equal(e.NetworkInterfaceIds, []string{l.vpceAENI}) ||
		e.CreationTimestamp == nil {
		t.Fatalf("endpoint A: id %s type %s service %s state %s vpc %s subnets %v enis %v created %v; want %s %s %s %s %s", aws.ToString(e.VpcEndpointId), e.VpcEndpointType,
			aws.ToString(e.ServiceName), e.State, aws.ToString(e.VpcId), e.SubnetIds, e.NetworkInterfaceIds, e.CreationTimestamp, l.vpceA, l.service, l.vpc, l.privA, l.vpceAENI)
	}
	if len(l.vpceA) != len("vpce-")+17 || !strings.HasPrefix(l.vpceA, "vpce-0") {
		t.Fatalf("endpoint id %q: want vpce-0 and 16 hex digits (fits GENEVE's 8-byte option)", l.vpceA)
	}
	out, err = l.ec2.DescribeVpcEndpoints(ctx, &ec2.DescribeVpcEndpointsInput{Filters: []types.Filter{
		{Name: aws.String("vpc-endpoint-type"), Values: []string{"GatewayLoadBalancer"}},
		{Name: aws.String("vpc-endpoint-id"), Values: []string{l.vpceC}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.VpcEndpoints) != 1 || aws.ToString(out.VpcEndpoints[0].VpcEndpointId) != l.vpceC {
		t.Fatalf("filtered by id %s: %+v", l.vpceC, out.VpcEndpoints)
	}
	out, err = l.ec2.DescribeVpcEndpoints(ctx, &ec2.DescribeVpcEndpointsInput{Filters: []types.Filter{
		{Name: aws.String("vpc-endpoint-type"), Values: []string{"Interface"}}}})
	if err != nil || len(out.VpcEndpoints) != 0 {
		t.Fatalf("type Interface: %v, %d endpoints, want none", err, len(out.VpcEndpoints))
	}
	_, err = l.ec2.DescribeVpcEndpoints(ctx, &ec2.DescribeVpcEndpointsInput{VpcEndpointIds: []string{"vpce-0000000000000000f"}})
	wantCode(t, err, "InvalidVpcEndpointId.NotFound")
	_, err = l.ec2.DescribeVpcEndpoints(ctx, &ec2.DescribeVpcEndpointsInput{Filters: []types.Filter{
		{Name: aws.String("no-such-filter"), Values: []string{"x"}}}})
	wantCode(t, err, "InvalidParameterValue")
}

func TestDescribeGWLBNetworkInterfaces(t *testing.T) {
	l := newGWLBLab(t)
	ctx := context.Background()
	id := l.arn[strings.LastIndex(l.arn, "/")+1:]
	desc := "ELB gwy/hanat-gwlb/" + id
	out, err := l.ec2.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{Filters: []types.Filter{
		{Name: aws.String("description"), Values: []string{desc}}}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range out.NetworkInterfaces {
		got = append(got, aws.ToString(e.NetworkInterfaceId))
		if e.InterfaceType != types.NetworkInterfaceTypeGatewayLoadBalancer || !aws.ToBool(e.RequesterManaged) ||
			aws.ToString(e.Description) != desc || e.Status != types.NetworkInterfaceStatusInUse || e.Attachment == nil ||
			aws.ToString(e.Attachment.InstanceId) != "" {
			t.Fatalf("GWLB ENI: %+v", e)
		}
	}
	if !slices.Equal(got, l.gwlbENIs) {
		t.Fatalf("description %q matched %v, want the GWLB's ENIs %v", desc, got, l.gwlbENIs)
	}
	if ip := aws.ToString(out.NetworkInterfaces[1].PrivateIpAddress); ip != "10.0.2.5" {
		t.Fatalf("AZ c's GWLB ENI has %s, want 10.0.2.5", ip)
	}
	// A wildcard on the description, as a fleet member finds its GWLB's
	// addresses without knowing the id.
	out, err = l.ec2.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{Filters: []types.Filter{
		{Name: aws.String("description"), Values: []string{"ELB gwy/*"}},
		{Name: aws.String("availability-zone"), Values: []string{"us-sim-1a"}}}})
	if err != nil || len(out.NetworkInterfaces) != 1 || aws.ToString(out.NetworkInterfaces[0].NetworkInterfaceId) != l.gwlbENIs[0] {
		t.Fatalf("description ELB gwy/* in AZ a: %v %+v", err, out)
	}
	// requester-managed and interface-type filters; instances' ENIs stay plain.
	out, err = l.ec2.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{Filters: []types.Filter{
		{Name: aws.String("requester-managed"), Values: []string{"true"}},
		{Name: aws.String("interface-type"), Values: []string{"gateway_load_balancer_endpoint"}}}})
	if err != nil || len(out.NetworkInterfaces) != 2 || aws.ToString(out.NetworkInterfaces[0].NetworkInterfaceId) != l.vpceAENI {
		t.Fatalf("endpoint ENIs: %v %+v", err, out)
	}
	out, err = l.ec2.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{NetworkInterfaceIds: []string{l.natAENI}})
	if err != nil || out.NetworkInterfaces[0].InterfaceType != types.NetworkInterfaceTypeInterface || aws.ToBool(out.NetworkInterfaces[0].RequesterManaged) {
		t.Fatalf("nat-a's ENI: %v %+v", err, out)
	}
}

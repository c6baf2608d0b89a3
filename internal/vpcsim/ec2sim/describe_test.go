package ec2sim

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

func flt(name string, values ...string) types.Filter {
	return types.Filter{Name: aws.String(name), Values: values}
}

func tagValue(tags []types.Tag, key string) string {
	for _, t := range tags {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
}

func TestDescribeVpcsSubnetsIGWs(t *testing.T) {
	l := newTestLab(t)
	ctx := context.Background()

	vpcs, err := l.ec2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	if err != nil {
		t.Fatal(err)
	}
	if len(vpcs.Vpcs) != 1 || aws.ToString(vpcs.Vpcs[0].VpcId) != l.vpc || aws.ToString(vpcs.Vpcs[0].CidrBlock) != "10.0.0.0/16" ||
		vpcs.Vpcs[0].State != types.VpcStateAvailable || tagValue(vpcs.Vpcs[0].Tags, "Name") != "hanat-sim" ||
		len(vpcs.Vpcs[0].CidrBlockAssociationSet) != 1 || aws.ToString(vpcs.Vpcs[0].OwnerId) != DefaultAccountID {
		t.Fatalf("DescribeVpcs = %+v", vpcs.Vpcs)
	}
	_, err = l.ec2.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{VpcIds: []string{"vpc-0000000000000000f"}})
	wantCode(t, err, "InvalidVpcID.NotFound", "vpc-0000000000000000f")

	subnets, err := l.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: []types.Filter{flt("availability-zone", "us-sim-1a")}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range subnets.Subnets {
		got = append(got, aws.ToString(s.CidrBlock)+"@"+aws.ToString(s.AvailabilityZone)+"="+tagValue(s.Tags, "Name"))
	}
	if want := []string{"10.0.1.0/24@us-sim-1a=public-a", "10.0.11.0/24@us-sim-1a=private-a"}; !slices.Equal(got, want) {
		t.Fatalf("subnets in AZ a = %v, want %v", got, want)
	}
	one, err := l.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: []string{l.privC}})
	if err != nil || len(one.Subnets) != 1 || aws.ToString(one.Subnets[0].VpcId) != l.vpc ||
		aws.ToInt32(one.Subnets[0].AvailableIpAddressCount) != 251 {
		t.Fatalf("DescribeSubnets(%s) = %+v, %v", l.privC, one, err)
	}
	byTag, err := l.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{Filters: []types.Filter{flt("tag:Name", "private-*"), flt("vpc-id", l.vpc)}})
	if err != nil || len(byTag.Subnets) != 2 {
		t.Fatalf("subnets tag:Name=private-* = %+v, %v", byTag, err)
	}
	_, err = l.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{SubnetIds: []string{"subnet-0123456789abcdef0"}})
	wantCode(t, err, "InvalidSubnetID.NotFound")

	igws, err := l.ec2.DescribeInternetGateways(ctx, &ec2.DescribeInternetGatewaysInput{Filters: []types.Filter{flt("attachment.vpc-id", l.vpc)}})
	if err != nil || len(igws.InternetGateways) != 1 || aws.ToString(igws.InternetGateways[0].InternetGatewayId) != l.igw ||
		len(igws.InternetGateways[0].Attachments) != 1 || aws.ToString(igws.InternetGateways[0].Attachments[0].VpcId) != l.vpc ||
		igws.InternetGateways[0].Attachments[0].State != types.AttachmentStatus("available") {
		t.Fatalf("DescribeInternetGateways = %+v, %v", igws, err)
	}
	none, err := l.ec2.DescribeInternetGateways(ctx, &ec2.DescribeInternetGatewaysInput{Filters: []types.Filter{flt("attachment.vpc-id", "vpc-other")}})
	if err != nil || len(none.InternetGateways) != 0 {
		t.Fatalf("IGWs of another VPC = %+v, %v", none, err)
	}
	_, err = l.ec2.DescribeInternetGateways(ctx, &ec2.DescribeInternetGatewaysInput{InternetGatewayIds: []string{"igw-0123456789abcdef0"}})
	wantCode(t, err, "InvalidInternetGatewayID.NotFound")
}

func TestDescribeInstances(t *testing.T) {
	l := newTestLab(t)
	ctx := context.Background()
	out, err := l.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{l.natA}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Reservations) != 1 || len(out.Reservations[0].Instances) != 1 {
		t.Fatalf("reservations = %+v", out.Reservations)
	}
	in := out.Reservations[0].Instances[0]
	if aws.ToString(in.InstanceId) != l.natA || in.State.Name != types.InstanceStateNameRunning || aws.ToInt32(in.State.Code) != 16 ||
		aws.ToString(in.PrivateIpAddress) != "10.0.1.10" || aws.ToString(in.PublicIpAddress) != "198.51.100.10" ||
		aws.ToString(in.SubnetId) != l.pubA || aws.ToString(in.VpcId) != l.vpc || !aws.ToBool(in.SourceDestCheck) ||
		aws.ToString(in.Placement.AvailabilityZone) != "us-sim-1a" || tagValue(in.Tags, "Name") != "nat-a" || in.LaunchTime == nil {
		t.Fatalf("instance = %+v", in)
	}
	if len(in.NetworkInterfaces) != 1 {
		t.Fatalf("ENIs = %+v", in.NetworkInterfaces)
	}
	e := in.NetworkInterfaces[0]
	if aws.ToString(e.NetworkInterfaceId) != l.natAENI || aws.ToString(e.MacAddress) != "02:00:0a:00:01:0a" ||
		aws.ToInt32(e.Attachment.DeviceIndex) != 0 || aws.ToString(e.Association.PublicIp) != "198.51.100.10" ||
		len(e.PrivateIpAddresses) != 1 || !aws.ToBool(e.PrivateIpAddresses[0].Primary) {
		t.Fatalf("ENI = %+v", e)
	}

	for _, tc := range []struct {
		name string
		f    []types.Filter
		want []string
	}{
		{"tag", []types.Filter{flt("tag:Name", "nat-*")}, []string{l.natA, l.natC}},
		{"subnet", []types.Filter{flt("subnet-id", l.privA)}, []string{l.appA}},
		{"state", []types.Filter{flt("instance-state-name", "running"), flt("availability-zone", "us-sim-1c")}, []string{l.natC}},
		{"eni", []types.Filter{flt("network-interface.network-interface-id", l.multiENI1)}, []string{l.multi}},
		{"private ip", []types.Filter{flt("private-ip-address", "10.0.11.10")}, []string{l.appA}},
		{"any ip", []types.Filter{flt("network-interface.addresses.private-ip-address", "10.0.1.21")}, []string{l.multi}},
		{"no match", []types.Filter{flt("vpc-id", "vpc-nope")}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := l.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: tc.f})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range out.Reservations {
				for _, in := range r.Instances {
					got = append(got, aws.ToString(in.InstanceId))
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	_, err = l.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{"i-0123456789abcdef0"}})
	wantCode(t, err, "InvalidInstanceID.NotFound", "i-0123456789abcdef0")
	_, err = l.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{flt("bogus", "x")}})
	wantCode(t, err, "InvalidParameterValue", "bogus")

	// Stopped instances: state shows, routes to their ENI become blackholes.
	if err := l.m.SetInstanceState(l.natA, InstanceStopped); err != nil {
		t.Fatal(err)
	}
	out, err = l.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{Filters: []types.Filter{flt("instance-state-name", "stopped")}})
	if err != nil || len(out.Reservations) != 1 || out.Reservations[0].Instances[0].State.Name != types.InstanceStateNameStopped {
		t.Fatalf("stopped instances = %+v, %v", out, err)
	}
	rt, err := l.ec2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{RouteTableIds: []string{l.rtbA}})
	if err != nil || rt.RouteTables[0].Routes[1].State != types.RouteStateBlackhole {
		t.Fatalf("route to a stopped NAT = %+v, %v", rt, err)
	}
}

func TestDescribeNetworkInterfaces(t *testing.T) {
	l := newTestLab(t)
	ctx := context.Background()
	out, err := l.ec2.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{NetworkInterfaceIds: []string{l.natAENI}})
	if err != nil || len(out.NetworkInterfaces) != 1 {
		t.Fatalf("DescribeNetworkInterfaces = %+v, %v", out, err)
	}
	e := out.NetworkInterfaces[0]
	if aws.ToString(e.NetworkInterfaceId) != l.natAENI || aws.ToString(e.SubnetId) != l.pubA || aws.ToString(e.VpcId) != l.vpc ||
		aws.ToString(e.AvailabilityZone) != "us-sim-1a" || aws.ToString(e.MacAddress) != "02:00:0a:00:01:0a" ||
		aws.ToString(e.PrivateIpAddress) != "10.0.1.10" || !aws.ToBool(e.SourceDestCheck) || e.Status != types.NetworkInterfaceStatusInUse ||
		aws.ToString(e.Attachment.InstanceId) != l.natA || aws.ToInt32(e.Attachment.DeviceIndex) != 0 ||
		aws.ToString(e.Association.PublicIp) != "198.51.100.10" || aws.ToString(e.Association.AllocationId) != l.eipA ||
		aws.ToString(e.Association.AssociationId) != l.eipAAssoc {
		t.Fatalf("ENI = %+v", e)
	}
	if len(e.PrivateIpAddresses) != 1 || !aws.ToBool(e.PrivateIpAddresses[0].Primary) ||
		aws.ToString(e.PrivateIpAddresses[0].Association.PublicIp) != "198.51.100.10" ||
		aws.ToString(e.PrivateIpAddresses[0].Association.AllocationId) != l.eipA {
		t.Fatalf("ENI private IPs = %+v", e.PrivateIpAddresses)
	}

	multi, err := l.ec2.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{NetworkInterfaceIds: []string{l.multiENI0}})
	if err != nil {
		t.Fatal(err)
	}
	ips := multi.NetworkInterfaces[0].PrivateIpAddresses
	if len(ips) != 2 || aws.ToString(ips[0].PrivateIpAddress) != "10.0.1.20" || !aws.ToBool(ips[0].Primary) ||
		aws.ToString(ips[1].PrivateIpAddress) != "10.0.1.21" || aws.ToBool(ips[1].Primary) || ips[1].Association != nil {
		t.Fatalf("multi ENI private IPs = %+v", ips)
	}

	for _, tc := range []struct {
		name string
		f    []types.Filter
		want []string
	}{
		{"network-interface-id", []types.Filter{flt("network-interface-id", l.appAENI, l.natCENI)}, []string{l.natCENI, l.appAENI}},
		{"attachment.instance-id", []types.Filter{flt("attachment.instance-id", l.multi)}, []string{l.multiENI1, l.multiENI0}},
		{"subnet-id", []types.Filter{flt("subnet-id", l.privA)}, []string{l.appAENI, l.multiENI1}},
		{"vpc-id", []types.Filter{flt("vpc-id", l.vpc), flt("attachment.device-index", "1")}, []string{l.multiENI1}},
		{"addresses.private-ip-address", []types.Filter{flt("addresses.private-ip-address", "10.0.1.21")}, []string{l.multiENI0}},
		{"mac-address", []types.Filter{flt("mac-address", "02:00:0a:00:0b:14")}, []string{l.multiENI1}},
		{"association.public-ip", []types.Filter{flt("association.public-ip", "198.51.100.20")}, []string{l.natCENI}},
		{"source-dest-check", []types.Filter{flt("source-dest-check", "false")}, nil},
		{"tag-key none", []types.Filter{flt("tag-key", "Name")}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := l.ec2.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{Filters: tc.f})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range out.NetworkInterfaces {
				got = append(got, aws.ToString(e.NetworkInterfaceId))
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	_, err = l.ec2.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{NetworkInterfaceIds: []string{"eni-0123456789abcdef0"}})
	wantCode(t, err, "InvalidNetworkInterfaceID.NotFound")
}

func routeTableIDs(rts []types.RouteTable) []string {
	var out []string
	for _, rt := range rts {
		out = append(out, aws.ToString(rt.RouteTableId))
	}
	return out
}

func TestDescribeRouteTablesFilters(t *testing.T) {
	l := newTestLab(t)
	ctx := context.Background()

	out, err := l.ec2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{RouteTableIds: []string{l.rtbA}})
	if err != nil || len(out.RouteTables) != 1 {
		t.Fatalf("DescribeRouteTables = %+v, %v", out, err)
	}
	rt := out.RouteTables[0]
	if aws.ToString(rt.VpcId) != l.vpc || aws.ToString(rt.OwnerId) != DefaultAccountID || tagValue(rt.Tags, "Name") != "private-a" {
		t.Fatalf("route table = %+v", rt)
	}
	if len(rt.Routes) != 2 {
		t.Fatalf("routes = %+v", rt.Routes)
	}
	local, def := rt.Routes[0], rt.Routes[1]
	if aws.ToString(local.DestinationCidrBlock) != "10.0.0.0/16" || aws.ToString(local.GatewayId) != "local" ||
		local.State != types.RouteStateActive || local.Origin != types.RouteOriginCreateRouteTable {
		t.Fatalf("local route = %+v", local)
	}
	if aws.ToString(def.DestinationCidrBlock) != "0.0.0.0/0" || aws.ToString(def.NetworkInterfaceId) != l.natAENI ||
		aws.ToString(def.InstanceId) != l.natA || def.State != types.RouteStateActive || def.Origin != types.RouteOriginCreateRoute ||
		def.GatewayId != nil {
		t.Fatalf("default route = %+v", def)
	}
	if len(rt.Associations) != 1 || aws.ToString(rt.Associations[0].SubnetId) != l.privA || aws.ToBool(rt.Associations[0].Main) ||
		aws.ToString(rt.Associations[0].RouteTableId) != l.rtbA || rt.Associations[0].AssociationState.State != types.RouteTableAssociationStateCodeAssociated ||
		!strings.HasPrefix(aws.ToString(rt.Associations[0].RouteTableAssociationId), "rtbassoc-") {
		t.Fatalf("associations = %+v", rt.Associations)
	}

	for _, tc := range []struct {
		name string
		f    []types.Filter
		want []string
	}{
		{"route-table-id", []types.Filter{flt("route-table-id", l.rtbC, l.rtbPub)}, []string{l.rtbPub, l.rtbC}},
		{"vpc-id", []types.Filter{flt("vpc-id", l.vpc)}, []string{l.rtbMain, l.rtbPub, l.rtbA, l.rtbC}},
		{"vpc-id other", []types.Filter{flt("vpc-id", "vpc-0123456789abcdef0")}, nil},
		{"association.subnet-id", []types.Filter{flt("association.subnet-id", l.privC)}, []string{l.rtbC}},
		{"association.subnet-id public", []types.Filter{flt("association.subnet-id", l.pubC)}, []string{l.rtbPub}},
		{"association.main true", []types.Filter{flt("association.main", "true")}, []string{l.rtbMain}},
		{"association.main false", []types.Filter{flt("association.main", "false")}, []string{l.rtbPub, l.rtbA, l.rtbC}},
		{"route.destination-cidr-block", []types.Filter{flt("route.destination-cidr-block", "0.0.0.0/0")}, []string{l.rtbPub, l.rtbA}},
		{"route.network-interface-id", []types.Filter{flt("route.network-interface-id", l.natAENI)}, []string{l.rtbA}},
		{"route.gateway-id", []types.Filter{flt("route.gateway-id", l.igw)}, []string{l.rtbPub}},
		{"tag:Name", []types.Filter{flt("tag:Name", "private-a", "private-c")}, []string{l.rtbA, l.rtbC}},
		{"tag:Name wildcard", []types.Filter{flt("tag:Name", "private-?")}, []string{l.rtbA, l.rtbC}},
		{"tag-key", []types.Filter{flt("tag-key", "hanat:group")}, []string{l.rtbA, l.rtbC}},
		{"tag-value", []types.Filter{flt("tag-value", "c")}, []string{l.rtbC}},
		{"and", []types.Filter{flt("tag-key", "hanat:group"), flt("route.destination-cidr-block", "0.0.0.0/0")}, []string{l.rtbA}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := l.ec2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{Filters: tc.f})
			if err != nil {
				t.Fatal(err)
			}
			if got := routeTableIDs(out.RouteTables); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}

	main, err := l.ec2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{RouteTableIds: []string{l.rtbMain}})
	if err != nil || len(main.RouteTables[0].Associations) != 1 || !aws.ToBool(main.RouteTables[0].Associations[0].Main) ||
		main.RouteTables[0].Associations[0].SubnetId != nil {
		t.Fatalf("main route table = %+v, %v", main, err)
	}

	_, err = l.ec2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{RouteTableIds: []string{"rtb-0123456789abcdef0"}})
	wantCode(t, err, "InvalidRouteTableID.NotFound", "rtb-0123456789abcdef0")
	_, err = l.ec2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{Filters: []types.Filter{flt("route.nope", "x")}})
	wantCode(t, err, "InvalidParameterValue", "route.nope")
}

func TestDescribeRouteTablesPagination(t *testing.T) {
	l := newTestLab(t)
	ctx := context.Background()
	want := []string{l.rtbMain, l.rtbPub, l.rtbA, l.rtbC}
	for i := range 9 {
		want = append(want, l.m.AddRouteTable(l.vpc, false, map[string]string{"n": string(rune('a' + i))}))
	}
	var got []string
	pages := 0
	pager := ec2.NewDescribeRouteTablesPaginator(l.ec2, &ec2.DescribeRouteTablesInput{MaxResults: aws.Int32(5)})
	for pager.HasMorePages() && pages < 10 {
		out, err := pager.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(out.RouteTables) > 5 {
			t.Fatalf("page of %d > MaxResults 5", len(out.RouteTables))
		}
		got = append(got, routeTableIDs(out.RouteTables)...)
		pages++
	}
	if pages != 3 || !slices.Equal(got, want) {
		t.Fatalf("%d pages: got %v, want %v", pages, got, want)
	}

	// Pagination applies after filtering.
	first, err := l.ec2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{MaxResults: aws.Int32(5), Filters: []types.Filter{flt("tag-key", "n")}})
	if err != nil || len(first.RouteTables) != 5 || first.NextToken == nil {
		t.Fatalf("first filtered page = %+v, %v", first, err)
	}
	second, err := l.ec2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{MaxResults: aws.Int32(5), NextToken: first.NextToken,
		Filters: []types.Filter{flt("tag-key", "n")}})
	if err != nil || len(second.RouteTables) != 4 || second.NextToken != nil {
		t.Fatalf("second filtered page = %+v, %v", second, err)
	}

	_, err = l.ec2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{MaxResults: aws.Int32(4)})
	wantCode(t, err, "InvalidParameterValue", "maxResults")
	_, err = l.ec2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{MaxResults: aws.Int32(101)})
	wantCode(t, err, "InvalidParameterValue", "maxResults")
	_, err = l.ec2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{NextToken: aws.String("garbage")})
	wantCode(t, err, "InvalidParameterValue", "nextToken")
	// A token of another call is refused too.
	subnets, err := l.ec2.DescribeSubnets(ctx, &ec2.DescribeSubnetsInput{MaxResults: aws.Int32(5)})
	if err != nil {
		t.Fatal(err)
	}
	if subnets.NextToken != nil {
		t.Fatalf("4 subnets with MaxResults 5 gave a NextToken")
	}
	tagPage, err := l.ec2.DescribeTags(ctx, &ec2.DescribeTagsInput{MaxResults: aws.Int32(5)})
	if err != nil || tagPage.NextToken == nil {
		t.Fatalf("DescribeTags page = %+v, %v", tagPage, err)
	}
	_, err = l.ec2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{NextToken: tagPage.NextToken})
	wantCode(t, err, "InvalidParameterValue", "nextToken")
}

func TestDescribeAddressesAndTags(t *testing.T) {
	l := newTestLab(t)
	ctx := context.Background()
	out, err := l.ec2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{})
	if err != nil || len(out.Addresses) != 3 {
		t.Fatalf("DescribeAddresses = %+v, %v", out, err)
	}
	a := out.Addresses[0]
	if aws.ToString(a.AllocationId) != l.eipA || aws.ToString(a.PublicIp) != "198.51.100.10" || a.Domain != types.DomainTypeVpc ||
		aws.ToString(a.AssociationId) != l.eipAAssoc || aws.ToString(a.NetworkInterfaceId) != l.natAENI ||
		aws.ToString(a.InstanceId) != l.natA || aws.ToString(a.PrivateIpAddress) != "10.0.1.10" {
		t.Fatalf("address = %+v", a)
	}
	if s := out.Addresses[2]; aws.ToString(s.AllocationId) != l.eipSpare || s.AssociationId != nil || s.NetworkInterfaceId != nil {
		t.Fatalf("spare address = %+v", s)
	}
	byENI, err := l.ec2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{Filters: []types.Filter{flt("network-interface-id", l.natCENI)}})
	if err != nil || len(byENI.Addresses) != 1 || aws.ToString(byENI.Addresses[0].AllocationId) != l.eipC {
		t.Fatalf("addresses of nat-c = %+v, %v", byENI, err)
	}
	byIP, err := l.ec2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{PublicIps: []string{"203.0.113.5"}})
	if err != nil || len(byIP.Addresses) != 1 || aws.ToString(byIP.Addresses[0].AllocationId) != l.eipSpare {
		t.Fatalf("address 203.0.113.5 = %+v, %v", byIP, err)
	}
	_, err = l.ec2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{AllocationIds: []string{"eipalloc-0123456789abcdef0"}})
	wantCode(t, err, "InvalidAllocationID.NotFound")
	_, err = l.ec2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{PublicIps: []string{"192.0.2.1"}})
	wantCode(t, err, "InvalidAddress.NotFound")

	// CreateTags on several kinds, then DescribeTags with filters.
	_, err = l.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{l.natAENI, l.eipA, l.rtbA},
		Tags: []types.Tag{{Key: aws.String("hanat:owner"), Value: aws.String("nat-a")}, {Key: aws.String("empty"), Value: aws.String("")}}})
	if err != nil {
		t.Fatal(err)
	}
	tags, err := l.ec2.DescribeTags(ctx, &ec2.DescribeTagsInput{Filters: []types.Filter{flt("key", "hanat:owner")}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range tags.Tags {
		got = append(got, string(d.ResourceType)+" "+aws.ToString(d.ResourceId)+" "+aws.ToString(d.Value))
	}
	if want := []string{"network-interface " + l.natAENI + " nat-a", "route-table " + l.rtbA + " nat-a", "elastic-ip " + l.eipA + " nat-a"}; !slices.Equal(got, want) {
		t.Fatalf("DescribeTags key=hanat:owner = %v, want %v", got, want)
	}
	tags, err = l.ec2.DescribeTags(ctx, &ec2.DescribeTagsInput{Filters: []types.Filter{flt("resource-id", l.rtbA)}})
	if err != nil || len(tags.Tags) != 4 { // Name, empty, hanat:group, hanat:owner
		t.Fatalf("tags of %s = %+v, %v", l.rtbA, tags, err)
	}
	tags, err = l.ec2.DescribeTags(ctx, &ec2.DescribeTagsInput{Filters: []types.Filter{flt("resource-type", "instance"), flt("value", "nat-?")}})
	if err != nil || len(tags.Tags) != 2 {
		t.Fatalf("instance tags nat-? = %+v, %v", tags, err)
	}
	eni, err := l.ec2.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{Filters: []types.Filter{flt("tag:hanat:owner", "nat-a")}})
	if err != nil || len(eni.NetworkInterfaces) != 1 || tagValue(eni.NetworkInterfaces[0].TagSet, "hanat:owner") != "nat-a" {
		t.Fatalf("ENIs tagged = %+v, %v", eni, err)
	}

	_, err = l.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{"rtb-0123456789abcdef0"}, Tags: []types.Tag{{Key: aws.String("k")}}})
	wantCode(t, err, "InvalidRouteTableID.NotFound")
	_, err = l.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: []string{l.rtbA}, Tags: []types.Tag{{Key: aws.String("aws:x")}}})
	wantCode(t, err, "InvalidParameterValue")
	wantRaw(t, l.rawCall(t, "Action", "CreateTags", "ResourceId.1", l.rtbA), http.StatusBadRequest, "MissingParameter")
	wantRaw(t, l.rawCall(t, "Action", "CreateTags", "Tag.1.Key", "k"), http.StatusBadRequest, "MissingParameter")
}

func TestSnapshotJSON(t *testing.T) {
	l := newTestLab(t)
	s := l.m.Snapshot()
	if len(s.VPCs) != 1 || len(s.Subnets) != 4 || len(s.RouteTables) != 4 || len(s.Instances) != 4 ||
		len(s.NetworkInterfaces) != 5 || len(s.Addresses) != 3 || len(s.InternetGateways) != 1 {
		t.Fatalf("snapshot counts: %+v", s)
	}
	if r := s.RouteTables[2].Routes[1]; r.NetworkInterfaceID != l.natAENI || r.NextHop != l.natAIP || r.InstanceID != l.natA {
		t.Fatalf("private-a default route in snapshot = %+v", r)
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var back Snapshot
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.RouteTables[2].Routes[1].NextHop != l.natAIP || back.Addresses[0].PublicIP != l.pubIPA || back.NetworkInterfaces[0].MAC != "02:00:0a:00:01:0a" {
		t.Fatalf("snapshot JSON round trip lost data: %s", b)
	}
	// The multi-ENI instance lists its ENIs by device index.
	if ids := s.Instances[3].NetworkInterfaceIDs; !slices.Equal(ids, []string{l.multiENI0, l.multiENI1}) {
		t.Fatalf("multi ENIs = %v", ids)
	}
	if id, ok := l.m.InstanceByPrivateIP(l.multiIP1); !ok || id != l.multi {
		t.Fatalf("InstanceByPrivateIP(%s) = %q %v", l.multiIP1, id, ok)
	}
	if _, ok := l.m.InstanceByPrivateIP(l.pubIPA); ok {
		t.Fatal("a public IP identified an instance")
	}
}

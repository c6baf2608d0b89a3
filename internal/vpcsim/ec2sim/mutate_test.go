package ec2sim

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

func wantCalls(t *testing.T, f *recordingFabric, want ...string) {
	t.Helper()
	if got := f.Calls(); !slices.Equal(got, want) {
		t.Fatalf("fabric calls:\n got %q\nwant %q", got, want)
	}
}

func (l *testLab) route(t *testing.T, rtbID, dst string) (types.Route, bool) {
	t.Helper()
	out, err := l.ec2.DescribeRouteTables(context.Background(), &ec2.DescribeRouteTablesInput{RouteTableIds: []string{rtbID}})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range out.RouteTables[0].Routes {
		if aws.ToString(r.DestinationCidrBlock) == dst {
			return r, true
		}
	}
	return types.Route{}, false
}

func TestRoutes(t *testing.T) {
	l := newTestLab(t)
	ctx := context.Background()

	// ReplaceRoute re-points private-a's default route at nat-c.
	_, err := l.ec2.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{RouteTableId: aws.String(l.rtbA),
		DestinationCidrBlock: aws.String("0.0.0.0/0"), NetworkInterfaceId: aws.String(l.natCENI)})
	if err != nil {
		t.Fatal(err)
	}
	wantCalls(t, l.fabric, "SetRoute "+l.rtbA+" 0.0.0.0/0 gw= eni="+l.natCENI+" via=10.0.2.10")
	if r, _ := l.route(t, l.rtbA, "0.0.0.0/0"); aws.ToString(r.NetworkInterfaceId) != l.natCENI || aws.ToString(r.InstanceId) != l.natC {
		t.Fatalf("after ReplaceRoute: %+v", r)
	}

	// CreateRoute with InstanceId resolves to the instance's ENI.
	l.fabric.Reset(nil)
	_, err = l.ec2.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: aws.String(l.rtbC),
		DestinationCidrBlock: aws.String("0.0.0.0/0"), InstanceId: aws.String(l.natC)})
	if err != nil {
		t.Fatal(err)
	}
	wantCalls(t, l.fabric, "SetRoute "+l.rtbC+" 0.0.0.0/0 gw= eni="+l.natCENI+" via=10.0.2.10")
	if r, ok := l.route(t, l.rtbC, "0.0.0.0/0"); !ok || aws.ToString(r.NetworkInterfaceId) != l.natCENI || r.Origin != types.RouteOriginCreateRoute {
		t.Fatalf("after CreateRoute: %+v", r)
	}
	// CreateRoute with a gateway.
	l.fabric.Reset(nil)
	_, err = l.ec2.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: aws.String(l.rtbMain),
		DestinationCidrBlock: aws.String("192.0.2.0/24"), GatewayId: aws.String(l.igw)})
	if err != nil {
		t.Fatal(err)
	}
	wantCalls(t, l.fabric, "SetRoute "+l.rtbMain+" 192.0.2.0/24 gw="+l.igw+" eni= via=invalid IP")

	// DeleteRoute.
	l.fabric.Reset(nil)
	if _, err := l.ec2.DeleteRoute(ctx, &ec2.DeleteRouteInput{RouteTableId: aws.String(l.rtbMain), DestinationCidrBlock: aws.String("192.0.2.0/24")}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, l.fabric, "DeleteRoute "+l.rtbMain+" 192.0.2.0/24")
	if _, ok := l.route(t, l.rtbMain, "192.0.2.0/24"); ok {
		t.Fatal("route still there after DeleteRoute")
	}

	// Errors, none of which may reach the fabric.
	l.fabric.Reset(nil)
	for _, tc := range []struct {
		name string
		call func() error
		code string
		msg  string
	}{
		{"create existing", func() error {
			_, err := l.ec2.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: aws.String(l.rtbA), DestinationCidrBlock: aws.String("0.0.0.0/0"), NetworkInterfaceId: aws.String(l.natAENI)})
			return err
		}, "RouteAlreadyExists", "0.0.0.0/0"},
		{"create local dup", func() error {
			_, err := l.ec2.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: aws.String(l.rtbA), DestinationCidrBlock: aws.String("10.0.0.0/16"), NetworkInterfaceId: aws.String(l.natAENI)})
			return err
		}, "RouteAlreadyExists", ""},
		{"replace missing", func() error {
			_, err := l.ec2.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{RouteTableId: aws.String(l.rtbMain), DestinationCidrBlock: aws.String("0.0.0.0/0"), NetworkInterfaceId: aws.String(l.natAENI)})
			return err
		}, "InvalidParameterValue", "There is no route defined for '0.0.0.0/0' in the route table. Use CreateRoute instead."},
		{"delete missing", func() error {
			_, err := l.ec2.DeleteRoute(ctx, &ec2.DeleteRouteInput{RouteTableId: aws.String(l.rtbMain), DestinationCidrBlock: aws.String("0.0.0.0/0")})
			return err
		}, "InvalidRoute.NotFound", l.rtbMain},
		{"delete local", func() error {
			_, err := l.ec2.DeleteRoute(ctx, &ec2.DeleteRouteInput{RouteTableId: aws.String(l.rtbMain), DestinationCidrBlock: aws.String("10.0.0.0/16")})
			return err
		}, "InvalidParameterValue", "local route"},
		{"unknown table", func() error {
			_, err := l.ec2.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{RouteTableId: aws.String("rtb-0123456789abcdef0"), DestinationCidrBlock: aws.String("0.0.0.0/0"), NetworkInterfaceId: aws.String(l.natAENI)})
			return err
		}, "InvalidRouteTableID.NotFound", "rtb-0123456789abcdef0"},
		{"unknown ENI", func() error {
			_, err := l.ec2.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{RouteTableId: aws.String(l.rtbA), DestinationCidrBlock: aws.String("0.0.0.0/0"), NetworkInterfaceId: aws.String("eni-0123456789abcdef0")})
			return err
		}, "InvalidNetworkInterfaceID.NotFound", ""},
		{"unknown instance", func() error {
			_, err := l.ec2.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{RouteTableId: aws.String(l.rtbA), DestinationCidrBlock: aws.String("0.0.0.0/0"), InstanceId: aws.String("i-0123456789abcdef0")})
			return err
		}, "InvalidInstanceID.NotFound", ""},
		{"multi-ENI instance", func() error {
			_, err := l.ec2.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{RouteTableId: aws.String(l.rtbA), DestinationCidrBlock: aws.String("0.0.0.0/0"), InstanceId: aws.String(l.multi)})
			return err
		}, "InvalidInstanceID", "multiple interfaces"},
		{"unknown gateway", func() error {
			_, err := l.ec2.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: aws.String(l.rtbA), DestinationCidrBlock: aws.String("192.0.2.0/24"), GatewayId: aws.String("igw-0123456789abcdef0")})
			return err
		}, "InvalidGatewayID.NotFound", ""},
		{"bad CIDR", func() error {
			_, err := l.ec2.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: aws.String(l.rtbA), DestinationCidrBlock: aws.String("10.0.0.300/8"), GatewayId: aws.String(l.igw)})
			return err
		}, "InvalidParameterValue", "10.0.0.300/8"},
		{"no target", func() error {
			_, err := l.ec2.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: aws.String(l.rtbA), DestinationCidrBlock: aws.String("192.0.2.0/24")})
			return err
		}, "MissingParameter", ""},
		{"two targets", func() error {
			_, err := l.ec2.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: aws.String(l.rtbA), DestinationCidrBlock: aws.String("192.0.2.0/24"), GatewayId: aws.String(l.igw), NetworkInterfaceId: aws.String(l.natAENI)})
			return err
		}, "InvalidParameterCombination", ""},
		{"unsupported target", func() error {
			_, err := l.ec2.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: aws.String(l.rtbA), DestinationCidrBlock: aws.String("192.0.2.0/24"), NatGatewayId: aws.String("nat-0123")})
			return err
		}, "InvalidParameterValue", "NatGatewayId"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if tc.msg != "" {
				wantCode(t, err, tc.code, tc.msg)
			} else {
				wantCode(t, err, tc.code)
			}
		})
	}
	wantCalls(t, l.fabric)

	// Missing parameters the SDK itself would refuse to send.
	wantRaw(t, l.rawCall(t, "Action", "CreateRoute", "DestinationCidrBlock", "0.0.0.0/0", "GatewayId", l.igw), http.StatusBadRequest, "MissingParameter")
	wantRaw(t, l.rawCall(t, "Action", "ReplaceRoute", "RouteTableId", l.rtbA, "GatewayId", l.igw), http.StatusBadRequest, "MissingParameter")
	wantRaw(t, l.rawCall(t, "Action", "DeleteRoute", "RouteTableId", l.rtbA, "DestinationCidrBlock", "0.0.0.0/0"), http.StatusOK, "")
	wantCalls(t, l.fabric, "DeleteRoute "+l.rtbA+" 0.0.0.0/0")
}

func TestSourceDestCheck(t *testing.T) {
	l := newTestLab(t)
	ctx := context.Background()
	_, err := l.ec2.ModifyNetworkInterfaceAttribute(ctx, &ec2.ModifyNetworkInterfaceAttributeInput{
		NetworkInterfaceId: aws.String(l.natAENI), SourceDestCheck: &types.AttributeBooleanValue{Value: aws.Bool(false)}})
	if err != nil {
		t.Fatal(err)
	}
	wantCalls(t, l.fabric, "SetSourceDestCheck "+l.natAENI+" false")
	eni, err := l.ec2.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{Filters: []types.Filter{flt("source-dest-check", "false")}})
	if err != nil || len(eni.NetworkInterfaces) != 1 || aws.ToString(eni.NetworkInterfaces[0].NetworkInterfaceId) != l.natAENI ||
		aws.ToBool(eni.NetworkInterfaces[0].SourceDestCheck) {
		t.Fatalf("after disabling: %+v, %v", eni, err)
	}
	inst, err := l.ec2.DescribeInstances(ctx, &ec2.DescribeInstancesInput{InstanceIds: []string{l.natA}})
	if err != nil || aws.ToBool(inst.Reservations[0].Instances[0].SourceDestCheck) || aws.ToBool(inst.Reservations[0].Instances[0].NetworkInterfaces[0].SourceDestCheck) {
		t.Fatalf("instance view after disabling: %+v, %v", inst, err)
	}

	// ModifyInstanceAttribute on a single-ENI instance acts on that ENI.
	l.fabric.Reset(nil)
	_, err = l.ec2.ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{InstanceId: aws.String(l.natC),
		SourceDestCheck: &types.AttributeBooleanValue{Value: aws.Bool(false)}})
	if err != nil {
		t.Fatal(err)
	}
	// The Attribute/Value form too.
	_, err = l.ec2.ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{InstanceId: aws.String(l.natC),
		Attribute: types.InstanceAttributeNameSourceDestCheck, Value: aws.String("true")})
	if err != nil {
		t.Fatal(err)
	}
	wantCalls(t, l.fabric, "SetSourceDestCheck "+l.natCENI+" false", "SetSourceDestCheck "+l.natCENI+" true")

	l.fabric.Reset(nil)
	_, err = l.ec2.ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{InstanceId: aws.String(l.multi),
		SourceDestCheck: &types.AttributeBooleanValue{Value: aws.Bool(false)}})
	wantCode(t, err, "InvalidInstanceID", "There are multiple interfaces attached to instance '"+l.multi+"'")
	_, err = l.ec2.ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{InstanceId: aws.String("i-0123456789abcdef0"),
		SourceDestCheck: &types.AttributeBooleanValue{Value: aws.Bool(false)}})
	wantCode(t, err, "InvalidInstanceID.NotFound")
	_, err = l.ec2.ModifyNetworkInterfaceAttribute(ctx, &ec2.ModifyNetworkInterfaceAttributeInput{
		NetworkInterfaceId: aws.String("eni-0123456789abcdef0"), SourceDestCheck: &types.AttributeBooleanValue{Value: aws.Bool(false)}})
	wantCode(t, err, "InvalidNetworkInterfaceID.NotFound")
	wantRaw(t, l.rawCall(t, "Action", "ModifyNetworkInterfaceAttribute", "NetworkInterfaceId", l.natAENI), http.StatusBadRequest, "MissingParameter")
	wantRaw(t, l.rawCall(t, "Action", "ModifyNetworkInterfaceAttribute", "NetworkInterfaceId", l.natAENI, "SourceDestCheck.Value", "maybe"),
		http.StatusBadRequest, "InvalidParameterValue")
	wantCalls(t, l.fabric)
}

func TestAddresses(t *testing.T) {
	l := newTestLab(t)
	ctx := context.Background()

	// Moving nat-a's EIP to nat-c needs AllowReassociation.
	_, err := l.ec2.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: aws.String(l.eipA), NetworkInterfaceId: aws.String(l.appAENI)})
	wantCode(t, err, "Resource.AlreadyAssociated", l.eipA)
	wantCalls(t, l.fabric)

	// The spare EIP onto nat-c, which already has one: the old one is
	// disassociated (AWS semantics), the IGW re-mapped.
	out, err := l.ec2.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: aws.String(l.eipSpare), InstanceId: aws.String(l.natC)})
	if err != nil {
		t.Fatal(err)
	}
	wantCalls(t, l.fabric, "UnmapPublicIP 198.51.100.20", "MapPublicIP 203.0.113.5 10.0.2.10")
	addrs, err := l.ec2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{AllocationIds: []string{l.eipC, l.eipSpare}})
	if err != nil || addrs.Addresses[0].AssociationId != nil ||
		aws.ToString(addrs.Addresses[1].AssociationId) != aws.ToString(out.AssociationId) || aws.ToString(addrs.Addresses[1].InstanceId) != l.natC {
		t.Fatalf("after associating the spare EIP: %+v, %v", addrs, err)
	}

	// Reassociation moves an EIP from nat-a to app-a's ENI.
	l.fabric.Reset(nil)
	out, err = l.ec2.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: aws.String(l.eipA), NetworkInterfaceId: aws.String(l.appAENI),
		AllowReassociation: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	wantCalls(t, l.fabric, "MapPublicIP 198.51.100.10 10.0.11.10")
	eni, err := l.ec2.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{NetworkInterfaceIds: []string{l.natAENI, l.appAENI}})
	if err != nil || eni.NetworkInterfaces[0].Association != nil || aws.ToString(eni.NetworkInterfaces[1].Association.PublicIp) != "198.51.100.10" ||
		aws.ToString(eni.NetworkInterfaces[1].Association.AssociationId) != aws.ToString(out.AssociationId) {
		t.Fatalf("ENIs after reassociation: %+v, %v", eni, err)
	}

	// Association to a secondary private IP.
	l.fabric.Reset(nil)
	_, err = l.ec2.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: aws.String(l.eipC), NetworkInterfaceId: aws.String(l.multiENI0),
		PrivateIpAddress: aws.String("10.0.1.21")})
	if err != nil {
		t.Fatal(err)
	}
	wantCalls(t, l.fabric, "MapPublicIP 198.51.100.20 10.0.1.21")
	_, err = l.ec2.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: aws.String(l.eipC), NetworkInterfaceId: aws.String(l.multiENI0),
		PrivateIpAddress: aws.String("10.0.1.99"), AllowReassociation: aws.Bool(true)})
	wantCode(t, err, "InvalidParameterValue", "10.0.1.99")

	// Disassociate.
	l.fabric.Reset(nil)
	_, err = l.ec2.DisassociateAddress(ctx, &ec2.DisassociateAddressInput{AssociationId: out.AssociationId})
	if err != nil {
		t.Fatal(err)
	}
	wantCalls(t, l.fabric, "UnmapPublicIP 198.51.100.10")
	_, err = l.ec2.DisassociateAddress(ctx, &ec2.DisassociateAddressInput{AssociationId: out.AssociationId})
	wantCode(t, err, "InvalidAssociationID.NotFound")

	l.fabric.Reset(nil)
	_, err = l.ec2.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: aws.String("eipalloc-0123456789abcdef0"), NetworkInterfaceId: aws.String(l.natAENI)})
	wantCode(t, err, "InvalidAllocationID.NotFound")
	_, err = l.ec2.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: aws.String(l.eipA), NetworkInterfaceId: aws.String("eni-0123456789abcdef0")})
	wantCode(t, err, "InvalidNetworkInterfaceID.NotFound")
	_, err = l.ec2.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: aws.String(l.eipA), InstanceId: aws.String(l.multi)})
	wantCode(t, err, "InvalidInstanceID", "multiple interfaces")
	wantRaw(t, l.rawCall(t, "Action", "AssociateAddress", "AllocationId", l.eipA), http.StatusBadRequest, "MissingParameter")
	wantCalls(t, l.fabric)
}

func TestPrivateIPs(t *testing.T) {
	l := newTestLab(t)
	ctx := context.Background()
	floating := "10.0.1.50"

	out, err := l.ec2.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{NetworkInterfaceId: aws.String(l.natAENI),
		PrivateIpAddresses: []string{floating}})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(out.NetworkInterfaceId) != l.natAENI || len(out.AssignedPrivateIpAddresses) != 1 ||
		aws.ToString(out.AssignedPrivateIpAddresses[0].PrivateIpAddress) != floating {
		t.Fatalf("AssignPrivateIpAddresses = %+v", out)
	}
	wantCalls(t, l.fabric, "AddPrivateIP "+l.natAENI+" "+floating)
	// An EIP on the floating IP.
	if _, err := l.ec2.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: aws.String(l.eipSpare),
		NetworkInterfaceId: aws.String(l.natAENI), PrivateIpAddress: aws.String(floating)}); err != nil {
		t.Fatal(err)
	}

	// Another ENI (same subnet) may take it only with AllowReassignment.
	l.fabric.Reset(nil)
	_, err = l.ec2.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{NetworkInterfaceId: aws.String(l.multiENI0),
		PrivateIpAddresses: []string{floating}})
	wantCode(t, err, "PrivateIpAddressInUse", floating)
	wantCalls(t, l.fabric)
	_, err = l.ec2.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{NetworkInterfaceId: aws.String(l.multiENI0),
		PrivateIpAddresses: []string{floating}, AllowReassignment: aws.Bool(true)})
	if err != nil {
		t.Fatal(err)
	}
	wantCalls(t, l.fabric, "RemovePrivateIP "+l.natAENI+" "+floating, "AddPrivateIP "+l.multiENI0+" "+floating)
	enis, err := l.ec2.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{Filters: []types.Filter{flt("addresses.private-ip-address", floating)}})
	if err != nil || len(enis.NetworkInterfaces) != 1 || aws.ToString(enis.NetworkInterfaces[0].NetworkInterfaceId) != l.multiENI0 {
		t.Fatalf("owner of %s: %+v, %v", floating, enis, err)
	}
	// The EIP moved with the address.
	addr, err := l.ec2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{AllocationIds: []string{l.eipSpare}})
	if err != nil || aws.ToString(addr.Addresses[0].NetworkInterfaceId) != l.multiENI0 || aws.ToString(addr.Addresses[0].PrivateIpAddress) != floating {
		t.Fatalf("EIP on the moved address: %+v, %v", addr, err)
	}

	// Count-based assignment picks free addresses of the subnet.
	l.fabric.Reset(nil)
	out, err = l.ec2.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{NetworkInterfaceId: aws.String(l.natCENI),
		SecondaryPrivateIpAddressCount: aws.Int32(2)})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.AssignedPrivateIpAddresses) != 2 || aws.ToString(out.AssignedPrivateIpAddresses[0].PrivateIpAddress) != "10.0.2.4" {
		t.Fatalf("count assignment = %+v", out.AssignedPrivateIpAddresses)
	}
	wantCalls(t, l.fabric, "AddPrivateIP "+l.natCENI+" 10.0.2.4", "AddPrivateIP "+l.natCENI+" 10.0.2.5")

	// Unassign: the EIP on it is disassociated, the address removed.
	l.fabric.Reset(nil)
	if _, err := l.ec2.UnassignPrivateIpAddresses(ctx, &ec2.UnassignPrivateIpAddressesInput{NetworkInterfaceId: aws.String(l.multiENI0),
		PrivateIpAddresses: []string{floating}}); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, l.fabric, "UnmapPublicIP 203.0.113.5", "RemovePrivateIP "+l.multiENI0+" "+floating)
	addr, err = l.ec2.DescribeAddresses(ctx, &ec2.DescribeAddressesInput{AllocationIds: []string{l.eipSpare}})
	if err != nil || addr.Addresses[0].AssociationId != nil {
		t.Fatalf("EIP after unassigning its address: %+v, %v", addr, err)
	}

	l.fabric.Reset(nil)
	for _, tc := range []struct {
		name string
		call func() error
		code string
	}{
		{"outside subnet", func() error {
			_, err := l.ec2.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{NetworkInterfaceId: aws.String(l.natAENI), PrivateIpAddresses: []string{"10.0.2.50"}})
			return err
		}, "InvalidParameterValue"},
		{"reserved", func() error {
			_, err := l.ec2.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{NetworkInterfaceId: aws.String(l.natAENI), PrivateIpAddresses: []string{"10.0.1.1"}})
			return err
		}, "InvalidParameterValue"},
		{"another's primary", func() error {
			_, err := l.ec2.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{NetworkInterfaceId: aws.String(l.natAENI), PrivateIpAddresses: []string{"10.0.1.20"}, AllowReassignment: aws.Bool(true)})
			return err
		}, "PrivateIpAddressInUse"},
		{"unknown ENI", func() error {
			_, err := l.ec2.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{NetworkInterfaceId: aws.String("eni-0123456789abcdef0"), SecondaryPrivateIpAddressCount: aws.Int32(1)})
			return err
		}, "InvalidNetworkInterfaceID.NotFound"},
		{"both forms", func() error {
			_, err := l.ec2.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{NetworkInterfaceId: aws.String(l.natAENI), PrivateIpAddresses: []string{"10.0.1.60"}, SecondaryPrivateIpAddressCount: aws.Int32(1)})
			return err
		}, "InvalidParameterCombination"},
		{"neither form", func() error {
			_, err := l.ec2.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{NetworkInterfaceId: aws.String(l.natAENI)})
			return err
		}, "MissingParameter"},
		{"unassign primary", func() error {
			_, err := l.ec2.UnassignPrivateIpAddresses(ctx, &ec2.UnassignPrivateIpAddressesInput{NetworkInterfaceId: aws.String(l.natAENI), PrivateIpAddresses: []string{"10.0.1.10"}})
			return err
		}, "InvalidParameterValue"},
		{"unassign foreign", func() error {
			_, err := l.ec2.UnassignPrivateIpAddresses(ctx, &ec2.UnassignPrivateIpAddressesInput{NetworkInterfaceId: aws.String(l.natAENI), PrivateIpAddresses: []string{"10.0.1.21"}})
			return err
		}, "InvalidParameterValue"},
	} {
		t.Run(tc.name, func(t *testing.T) { wantCode(t, tc.call(), tc.code) })
	}
	wantCalls(t, l.fabric)
}

// TestFabricFailureLeavesModelUnchanged: when the network refuses a change,
// the action fails with InternalError and the model is exactly as before
// (multi-step changes are rolled back on the network too).
func TestFabricFailureLeavesModelUnchanged(t *testing.T) {
	l := newTestLab(t)
	ctx := context.Background()
	c := l.client(t, testCreds, 1) // one attempt: InternalError is retryable
	boom := errors.New("netlink: operation not permitted")

	// Prepare a secondary IP on nat-a that the reassignment case moves.
	if _, err := l.ec2.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{NetworkInterfaceId: aws.String(l.natAENI),
		PrivateIpAddresses: []string{"10.0.1.50"}}); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name      string
		fail      string
		call      func() error
		wantCalls []string
	}{
		{"ReplaceRoute", "SetRoute", func() error {
			_, err := c.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{RouteTableId: aws.String(l.rtbA), DestinationCidrBlock: aws.String("0.0.0.0/0"), NetworkInterfaceId: aws.String(l.natCENI)})
			return err
		}, []string{"SetRoute " + l.rtbA + " 0.0.0.0/0 gw= eni=" + l.natCENI + " via=10.0.2.10"}},
		{"CreateRoute", "SetRoute", func() error {
			_, err := c.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: aws.String(l.rtbC), DestinationCidrBlock: aws.String("0.0.0.0/0"), NetworkInterfaceId: aws.String(l.natCENI)})
			return err
		}, []string{"SetRoute " + l.rtbC + " 0.0.0.0/0 gw= eni=" + l.natCENI + " via=10.0.2.10"}},
		{"DeleteRoute", "DeleteRoute", func() error {
			_, err := c.DeleteRoute(ctx, &ec2.DeleteRouteInput{RouteTableId: aws.String(l.rtbA), DestinationCidrBlock: aws.String("0.0.0.0/0")})
			return err
		}, []string{"DeleteRoute " + l.rtbA + " 0.0.0.0/0"}},
		{"ModifyNetworkInterfaceAttribute", "SetSourceDestCheck", func() error {
			_, err := c.ModifyNetworkInterfaceAttribute(ctx, &ec2.ModifyNetworkInterfaceAttributeInput{NetworkInterfaceId: aws.String(l.natAENI), SourceDestCheck: &types.AttributeBooleanValue{Value: aws.Bool(false)}})
			return err
		}, []string{"SetSourceDestCheck " + l.natAENI + " false"}},
		{"AssociateAddress replacing", "MapPublicIP 203.0.113.5", func() error {
			_, err := c.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: aws.String(l.eipSpare), NetworkInterfaceId: aws.String(l.natAENI)})
			return err
		}, []string{"UnmapPublicIP 198.51.100.10", "MapPublicIP 203.0.113.5 10.0.1.10", "MapPublicIP 198.51.100.10 10.0.1.10"}},
		{"AssociateAddress moving", "MapPublicIP", func() error {
			_, err := c.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: aws.String(l.eipA), NetworkInterfaceId: aws.String(l.appAENI), AllowReassociation: aws.Bool(true)})
			return err
		}, []string{"MapPublicIP 198.51.100.10 10.0.11.10"}},
		{"DisassociateAddress", "UnmapPublicIP", func() error {
			_, err := c.DisassociateAddress(ctx, &ec2.DisassociateAddressInput{AssociationId: aws.String(l.eipAAssoc)})
			return err
		}, []string{"UnmapPublicIP 198.51.100.10"}},
		{"AssignPrivateIpAddresses reassign", "AddPrivateIP " + l.multiENI0, func() error {
			_, err := c.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{NetworkInterfaceId: aws.String(l.multiENI0), PrivateIpAddresses: []string{"10.0.1.50"}, AllowReassignment: aws.Bool(true)})
			return err
		}, []string{"RemovePrivateIP " + l.natAENI + " 10.0.1.50", "AddPrivateIP " + l.multiENI0 + " 10.0.1.50", "AddPrivateIP " + l.natAENI + " 10.0.1.50"}},
		{"UnassignPrivateIpAddresses", "RemovePrivateIP", func() error {
			_, err := c.UnassignPrivateIpAddresses(ctx, &ec2.UnassignPrivateIpAddressesInput{NetworkInterfaceId: aws.String(l.natAENI), PrivateIpAddresses: []string{"10.0.1.50"}})
			return err
		}, []string{"RemovePrivateIP " + l.natAENI + " 10.0.1.50"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := l.m.Snapshot()
			l.fabric.Reset(map[string]error{tc.fail: boom})
			wantCode(t, tc.call(), "InternalError", boom.Error())
			if got := l.fabric.Calls(); !slices.Equal(got, tc.wantCalls) {
				t.Fatalf("fabric calls (with rollback):\n got %q\nwant %q", got, tc.wantCalls)
			}
			if after := l.m.Snapshot(); !reflect.DeepEqual(before, after) {
				t.Fatalf("model changed although the fabric failed:\nbefore %+v\nafter  %+v", before, after)
			}
		})
	}
	// And with a working fabric again, the same change goes through.
	l.fabric.Reset(nil)
	if _, err := c.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{RouteTableId: aws.String(l.rtbA), DestinationCidrBlock: aws.String("0.0.0.0/0"),
		NetworkInterfaceId: aws.String(l.natCENI)}); err != nil {
		t.Fatal(err)
	}
	if r, _ := l.route(t, l.rtbA, "0.0.0.0/0"); aws.ToString(r.NetworkInterfaceId) != l.natCENI {
		t.Fatalf("route after recovery: %+v", r)
	}
}

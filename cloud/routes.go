package cloud

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// DefaultDestination is the IPv4 default route hanat points at itself.
var DefaultDestination = netip.MustParsePrefix("0.0.0.0/0")

// Route states as DescribeRouteTables reports them.
const (
	RouteActive    = "active"
	RouteBlackhole = "blackhole"
)

// RouteTable is a VPC route table.
type RouteTable struct {
	ID    string `json:"id"`
	VPCID string `json:"vpc_id"`
	// Main: the VPC's main table, used by every subnet without an explicit
	// association.
	Main bool `json:"main,omitempty"`
	// SubnetIDs are the explicitly associated subnets.
	SubnetIDs []string `json:"subnet_ids,omitempty"`
	// ImplicitSubnetIDs are, for the main table, the VPC's subnets without
	// an explicit association (filled only where the VPC's subnets were
	// read: Facts and PrivateRouteTables).
	ImplicitSubnetIDs []string          `json:"implicit_subnet_ids,omitempty"`
	Tags              map[string]string `json:"tags,omitempty"`
	Routes            []Route           `json:"routes"`
}

// Route is one route of a route table.
type Route struct {
	Destination        netip.Prefix `json:"destination,omitzero"` // invalid for a prefix-list route
	PrefixListID       string       `json:"prefix_list_id,omitempty"`
	GatewayID          string       `json:"gateway_id,omitempty"` // igw-…, vgw-…, "local"
	NetworkInterfaceID string       `json:"network_interface_id,omitempty"`
	InstanceID         string       `json:"instance_id,omitempty"`
	NATGatewayID       string       `json:"nat_gateway_id,omitempty"`
	// OtherTarget is any other target (transit gateway, peering, VPC
	// endpoint, …).
	OtherTarget string `json:"other_target,omitempty"`
	State       string `json:"state"`  // active | blackhole
	Origin      string `json:"origin"` // CreateRouteTable | CreateRoute | EnableVgwRoutePropagation
}

// Target is where the route points: the ENI when there is one (a route to
// an instance also names its ENI), else the gateway or other target.
func (r Route) Target() string {
	for _, s := range []string{r.NetworkInterfaceID, r.GatewayID, r.NATGatewayID, r.InstanceID, r.OtherTarget} {
		if s != "" {
			return s
		}
	}
	return ""
}

// ToInternetGateway reports a route to an internet gateway.
func (r Route) ToInternetGateway() bool { return strings.HasPrefix(r.GatewayID, "igw-") }

// DefaultRoute returns the table's 0.0.0.0/0 route.
func (rt RouteTable) DefaultRoute() (Route, bool) {
	for _, r := range rt.Routes {
		if r.Destination == DefaultDestination {
			return r, true
		}
	}
	return Route{}, false
}

// Public reports whether the table routes 0.0.0.0/0 to an internet
// gateway (the seed's public subnets).
func (rt RouteTable) Public() bool {
	r, ok := rt.DefaultRoute()
	return ok && r.ToInternetGateway()
}

// AllSubnetIDs are the explicitly and implicitly associated subnets.
func (rt RouteTable) AllSubnetIDs() []string {
	return append(slices.Clone(rt.SubnetIDs), rt.ImplicitSubnetIDs...)
}

// RouteTableFilter selects route tables; empty fields do not filter, set
// ones must all match.
type RouteTableFilter struct {
	VPCID     string
	IDs       []string // an unknown ID is an InvalidRouteTableID.NotFound error
	SubnetIDs []string // explicitly associated with any of these
	// Tags: each key must be present with this value ("" = any value).
	Tags map[string]string
	// Main: only the VPC's main table.
	Main bool
}

func (f RouteTableFilter) input() *ec2.DescribeRouteTablesInput {
	in := &ec2.DescribeRouteTablesInput{RouteTableIds: f.IDs}
	add := func(name string, values ...string) {
		in.Filters = append(in.Filters, types.Filter{Name: aws.String(name), Values: values})
	}
	if f.VPCID != "" {
		add("vpc-id", f.VPCID)
	}
	if len(f.SubnetIDs) > 0 {
		add("association.subnet-id", f.SubnetIDs...)
	}
	if f.Main {
		add("association.main", "true")
	}
	keys := make([]string, 0, len(f.Tags))
	for k := range f.Tags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := f.Tags[k]
		if v == "" {
			v = "*"
		}
		add("tag:"+k, v)
	}
	return in
}

func (f RouteTableFilter) String() string {
	var parts []string
	if f.VPCID != "" {
		parts = append(parts, "vpc="+f.VPCID)
	}
	if len(f.IDs) > 0 {
		parts = append(parts, "ids="+strings.Join(f.IDs, ","))
	}
	if len(f.SubnetIDs) > 0 {
		parts = append(parts, "subnets="+strings.Join(f.SubnetIDs, ","))
	}
	if f.Main {
		parts = append(parts, "main")
	}
	for k, v := range f.Tags {
		parts = append(parts, "tag:"+k+"="+v)
	}
	if len(parts) == 0 {
		return "(all)"
	}
	slices.Sort(parts)
	return strings.Join(parts, " ")
}

// RouteTables lists the route tables matching f, following pagination.
func (c *EC2) RouteTables(ctx context.Context, f RouteTableFilter) ([]RouteTable, error) {
	in := f.input()
	if len(f.IDs) == 0 {
		in.MaxResults = aws.Int32(c.pageSize)
	}
	var out []RouteTable
	for page := 0; ; page++ {
		if page >= maxPages {
			return nil, fmt.Errorf("ec2 DescribeRouteTables %s: more than %d pages", f, maxPages)
		}
		var resp *ec2.DescribeRouteTablesOutput
		err := c.call(ctx, actDescribeRouteTables, f.String(), func(ctx context.Context) (err error) {
			resp, err = c.api.DescribeRouteTables(ctx, in)
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, t := range resp.RouteTables {
			out = append(out, routeTableFrom(t))
		}
		next := aws.ToString(resp.NextToken)
		if next == "" {
			return out, nil
		}
		in.NextToken = aws.String(next)
	}
}

// maxPages bounds every paginated listing (100 pages of 100 route tables
// is far beyond AWS's default quota of 200 tables per VPC).
const maxPages = 100

// RouteTable returns one route table by id.
func (c *EC2) RouteTable(ctx context.Context, rtbID string) (RouteTable, error) {
	if rtbID == "" {
		return RouteTable{}, errors.New("ec2 DescribeRouteTables: empty route table id")
	}
	rts, err := c.RouteTables(ctx, RouteTableFilter{IDs: []string{rtbID}})
	if err != nil {
		return RouteTable{}, err
	}
	if len(rts) != 1 {
		return RouteTable{}, fmt.Errorf("ec2 DescribeRouteTables %s: %d tables in the answer, want 1", rtbID, len(rts))
	}
	return rts[0], nil
}

// SubnetRouteTable returns the table a subnet uses, as AWS resolves it: its
// explicit association, else the VPC's main table.
func (c *EC2) SubnetRouteTable(ctx context.Context, vpcID, subnetID string) (RouteTable, error) {
	if vpcID == "" || subnetID == "" {
		return RouteTable{}, fmt.Errorf("ec2 DescribeRouteTables: subnet route table needs a VPC and a subnet id (got %q, %q)", vpcID, subnetID)
	}
	rts, err := c.RouteTables(ctx, RouteTableFilter{VPCID: vpcID, SubnetIDs: []string{subnetID}})
	if err != nil {
		return RouteTable{}, err
	}
	if len(rts) > 0 {
		return rts[0], nil
	}
	rts, err = c.RouteTables(ctx, RouteTableFilter{VPCID: vpcID, Main: true})
	if err != nil {
		return RouteTable{}, err
	}
	if len(rts) == 0 {
		return RouteTable{}, fmt.Errorf("ec2 DescribeRouteTables vpc=%s: subnet %s has no explicit route table and the VPC has no main table", vpcID, subnetID)
	}
	return rts[0], nil
}

// PrivateRouteTables returns the route tables used by the subnets of
// availability zone az in vpcID (explicitly, or the main table for subnets
// without an association) whose default route does not go to an internet
// gateway: the tables a NAT in az should serve. Tables without a default
// route are included (they are the ones still to point at a NAT).
func (c *EC2) PrivateRouteTables(ctx context.Context, vpcID, az string) ([]RouteTable, error) {
	if vpcID == "" || az == "" {
		return nil, fmt.Errorf("ec2 private route tables need a VPC and an availability zone (got %q, %q)", vpcID, az)
	}
	byAZ, err := c.PrivateRouteTablesByAZ(ctx, vpcID)
	if err != nil {
		return nil, err
	}
	return byAZ[az], nil
}

// PrivateRouteTablesByAZ is PrivateRouteTables for every availability
// zone of vpcID at once (two calls: DescribeSubnets, DescribeRouteTables).
// A table used by subnets of several zones (the main table) is listed
// under each.
func (c *EC2) PrivateRouteTablesByAZ(ctx context.Context, vpcID string) (map[string][]RouteTable, error) {
	if vpcID == "" {
		return nil, errors.New("ec2 private route tables need a VPC id")
	}
	subnets, err := c.Subnets(ctx, vpcID)
	if err != nil {
		return nil, err
	}
	rts, err := c.RouteTables(ctx, RouteTableFilter{VPCID: vpcID})
	if err != nil {
		return nil, err
	}
	fillImplicit(rts, subnets)
	azOf := map[string]string{}
	for _, s := range subnets {
		azOf[s.ID] = s.AZ
	}
	out := map[string][]RouteTable{}
	for _, rt := range rts {
		if rt.Public() {
			continue
		}
		seen := map[string]bool{}
		for _, id := range rt.AllSubnetIDs() {
			if az := azOf[id]; az != "" && !seen[az] {
				seen[az] = true
				out[az] = append(out[az], rt)
			}
		}
	}
	return out, nil
}

// fillImplicit records on the main table the subnets without an explicit
// association.
func fillImplicit(rts []RouteTable, subnets []Subnet) {
	explicit := map[string]bool{}
	for _, rt := range rts {
		for _, s := range rt.SubnetIDs {
			explicit[s] = true
		}
	}
	for i := range rts {
		if !rts[i].Main {
			continue
		}
		rts[i].ImplicitSubnetIDs = nil
		for _, s := range subnets {
			if !explicit[s.ID] && s.VPCID == rts[i].VPCID {
				rts[i].ImplicitSubnetIDs = append(rts[i].ImplicitSubnetIDs, s.ID)
			}
		}
	}
}

// EnsureDefaultRoute makes 0.0.0.0/0 in rtbID point at eniID: CreateRoute
// when the table has no default route, ReplaceRoute when it points
// elsewhere or is a blackhole, nothing when it already points at eniID.
// changed reports whether a mutating call was made.
func (c *EC2) EnsureDefaultRoute(ctx context.Context, rtbID, eniID string) (changed bool, err error) {
	if rtbID == "" || eniID == "" {
		return false, fmt.Errorf("ec2 ensure default route: empty route table or ENI id (%q, %q)", rtbID, eniID)
	}
	rt, err := c.RouteTable(ctx, rtbID)
	if err != nil {
		return false, err
	}
	cur, ok := rt.DefaultRoute()
	switch {
	case ok && cur.NetworkInterfaceID == eniID && cur.State != RouteBlackhole:
		return false, nil
	case ok:
		if err := c.replaceDefaultRoute(ctx, rtbID, eniID); err != nil {
			return false, err
		}
		c.log.Info("default route replaced", "route_table", rtbID, "from", cur.Target(), "from_state", cur.State, "to", eniID)
		return true, nil
	}
	err = c.call(ctx, actCreateRoute, fmt.Sprintf("%s %s -> %s", rtbID, DefaultDestination, eniID), func(ctx context.Context) error {
		_, err := c.api.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: aws.String(rtbID),
			DestinationCidrBlock: aws.String(DefaultDestination.String()), NetworkInterfaceId: aws.String(eniID)})
		return err
	})
	if ErrorCode(err) == "RouteAlreadyExists" {
		// Someone (the peer, an operator) created it since we looked.
		if err := c.replaceDefaultRoute(ctx, rtbID, eniID); err != nil {
			return false, err
		}
		c.log.Info("default route replaced (created concurrently)", "route_table", rtbID, "to", eniID)
		return true, nil
	}
	if err != nil {
		return false, err
	}
	c.log.Info("default route created", "route_table", rtbID, "to", eniID)
	return true, nil
}

// SetDefaultRoute points 0.0.0.0/0 in rtbID at eniID without describing
// the table first: ReplaceRoute when the caller believes the route exists,
// CreateRoute when it believes it missing. A wrong belief costs one more
// call: ReplaceRoute of a missing route ("There is no route defined …",
// InvalidParameterValue) is followed by EnsureDefaultRoute, CreateRoute of
// an existing one (RouteAlreadyExists) by ReplaceRoute. It is the
// failover path, one EC2 call where EnsureDefaultRoute makes two.
func (c *EC2) SetDefaultRoute(ctx context.Context, rtbID, eniID string, exists bool) error {
	if rtbID == "" || eniID == "" {
		return fmt.Errorf("ec2 set default route: empty route table or ENI id (%q, %q)", rtbID, eniID)
	}
	if exists {
		err := c.replaceDefaultRoute(ctx, rtbID, eniID)
		if ErrorCode(err) == "InvalidParameterValue" {
			c.log.Info("no default route to replace; describing and creating it", "route_table", rtbID, "to", eniID)
			_, err = c.EnsureDefaultRoute(ctx, rtbID, eniID)
			return err
		}
		if err == nil {
			c.log.Info("default route replaced", "route_table", rtbID, "to", eniID)
		}
		return err
	}
	err := c.call(ctx, actCreateRoute, fmt.Sprintf("%s %s -> %s", rtbID, DefaultDestination, eniID), func(ctx context.Context) error {
		_, err := c.api.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: aws.String(rtbID),
			DestinationCidrBlock: aws.String(DefaultDestination.String()), NetworkInterfaceId: aws.String(eniID)})
		return err
	})
	if ErrorCode(err) == "RouteAlreadyExists" {
		if err := c.replaceDefaultRoute(ctx, rtbID, eniID); err != nil {
			return err
		}
		c.log.Info("default route replaced (it existed after all)", "route_table", rtbID, "to", eniID)
		return nil
	}
	if err == nil {
		c.log.Info("default route created", "route_table", rtbID, "to", eniID)
	}
	return err
}

func (c *EC2) replaceDefaultRoute(ctx context.Context, rtbID, eniID string) error {
	return c.call(ctx, actReplaceRoute, fmt.Sprintf("%s %s -> %s", rtbID, DefaultDestination, eniID), func(ctx context.Context) error {
		_, err := c.api.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{RouteTableId: aws.String(rtbID),
			DestinationCidrBlock: aws.String(DefaultDestination.String()), NetworkInterfaceId: aws.String(eniID)})
		return err
	})
}

func routeTableFrom(t types.RouteTable) RouteTable {
	rt := RouteTable{ID: aws.ToString(t.RouteTableId), VPCID: aws.ToString(t.VpcId)}
	for _, a := range t.Associations {
		if s := a.AssociationState; s != nil && s.State != "" && s.State != types.RouteTableAssociationStateCodeAssociated {
			continue // associating, disassociating, failed
		}
		if aws.ToBool(a.Main) {
			rt.Main = true
		}
		if id := aws.ToString(a.SubnetId); id != "" {
			rt.SubnetIDs = append(rt.SubnetIDs, id)
		}
	}
	if len(t.Tags) > 0 {
		rt.Tags = map[string]string{}
		for _, tag := range t.Tags {
			rt.Tags[aws.ToString(tag.Key)] = aws.ToString(tag.Value)
		}
	}
	for _, r := range t.Routes {
		rt.Routes = append(rt.Routes, routeFrom(r))
	}
	return rt
}

func routeFrom(r types.Route) Route {
	out := Route{
		PrefixListID:       aws.ToString(r.DestinationPrefixListId),
		GatewayID:          aws.ToString(r.GatewayId),
		NetworkInterfaceID: aws.ToString(r.NetworkInterfaceId),
		InstanceID:         aws.ToString(r.InstanceId),
		NATGatewayID:       aws.ToString(r.NatGatewayId),
		State:              string(r.State),
		Origin:             string(r.Origin),
	}
	for _, s := range []*string{r.DestinationCidrBlock, r.DestinationIpv6CidrBlock} {
		if p, err := netip.ParsePrefix(aws.ToString(s)); err == nil {
			out.Destination = p.Masked()
			break
		}
	}
	for _, s := range []*string{r.TransitGatewayId, r.VpcPeeringConnectionId, r.EgressOnlyInternetGatewayId,
		r.LocalGatewayId, r.CarrierGatewayId, r.CoreNetworkArn, r.OdbNetworkArn} {
		if v := aws.ToString(s); v != "" {
			out.OtherTarget = v
			break
		}
	}
	return out
}

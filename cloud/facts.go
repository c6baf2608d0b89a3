package cloud

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// VPCFacts is what `hanatctl doctor` checks on the AWS side, gathered in
// one go. A call that fails (IAM refusing a Describe, say) leaves its part
// empty and says why in the matching *Err field and in Errors; the rest is
// still filled.
type VPCFacts struct {
	VPCID    string `json:"vpc_id"`
	SubnetID string `json:"subnet_id"`
	AZ       string `json:"availability_zone"` // the subnet's

	IGWAttached bool   `json:"igw_attached"`
	IGWID       string `json:"igw_id,omitempty"`
	IGWErr      string `json:"igw_error,omitempty"`

	// SubnetRouteTable is the table the NAT's subnet uses (explicit
	// association, else the main table).
	SubnetRouteTable RouteTable `json:"subnet_route_table"`
	// RouteTablesErr explains a missing SubnetRouteTable and
	// PrivateRouteTables.
	RouteTablesErr string `json:"route_tables_error,omitempty"`

	NATENI    ENIInfo `json:"nat_eni"`
	NATENIErr string  `json:"nat_eni_error,omitempty"`

	// PrivateRouteTables: every table in the VPC whose 0.0.0.0/0 does not
	// go to an internet gateway (or that has none), whatever its AZ.
	PrivateRouteTables []RouteTable `json:"private_route_tables"`

	Subnets    []Subnet `json:"subnets"`
	SubnetsErr string   `json:"subnets_error,omitempty"`

	// Errors: every partial failure, one line each.
	Errors []string `json:"errors,omitempty"`
}

// AZOf returns the availability zone of a subnet of the VPC ("" unknown).
func (f VPCFacts) AZOf(subnetID string) string {
	for _, s := range f.Subnets {
		if s.ID == subnetID {
			return s.AZ
		}
	}
	return ""
}

// AZsOf returns the availability zones of the subnets using rt
// (explicitly, or implicitly as the main table), sorted, without repeats.
func (f VPCFacts) AZsOf(rt RouteTable) []string {
	var azs []string
	for _, id := range rt.AllSubnetIDs() {
		if az := f.AZOf(id); az != "" && !slices.Contains(azs, az) {
			azs = append(azs, az)
		}
	}
	slices.Sort(azs)
	return azs
}

// Facts gathers, with four Describe calls made concurrently, what the
// doctor checklist needs about vpcID, the NAT's subnet and its ENI
// (subnetID and eniID may be empty to skip those parts). It returns an
// error only for a missing vpcID or when ctx ends; failed calls are
// reported in the facts.
func (c *EC2) Facts(ctx context.Context, vpcID, subnetID, eniID string) (VPCFacts, error) {
	f := VPCFacts{VPCID: vpcID, SubnetID: subnetID}
	if vpcID == "" {
		return f, errors.New("ec2 facts: empty VPC id")
	}
	var (
		wg                  sync.WaitGroup
		igwID               string
		rts                 []RouteTable
		igwErr, rtErr, sErr error
		eniErr              error
	)
	wg.Go(func() { igwID, igwErr = c.InternetGateway(ctx, vpcID) })
	wg.Go(func() { rts, rtErr = c.RouteTables(ctx, RouteTableFilter{VPCID: vpcID}) })
	wg.Go(func() { f.Subnets, sErr = c.Subnets(ctx, vpcID) })
	if eniID != "" {
		wg.Go(func() { f.NATENI, eniErr = c.ENI(ctx, eniID) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return f, fmt.Errorf("ec2 facts for %s: %w", vpcID, err)
	}
	fail := func(field *string, err error) {
		*field = err.Error()
		f.Errors = append(f.Errors, err.Error())
	}

	if igwErr != nil {
		fail(&f.IGWErr, igwErr)
	} else {
		f.IGWID, f.IGWAttached = igwID, igwID != ""
	}
	if sErr != nil {
		fail(&f.SubnetsErr, sErr)
	} else if subnetID != "" {
		if f.AZ = f.AZOf(subnetID); f.AZ == "" {
			fail(&f.SubnetsErr, fmt.Errorf("subnet %s is not in %s", subnetID, vpcID))
		}
	}
	if eniErr != nil {
		fail(&f.NATENIErr, eniErr)
	}
	if rtErr != nil {
		fail(&f.RouteTablesErr, rtErr)
		return f, nil
	}
	if sErr == nil {
		fillImplicit(rts, f.Subnets)
	}
	for _, rt := range rts {
		if !rt.Public() {
			f.PrivateRouteTables = append(f.PrivateRouteTables, rt)
		}
	}
	if subnetID != "" {
		if rt, ok := resolveSubnetTable(rts, subnetID); ok {
			f.SubnetRouteTable = rt
		} else {
			fail(&f.RouteTablesErr, fmt.Errorf("no route table for subnet %s: no explicit association and no main table in %s", subnetID, vpcID))
		}
	}
	return f, nil
}

// resolveSubnetTable picks a subnet's table as AWS does: explicit
// association first, else the main table.
func resolveSubnetTable(rts []RouteTable, subnetID string) (RouteTable, bool) {
	for _, rt := range rts {
		if slices.Contains(rt.SubnetIDs, subnetID) {
			return rt, true
		}
	}
	for _, rt := range rts {
		if rt.Main {
			return rt, true
		}
	}
	return RouteTable{}, false
}

package cloud

import (
	"context"
	"errors"
	"net/netip"
	"slices"
)

// RouteTableRoles are the private route tables a NAT node serves: Home
// (its own zone's) and Backup (its peer's, taken on failover).
type RouteTableRoles struct {
	Home, Backup []string
}

// DefaultRouteState is a route table's 0.0.0.0/0 as the HA loop sees it:
// its target (an ENI, a NAT gateway, …; empty when there is none) and
// whether it is a blackhole (the target is gone or stopped).
type DefaultRouteState struct {
	Target    string
	Blackhole bool
}

// DefaultRoutes describes the tables and returns each one's default
// route. One unknown id fails EC2's whole call, so then the tables are
// described one by one and the others still answered (an error only when
// none could be).
func (c *EC2) DefaultRoutes(ctx context.Context, ids []string) (map[string]DefaultRouteState, error) {
	rts, err := c.RouteTables(ctx, RouteTableFilter{IDs: ids})
	if err != nil && IsNotFound(err) {
		rts = nil
		var errs []error
		for _, id := range ids {
			rt, err := c.RouteTable(ctx, id)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			rts = append(rts, rt)
		}
		err = errors.Join(errs...)
		if len(rts) == 0 {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	out := make(map[string]DefaultRouteState, len(rts))
	for _, rt := range rts {
		var o DefaultRouteState
		if r, ok := rt.DefaultRoute(); ok {
			o.Target = r.Target()
			o.Blackhole = r.State == RouteBlackhole
		}
		out[rt.ID] = o
	}
	return out, nil
}

// EIPOn reports whether the Elastic IP allocationID is associated with
// the private IP privateIP of eniID (invalid: its primary).
func (c *EC2) EIPOn(ctx context.Context, allocationID, eniID string, privateIP netip.Addr) (bool, error) {
	info, err := c.ENI(ctx, eniID)
	if err != nil {
		return false, err
	}
	if !privateIP.IsValid() && len(info.PrivateIPs) > 0 {
		privateIP = info.PrivateIPs[0]
	}
	for _, a := range info.Associations {
		if a.AllocationID == allocationID && a.PrivateIP == privateIP {
			return true, nil
		}
	}
	return false, nil
}

// ClassifyRouteTables picks, from the private route tables of each
// availability zone, the ones this node should serve.
//
// Home: tables of its own zone az whose 0.0.0.0/0 points at this node, at
// its peer, at a stopped instance (blackhole) or nowhere. Tables routed
// to a NAT gateway, a transit gateway or another live instance are left
// alone.
//
// Backup: tables of other zones tagged "hanat" (the tag the IAM policy
// requires before hanat may write a route table) whose 0.0.0.0/0 points
// at the peer's ENI (when known), at this node (it took them before a
// restart) or at a stopped instance (blackhole).
// They are what a node starting while its peer is down needs: it cannot
// learn them from a heartbeat. A blackhole is safe to take: nothing
// live is served by it, and the engine takes one only while the peer is
// dead. Untagged tables, tables without a default route and tables
// pointing at other live targets are never backups (another AZ's isolated
// subnets, another NAT). Caveat: two hanat pairs in one VPC would see
// each other's blackholed tables; configure backup_route_tables there.
func ClassifyRouteTables(byAZ map[string][]RouteTable, az, eni, peerENI string) RouteTableRoles {
	var out RouteTableRoles
	home := map[string]bool{}
	for _, rt := range byAZ[az] {
		r, ok := rt.DefaultRoute()
		switch {
		case !ok, r.State == RouteBlackhole && r.NetworkInterfaceID != "",
			r.NetworkInterfaceID == eni, peerENI != "" && r.NetworkInterfaceID == peerENI:
			out.Home = append(out.Home, rt.ID)
			home[rt.ID] = true
		}
	}
	zones := make([]string, 0, len(byAZ))
	for z := range byAZ {
		zones = append(zones, z)
	}
	slices.Sort(zones)
	for _, z := range zones {
		if z == az {
			continue
		}
		for _, rt := range byAZ[z] {
			if _, tagged := rt.Tags["hanat"]; !tagged || home[rt.ID] || slices.Contains(out.Backup, rt.ID) {
				continue
			}
			r, ok := rt.DefaultRoute()
			switch {
			case !ok, r.NetworkInterfaceID == "":
			case r.State == RouteBlackhole, r.NetworkInterfaceID == eni, peerENI != "" && r.NetworkInterfaceID == peerENI:
				out.Backup = append(out.Backup, rt.ID)
			}
		}
	}
	return out
}

// DiscoverRouteTables reads the VPC's private route tables and classifies
// them for the node of ENI eni in zone az (ClassifyRouteTables).
func (c *EC2) DiscoverRouteTables(ctx context.Context, vpcID, az, eni, peerENI string) (RouteTableRoles, error) {
	byAZ, err := c.PrivateRouteTablesByAZ(ctx, vpcID)
	if err != nil {
		return RouteTableRoles{}, err
	}
	return ClassifyRouteTables(byAZ, az, eni, peerENI), nil
}

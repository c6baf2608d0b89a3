package ec2sim

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// step is one Fabric change of a mutation, with how to undo it.
type step struct {
	name string
	do   func(ctx context.Context) error
	undo func(ctx context.Context) error
}

// applySteps runs steps in order against the Fabric (model lock not held).
// On a failure it undoes the steps already done, in reverse, and returns an
// InternalError naming the failed step; the caller then leaves the model
// unchanged.
func (m *Model) applySteps(ctx context.Context, action string, steps []step) *APIError {
	for i, s := range steps {
		err := s.do(ctx)
		if err == nil {
			continue
		}
		m.log.Warn("ec2sim fabric step failed, rolling back", "action", action, "step", s.name, "err", err)
		for j := i - 1; j >= 0; j-- {
			if steps[j].undo == nil {
				continue
			}
			// Undo even when the request's context is gone: the network
			// must go back to what the model still says.
			if uerr := steps[j].undo(context.WithoutCancel(ctx)); uerr != nil {
				m.log.Error("ec2sim fabric rollback failed: model and network may disagree",
					"action", action, "step", steps[j].name, "err", uerr)
			}
		}
		return errInternal("An internal error has occurred (%s: %v)", s.name, err)
	}
	return nil
}

// unsupportedTargets are route targets this simulator has no such thing for.
var unsupportedTargets = []string{"NatGatewayId", "VpcPeeringConnectionId", "TransitGatewayId",
	"EgressOnlyInternetGatewayId", "LocalGatewayId", "CarrierGatewayId", "CoreNetworkArn", "OdbNetworkArn"}

// targetParams are the route targets a request names (at most one may be
// set).
type targetParams struct {
	gateway, eni, instance, endpoint string
}

// resolveTargetLocked checks a route target (exactly one of gateway, ENI,
// instance, GWLB endpoint) against route table t and returns it with
// NextHop filled. An instance resolves to its only ENI, an endpoint to its
// ENI's address.
func (m *Model) resolveTargetLocked(t *routeTable, tp targetParams) (RouteTarget, *APIError) {
	gatewayID, eniID, instanceID := tp.gateway, tp.eni, tp.instance
	n := 0
	for _, s := range []string{gatewayID, eniID, instanceID, tp.endpoint} {
		if s != "" {
			n++
		}
	}
	if n == 0 {
		return RouteTarget{}, apiErr(http.StatusBadRequest, "MissingParameter",
			"The request must contain exactly one of gatewayId, natGatewayId, networkInterfaceId, vpcPeeringConnectionId, egressOnlyInternetGatewayId, transitGatewayId, localGatewayId, carrierGatewayId, instanceId, vpcEndpointId or coreNetworkArn")
	}
	if n > 1 {
		return RouteTarget{}, errParamCombination("The parameter combination is not supported: specify exactly one route target")
	}
	if strings.HasPrefix(gatewayID, "vpce-") {
		// CreateRoute's GatewayId takes gateway endpoints only; a GWLB
		// endpoint must be given as VpcEndpointId.
		if m.vpces[gatewayID] == nil {
			return RouteTarget{}, errNotFound("InvalidGatewayID.NotFound", "gateway", gatewayID)
		}
		return RouteTarget{}, errInvalidParam("Route table %s: the Gateway Load Balancer endpoint %s must be given as VpcEndpointId, not GatewayId", t.id, gatewayID)
	}
	if gatewayID != "" {
		if gatewayID == "local" {
			return RouteTarget{GatewayID: "local"}, nil
		}
		g := m.igws[gatewayID]
		if g == nil {
			return RouteTarget{}, errNotFound("InvalidGatewayID.NotFound", "gateway", gatewayID)
		}
		if g.vpcID != t.vpcID {
			return RouteTarget{}, errInvalidParam("route table %s and network gateway %s belong to different networks", t.id, gatewayID)
		}
		return RouteTarget{GatewayID: gatewayID}, nil
	}
	if tp.endpoint != "" {
		return m.resolveEndpointLocked(t, tp.endpoint)
	}
	if instanceID != "" {
		e, aerr := m.instanceENILocked(instanceID)
		if aerr != nil {
			return RouteTarget{}, aerr
		}
		eniID = e.id
	}
	e := m.enis[eniID]
	if e == nil {
		return RouteTarget{}, errNotFound("InvalidNetworkInterfaceID.NotFound", "networkInterface", eniID)
	}
	if e.vpcID != t.vpcID {
		return RouteTarget{}, errInvalidParam("route table %s and interface %s belong to different networks", t.id, eniID)
	}
	return RouteTarget{NetworkInterfaceID: e.id, NextHop: e.primary}, nil
}

// resolveEndpointLocked resolves a VpcEndpointId route target.
func (m *Model) resolveEndpointLocked(t *routeTable, id string) (RouteTarget, *APIError) {
	v := m.vpces[id]
	if v == nil {
		return RouteTarget{}, errNotFound("InvalidVpcEndpointId.NotFound", "vpcEndpoint", id)
	}
	if v.vpcID != t.vpcID {
		return RouteTarget{}, errInvalidParam("route table %s and VPC endpoint %s belong to different networks", t.id, id)
	}
	return RouteTarget{VpcEndpointID: v.id, NextHop: m.enis[v.eniID].primary}, nil
}

// instanceENILocked returns the single ENI of an instance, failing as AWS
// does when it has several.
func (m *Model) instanceENILocked(instanceID string) (*eni, *APIError) {
	in := m.insts[instanceID]
	if in == nil {
		return nil, errNotFound("InvalidInstanceID.NotFound", "instance", instanceID)
	}
	switch len(in.enis) {
	case 0:
		return nil, apiErr(http.StatusBadRequest, "InvalidInstanceID", "There are no interfaces attached to instance '%s'.", instanceID)
	case 1:
		return m.enis[in.enis[0]], nil
	}
	return nil, errMultipleInterfaces(instanceID)
}

// routeRequest is the common part of CreateRoute / ReplaceRoute / DeleteRoute.
type routeRequest struct {
	rtbID string
	dst   netip.Prefix
}

func parseRouteRequest(p params) (routeRequest, *APIError) {
	rtbID, aerr := p.required("RouteTableId")
	if aerr != nil {
		return routeRequest{}, aerr
	}
	for _, k := range []string{"DestinationIpv6CidrBlock", "DestinationPrefixListId"} {
		if p.has(k) {
			return routeRequest{}, errInvalidParam("The simulator supports only IPv4 DestinationCidrBlock routes, not %s", k)
		}
	}
	v, aerr := p.required("DestinationCidrBlock")
	if aerr != nil {
		return routeRequest{}, aerr
	}
	dst, aerr := parsePrefixParam("destinationCidrBlock", v)
	if aerr != nil {
		return routeRequest{}, aerr
	}
	return routeRequest{rtbID: rtbID, dst: dst}, nil
}

func parseRouteTarget(p params) (targetParams, *APIError) {
	for _, k := range unsupportedTargets {
		if p.str(k) != "" {
			return targetParams{}, errInvalidParam("The simulator does not support route target %s", k)
		}
	}
	return targetParams{gateway: p.str("GatewayId"), eni: p.str("NetworkInterfaceId"), instance: p.str("InstanceId"),
		endpoint: p.str("VpcEndpointId")}, nil
}

func (m *Model) createRoute(ctx context.Context, p params) (response, *APIError) {
	rr, aerr := parseRouteRequest(p)
	if aerr != nil {
		return nil, aerr
	}
	tp, aerr := parseRouteTarget(p)
	if aerr != nil {
		return nil, aerr
	}
	m.mutMu.Lock()
	defer m.mutMu.Unlock()

	m.mu.RLock()
	target, aerr := m.checkRouteLocked(rr, tp)
	if aerr == nil && m.rtbs[rr.rtbID].route(rr.dst) >= 0 {
		aerr = apiErr(http.StatusBadRequest, "RouteAlreadyExists", "The route identified by %s already exists.", rr.dst)
	}
	m.mu.RUnlock()
	if aerr != nil {
		return nil, aerr
	}
	if target.GatewayID == "local" {
		return nil, errInvalidParam("Route target 'local' is only valid for the VPC's local route")
	}
	if aerr := m.applySteps(ctx, "CreateRoute", []step{{
		name: fmt.Sprintf("set route %s in %s", rr.dst, rr.rtbID),
		do:   func(ctx context.Context) error { return m.fabric.SetRoute(ctx, rr.rtbID, rr.dst, target) },
	}}); aerr != nil {
		return nil, aerr
	}
	m.mu.Lock()
	t := m.rtbs[rr.rtbID]
	t.routes = append(t.routes, route{dst: rr.dst, target: target, origin: "CreateRoute"})
	m.mu.Unlock()
	m.log.Info("ec2sim CreateRoute", "route_table", rr.rtbID, "dst", rr.dst, "target", targetString(target))
	return &returnResp{Return: true}, nil
}

func (m *Model) checkRouteLocked(rr routeRequest, tp targetParams) (RouteTarget, *APIError) {
	t := m.rtbs[rr.rtbID]
	if t == nil {
		return RouteTarget{}, errNotFound("InvalidRouteTableID.NotFound", "routeTable", rr.rtbID)
	}
	return m.resolveTargetLocked(t, tp)
}

func (m *Model) replaceRoute(ctx context.Context, p params) (response, *APIError) {
	rr, aerr := parseRouteRequest(p)
	if aerr != nil {
		return nil, aerr
	}
	tp, aerr := parseRouteTarget(p)
	if aerr != nil {
		return nil, aerr
	}
	localTarget, aerr := p.boolean("LocalTarget", false)
	if aerr != nil {
		return nil, aerr
	}
	if localTarget {
		if tp.gateway != "" && tp.gateway != "local" || tp.eni != "" || tp.instance != "" || tp.endpoint != "" {
			return nil, errParamCombination("LocalTarget cannot be combined with another route target")
		}
		tp.gateway = "local"
	}
	m.mutMu.Lock()
	defer m.mutMu.Unlock()

	m.mu.RLock()
	target, aerr := m.checkRouteLocked(rr, tp)
	idx := -1
	var old route
	if aerr == nil {
		t := m.rtbs[rr.rtbID]
		if idx = t.route(rr.dst); idx < 0 {
			aerr = errInvalidParam("There is no route defined for '%s' in the route table. Use CreateRoute instead.", rr.dst)
		} else {
			old = t.routes[idx]
		}
	}
	m.mu.RUnlock()
	if aerr != nil {
		return nil, aerr
	}
	if old.origin == "CreateRouteTable" && target.GatewayID != "local" {
		return nil, errInvalidParam("The simulator cannot replace the local route %s in route table %s", rr.dst, rr.rtbID)
	}
	if old.origin != "CreateRouteTable" && target.GatewayID == "local" {
		return nil, errInvalidParam("Route target 'local' is only valid for the VPC's local route")
	}
	if aerr := m.applySteps(ctx, "ReplaceRoute", []step{{
		name: fmt.Sprintf("set route %s in %s", rr.dst, rr.rtbID),
		do:   func(ctx context.Context) error { return m.fabric.SetRoute(ctx, rr.rtbID, rr.dst, target) },
	}}); aerr != nil {
		return nil, aerr
	}
	m.mu.Lock()
	t := m.rtbs[rr.rtbID]
	if i := t.route(rr.dst); i >= 0 {
		t.routes[i].target = target
	}
	m.mu.Unlock()
	m.log.Info("ec2sim ReplaceRoute", "route_table", rr.rtbID, "dst", rr.dst,
		"from", targetString(old.target), "to", targetString(target))
	return &returnResp{Return: true}, nil
}

func (m *Model) deleteRoute(ctx context.Context, p params) (response, *APIError) {
	rr, aerr := parseRouteRequest(p)
	if aerr != nil {
		return nil, aerr
	}
	m.mutMu.Lock()
	defer m.mutMu.Unlock()

	m.mu.RLock()
	t := m.rtbs[rr.rtbID]
	var old route
	switch {
	case t == nil:
		aerr = errNotFound("InvalidRouteTableID.NotFound", "routeTable", rr.rtbID)
	case t.route(rr.dst) < 0:
		aerr = apiErr(http.StatusBadRequest, "InvalidRoute.NotFound",
			"no route with destination-cidr-block %s in route table %s", rr.dst, rr.rtbID)
	default:
		old = t.routes[t.route(rr.dst)]
	}
	m.mu.RUnlock()
	if aerr != nil {
		return nil, aerr
	}
	if old.origin == "CreateRouteTable" {
		return nil, errInvalidParam("cannot remove local route %s in route table %s", rr.dst, rr.rtbID)
	}
	if aerr := m.applySteps(ctx, "DeleteRoute", []step{{
		name: fmt.Sprintf("delete route %s in %s", rr.dst, rr.rtbID),
		do:   func(ctx context.Context) error { return m.fabric.DeleteRoute(ctx, rr.rtbID, rr.dst) },
	}}); aerr != nil {
		return nil, aerr
	}
	m.mu.Lock()
	if t := m.rtbs[rr.rtbID]; t != nil {
		if i := t.route(rr.dst); i >= 0 {
			t.routes = append(t.routes[:i:i], t.routes[i+1:]...)
		}
	}
	m.mu.Unlock()
	m.log.Info("ec2sim DeleteRoute", "route_table", rr.rtbID, "dst", rr.dst)
	return &returnResp{Return: true}, nil
}

func targetString(t RouteTarget) string {
	var parts []string
	if t.GatewayID != "" {
		parts = append(parts, t.GatewayID)
	}
	if t.NetworkInterfaceID != "" {
		parts = append(parts, t.NetworkInterfaceID+" via "+t.NextHop.String())
	}
	if t.VpcEndpointID != "" {
		parts = append(parts, t.VpcEndpointID+" via "+t.NextHop.String())
	}
	return strings.Join(parts, ",")
}

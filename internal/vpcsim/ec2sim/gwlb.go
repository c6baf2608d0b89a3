package ec2sim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"
)

// A Gateway Load Balancer as EC2 sees it: requester-managed ENIs, one per
// enabled AZ subnet, whose description names the load balancer
// ("ELB gwy/<name>/<id>"), and the GWLB endpoints (vpce-…, type
// GatewayLoadBalancer) of its endpoint service, each with its own
// requester-managed ENI, usable as a route target (VpcEndpointId).

// Interface types of the ENIs the model creates (DescribeNetworkInterfaces'
// interfaceType).
const (
	ENITypeInterface          = "interface"
	ENITypeGWLB               = "gateway_load_balancer"
	ENITypeGWLBEndpoint       = "gateway_load_balancer_endpoint"
	VpcEndpointTypeGatewayLB  = "GatewayLoadBalancer"
	vpcEndpointStateAvailable = "available"
)

type gwlb struct {
	name    string
	id      string // the 16 hex digits of the ARN and the ENI descriptions
	arn     string
	service string // com.amazonaws.vpce.<region>.vpce-svc-…
	enis    []string
}

type vpcEndpoint struct {
	id       string
	vpcID    string
	subnetID string
	service  string
	eniID    string
	created  time.Time
}

// GWLBENIDescription is the description AWS gives a GWLB's ENI.
func GWLBENIDescription(name, id string) string { return "ELB gwy/" + name + "/" + id }

// AddGatewayLoadBalancer adds a GWLB called name with one requester-managed
// ENI per subnet of addrs (subnet id → the ENI's address; one subnet per
// AZ) and returns its ARN, its endpoint service name and the ENI ids in
// the order of subnetIDs.
func (m *Model) AddGatewayLoadBalancer(name string, subnetIDs []string, addrs []netip.Addr) (arn, service string, eniIDs []string, err error) {
	if len(subnetIDs) == 0 || len(subnetIDs) != len(addrs) {
		return "", "", nil, fmt.Errorf("ec2sim AddGatewayLoadBalancer %q: %d subnets for %d addresses, want one address per subnet", name, len(subnetIDs), len(addrs))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	azs := map[string]bool{}
	for i, sid := range subnetIDs {
		s := m.subnets[sid]
		if s == nil {
			return "", "", nil, fmt.Errorf("ec2sim AddGatewayLoadBalancer %q: subnet %q does not exist", name, sid)
		}
		if azs[s.az] {
			return "", "", nil, fmt.Errorf("ec2sim AddGatewayLoadBalancer %q: two subnets in AZ %s; a load balancer has one per AZ", name, s.az)
		}
		azs[s.az] = true
		if aerr := m.checkFreeIPLocked(s, addrs[i]); aerr != nil {
			return "", "", nil, fmt.Errorf("ec2sim AddGatewayLoadBalancer %q: %w", name, aerr)
		}
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/gwy/%s/%d", m.region, name, m.seq))
	g := &gwlb{name: name, id: hex.EncodeToString(sum[:8])}
	g.arn = "arn:aws:elasticloadbalancing:" + m.region + ":" + m.account + ":loadbalancer/gwy/" + name + "/" + g.id
	g.service = "com.amazonaws.vpce." + m.region + "." + m.newID("vpce-svc")
	for i, sid := range subnetIDs {
		e := m.addManagedENILocked(m.subnets[sid], addrs[i], ENITypeGWLB, GWLBENIDescription(name, g.id))
		g.enis = append(g.enis, e.id)
	}
	m.gwlbs = append(m.gwlbs, g)
	return g.arn, g.service, slices.Clone(g.enis), nil
}

// AddGatewayLoadBalancerEndpoint adds a GWLB endpoint of service in
// subnetID with its ENI at addr and returns the endpoint id (vpce-…, whose
// number is what GWLB's GENEVE option 1 carries) and the ENI id.
func (m *Model) AddGatewayLoadBalancerEndpoint(service, subnetID string, addr netip.Addr) (vpceID, eniID string, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !slices.ContainsFunc(m.gwlbs, func(g *gwlb) bool { return g.service == service }) {
		return "", "", fmt.Errorf("ec2sim AddGatewayLoadBalancerEndpoint: no load balancer serves %q", service)
	}
	s := m.subnets[subnetID]
	if s == nil {
		return "", "", fmt.Errorf("ec2sim AddGatewayLoadBalancerEndpoint %s: subnet %q does not exist", service, subnetID)
	}
	for _, id := range m.vpceIDs {
		if v := m.vpces[id]; v.service == service && m.subnets[v.subnetID].az == s.az {
			return "", "", fmt.Errorf("ec2sim AddGatewayLoadBalancerEndpoint %s: AZ %s already has %s (one endpoint per AZ per service)", service, s.az, id)
		}
	}
	if aerr := m.checkFreeIPLocked(s, addr); aerr != nil {
		return "", "", fmt.Errorf("ec2sim AddGatewayLoadBalancerEndpoint %s: %w", service, aerr)
	}
	// vpce- and 17 hex digits whose first is 0: the number fits the
	// 8-byte GENEVE option.
	v := &vpcEndpoint{id: "vpce-0" + m.newID("x")[2:18], vpcID: s.vpcID, subnetID: s.id, service: service,
		created: m.now().UTC().Truncate(time.Second)}
	e := m.addManagedENILocked(s, addr, ENITypeGWLBEndpoint, "VPC Endpoint Interface "+v.id)
	v.eniID = e.id
	m.vpces[v.id] = v
	m.vpceIDs = append(m.vpceIDs, v.id)
	return v.id, e.id, nil
}

func (m *Model) checkFreeIPLocked(s *subnet, ip netip.Addr) error {
	if !s.cidr.Contains(ip) {
		return fmt.Errorf("address %s outside subnet %s (%s)", ip, s.id, s.cidr)
	}
	if owner, _ := m.ipOwnerLocked(ip); owner != nil {
		return fmt.Errorf("address %s already in use by %s", ip, owner.id)
	}
	return nil
}

// addManagedENILocked adds an unattached requester-managed ENI with source/
// dest check off (a load balancer's ENI forwards for others).
func (m *Model) addManagedENILocked(s *subnet, ip netip.Addr, typ, desc string) *eni {
	e := &eni{id: m.newID("eni"), subnetID: s.id, vpcID: s.vpcID, az: s.az, primary: ip,
		interfaceType: typ, description: desc, requesterManaged: true, created: m.now().UTC().Truncate(time.Second)}
	sum := sha256.Sum256([]byte(e.id))
	e.mac = net.HardwareAddr{0x02, sum[0], sum[1], sum[2], sum[3], sum[4]}
	m.enis[e.id] = e
	m.eniIDs = append(m.eniIDs, e.id)
	return e
}

// ---- DescribeVpcEndpoints

var vpcEndpointFilters = []string{"service-name", "vpc-id", "vpc-endpoint-id", "vpc-endpoint-state", "vpc-endpoint-type",
	"ip-address-type"}

func (m *Model) describeVpcEndpoints(_ context.Context, p params) (response, *APIError) {
	want, fs, aerr := describeCommon(p, "VpcEndpointId", vpcEndpointFilters)
	if aerr != nil {
		return nil, aerr
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	ids, aerr := pickLocked(m.vpceIDs, func(id string) bool { return m.vpces[id] != nil }, want, kindFor("vpce"))
	if aerr != nil {
		return nil, aerr
	}
	var out []xVpcEndpoint
	for _, id := range ids {
		v := m.vpces[id]
		field := func(name string) []string {
			switch name {
			case "service-name":
				return one(v.service)
			case "vpc-id":
				return one(v.vpcID)
			case "vpc-endpoint-id":
				return one(v.id)
			case "vpc-endpoint-state":
				return one(vpcEndpointStateAvailable)
			case "vpc-endpoint-type":
				return one(VpcEndpointTypeGatewayLB)
			case "ip-address-type":
				return one("ipv4")
			}
			return nil
		}
		if !matchFilters(fs, m.tags[id], field) {
			continue
		}
		out = append(out, xVpcEndpoint{VpcEndpointID: v.id, VpcEndpointType: VpcEndpointTypeGatewayLB, VpcID: v.vpcID,
			ServiceName: v.service, State: vpcEndpointStateAvailable, SubnetIDs: []string{v.subnetID},
			NetworkInterfaceIDs: []string{v.eniID}, CreationTimestamp: v.created.Format(awsTime), OwnerID: m.account,
			IPAddressType: "ipv4", Tags: m.tagListLocked(id)})
	}
	page, next, aerr := paginate(p, "vpce", out, 5, 1000)
	if aerr != nil {
		return nil, aerr
	}
	return &describeVpcEndpointsResp{VpcEndpoints: page, NextToken: next}, nil
}

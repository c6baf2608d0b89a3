package ec2sim

import (
	"maps"
	"net/netip"
	"slices"
)

// Snapshot is a JSON-able copy of the whole model, in creation order.
type Snapshot struct {
	Region            string             `json:"region"`
	AccountID         string             `json:"account_id"`
	VPCs              []VPC              `json:"vpcs"`
	InternetGateways  []InternetGateway  `json:"internet_gateways"`
	Subnets           []Subnet           `json:"subnets"`
	RouteTables       []RouteTable       `json:"route_tables"`
	Instances         []Instance         `json:"instances"`
	NetworkInterfaces []NetworkInterface `json:"network_interfaces"`
	Addresses         []Address          `json:"addresses"`
}

// VPC is a VPC in a Snapshot.
type VPC struct {
	ID   string            `json:"id"`
	CIDR netip.Prefix      `json:"cidr"`
	Tags map[string]string `json:"tags,omitempty"`
}

// InternetGateway is an internet gateway in a Snapshot (VPCID empty when detached).
type InternetGateway struct {
	ID    string            `json:"id"`
	VPCID string            `json:"vpc_id,omitempty"`
	Tags  map[string]string `json:"tags,omitempty"`
}

// Subnet is a subnet in a Snapshot.
type Subnet struct {
	ID    string            `json:"id"`
	VPCID string            `json:"vpc_id"`
	CIDR  netip.Prefix      `json:"cidr"`
	AZ    string            `json:"availability_zone"`
	Tags  map[string]string `json:"tags,omitempty"`
}

// RouteTable is a route table in a Snapshot, with its routes in order (the local route first).
type RouteTable struct {
	ID                string                  `json:"id"`
	VPCID             string                  `json:"vpc_id"`
	Main              bool                    `json:"main"`
	MainAssociationID string                  `json:"main_association_id,omitempty"`
	Associations      []RouteTableAssociation `json:"associations,omitempty"`
	Routes            []Route                 `json:"routes"`
	Tags              map[string]string       `json:"tags,omitempty"`
}

// RouteTableAssociation is an explicit subnet association of a route table.
type RouteTableAssociation struct {
	ID       string `json:"id"`
	SubnetID string `json:"subnet_id"`
}

// Route is one route; NextHop is the target ENI's primary private IP.
type Route struct {
	Destination        netip.Prefix `json:"destination"`
	GatewayID          string       `json:"gateway_id,omitempty"`
	NetworkInterfaceID string       `json:"network_interface_id,omitempty"`
	VpcEndpointID      string       `json:"vpc_endpoint_id,omitempty"`
	InstanceID         string       `json:"instance_id,omitempty"`
	NextHop            netip.Addr   `json:"next_hop,omitzero"`
	State              string       `json:"state"`
	Origin             string       `json:"origin"`
}

// Instance is an instance in a Snapshot; its ENIs by device index.
type Instance struct {
	ID                  string            `json:"id"`
	AZ                  string            `json:"availability_zone"`
	SubnetID            string            `json:"subnet_id"`
	VPCID               string            `json:"vpc_id"`
	State               string            `json:"state"`
	NetworkInterfaceIDs []string          `json:"network_interface_ids"`
	Tags                map[string]string `json:"tags,omitempty"`
}

// NetworkInterface is an ENI in a Snapshot.
type NetworkInterface struct {
	ID              string            `json:"id"`
	SubnetID        string            `json:"subnet_id"`
	VPCID           string            `json:"vpc_id"`
	AZ              string            `json:"availability_zone"`
	InstanceID      string            `json:"instance_id,omitempty"`
	DeviceIndex     int               `json:"device_index"`
	MAC             string            `json:"mac"`
	PrimaryIP       netip.Addr        `json:"primary_ip"`
	SecondaryIPs    []netip.Addr      `json:"secondary_ips,omitempty"`
	SourceDestCheck bool              `json:"source_dest_check"`
	Tags            map[string]string `json:"tags,omitempty"`
}

// Address is an Elastic IP in a Snapshot (association fields empty when not associated).
type Address struct {
	AllocationID       string            `json:"allocation_id"`
	PublicIP           netip.Addr        `json:"public_ip"`
	AssociationID      string            `json:"association_id,omitempty"`
	NetworkInterfaceID string            `json:"network_interface_id,omitempty"`
	InstanceID         string            `json:"instance_id,omitempty"`
	PrivateIP          netip.Addr        `json:"private_ip,omitzero"`
	Tags               map[string]string `json:"tags,omitempty"`
}

// Snapshot returns a deep copy of everything in the model.
func (m *Model) Snapshot() Snapshot {
	m.mu.RLock()
	defer m.mu.RUnlock()
	tags := func(id string) map[string]string {
		if len(m.tags[id]) == 0 {
			return nil
		}
		return maps.Clone(m.tags[id])
	}
	s := Snapshot{Region: m.region, AccountID: m.account}
	for _, id := range m.vpcIDs {
		v := m.vpcs[id]
		s.VPCs = append(s.VPCs, VPC{ID: v.id, CIDR: v.cidr, Tags: tags(id)})
	}
	for _, id := range m.igwIDs {
		g := m.igws[id]
		s.InternetGateways = append(s.InternetGateways, InternetGateway{ID: g.id, VPCID: g.vpcID, Tags: tags(id)})
	}
	for _, id := range m.subnetIDs {
		sn := m.subnets[id]
		s.Subnets = append(s.Subnets, Subnet{ID: sn.id, VPCID: sn.vpcID, CIDR: sn.cidr, AZ: sn.az, Tags: tags(id)})
	}
	for _, id := range m.rtbIDs {
		t := m.rtbs[id]
		rt := RouteTable{ID: t.id, VPCID: t.vpcID, Main: t.main, MainAssociationID: t.mainAssocID, Tags: tags(id)}
		for _, a := range t.assocs {
			rt.Associations = append(rt.Associations, RouteTableAssociation{ID: a.id, SubnetID: a.subnetID})
		}
		for _, r := range t.routes {
			out := Route{Destination: r.dst, GatewayID: r.target.GatewayID, NetworkInterfaceID: r.target.NetworkInterfaceID, VpcEndpointID: r.target.VpcEndpointID,
				NextHop: r.target.NextHop, State: m.routeStateLocked(r), Origin: r.origin}
			if e := m.enis[r.target.NetworkInterfaceID]; e != nil {
				out.InstanceID = e.instanceID
			}
			rt.Routes = append(rt.Routes, out)
		}
		s.RouteTables = append(s.RouteTables, rt)
	}
	for _, id := range m.instIDs {
		in := m.insts[id]
		s.Instances = append(s.Instances, Instance{ID: in.id, AZ: in.az, SubnetID: in.subnetID, VPCID: in.vpcID,
			State: in.state, NetworkInterfaceIDs: slices.Clone(in.enis), Tags: tags(id)})
	}
	for _, id := range m.eniIDs {
		e := m.enis[id]
		s.NetworkInterfaces = append(s.NetworkInterfaces, NetworkInterface{ID: e.id, SubnetID: e.subnetID, VPCID: e.vpcID,
			AZ: e.az, InstanceID: e.instanceID, DeviceIndex: e.deviceIndex, MAC: e.mac.String(), PrimaryIP: e.primary,
			SecondaryIPs: slices.Clone(e.secondaries), SourceDestCheck: e.srcDstCheck, Tags: tags(id)})
	}
	for _, id := range m.eipIDs {
		a := m.eips[id]
		out := Address{AllocationID: a.allocID, PublicIP: a.public, Tags: tags(id)}
		if a.assocID != "" {
			out.AssociationID, out.NetworkInterfaceID, out.PrivateIP = a.assocID, a.eniID, a.private
			if e := m.enis[a.eniID]; e != nil {
				out.InstanceID = e.instanceID
			}
		}
		s.Addresses = append(s.Addresses, out)
	}
	return s
}

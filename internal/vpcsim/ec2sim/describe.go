package ec2sim

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

const awsTime = "2006-01-02T15:04:05.000Z"

// pickLocked returns the ids of all (in creation order) restricted to want
// when want is not empty; an unknown id in want is kind's NotFound.
func pickLocked(all []string, exists func(string) bool, want []string, kind idKind) ([]string, *APIError) {
	if len(want) == 0 {
		return all, nil
	}
	for _, id := range want {
		if !exists(id) {
			return nil, errNotFound(kind.notFound, kind.noun, id)
		}
	}
	return slices.DeleteFunc(slices.Clone(all), func(id string) bool { return !slices.Contains(want, id) }), nil
}

func kindFor(prefix string) idKind {
	for _, k := range idKinds {
		if k.prefix == prefix {
			return k
		}
	}
	panic("ec2sim: unknown id kind " + prefix) // programming error, fixed table
}

// describeCommon parses the id list, filters and checks the filter names.
func describeCommon(p params, idParam string, knownFilters []string) ([]string, []filter, *APIError) {
	ids, err := p.list(idParam)
	if err != nil {
		return nil, nil, err
	}
	fs, err := p.filters()
	if err != nil {
		return nil, nil, err
	}
	if err := checkFilters(fs, knownFilters); err != nil {
		return nil, nil, err
	}
	return ids, fs, nil
}

func (m *Model) tagListLocked(id string) []xTag {
	t := m.tags[id]
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]xTag, 0, len(keys))
	for _, k := range keys {
		out = append(out, xTag{Key: k, Value: t[k]})
	}
	return out
}

func one(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}

func boolStr(b bool) string { return strconv.FormatBool(b) }

func (m *Model) privateDNS(ip netip.Addr) string {
	return "ip-" + strings.ReplaceAll(ip.String(), ".", "-") + "." + m.region + ".compute.internal"
}

func (m *Model) publicDNS(ip netip.Addr) string {
	return "ec2-" + strings.ReplaceAll(ip.String(), ".", "-") + "." + m.region + ".compute.amazonaws.com"
}

// ---- DescribeVpcs

var vpcFilters = []string{"vpc-id", "cidr", "cidr-block-association.cidr-block", "cidr-block-association.association-id",
	"cidr-block-association.state", "state", "is-default", "owner-id", "dhcp-options-id"}

func (m *Model) describeVpcs(_ context.Context, p params) (response, *APIError) {
	want, fs, aerr := describeCommon(p, "VpcId", vpcFilters)
	if aerr != nil {
		return nil, aerr
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	ids, aerr := pickLocked(m.vpcIDs, func(id string) bool { return m.vpcs[id] != nil }, want, kindFor("vpc"))
	if aerr != nil {
		return nil, aerr
	}
	var out []xVPC
	for _, id := range ids {
		v := m.vpcs[id]
		field := func(name string) []string {
			switch name {
			case "vpc-id":
				return one(v.id)
			case "cidr", "cidr-block-association.cidr-block":
				return one(v.cidr.String())
			case "cidr-block-association.association-id":
				return one(v.cidrAssocID)
			case "cidr-block-association.state":
				return one("associated")
			case "state":
				return one("available")
			case "is-default":
				return one("false")
			case "owner-id":
				return one(m.account)
			case "dhcp-options-id":
				return one("default")
			}
			return nil
		}
		if !matchFilters(fs, m.tags[id], field) {
			continue
		}
		out = append(out, xVPC{VpcID: v.id, OwnerID: m.account, State: "available", CidrBlock: v.cidr.String(),
			CidrAssocs:    []xVPCCidrAssoc{{AssociationID: v.cidrAssocID, CidrBlock: v.cidr.String(), State: xState{"associated"}}},
			DhcpOptionsID: "default", InstanceTenancy: "default", Tags: m.tagListLocked(id)})
	}
	page, next, aerr := paginate(p, "vpc", out, 5, 1000)
	if aerr != nil {
		return nil, aerr
	}
	return &describeVpcsResp{Vpcs: page, NextToken: next}, nil
}

// ---- DescribeInternetGateways

var igwFilters = []string{"internet-gateway-id", "attachment.vpc-id", "attachment.state", "owner-id"}

func (m *Model) describeInternetGateways(_ context.Context, p params) (response, *APIError) {
	want, fs, aerr := describeCommon(p, "InternetGatewayId", igwFilters)
	if aerr != nil {
		return nil, aerr
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	ids, aerr := pickLocked(m.igwIDs, func(id string) bool { return m.igws[id] != nil }, want, kindFor("igw"))
	if aerr != nil {
		return nil, aerr
	}
	var out []xIGW
	for _, id := range ids {
		g := m.igws[id]
		field := func(name string) []string {
			switch name {
			case "internet-gateway-id":
				return one(g.id)
			case "attachment.vpc-id":
				return one(g.vpcID)
			case "attachment.state":
				if g.vpcID != "" {
					return one("available")
				}
			case "owner-id":
				return one(m.account)
			}
			return nil
		}
		if !matchFilters(fs, m.tags[id], field) {
			continue
		}
		x := xIGW{InternetGatewayID: g.id, OwnerID: m.account, Tags: m.tagListLocked(id)}
		if g.vpcID != "" {
			x.Attachments = []xIGWAttachment{{VpcID: g.vpcID, State: "available"}}
		}
		out = append(out, x)
	}
	page, next, aerr := paginate(p, "igw", out, 5, 1000)
	if aerr != nil {
		return nil, aerr
	}
	return &describeIGWsResp{InternetGateways: page, NextToken: next}, nil
}

// ---- DescribeSubnets

var subnetFilters = []string{"subnet-id", "vpc-id", "cidr-block", "cidr", "cidrBlock", "availability-zone", "availabilityZone",
	"state", "owner-id", "default-for-az", "map-public-ip-on-launch"}

func (m *Model) freeIPCountLocked(s *subnet) int {
	total := 1<<(32-s.cidr.Bits()) - 5
	for _, id := range m.eniIDs {
		for _, ip := range m.enis[id].ips() {
			if s.cidr.Contains(ip) {
				total--
			}
		}
	}
	return max(total, 0)
}

func (m *Model) describeSubnets(_ context.Context, p params) (response, *APIError) {
	want, fs, aerr := describeCommon(p, "SubnetId", subnetFilters)
	if aerr != nil {
		return nil, aerr
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	ids, aerr := pickLocked(m.subnetIDs, func(id string) bool { return m.subnets[id] != nil }, want, kindFor("subnet"))
	if aerr != nil {
		return nil, aerr
	}
	var out []xSubnet
	for _, id := range ids {
		s := m.subnets[id]
		field := func(name string) []string {
			switch name {
			case "subnet-id":
				return one(s.id)
			case "vpc-id":
				return one(s.vpcID)
			case "cidr-block", "cidr", "cidrBlock":
				return one(s.cidr.String())
			case "availability-zone", "availabilityZone":
				return one(s.az)
			case "state":
				return one("available")
			case "owner-id":
				return one(m.account)
			case "default-for-az", "map-public-ip-on-launch":
				return one("false")
			}
			return nil
		}
		if !matchFilters(fs, m.tags[id], field) {
			continue
		}
		out = append(out, xSubnet{SubnetID: s.id, SubnetArn: "arn:aws:ec2:" + m.region + ":" + m.account + ":subnet/" + s.id,
			OwnerID: m.account, State: "available", VpcID: s.vpcID, CidrBlock: s.cidr.String(),
			AvailableIPAddressCount: m.freeIPCountLocked(s), AvailabilityZone: s.az, Tags: m.tagListLocked(id)})
	}
	page, next, aerr := paginate(p, "subnet", out, 5, 1000)
	if aerr != nil {
		return nil, aerr
	}
	return &describeSubnetsResp{Subnets: page, NextToken: next}, nil
}

// ---- DescribeRouteTables

var routeTableFilters = []string{"route-table-id", "vpc-id", "owner-id",
	"association.subnet-id", "association.main", "association.route-table-association-id", "association.route-table-id",
	"route.destination-cidr-block", "route.network-interface-id", "route.gateway-id", "route.instance-id",
	"route.state", "route.origin"}

func (m *Model) xRouteTableLocked(t *routeTable) xRouteTable {
	x := xRouteTable{RouteTableID: t.id, VpcID: t.vpcID, OwnerID: m.account, Tags: m.tagListLocked(t.id)}
	for _, r := range t.routes {
		// AWS shows an endpoint target as gatewayId (the SDK's Route has no
		// VpcEndpointId field); CreateRoute takes it as VpcEndpointId.
		gw := r.target.GatewayID
		if r.target.VpcEndpointID != "" {
			gw = r.target.VpcEndpointID
		}
		xr := xRoute{DestinationCidrBlock: r.dst.String(), GatewayID: gw,
			NetworkInterfaceID: r.target.NetworkInterfaceID, State: m.routeStateLocked(r), Origin: r.origin}
		if e := m.enis[r.target.NetworkInterfaceID]; e != nil && e.instanceID != "" {
			xr.InstanceID, xr.InstanceOwnerID = e.instanceID, m.account
		}
		x.Routes = append(x.Routes, xr)
	}
	if t.main {
		x.Associations = append(x.Associations, xRTAssoc{RouteTableAssociationID: t.mainAssocID, RouteTableID: t.id,
			Main: true, AssociationState: xState{"associated"}})
	}
	for _, a := range t.assocs {
		x.Associations = append(x.Associations, xRTAssoc{RouteTableAssociationID: a.id, RouteTableID: t.id,
			SubnetID: a.subnetID, AssociationState: xState{"associated"}})
	}
	return x
}

func routeTableField(x xRouteTable) fieldFunc {
	return func(name string) []string {
		var out []string
		switch name {
		case "route-table-id":
			return one(x.RouteTableID)
		case "vpc-id":
			return one(x.VpcID)
		case "owner-id":
			return one(x.OwnerID)
		}
		for _, a := range x.Associations {
			switch name {
			case "association.subnet-id":
				out = append(out, one(a.SubnetID)...)
			case "association.main":
				out = append(out, boolStr(a.Main))
			case "association.route-table-association-id":
				out = append(out, a.RouteTableAssociationID)
			case "association.route-table-id":
				out = append(out, a.RouteTableID)
			}
		}
		for _, r := range x.Routes {
			switch name {
			case "route.destination-cidr-block":
				out = append(out, r.DestinationCidrBlock)
			case "route.network-interface-id":
				out = append(out, one(r.NetworkInterfaceID)...)
			case "route.gateway-id":
				out = append(out, one(r.GatewayID)...)
			case "route.instance-id":
				out = append(out, one(r.InstanceID)...)
			case "route.state":
				out = append(out, r.State)
			case "route.origin":
				out = append(out, r.Origin)
			}
		}
		return out
	}
}

func (m *Model) describeRouteTables(_ context.Context, p params) (response, *APIError) {
	want, fs, aerr := describeCommon(p, "RouteTableId", routeTableFilters)
	if aerr != nil {
		return nil, aerr
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	ids, aerr := pickLocked(m.rtbIDs, func(id string) bool { return m.rtbs[id] != nil }, want, kindFor("rtb"))
	if aerr != nil {
		return nil, aerr
	}
	var out []xRouteTable
	for _, id := range ids {
		x := m.xRouteTableLocked(m.rtbs[id])
		if matchFilters(fs, m.tags[id], routeTableField(x)) {
			out = append(out, x)
		}
	}
	page, next, aerr := paginate(p, "rtb", out, 5, 100)
	if aerr != nil {
		return nil, aerr
	}
	return &describeRouteTablesResp{RouteTables: page, NextToken: next}, nil
}

// ---- DescribeInstances

var instanceFilters = []string{"instance-id", "instance-state-name", "instance-state-code", "subnet-id", "vpc-id",
	"availability-zone", "private-ip-address", "ip-address", "image-id", "instance-type", "owner-id",
	"network-interface.network-interface-id", "network-interface.addresses.private-ip-address",
	"network-interface.mac-address", "network-interface.subnet-id", "source-dest-check"}

var instanceStateCodes = map[string]int{InstanceRunning: 16, InstanceStopped: 80}

func (m *Model) xInstanceLocked(in *instance) xInstance {
	x := xInstance{InstanceID: in.id, ImageID: in.imageID,
		InstanceState: xInstanceState{Code: instanceStateCodes[in.state], Name: in.state},
		InstanceType:  "t3.micro", LaunchTime: in.launched.Format(awsTime),
		Placement: xPlacement{AvailabilityZone: in.az, Tenancy: "default"},
		SubnetID:  in.subnetID, VpcID: in.vpcID, SourceDestCheck: true,
		Architecture: "x86_64", RootDeviceType: "ebs", VirtualizationType: "hvm", Hypervisor: "xen",
		Tags: m.tagListLocked(in.id)}
	for _, id := range in.enis {
		e := m.enis[id]
		xe := xInstanceENI{NetworkInterfaceID: e.id, SubnetID: e.subnetID, VpcID: e.vpcID, OwnerID: m.account,
			Status: "in-use", MacAddress: e.mac.String(), PrivateIPAddress: e.primary.String(),
			PrivateDNSName: m.privateDNS(e.primary), SourceDestCheck: e.srcDstCheck, InterfaceType: "interface",
			Attachment: xInstanceENIAttach{AttachmentID: e.attachmentID, DeviceIndex: e.deviceIndex, Status: "attached",
				AttachTime: in.launched.Format(awsTime), DeleteOnTermination: e.deviceIndex == 0}}
		for i, ip := range e.ips() {
			xp := xInstancePrivateIPs{PrivateIPAddress: ip.String(), PrivateDNSName: m.privateDNS(ip), Primary: i == 0}
			if a := m.eipOnLocked(e.id, ip); a != nil {
				xp.Association = &xInstanceENIAssoc{PublicIP: a.public.String(), PublicDNSName: m.publicDNS(a.public), IPOwnerID: m.account}
				if i == 0 {
					xe.Association = xp.Association
				}
			}
			xe.PrivateIPAddresses = append(xe.PrivateIPAddresses, xp)
		}
		if e.deviceIndex == 0 {
			x.PrivateIPAddress = e.primary.String()
			x.PrivateDNSName = m.privateDNS(e.primary)
			x.SourceDestCheck = e.srcDstCheck
			if xe.Association != nil {
				x.IPAddress = xe.Association.PublicIP
				x.DNSName = xe.Association.PublicDNSName
			}
		}
		x.NetworkInterfaces = append(x.NetworkInterfaces, xe)
	}
	return x
}

func (m *Model) describeInstances(_ context.Context, p params) (response, *APIError) {
	want, fs, aerr := describeCommon(p, "InstanceId", instanceFilters)
	if aerr != nil {
		return nil, aerr
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	ids, aerr := pickLocked(m.instIDs, func(id string) bool { return m.insts[id] != nil }, want, kindFor("i"))
	if aerr != nil {
		return nil, aerr
	}
	var out []xReservation
	for _, id := range ids {
		x := m.xInstanceLocked(m.insts[id])
		field := func(name string) []string {
			switch name {
			case "instance-id":
				return one(x.InstanceID)
			case "instance-state-name":
				return one(x.InstanceState.Name)
			case "instance-state-code":
				return one(strconv.Itoa(x.InstanceState.Code))
			case "subnet-id":
				return one(x.SubnetID)
			case "vpc-id":
				return one(x.VpcID)
			case "availability-zone":
				return one(x.Placement.AvailabilityZone)
			case "private-ip-address":
				return one(x.PrivateIPAddress)
			case "ip-address":
				return one(x.IPAddress)
			case "image-id":
				return one(x.ImageID)
			case "instance-type":
				return one(x.InstanceType)
			case "owner-id":
				return one(m.account)
			case "source-dest-check":
				return one(boolStr(x.SourceDestCheck))
			}
			var vals []string
			for _, e := range x.NetworkInterfaces {
				switch name {
				case "network-interface.network-interface-id":
					vals = append(vals, e.NetworkInterfaceID)
				case "network-interface.mac-address":
					vals = append(vals, e.MacAddress)
				case "network-interface.subnet-id":
					vals = append(vals, e.SubnetID)
				case "network-interface.addresses.private-ip-address":
					for _, ip := range e.PrivateIPAddresses {
						vals = append(vals, ip.PrivateIPAddress)
					}
				}
			}
			return vals
		}
		if !matchFilters(fs, m.tags[id], field) {
			continue
		}
		out = append(out, xReservation{ReservationID: "r-" + id[2:], OwnerID: m.account, Instances: []xInstance{x}})
	}
	page, next, aerr := paginate(p, "instance", out, 5, 1000)
	if aerr != nil {
		return nil, aerr
	}
	return &describeInstancesResp{Reservations: page, NextToken: next}, nil
}

// ---- DescribeNetworkInterfaces

var eniFilters = []string{"network-interface-id", "attachment.instance-id", "attachment.device-index",
	"attachment.attachment-id", "attachment.status", "attachment.instance-owner-id", "subnet-id", "vpc-id",
	"availability-zone", "addresses.private-ip-address", "addresses.primary", "private-ip-address", "mac-address",
	"source-dest-check", "association.public-ip", "association.allocation-id", "association.association-id",
	"status", "owner-id", "interface-type", "requester-managed", "description"}

func (m *Model) xENILocked(e *eni) xENI {
	x := xENI{NetworkInterfaceID: e.id, SubnetID: e.subnetID, VpcID: e.vpcID, AvailabilityZone: e.az,
		OwnerID: m.account, Status: "available", MacAddress: e.mac.String(), PrivateIPAddress: e.primary.String(),
		PrivateDNSName: m.privateDNS(e.primary), SourceDestCheck: e.srcDstCheck, InterfaceType: ENITypeInterface,
		Description: e.description, RequesterManaged: e.requesterManaged, Tags: m.tagListLocked(e.id)}
	if e.interfaceType != "" {
		x.InterfaceType = e.interfaceType
	}
	if e.requesterManaged {
		// A service's ENI is in use, attached to no instance of yours.
		owner := "amazon-elb"
		if e.interfaceType == ENITypeGWLBEndpoint {
			owner = "amazon-aws"
		}
		x.Status = "in-use"
		x.Attachment = &xENIAttach{AttachmentID: "ela-attach-" + e.id[len("eni-"):], InstanceOwnerID: owner,
			DeviceIndex: 1, Status: "attached", AttachTime: e.created.Format(awsTime)}
	}
	if in := m.insts[e.instanceID]; in != nil {
		x.Status = "in-use"
		x.Attachment = &xENIAttach{AttachmentID: e.attachmentID, InstanceID: in.id, InstanceOwnerID: m.account,
			DeviceIndex: e.deviceIndex, Status: "attached", AttachTime: in.launched.Format(awsTime),
			DeleteOnTermination: e.deviceIndex == 0}
	}
	for i, ip := range e.ips() {
		xp := xENIPrivateIP{PrivateIPAddress: ip.String(), PrivateDNSName: m.privateDNS(ip), Primary: i == 0}
		if a := m.eipOnLocked(e.id, ip); a != nil {
			xp.Association = &xENIAssoc{PublicIP: a.public.String(), PublicDNSName: m.publicDNS(a.public),
				IPOwnerID: m.account, AllocationID: a.allocID, AssociationID: a.assocID}
			if i == 0 {
				x.Association = xp.Association
			}
		}
		x.PrivateIPAddresses = append(x.PrivateIPAddresses, xp)
	}
	return x
}

func eniField(x xENI) fieldFunc {
	return func(name string) []string {
		switch name {
		case "network-interface-id":
			return one(x.NetworkInterfaceID)
		case "subnet-id":
			return one(x.SubnetID)
		case "vpc-id":
			return one(x.VpcID)
		case "availability-zone":
			return one(x.AvailabilityZone)
		case "mac-address":
			return one(x.MacAddress)
		case "source-dest-check":
			return one(boolStr(x.SourceDestCheck))
		case "status":
			return one(x.Status)
		case "owner-id":
			return one(x.OwnerID)
		case "interface-type":
			return one(x.InterfaceType)
		case "requester-managed":
			return one(boolStr(x.RequesterManaged))
		case "description":
			return []string{x.Description}
		case "private-ip-address":
			return one(x.PrivateIPAddress)
		}
		if a := x.Attachment; a != nil {
			switch name {
			case "attachment.instance-id":
				return one(a.InstanceID)
			case "attachment.device-index":
				return one(strconv.Itoa(a.DeviceIndex))
			case "attachment.attachment-id":
				return one(a.AttachmentID)
			case "attachment.status":
				return one(a.Status)
			case "attachment.instance-owner-id":
				return one(a.InstanceOwnerID)
			}
		}
		var vals []string
		for _, ip := range x.PrivateIPAddresses {
			switch name {
			case "addresses.private-ip-address":
				vals = append(vals, ip.PrivateIPAddress)
			case "addresses.primary":
				vals = append(vals, boolStr(ip.Primary))
			}
			if a := ip.Association; a != nil {
				switch name {
				case "association.public-ip":
					vals = append(vals, a.PublicIP)
				case "association.allocation-id":
					vals = append(vals, a.AllocationID)
				case "association.association-id":
					vals = append(vals, a.AssociationID)
				}
			}
		}
		return vals
	}
}

func (m *Model) describeNetworkInterfaces(_ context.Context, p params) (response, *APIError) {
	want, fs, aerr := describeCommon(p, "NetworkInterfaceId", eniFilters)
	if aerr != nil {
		return nil, aerr
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	ids, aerr := pickLocked(m.eniIDs, func(id string) bool { return m.enis[id] != nil }, want, kindFor("eni"))
	if aerr != nil {
		return nil, aerr
	}
	var out []xENI
	for _, id := range ids {
		x := m.xENILocked(m.enis[id])
		if matchFilters(fs, m.tags[id], eniField(x)) {
			out = append(out, x)
		}
	}
	page, next, aerr := paginate(p, "eni", out, 5, 1000)
	if aerr != nil {
		return nil, aerr
	}
	return &describeENIsResp{NetworkInterfaces: page, NextToken: next}, nil
}

// ---- DescribeAddresses

var addressFilters = []string{"allocation-id", "association-id", "instance-id", "network-interface-id",
	"network-interface-owner-id", "private-ip-address", "public-ip", "domain", "network-border-group"}

func (m *Model) xAddressLocked(a *eip) xAddress {
	x := xAddress{PublicIP: a.public.String(), AllocationID: a.allocID, Domain: "vpc", PublicIpv4Pool: "amazon",
		NetworkBorderGroup: m.region, Tags: m.tagListLocked(a.allocID)}
	if a.assocID != "" {
		x.AssociationID, x.NetworkInterfaceID, x.NetworkInterfaceOwnerID = a.assocID, a.eniID, m.account
		x.PrivateIPAddress = a.private.String()
		if e := m.enis[a.eniID]; e != nil {
			x.InstanceID = e.instanceID
		}
	}
	return x
}

func (m *Model) describeAddresses(_ context.Context, p params) (response, *APIError) {
	want, fs, aerr := describeCommon(p, "AllocationId", addressFilters)
	if aerr != nil {
		return nil, aerr
	}
	publicIPs, aerr := p.list("PublicIp")
	if aerr != nil {
		return nil, aerr
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	ids, aerr := pickLocked(m.eipIDs, func(id string) bool { return m.eips[id] != nil }, want, kindFor("eipalloc"))
	if aerr != nil {
		return nil, aerr
	}
	for _, s := range publicIPs {
		ip, err := netip.ParseAddr(s)
		found := err == nil && slices.ContainsFunc(m.eipIDs, func(id string) bool { return m.eips[id].public == ip })
		if !found {
			return nil, apiErr(400, "InvalidAddress.NotFound", "Address '%s' not found.", s)
		}
	}
	var out []xAddress
	for _, id := range ids {
		x := m.xAddressLocked(m.eips[id])
		if len(publicIPs) > 0 && !slices.Contains(publicIPs, x.PublicIP) {
			continue
		}
		field := func(name string) []string {
			switch name {
			case "allocation-id":
				return one(x.AllocationID)
			case "association-id":
				return one(x.AssociationID)
			case "instance-id":
				return one(x.InstanceID)
			case "network-interface-id":
				return one(x.NetworkInterfaceID)
			case "network-interface-owner-id":
				return one(x.NetworkInterfaceOwnerID)
			case "private-ip-address":
				return one(x.PrivateIPAddress)
			case "public-ip":
				return one(x.PublicIP)
			case "domain":
				return one(x.Domain)
			case "network-border-group":
				return one(x.NetworkBorderGroup)
			}
			return nil
		}
		if matchFilters(fs, m.tags[id], field) {
			out = append(out, x)
		}
	}
	return &describeAddressesResp{Addresses: out}, nil
}

// ---- DescribeTags

var tagFilters = []string{"resource-id", "resource-type", "key", "value"}

// taggableLocked lists every resource id in a stable order: by kind, then
// creation.
func (m *Model) taggableLocked() []string {
	var all []string
	for _, ids := range [][]string{m.instIDs, m.eniIDs, m.subnetIDs, m.vpcIDs, m.igwIDs, m.rtbIDs, m.eipIDs, m.vpceIDs} {
		all = append(all, ids...)
	}
	return all
}

func (m *Model) existsLocked(id string) bool {
	return m.vpcs[id] != nil || m.igws[id] != nil || m.subnets[id] != nil || m.rtbs[id] != nil ||
		m.insts[id] != nil || m.enis[id] != nil || m.eips[id] != nil || m.vpces[id] != nil
}

func (m *Model) describeTags(_ context.Context, p params) (response, *APIError) {
	fs, aerr := p.filters()
	if aerr != nil {
		return nil, aerr
	}
	if aerr := checkFilters(fs, tagFilters); aerr != nil {
		return nil, aerr
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []xTagDescription
	for _, id := range m.taggableLocked() {
		kind, _ := kindOf(id)
		for _, t := range m.tagListLocked(id) {
			d := xTagDescription{ResourceID: id, ResourceType: kind.resourceType, Key: t.Key, Value: t.Value}
			field := func(name string) []string {
				switch name {
				case "resource-id":
					return one(d.ResourceID)
				case "resource-type":
					return one(d.ResourceType)
				case "key":
					return one(d.Key)
				case "value":
					return []string{d.Value}
				}
				return nil
			}
			if matchFilters(fs, m.tags[id], field) {
				out = append(out, d)
			}
		}
	}
	page, next, aerr := paginate(p, "tag", out, 5, 1000)
	if aerr != nil {
		return nil, aerr
	}
	return &describeTagsResp{Tags: page, NextToken: next}, nil
}

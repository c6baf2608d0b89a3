package ec2sim

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// maxSecondaryIPs bounds the secondary private IPs of one ENI (AWS's limit
// depends on the instance type; t3.micro has 2, larger ones up to 49).
const maxSecondaryIPs = 49

func (m *Model) modifyNetworkInterfaceAttribute(ctx context.Context, p params) (response, *APIError) {
	eniID, aerr := p.required("NetworkInterfaceId")
	if aerr != nil {
		return nil, aerr
	}
	if !p.has("SourceDestCheck.Value") {
		for k := range p {
			if k == "Description.Value" || strings.HasPrefix(k, "SecurityGroupId.") || strings.HasPrefix(k, "Attachment.") {
				return nil, apiErr(http.StatusBadRequest, "UnsupportedOperation", "The simulator supports only the SourceDestCheck attribute, not %s", k)
			}
		}
		return nil, errMissing("SourceDestCheck")
	}
	enabled, aerr := p.boolean("SourceDestCheck.Value", true)
	if aerr != nil {
		return nil, aerr
	}
	m.mutMu.Lock()
	defer m.mutMu.Unlock()
	m.mu.RLock()
	exists := m.enis[eniID] != nil
	m.mu.RUnlock()
	if !exists {
		return nil, errNotFound("InvalidNetworkInterfaceID.NotFound", "networkInterface", eniID)
	}
	return m.setSourceDestCheck(ctx, "ModifyNetworkInterfaceAttribute", eniID, enabled)
}

// setSourceDestCheck applies and commits the check. Caller holds mutMu.
func (m *Model) setSourceDestCheck(ctx context.Context, action, eniID string, enabled bool) (response, *APIError) {
	if aerr := m.applySteps(ctx, action, []step{{
		name: fmt.Sprintf("set source/dest check of %s to %t", eniID, enabled),
		do:   func(ctx context.Context) error { return m.fabric.SetSourceDestCheck(ctx, eniID, enabled) },
	}}); aerr != nil {
		return nil, aerr
	}
	m.mu.Lock()
	if e := m.enis[eniID]; e != nil {
		e.srcDstCheck = enabled
	}
	m.mu.Unlock()
	m.log.Info("ec2sim "+action, "eni", eniID, "source_dest_check", enabled)
	return &returnResp{Return: true}, nil
}

func (m *Model) modifyInstanceAttribute(ctx context.Context, p params) (response, *APIError) {
	instID, aerr := p.required("InstanceId")
	if aerr != nil {
		return nil, aerr
	}
	var raw string
	switch {
	case p.has("SourceDestCheck.Value"):
		raw = p.str("SourceDestCheck.Value")
	case p.str("Attribute") == "sourceDestCheck":
		raw = p.str("Value")
		if raw == "" {
			return nil, errMissing("Value")
		}
	case p.str("Attribute") != "":
		return nil, apiErr(http.StatusBadRequest, "UnsupportedOperation", "The simulator supports only the sourceDestCheck attribute, not %s", p.str("Attribute"))
	default:
		for k := range p {
			if strings.HasSuffix(k, ".Value") || strings.HasPrefix(k, "GroupId.") || strings.HasPrefix(k, "BlockDeviceMapping.") {
				return nil, apiErr(http.StatusBadRequest, "UnsupportedOperation", "The simulator supports only the SourceDestCheck attribute, not %s", k)
			}
		}
		return nil, errMissing("Attribute")
	}
	enabled, aerr := params{"v": raw}.boolean("v", true)
	if aerr != nil {
		return nil, errInvalidParam("Value (%s) for parameter sourceDestCheck is invalid. Expected a boolean.", raw)
	}
	m.mutMu.Lock()
	defer m.mutMu.Unlock()
	m.mu.RLock()
	e, aerr := m.instanceENILocked(instID)
	m.mu.RUnlock()
	if aerr != nil {
		return nil, aerr
	}
	return m.setSourceDestCheck(ctx, "ModifyInstanceAttribute", e.id, enabled)
}

// reservedInSubnet: AWS reserves the network address, .1 (router), .2
// (DNS), .3 (future use) and the broadcast address of every subnet.
func reservedInSubnet(s *subnet, ip netip.Addr) bool {
	base := s.cidr.Addr().As4()
	a := ip.As4()
	off := uint32(a[0]-base[0])<<24 | uint32(a[1]-base[1])<<16 | uint32(a[2]-base[2])<<8 | uint32(a[3]-base[3])
	size := uint32(1) << (32 - s.cidr.Bits())
	return off <= 3 || off == size-1
}

func (m *Model) assignPrivateIPAddresses(ctx context.Context, p params) (response, *APIError) {
	eniID, aerr := p.required("NetworkInterfaceId")
	if aerr != nil {
		return nil, aerr
	}
	if p.has("Ipv4PrefixCount") || p.has("Ipv4Prefix.1") {
		return nil, apiErr(http.StatusBadRequest, "UnsupportedOperation", "The simulator does not support IPv4 prefixes")
	}
	want, aerr := p.list("PrivateIpAddress")
	if aerr != nil {
		return nil, aerr
	}
	countStr := p.str("SecondaryPrivateIpAddressCount")
	if len(want) > 0 && countStr != "" {
		return nil, errParamCombination("Specify either PrivateIpAddress or SecondaryPrivateIpAddressCount, not both")
	}
	if len(want) == 0 && countStr == "" {
		return nil, errMissing("PrivateIpAddress or SecondaryPrivateIpAddressCount")
	}
	count := 0
	if countStr != "" {
		n, err := strconv.Atoi(countStr)
		if err != nil || n < 1 || n > maxSecondaryIPs {
			return nil, errInvalidParam("Value (%s) for parameter secondaryPrivateIpAddressCount is invalid. Expecting a value between 1 and %d.", countStr, maxSecondaryIPs)
		}
		count = n
	}
	reassign, aerr := p.boolean("AllowReassignment", false)
	if aerr != nil {
		return nil, aerr
	}
	var ips []netip.Addr
	for _, s := range want {
		ip, aerr := parseAddrParam("privateIpAddress", s)
		if aerr != nil {
			return nil, aerr
		}
		if !slices.Contains(ips, ip) {
			ips = append(ips, ip)
		}
	}

	m.mutMu.Lock()
	defer m.mutMu.Unlock()

	type move struct {
		ip   netip.Addr
		from string // ENI losing it, "" for a free address
	}
	var moves []move
	m.mu.RLock()
	aerr = func() *APIError {
		e := m.enis[eniID]
		if e == nil {
			return errNotFound("InvalidNetworkInterfaceID.NotFound", "networkInterface", eniID)
		}
		s := m.subnets[e.subnetID]
		if count > 0 {
			for ip := s.cidr.Addr(); s.cidr.Contains(ip) && len(ips) < count; ip = ip.Next() {
				if owner, _ := m.ipOwnerLocked(ip); owner == nil && !reservedInSubnet(s, ip) {
					ips = append(ips, ip)
				}
			}
			if len(ips) < count {
				return apiErr(http.StatusBadRequest, "InsufficientFreeAddressesInSubnet", "The specified subnet does not have enough free addresses to satisfy the request.")
			}
		}
		for _, ip := range ips {
			if !s.cidr.Contains(ip) {
				return errInvalidParam("Address %s does not fall within the subnet's address range", ip)
			}
			if reservedInSubnet(s, ip) {
				return errInvalidParam("Address %s is reserved by AWS in subnet %s", ip, s.id)
			}
			owner, primary := m.ipOwnerLocked(ip)
			switch {
			case owner == e:
				continue // already there: nothing to do
			case owner == nil:
				moves = append(moves, move{ip: ip})
			case primary:
				return apiErr(http.StatusBadRequest, "PrivateIpAddressInUse", "Address %s is in use as the primary address of %s.", ip, owner.id)
			case !reassign:
				return apiErr(http.StatusBadRequest, "PrivateIpAddressInUse", "Address %s is in use.", ip)
			default:
				moves = append(moves, move{ip: ip, from: owner.id})
			}
		}
		if len(e.secondaries)+len(moves) > maxSecondaryIPs {
			return apiErr(http.StatusBadRequest, "PrivateIpAddressLimitExceeded", "Number of private addresses will exceed limit.")
		}
		return nil
	}()
	m.mu.RUnlock()
	if aerr != nil {
		return nil, aerr
	}

	var steps []step
	for _, mv := range moves {
		if mv.from != "" {
			steps = append(steps, step{
				name: fmt.Sprintf("remove %s from %s", mv.ip, mv.from),
				do:   func(ctx context.Context) error { return m.fabric.RemovePrivateIP(ctx, mv.from, mv.ip) },
				undo: func(ctx context.Context) error { return m.fabric.AddPrivateIP(ctx, mv.from, mv.ip) },
			})
		}
		steps = append(steps, step{
			name: fmt.Sprintf("add %s to %s", mv.ip, eniID),
			do:   func(ctx context.Context) error { return m.fabric.AddPrivateIP(ctx, eniID, mv.ip) },
			undo: func(ctx context.Context) error { return m.fabric.RemovePrivateIP(ctx, eniID, mv.ip) },
		})
	}
	if aerr := m.applySteps(ctx, "AssignPrivateIpAddresses", steps); aerr != nil {
		return nil, aerr
	}

	m.mu.Lock()
	e := m.enis[eniID]
	for _, mv := range moves {
		if from := m.enis[mv.from]; from != nil {
			from.secondaries = slices.DeleteFunc(from.secondaries, func(a netip.Addr) bool { return a == mv.ip })
			// An EIP on a moved secondary address moves with it.
			if a := m.eipOnLocked(from.id, mv.ip); a != nil {
				a.eniID = eniID
			}
		}
		e.secondaries = append(e.secondaries, mv.ip)
	}
	m.mu.Unlock()
	m.log.Info("ec2sim AssignPrivateIpAddresses", "eni", eniID, "addresses", ips, "moved", len(moves))

	resp := &assignPrivateIPsResp{NetworkInterfaceID: eniID}
	for _, ip := range ips {
		resp.Assigned = append(resp.Assigned, xAssignedAddr{PrivateIPAddress: ip.String()})
	}
	return resp, nil
}

func (m *Model) unassignPrivateIPAddresses(ctx context.Context, p params) (response, *APIError) {
	eniID, aerr := p.required("NetworkInterfaceId")
	if aerr != nil {
		return nil, aerr
	}
	if p.has("Ipv4Prefix.1") {
		return nil, apiErr(http.StatusBadRequest, "UnsupportedOperation", "The simulator does not support IPv4 prefixes")
	}
	raw, aerr := p.list("PrivateIpAddress")
	if aerr != nil {
		return nil, aerr
	}
	if len(raw) == 0 {
		return nil, errMissing("PrivateIpAddress")
	}
	var ips []netip.Addr
	for _, s := range raw {
		ip, aerr := parseAddrParam("privateIpAddress", s)
		if aerr != nil {
			return nil, aerr
		}
		if !slices.Contains(ips, ip) {
			ips = append(ips, ip)
		}
	}
	m.mutMu.Lock()
	defer m.mutMu.Unlock()

	var steps []step
	m.mu.RLock()
	e := m.enis[eniID]
	switch {
	case e == nil:
		aerr = errNotFound("InvalidNetworkInterfaceID.NotFound", "networkInterface", eniID)
	default:
		for _, ip := range ips {
			if ip == e.primary {
				aerr = errInvalidParam("The primary private IP address %s of %s cannot be unassigned", ip, eniID)
				break
			}
			if !slices.Contains(e.secondaries, ip) {
				aerr = errInvalidParam("Some of the specified addresses are not assigned to interface %s", eniID)
				break
			}
			// An EIP on the address is disassociated with it.
			if a := m.eipOnLocked(eniID, ip); a != nil {
				public, private := a.public, a.private
				steps = append(steps, step{
					name: fmt.Sprintf("unmap %s", public),
					do:   func(ctx context.Context) error { return m.fabric.UnmapPublicIP(ctx, public) },
					undo: func(ctx context.Context) error { return m.fabric.MapPublicIP(ctx, public, private) },
				})
			}
			steps = append(steps, step{
				name: fmt.Sprintf("remove %s from %s", ip, eniID),
				do:   func(ctx context.Context) error { return m.fabric.RemovePrivateIP(ctx, eniID, ip) },
				undo: func(ctx context.Context) error { return m.fabric.AddPrivateIP(ctx, eniID, ip) },
			})
		}
	}
	m.mu.RUnlock()
	if aerr != nil {
		return nil, aerr
	}
	if aerr := m.applySteps(ctx, "UnassignPrivateIpAddresses", steps); aerr != nil {
		return nil, aerr
	}
	m.mu.Lock()
	for _, ip := range ips {
		if a := m.eipOnLocked(eniID, ip); a != nil {
			a.assocID, a.eniID, a.private = "", "", netip.Addr{}
		}
	}
	e.secondaries = slices.DeleteFunc(e.secondaries, func(a netip.Addr) bool { return slices.Contains(ips, a) })
	m.mu.Unlock()
	m.log.Info("ec2sim UnassignPrivateIpAddresses", "eni", eniID, "addresses", ips)
	return &returnResp{Return: true}, nil
}

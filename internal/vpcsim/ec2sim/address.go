package ec2sim

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

func (m *Model) eipByPublicLocked(ip netip.Addr) *eip {
	for _, id := range m.eipIDs {
		if a := m.eips[id]; a.public == ip {
			return a
		}
	}
	return nil
}

func (m *Model) associateAddress(ctx context.Context, p params) (response, *APIError) {
	allocID, publicStr := p.str("AllocationId"), p.str("PublicIp")
	if allocID == "" && publicStr == "" {
		return nil, errMissing("AllocationId")
	}
	eniID, instID := p.str("NetworkInterfaceId"), p.str("InstanceId")
	if eniID == "" && instID == "" {
		return nil, apiErr(http.StatusBadRequest, "MissingParameter", "Either instance ID or network interface ID must be specified")
	}
	var private netip.Addr
	if s := p.str("PrivateIpAddress"); s != "" {
		var aerr *APIError
		if private, aerr = parseAddrParam("privateIpAddress", s); aerr != nil {
			return nil, aerr
		}
	}
	reassoc, aerr := p.boolean("AllowReassociation", false)
	if aerr != nil {
		return nil, aerr
	}

	m.mutMu.Lock()
	defer m.mutMu.Unlock()

	var (
		a     *eip
		e     *eni
		other *eip // another EIP already on the target private IP
	)
	m.mu.RLock()
	aerr = func() *APIError {
		if allocID != "" {
			if a = m.eips[allocID]; a == nil {
				return errNotFound("InvalidAllocationID.NotFound", "allocation", allocID)
			}
		} else {
			ip, err := netip.ParseAddr(publicStr)
			if err == nil {
				a = m.eipByPublicLocked(ip)
			}
			if a == nil {
				return apiErr(http.StatusBadRequest, "InvalidAddress.NotFound", "Address '%s' not found.", publicStr)
			}
		}
		if eniID != "" {
			if e = m.enis[eniID]; e == nil {
				return errNotFound("InvalidNetworkInterfaceID.NotFound", "networkInterface", eniID)
			}
			if instID != "" && e.instanceID != instID {
				return errParamCombination("Network interface %s is not attached to instance %s", eniID, instID)
			}
		} else {
			var aerr *APIError
			if e, aerr = m.instanceENILocked(instID); aerr != nil {
				return aerr
			}
		}
		if !private.IsValid() {
			private = e.primary
		}
		if !e.hasIP(private) {
			return errInvalidParam("The specified private IP address %s is not assigned to network interface %s", private, e.id)
		}
		if !m.vpcHasIGWLocked(e.vpcID) {
			return apiErr(http.StatusBadRequest, "Gateway.NotAttached", "Network %s is not attached to any internet gateway", e.vpcID)
		}
		if a.assocID != "" && !(a.eniID == e.id && a.private == private) && !reassoc {
			return apiErr(http.StatusBadRequest, "Resource.AlreadyAssociated", "resource %s is already associated with associate-id %s", a.allocID, a.assocID)
		}
		if o := m.eipOnLocked(e.id, private); o != nil && o != a {
			other = o
		}
		return nil
	}()
	if aerr != nil {
		m.mu.RUnlock()
		return nil, aerr
	}
	public, oldPrivate := a.public, a.privateOrZero()
	same := a.assocID != "" && a.eniID == e.id && a.private == private
	assocID := a.assocID
	var otherPublic, otherPrivate netip.Addr
	if other != nil {
		otherPublic, otherPrivate = other.public, other.private
	}
	m.mu.RUnlock()
	if same {
		return &associateAddressResp{AssociationID: assocID}, nil // already so: nothing to change
	}

	var steps []step
	if other != nil {
		steps = append(steps, step{
			name: fmt.Sprintf("unmap %s (replaced on %s)", otherPublic, private),
			do:   func(ctx context.Context) error { return m.fabric.UnmapPublicIP(ctx, otherPublic) },
			undo: func(ctx context.Context) error { return m.fabric.MapPublicIP(ctx, otherPublic, otherPrivate) },
		})
	}
	steps = append(steps, step{
		name: fmt.Sprintf("map %s to %s", public, private),
		do:   func(ctx context.Context) error { return m.fabric.MapPublicIP(ctx, public, private) },
		undo: func(ctx context.Context) error {
			if oldPrivate.IsValid() {
				return m.fabric.MapPublicIP(ctx, public, oldPrivate)
			}
			return m.fabric.UnmapPublicIP(ctx, public)
		},
	})
	if aerr := m.applySteps(ctx, "AssociateAddress", steps); aerr != nil {
		return nil, aerr
	}
	m.mu.Lock()
	if other != nil {
		other.assocID, other.eniID, other.private = "", "", netip.Addr{}
	}
	a.assocID, a.eniID, a.private = m.newID("eipassoc"), e.id, private
	assocID = a.assocID
	m.mu.Unlock()
	m.log.Info("ec2sim AssociateAddress", "allocation", a.allocID, "public_ip", public, "eni", e.id, "private_ip", private, "association", assocID)
	return &associateAddressResp{AssociationID: assocID}, nil
}

func (a *eip) privateOrZero() netip.Addr {
	if a == nil || a.assocID == "" {
		return netip.Addr{}
	}
	return a.private
}

func (m *Model) vpcHasIGWLocked(vpcID string) bool {
	for _, id := range m.igwIDs {
		if m.igws[id].vpcID == vpcID {
			return true
		}
	}
	return false
}

func (m *Model) disassociateAddress(ctx context.Context, p params) (response, *APIError) {
	assocID, publicStr := p.str("AssociationId"), p.str("PublicIp")
	if assocID == "" && publicStr == "" {
		return nil, errMissing("AssociationId")
	}
	m.mutMu.Lock()
	defer m.mutMu.Unlock()

	var a *eip
	m.mu.RLock()
	for _, id := range m.eipIDs {
		x := m.eips[id]
		if assocID != "" && x.assocID == assocID || assocID == "" && x.public.String() == publicStr {
			a = x
		}
	}
	var public, private netip.Addr
	if a != nil {
		public, private = a.public, a.private
	}
	associated := a != nil && a.assocID != ""
	m.mu.RUnlock()
	switch {
	case a == nil && assocID != "":
		if !strings.HasPrefix(assocID, "eipassoc-") {
			return nil, apiErr(http.StatusBadRequest, "InvalidAssociationID.Malformed", "Invalid id: \"%s\" (expecting \"eipassoc-...\")", assocID)
		}
		return nil, errNotFound("InvalidAssociationID.NotFound", "association", assocID)
	case a == nil:
		return nil, apiErr(http.StatusBadRequest, "InvalidAddress.NotFound", "Address '%s' not found.", publicStr)
	case !associated:
		// AWS answers success for an EIP that is not associated.
		return &returnResp{Return: true}, nil
	}
	if aerr := m.applySteps(ctx, "DisassociateAddress", []step{{
		name: fmt.Sprintf("unmap %s", public),
		do:   func(ctx context.Context) error { return m.fabric.UnmapPublicIP(ctx, public) },
	}}); aerr != nil {
		return nil, aerr
	}
	m.mu.Lock()
	a.assocID, a.eniID, a.private = "", "", netip.Addr{}
	m.mu.Unlock()
	m.log.Info("ec2sim DisassociateAddress", "allocation", a.allocID, "public_ip", public, "was_private_ip", private)
	return &returnResp{Return: true}, nil
}

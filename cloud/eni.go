package cloud

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// ENIInfo is what EC2 says about one network interface.
type ENIInfo struct {
	ID               string `json:"id"`
	SubnetID         string `json:"subnet_id"`
	VPCID            string `json:"vpc_id"`
	AvailabilityZone string `json:"availability_zone"`
	InstanceID       string `json:"instance_id,omitempty"` // "" when not attached
	MAC              string `json:"mac"`
	SourceDestCheck  bool   `json:"source_dest_check"`
	// PrivateIPs: primary first.
	PrivateIPs []netip.Addr `json:"private_ips"`
	// PublicIP of the primary private IP (EIP or auto-assigned); invalid
	// when it has none.
	PublicIP netip.Addr `json:"public_ip,omitzero"`
	// AllocationID of the EIP on the primary private IP ("" for an
	// auto-assigned public IP or none).
	AllocationID string `json:"allocation_id,omitempty"`
	// Associations: every public IP on the ENI, by private IP.
	Associations []Association `json:"associations,omitempty"`
}

// Association maps a private IP of an ENI to a public IP.
type Association struct {
	PrivateIP     netip.Addr `json:"private_ip"`
	PublicIP      netip.Addr `json:"public_ip"`
	AllocationID  string     `json:"allocation_id,omitempty"`  // "" for an auto-assigned public IP
	AssociationID string     `json:"association_id,omitempty"` // eipassoc-…
}

// Subnet is a VPC subnet.
type Subnet struct {
	ID    string       `json:"id"`
	VPCID string       `json:"vpc_id"`
	AZ    string       `json:"availability_zone"`
	CIDR  netip.Prefix `json:"cidr"`
}

// ENI describes one network interface.
func (c *EC2) ENI(ctx context.Context, eniID string) (ENIInfo, error) {
	if eniID == "" {
		return ENIInfo{}, errors.New("ec2 DescribeNetworkInterfaces: empty ENI id")
	}
	var resp *ec2.DescribeNetworkInterfacesOutput
	err := c.call(ctx, actDescribeNetworkInterfaces, eniID, func(ctx context.Context) (err error) {
		resp, err = c.api.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{NetworkInterfaceIds: []string{eniID}})
		return err
	})
	if err != nil {
		return ENIInfo{}, err
	}
	for _, n := range resp.NetworkInterfaces {
		if aws.ToString(n.NetworkInterfaceId) == eniID {
			return eniFrom(n), nil
		}
	}
	return ENIInfo{}, fmt.Errorf("ec2 DescribeNetworkInterfaces %s: not in the answer", eniID)
}

// SourceDestCheck reports whether the source/destination check is on.
func (c *EC2) SourceDestCheck(ctx context.Context, eniID string) (enabled bool, err error) {
	e, err := c.ENI(ctx, eniID)
	if err != nil {
		return false, err
	}
	return e.SourceDestCheck, nil
}

// confirmReads bounds the reads that confirm a change.
const confirmReads = 5

// DisableSourceDestCheck turns the source/destination check off, which a
// NAT needs (EC2 drops forwarded packets otherwise). It reads the check
// first and changes nothing when it is already off; after a change it
// reads it again until EC2 confirms it (the API is eventually consistent).
// changed reports whether ModifyNetworkInterfaceAttribute was called.
func (c *EC2) DisableSourceDestCheck(ctx context.Context, eniID string) (changed bool, err error) {
	on, err := c.SourceDestCheck(ctx, eniID)
	if err != nil {
		return false, err
	}
	if !on {
		return false, nil
	}
	err = c.call(ctx, actModifyNetworkInterfaceAttribute, eniID+" SourceDestCheck=false", func(ctx context.Context) error {
		_, err := c.api.ModifyNetworkInterfaceAttribute(ctx, &ec2.ModifyNetworkInterfaceAttributeInput{
			NetworkInterfaceId: aws.String(eniID),
			SourceDestCheck:    &types.AttributeBooleanValue{Value: aws.Bool(false)},
		})
		return err
	})
	if err != nil {
		return false, err
	}
	for i := range confirmReads {
		if i > 0 {
			if err := sleep(ctx, c.confirmDelay); err != nil {
				return true, fmt.Errorf("ec2 DescribeNetworkInterfaces %s: confirming the source/dest check is off: %w", eniID, err)
			}
		}
		on, err = c.SourceDestCheck(ctx, eniID)
		if err != nil {
			return true, fmt.Errorf("confirming the source/dest check is off: %w", err)
		}
		if !on {
			c.log.Info("source/dest check disabled", "eni", eniID)
			return true, nil
		}
	}
	return true, fmt.Errorf("ec2 DescribeNetworkInterfaces %s: source/dest check still enabled after ModifyNetworkInterfaceAttribute (%d reads)", eniID, confirmReads)
}

// AssociateEIP associates the Elastic IP allocationID with privateIP on
// eniID (an invalid privateIP means the ENI's primary), taking it from
// wherever it is now (AllowReassociation). Associating it where it already
// is succeeds and returns the existing association.
func (c *EC2) AssociateEIP(ctx context.Context, allocationID, eniID string, privateIP netip.Addr) (associationID string, err error) {
	if allocationID == "" || eniID == "" {
		return "", fmt.Errorf("ec2 AssociateAddress: empty allocation or ENI id (%q, %q)", allocationID, eniID)
	}
	in := &ec2.AssociateAddressInput{AllocationId: aws.String(allocationID), NetworkInterfaceId: aws.String(eniID),
		AllowReassociation: aws.Bool(true)}
	target := eniID
	if privateIP.IsValid() {
		in.PrivateIpAddress = aws.String(privateIP.String())
		target += " " + privateIP.String()
	}
	var resp *ec2.AssociateAddressOutput
	err = c.call(ctx, actAssociateAddress, allocationID+" -> "+target, func(ctx context.Context) (err error) {
		resp, err = c.api.AssociateAddress(ctx, in)
		return err
	})
	if err != nil {
		return "", err
	}
	id := aws.ToString(resp.AssociationId)
	c.log.Info("elastic IP associated", "allocation", allocationID, "eni", eniID, "private_ip", privateIP, "association", id)
	return id, nil
}

// MoveSecondaryIP assigns ip to eniID as a secondary private IP, taking it
// from the ENI that holds it now (AllowReassignment). An EIP associated
// with ip moves with it.
func (c *EC2) MoveSecondaryIP(ctx context.Context, eniID string, ip netip.Addr) error {
	if eniID == "" || !ip.Is4() {
		return fmt.Errorf("ec2 AssignPrivateIpAddresses: need an ENI id and an IPv4 address (got %q, %v)", eniID, ip)
	}
	err := c.call(ctx, actAssignPrivateIPAddresses, ip.String()+" -> "+eniID, func(ctx context.Context) error {
		_, err := c.api.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{
			NetworkInterfaceId: aws.String(eniID),
			PrivateIpAddresses: []string{ip.String()},
			AllowReassignment:  aws.Bool(true),
		})
		return err
	})
	if err != nil {
		return err
	}
	c.log.Info("secondary private IP assigned", "eni", eniID, "ip", ip)
	return nil
}

// AssignSecondaryIP gives eniID one more secondary private IP, one EC2
// picks from the ENI's subnet, and returns it.
func (c *EC2) AssignSecondaryIP(ctx context.Context, eniID string) (netip.Addr, error) {
	if eniID == "" {
		return netip.Addr{}, fmt.Errorf("ec2 AssignPrivateIpAddresses: no ENI id")
	}
	var got netip.Addr
	err := c.call(ctx, actAssignPrivateIPAddresses, "1 -> "+eniID, func(ctx context.Context) error {
		out, err := c.api.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{
			NetworkInterfaceId:             aws.String(eniID),
			SecondaryPrivateIpAddressCount: aws.Int32(1),
		})
		if err != nil {
			return err
		}
		for _, a := range out.AssignedPrivateIpAddresses {
			if ip, perr := netip.ParseAddr(aws.ToString(a.PrivateIpAddress)); perr == nil {
				got = ip
			}
		}
		return nil
	})
	if err != nil {
		return netip.Addr{}, err
	}
	if !got.IsValid() {
		return netip.Addr{}, fmt.Errorf("ec2 AssignPrivateIpAddresses on %s: no address in the answer", eniID)
	}
	c.log.Info("secondary private IP assigned", "eni", eniID, "ip", got)
	return got, nil
}

// SubnetsOf returns the CIDRs of the subnets associated with the route
// tables tableIDs (a zone's private subnets are those its NAT's route
// tables serve).
func (c *EC2) SubnetsOf(ctx context.Context, vpcID string, tableIDs []string) ([]netip.Prefix, error) {
	if len(tableIDs) == 0 {
		return nil, nil
	}
	rts, err := c.RouteTables(ctx, RouteTableFilter{IDs: tableIDs})
	if err != nil {
		return nil, err
	}
	subnets, err := c.Subnets(ctx, vpcID)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]netip.Prefix, len(subnets))
	for _, s := range subnets {
		byID[s.ID] = s.CIDR
	}
	var out []netip.Prefix
	for _, rt := range rts {
		for _, id := range rt.SubnetIDs {
			if p, ok := byID[id]; ok && !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return out, nil
}

// Subnets lists the subnets of vpcID, following pagination.
func (c *EC2) Subnets(ctx context.Context, vpcID string) ([]Subnet, error) {
	if vpcID == "" {
		return nil, errors.New("ec2 DescribeSubnets: empty VPC id")
	}
	in := &ec2.DescribeSubnetsInput{
		Filters:    []types.Filter{{Name: aws.String("vpc-id"), Values: []string{vpcID}}},
		MaxResults: aws.Int32(c.pageSize),
	}
	var out []Subnet
	for page := 0; ; page++ {
		if page >= maxPages {
			return nil, fmt.Errorf("ec2 DescribeSubnets vpc=%s: more than %d pages", vpcID, maxPages)
		}
		var resp *ec2.DescribeSubnetsOutput
		err := c.call(ctx, actDescribeSubnets, "vpc="+vpcID, func(ctx context.Context) (err error) {
			resp, err = c.api.DescribeSubnets(ctx, in)
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, s := range resp.Subnets {
			sub := Subnet{ID: aws.ToString(s.SubnetId), VPCID: aws.ToString(s.VpcId), AZ: aws.ToString(s.AvailabilityZone)}
			if p, err := netip.ParsePrefix(aws.ToString(s.CidrBlock)); err == nil {
				sub.CIDR = p.Masked()
			}
			out = append(out, sub)
		}
		next := aws.ToString(resp.NextToken)
		if next == "" {
			return out, nil
		}
		in.NextToken = aws.String(next)
	}
}

// InternetGateway returns the internet gateway attached to vpcID ("" when
// none is).
func (c *EC2) InternetGateway(ctx context.Context, vpcID string) (string, error) {
	if vpcID == "" {
		return "", errors.New("ec2 DescribeInternetGateways: empty VPC id")
	}
	var resp *ec2.DescribeInternetGatewaysOutput
	err := c.call(ctx, actDescribeInternetGateways, "attached to "+vpcID, func(ctx context.Context) (err error) {
		resp, err = c.api.DescribeInternetGateways(ctx, &ec2.DescribeInternetGatewaysInput{
			Filters: []types.Filter{{Name: aws.String("attachment.vpc-id"), Values: []string{vpcID}}},
		})
		return err
	})
	if err != nil {
		return "", err
	}
	for _, g := range resp.InternetGateways {
		for _, a := range g.Attachments {
			// VPC attachments of an IGW read "available" when attached.
			st := a.State
			if aws.ToString(a.VpcId) == vpcID && (st == types.AttachmentStatusAttached || st == "available") {
				return aws.ToString(g.InternetGatewayId), nil
			}
		}
	}
	return "", nil
}

func eniFrom(n types.NetworkInterface) ENIInfo {
	e := ENIInfo{
		ID:               aws.ToString(n.NetworkInterfaceId),
		SubnetID:         aws.ToString(n.SubnetId),
		VPCID:            aws.ToString(n.VpcId),
		AvailabilityZone: aws.ToString(n.AvailabilityZone),
		MAC:              aws.ToString(n.MacAddress),
		SourceDestCheck:  aws.ToBool(n.SourceDestCheck),
	}
	if n.Attachment != nil {
		e.InstanceID = aws.ToString(n.Attachment.InstanceId)
	}
	primary, _ := netip.ParseAddr(aws.ToString(n.PrivateIpAddress))
	if primary.IsValid() {
		e.PrivateIPs = append(e.PrivateIPs, primary)
	}
	for _, p := range n.PrivateIpAddresses {
		ip, err := netip.ParseAddr(aws.ToString(p.PrivateIpAddress))
		if err != nil {
			continue
		}
		if ip != primary {
			e.PrivateIPs = append(e.PrivateIPs, ip)
		}
		a := p.Association
		if a == nil {
			continue
		}
		pub, err := netip.ParseAddr(aws.ToString(a.PublicIp))
		if err != nil {
			continue
		}
		e.Associations = append(e.Associations, Association{PrivateIP: ip, PublicIP: pub,
			AllocationID: aws.ToString(a.AllocationId), AssociationID: aws.ToString(a.AssociationId)})
		if ip == primary || aws.ToBool(p.Primary) {
			e.PublicIP, e.AllocationID = pub, aws.ToString(a.AllocationId)
		}
	}
	if !e.PublicIP.IsValid() && n.Association != nil {
		if pub, err := netip.ParseAddr(aws.ToString(n.Association.PublicIp)); err == nil {
			e.PublicIP, e.AllocationID = pub, aws.ToString(n.Association.AllocationId)
		}
	}
	return e
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

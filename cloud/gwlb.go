package cloud

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
)

// gwlbInterfaceType is the interface type EC2 gives a Gateway Load
// Balancer's ENIs (requester-managed, described "ELB gwy/NAME/ID").
const gwlbInterfaceType = "gateway_load_balancer"

// GWLBAddrs returns the private IPv4 addresses of the Gateway Load
// Balancers' ENIs in vpcID, sorted: where a fleet member's GENEVE comes
// from (zero-config gwlb.addresses). It follows pagination.
func (c *EC2) GWLBAddrs(ctx context.Context, vpcID string) ([]netip.Addr, error) {
	if vpcID == "" {
		return nil, errors.New("ec2 DescribeNetworkInterfaces: GWLB ENIs: empty VPC id")
	}
	in := &ec2.DescribeNetworkInterfacesInput{
		Filters: []types.Filter{
			{Name: aws.String("vpc-id"), Values: []string{vpcID}},
			{Name: aws.String("interface-type"), Values: []string{gwlbInterfaceType}},
		},
		MaxResults: aws.Int32(c.pageSize),
	}
	var out []netip.Addr
	for page := 0; ; page++ {
		if page >= maxPages {
			return nil, fmt.Errorf("ec2 DescribeNetworkInterfaces vpc=%s interface-type=%s: more than %d pages", vpcID, gwlbInterfaceType, maxPages)
		}
		var resp *ec2.DescribeNetworkInterfacesOutput
		err := c.call(ctx, actDescribeNetworkInterfaces, "vpc="+vpcID+" interface-type="+gwlbInterfaceType, func(ctx context.Context) (err error) {
			resp, err = c.api.DescribeNetworkInterfaces(ctx, in)
			return err
		})
		if err != nil {
			return nil, err
		}
		for _, ni := range resp.NetworkInterfaces {
			if a, err := netip.ParseAddr(aws.ToString(ni.PrivateIpAddress)); err == nil && a.Is4() && !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
		next := aws.ToString(resp.NextToken)
		if next == "" {
			slices.SortFunc(out, netip.Addr.Compare)
			return out, nil
		}
		in.NextToken = aws.String(next)
	}
}

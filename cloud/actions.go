package cloud

import "strings"

// The EC2 operations hanat calls. Each wrapper passes one of these to
// EC2.call, and the client refuses any other operation before sending it.
const (
	actDescribeInternetGateways        = "DescribeInternetGateways"
	actDescribeNetworkInterfaces       = "DescribeNetworkInterfaces"
	actDescribeRouteTables             = "DescribeRouteTables"
	actDescribeSubnets                 = "DescribeSubnets"
	actModifyNetworkInterfaceAttribute = "ModifyNetworkInterfaceAttribute"
	actCreateRoute                     = "CreateRoute"
	actReplaceRoute                    = "ReplaceRoute"
	actAssociateAddress                = "AssociateAddress"
	actAssignPrivateIPAddresses        = "AssignPrivateIpAddresses"
)

// actions is the one list of the EC2 operations hanat calls, as IAM
// actions.
var actions = [...]string{
	"ec2:" + actDescribeInternetGateways,
	"ec2:" + actDescribeNetworkInterfaces,
	"ec2:" + actDescribeRouteTables,
	"ec2:" + actDescribeSubnets,
	"ec2:" + actModifyNetworkInterfaceAttribute,
	"ec2:" + actCreateRoute,
	"ec2:" + actReplaceRoute,
	"ec2:" + actAssociateAddress,
	"ec2:" + actAssignPrivateIPAddresses,
}

// Actions returns the IAM actions of every EC2 operation package cloud
// calls: exactly the actions packaging/iam-policy.json allows (a unit test
// keeps the two equal).
func Actions() []string { return append([]string(nil), actions[:]...) }

// isAction reports whether op (an EC2 operation name, no "ec2:" prefix) is
// one of Actions.
func isAction(op string) bool {
	for _, a := range actions {
		if strings.TrimPrefix(a, "ec2:") == op {
			return true
		}
	}
	return false
}

package cloud

import (
	"fmt"
	"strings"
)

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

	// CloudWatch: the one call of the optional metrics publisher. It has
	// no resource; the policy scopes it with a cloudwatch:namespace
	// condition.
	actPutMetricData = "cloudwatch:PutMetricData"
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
	actPutMetricData,
}

// Actions returns the IAM actions of every AWS operation package cloud
// calls (EC2, and CloudWatch's PutMetricData): exactly the actions packaging/iam-policy.json allows (a unit test
// keeps the two equal).
func Actions() []string { return append([]string(nil), actions[:]...) }

// isAction reports whether op (an EC2 operation name, no "ec2:" prefix) is
// one of Actions.
func isAction(op string) bool {
	for _, a := range actions {
		if ec2op, ok := strings.CutPrefix(a, "ec2:"); ok && ec2op == op {
			return true
		}
	}
	return false
}

// checkAction refuses an IAM action (service:Operation) that is not in
// Actions, before anything is sent.
func checkAction(action string) error {
	for _, a := range actions {
		if a == action {
			return nil
		}
	}
	return fmt.Errorf("cloud: %s is not one of the actions hanat's IAM policy allows", action)
}

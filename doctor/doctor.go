// Package doctor turns the seed article's troubleshooting checklist for a
// NAT instance into checks: each one passes or fails with the fix spelled
// out. It is pure: the daemon gathers the facts (from EC2, IMDS and the
// local datapath) and doctor judges them, so every verdict is unit-tested.
package doctor

import (
	"fmt"
	"slices"
	"strings"
)

// Status is a check's verdict.
type Status string

const (
	Pass Status = "pass"
	Fail Status = "fail"
	Warn Status = "warn"
	// Skip means the facts needed are unknown (off EC2, or IAM refused the
	// Describe call); the detail says why.
	Skip Status = "skip"
)

// Check is one line of the checklist.
type Check struct {
	ID     string `json:"id"`
	Title  string `json:"title"`
	Status Status `json:"status"`
	Detail string `json:"detail,omitempty"`
	Fix    string `json:"fix,omitempty"`
}

// RouteTable is what doctor needs of a VPC route table.
type RouteTable struct {
	ID string
	// AZs of the subnets associated with it (explicitly, or as the main table).
	AZs []string
	// DefaultRoute target: exactly one of these is set when a 0.0.0.0/0
	// route exists.
	DefaultGateway string // igw-…, nat-…, …
	DefaultENI     string // eni-…
	DefaultExists  bool
	Blackhole      bool
}

// Facts is everything the checklist looks at. Pointers are nil when the
// fact could not be learned; the reason is in the matching *Err field.
type Facts struct {
	OnEC2    bool
	IMDSErr  string
	VPCID    string
	SubnetID string
	AZ       string
	ENIID    string

	IGWAttached *bool
	IGWID       string
	IGWErr      string

	// SubnetRouteTable is the NAT's own subnet's table (explicit or main).
	SubnetRouteTable    *RouteTable
	SubnetRouteTableErr string

	PublicIP    string // EIP or auto-assigned public IPv4; "" = none
	PublicIPErr string

	SourceDestCheck    *bool
	SourceDestCheckErr string

	// PrivateRouteTables: tables in the VPC whose default route does not
	// go to an IGW.
	PrivateRouteTables    []RouteTable
	PrivateRouteTablesErr string
	// Owned lists route tables this node is meant to serve (home tables,
	// and tables taken over from a failed peer); nil = every private table
	// of this node's AZ.
	Owned []string

	IPForward    *bool
	TablePresent *bool
	TableName    string
}

// Run evaluates the checklist in the seed's order.
func Run(f Facts) []Check {
	checks := []Check{
		ec2Check(f),
		igwCheck(f),
		publicSubnetCheck(f),
		publicIPCheck(f),
		sourceDestCheck(f),
	}
	checks = append(checks, privateRouteChecks(f)...)
	checks = append(checks, ipForwardCheck(f), tableCheck(f))
	return checks
}

// OK reports whether no check failed.
func OK(checks []Check) bool {
	for _, c := range checks {
		if c.Status == Fail {
			return false
		}
	}
	return true
}

func ec2Check(f Facts) Check {
	c := Check{ID: "ec2", Title: "running on EC2 (IMDSv2 answers)"}
	if f.OnEC2 {
		c.Status = Pass
		c.Detail = fmt.Sprintf("VPC %s, subnet %s, AZ %s, ENI %s", f.VPCID, f.SubnetID, f.AZ, f.ENIID)
		return c
	}
	c.Status = Skip
	c.Detail = "no instance metadata: the AWS checks below are skipped"
	if f.IMDSErr != "" {
		c.Detail += " (" + f.IMDSErr + ")"
	}
	c.Fix = "on EC2, enable the metadata service with IMDSv2 (HttpTokens=required, hop limit 1 is enough for hanatd on the host)"
	return c
}

func unknown(c Check, why string) Check {
	c.Status = Skip
	c.Detail = "unknown: " + why
	if strings.Contains(why, "UnauthorizedOperation") || strings.Contains(why, "AccessDenied") {
		c.Fix = "allow the Describe call in the instance role (packaging/iam-policy.json)"
	}
	return c
}

func igwCheck(f Facts) Check {
	c := Check{ID: "igw-attached", Title: "an internet gateway is attached to the VPC"}
	switch {
	case !f.OnEC2:
		return unknown(c, "not on EC2")
	case f.IGWAttached == nil:
		return unknown(c, f.IGWErr)
	case *f.IGWAttached:
		c.Status, c.Detail = Pass, fmt.Sprintf("%s attached to %s", f.IGWID, f.VPCID)
	default:
		c.Status = Fail
		c.Detail = fmt.Sprintf("no internet gateway is attached to %s: nothing in the VPC can reach the internet", f.VPCID)
		c.Fix = fmt.Sprintf("aws ec2 create-internet-gateway, then aws ec2 attach-internet-gateway --vpc-id %s --internet-gateway-id igw-…", f.VPCID)
	}
	return c
}

func publicSubnetCheck(f Facts) Check {
	c := Check{ID: "nat-in-public-subnet", Title: "the NAT's subnet routes 0.0.0.0/0 to the internet gateway"}
	switch {
	case !f.OnEC2:
		return unknown(c, "not on EC2")
	case f.SubnetRouteTable == nil:
		return unknown(c, f.SubnetRouteTableErr)
	}
	rt := f.SubnetRouteTable
	switch {
	case rt.DefaultExists && !rt.Blackhole && strings.HasPrefix(rt.DefaultGateway, "igw-"):
		c.Status = Pass
		c.Detail = fmt.Sprintf("subnet %s uses %s: 0.0.0.0/0 → %s", f.SubnetID, rt.ID, rt.DefaultGateway)
	case rt.DefaultExists && rt.DefaultENI != "":
		c.Status = Fail
		c.Detail = fmt.Sprintf("subnet %s routes 0.0.0.0/0 to %s (%s): the NAT sits in a private subnet — the seed's common mistake", f.SubnetID, rt.DefaultENI, rt.ID)
		c.Fix = "launch the NAT in a public subnet (one whose route table sends 0.0.0.0/0 to the IGW)"
	default:
		c.Status = Fail
		target := "no 0.0.0.0/0 route"
		if rt.DefaultExists {
			target = "0.0.0.0/0 → " + firstNonEmpty(rt.DefaultGateway, rt.DefaultENI, "?")
			if rt.Blackhole {
				target += " (blackhole)"
			}
		}
		c.Detail = fmt.Sprintf("subnet %s uses %s with %s", f.SubnetID, rt.ID, target)
		c.Fix = fmt.Sprintf("aws ec2 create-route --route-table-id %s --destination-cidr-block 0.0.0.0/0 --gateway-id %s", rt.ID, firstNonEmpty(f.IGWID, "igw-…"))
	}
	return c
}

func publicIPCheck(f Facts) Check {
	c := Check{ID: "nat-public-ip", Title: "the NAT has a public IP or Elastic IP"}
	switch {
	case !f.OnEC2:
		return unknown(c, "not on EC2")
	case f.PublicIPErr != "":
		return unknown(c, f.PublicIPErr)
	case f.PublicIP != "":
		c.Status, c.Detail = Pass, "public IPv4 "+f.PublicIP
	default:
		c.Status = Fail
		c.Detail = fmt.Sprintf("ENI %s has no public IPv4: the IGW has nothing to map its traffic to", f.ENIID)
		c.Fix = fmt.Sprintf("aws ec2 allocate-address, then aws ec2 associate-address --allocation-id eipalloc-… --network-interface-id %s", f.ENIID)
	}
	return c
}

func sourceDestCheck(f Facts) Check {
	c := Check{ID: "source-dest-check", Title: "source/destination check is disabled on the NAT's ENI"}
	switch {
	case !f.OnEC2:
		return unknown(c, "not on EC2")
	case f.SourceDestCheck == nil:
		return unknown(c, f.SourceDestCheckErr)
	case !*f.SourceDestCheck:
		c.Status, c.Detail = Pass, fmt.Sprintf("disabled on %s", f.ENIID)
	default:
		c.Status = Fail
		c.Detail = fmt.Sprintf("enabled on %s: EC2 drops every packet the NAT forwards", f.ENIID)
		c.Fix = fmt.Sprintf("allow ec2:ModifyNetworkInterfaceAttribute in the instance role (hanatd disables it at start), or: aws ec2 modify-network-interface-attribute --network-interface-id %s --no-source-dest-check", f.ENIID)
	}
	return c
}

func privateRouteChecks(f Facts) []Check {
	base := Check{ID: "private-routes", Title: "private route tables send 0.0.0.0/0 to this NAT"}
	switch {
	case !f.OnEC2:
		return []Check{unknown(base, "not on EC2")}
	case f.PrivateRouteTablesErr != "":
		return []Check{unknown(base, f.PrivateRouteTablesErr)}
	}
	var out []Check
	for _, rt := range f.PrivateRouteTables {
		c := base
		c.ID = "private-route:" + rt.ID
		c.Title = fmt.Sprintf("route table %s sends 0.0.0.0/0 to this NAT", rt.ID)
		mine := rt.DefaultExists && !rt.Blackhole && rt.DefaultENI == f.ENIID
		sameAZ := slices.Contains(rt.AZs, f.AZ)
		owned := f.Owned == nil && sameAZ || slices.Contains(f.Owned, rt.ID)
		switch {
		case owned && mine && sameAZ:
			c.Status, c.Detail = Pass, fmt.Sprintf("0.0.0.0/0 → %s (AZ %s)", f.ENIID, f.AZ)
		case owned && mine:
			c.Status = Warn
			c.Detail = fmt.Sprintf("0.0.0.0/0 → %s, but its subnets are in %s and this NAT in %s: cross-AZ traffic is charged and fails with this AZ", f.ENIID, strings.Join(rt.AZs, ","), f.AZ)
			c.Fix = "run a NAT in each AZ and point each AZ's private table at its own NAT (an HA pair does this after failback)"
		case owned:
			c.Status = Fail
			c.Detail = fmt.Sprintf("0.0.0.0/0 → %s, not this NAT (%s)", describeTarget(rt), f.ENIID)
			c.Fix = fmt.Sprintf("aws ec2 replace-route --route-table-id %s --destination-cidr-block 0.0.0.0/0 --network-interface-id %s (create-route if it is missing)", rt.ID, f.ENIID)
		case mine:
			c.Status = Warn
			c.Detail = fmt.Sprintf("0.0.0.0/0 → this NAT although the table is not one it serves (subnets in %s)", strings.Join(rt.AZs, ","))
			c.Fix = "point it at the NAT of its own AZ, or list it among this node's route tables"
		default:
			continue // another AZ's table, served by another NAT: not ours to judge
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		c := base
		c.Status = Warn
		c.Detail = fmt.Sprintf("no private route table of AZ %s found in %s", f.AZ, f.VPCID)
		c.Fix = "associate the private subnets of this AZ with a route table whose 0.0.0.0/0 goes to this NAT's ENI"
		out = append(out, c)
	}
	return out
}

func describeTarget(rt RouteTable) string {
	switch {
	case !rt.DefaultExists:
		return "nothing (no default route)"
	case rt.Blackhole:
		return firstNonEmpty(rt.DefaultENI, rt.DefaultGateway, "?") + " (blackhole: its target is gone)"
	default:
		return firstNonEmpty(rt.DefaultENI, rt.DefaultGateway, "?")
	}
}

func ipForwardCheck(f Facts) Check {
	c := Check{ID: "ip-forward", Title: "IPv4 forwarding is on (net.ipv4.ip_forward=1)"}
	switch {
	case f.IPForward == nil:
		return unknown(c, "cannot read /proc/sys/net/ipv4/ip_forward")
	case *f.IPForward:
		c.Status = Pass
	default:
		c.Status = Fail
		c.Detail = "the kernel does not forward: nothing is NATed"
		c.Fix = "set sysctl.manage: true in hanat.yaml (default) and reload, or sysctl -w net.ipv4.ip_forward=1"
	}
	return c
}

func tableCheck(f Facts) Check {
	name := firstNonEmpty(f.TableName, "inet hanat")
	c := Check{ID: "nftables-table", Title: "hanat's nftables table " + name + " is present"}
	switch {
	case f.TablePresent == nil:
		return unknown(c, "cannot list nftables tables")
	case *f.TablePresent:
		c.Status = Pass
	default:
		c.Status = Fail
		c.Detail = "no NAT rules are installed"
		c.Fix = "hanatctl reload (hanatd also restores it within 10 s); check hanatd's log for the apply error"
	}
	return c
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

package cloud

import (
	"cmp"
	"context"

	"github.com/hanat/hanat/doctor"
)

// DoctorFacts gathers what the checklist knows of EC2. EC2 failures land
// in the facts (the check is skipped with the reason), never fail the
// report; the kernel's facts are the caller's to add.
func (n *Node) DoctorFacts(ctx context.Context) doctor.Facts {
	var f doctor.Facts
	if !n.OnEC2() {
		f.IMDSErr = n.message
		return f
	}
	eni := n.OutsideENI()
	f.OnEC2 = true
	f.VPCID, f.AZ, f.SubnetID, f.ENIID = n.inst.VPCID, n.inst.AvailabilityZone, eni.SubnetID, eni.ID
	if n.ec2 == nil {
		ec2Unknown(&f, "no EC2 API client: "+n.message)
		return f
	}
	facts, err := n.ec2.Facts(ctx, n.inst.VPCID, eni.SubnetID, eni.ID)
	if err != nil {
		ec2Unknown(&f, err.Error())
		return f
	}
	if facts.IGWErr == "" {
		f.IGWAttached = &facts.IGWAttached
		f.IGWID = facts.IGWID
	} else {
		f.IGWErr = facts.IGWErr
	}
	if facts.RouteTablesErr == "" && facts.SubnetsErr == "" {
		rt := facts.doctorTable(facts.SubnetRouteTable)
		f.SubnetRouteTable = &rt
		for _, rt := range facts.PrivateRouteTables {
			f.PrivateRouteTables = append(f.PrivateRouteTables, facts.doctorTable(rt))
		}
	} else {
		why := cmp.Or(facts.RouteTablesErr, facts.SubnetsErr)
		f.SubnetRouteTableErr, f.PrivateRouteTablesErr = why, why
	}
	if facts.NATENIErr == "" {
		sdc := facts.NATENI.SourceDestCheck
		f.SourceDestCheck = &sdc
		if facts.NATENI.PublicIP.IsValid() {
			f.PublicIP = facts.NATENI.PublicIP.String()
		}
	} else {
		f.SourceDestCheckErr, f.PublicIPErr = facts.NATENIErr, facts.NATENIErr
	}
	return f
}

// ec2Unknown skips every check that needs EC2, saying why.
func ec2Unknown(f *doctor.Facts, why string) {
	f.IGWErr, f.SubnetRouteTableErr, f.PublicIPErr, f.SourceDestCheckErr, f.PrivateRouteTablesErr = why, why, why, why, why
}

// doctorTable is a route table as the checklist sees it.
func (f VPCFacts) doctorTable(rt RouteTable) doctor.RouteTable {
	d := doctor.RouteTable{ID: rt.ID, AZs: f.AZsOf(rt)}
	if r, ok := rt.DefaultRoute(); ok {
		d.DefaultExists = true
		d.DefaultGateway = cmp.Or(r.GatewayID, r.NATGatewayID, r.InstanceID, r.OtherTarget)
		d.DefaultENI = r.NetworkInterfaceID
		d.Blackhole = r.State == RouteBlackhole
	}
	return d
}

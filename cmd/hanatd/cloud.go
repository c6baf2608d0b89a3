package main

import (
	"context"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/cloud"
	"github.com/hanat/hanat/datapath"
)

// bindOutside matches the outside interface (""; the one holding the
// default route) to its ENI by MAC: the source/dest check, the standby
// address and doctor need it.
func (d *daemon) bindOutside(ctx context.Context, iface string) {
	if !d.ec2.OnEC2() {
		return
	}
	if iface == "" {
		iface, _, _ = datapath.DefaultRoute(ctx, nil)
	}
	mac, err := datapath.HardwareAddr(iface)
	if err == nil {
		_, err = d.ec2.BindOutside(iface, mac)
	}
	if err != nil {
		d.log.Warn("cannot match the outside interface to an ENI; source/dest check and doctor need it", "err", err)
	}
}

// cloudStatus is the instance as the admin API shows it.
func cloudStatus(s cloud.NodeStatus) admin.CloudStatus {
	st := admin.CloudStatus{OnEC2: s.Instance != nil, Message: s.Message}
	if i := s.Instance; i != nil {
		st.InstanceID, st.Region, st.AvailabilityZone, st.VPCID = i.ID, i.Region, i.AvailabilityZone, i.VPCID
		st.ENIID, st.SubnetID, st.SourceDestCheck = s.ENI.ID, s.ENI.SubnetID, s.SourceDestCheck
		if s.PublicIP.IsValid() {
			st.PublicIP = s.PublicIP.String()
		}
	}
	return st
}

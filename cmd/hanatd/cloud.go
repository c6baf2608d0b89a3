package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/cloud"
	"github.com/hanat/hanat/config"
	"github.com/hanat/hanat/datapath"
	"github.com/hanat/hanat/doctor"
)

// imdsTimeout bounds discovery at start: on EC2 IMDS answers in
// milliseconds; off EC2 hanatd must not wait long to find out.
const imdsTimeout = 3 * time.Second

// ec2Node is hanatd's view of the EC2 instance it runs on. Nil fields mean
// off EC2 (or discovery turned off).
type ec2Node struct {
	log  *slog.Logger
	inst *cloud.Instance
	ec2  *cloud.EC2

	srcDst *cloud.SourceDestKeeper // nil without an EC2 client

	mu      sync.Mutex
	eni     cloud.ENI // the ENI of the outside interface
	iface   string    // the outside interface's name
	message string
}

// discoverEC2 asks IMDSv2 who we are. Off EC2 it returns a node whose
// message says so; that is not an error.
func discoverEC2(ctx context.Context, log *slog.Logger, cfg config.Cloud) *ec2Node {
	n := &ec2Node{log: log}
	if !cfg.Discover {
		n.message = "cloud.discover is false: running from the config file alone"
		log.Info(n.message)
		return n
	}
	c := cloud.NewIMDSClient(cloud.IMDSOptions{Endpoint: cfg.IMDSEndpoint, Timeout: time.Second})
	inst, err := cloud.Discover(ctx, c, imdsTimeout)
	if err != nil {
		if errors.Is(err, cloud.ErrNoIMDS) {
			n.message = "not on EC2 (no instance metadata service): running from the config file alone"
			log.Info(n.message, "detail", err)
		} else {
			n.message = "instance metadata discovery failed: running from the config file alone: " + err.Error()
			log.Warn(n.message)
		}
		return n
	}
	n.inst = inst
	log.Info("on EC2", "instance", inst.ID, "region", inst.Region, "az", inst.AvailabilityZone,
		"vpc", inst.VPCID, "vpc_cidrs", inst.VPCCIDRs, "enis", len(inst.ENIs))
	ec2c, err := cloud.NewEC2(ctx, log.With("component", "ec2"), cloud.EC2Options{Region: inst.Region, Endpoint: cfg.EC2Endpoint})
	if err != nil {
		n.message = "EC2 API client: " + err.Error()
		log.Warn("cannot create the EC2 API client; NAT works, the source/dest check and doctor's AWS checks do not", "err", err)
		return n
	}
	n.ec2 = ec2c
	n.srcDst = cloud.NewSourceDestKeeper(log, ec2c, func() string { return n.outsideENI().ID })
	return n
}

func (n *ec2Node) onEC2() bool { return n.inst != nil }

// vpcCIDRs is what an empty private_cidrs means on EC2.
func (n *ec2Node) vpcCIDRs() []netip.Prefix {
	if !n.onEC2() {
		return nil
	}
	return n.inst.VPCCIDRs
}

// bindOutside records which ENI the outside interface is (matched by MAC).
func (n *ec2Node) bindOutside(iface string) (cloud.ENI, error) {
	if !n.onEC2() {
		return cloud.ENI{}, errors.New("not on EC2")
	}
	l, err := netlink.LinkByName(iface)
	if err != nil {
		return cloud.ENI{}, fmt.Errorf("outside interface %s: %w", iface, err)
	}
	mac := l.Attrs().HardwareAddr.String()
	eni, ok := n.inst.ENIByMAC(mac)
	if !ok {
		return cloud.ENI{}, fmt.Errorf("outside interface %s (MAC %s) is not one of the instance's ENIs in IMDS", iface, mac)
	}
	n.mu.Lock()
	changed := n.eni.ID != eni.ID
	n.eni, n.iface = eni, iface
	n.mu.Unlock()
	if changed {
		n.log.Info("outside interface is an ENI", "iface", iface, "eni", eni.ID, "subnet", eni.SubnetID)
	}
	return eni, nil
}

func (n *ec2Node) outsideENI() cloud.ENI {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.eni
}

// ensureStandby finds or makes the standby address of a pair's node: a
// secondary private IP of the outside ENI (assigned when there is none),
// configured on the outside interface, where the peer's EIP goes when
// this node serves the peer's zone. Invalid off EC2 or when EC2 refuses.
func (n *ec2Node) ensureStandby(ctx context.Context) netip.Addr {
	eni := n.outsideENI()
	n.mu.Lock()
	iface := n.iface
	n.mu.Unlock()
	if !n.onEC2() || n.ec2 == nil || eni.ID == "" {
		return netip.Addr{}
	}
	info, err := n.ec2.ENI(ctx, eni.ID)
	if err != nil {
		n.log.Warn("no standby address: the peer's connections lose their public IP at a failover", "eni", eni.ID, "err", err)
		return netip.Addr{}
	}
	standby := cloud.StandbyIP(info)
	if !standby.IsValid() {
		standby, err = n.ec2.AssignSecondaryIP(ctx, eni.ID)
	}
	if err != nil {
		n.log.Warn("no standby address: the peer's connections lose their public IP at a failover", "eni", eni.ID, "err", err)
		return netip.Addr{}
	}
	if added, err := datapath.EnsureAddress(iface, standby); err != nil {
		n.log.Warn("standby address not on the interface", "iface", iface, "addr", standby, "err", err)
	} else if added {
		n.log.Info("standby address configured", "iface", iface, "addr", standby)
	}
	return standby
}

// ownAddrs is the outside ENI's primary private IP, as IMDS says.
func (n *ec2Node) ownAddrs() []netip.Addr {
	eni := n.outsideENI()
	if len(eni.PrivateIPs) == 0 {
		return nil
	}
	return eni.PrivateIPs[:1]
}

// keepSourceDestCheckOff runs the source/dest check keeper until ctx is
// done (nothing to do off EC2).
func (n *ec2Node) keepSourceDestCheckOff(ctx context.Context) {
	if n.onEC2() && n.srcDst != nil {
		n.srcDst.Run(ctx)
	}
}

func (n *ec2Node) status() admin.CloudStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := admin.CloudStatus{OnEC2: n.inst != nil, Message: n.message}
	if n.inst == nil {
		return st
	}
	st.InstanceID, st.Region, st.AvailabilityZone, st.VPCID = n.inst.ID, n.inst.Region, n.inst.AvailabilityZone, n.inst.VPCID
	st.ENIID, st.SubnetID = n.eni.ID, n.eni.SubnetID
	if len(n.eni.PublicIPs) > 0 {
		st.PublicIP = n.eni.PublicIPs[0].String()
	} else if n.inst.PublicIP.IsValid() {
		st.PublicIP = n.inst.PublicIP.String()
	}
	st.SourceDestCheck = "unknown: no EC2 API client"
	if n.srcDst != nil {
		st.SourceDestCheck = n.srcDst.State()
	}
	return st
}

// doctorFacts gathers what the checklist needs. EC2 failures land in the
// facts (the check is skipped with the reason), never fail the report.
func (n *ec2Node) doctorFacts(ctx context.Context) doctor.Facts {
	var f doctor.Facts
	if !n.onEC2() {
		if n != nil {
			f.IMDSErr = n.message
		}
		return f
	}
	eni := n.outsideENI()
	f.OnEC2 = true
	f.VPCID, f.AZ, f.SubnetID, f.ENIID = n.inst.VPCID, n.inst.AvailabilityZone, eni.SubnetID, eni.ID
	if n.ec2 == nil {
		why := "no EC2 API client: " + n.message
		f.IGWErr, f.SubnetRouteTableErr, f.PublicIPErr, f.SourceDestCheckErr, f.PrivateRouteTablesErr = why, why, why, why, why
		return f
	}
	facts, err := n.ec2.Facts(ctx, n.inst.VPCID, eni.SubnetID, eni.ID)
	if err != nil {
		why := err.Error()
		f.IGWErr, f.SubnetRouteTableErr, f.PublicIPErr, f.SourceDestCheckErr, f.PrivateRouteTablesErr = why, why, why, why, why
		return f
	}
	toDoctor := func(rt cloud.RouteTable) doctor.RouteTable {
		d := doctor.RouteTable{ID: rt.ID, AZs: facts.AZsOf(rt)}
		if r, ok := rt.DefaultRoute(); ok {
			d.DefaultExists = true
			d.DefaultGateway = firstOf(r.GatewayID, r.NATGatewayID, r.InstanceID, r.OtherTarget)
			d.DefaultENI = r.NetworkInterfaceID
			d.Blackhole = r.State == "blackhole"
		}
		return d
	}
	if facts.IGWErr == "" {
		f.IGWAttached = &facts.IGWAttached
		f.IGWID = facts.IGWID
	} else {
		f.IGWErr = facts.IGWErr
	}
	if facts.RouteTablesErr == "" && facts.SubnetsErr == "" {
		rt := toDoctor(facts.SubnetRouteTable)
		f.SubnetRouteTable = &rt
		for _, rt := range facts.PrivateRouteTables {
			f.PrivateRouteTables = append(f.PrivateRouteTables, toDoctor(rt))
		}
	} else {
		why := firstOf(facts.RouteTablesErr, facts.SubnetsErr)
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

func firstOf(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// readIPForward reads net.ipv4.ip_forward in hanatd's own namespace.
func readIPForward() *bool {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		return nil
	}
	on := strings.TrimSpace(string(b)) == "1"
	return &on
}

package cloud

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// imdsTimeout bounds discovery at start: on EC2 IMDS answers in
// milliseconds; off EC2 hanatd must not wait long to find out.
const imdsTimeout = 3 * time.Second

// NodeOptions configure DiscoverNode (the config's cloud section).
type NodeOptions struct {
	// Discover false: running from the config file alone, IMDS is not
	// asked.
	Discover     bool
	IMDSEndpoint string // "" is IMDS's own
	EC2Endpoint  string // "" is the region's
	// ManageSourceDestCheck: keep the outside ENI's source/dest check
	// off (false: leave it to the operator).
	ManageSourceDestCheck bool
}

// Node is the EC2 instance a NAT runs on, as IMDS and EC2 see it. Off EC2
// (or with discovery off) it is a node whose Message says why; that is
// not an error.
type Node struct {
	log    *slog.Logger
	inst   *Instance         // nil off EC2
	imds   *imds.Client      // nil off EC2
	ec2    *EC2              // nil without an EC2 client
	srcDst *SourceDestKeeper // nil: not managed, or no EC2 client
	// srcDstOff: the configuration leaves the check to the operator.
	srcDstOff bool
	message   string

	mu    sync.Mutex
	eni   ENI    // the ENI of the outside interface
	iface string // the outside interface's name
}

// DiscoverNode asks IMDSv2 who we are and builds the EC2 client.
func DiscoverNode(ctx context.Context, log *slog.Logger, o NodeOptions) *Node {
	n := &Node{log: log}
	if !o.Discover {
		n.message = "cloud.discover is false: running from the config file alone"
		log.Info(n.message)
		return n
	}
	c := NewIMDSClient(IMDSOptions{Endpoint: o.IMDSEndpoint, Timeout: time.Second})
	inst, err := Discover(ctx, c, imdsTimeout)
	if err != nil {
		if errors.Is(err, ErrNoIMDS) {
			n.message = "not on EC2 (no instance metadata service): running from the config file alone"
			log.Info(n.message, "detail", err)
		} else {
			n.message = "instance metadata discovery failed: running from the config file alone: " + err.Error()
			log.Warn(n.message)
		}
		return n
	}
	n.inst, n.imds = inst, c
	log.Info("on EC2", "instance", inst.ID, "region", inst.Region, "az", inst.AvailabilityZone,
		"vpc", inst.VPCID, "vpc_cidrs", inst.VPCCIDRs, "enis", len(inst.ENIs))
	ec2c, err := NewEC2(ctx, log.With("component", "ec2"), EC2Options{Region: inst.Region, Endpoint: o.EC2Endpoint})
	if err != nil {
		n.message = "EC2 API client: " + err.Error()
		log.Warn("cannot create the EC2 API client; NAT works, the source/dest check and doctor's AWS checks do not", "err", err)
		return n
	}
	n.ec2 = ec2c
	if !o.ManageSourceDestCheck {
		n.srcDstOff = true
		log.Info("the source/dest check is left as it is (cloud.manage_source_dest_check is false)")
		return n
	}
	n.srcDst = NewSourceDestKeeper(log, ec2c, func() string { return n.OutsideENI().ID })
	return n
}

// OnEC2 reports whether IMDS answered.
func (n *Node) OnEC2() bool { return n.inst != nil }

// TargetLifecycleState is the instance's Auto Scaling target lifecycle
// state now ("": in no Auto Scaling group), read within imdsTimeout.
func (n *Node) TargetLifecycleState(ctx context.Context) (string, error) {
	if n.imds == nil {
		return "", errors.New("target lifecycle state: not on EC2")
	}
	ctx, cancel := context.WithTimeout(ctx, imdsTimeout)
	defer cancel()
	return TargetLifecycleState(ctx, n.imds)
}

// Instance is what IMDS said (nil off EC2).
func (n *Node) Instance() *Instance { return n.inst }

// EC2 is the node's EC2 client (nil off EC2 or when it could not be
// made; Message says why).
func (n *Node) EC2() *EC2 { return n.ec2 }

// Message says why the node is not on EC2 or has no EC2 client.
func (n *Node) Message() string { return n.message }

// VPCCIDRs is what an empty private_cidrs means on EC2.
func (n *Node) VPCCIDRs() []netip.Prefix {
	if !n.OnEC2() {
		return nil
	}
	return n.inst.VPCCIDRs
}

// BindOutside records which ENI the outside interface iface (of MAC mac)
// is.
func (n *Node) BindOutside(iface, mac string) (ENI, error) {
	if !n.OnEC2() {
		return ENI{}, errors.New("not on EC2")
	}
	eni, ok := n.inst.ENIByMAC(mac)
	if !ok {
		return ENI{}, fmt.Errorf("outside interface %s (MAC %s) is not one of the instance's ENIs in IMDS", iface, mac)
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

// OutsideENI is the ENI of the outside interface (zero before
// BindOutside).
func (n *Node) OutsideENI() ENI {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.eni
}

// OutsideIface is the outside interface BindOutside last matched.
func (n *Node) OutsideIface() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.iface
}

// OwnAddrs is the outside ENI's primary private IP, as IMDS says.
func (n *Node) OwnAddrs() []netip.Addr {
	eni := n.OutsideENI()
	if len(eni.PrivateIPs) == 0 {
		return nil
	}
	return eni.PrivateIPs[:1]
}

// EnsureStandby finds or makes the standby address of a pair's node: a
// secondary private IP of the outside ENI (assigned when there is none),
// where the peer's EIP goes when this node serves the peer's zone (the
// caller configures it on the interface). Invalid off EC2 or when EC2
// refuses.
func (n *Node) EnsureStandby(ctx context.Context) netip.Addr {
	eni := n.OutsideENI()
	if !n.OnEC2() || n.ec2 == nil || eni.ID == "" {
		return netip.Addr{}
	}
	info, err := n.ec2.ENI(ctx, eni.ID)
	if err != nil {
		n.log.Warn("no standby address: the peer's connections lose their public IP at a failover", "eni", eni.ID, "err", err)
		return netip.Addr{}
	}
	if standby := StandbyIP(info); standby.IsValid() {
		return standby
	}
	standby, err := n.ec2.AssignSecondaryIP(ctx, eni.ID)
	if err != nil {
		n.log.Warn("no standby address: the peer's connections lose their public IP at a failover", "eni", eni.ID, "err", err)
		return netip.Addr{}
	}
	return standby
}

// KeepSourceDestCheckOff runs the source/dest check keeper until ctx is
// done (nothing to do off EC2).
func (n *Node) KeepSourceDestCheckOff(ctx context.Context) {
	if n.OnEC2() && n.srcDst != nil {
		n.srcDst.Run(ctx)
	}
}

// NodeStatus is the node for status: the instance (nil off EC2), the
// outside ENI and the source/dest check keeper's state.
type NodeStatus struct {
	Message         string
	Instance        *Instance
	ENI             ENI
	PublicIP        netip.Addr // the ENI's, else the instance's
	SourceDestCheck string
}

// Status is the node's state.
func (n *Node) Status() NodeStatus {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := NodeStatus{Message: n.message, Instance: n.inst}
	if n.inst == nil {
		return st
	}
	st.ENI = n.eni
	if len(n.eni.PublicIPs) > 0 {
		st.PublicIP = n.eni.PublicIPs[0]
	} else {
		st.PublicIP = n.inst.PublicIP
	}
	st.SourceDestCheck = "unknown: no EC2 API client"
	if n.srcDstOff {
		st.SourceDestCheck = "not managed: cloud.manage_source_dest_check is false"
	}
	if n.srcDst != nil {
		st.SourceDestCheck = n.srcDst.State()
	}
	return st
}

// SubnetsOf is the subnets of route tables of the node's VPC.
func (n *Node) SubnetsOf(ctx context.Context, tables []string) ([]netip.Prefix, error) {
	if n.ec2 == nil {
		return nil, errors.New("no EC2 API client: " + n.message)
	}
	return n.ec2.SubnetsOf(ctx, n.inst.VPCID, tables)
}

// UpstreamTargets are what a NAT node of region checks its way out with
// when the configuration names none: an AWS endpoint outside the VPC and
// the region's EC2 API, both reached through the internet gateway.
func UpstreamTargets(region string) []string {
	return []string{"checkip.amazonaws.com:443", "ec2." + region + ".amazonaws.com:443"}
}

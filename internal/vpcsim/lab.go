// Package vpcsim builds the seed's VPC on one machine out of network
// namespaces, for hanat's end-to-end tests, benchmarks and demo:
//
//	instances (one namespace each, ENIs eth0…)
//	    │ veth, one bridge per subnet, gateway .1
//	router  (policy-routing table per route table, source/dest check per ENI,
//	    │    IMDS 169.254.169.254:80, EC2 API 169.254.169.253:8773)
//	igw     (1:1 NAT public ⇄ private, unmapped private sources dropped)
//	    │
//	internet (203.0.113.10: HTTP :80, UDP echo :7, TCP discard :9, chargen :19)
//
// The VPC model, the EC2 Query API and IMDSv2 live in the ec2sim package;
// this package implements its Fabric, so every accepted API mutation
// (ReplaceRoute, AssociateAddress, source/dest check, private IPs) changes
// the namespaces for real. Everything the lab creates carries its prefix
// and lives in its own namespaces; the host only gets a loopback listener
// for the EC2 API.
//
// Addressing: VPC 10.0.0.0/16; public subnets 10.0.1.0/24 (AZ a) and
// 10.0.2.0/24 (AZ c), private 10.0.11.0/24 (a) and 10.0.12.0/24 (c); the
// router reaches the IGW over 192.0.2.0/30; EIPs come from 198.51.100.0/24
// (NAT instances 198.51.100.10…, spare EIPs 198.51.100.100…); the internet
// is 203.0.113.0/24 (IGW .1, server .10).
//
// Initial routes: the public route table has 0.0.0.0/0 → IGW; the private
// route tables hold only the local route (no 0.0.0.0/0, so a private host
// has no route to the internet and the router answers "net unreachable")
// until a NAT claims them with CreateRoute, unless
// Options.PointPrivateRoutesAtNATs points each at its AZ's NAT ENI.
package vpcsim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"

	"github.com/hanat/hanat/internal/netns"
	"github.com/hanat/hanat/internal/vpcsim/ec2sim"
)

// Fixed facts of the simulated VPC.
const (
	DefaultRegion = "us-sim-1"
	// IMDSAddr is where every instance reaches IMDSv2 (on the router).
	IMDSAddr = "169.254.169.254:80"
	// VPCEC2Addr is where every instance reaches the EC2 API (on the router,
	// like an interface VPC endpoint).
	VPCEC2Addr = "169.254.169.253:8773"
	// VPCAutoScalingAddr is where every instance reaches the Auto Scaling
	// API (on the router beside EC2's).
	VPCAutoScalingAddr = "169.254.169.253:8774"
	// MaxNATInstances bounds Options.NATInstances.
	MaxNATInstances = 8
)

// TestCredentials are the fixed access keys the lab's EC2 API accepts
// unless Options.Credentials says otherwise. They are not AWS keys.
var TestCredentials = ec2sim.Credentials{
	AccessKeyID:     "AKIAHANATLABTEST0000",
	SecretAccessKey: "hanat-lab-test-secret-not-an-aws-key",
}

var (
	vpcCIDR     = netip.MustParsePrefix("10.0.0.0/16")
	rtrIGWAddr  = netip.MustParsePrefix("192.0.2.1/30")
	igwRtrAddr  = netip.MustParsePrefix("192.0.2.2/30")
	igwInetAddr = netip.MustParsePrefix("203.0.113.1/24")
	inetAddr    = netip.MustParsePrefix("203.0.113.10/24")
	imdsIP      = netip.MustParseAddr("169.254.169.254")
	vpcEC2IP    = netip.MustParseAddr("169.254.169.253")
)

// Options configure Up. The zero value is the seed's layout with two NAT
// instances.
type Options struct {
	// Prefix names everything the lab creates (namespaces "<prefix>-…",
	// links, nftables tables). 2–8 lower-case letters or digits, starting
	// with a letter; "" picks "hnl" + 4 random hex digits.
	Prefix string
	// NATInstances is how many NAT-capable instances to create in the
	// public subnets, alternating AZs: nat-a (public-a), nat-c (public-c),
	// nat-a2, nat-c2, … each with an EIP. 0 means 2; -1 means none.
	NATInstances int
	// PointPrivateRoutesAtNATs adds 0.0.0.0/0 → the same AZ's NAT ENI (or
	// the first NAT when that AZ has none) to each private route table.
	PointPrivateRoutesAtNATs bool
	// NATSecondENI gives each NAT instance a second ENI, eth1, in the
	// private subnet of its AZ (10.0.11.20…, 10.0.12.20…): a two-armed NAT.
	NATSecondENI bool
	// SpareEIPs allocates this many unassociated EIPs (198.51.100.100…).
	SpareEIPs int
	// Region defaults to DefaultRegion; the AZs are <region>a and <region>c.
	Region string
	// Credentials default to TestCredentials.
	Credentials ec2sim.Credentials
	// GWLB, when set, adds a Gateway Load Balancer with an endpoint per AZ
	// (see GWLBOptions).
	GWLB *GWLBOptions
}

var prefixRE = regexp.MustCompile(`^[a-z][a-z0-9]{1,7}$`)

// ValidatePrefix reports whether p can name a lab.
func ValidatePrefix(p string) error {
	if !prefixRE.MatchString(p) {
		return fmt.Errorf("lab prefix %q: want 2-8 lower-case letters or digits starting with a letter", p)
	}
	return nil
}

// RandomPrefix returns "hnl" followed by 4 random hex digits.
func RandomPrefix() string {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return "hnl" + hex.EncodeToString(b[:])
}

// Instance is one simulated EC2 instance. ENIID, PrivateIP and MAC are its
// primary ENI's (eth0); PublicIP is the EIP currently mapped to PrivateIP at
// the IGW (invalid when none). ENIs lists all of them by device index.
type Instance struct {
	Name      string
	ID        string
	ENIID     string
	PrivateIP netip.Addr
	PublicIP  netip.Addr
	MAC       net.HardwareAddr
	Subnet    string // e.g. "public-a"
	AZ        string
	NS        *netns.NS
	ENIs      []ENI
}

// ENI is one network interface of an instance as it is now.
type ENI struct {
	ID              string
	Device          string // inside the instance: eth0, eth1 …
	RouterPort      string // the bridge port in the router namespace
	Subnet          string
	MAC             net.HardwareAddr
	PrimaryIP       netip.Addr
	SecondaryIPs    []netip.Addr
	PublicIP        netip.Addr // mapped to PrimaryIP at the IGW, if any
	SourceDestCheck bool
}

// Internet is the namespace behind the IGW and its test servers, all on
// 203.0.113.10: HTTP (:80, the body is the client's source IP and a newline),
// UDP echo (:7), TCP discard (:9) and TCP chargen (:19, streams until the
// client closes).
type Internet struct {
	NS          *netns.NS
	Addr        netip.Addr
	HTTPAddr    netip.AddrPort
	UDPEchoAddr netip.AddrPort
	DiscardAddr netip.AddrPort
	ChargenAddr netip.AddrPort
}

// HTTPURL is the internet HTTP server's URL.
func (i *Internet) HTTPURL() string { return "http://" + i.HTTPAddr.String() + "/" }

type subnetInfo struct {
	name   string // public-a …
	az     string // full AZ name
	cidr   netip.Prefix
	gw     netip.Addr
	bridge string
	public bool
	id     string
	rtb    string // route table name
	brIdx  int
}

type rtbInfo struct {
	name    string
	id      string
	table   int
	main    bool
	subnets []string
}

type eniState struct {
	id          string
	inst        *instState
	dev         string // inside the instance: eth0 …
	port        string // router side, a port of the subnet's bridge
	subnet      *subnetInfo
	mac         net.HardwareAddr
	primary     netip.Addr
	secondaries []netip.Addr
	check       bool
}

func (e *eniState) ips() []netip.Addr { return append([]netip.Addr{e.primary}, e.secondaries...) }

type instState struct {
	name    string
	id      string
	subnet  *subnetInfo
	ns      *netns.NS
	h       *netlink.Handle
	enis    []*eniState
	stopped bool
}

type eipInfo struct {
	allocID string
	public  netip.Addr
}

type partition struct {
	A, B  string
	Proto string
	Port  uint16
}

// Lab is a running simulated VPC. Its methods are safe for concurrent use.
type Lab struct {
	log    *slog.Logger
	prefix string
	region string
	creds  ec2sim.Credentials
	model  *ec2sim.Model

	router, igw, inet *netns.NS
	rtrH, igwH        *netlink.Handle
	r2iIdx            int

	vpcID, igwID string
	subnets      []*subnetInfo
	rtbs         []*rtbInfo
	insts        []*instState
	eips         []eipInfo
	ports        int // router-side ENI ports created (names <prefix>-e<n>)
	internet     *Internet
	seen         *serverSources

	hostEC2URL string
	servers    []*http.Server
	closers    []func()
	wg         sync.WaitGroup

	// mu guards the network state below and serializes netlink and
	// nftables changes.
	mu         sync.Mutex
	enis       map[string]*eniState
	maps       map[netip.Addr]netip.Addr // IGW: public → private
	partitions []partition
	procs      map[*Process]struct{}
	vpces      map[string]*subnetInfo // GWLB endpoint id → its subnet

	gwlb *gwlbState // nil without Options.GWLB

	closeOnce sync.Once
	closeErr  error
}

// Up builds a lab: it first removes leftovers of the same prefix, then
// creates the namespaces, the model, the network and the HTTP servers. On
// error everything created is removed again.
func Up(ctx context.Context, log *slog.Logger, opts Options) (*Lab, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Prefix == "" {
		opts.Prefix = RandomPrefix()
	}
	if err := ValidatePrefix(opts.Prefix); err != nil {
		return nil, fmt.Errorf("vpcsim.Up: %w", err)
	}
	switch {
	case opts.NATInstances == 0:
		opts.NATInstances = 2
	case opts.NATInstances == -1:
		opts.NATInstances = 0
	case opts.NATInstances < 0 || opts.NATInstances > MaxNATInstances:
		return nil, fmt.Errorf("vpcsim.Up: NATInstances %d: want -1 (none), 0 (default 2) or 1..%d", opts.NATInstances, MaxNATInstances)
	}
	if opts.SpareEIPs < 0 || opts.SpareEIPs > 50 {
		return nil, fmt.Errorf("vpcsim.Up: SpareEIPs %d: want 0..50", opts.SpareEIPs)
	}
	if opts.GWLB != nil && opts.GWLB.PointPrivateRoutes && opts.PointPrivateRoutesAtNATs {
		return nil, fmt.Errorf("vpcsim.Up: GWLB.PointPrivateRoutes and PointPrivateRoutesAtNATs both claim the private route tables")
	}
	if opts.Region == "" {
		opts.Region = DefaultRegion
	}
	if opts.Credentials == (ec2sim.Credentials{}) {
		opts.Credentials = TestCredentials
	}
	if err := Cleanup(opts.Prefix); err != nil {
		return nil, fmt.Errorf("vpcsim.Up: remove leftovers of %q: %w", opts.Prefix, err)
	}
	l := &Lab{
		log:    log.With("lab", opts.Prefix),
		prefix: opts.Prefix,
		region: opts.Region,
		creds:  opts.Credentials,
		enis:   map[string]*eniState{},
		maps:   map[netip.Addr]netip.Addr{},
		procs:  map[*Process]struct{}{},
		vpces:  map[string]*subnetInfo{},
	}
	l.model = ec2sim.NewModel(opts.Region, l.log.With("component", "ec2sim"), &fabric{l: l})
	if err := l.build(ctx, opts); err != nil {
		cerr := l.Close(context.WithoutCancel(ctx))
		return nil, errors.Join(fmt.Errorf("vpcsim.Up(%q): %w", opts.Prefix, err), cerr)
	}
	l.log.Info("lab up", "ec2_endpoint", l.hostEC2URL, "instances", len(l.insts))
	return l, nil
}

// Prefix is the lab's name prefix.
func (l *Lab) Prefix() string { return l.prefix }

// Region is the simulated region.
func (l *Lab) Region() string { return l.region }

// Model is the lab's VPC model.
func (l *Lab) Model() *ec2sim.Model { return l.model }

// Credentials are the access keys the EC2 API accepts.
func (l *Lab) Credentials() ec2sim.Credentials { return l.creds }

// EC2Endpoint is the EC2 API's URL on host loopback (tests, the CLI).
func (l *Lab) EC2Endpoint() string { return l.hostEC2URL }

// VPCEndpoint is the EC2 API's URL for use inside instances.
func (l *Lab) VPCEndpoint() string { return "http://" + VPCEC2Addr + "/" }

// VPCAutoScalingEndpoint is the Auto Scaling API's URL for use inside
// instances.
func (l *Lab) VPCAutoScalingEndpoint() string { return "http://" + VPCAutoScalingAddr + "/" }

// IMDSEndpoint is IMDS's URL for use inside instances.
func (l *Lab) IMDSEndpoint() string { return "http://" + imdsIP.String() + "/" }

// Env is the environment a process inside an instance needs to reach the
// lab's EC2 API with the AWS SDK (standing in for an instance role):
// credentials, region and the in-VPC EC2 and Auto Scaling endpoints.
func (l *Lab) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + l.creds.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY=" + l.creds.SecretAccessKey,
		"AWS_REGION=" + l.region,
		"AWS_ENDPOINT_URL_EC2=" + l.VPCEndpoint(),
		"AWS_ENDPOINT_URL_AUTO_SCALING=" + l.VPCAutoScalingEndpoint(),
	}
}

// Internet is the namespace behind the IGW with its test servers.
func (l *Lab) Internet() *Internet { return l.internet }

// RouterNS is the VPC router's namespace (bridges, route tables, IMDS).
func (l *Lab) RouterNS() *netns.NS { return l.router }

// IGWNS is the internet gateway's namespace.
func (l *Lab) IGWNS() *netns.NS { return l.igw }

// VPCID and IGWID are the model's ids of the VPC and its internet gateway.
func (l *Lab) VPCID() string { return l.vpcID }
func (l *Lab) IGWID() string { return l.igwID }

// RouteTableID returns the id of the route table named "main", "public",
// "private-a" or "private-c", or "" when there is none.
func (l *Lab) RouteTableID(name string) string {
	for _, r := range l.rtbs {
		if r.name == name {
			return r.id
		}
	}
	return ""
}

// SubnetID returns the id of subnet "public-a", "public-c", "private-a" or
// "private-c", or "".
func (l *Lab) SubnetID(name string) string {
	for _, s := range l.subnets {
		if s.name == name {
			return s.id
		}
	}
	return ""
}

// SpareEIPs returns the allocation ids and addresses of the EIPs created
// unassociated (Options.SpareEIPs), in order.
func (l *Lab) SpareEIPs() (allocIDs []string, publics []netip.Addr) {
	for _, e := range l.eips {
		if e.public.As4()[3] >= 100 {
			allocIDs = append(allocIDs, e.allocID)
			publics = append(publics, e.public)
		}
	}
	return allocIDs, publics
}

// EIPAllocationID returns the allocation id of the EIP public, or "".
func (l *Lab) EIPAllocationID(public netip.Addr) string {
	for _, e := range l.eips {
		if e.public == public {
			return e.allocID
		}
	}
	return ""
}

// Instances returns the instance names in creation order.
func (l *Lab) Instances() []string {
	names := make([]string, len(l.insts))
	for i, in := range l.insts {
		names[i] = in.name
	}
	return names
}

// Instance returns the instance called name (nat-a, nat-c, app-a, app-c, …)
// with its current public IP, or nil.
func (l *Lab) Instance(name string) *Instance {
	in := l.inst(name)
	if in == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	e := in.enis[0]
	out := &Instance{Name: in.name, ID: in.id, ENIID: e.id, PrivateIP: e.primary, MAC: slices.Clone(e.mac),
		Subnet: in.subnet.name, AZ: in.subnet.az, NS: in.ns}
	for _, e := range in.enis {
		x := ENI{ID: e.id, Device: e.dev, RouterPort: e.port, Subnet: e.subnet.name, MAC: slices.Clone(e.mac),
			PrimaryIP: e.primary, SecondaryIPs: slices.Clone(e.secondaries), SourceDestCheck: e.check}
		for pub, priv := range l.maps {
			if priv == e.primary {
				x.PublicIP = pub
			}
		}
		out.ENIs = append(out.ENIs, x)
	}
	out.PublicIP = out.ENIs[0].PublicIP
	return out
}

func (l *Lab) inst(name string) *instState {
	for _, in := range l.insts {
		if in.name == name {
			return in
		}
	}
	return nil
}

// Close stops the servers and processes and removes every namespace, link
// and rule of the lab. It is idempotent.
func (l *Lab) Close(ctx context.Context) error {
	l.closeOnce.Do(func() {
		var errs []error
		for _, s := range l.servers {
			_ = s.Close()
		}
		for _, c := range l.closers {
			c()
		}
		l.wg.Wait()
		l.mu.Lock()
		procs := make([]*Process, 0, len(l.procs))
		for p := range l.procs {
			procs = append(procs, p)
		}
		l.mu.Unlock()
		for _, p := range procs {
			p.Kill()
		}
		for _, p := range procs {
			p.waitBounded(ctx)
		}
		for _, in := range l.insts {
			if in.h != nil {
				in.h.Close()
			}
		}
		if l.rtrH != nil {
			l.rtrH.Close()
		}
		if l.igwH != nil {
			l.igwH.Close()
		}
		if l.gwlb != nil && l.gwlb.h != nil {
			l.gwlb.h.Close()
		}
		// Cleanup kills what still runs in the namespaces before deleting
		// them; closing our handles afterwards only releases the fds.
		if err := Cleanup(l.prefix); err != nil {
			errs = append(errs, err)
		}
		for _, ns := range l.allNS() {
			if err := ns.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		l.closeErr = errors.Join(errs...)
		l.log.Info("lab down", "err", l.closeErr)
	})
	return l.closeErr
}

func (l *Lab) allNS() []*netns.NS {
	var out []*netns.NS
	gw := (*netns.NS)(nil)
	if l.gwlb != nil {
		gw = l.gwlb.ns
	}
	for _, ns := range []*netns.NS{l.router, l.igw, l.inet, gw} {
		if ns != nil {
			out = append(out, ns)
		}
	}
	for _, in := range l.insts {
		if in.ns != nil {
			out = append(out, in.ns)
		}
	}
	return out
}

package ec2sim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Fabric applies model changes to the real (simulated) network. Called with
// the model's lock NOT held.
type Fabric interface {
	SetRoute(ctx context.Context, routeTableID string, dst netip.Prefix, t RouteTarget) error // create or replace
	DeleteRoute(ctx context.Context, routeTableID string, dst netip.Prefix) error
	SetSourceDestCheck(ctx context.Context, eniID string, enabled bool) error
	MapPublicIP(ctx context.Context, public, private netip.Addr) error // IGW 1:1 NAT entry (replaces an existing mapping of `public`)
	UnmapPublicIP(ctx context.Context, public netip.Addr) error
	AddPrivateIP(ctx context.Context, eniID string, ip netip.Addr) error
	RemovePrivateIP(ctx context.Context, eniID string, ip netip.Addr) error
}

// RouteTarget is where a route points.
type RouteTarget struct {
	GatewayID          string     // igw-… or "local"
	NetworkInterfaceID string     // eni-…
	VpcEndpointID      string     // vpce-…, a Gateway Load Balancer endpoint
	NextHop            netip.Addr // the ENI's (or endpoint ENI's) primary private IP, filled by the model
}

// NopFabric implements Fabric doing nothing (for pure HTTP tests).
type NopFabric struct{}

func (NopFabric) SetRoute(context.Context, string, netip.Prefix, RouteTarget) error { return nil }
func (NopFabric) DeleteRoute(context.Context, string, netip.Prefix) error           { return nil }
func (NopFabric) SetSourceDestCheck(context.Context, string, bool) error            { return nil }
func (NopFabric) MapPublicIP(context.Context, netip.Addr, netip.Addr) error         { return nil }
func (NopFabric) UnmapPublicIP(context.Context, netip.Addr) error                   { return nil }
func (NopFabric) AddPrivateIP(context.Context, string, netip.Addr) error            { return nil }
func (NopFabric) RemovePrivateIP(context.Context, string, netip.Addr) error         { return nil }

// Credentials are the test access keys the EC2 handler verifies SigV4
// signatures against.
type Credentials struct {
	AccessKeyID     string
	SecretAccessKey string
}

// DefaultAccountID is the owner id the model reports for every resource.
const DefaultAccountID = "123456789012"

// Instance states the model knows (DescribeInstances' instanceState).
const (
	InstanceRunning = "running"
	InstanceStopped = "stopped"
)

// Model is the simulated VPC. All methods are safe for concurrent use.
type Model struct {
	region  string
	account string
	log     *slog.Logger
	fabric  Fabric
	clock   atomic.Pointer[func() time.Time]

	// mutMu serializes API mutations, held across their Fabric calls so
	// that what a mutation validated is still true when it commits.
	mutMu sync.Mutex

	mu        sync.RWMutex
	seq       uint64
	vpcs      map[string]*vpc
	vpcIDs    []string
	igws      map[string]*igw
	igwIDs    []string
	subnets   map[string]*subnet
	subnetIDs []string
	rtbs      map[string]*routeTable
	rtbIDs    []string
	insts     map[string]*instance
	instIDs   []string
	enis      map[string]*eni
	eniIDs    []string
	eips      map[string]*eip
	eipIDs    []string
	tags      map[string]map[string]string // resource id → key → value
	gwlbs     []*gwlb
	vpces     map[string]*vpcEndpoint
	vpceIDs   []string

	faults  faultState
	tokens  tokenStore
	stats   statsState
	scaling autoScalingState
}

type vpc struct {
	id          string
	cidr        netip.Prefix
	cidrAssocID string
}

type igw struct {
	id    string
	vpcID string // "" when detached
}

type subnet struct {
	id    string
	vpcID string
	cidr  netip.Prefix
	az    string
}

type routeTable struct {
	id          string
	vpcID       string
	main        bool
	mainAssocID string
	routes      []route
	assocs      []rtbAssoc
}

type route struct {
	dst    netip.Prefix
	target RouteTarget
	origin string // CreateRouteTable (local) or CreateRoute
}

type rtbAssoc struct {
	id       string
	subnetID string
}

type instance struct {
	id       string
	az       string
	subnetID string
	vpcID    string
	state    string
	imageID  string
	launched time.Time
	enis     []string // by device index
}

type eni struct {
	id           string
	subnetID     string
	vpcID        string
	az           string
	instanceID   string // "" when not attached
	attachmentID string
	deviceIndex  int
	mac          net.HardwareAddr
	primary      netip.Addr
	secondaries  []netip.Addr
	srcDstCheck  bool
	// A load balancer's or endpoint's ENI: requester-managed, never
	// attached to an instance.
	interfaceType    string // "" means ENITypeInterface
	created          time.Time
	description      string
	requesterManaged bool
}

type eip struct {
	allocID string
	public  netip.Addr
	assocID string // "" when not associated
	eniID   string
	private netip.Addr
}

// NewModel returns an empty model for region. log may be nil (discarded),
// f may be nil (NopFabric).
func NewModel(region string, log *slog.Logger, f Fabric) *Model {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if f == nil {
		f = NopFabric{}
	}
	m := &Model{
		region:  region,
		account: DefaultAccountID,
		log:     log,
		fabric:  f,
		vpcs:    map[string]*vpc{},
		igws:    map[string]*igw{},
		subnets: map[string]*subnet{},
		rtbs:    map[string]*routeTable{},
		insts:   map[string]*instance{},
		enis:    map[string]*eni{},
		eips:    map[string]*eip{},
		tags:    map[string]map[string]string{},
		vpces:   map[string]*vpcEndpoint{},
	}
	now := time.Now
	m.clock.Store(&now)
	m.faults.reset(Faults{})
	m.tokens.tokens = map[string]imdsToken{}
	m.stats.byAction = map[string]int{}
	return m
}

// Region is the model's region (the only one its SigV4 verifier accepts).
func (m *Model) Region() string { return m.region }

// AccountID is the owner id reported for every resource.
func (m *Model) AccountID() string { return m.account }

// SetClock replaces the clock used for SigV4 skew checks, IMDS token
// expiry and launch times (tests). nil restores time.Now.
func (m *Model) SetClock(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	m.clock.Store(&now)
}

func (m *Model) now() time.Time { return (*m.clock.Load())() }

// newID returns a fresh, deterministic AWS-looking id ("vpc-0a1b…", 17 hex
// digits). Caller holds m.mu for writing.
func (m *Model) newID(prefix string) string {
	m.seq++
	sum := sha256.Sum256(fmt.Appendf(nil, "%s/%s/%d", m.region, prefix, m.seq))
	return prefix + "-" + hex.EncodeToString(sum[:])[:17]
}

func (m *Model) setTags(id string, tags map[string]string) {
	if len(tags) == 0 {
		return
	}
	t := m.tags[id]
	if t == nil {
		t = map[string]string{}
		m.tags[id] = t
	}
	for k, v := range tags {
		t[k] = v
	}
}

// Tag sets tags on existing resources, as CreateTags does, for a lab
// that sets its stage without an API client (the demo).
func (m *Model) Tag(ids []string, tags map[string]string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if aerr := m.existAllLocked(ids); aerr != nil {
		return fmt.Errorf("ec2sim tag %v: %w", ids, aerr)
	}
	for _, id := range ids {
		m.setTags(id, tags)
	}
	return nil
}

// AddVPC adds a VPC with cidr and returns its id (vpc-…).
func (m *Model) AddVPC(cidr netip.Prefix, tags map[string]string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := &vpc{id: m.newID("vpc"), cidr: cidr.Masked(), cidrAssocID: m.newID("vpc-cidr-assoc")}
	m.vpcs[v.id] = v
	m.vpcIDs = append(m.vpcIDs, v.id)
	m.setTags(v.id, tags)
	return v.id
}

// AddInternetGateway adds an internet gateway attached to vpcID and returns
// its id (igw-…), or "" (logged) when the VPC does not exist.
func (m *Model) AddInternetGateway(vpcID string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.vpcs[vpcID] == nil {
		m.log.Error("ec2sim AddInternetGateway: unknown VPC", "vpc", vpcID)
		return ""
	}
	g := &igw{id: m.newID("igw"), vpcID: vpcID}
	m.igws[g.id] = g
	m.igwIDs = append(m.igwIDs, g.id)
	return g.id
}

// AddSubnet adds a subnet of vpcID in availability zone az and returns its
// id (subnet-…), or "" (logged) when the VPC does not exist or cidr is not
// inside it.
func (m *Model) AddSubnet(vpcID string, cidr netip.Prefix, az string, tags map[string]string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := m.vpcs[vpcID]
	if v == nil || !prefixWithin(cidr, v.cidr) {
		m.log.Error("ec2sim AddSubnet: unknown VPC or CIDR outside it", "vpc", vpcID, "cidr", cidr)
		return ""
	}
	s := &subnet{id: m.newID("subnet"), vpcID: vpcID, cidr: cidr.Masked(), az: az}
	m.subnets[s.id] = s
	m.subnetIDs = append(m.subnetIDs, s.id)
	m.setTags(s.id, tags)
	return s.id
}

// AddRouteTable adds a route table to vpcID holding the local route for the
// VPC CIDR and returns its id (rtb-…), or "" (logged) when the VPC does not
// exist. main makes it the VPC's main route table (taking that role from
// any previous one).
func (m *Model) AddRouteTable(vpcID string, main bool, tags map[string]string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := m.vpcs[vpcID]
	if v == nil {
		m.log.Error("ec2sim AddRouteTable: unknown VPC", "vpc", vpcID)
		return ""
	}
	t := &routeTable{id: m.newID("rtb"), vpcID: vpcID}
	t.routes = []route{{dst: v.cidr, target: RouteTarget{GatewayID: "local"}, origin: "CreateRouteTable"}}
	if main {
		for _, other := range m.rtbs {
			if other.vpcID == vpcID && other.main {
				t.mainAssocID = other.mainAssocID
				other.main, other.mainAssocID = false, ""
			}
		}
		t.main = true
		if t.mainAssocID == "" {
			t.mainAssocID = m.newID("rtbassoc")
		}
	}
	m.rtbs[t.id] = t
	m.rtbIDs = append(m.rtbIDs, t.id)
	m.setTags(t.id, tags)
	return t.id
}

// AssociateRouteTable associates subnetID with rtbID (replacing the subnet's
// previous explicit association) and returns the association id
// (rtbassoc-…), or "" (logged) when either does not exist.
func (m *Model) AssociateRouteTable(rtbID, subnetID string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	t, s := m.rtbs[rtbID], m.subnets[subnetID]
	if t == nil || s == nil || s.vpcID != t.vpcID {
		m.log.Error("ec2sim AssociateRouteTable: unknown route table or subnet, or different VPCs", "route_table", rtbID, "subnet", subnetID)
		return ""
	}
	for _, other := range m.rtbs {
		other.assocs = slices.DeleteFunc(other.assocs, func(a rtbAssoc) bool { return a.subnetID == subnetID })
	}
	a := rtbAssoc{id: m.newID("rtbassoc"), subnetID: subnetID}
	t.assocs = append(t.assocs, a)
	return a.id
}

// AddRouteNoFabric adds an initial route without calling the Fabric (the lab
// installs initial routes itself). The target's NextHop is filled in.
func (m *Model) AddRouteNoFabric(rtbID string, dst netip.Prefix, t RouteTarget) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	rt := m.rtbs[rtbID]
	if rt == nil {
		return fmt.Errorf("add route to %q: route table does not exist", rtbID)
	}
	dst = dst.Masked()
	if rt.route(dst) >= 0 {
		return fmt.Errorf("add route %s to %q: route already exists", dst, rtbID)
	}
	resolved, err := m.resolveTargetLocked(rt, targetParams{gateway: t.GatewayID, eni: t.NetworkInterfaceID, endpoint: t.VpcEndpointID})
	if err != nil {
		return fmt.Errorf("add route %s to %q: %w", dst, rtbID, err)
	}
	rt.routes = append(rt.routes, route{dst: dst, target: resolved, origin: "CreateRoute"})
	return nil
}

// AddInstance adds a running instance in az whose primary subnet is
// subnetID and returns its id (i-…), or "" (logged) when the subnet does not
// exist. Its ENIs are added with AddNetworkInterface. An empty az means the
// subnet's.
func (m *Model) AddInstance(az, subnetID string, tags map[string]string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.subnets[subnetID]
	if s == nil {
		m.log.Error("ec2sim AddInstance: unknown subnet", "subnet", subnetID)
		return ""
	}
	if az == "" {
		az = s.az
	}
	in := &instance{id: m.newID("i"), az: az, subnetID: subnetID, vpcID: s.vpcID, state: InstanceRunning,
		imageID: "ami-0" + m.newID("x")[2:18], launched: m.now().UTC().Truncate(time.Second)}
	m.insts[in.id] = in
	m.instIDs = append(m.instIDs, in.id)
	m.setTags(in.id, tags)
	return in.id
}

// AddNetworkInterface adds an ENI in subnetID, attached to instanceID at
// deviceIndex ("" leaves it unattached), with source/dest check on, and
// returns its id (eni-…), or "" (logged) on an unknown subnet or instance,
// an address outside the subnet or already in use, or a taken device index.
// A nil mac gets a generated locally administered one.
func (m *Model) AddNetworkInterface(subnetID, instanceID string, deviceIndex int, mac net.HardwareAddr, primary netip.Addr, secondaries []netip.Addr) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.subnets[subnetID]
	fail := func(why string) string {
		m.log.Error("ec2sim AddNetworkInterface: "+why, "subnet", subnetID, "instance", instanceID, "device_index", deviceIndex, "primary", primary)
		return ""
	}
	if s == nil {
		return fail("unknown subnet")
	}
	for _, ip := range append([]netip.Addr{primary}, secondaries...) {
		if !s.cidr.Contains(ip) {
			return fail("address " + ip.String() + " outside the subnet")
		}
		if owner, _ := m.ipOwnerLocked(ip); owner != nil {
			return fail("address " + ip.String() + " already in use by " + owner.id)
		}
	}
	var in *instance
	if instanceID != "" {
		if in = m.insts[instanceID]; in == nil {
			return fail("unknown instance")
		}
		if in.vpcID != s.vpcID {
			return fail("instance in another VPC")
		}
		for _, id := range in.enis {
			if m.enis[id].deviceIndex == deviceIndex {
				return fail("device index taken")
			}
		}
	}
	e := &eni{id: m.newID("eni"), subnetID: subnetID, vpcID: s.vpcID, az: s.az, deviceIndex: deviceIndex,
		primary: primary, secondaries: slices.Clone(secondaries), srcDstCheck: true}
	if len(mac) == 6 {
		e.mac = slices.Clone(mac)
	} else {
		sum := sha256.Sum256([]byte(e.id))
		e.mac = net.HardwareAddr{0x02, sum[0], sum[1], sum[2], sum[3], sum[4]}
	}
	if in != nil {
		e.instanceID = in.id
		e.attachmentID = m.newID("eni-attach")
		in.enis = append(in.enis, e.id)
		if e.deviceIndex == 0 {
			in.subnetID = subnetID
		}
	}
	m.enis[e.id] = e
	m.eniIDs = append(m.eniIDs, e.id)
	if in != nil {
		slices.SortFunc(in.enis, func(a, b string) int { return m.enis[a].deviceIndex - m.enis[b].deviceIndex })
	}
	return e.id
}

// AllocateAddress allocates an Elastic IP for public and returns its
// allocation id (eipalloc-…), or "" (logged) when public is already
// allocated.
func (m *Model) AllocateAddress(public netip.Addr) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range m.eips {
		if a.public == public {
			m.log.Error("ec2sim AllocateAddress: already allocated", "public_ip", public, "allocation", a.allocID)
			return ""
		}
	}
	a := &eip{allocID: m.newID("eipalloc"), public: public}
	m.eips[a.allocID] = a
	m.eipIDs = append(m.eipIDs, a.allocID)
	return a.allocID
}

// AssociateAddressNoFabric associates the EIP allocID with private on eniID
// without calling the Fabric (the lab installs the initial IGW mappings
// itself) and returns the association id (eipassoc-…), or "" (logged) when
// the EIP or ENI does not exist or private is not the ENI's. An invalid
// private means the ENI's primary IP.
func (m *Model) AssociateAddressNoFabric(allocID, eniID string, private netip.Addr) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, e := m.eips[allocID], m.enis[eniID]
	if a == nil || e == nil {
		m.log.Error("ec2sim AssociateAddressNoFabric: unknown EIP or ENI", "allocation", allocID, "eni", eniID)
		return ""
	}
	if !private.IsValid() {
		private = e.primary
	}
	if !e.hasIP(private) {
		m.log.Error("ec2sim AssociateAddressNoFabric: private IP not on the ENI", "eni", eniID, "private_ip", private)
		return ""
	}
	for _, other := range m.eips {
		if other != a && other.assocID != "" && other.private == private {
			other.assocID, other.eniID, other.private = "", "", netip.Addr{}
		}
	}
	a.assocID, a.eniID, a.private = m.newID("eipassoc"), eniID, private
	return a.assocID
}

// InstanceByPrivateIP returns the instance one of whose ENIs holds ip
// (primary or secondary): how IMDS identifies its caller.
func (m *Model) InstanceByPrivateIP(ip netip.Addr) (instanceID string, ok bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, _ := m.ipOwnerLocked(ip.Unmap())
	if e == nil || e.instanceID == "" {
		return "", false
	}
	return e.instanceID, true
}

// SetInstanceState records an instance as running or stopped (the lab's
// stop/start). Routes to the ENIs of a stopped instance show state
// "blackhole", as on AWS.
func (m *Model) SetInstanceState(instanceID, state string) error {
	if state != InstanceRunning && state != InstanceStopped {
		return fmt.Errorf("set state of instance %q: unknown state %q", instanceID, state)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	in := m.insts[instanceID]
	if in == nil {
		return fmt.Errorf("set state of instance %q: no such instance", instanceID)
	}
	in.state = state
	return nil
}

// ipOwnerLocked returns the ENI holding ip and whether it is its primary.
func (m *Model) ipOwnerLocked(ip netip.Addr) (*eni, bool) {
	for _, id := range m.eniIDs {
		e := m.enis[id]
		if e.primary == ip {
			return e, true
		}
		if slices.Contains(e.secondaries, ip) {
			return e, false
		}
	}
	return nil, false
}

func (e *eni) hasIP(ip netip.Addr) bool {
	return e.primary == ip || slices.Contains(e.secondaries, ip)
}

func (e *eni) ips() []netip.Addr {
	return append([]netip.Addr{e.primary}, e.secondaries...)
}

func (t *routeTable) route(dst netip.Prefix) int {
	return slices.IndexFunc(t.routes, func(r route) bool { return r.dst == dst })
}

// eipOnLocked returns the EIP associated with private on eniID, or nil.
func (m *Model) eipOnLocked(eniID string, private netip.Addr) *eip {
	for _, id := range m.eipIDs {
		a := m.eips[id]
		if a.assocID != "" && a.eniID == eniID && a.private == private {
			return a
		}
	}
	return nil
}

// routeStateLocked is "active", or "blackhole" when the target ENI is gone
// or its instance is not running.
func (m *Model) routeStateLocked(r route) string {
	if id := r.target.NetworkInterfaceID; id != "" {
		e := m.enis[id]
		if e == nil {
			return "blackhole"
		}
		if e.instanceID != "" && m.insts[e.instanceID].state != InstanceRunning {
			return "blackhole"
		}
	}
	if id := r.target.VpcEndpointID; id != "" && m.vpces[id] == nil {
		return "blackhole"
	}
	if id := r.target.GatewayID; id != "" && id != "local" {
		if g := m.igws[id]; g == nil || g.vpcID == "" {
			return "blackhole"
		}
	}
	return "active"
}

func prefixWithin(inner, outer netip.Prefix) bool {
	return inner.IsValid() && outer.IsValid() && inner.Bits() >= outer.Bits() && outer.Contains(inner.Addr())
}

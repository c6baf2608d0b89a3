package vpcsim

import (
	"net/netip"
	"slices"

	"github.com/hanat/hanat/internal/vpcsim/ec2sim"
)

// Status describes a running lab: what `hanat-lab status --json` prints.
type Status struct {
	Prefix       string           `json:"prefix"`
	Region       string           `json:"region"`
	EC2Endpoint  string           `json:"ec2_endpoint"`
	VPCEndpoint  string           `json:"vpc_ec2_endpoint"`
	IMDSEndpoint string           `json:"imds_endpoint"`
	Credentials  StatusCreds      `json:"credentials"`
	VPCID        string           `json:"vpc_id"`
	IGWID        string           `json:"igw_id"`
	Namespaces   StatusNamespaces `json:"namespaces"`
	Subnets      []StatusSubnet   `json:"subnets"`
	RouteTables  []StatusRTB      `json:"route_tables"`
	Instances    []StatusInstance `json:"instances"`
	EIPs         []StatusEIP      `json:"eips"`
	Internet     StatusInternet   `json:"internet"`
	Partitions   []StatusPart     `json:"partitions,omitempty"`
	APIFaults    StatusFaults     `json:"api_faults"`
	GWLB         *StatusGWLB      `json:"gwlb,omitempty"`
	// Env is what a process inside an instance needs for the SDK.
	Env []string `json:"instance_env"`
}

type StatusCreds struct {
	AccessKeyID     string `json:"access_key_id"`
	SecretAccessKey string `json:"secret_access_key"`
}

type StatusNamespaces struct {
	Router   string `json:"router"`
	IGW      string `json:"igw"`
	Internet string `json:"internet"`
}

type StatusSubnet struct {
	Name       string       `json:"name"`
	ID         string       `json:"id"`
	CIDR       netip.Prefix `json:"cidr"`
	AZ         string       `json:"availability_zone"`
	Gateway    netip.Addr   `json:"gateway"`
	Bridge     string       `json:"bridge"`
	RouteTable string       `json:"route_table"`
}

type StatusRTB struct {
	Name        string         `json:"name"`
	ID          string         `json:"id"`
	Main        bool           `json:"main"`
	KernelTable int            `json:"kernel_table"`
	Subnets     []string       `json:"subnets,omitempty"`
	Routes      []ec2sim.Route `json:"routes"`
}

type StatusInstance struct {
	Name      string      `json:"name"`
	ID        string      `json:"id"`
	Namespace string      `json:"namespace"`
	AZ        string      `json:"availability_zone"`
	Subnet    string      `json:"subnet"`
	State     string      `json:"state"`
	ENIs      []StatusENI `json:"enis"`
}

type StatusENI struct {
	ID              string       `json:"id"`
	Device          string       `json:"device"`
	Subnet          string       `json:"subnet"`
	RouterPort      string       `json:"router_port"`
	MAC             string       `json:"mac"`
	PrimaryIP       netip.Addr   `json:"primary_ip"`
	SecondaryIPs    []netip.Addr `json:"secondary_ips,omitempty"`
	PublicIP        netip.Addr   `json:"public_ip,omitzero"`
	SourceDestCheck bool         `json:"source_dest_check"`
}

type StatusEIP struct {
	AllocationID string     `json:"allocation_id"`
	PublicIP     netip.Addr `json:"public_ip"`
	PrivateIP    netip.Addr `json:"private_ip,omitzero"`
}

type StatusInternet struct {
	Namespace string         `json:"namespace"`
	Addr      netip.Addr     `json:"addr"`
	HTTP      netip.AddrPort `json:"http"`
	UDPEcho   netip.AddrPort `json:"udp_echo"`
	Discard   netip.AddrPort `json:"tcp_discard"`
	Chargen   netip.AddrPort `json:"tcp_chargen"`
}

type StatusPart struct {
	A     string `json:"a"`
	B     string `json:"b"`
	Proto string `json:"proto,omitempty"`
	Port  uint16 `json:"port,omitempty"`
}

type StatusFaults struct {
	Latency      string   `json:"latency"`
	ErrorRate    float64  `json:"error_rate"`
	ThrottleRate float64  `json:"throttle_rate"`
	Actions      []string `json:"actions,omitempty"`
}

// Status returns the lab's current state.
func (l *Lab) Status() Status {
	snap := l.model.Snapshot()
	f := l.model.Faults()
	st := Status{
		Prefix: l.prefix, Region: l.region,
		EC2Endpoint: l.hostEC2URL, VPCEndpoint: l.VPCEndpoint(), IMDSEndpoint: l.IMDSEndpoint(),
		Credentials: StatusCreds{AccessKeyID: l.creds.AccessKeyID, SecretAccessKey: l.creds.SecretAccessKey},
		VPCID:       l.vpcID, IGWID: l.igwID,
		Namespaces: StatusNamespaces{Router: l.router.Name, IGW: l.igw.Name, Internet: l.inet.Name},
		Env:        l.Env(),
		APIFaults:  StatusFaults{Latency: f.Latency.String(), ErrorRate: f.ErrorRate, ThrottleRate: f.ThrottleRate, Actions: f.Actions},
	}
	if in := l.internet; in != nil {
		st.Internet = StatusInternet{Namespace: in.NS.Name, Addr: in.Addr, HTTP: in.HTTPAddr, UDPEcho: in.UDPEchoAddr, Discard: in.DiscardAddr, Chargen: in.ChargenAddr}
	}
	for _, s := range l.subnets {
		st.Subnets = append(st.Subnets, StatusSubnet{Name: s.name, ID: s.id, CIDR: s.cidr, AZ: s.az, Gateway: s.gw, Bridge: s.bridge, RouteTable: s.rtb})
	}
	for _, r := range l.rtbs {
		sr := StatusRTB{Name: r.name, ID: r.id, Main: r.main, KernelTable: r.table, Subnets: r.subnets}
		for _, mr := range snap.RouteTables {
			if mr.ID == r.id {
				sr.Routes = mr.Routes
			}
		}
		st.RouteTables = append(st.RouteTables, sr)
	}
	state := map[string]string{}
	for _, in := range snap.Instances {
		state[in.ID] = in.State
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	pubOf := map[netip.Addr]netip.Addr{}
	for pub, priv := range l.maps {
		pubOf[priv] = pub
	}
	for _, in := range l.insts {
		si := StatusInstance{Name: in.name, ID: in.id, Namespace: in.ns.Name, AZ: in.subnet.az, Subnet: in.subnet.name, State: state[in.id]}
		for _, e := range in.enis {
			si.ENIs = append(si.ENIs, StatusENI{ID: e.id, Device: e.dev, Subnet: e.subnet.name, RouterPort: e.port, MAC: e.mac.String(),
				PrimaryIP: e.primary, SecondaryIPs: slices.Clone(e.secondaries), PublicIP: pubOf[e.primary], SourceDestCheck: e.check})
		}
		st.Instances = append(st.Instances, si)
	}
	for _, e := range l.eips {
		st.EIPs = append(st.EIPs, StatusEIP{AllocationID: e.allocID, PublicIP: e.public, PrivateIP: l.maps[e.public]})
	}
	for _, p := range l.partitions {
		st.Partitions = append(st.Partitions, StatusPart{A: p.A, B: p.B, Proto: p.Proto, Port: p.Port})
	}
	st.GWLB = l.gwlbStatus()
	return st
}

// DefaultRouteENI is where route table rtb's 0.0.0.0/0 points: an ENI id,
// "" when it has none or points elsewhere.
func (s Status) DefaultRouteENI(rtb string) string {
	for _, rt := range s.RouteTables {
		if rt.ID != rtb {
			continue
		}
		for _, r := range rt.Routes {
			if r.Destination.Bits() == 0 {
				return r.NetworkInterfaceID
			}
		}
	}
	return ""
}

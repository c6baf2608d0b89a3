package vpcsim

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hanat/hanat/geneve"
	"github.com/hanat/hanat/internal/netns"
	"github.com/hanat/hanat/internal/vpcsim/ec2sim"
	"github.com/hanat/hanat/internal/vpcsim/gwlbsim"
)

// The lab's Gateway Load Balancer lives in its own namespace,
// <prefix>-gwlb. Per AZ it has:
//
//	gwlb-<z>  the GWLB's ENI in public-<z> (10.0.<1|2>.5): GENEVE to and
//	          from the targets on UDP 6081, health checks
//	gwe-<z>   the GWLB endpoint's ENI in private-<z> (10.0.<11|12>.5): a
//	          private route table's 0.0.0.0/0 → vpce-… routes here
//	tun-<z>   what arrives on gwe-<z> is routed (policy rule iif gwe-<z>)
//	          into this TUN device, read by the lab's GWLB (gwlbsim), which
//	          encapsulates it to a target; replies the targets send back
//	          are written to it and routed out of gwe-<z> to the host
//
// The endpoint sits in the private subnet it serves, so the router's
// route to it is on-link and the decapsulated replies reach the host
// directly, as an endpoint's do.

// GWLBName is the name of the lab's load balancer (its ENIs' description
// is "ELB gwy/<GWLBName>/<id>").
const GWLBName = "hanat-lab-gwlb"

// gwlbHostByte is the last byte of the GWLB's and the endpoints' addresses
// in their subnets (.5: .1 is the router, instances start at .10).
const gwlbHostByte = 5

// GWLBOptions configure the lab's Gateway Load Balancer.
type GWLBOptions struct {
	// Config is the target group's attributes; the zero value is AWS's
	// defaults (cross-zone load balancing off, as on AWS).
	Config gwlbsim.Config
	// PointPrivateRoutes adds 0.0.0.0/0 → its AZ's GWLB endpoint to each
	// private route table.
	PointPrivateRoutes bool
	// RegisterNATs registers every NAT instance (its eth0 address) as a
	// target.
	RegisterNATs bool
}

// GWLBEndpoint is one GWLB endpoint of the lab.
type GWLBEndpoint struct {
	ID     string     `json:"id"` // vpce-…
	AZ     string     `json:"availability_zone"`
	Subnet string     `json:"subnet"`
	ENIID  string     `json:"eni"`
	Addr   netip.Addr `json:"addr"`
}

type gwlbAZ struct {
	az         string
	gwSubnet   *subnetInfo
	epSubnet   *subnetInfo
	gwIP, epIP netip.Addr
	gwENI      string
	ep         GWLBEndpoint
	epNum      uint64
	tun        *os.File
	conn       *net.UDPConn
}

type gwlbState struct {
	ns      *netns.NS
	h       *netlink.Handle
	arn     string
	service string
	lb      *gwlbsim.GWLB
	azs     []*gwlbAZ
}

// buildGWLB creates the GWLB's namespace, ENIs, endpoints, TUNs and
// sockets and registers them in the model.
func (l *Lab) buildGWLB(ctx context.Context, opts GWLBOptions) error {
	g := &gwlbState{}
	var err error
	if g.ns, err = l.newNS("gwlb"); err != nil {
		return err
	}
	l.gwlb = g
	l.closers = append(l.closers, func() {
		for _, a := range g.azs {
			if a.tun != nil {
				_ = a.tun.Close()
			}
			if a.conn != nil {
				_ = a.conn.Close()
			}
		}
	})
	if err := baseSysctls(g.ns, true); err != nil {
		return err
	}
	if g.h, err = netlink.NewHandleAt(g.ns.Handle()); err != nil {
		return fmt.Errorf("netlink handle in %s: %w", g.ns.Name, err)
	}
	var pubIDs []string
	var gwIPs []netip.Addr
	addrs := map[string]netip.Addr{}
	for _, z := range []string{"a", "c"} {
		a := &gwlbAZ{gwSubnet: l.subnet("public-" + z), epSubnet: l.subnet("private-" + z)}
		a.az = a.gwSubnet.az
		a.gwIP, a.epIP = hostIn(a.gwSubnet.cidr, gwlbHostByte), hostIn(a.epSubnet.cidr, gwlbHostByte)
		g.azs = append(g.azs, a)
		pubIDs, gwIPs = append(pubIDs, a.gwSubnet.id), append(gwIPs, a.gwIP)
		addrs[a.az] = a.gwIP
	}
	var enis []string
	if g.arn, g.service, enis, err = l.model.AddGatewayLoadBalancer(GWLBName, pubIDs, gwIPs); err != nil {
		return err
	}
	lb, err := gwlbsim.New(opts.Config, addrs, nil, l.log.With("component", "gwlb"))
	if err != nil {
		return err
	}
	g.lb = lb
	for i, a := range g.azs {
		a.gwENI = enis[i]
		z := a.az[len(a.az)-1:]
		if err := l.plugGWLBAZ(g, a, z, i); err != nil {
			return fmt.Errorf("GWLB in %s: %w", a.az, err)
		}
	}
	if opts.PointPrivateRoutes {
		for _, a := range g.azs {
			target := ec2sim.RouteTarget{VpcEndpointID: a.ep.ID, NextHop: a.epIP}
			if err := l.addInitialRoute(l.rtbByName(a.epSubnet.rtb), netip.MustParsePrefix("0.0.0.0/0"), target); err != nil {
				return err
			}
		}
	}
	if opts.RegisterNATs {
		for _, in := range l.insts {
			if in.subnet.public {
				if err := lb.Register(in.enis[0].primary, in.subnet.az); err != nil {
					return err
				}
			}
		}
	}
	l.log.Info("GWLB up", "arn", g.arn, "namespace", g.ns.Name, "config", fmt.Sprintf("%+v", lb.Config()))
	return nil
}

// hostIn is the address of subnet p whose last byte is b.
func hostIn(p netip.Prefix, b byte) netip.Addr {
	a := p.Addr().As4()
	a[3] = b
	return netip.AddrFrom4(a)
}

// plugGWLBAZ creates AZ a's GWLB ENI, endpoint (model and ENI), TUN,
// policy route and GENEVE socket; i numbers its kernel table.
func (l *Lab) plugGWLBAZ(g *gwlbState, a *gwlbAZ, z string, i int) error {
	if _, _, err := l.plugPort(g.ns, g.h, "gwlb-"+z, a.gwSubnet, a.gwIP, macFor(a.gwIP)); err != nil {
		return err
	}
	if _, _, err := l.plugPort(g.ns, g.h, "gwe-"+z, a.epSubnet, a.epIP, macFor(a.epIP)); err != nil {
		return err
	}
	vpce, eni, err := l.model.AddGatewayLoadBalancerEndpoint(g.service, a.epSubnet.id, a.epIP)
	if err != nil {
		return err
	}
	if a.epNum, err = geneve.ParseEndpointName(vpce); err != nil {
		return fmt.Errorf("endpoint %s: %w", vpce, err)
	}
	a.ep = GWLBEndpoint{ID: vpce, AZ: a.az, Subnet: a.epSubnet.name, ENIID: eni, Addr: a.epIP}
	sum := sha256.Sum256([]byte("attachment/" + vpce))
	if err := g.lb.AddEndpoint(gwlbsim.Endpoint{ID: a.epNum, AttachmentID: binary.BigEndian.Uint64(sum[:8]), AZ: a.az}); err != nil {
		return err
	}
	l.mu.Lock()
	l.vpces[vpce] = a.epSubnet
	l.mu.Unlock()

	tunName := "tun-" + z
	if a.tun, err = openTUN(g.ns, tunName); err != nil {
		return err
	}
	tun, err := g.h.LinkByName(tunName)
	if err != nil {
		return fmt.Errorf("link %s in %s: %w", tunName, g.ns.Name, err)
	}
	if err := g.h.LinkSetUp(tun); err != nil {
		return fmt.Errorf("set %s up in %s: %w", tunName, g.ns.Name, err)
	}
	table := firstKernelTable + i
	if err := g.h.RouteReplace(&netlink.Route{LinkIndex: tun.Attrs().Index, Dst: ipnet(netip.MustParsePrefix("0.0.0.0/0")), Table: table}); err != nil {
		return fmt.Errorf("default route via %s in table %d: %w", tunName, table, err)
	}
	rule := netlink.NewRule()
	rule.IifName = "gwe-" + z
	rule.Table = table
	rule.Priority = firstRulePriority + i
	rule.Family = unix.AF_INET
	if err := g.h.RuleAdd(rule); err != nil {
		return fmt.Errorf("ip rule iif gwe-%s lookup %d in %s: %w", z, table, g.ns.Name, err)
	}
	return g.ns.Do(func() error {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a.gwIP, geneve.Port)))
		if err != nil {
			return fmt.Errorf("GENEVE socket %s:%d: %w", a.gwIP, geneve.Port, err)
		}
		a.conn = c
		// Fragment an encapsulated packet larger than the path rather
		// than refuse it: the lab's links are 1500 bytes, not AWS's 8500.
		raw, err := c.SyscallConn()
		if err != nil {
			return fmt.Errorf("GENEVE socket %s: %w", a.gwIP, err)
		}
		var serr error
		if err := raw.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT)
		}); err != nil || serr != nil {
			return fmt.Errorf("GENEVE socket %s: IP_MTU_DISCOVER: %w", a.gwIP, errors.Join(err, serr))
		}
		return nil
	})
}

// openTUN creates TUN device name (IPv4 packets, no packet information)
// inside ns; closing the file removes it.
func openTUN(ns *netns.NS, name string) (*os.File, error) {
	var f *os.File
	err := ns.Do(func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
		if err != nil {
			return fmt.Errorf("open /dev/net/tun: %w", err)
		}
		ifr, err := unix.NewIfreq(name)
		if err == nil {
			ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
			err = unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr)
		}
		if err != nil {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF %s: %w", name, err)
		}
		f = os.NewFile(uintptr(fd), "tun:"+name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("TUN %s in %s: %w", name, ns.Name, err)
	}
	return f, nil
}

// startGWLB runs the GWLB's packet loops, health checks and clock until
// the lab closes.
func (l *Lab) startGWLB() {
	g := l.gwlb
	ctx, cancel := context.WithCancel(context.Background())
	// Runs before the closer buildGWLB added, which closes the TUNs and
	// sockets the loops read.
	l.closers = slices.Insert(l.closers, 0, func() { cancel() })
	run := func(name string, fn func()) {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			fn()
			l.log.Debug("GWLB loop ended", "loop", name)
		}()
	}
	for _, a := range g.azs {
		run("endpoint "+a.ep.ID, func() { l.gwlbForwardLoop(a) })
		run("geneve "+a.gwIP.String(), func() { l.gwlbReturnLoop(a) })
	}
	run("health checks", func() {
		g.lb.RunHealthChecks(ctx, func(ctx context.Context, local netip.Addr, remote netip.AddrPort) (net.Conn, error) {
			var c net.Conn
			err := g.ns.Do(func() (err error) {
				d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, 0))}
				c, err = d.DialContext(ctx, "tcp4", remote.String())
				return err
			})
			return c, err
		})
	})
	run("clock", func() {
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				g.lb.Tick()
			}
		}
	})
}

// gwlbForwardLoop reads what endpoint a receives and sends it
// encapsulated to the flow's target.
func (l *Lab) gwlbForwardLoop(a *gwlbAZ) {
	g := l.gwlb
	buf := make([]byte, 1<<16)
	for {
		n, err := a.tun.Read(buf)
		if err != nil {
			if !errors.Is(err, os.ErrClosed) {
				l.log.Warn("GWLB endpoint read", "endpoint", a.ep.ID, "err", err)
			}
			return
		}
		d, err := g.lb.Forward(a.epNum, buf[:n])
		if err != nil {
			l.log.Debug("GWLB forward drop", "endpoint", a.ep.ID, "err", err)
			continue
		}
		conn := a.conn
		for _, b := range g.azs {
			if b.gwIP == d.Source {
				conn = b.conn
			}
		}
		if _, err := conn.WriteToUDPAddrPort(d.Payload, netip.AddrPortFrom(d.Target, geneve.Port)); err != nil {
			l.log.Debug("GWLB send to target", "target", d.Target, "err", err)
		}
	}
}

// gwlbReturnLoop reads GENEVE from the targets on a's GWLB address and
// delivers the accepted inner packets through their flow's endpoint.
func (l *Lab) gwlbReturnLoop(a *gwlbAZ) {
	g := l.gwlb
	buf := make([]byte, 1<<16)
	for {
		n, from, err := a.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				l.log.Warn("GWLB GENEVE read", "addr", a.gwIP, "err", err)
			}
			return
		}
		epID, inner, err := g.lb.Return(from.Addr().Unmap(), buf[:n])
		if err != nil {
			l.log.Debug("GWLB return drop", "from", from, "err", err)
			continue
		}
		for _, b := range g.azs {
			if b.epNum == epID {
				if _, err := b.tun.Write(inner); err != nil {
					l.log.Debug("GWLB deliver through endpoint", "endpoint", b.ep.ID, "err", err)
				}
			}
		}
	}
}

// GWLB is the lab's Gateway Load Balancer (its target group, flows and
// counters), or nil when the lab has none.
func (l *Lab) GWLB() *gwlbsim.GWLB {
	if l.gwlb == nil {
		return nil
	}
	return l.gwlb.lb
}

// GWLBNS is the GWLB's namespace, or nil.
func (l *Lab) GWLBNS() *netns.NS {
	if l.gwlb == nil {
		return nil
	}
	return l.gwlb.ns
}

// GWLBEndpoints are the lab's GWLB endpoints by AZ (none without a GWLB).
func (l *Lab) GWLBEndpoints() []GWLBEndpoint {
	if l.gwlb == nil {
		return nil
	}
	var out []GWLBEndpoint
	for _, a := range l.gwlb.azs {
		out = append(out, a.ep)
	}
	return out
}

// RegisterTarget registers instance name's eth0 address as a target of
// the GWLB's target group.
func (l *Lab) RegisterTarget(name string) error {
	in, err := l.gwlbTarget(name)
	if err != nil {
		return err
	}
	return l.gwlb.lb.Register(in.enis[0].primary, in.subnet.az)
}

// DeregisterTarget starts deregistering instance name (draining for the
// deregistration delay).
func (l *Lab) DeregisterTarget(name string) error {
	in, err := l.gwlbTarget(name)
	if err != nil {
		return err
	}
	return l.gwlb.lb.Deregister(in.enis[0].primary)
}

func (l *Lab) gwlbTarget(name string) (*instState, error) {
	if l.gwlb == nil {
		return nil, fmt.Errorf("vpcsim: target %s: the lab has no GWLB (Options.GWLB)", name)
	}
	in := l.inst(name)
	if in == nil {
		return nil, fmt.Errorf("vpcsim: target %s: no such instance", name)
	}
	return in, nil
}

// StatusGWLB is the GWLB in the lab's status.
type StatusGWLB struct {
	Name       string             `json:"name"`
	ARN        string             `json:"arn"`
	Namespace  string             `json:"namespace"`
	Nodes      []StatusGWLBNode   `json:"nodes"`
	Endpoints  []GWLBEndpoint     `json:"endpoints"`
	Attributes StatusGWLBAttrs    `json:"attributes"`
	Targets    []StatusGWLBTarget `json:"targets"`
	Flows      int                `json:"flows"`
	Forwarded  uint64             `json:"forwarded"`
	Returned   uint64             `json:"returned"`
	Drops      map[string]uint64  `json:"drops"`
}

type StatusGWLBNode struct {
	AZ    string     `json:"availability_zone"`
	ENIID string     `json:"eni"`
	Addr  netip.Addr `json:"addr"`
}

type StatusGWLBAttrs struct {
	HealthCheck         string `json:"health_check"`
	Stickiness          string `json:"stickiness"`
	OnUnhealthy         string `json:"target_failover_on_unhealthy"`
	OnDeregistration    string `json:"target_failover_on_deregistration"`
	DeregistrationDelay string `json:"deregistration_delay"`
	CrossZone           bool   `json:"cross_zone"`
}

type StatusGWLBTarget struct {
	Instance string `json:"instance,omitempty"`
	gwlbsim.TargetStatus
}

func (l *Lab) gwlbStatus() *StatusGWLB {
	g := l.gwlb
	if g == nil {
		return nil
	}
	c := g.lb.Config()
	hc := c.HealthCheck
	check := fmt.Sprintf("%s:%d", hc.Protocol, hc.Port)
	if hc.Protocol == gwlbsim.CheckHTTP {
		check += hc.Path
	}
	check += fmt.Sprintf(" every %v (timeout %v), %d healthy / %d unhealthy", hc.Interval, hc.Timeout, hc.HealthyThreshold, hc.UnhealthyThreshold)
	st := &StatusGWLB{Name: GWLBName, ARN: g.arn, Namespace: g.ns.Name, Endpoints: l.GWLBEndpoints(),
		Attributes: StatusGWLBAttrs{HealthCheck: check, Stickiness: string(c.Stickiness), OnUnhealthy: string(c.OnUnhealthy),
			OnDeregistration: string(c.OnDeregistration), DeregistrationDelay: c.DeregistrationDelay.String(), CrossZone: c.CrossZone}}
	for _, a := range g.azs {
		st.Nodes = append(st.Nodes, StatusGWLBNode{AZ: a.az, ENIID: a.gwENI, Addr: a.gwIP})
	}
	s := g.lb.Status()
	st.Flows, st.Forwarded, st.Returned, st.Drops = s.Flows, s.Forwarded, s.Returned, s.Drops
	for _, t := range s.Targets {
		x := StatusGWLBTarget{TargetStatus: t}
		for _, in := range l.insts {
			if slices.Contains(instIPsLocked(in), t.IP) {
				x.Instance = in.name
			}
		}
		st.Targets = append(st.Targets, x)
	}
	return st
}

package vpcsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go"

	"github.com/hanat/hanat/internal/netns"
	"github.com/hanat/hanat/internal/vpcsim/ec2sim"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the lab creates network namespaces")
	}
}

type testLogWriter struct{ t *testing.T }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// upLab builds a lab with a unique "hnt…" prefix, removed when the test ends.
func upLab(t *testing.T, opts Options) *Lab {
	t.Helper()
	needRoot(t)
	if opts.Prefix == "" {
		opts.Prefix = "hnt" + RandomPrefix()[3:]
	}
	log := slog.New(slog.NewTextHandler(testLogWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lab, err := Up(ctx, log, opts)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Cleanup(func() {
		if err := lab.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
		assertGone(t, lab.Prefix())
	})
	return lab
}

// assertGone checks that nothing of the prefix is left: no namespace, no
// link in the host namespace, no nftables table in the host namespace.
func assertGone(t *testing.T, prefix string) {
	t.Helper()
	if names, err := Namespaces(prefix); err != nil || len(names) > 0 {
		t.Errorf("namespaces of %s left: %v (err %v)", prefix, names, err)
	}
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil || strings.Contains(string(out), prefix+"-") {
		t.Errorf("ip netns list shows %s: %s (err %v)", prefix, out, err)
	}
	out, err = exec.Command("ip", "-o", "link").CombinedOutput()
	if err != nil || strings.Contains(string(out), prefix+"-") {
		t.Errorf("ip link shows %s: %s (err %v)", prefix, out, err)
	}
	if out, err := exec.Command("nft", "list", "tables").CombinedOutput(); err == nil && strings.Contains(string(out), prefix) {
		t.Errorf("host nftables shows %s: %s", prefix, out)
	}
}

func ec2Client(lab *Lab) *ec2.Client {
	c := lab.Credentials()
	return ec2.New(ec2.Options{
		Region:       lab.Region(),
		BaseEndpoint: aws.String(lab.EC2Endpoint()),
		Credentials:  credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, ""),
	})
}

// fetch returns the source IP the internet server saw from instance, with
// a short deadline (a dropped flow fails within it).
func fetch(lab *Lab, instance string, d time.Duration) (netip.Addr, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return lab.FetchSourceIP(ctx, instance)
}

// eventually retries fetch until it returns want (bounded).
func eventuallySees(t *testing.T, lab *Lab, instance string, want netip.Addr) {
	t.Helper()
	var got netip.Addr
	var err error
	for range 10 {
		if got, err = fetch(lab, instance, 2*time.Second); err == nil && got == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("from %s the internet server sees %v (err %v), want %v", instance, got, err, want)
}

// waitInNS waits until pid has entered the named namespace (`ip netns
// exec` forks before it switches).
func waitInNS(t *testing.T, name string, pid int) {
	t.Helper()
	for range 250 {
		if pids, _ := NSProcesses(name); slices.Contains(pids, pid) {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("process %d never entered namespace %s", pid, name)
}

func verify(t *testing.T, lab *Lab) {
	t.Helper()
	if err := lab.Verify(); err != nil {
		t.Fatal(err)
	}
}

func mustFail(t *testing.T, lab *Lab, instance, why string) {
	t.Helper()
	if got, err := fetch(lab, instance, 1500*time.Millisecond); err == nil {
		t.Fatalf("%s: %s reached the internet server as %v, want failure", why, instance, got)
	}
}

// setupNAT turns an instance into a throwaway NAT: ip_forward=1 and a
// masquerade ruleset, both inside its namespace.
func setupNAT(t *testing.T, ns *netns.NS) {
	t.Helper()
	if err := writeSysctl(ns, "net/ipv4/ip_forward", "1", false); err != nil {
		t.Fatal(err)
	}
	rules := filepath.Join(t.TempDir(), "nat.nft")
	err := os.WriteFile(rules, []byte(`table ip hntnat {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "eth0" ip saddr 10.0.0.0/16 ip daddr != 10.0.0.0/16 masquerade
	}
}
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := ns.Run(context.Background(), "nft", "-f", rules); err != nil {
		t.Fatalf("nat ruleset: %v %s", err, out)
	}
}

func TestUpReachability(t *testing.T) {
	lab := upLab(t, Options{})
	verify(t, lab)
	natA, natC, appA := lab.Instance("nat-a"), lab.Instance("nat-c"), lab.Instance("app-a")
	if natA.PublicIP != netip.MustParseAddr("198.51.100.10") || natC.PublicIP != netip.MustParseAddr("198.51.100.11") {
		t.Fatalf("NAT public IPs %v %v", natA.PublicIP, natC.PublicIP)
	}
	if appA.PublicIP.IsValid() || appA.PrivateIP != netip.MustParseAddr("10.0.11.10") {
		t.Fatalf("app-a = %+v", appA)
	}

	// A public-subnet instance with an EIP reaches the internet as its EIP.
	eventuallySees(t, lab, "nat-a", natA.PublicIP)
	eventuallySees(t, lab, "nat-c", natC.PublicIP)

	// A private host has no route out.
	mustFail(t, lab, "app-a", "no NAT")
	mustFail(t, lab, "app-c", "no NAT")

	// The internet cannot reach a private host, even by sending straight to
	// its private IP through the IGW.
	ln, err := listenIn(appA.NS, "tcp4", "0.0.0.0:8080")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if c, err := DialIn(ctx, lab.Internet().NS, "tcp4", "10.0.11.10:8080"); err == nil {
		c.Close()
		t.Fatal("the internet reached app-a's private IP")
	}
	// The same listener is reachable inside the VPC (nat-a → app-a).
	c, err := lab.Dial(context.Background(), "nat-a", "tcp4", "10.0.11.10:8080")
	if err != nil {
		t.Fatalf("nat-a → app-a inside the VPC: %v", err)
	}
	c.Close()

	// UDP echo on the internet answers an EIP'd instance.
	uc, err := lab.Dial(context.Background(), "nat-c", "udp4", lab.Internet().UDPEchoAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if !udpRoundTrip(uc, "ping") {
		t.Fatal("UDP echo from nat-c got no answer")
	}
	// The servers say which public source they saw: nat-c's EIP.
	natCIP := lab.Instance("nat-c").PublicIP
	udpFrom := netip.AddrPortFrom(natCIP, netip.MustParseAddrPort(uc.LocalAddr().String()).Port())
	if n := lab.ServerSources().UDPEcho[udpFrom]; n == 0 {
		t.Errorf("the UDP echo server saw no datagram from %s: %+v", udpFrom, lab.ServerSources())
	}
	cc, err := lab.Dial(context.Background(), "nat-c", "tcp4", lab.Internet().ChargenAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(cc, make([]byte, 100)); err != nil {
		t.Fatalf("chargen from nat-c: %v", err)
	}
	tcpFrom := netip.AddrPortFrom(natCIP, netip.MustParseAddrPort(cc.LocalAddr().String()).Port())
	if got := lab.ServerSources().Chargen; !slices.Contains(got, tcpFrom) {
		t.Errorf("chargen's open connections %v, want %s among them", got, tcpFrom)
	}
	cc.Close()
	deadline := time.Now().Add(5 * time.Second)
	for slices.Contains(lab.ServerSources().Chargen, tcpFrom) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := lab.ServerSources().Chargen; slices.Contains(got, tcpFrom) {
		t.Errorf("chargen still lists %s after the client closed: %v", tcpFrom, got)
	}
}

func udpRoundTrip(c net.Conn, msg string) bool {
	buf := make([]byte, 64)
	for range 3 {
		_ = c.SetDeadline(time.Now().Add(400 * time.Millisecond))
		if _, err := c.Write([]byte(msg)); err != nil {
			return false
		}
		n, err := c.Read(buf)
		if err == nil && string(buf[:n]) == msg {
			return true
		}
	}
	return false
}

func TestRealityFollowsAPI(t *testing.T) {
	lab := upLab(t, Options{SpareEIPs: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	api := ec2Client(lab)
	natA, natC := lab.Instance("nat-a"), lab.Instance("nat-c")
	setupNAT(t, natA.NS)
	setupNAT(t, natC.NS)
	rtb := lab.RouteTableID("private-a")

	_, err := api.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: aws.String(rtb),
		DestinationCidrBlock: aws.String("0.0.0.0/0"), NetworkInterfaceId: aws.String(natA.ENIID)})
	if err != nil {
		t.Fatalf("CreateRoute: %v", err)
	}
	// Source/dest check on: the router drops traffic to nat-a that is not
	// addressed to nat-a.
	mustFail(t, lab, "app-a", "source/dest check on")

	_, err = api.ModifyNetworkInterfaceAttribute(ctx, &ec2.ModifyNetworkInterfaceAttributeInput{
		NetworkInterfaceId: aws.String(natA.ENIID), SourceDestCheck: &types.AttributeBooleanValue{Value: aws.Bool(false)}})
	if err != nil {
		t.Fatalf("ModifyNetworkInterfaceAttribute: %v", err)
	}
	eventuallySees(t, lab, "app-a", natA.PublicIP)

	// Turning the check back on stops the forwarding again.
	_, err = api.ModifyNetworkInterfaceAttribute(ctx, &ec2.ModifyNetworkInterfaceAttributeInput{
		NetworkInterfaceId: aws.String(natA.ENIID), SourceDestCheck: &types.AttributeBooleanValue{Value: aws.Bool(true)}})
	if err != nil {
		t.Fatalf("ModifyNetworkInterfaceAttribute: %v", err)
	}
	mustFail(t, lab, "app-a", "source/dest check back on")

	// ModifyInstanceAttribute (single-ENI instance) turns nat-c's check off.
	_, err = api.ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{
		InstanceId: aws.String(natC.ID), SourceDestCheck: &types.AttributeBooleanValue{Value: aws.Bool(false)}})
	if err != nil {
		t.Fatalf("ModifyInstanceAttribute: %v", err)
	}
	_, err = api.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{RouteTableId: aws.String(rtb),
		DestinationCidrBlock: aws.String("0.0.0.0/0"), NetworkInterfaceId: aws.String(natC.ENIID)})
	if err != nil {
		t.Fatalf("ReplaceRoute: %v", err)
	}
	eventuallySees(t, lab, "app-a", natC.PublicIP)
	verify(t, lab)
	out, err := api.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{RouteTableIds: []string{rtb}})
	if err != nil {
		t.Fatalf("DescribeRouteTables: %v", err)
	}
	if !slices.ContainsFunc(out.RouteTables[0].Routes, func(r types.Route) bool {
		return aws.ToString(r.DestinationCidrBlock) == "0.0.0.0/0" && aws.ToString(r.NetworkInterfaceId) == natC.ENIID
	}) {
		t.Fatalf("DescribeRouteTables does not show 0.0.0.0/0 → %s: %+v", natC.ENIID, out.RouteTables[0].Routes)
	}

	// Moving an EIP: the spare one onto nat-c's private IP.
	allocs, pubs := lab.SpareEIPs()
	_, err = api.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: aws.String(allocs[0]),
		NetworkInterfaceId: aws.String(natC.ENIID), AllowReassociation: aws.Bool(true)})
	if err != nil {
		t.Fatalf("AssociateAddress: %v", err)
	}
	eventuallySees(t, lab, "app-a", pubs[0])
	eventuallySees(t, lab, "nat-c", pubs[0])
	if got := lab.Instance("nat-c").PublicIP; got != pubs[0] {
		t.Errorf("Instance(nat-c).PublicIP = %v, want %v", got, pubs[0])
	}
	verify(t, lab)

	// DeleteRoute: the private host has no way out again.
	if _, err := api.DeleteRoute(ctx, &ec2.DeleteRouteInput{RouteTableId: aws.String(rtb), DestinationCidrBlock: aws.String("0.0.0.0/0")}); err != nil {
		t.Fatalf("DeleteRoute: %v", err)
	}
	mustFail(t, lab, "app-a", "route deleted")
	verify(t, lab)
}

func TestSecondaryIPMoves(t *testing.T) {
	lab := upLab(t, Options{NATInstances: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	api := ec2Client(lab)
	a, a2 := lab.Instance("nat-a"), lab.Instance("nat-a2")
	if a2 == nil || a2.Subnet != "public-a" {
		t.Fatalf("nat-a2 = %+v", a2)
	}
	const floating = "10.0.1.50"
	serve := func(in *Instance) net.Listener {
		ln, err := listenIn(in.NS, "tcp4", "0.0.0.0:7000")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				fmt.Fprintln(c, in.Name)
				c.Close()
			}
		}()
		return ln
	}
	defer serve(a).Close()
	defer serve(a2).Close()
	who := func() (string, error) {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		c, err := lab.Dial(dctx, "app-c", "tcp4", floating+":7000")
		if err != nil {
			return "", err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		b, err := io.ReadAll(c)
		return strings.TrimSpace(string(b)), err
	}
	if got, err := who(); err == nil {
		t.Fatalf("floating IP answered (%q) before it was assigned", got)
	}
	_, err := api.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{
		NetworkInterfaceId: aws.String(a.ENIID), PrivateIpAddresses: []string{floating}})
	if err != nil {
		t.Fatalf("AssignPrivateIpAddresses: %v", err)
	}
	if got, err := who(); err != nil || got != "nat-a" {
		t.Fatalf("floating IP answered %q (err %v), want nat-a", got, err)
	}
	_, err = api.AssignPrivateIpAddresses(ctx, &ec2.AssignPrivateIpAddressesInput{
		NetworkInterfaceId: aws.String(a2.ENIID), PrivateIpAddresses: []string{floating}, AllowReassignment: aws.Bool(true)})
	if err != nil {
		t.Fatalf("AssignPrivateIpAddresses with reassignment: %v", err)
	}
	if got, err := who(); err != nil || got != "nat-a2" {
		t.Fatalf("floating IP answered %q (err %v), want nat-a2", got, err)
	}
	verify(t, lab)
	// The address left nat-a: it can no longer bind it.
	err = a.NS.Do(func() error {
		ln, err := net.Listen("tcp4", floating+":7001")
		if err == nil {
			ln.Close()
		}
		return err
	})
	if err == nil {
		t.Fatal("nat-a still holds the moved IP")
	}
}

func TestIMDSAnswersAsCaller(t *testing.T) {
	lab := upLab(t, Options{NATInstances: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, name := range []string{"nat-a", "app-a", "app-c"} {
		in := lab.Instance(name)
		client := imds.New(imds.Options{Endpoint: "http://" + IMDSAddr, HTTPClient: lab.HTTPClient(name)})
		out, err := client.GetMetadata(ctx, &imds.GetMetadataInput{Path: "instance-id"})
		if err != nil {
			t.Fatalf("%s: IMDS instance-id: %v", name, err)
		}
		b, _ := io.ReadAll(out.Content)
		out.Content.Close()
		if string(b) != in.ID {
			t.Errorf("%s: IMDS instance-id = %q, want %q", name, b, in.ID)
		}
		reg, err := client.GetRegion(ctx, &imds.GetRegionInput{})
		if err != nil || reg.Region != lab.Region() {
			t.Errorf("%s: IMDS region = %+v, %v", name, reg, err)
		}
	}
	// Also with curl from inside the namespace (what a shell on the
	// instance does).
	ns := lab.Instance("app-c").NS
	tok, err := ns.Run(ctx, "curl", "-sf", "-m", "5", "-X", "PUT", "-H", "X-aws-ec2-metadata-token-ttl-seconds: 60", "http://169.254.169.254/latest/api/token")
	if err != nil {
		t.Fatalf("curl token: %v", err)
	}
	id, err := ns.Run(ctx, "curl", "-sf", "-m", "5", "-H", "X-aws-ec2-metadata-token: "+tok, "http://169.254.169.254/latest/meta-data/instance-id")
	if err != nil || id != lab.Instance("app-c").ID {
		t.Errorf("curl instance-id from app-c = %q, %v", id, err)
	}
	// The EC2 API inside the VPC answers too (signature checked: an
	// unsigned request is refused with an AWS error).
	body, err := ns.Run(ctx, "curl", "-s", "-m", "5", "-d", "Action=DescribeVpcs&Version=2016-11-15", lab.VPCEndpoint())
	if err != nil || !strings.Contains(body, "<Response><Errors>") {
		t.Errorf("unsigned EC2 call from inside the VPC: %q, %v", body, err)
	}
	// … and a signed one through the SDK, from inside app-c.
	c := lab.Credentials()
	vpcAPI := ec2.New(ec2.Options{Region: lab.Region(), BaseEndpoint: aws.String(lab.VPCEndpoint()),
		HTTPClient:  lab.HTTPClient("app-c"),
		Credentials: credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, "")})
	vpcs, err := vpcAPI.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{})
	if err != nil || len(vpcs.Vpcs) != 1 || aws.ToString(vpcs.Vpcs[0].VpcId) != lab.VPCID() {
		t.Errorf("DescribeVpcs through the VPC endpoint from app-c: %+v, %v", vpcs, err)
	}
	// Processes started by the lab get the SDK environment.
	p, err := lab.Start(ctx, "app-c", "sh", "-c", "echo $AWS_ENDPOINT_URL_EC2 $AWS_REGION")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(); err != nil || strings.TrimSpace(p.Output()) != lab.VPCEndpoint()+" "+lab.Region() {
		t.Errorf("env inside the instance: %q, %v", p.Output(), err)
	}
}

func TestPartitionAndHeal(t *testing.T) {
	lab := upLab(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// UDP echo servers on two ports in nat-c, TCP on one.
	natC := lab.Instance("nat-c")
	for _, port := range []string{"7946", "7947"} {
		var pc net.PacketConn
		if err := natC.NS.Do(func() (err error) { pc, err = net.ListenPacket("udp4", "0.0.0.0:"+port); return }); err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		go func() {
			buf := make([]byte, 64)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				_, _ = pc.WriteTo(buf[:n], from)
			}
		}()
	}
	tcpLn, err := listenIn(natC.NS, "tcp4", "0.0.0.0:7946")
	if err != nil {
		t.Fatal(err)
	}
	defer tcpLn.Close()
	go func() {
		for {
			c, err := tcpLn.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	udpOK := func(from, port string) bool {
		c, err := lab.Dial(ctx, from, "udp4", natC.PrivateIP.String()+":"+port)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return udpRoundTrip(c, "hb")
	}
	tcpOK := func(from string) bool {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		c, err := lab.Dial(dctx, from, "tcp4", natC.PrivateIP.String()+":7946")
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	if !udpOK("nat-a", "7946") || !udpOK("nat-a", "7947") || !tcpOK("nat-a") {
		t.Fatal("nat-a ↔ nat-c not connected before the partition")
	}
	if err := lab.Partition(ctx, "nat-a", "nat-c", "udp", 7946); err != nil {
		t.Fatal(err)
	}
	if udpOK("nat-a", "7946") {
		t.Error("udp/7946 nat-a → nat-c passes the partition")
	}
	if !udpOK("nat-a", "7947") || !tcpOK("nat-a") {
		t.Error("the udp/7946 partition cut other traffic")
	}
	if !udpOK("app-a", "7946") {
		t.Error("the nat-a ↔ nat-c partition cut app-a")
	}
	if got := lab.Status().Partitions; len(got) != 1 {
		t.Errorf("Status().Partitions = %+v", got)
	}
	if err := lab.Heal(ctx, "nat-c", "nat-a", "udp", 7946); err != nil {
		t.Fatal(err)
	}
	if !udpOK("nat-a", "7946") {
		t.Error("udp/7946 still cut after Heal")
	}
	// A full partition cuts everything between the two, then HealAll.
	if err := lab.Partition(ctx, "nat-a", "nat-c", "", 0); err != nil {
		t.Fatal(err)
	}
	if udpOK("nat-a", "7947") || tcpOK("nat-a") {
		t.Error("full partition lets traffic through")
	}
	if err := lab.HealAll(ctx); err != nil {
		t.Fatal(err)
	}
	if !tcpOK("nat-a") {
		t.Error("tcp still cut after HealAll")
	}
	if err := lab.Partition(ctx, "nat-a", "nat-c", "icmp", 5); err == nil {
		t.Error("Partition accepted icmp with a port")
	}
	if err := lab.Partition(ctx, "nat-a", "nobody", "", 0); err == nil {
		t.Error("Partition accepted an unknown instance")
	}
}

func TestStopStartInstance(t *testing.T) {
	lab := upLab(t, Options{PointPrivateRoutesAtNATs: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	natA := lab.Instance("nat-a")
	p, err := lab.Start(ctx, "nat-a", "sleep", "300")
	if err != nil {
		t.Fatal(err)
	}
	eventuallySees(t, lab, "nat-a", natA.PublicIP)
	if err := lab.StopInstance(ctx, "nat-a"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("process in nat-a survived StopInstance")
	}
	if _, err := lab.Start(ctx, "nat-a", "true"); err == nil {
		t.Error("Start in a stopped instance succeeded")
	}
	mustFail(t, lab, "nat-a", "stopped")
	out, err := ec2Client(lab).DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{RouteTableIds: []string{lab.RouteTableID("private-a")}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(out.RouteTables[0].Routes, func(r types.Route) bool {
		return aws.ToString(r.NetworkInterfaceId) == natA.ENIID && r.State == types.RouteStateBlackhole
	}) {
		t.Errorf("route to stopped nat-a not blackhole: %+v", out.RouteTables[0].Routes)
	}
	verify(t, lab)
	if err := lab.StartInstance(ctx, "nat-a"); err != nil {
		t.Fatal(err)
	}
	eventuallySees(t, lab, "nat-a", natA.PublicIP)
	if st := lab.Status(); st.Instances[0].State != ec2sim.InstanceRunning {
		t.Errorf("state after start = %q", st.Instances[0].State)
	}
}

func TestAPIThrottlingSeenBySDK(t *testing.T) {
	lab := upLab(t, Options{NATInstances: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lab.SetAPIFaults(ec2sim.Faults{ThrottleRate: 1, Actions: []string{"DescribeVpcs"}})
	_, err := ec2Client(lab).DescribeVpcs(ctx, &ec2.DescribeVpcsInput{}, func(o *ec2.Options) { o.RetryMaxAttempts = 2 })
	var ae smithy.APIError
	if !errors.As(err, &ae) || ae.ErrorCode() != "RequestLimitExceeded" {
		t.Fatalf("DescribeVpcs under throttling: %v", err)
	}
	lab.SetAPIFaults(ec2sim.Faults{})
	if _, err := ec2Client(lab).DescribeVpcs(ctx, &ec2.DescribeVpcsInput{}); err != nil {
		t.Fatalf("DescribeVpcs after faults cleared: %v", err)
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	needRoot(t)
	prefix := "hnt" + RandomPrefix()[3:]
	ctx := context.Background()
	lab, err := Up(ctx, nil, Options{Prefix: prefix, NATInstances: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = Cleanup(prefix) })
	p, err := lab.Start(ctx, "app-a", "sleep", "300")
	if err != nil {
		t.Fatal(err)
	}
	// A process started outside the lab's tracking, like `hanat-lab exec`.
	stray := lab.Instance("app-c").NS.Command(ctx, "sleep", "300")
	if err := stray.Start(); err != nil {
		t.Fatal(err)
	}
	strayDone := make(chan struct{})
	go func() { _ = stray.Wait(); close(strayDone) }()
	waitInNS(t, lab.Instance("app-c").NS.Name, stray.Process.Pid)
	if names, _ := Namespaces(prefix); len(names) != 6 {
		t.Fatalf("namespaces = %v, want router, igw, internet and 3 instances", names)
	}
	if err := lab.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := lab.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	for _, done := range []<-chan struct{}{p.Done(), strayDone} {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("a process in the lab survived Close")
		}
	}
	assertGone(t, prefix)
}

// A lab whose owner died (namespaces and processes left behind) is removed
// by Cleanup, and Up with the same prefix starts clean.
func TestCleanupAfterCrash(t *testing.T) {
	needRoot(t)
	prefix := "hnt" + RandomPrefix()[3:]
	t.Cleanup(func() { _ = Cleanup(prefix) })
	// Simulate a crash: namespaces and a process, no Lab to close them.
	ns, err := netns.Create(prefix + "-router")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ns.Close() })
	orphan := ns.Command(context.Background(), "sleep", "300")
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = orphan.Wait(); close(done) }()
	waitInNS(t, ns.Name, orphan.Process.Pid)
	lab := upLab(t, Options{Prefix: prefix, NATInstances: -1})
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Up did not kill the leftover process")
	}
	if got := lab.Instances(); !slices.Equal(got, []string{"app-a", "app-c"}) {
		t.Errorf("instances = %v", got)
	}
}

// A two-armed NAT: private traffic enters on eth1 (private subnet) and
// leaves on eth0; only eth1's source/dest check is in the way.
func TestTwoArmedNAT(t *testing.T) {
	lab := upLab(t, Options{NATInstances: 1, NATSecondENI: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	api := ec2Client(lab)
	nat := lab.Instance("nat-a")
	if len(nat.ENIs) != 2 || nat.ENIs[1].Device != "eth1" || nat.ENIs[1].Subnet != "private-a" ||
		nat.ENIs[1].PrimaryIP != netip.MustParseAddr("10.0.11.20") {
		t.Fatalf("nat-a ENIs = %+v", nat.ENIs)
	}
	setupNAT(t, nat.NS)
	inside := nat.ENIs[1].ID
	_, err := api.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: aws.String(lab.RouteTableID("private-a")),
		DestinationCidrBlock: aws.String("0.0.0.0/0"), NetworkInterfaceId: aws.String(inside)})
	if err != nil {
		t.Fatalf("CreateRoute: %v", err)
	}
	mustFail(t, lab, "app-a", "eth1 check on")
	// ModifyInstanceAttribute cannot change an instance with several ENIs.
	_, err = api.ModifyInstanceAttribute(ctx, &ec2.ModifyInstanceAttributeInput{
		InstanceId: aws.String(nat.ID), SourceDestCheck: &types.AttributeBooleanValue{Value: aws.Bool(false)}})
	if err == nil {
		t.Fatal("ModifyInstanceAttribute on a two-ENI instance succeeded")
	}
	_, err = api.ModifyNetworkInterfaceAttribute(ctx, &ec2.ModifyNetworkInterfaceAttributeInput{
		NetworkInterfaceId: aws.String(inside), SourceDestCheck: &types.AttributeBooleanValue{Value: aws.Bool(false)}})
	if err != nil {
		t.Fatalf("ModifyNetworkInterfaceAttribute: %v", err)
	}
	eventuallySees(t, lab, "app-a", nat.PublicIP)
	verify(t, lab)
	if e := lab.Instance("nat-a").ENIs; e[0].SourceDestCheck != true || e[1].SourceDestCheck != false {
		t.Errorf("checks after the change: %+v", e)
	}
}

// TestStopIsGracefulCrashIsNot: StopInstance lets processes handle
// SIGTERM (a shutdown) before the power goes; CrashInstance does not.
func TestStopIsGracefulCrashIsNot(t *testing.T) {
	lab := upLab(t, Options{NATInstances: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	script := `trap 'echo got-sigterm; exit 0' TERM; echo ready; while :; do sleep 0.05; done`
	for _, tc := range []struct {
		name     string
		stop     func(context.Context, string) error
		wantTerm bool
	}{
		{"stop", lab.StopInstance, true},
		{"crash", lab.CrashInstance, false},
	} {
		p, err := lab.Start(ctx, "nat-a", "sh", "-c", script)
		if err != nil {
			t.Fatal(err)
		}
		for end := time.Now().Add(5 * time.Second); !strings.Contains(p.Output(), "ready") && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
		}
		if err := tc.stop(ctx, "nat-a"); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		<-p.Done()
		if got := strings.Contains(p.Output(), "got-sigterm"); got != tc.wantTerm {
			t.Errorf("%s: process saw SIGTERM: %v, want %v (output %q)", tc.name, got, tc.wantTerm, p.Output())
		}
		if err := lab.StartInstance(ctx, "nat-a"); err != nil {
			t.Fatal(err)
		}
	}
}

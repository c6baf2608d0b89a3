package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/internal/netns"
	"github.com/hanat/hanat/internal/vpcsim"
)

// labNAT is a hanatd running inside a lab instance.
type labNAT struct {
	proc   *vpcsim.Process
	socket string
	client *admin.Client
}

// startLabHanatd runs hanatd in a lab instance with an otherwise empty
// config: only the admin socket and state dir move into the test's temp dir.
func startLabHanatd(t *testing.T, lab *vpcsim.Lab, instance, extra string, args ...string) *labNAT {
	t.Helper()
	dir := t.TempDir()
	socket := filepath.Join(dir, "admin.sock")
	cfg := filepath.Join(dir, "hanat.yaml")
	body := fmt.Sprintf("admin:\n  socket: %s\nstate_dir: %s\n%s", socket, filepath.Join(dir, "state"), extra)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := lab.Start(context.Background(), instance, append([]string{bins.hanatd, "--config", cfg}, args...)...)
	if err != nil {
		t.Fatalf("start hanatd in %s: %v", instance, err)
	}
	n := &labNAT{proc: p, socket: socket, client: admin.NewClient(socket)}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("hanatd in %s:\n%s", instance, p.Output())
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; i < 400 && time.Now().Before(deadline); i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := n.client.Status(ctx)
		cancel()
		if err == nil && st.Ready {
			return n
		}
		select {
		case <-p.Done():
			t.Fatalf("hanatd in %s exited:\n%s", instance, p.Output())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("hanatd in %s not ready within 20s:\n%s", instance, p.Output())
	return nil
}

func labEC2(lab *vpcsim.Lab) *ec2.Client {
	c := lab.Credentials()
	return ec2.New(ec2.Options{
		Region:       lab.Region(),
		BaseEndpoint: aws.String(lab.EC2Endpoint()),
		Credentials:  credentials.NewStaticCredentialsProvider(c.AccessKeyID, c.SecretAccessKey, ""),
	})
}

func srcDstCheck(t *testing.T, api *ec2.Client, eni string) bool {
	t.Helper()
	out, err := api.DescribeNetworkInterfaces(context.Background(), &ec2.DescribeNetworkInterfacesInput{NetworkInterfaceIds: []string{eni}})
	if err != nil || len(out.NetworkInterfaces) != 1 {
		t.Fatalf("DescribeNetworkInterfaces %s: %v", eni, err)
	}
	return aws.ToBool(out.NetworkInterfaces[0].SourceDestCheck)
}

func upLab(t *testing.T) *vpcsim.Lab {
	t.Helper()
	return upLabWith(t, vpcsim.Options{PointPrivateRoutesAtNATs: true})
}

// upLabWith is a lab of opts (its prefix unique) closed when t ends.
func upLabWith(t *testing.T, opts vpcsim.Options) *vpcsim.Lab {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.Prefix = "e2" + netns.UniqueName("")[:4]
	lab, err := vpcsim.Up(context.Background(), log, opts)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := lab.Close(ctx); err != nil {
			t.Errorf("lab close: %v", err)
		}
	})
	return lab
}

func doctorCheck(t *testing.T, n *labNAT, id string) admin.DoctorCheck {
	t.Helper()
	rep, err := n.client.Doctor(context.Background())
	if err != nil {
		t.Fatalf("doctor: %v", err)
	}
	for _, c := range rep.Checks {
		if c.ID == id {
			return c
		}
	}
	t.Fatalf("doctor has no check %q: %+v", id, rep.Checks)
	return admin.DoctorCheck{}
}

// TestOnEC2EmptyConfig: a NAT instance launched with hanat and an empty
// config disables its source/dest check itself and NATs its AZ's private
// subnet; the internet sees its EIP and cannot reach the private host.
func TestOnEC2EmptyConfig(t *testing.T) {
	ctx := context.Background()
	lab := upLab(t)
	api := labEC2(lab)
	natA := lab.Instance("nat-a")

	if !srcDstCheck(t, api, natA.ENIID) {
		t.Fatal("lab NAT starts with the source/dest check already off")
	}
	fctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	if ip, err := lab.FetchSourceIP(fctx, "app-a"); err == nil {
		t.Fatalf("private host reached the internet (as %s) with no hanatd running", ip)
	}
	cancel()

	n := startLabHanatd(t, lab, "nat-a", "")

	deadline := time.Now().Add(15 * time.Second)
	for srcDstCheck(t, api, natA.ENIID) {
		if time.Now().After(deadline) {
			t.Fatal("hanatd did not disable the source/dest check within 15s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	fctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	ip, err := lab.FetchSourceIP(fctx, "app-a")
	cancel()
	if err != nil {
		t.Fatalf("private host through hanatd: %v", err)
	}
	if ip != natA.PublicIP {
		t.Fatalf("internet server saw %s, want nat-a's EIP %s", ip, natA.PublicIP)
	}
	app := lab.Instance("app-a")
	if tcpConnects(lab.Internet().NS, app.PrivateIP.String()+":22", time.Second) {
		t.Error("internet opened a connection to the private host")
	}

	st, err := n.client.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Cloud.OnEC2 || st.Cloud.ENIID != natA.ENIID || st.Cloud.SourceDestCheck != "disabled" || st.Cloud.PublicIP != natA.PublicIP.String() {
		t.Errorf("status cloud = %+v", st.Cloud)
	}
	if strings.Join(st.NAT.PrivateCIDRs, ",") != "10.0.0.0/16" || strings.Join(st.NAT.SNATAddrs, ",") != natA.PrivateIP.String() {
		t.Errorf("status NAT = %+v, want the VPC CIDR and nat-a's private IP from IMDS", st.NAT)
	}

	// doctor on the healthy lab: nothing fails.
	rep, err := n.client.Doctor(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Fatalf("doctor on a healthy lab: %+v", rep.Checks)
	}
	for _, c := range rep.Checks {
		if c.Status != "pass" {
			t.Errorf("doctor check %s = %s: %s", c.ID, c.Status, c.Detail)
		}
	}
	out, err := runCtl(n.socket, "doctor")
	if err != nil || !strings.Contains(out, "no check failed") {
		t.Errorf("hanatctl doctor on a healthy lab: %v\n%s", err, out)
	}

	t.Run("doctor flags misconfigurations", func(t *testing.T) {
		pub := lab.RouteTableID("public")
		privA := lab.RouteTableID("private-a")
		natC := lab.Instance("nat-c")
		alloc := lab.EIPAllocationID(natA.PublicIP)

		// No IGW route in the NAT's subnet.
		mustAPI(t, "DeleteRoute", func() error {
			_, err := api.DeleteRoute(ctx, &ec2.DeleteRouteInput{RouteTableId: &pub, DestinationCidrBlock: aws.String("0.0.0.0/0")})
			return err
		})
		if c := doctorCheck(t, n, "nat-in-public-subnet"); c.Status != "fail" || !strings.Contains(c.Detail, "no 0.0.0.0/0 route") || !strings.Contains(c.Fix, "create-route --route-table-id "+pub) {
			t.Errorf("no IGW route: %+v", c)
		}
		mustAPI(t, "CreateRoute", func() error {
			_, err := api.CreateRoute(ctx, &ec2.CreateRouteInput{RouteTableId: &pub, DestinationCidrBlock: aws.String("0.0.0.0/0"), GatewayId: aws.String(lab.IGWID())})
			return err
		})

		// No public IP.
		mustAPI(t, "DisassociateAddress", func() error {
			_, err := api.DisassociateAddress(ctx, &ec2.DisassociateAddressInput{PublicIp: aws.String(natA.PublicIP.String())})
			return err
		})
		if c := doctorCheck(t, n, "nat-public-ip"); c.Status != "fail" || !strings.Contains(c.Detail, "no public IPv4") {
			t.Errorf("no public IP: %+v", c)
		}
		mustAPI(t, "AssociateAddress", func() error {
			_, err := api.AssociateAddress(ctx, &ec2.AssociateAddressInput{AllocationId: &alloc, NetworkInterfaceId: aws.String(natA.ENIID)})
			return err
		})

		// Private route pointing elsewhere.
		mustAPI(t, "ReplaceRoute", func() error {
			_, err := api.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{RouteTableId: &privA, DestinationCidrBlock: aws.String("0.0.0.0/0"), NetworkInterfaceId: aws.String(natC.ENIID)})
			return err
		})
		if c := doctorCheck(t, n, "private-route:"+privA); c.Status != "fail" || !strings.Contains(c.Detail, natC.ENIID) || !strings.Contains(c.Fix, "replace-route --route-table-id "+privA) {
			t.Errorf("private route elsewhere: %+v", c)
		}
		mustAPI(t, "ReplaceRoute", func() error {
			_, err := api.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{RouteTableId: &privA, DestinationCidrBlock: aws.String("0.0.0.0/0"), NetworkInterfaceId: aws.String(natA.ENIID)})
			return err
		})

		// Source/dest check turned back on behind hanatd's back.
		mustAPI(t, "ModifyNetworkInterfaceAttribute", func() error {
			_, err := api.ModifyNetworkInterfaceAttribute(ctx, &ec2.ModifyNetworkInterfaceAttributeInput{
				NetworkInterfaceId: aws.String(natA.ENIID), SourceDestCheck: &types.AttributeBooleanValue{Value: aws.Bool(true)},
			})
			return err
		})
		if c := doctorCheck(t, n, "source-dest-check"); c.Status != "fail" || !strings.Contains(c.Detail, "enabled on "+natA.ENIID) {
			t.Errorf("check on: %+v", c)
		}

		// A NAT in a private subnet: the seed's common mistake.
		wrong := startLabHanatd(t, lab, "app-c", "cloud:\n  manage_source_dest_check: false\n")
		if c := doctorCheck(t, wrong, "nat-in-public-subnet"); c.Status != "fail" || !strings.Contains(c.Detail, "common mistake") {
			t.Errorf("NAT in a private subnet: %+v", c)
		}
	})
}

func mustAPI(t *testing.T, call string, f func() error) {
	t.Helper()
	if err := f(); err != nil {
		t.Fatalf("%s: %v", call, err)
	}
}

func runCtl(socket string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bins.hanatctl, append([]string{"--socket", socket}, args...)...).CombinedOutput()
	return string(out), err
}

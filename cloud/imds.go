// Package cloud is hanat's only door to AWS: IMDSv2 discovery of the
// instance it runs on, and the EC2 API calls the NAT and its HA pair need.
// It is the only package that imports aws-sdk-go-v2.
package cloud

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

// Instance is what IMDSv2 says about the instance hanatd runs on.
type Instance struct {
	ID               string         `json:"instance_id"`
	Region           string         `json:"region"`
	AvailabilityZone string         `json:"availability_zone"`
	MAC              string         `json:"mac"` // primary ENI
	PrivateIP        netip.Addr     `json:"private_ip"`
	PublicIP         netip.Addr     `json:"public_ip,omitzero"`
	VPCID            string         `json:"vpc_id"`
	VPCCIDRs         []netip.Prefix `json:"vpc_cidrs"`
	ENIs             []ENI          `json:"enis"`
}

// ENI is one network interface of the instance, as IMDS describes it.
type ENI struct {
	ID           string         `json:"eni_id"`
	MAC          string         `json:"mac"`
	DeviceNumber int            `json:"device_number"`
	SubnetID     string         `json:"subnet_id"`
	VPCID        string         `json:"vpc_id"`
	VPCCIDRs     []netip.Prefix `json:"vpc_cidrs"`
	PrivateIPs   []netip.Addr   `json:"private_ips"` // primary first
	PublicIPs    []netip.Addr   `json:"public_ips,omitempty"`
}

// ErrNoIMDS means the instance metadata service did not answer: hanatd is
// not on EC2 (or IMDS is disabled) and runs from its config file alone.
var ErrNoIMDS = errors.New("instance metadata service (IMDSv2) not reachable")

// IMDSOptions configures discovery. Endpoint overrides the default
// http://169.254.169.254 (tests, the simulated VPC).
type IMDSOptions struct {
	Endpoint string
	// Timeout bounds the whole discovery; the first unanswered request
	// turns into ErrNoIMDS quickly so hanatd starts off EC2 without delay.
	Timeout time.Duration
}

// NewIMDSClient returns an IMDSv2-only client (no IMDSv1 fallback) with a
// short per-call timeout and few retries: on EC2 IMDS answers in
// milliseconds, off EC2 hanatd must find out fast.
func NewIMDSClient(o IMDSOptions) *imds.Client {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	return imds.New(imds.Options{
		Endpoint:          o.Endpoint,
		ClientEnableState: imds.ClientEnabled,
		EnableFallback:    aws.FalseTernary,
		HTTPClient:        &http.Client{Timeout: timeout},
		Retryer:           retry.AddWithMaxAttempts(retry.NewStandard(), 2),
	})
}

// Discover reads the instance's identity and network interfaces from IMDSv2.
func Discover(ctx context.Context, c *imds.Client, timeout time.Duration) (*Instance, error) {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	md := metadataReader{c: c}
	inst := &Instance{}
	var err error
	if inst.ID, err = md.get(ctx, "instance-id"); err != nil {
		return nil, err
	}
	if inst.Region, err = md.get(ctx, "placement/region"); err != nil {
		return nil, err
	}
	if inst.AvailabilityZone, err = md.get(ctx, "placement/availability-zone"); err != nil {
		return nil, err
	}
	if inst.MAC, err = md.get(ctx, "mac"); err != nil {
		return nil, err
	}
	local, err := md.get(ctx, "local-ipv4")
	if err != nil {
		return nil, err
	}
	if inst.PrivateIP, err = netip.ParseAddr(local); err != nil {
		return nil, fmt.Errorf("IMDS local-ipv4 %q: %w", local, err)
	}
	if pub, err := md.getOptional(ctx, "public-ipv4"); err != nil {
		return nil, err
	} else if pub != "" {
		if inst.PublicIP, err = netip.ParseAddr(pub); err != nil {
			return nil, fmt.Errorf("IMDS public-ipv4 %q: %w", pub, err)
		}
	}
	macs, err := md.list(ctx, "network/interfaces/macs/")
	if err != nil {
		return nil, err
	}
	for _, mac := range macs {
		eni, err := md.eni(ctx, mac)
		if err != nil {
			return nil, err
		}
		inst.ENIs = append(inst.ENIs, eni)
	}
	sort.Slice(inst.ENIs, func(i, j int) bool { return inst.ENIs[i].DeviceNumber < inst.ENIs[j].DeviceNumber })
	for _, e := range inst.ENIs {
		if strings.EqualFold(e.MAC, inst.MAC) {
			inst.VPCID, inst.VPCCIDRs = e.VPCID, e.VPCCIDRs
		}
	}
	if inst.VPCID == "" {
		return nil, fmt.Errorf("IMDS: primary MAC %s not among the instance's interfaces %v", inst.MAC, macs)
	}
	return inst, nil
}

// lifecyclePath is where IMDS serves an Auto Scaling instance's target
// lifecycle state: InService, Terminated (a scale-in), Standby, Detached
// or a warm pool's Warmed:… state.
const lifecyclePath = "autoscaling/target-lifecycle-state"

// TargetLifecycleState reads the instance's Auto Scaling target lifecycle
// state from IMDSv2; "" (and no error) when the instance is in no Auto
// Scaling group (IMDS has no such item).
func TargetLifecycleState(ctx context.Context, c *imds.Client) (string, error) {
	return metadataReader{c: c}.getOptional(ctx, lifecyclePath)
}

// ENIByMAC returns the instance's ENI with the given MAC.
func (i *Instance) ENIByMAC(mac string) (ENI, bool) {
	for _, e := range i.ENIs {
		if strings.EqualFold(e.MAC, mac) {
			return e, true
		}
	}
	return ENI{}, false
}

type metadataReader struct {
	c *imds.Client
}

func (m metadataReader) get(ctx context.Context, path string) (string, error) {
	out, err := m.c.GetMetadata(ctx, &imds.GetMetadataInput{Path: path})
	if err != nil {
		if ctx.Err() != nil || isUnreachable(err) {
			return "", fmt.Errorf("IMDS %s: %w: %v", path, ErrNoIMDS, err)
		}
		return "", fmt.Errorf("IMDS %s: %w", path, err)
	}
	defer out.Content.Close()
	b, err := io.ReadAll(io.LimitReader(out.Content, 1<<20))
	if err != nil {
		return "", fmt.Errorf("IMDS %s: read: %w", path, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// getOptional returns "" when the path does not exist (404), e.g.
// public-ipv4 on an instance without a public IP.
func (m metadataReader) getOptional(ctx context.Context, path string) (string, error) {
	v, err := m.get(ctx, path)
	if err != nil && isNotFound(err) {
		return "", nil
	}
	return v, err
}

func (m metadataReader) list(ctx context.Context, path string) ([]string, error) {
	v, err := m.get(ctx, path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(v, "\n") {
		if line = strings.TrimSuffix(strings.TrimSpace(line), "/"); line != "" {
			out = append(out, line)
		}
	}
	return out, nil
}

func (m metadataReader) eni(ctx context.Context, mac string) (ENI, error) {
	base := "network/interfaces/macs/" + mac + "/"
	e := ENI{MAC: mac}
	var err error
	if e.ID, err = m.get(ctx, base+"interface-id"); err != nil {
		return e, err
	}
	if e.SubnetID, err = m.get(ctx, base+"subnet-id"); err != nil {
		return e, err
	}
	if e.VPCID, err = m.get(ctx, base+"vpc-id"); err != nil {
		return e, err
	}
	dev, err := m.get(ctx, base+"device-number")
	if err != nil {
		return e, err
	}
	if e.DeviceNumber, err = strconv.Atoi(dev); err != nil {
		return e, fmt.Errorf("IMDS %sdevice-number %q: %w", base, dev, err)
	}
	cidrs, err := m.list(ctx, base+"vpc-ipv4-cidr-blocks")
	if err != nil {
		return e, err
	}
	for _, c := range cidrs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return e, fmt.Errorf("IMDS %svpc-ipv4-cidr-blocks %q: %w", base, c, err)
		}
		e.VPCCIDRs = append(e.VPCCIDRs, p.Masked())
	}
	ips, err := m.list(ctx, base+"local-ipv4s")
	if err != nil {
		return e, err
	}
	for _, s := range ips {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return e, fmt.Errorf("IMDS %slocal-ipv4s %q: %w", base, s, err)
		}
		e.PrivateIPs = append(e.PrivateIPs, a)
	}
	pubs, err := m.getOptional(ctx, base+"public-ipv4s")
	if err != nil {
		return e, err
	}
	for _, s := range strings.Fields(pubs) {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return e, fmt.Errorf("IMDS %spublic-ipv4s %q: %w", base, s, err)
		}
		e.PublicIPs = append(e.PublicIPs, a)
	}
	return e, nil
}

// isNotFound reports an HTTP 404 from IMDS (a path that does not exist for
// this instance, such as public-ipv4 without a public IP).
func isNotFound(err error) bool {
	var status interface{ HTTPStatusCode() int }
	return errors.As(err, &status) && status.HTTPStatusCode() == http.StatusNotFound
}

// isUnreachable reports a transport failure: nothing answers at the IMDS
// address (off EC2, or IMDS disabled on the instance). The SDK wraps the
// network error in a retry error that does not unwrap, so "no HTTP status
// anywhere in the chain" is the reliable sign that no IMDS answered.
func isUnreachable(err error) bool {
	var netErr net.Error
	if errors.As(err, &netErr) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var status interface{ HTTPStatusCode() int }
	if errors.As(err, &status) {
		return false
	}
	// The token path loses the typed error too but keeps its text.
	return !strings.Contains(err.Error(), "StatusCode:")
}

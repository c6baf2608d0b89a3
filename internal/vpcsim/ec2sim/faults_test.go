package ec2sim

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
)

// seedThrottlingFirst finds a seed whose first draw throttles (so the SDK
// must retry) and one of the next two does not (so 3 attempts succeed),
// using the handler's own fault sequence.
func seedThrottlingFirst(t *testing.T, rate float64) int64 {
	t.Helper()
	for seed := int64(1); seed < 1000; seed++ {
		var s faultState
		s.reset(Faults{ThrottleRate: rate, Seed: seed})
		first := s.inject(context.Background(), "X")
		second := s.inject(context.Background(), "X")
		third := s.inject(context.Background(), "X")
		if first != nil && (second == nil || third == nil) {
			return seed
		}
	}
	t.Fatal("no suitable seed below 1000")
	return 0
}

func TestThrottlingRetriedBySDK(t *testing.T) {
	l := newTestLab(t)
	ctx := context.Background()
	seed := seedThrottlingFirst(t, 0.5)
	l.m.SetFaults(Faults{ThrottleRate: 0.5, Seed: seed})

	out, err := l.ec2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{RouteTableIds: []string{l.rtbA}})
	if err != nil {
		t.Fatalf("throttled call did not succeed after retries: %v", err)
	}
	if len(out.RouteTables) != 1 {
		t.Fatalf("DescribeRouteTables = %+v", out)
	}
	st := l.m.Stats()
	if st.ByAction["DescribeRouteTables"] < 2 || st.Throttled < 1 {
		t.Fatalf("handler saw %d attempts, %d throttled; want >1 and >=1", st.ByAction["DescribeRouteTables"], st.Throttled)
	}

	// Determinism: the same seed gives the same sequence again.
	l.m.SetFaults(Faults{ThrottleRate: 0.5, Seed: seed})
	before := l.m.Stats()
	if _, err := l.ec2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{RouteTableIds: []string{l.rtbA}}); err != nil {
		t.Fatal(err)
	}
	after := l.m.Stats()
	if after.ByAction["DescribeRouteTables"]-before.ByAction["DescribeRouteTables"] != st.ByAction["DescribeRouteTables"] {
		t.Fatalf("same seed, different number of attempts")
	}

	// Always throttled: the SDK gives up with RequestLimitExceeded (503)
	// after its attempts.
	l.m.SetFaults(Faults{ThrottleRate: 1, Seed: seed})
	_, err = l.ec2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{})
	wantCode(t, err, "RequestLimitExceeded")
	var re *awshttp.ResponseError
	if !errors.As(err, &re) || re.HTTPStatusCode() != http.StatusServiceUnavailable {
		t.Fatalf("want HTTP 503, got %v", err)
	}
}

func TestFaultsRestrictedToActions(t *testing.T) {
	l := newTestLab(t)
	ctx := context.Background()
	c := l.client(t, testCreds, 2)
	l.m.SetFaults(Faults{ErrorRate: 1, Actions: []string{"ReplaceRoute"}, Seed: 7})

	if _, err := c.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{}); err != nil {
		t.Fatalf("an action outside Faults.Actions failed: %v", err)
	}
	_, err := c.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{RouteTableId: aws.String(l.rtbA), DestinationCidrBlock: aws.String("0.0.0.0/0"),
		NetworkInterfaceId: aws.String(l.natCENI)})
	wantCode(t, err, "InternalError")
	wantCalls(t, l.fabric) // injected before the action: nothing changed
	if st := l.m.Stats(); st.InjectedErrors != 2 || st.ByAction["ReplaceRoute"] != 2 {
		t.Fatalf("stats: %+v", st)
	}

	// Latency only (lower bound: the call cannot be faster than it).
	l.m.SetFaults(Faults{Latency: 30 * time.Millisecond})
	start := time.Now()
	if _, err := c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Fatalf("call took %v with 30ms injected latency", d)
	}
	if f := l.m.Faults(); f.Latency != 30*time.Millisecond {
		t.Fatalf("Faults() = %+v", f)
	}
	// A cancelled request does not wait out the latency.
	l.m.SetFaults(Faults{Latency: time.Minute})
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := c.DescribeVpcs(cctx, &ec2.DescribeVpcsInput{}); err == nil {
		t.Fatal("call with a minute of latency and a 50ms deadline succeeded")
	}
	l.m.SetFaults(Faults{})
	if _, err := c.DescribeVpcs(ctx, &ec2.DescribeVpcsInput{}); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentCalls runs describes and mutations in parallel (for -race):
// every mutation is serialized, the model stays consistent.
func TestConcurrentCalls(t *testing.T) {
	l := newTestLab(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for range 10 {
				if _, err := l.ec2.DescribeRouteTables(ctx, &ec2.DescribeRouteTablesInput{}); err != nil {
					errs <- err
					return
				}
				if _, err := l.ec2.DescribeNetworkInterfaces(ctx, &ec2.DescribeNetworkInterfacesInput{}); err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			eni := l.natAENI
			if i%2 == 1 {
				eni = l.natCENI
			}
			for range 10 {
				if _, err := l.ec2.ReplaceRoute(ctx, &ec2.ReplaceRouteInput{RouteTableId: aws.String(l.rtbA),
					DestinationCidrBlock: aws.String("0.0.0.0/0"), NetworkInterfaceId: aws.String(eni)}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := len(l.fabric.Calls()); n != 40 {
		t.Fatalf("%d fabric calls, want 40", n)
	}
	if r, _ := l.route(t, l.rtbA, "0.0.0.0/0"); r.NetworkInterfaceId == nil {
		t.Fatalf("route lost: %+v", r)
	}
}

// TestThrottlingDefaultRetryer: the SDK's retryer exactly as hanat gets it
// by default (real jittered backoff, at most one retry here: ~1s).
func TestThrottlingDefaultRetryer(t *testing.T) {
	l := newTestLab(t)
	var seed int64
	for s := int64(1); s < 1000 && seed == 0; s++ {
		var fs faultState
		fs.reset(Faults{ThrottleRate: 0.5, Seed: s})
		// Throttled once, then three passes: a request the server drew
		// for but whose answer the client lost under load (the SDK then
		// retries at transport level) still leaves a pass within the
		// default retryer's 3 attempts.
		if fs.inject(context.Background(), "X") != nil && fs.inject(context.Background(), "X") == nil &&
			fs.inject(context.Background(), "X") == nil && fs.inject(context.Background(), "X") == nil {
			seed = s
		}
	}
	l.m.SetFaults(Faults{ThrottleRate: 0.5, Seed: seed})
	c := ec2.NewFromConfig(aws.Config{
		Region:      testRegion,
		Credentials: credentials.NewStaticCredentialsProvider(testCreds.AccessKeyID, testCreds.SecretAccessKey, ""),
		HTTPClient:  l.srv.Client(),
	}, func(o *ec2.Options) { o.BaseEndpoint = aws.String(l.srv.URL) })
	if _, err := c.DescribeInstances(context.Background(), &ec2.DescribeInstancesInput{}); err != nil {
		t.Fatalf("default retryer did not get past one RequestLimitExceeded: %v", err)
	}
	if st := l.m.Stats(); st.Throttled != 1 || st.ByAction["DescribeInstances"] < 2 {
		t.Fatalf("stats: %+v", st)
	}
}

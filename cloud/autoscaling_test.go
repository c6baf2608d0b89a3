package cloud

import (
	"context"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hanat/hanat/internal/vpcsim/ec2sim"
)

// autoScaling is the real SDK's Auto Scaling client against the lab's
// Auto Scaling API, the lab's two NATs in group "hanat-fleet" with hooks.
func (l *lab) autoScaling(t *testing.T, hooks ...ec2sim.LifecycleHook) *AutoScaling {
	t.Helper()
	if err := l.m.CreateAutoScalingGroup("hanat-fleet", []string{l.natA, l.natC}, hooks); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(l.m.AutoScalingHandler(labCreds))
	t.Cleanup(srv.Close)
	isolateEnv(t)
	c, err := NewAutoScaling(context.Background(), testLogger(t), AutoScalingOptions{Region: labRegion, Endpoint: srv.URL,
		CallTimeout: 5 * time.Second, MaxAttempts: 2, Credentials: staticCreds(labCreds.AccessKeyID, labCreds.SecretAccessKey)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var drainHook = ec2sim.LifecycleHook{Name: "hanat-drain", Transition: ec2sim.TransitionTerminating, HeartbeatTimeout: 360 * time.Second}

// TestCompleteTermination: a scaled-in member finds its group and its one
// terminating hook and completes the action CONTINUE; the lab moves it to
// Terminating:Proceed; a second completion is AWS's ValidationError.
func TestCompleteTermination(t *testing.T) {
	l := newLab(t)
	launch := ec2sim.LifecycleHook{Name: "warm-up", Transition: ec2sim.TransitionLaunching}
	c := l.autoScaling(t, launch, drainHook)
	ctx := context.Background()
	if group, state, err := c.GroupOf(ctx, l.natA); err != nil || group != "hanat-fleet" || state != ec2sim.ASGInService {
		t.Fatalf("GroupOf %s: %q %q %v", l.natA, group, state, err)
	}
	// Not waiting yet: no active action.
	if _, err := c.CompleteTermination(ctx, l.natA, "", ResultContinue); err == nil ||
		!strings.Contains(err.Error(), "No active Lifecycle Action found with instance ID "+l.natA) || ErrorCode(err) != "ValidationError" {
		t.Fatalf("completing an InService instance: %v (code %q)", err, ErrorCode(err))
	}
	if err := l.m.ScaleIn(l.natA); err != nil {
		t.Fatal(err)
	}
	if s := l.m.AutoScalingState(l.natA); s != ec2sim.ASGTerminatingWait {
		t.Fatalf("scaled-in %s is %s", l.natA, s)
	}
	a, err := c.CompleteTermination(ctx, l.natA, "", ResultContinue)
	if err != nil {
		t.Fatal(err)
	}
	if want := (LifecycleAction{Group: "hanat-fleet", Hook: "hanat-drain", InstanceID: l.natA, Result: ResultContinue}); a != want {
		t.Fatalf("completed %+v, want %+v", a, want)
	}
	if s := l.m.AutoScalingState(l.natA); s != ec2sim.ASGTerminatingProceed {
		t.Fatalf("completed %s is %s, want %s", l.natA, s, ec2sim.ASGTerminatingProceed)
	}
	done := l.m.CompletedLifecycleActions()
	if len(done) != 1 || done[0].InstanceID != l.natA || done[0].Hook != "hanat-drain" || done[0].Result != ResultContinue {
		t.Fatalf("the lab saw %+v", done)
	}
	if _, err := c.CompleteTermination(ctx, l.natA, "hanat-drain", ResultContinue); err == nil || ErrorCode(err) != "ValidationError" {
		t.Fatalf("a second completion: %v", err)
	}
	if s := l.m.AutoScalingState(l.natC); s != ec2sim.ASGInService {
		t.Fatalf("the other member is %s", s)
	}
}

// TestCompleteTerminationErrors: an instance in no group, a group with no
// or two terminating hooks, a named hook that does not exist, a refused
// signature: each error names what failed.
func TestCompleteTerminationErrors(t *testing.T) {
	l := newLab(t)
	second := drainHook
	second.Name = "other-drain"
	c := l.autoScaling(t, drainHook, second)
	ctx := context.Background()
	if _, err := c.CompleteTermination(ctx, l.app, "", ResultContinue); err == nil || !strings.Contains(err.Error(), "in no Auto Scaling group") {
		t.Errorf("an instance in no group: %v", err)
	}
	if err := l.m.ScaleIn(l.natC); err != nil {
		t.Fatal(err)
	}
	a, err := c.CompleteTermination(ctx, l.natC, "", ResultContinue)
	if err == nil || !strings.Contains(err.Error(), "hanat-drain, other-drain") || !strings.Contains(err.Error(), "gwlb.lifecycle_hook_name") || a.Group != "hanat-fleet" {
		t.Errorf("two terminating hooks: %+v %v", a, err)
	}
	if _, err := c.CompleteTermination(ctx, l.natC, "nope", ResultContinue); err == nil || !strings.Contains(err.Error(), "No Lifecycle Hook found with name nope") {
		t.Errorf("an unknown hook: %v", err)
	}
	if _, err := c.CompleteTermination(ctx, l.natC, "other-drain", "MAYBE"); err == nil || ErrorCode(err) != "ValidationError" {
		t.Errorf("result MAYBE: %v", err)
	}
	// One of two hooks completed: the instance still waits on the other.
	if _, err := c.CompleteTermination(ctx, l.natC, "other-drain", ResultContinue); err != nil {
		t.Fatal(err)
	}
	if s := l.m.AutoScalingState(l.natC); s != ec2sim.ASGTerminatingWait {
		t.Errorf("one of two hooks completed: %s", s)
	}
	if _, err := c.TerminatingHook(ctx, "no-such-group"); err == nil || !strings.Contains(err.Error(), "Group no-such-group not found") {
		t.Errorf("an unknown group: %v", err)
	}
	if _, err := c.CompleteTermination(ctx, "", "", ResultContinue); err == nil {
		t.Error("an empty instance id was accepted")
	}
	bad, err := NewAutoScaling(ctx, testLogger(t), AutoScalingOptions{Region: labRegion, Endpoint: *c.api.Options().BaseEndpoint,
		MaxAttempts: 1, Credentials: staticCreds(labCreds.AccessKeyID, "wrong")})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := bad.GroupOf(ctx, l.natA); err == nil || ErrorCode(err) != "SignatureDoesNotMatch" {
		t.Errorf("a wrong secret: %v (code %q)", err, ErrorCode(err))
	}
}

// TestFleetRoleAllowsAutoScalingActions: the fleet's IAM role allows
// exactly the Auto Scaling actions the client calls, CompleteLifecycleAction
// on the group's ARN only.
func TestFleetRoleAllowsAutoScalingActions(t *testing.T) {
	b, err := os.ReadFile("../packaging/terraform-fleet/iam.tf")
	if err != nil {
		t.Fatal(err)
	}
	src := string(b)
	var found []string
	for _, f := range strings.FieldsFunc(src, func(r rune) bool { return strings.ContainsRune(" \t\n\",[]", r) }) {
		if strings.HasPrefix(f, "autoscaling:") && !slices.Contains(found, f) {
			found = append(found, f)
		}
	}
	slices.Sort(found)
	want := AutoScalingActions()
	slices.Sort(want)
	if !slices.Equal(found, want) {
		t.Errorf("iam.tf allows Auto Scaling actions %v, the client calls %v", found, want)
	}
	i := strings.Index(src, `"autoscaling:CompleteLifecycleAction"`)
	if i < 0 || !strings.Contains(src[i:min(len(src), i+200)], "aws_autoscaling_group.fleet.arn") {
		t.Error("iam.tf does not scope autoscaling:CompleteLifecycleAction to the group's ARN")
	}
}

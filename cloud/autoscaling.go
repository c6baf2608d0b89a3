package cloud

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/autoscaling"
	"github.com/aws/smithy-go/middleware"
)

// The Auto Scaling operations a GWLB fleet member calls when its
// lifecycle-triggered drain ends. They are not in Actions (the pair's
// packaging/iam-policy.json): the fleet's role in
// packaging/terraform-fleet/iam.tf allows exactly these (a test keeps the
// two equal).
const (
	actDescribeAutoScalingInstances = "DescribeAutoScalingInstances"
	actDescribeLifecycleHooks       = "DescribeLifecycleHooks"
	actCompleteLifecycleAction      = "CompleteLifecycleAction"
)

var autoScalingActions = [...]string{
	"autoscaling:" + actDescribeAutoScalingInstances,
	"autoscaling:" + actDescribeLifecycleHooks,
	"autoscaling:" + actCompleteLifecycleAction,
}

// AutoScalingActions returns the IAM actions of the Auto Scaling client.
func AutoScalingActions() []string { return append([]string(nil), autoScalingActions[:]...) }

// The lifecycle hook's transition a scale-in waits on, and the result
// that lets Auto Scaling go on terminating.
const (
	TransitionTerminating = "autoscaling:EC2_INSTANCE_TERMINATING"
	ResultContinue        = "CONTINUE"
)

// AutoScalingOptions configures the Auto Scaling client.
type AutoScalingOptions struct {
	// Region of the endpoint; hanatd passes the region IMDS reports.
	Region string
	// Endpoint overrides the endpoint; "" keeps the SDK's resolution,
	// which honours AWS_ENDPOINT_URL_AUTO_SCALING and AWS_ENDPOINT_URL.
	Endpoint string
	// CallTimeout bounds one call, retries included (default
	// DefaultCallTimeout); MaxAttempts its attempts (default 5).
	CallTimeout time.Duration
	MaxAttempts int
	// Credentials; nil = the SDK's default chain (the instance role).
	Credentials aws.CredentialsProvider
}

// AutoScaling is the fleet member's Auto Scaling client: it finds its
// group and scale-in hook and completes the hook's lifecycle action.
type AutoScaling struct {
	log         *slog.Logger
	api         *autoscaling.Client
	callTimeout time.Duration
}

// NewAutoScaling builds the client. It does not call AWS.
func NewAutoScaling(ctx context.Context, log *slog.Logger, o AutoScalingOptions) (*AutoScaling, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	cfg, err := loadAWSConfig(ctx, log, "autoscaling", o.Region, o.Credentials, func() aws.Retryer {
		return retry.NewStandard(func(so *retry.StandardOptions) { so.MaxAttempts = o.MaxAttempts })
	})
	if err != nil {
		return nil, err
	}
	api := autoscaling.NewFromConfig(cfg, func(ao *autoscaling.Options) {
		if o.Endpoint != "" {
			ao.BaseEndpoint = aws.String(o.Endpoint)
		}
		ao.APIOptions = append(ao.APIOptions, addAutoScalingGuard)
	})
	return &AutoScaling{log: log, api: api, callTimeout: o.CallTimeout}, nil
}

// addAutoScalingGuard refuses, before anything is sent, an operation that
// is not in AutoScalingActions.
func addAutoScalingGuard(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("hanatAutoScalingGuard",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			op := awsmiddleware.GetOperationName(ctx)
			if !slices.Contains(autoScalingActions[:], "autoscaling:"+op) {
				return middleware.InitializeOutput{}, middleware.Metadata{},
					fmt.Errorf("autoscaling:%s is not in cloud.AutoScalingActions (nor in the fleet's IAM role)", op)
			}
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
}

// call runs one operation under the client's deadline; a failure names
// the operation and what it was about.
func (c *AutoScaling) call(ctx context.Context, action, about string, fn func(ctx context.Context) error) error {
	callCtx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	err := fn(callCtx)
	switch {
	case err == nil:
		return nil
	case ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("autoscaling %s %s: no answer within %s: %w", action, about, c.callTimeout, err)
	}
	return fmt.Errorf("autoscaling %s %s: %w", action, about, err)
}

// LifecycleAction is one instance's lifecycle action: the group, the hook
// and the instance, and the result it was completed with.
type LifecycleAction struct {
	Group, Hook, InstanceID, Result string
}

func (a LifecycleAction) String() string {
	return fmt.Sprintf("%s of group %s, hook %s: %s", a.InstanceID, a.Group, a.Hook, a.Result)
}

// GroupOf is the Auto Scaling group instanceID belongs to, and its
// lifecycle state there (Terminating:Wait while a scale-in hook holds it).
func (c *AutoScaling) GroupOf(ctx context.Context, instanceID string) (group, state string, err error) {
	var out *autoscaling.DescribeAutoScalingInstancesOutput
	err = c.call(ctx, actDescribeAutoScalingInstances, "instance="+instanceID, func(ctx context.Context) (err error) {
		out, err = c.api.DescribeAutoScalingInstances(ctx, &autoscaling.DescribeAutoScalingInstancesInput{InstanceIds: []string{instanceID}})
		return err
	})
	if err != nil {
		return "", "", err
	}
	for _, in := range out.AutoScalingInstances {
		if aws.ToString(in.InstanceId) == instanceID {
			return aws.ToString(in.AutoScalingGroupName), aws.ToString(in.LifecycleState), nil
		}
	}
	return "", "", fmt.Errorf("autoscaling %s instance=%s: the instance is in no Auto Scaling group", actDescribeAutoScalingInstances, instanceID)
}

// TerminatingHook is the name of group's one lifecycle hook on
// EC2_INSTANCE_TERMINATING. None, or several (name one in
// gwlb.lifecycle_hook_name), is an error.
func (c *AutoScaling) TerminatingHook(ctx context.Context, group string) (string, error) {
	var out *autoscaling.DescribeLifecycleHooksOutput
	err := c.call(ctx, actDescribeLifecycleHooks, "group="+group, func(ctx context.Context) (err error) {
		out, err = c.api.DescribeLifecycleHooks(ctx, &autoscaling.DescribeLifecycleHooksInput{AutoScalingGroupName: aws.String(group)})
		return err
	})
	if err != nil {
		return "", err
	}
	var names []string
	for _, h := range out.LifecycleHooks {
		if aws.ToString(h.LifecycleTransition) == TransitionTerminating {
			names = append(names, aws.ToString(h.LifecycleHookName))
		}
	}
	switch len(names) {
	case 1:
		return names[0], nil
	case 0:
		return "", fmt.Errorf("autoscaling %s group=%s: no lifecycle hook on %s", actDescribeLifecycleHooks, group, TransitionTerminating)
	}
	slices.Sort(names)
	return "", fmt.Errorf("autoscaling %s group=%s: %d lifecycle hooks on %s (%s): name hanat's in gwlb.lifecycle_hook_name",
		actDescribeLifecycleHooks, group, len(names), TransitionTerminating, strings.Join(names, ", "))
}

// CompleteTermination completes instanceID's scale-in lifecycle action
// with result: its group from DescribeAutoScalingInstances, the hook
// named hook or else the group's one hook on EC2_INSTANCE_TERMINATING. It
// returns what it found even when a later step fails.
func (c *AutoScaling) CompleteTermination(ctx context.Context, instanceID, hook, result string) (LifecycleAction, error) {
	a := LifecycleAction{InstanceID: instanceID, Hook: hook, Result: result}
	if instanceID == "" {
		return a, errors.New("autoscaling CompleteLifecycleAction: no instance id")
	}
	group, _, err := c.GroupOf(ctx, instanceID)
	if err != nil {
		return a, err
	}
	a.Group = group
	if a.Hook == "" {
		if a.Hook, err = c.TerminatingHook(ctx, group); err != nil {
			return a, err
		}
	}
	err = c.call(ctx, actCompleteLifecycleAction, a.String(), func(ctx context.Context) error {
		_, err := c.api.CompleteLifecycleAction(ctx, &autoscaling.CompleteLifecycleActionInput{
			AutoScalingGroupName: aws.String(a.Group), LifecycleHookName: aws.String(a.Hook),
			InstanceId: aws.String(instanceID), LifecycleActionResult: aws.String(result)})
		return err
	})
	if err != nil {
		return a, err
	}
	c.log.Info("lifecycle action completed", "instance", instanceID, "group", a.Group, "hook", a.Hook, "result", result)
	return a, nil
}

package cloud

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go/logging"
	"github.com/aws/smithy-go/middleware"
)

// Defaults of EC2Options.
const (
	DefaultCallTimeout = 10 * time.Second
	DefaultMaxAttempts = 8
	DefaultMaxBackoff  = 5 * time.Second
	// defaultPageSize is MaxResults of paginated Describe calls (the most
	// DescribeRouteTables accepts).
	defaultPageSize = 100
)

// EC2Options configures the EC2 API client.
type EC2Options struct {
	// Region of the EC2 endpoint; hanatd passes the region IMDS reports.
	// "" falls back to the SDK's chain (AWS_REGION, shared config).
	Region string
	// Endpoint overrides the EC2 endpoint (hanatd's cloud.ec2_endpoint).
	// "" keeps the SDK's resolution, which honours AWS_ENDPOINT_URL_EC2 and
	// AWS_ENDPOINT_URL. An explicit Endpoint wins over the environment.
	Endpoint string
	// CallTimeout is the deadline of one API call, retries included,
	// derived from the caller's context (default 10 s). Each page of a
	// paginated Describe is one call.
	CallTimeout time.Duration
	// MaxAttempts bounds the attempts of one call (default 8).
	MaxAttempts int
	// MaxBackoff caps the jittered exponential backoff between attempts
	// (default 5 s).
	MaxBackoff time.Duration
	// Credentials; nil = the SDK's default chain (environment, shared
	// files, the instance role through IMDS on EC2).
	Credentials aws.CredentialsProvider
}

// EC2 is hanat's EC2 API client: a few idempotent operations on route
// tables, ENIs and Elastic IPs, each with a deadline, retries on
// throttling and 5xx, and errors that name the call and the resource.
type EC2 struct {
	log         *slog.Logger
	api         *ec2.Client
	callTimeout time.Duration
	maxAttempts int
	pageSize    int32
	// confirmDelay is the pause between the reads that confirm a change
	// (EC2's API is eventually consistent).
	confirmDelay time.Duration
}

// NewEC2 builds the client. It does not call AWS: missing credentials only
// show up on the first call.
func NewEC2(ctx context.Context, log *slog.Logger, o EC2Options) (*EC2, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	cfg, err := loadAWSConfig(ctx, log, "ec2", o.Region, o.Credentials, func() aws.Retryer {
		return retry.NewStandard(func(so *retry.StandardOptions) {
			so.MaxAttempts = o.MaxAttempts
			so.MaxBackoff = o.MaxBackoff
			// No client-side retry quota: hanat makes few calls, each
			// bounded by MaxAttempts and CallTimeout, and a failover
			// must not be refused because earlier calls were throttled.
			so.RateLimiter = ratelimit.None
		})
	})
	if err != nil {
		return nil, err
	}
	api := ec2.NewFromConfig(cfg, func(eo *ec2.Options) {
		if o.Endpoint != "" {
			eo.BaseEndpoint = aws.String(o.Endpoint)
		}
		eo.APIOptions = append(eo.APIOptions, addActionGuard)
	})
	c := &EC2{log: log, api: api, callTimeout: o.CallTimeout, maxAttempts: o.MaxAttempts,
		pageSize: defaultPageSize, confirmDelay: 500 * time.Millisecond}
	endpoint := o.Endpoint
	if endpoint == "" && api.Options().BaseEndpoint != nil {
		endpoint = *api.Options().BaseEndpoint
	}
	log.Debug("ec2 client", "region", cfg.Region, "endpoint", endpoint, "call_timeout", o.CallTimeout,
		"max_attempts", o.MaxAttempts, "max_backoff", o.MaxBackoff)
	return c, nil
}

// Region is the region the client talks to.
func (c *EC2) Region() string { return c.api.Options().Region }

// call runs one EC2 operation under its own deadline and wraps a failure
// in a *CallError naming the action and the resource.
func (c *EC2) call(ctx context.Context, action, resource string, fn func(ctx context.Context) error) error {
	if !isAction(action) {
		// A programming error: every operation must be listed in Actions
		// (and so in packaging/iam-policy.json).
		return &CallError{Action: action, Resource: resource, Err: errNotInActions(action)}
	}
	callCtx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	err := fn(callCtx)
	if err == nil {
		return nil
	}
	ce := &CallError{Action: action, Resource: resource, Err: err}
	if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
		ce.timeout = c.callTimeout // our deadline, not the caller's
	}
	return ce
}

// addActionGuard refuses, before anything is sent, an operation that is
// not in Actions: the IAM policy and the code cannot drift apart silently.
func addActionGuard(stack *middleware.Stack) error {
	return stack.Initialize.Add(middleware.InitializeMiddlewareFunc("hanatActionGuard",
		func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			if op := awsmiddleware.GetOperationName(ctx); !isAction(op) {
				return middleware.InitializeOutput{}, middleware.Metadata{}, errNotInActions(op)
			}
			return next.HandleInitialize(ctx, in)
		}), middleware.Before)
}

func errNotInActions(op string) error {
	return fmt.Errorf("ec2:%s is not in cloud.Actions (nor in packaging/iam-policy.json)", op)
}

// slogLogger carries the SDK's own log lines (retries) into slog.
type slogLogger struct{ log *slog.Logger }

func (l slogLogger) Logf(c logging.Classification, format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if c == logging.Warn {
		l.log.Warn(msg, "source", "aws-sdk")
		return
	}
	l.log.Debug(msg, "source", "aws-sdk")
}

// loadAWSConfig is the SDK configuration every hanat client shares: the
// standard credential chain (or creds), the region hanatd got from IMDS,
// the given retryer, and SDK retry logs into slog. client names the
// service in errors.
func loadAWSConfig(ctx context.Context, log *slog.Logger, client, region string, creds aws.CredentialsProvider, retryer func() aws.Retryer) (aws.Config, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(retryer),
		config.WithLogger(slogLogger{log}),
		config.WithClientLogMode(aws.LogRetries),
	}
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	if creds != nil {
		opts = append(opts, config.WithCredentialsProvider(creds))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("%s client: load AWS config: %w", client, err)
	}
	if cfg.Region == "" {
		return aws.Config{}, fmt.Errorf("%s client: no region (hanatd passes the one IMDS reports; off EC2 set AWS_REGION)", client)
	}
	return cfg, nil
}

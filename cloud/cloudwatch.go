package cloud

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	cwtypes "github.com/aws/aws-sdk-go-v2/service/cloudwatch/types"
)

// CloudWatchOptions configures the CloudWatch client used to publish the
// NAT gateway metrics (optional; needs cloudwatch:PutMetricData, which
// packaging/iam-policy.json allows for the namespaces "hanat" and
// "hanat/*" only).
type CloudWatchOptions struct {
	// Region of the endpoint; hanatd passes the region IMDS reports. ""
	// falls back to the SDK's chain (AWS_REGION, shared config).
	Region string
	// Endpoint overrides the CloudWatch endpoint (a VPC interface endpoint,
	// tests). "" keeps the SDK's resolution, which honours
	// AWS_ENDPOINT_URL_CLOUDWATCH and AWS_ENDPOINT_URL.
	Endpoint string
	// CallTimeout is the deadline of one PutMetricData, retries included
	// (default DefaultCallTimeout).
	CallTimeout time.Duration
	// MaxAttempts bounds the attempts of one call (default 3: a missed
	// period is carried into the next by the publisher anyway).
	MaxAttempts int
	// Credentials; nil = the SDK's default chain (the instance role on EC2).
	Credentials aws.CredentialsProvider
}

// CloudWatch puts metric data into CloudWatch.
type CloudWatch struct {
	log         *slog.Logger
	api         *cloudwatch.Client
	callTimeout time.Duration
}

// maxDimensions is the most dimensions CloudWatch accepts on one datum.
const maxDimensions = 30

// NewCloudWatch builds the client. It does not call AWS.
func NewCloudWatch(ctx context.Context, log *slog.Logger, o CloudWatchOptions) (*CloudWatch, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = DefaultCallTimeout
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 3
	}
	cfg, err := loadAWSConfig(ctx, log, "cloudwatch", o.Region, o.Credentials, func() aws.Retryer {
		return retry.NewStandard(func(so *retry.StandardOptions) { so.MaxAttempts = o.MaxAttempts })
	})
	if err != nil {
		return nil, err
	}
	api := cloudwatch.NewFromConfig(cfg, func(co *cloudwatch.Options) {
		if o.Endpoint != "" {
			co.BaseEndpoint = aws.String(o.Endpoint)
		}
	})
	log.Debug("cloudwatch client", "region", cfg.Region, "endpoint", o.Endpoint, "call_timeout", o.CallTimeout)
	return &CloudWatch{log: log, api: api, callTimeout: o.CallTimeout}, nil
}

// PutMetricData sends data in one PutMetricData request under namespace.
// The caller batches (at most 1000 data a call).
func (c *CloudWatch) PutMetricData(ctx context.Context, namespace string, data []MetricDatum) error {
	if len(data) == 0 {
		return nil
	}
	in := &cloudwatch.PutMetricDataInput{Namespace: aws.String(namespace), MetricData: make([]cwtypes.MetricDatum, 0, len(data))}
	for _, d := range data {
		md, err := toMetricDatum(d)
		if err != nil {
			return fmt.Errorf("cloudwatch PutMetricData namespace %q: %w", namespace, err)
		}
		in.MetricData = append(in.MetricData, md)
	}
	if err := checkAction(actPutMetricData); err != nil {
		return err
	}
	callCtx, cancel := context.WithTimeout(ctx, c.callTimeout)
	defer cancel()
	if _, err := c.api.PutMetricData(callCtx, in); err != nil {
		// Not a CallError, whose text says "ec2"; ErrorCode and
		// IsThrottled still see the SDK's error through %w.
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("cloudwatch PutMetricData namespace %q (%d data): no answer within the call's deadline (%s): %w",
				namespace, len(data), c.callTimeout, err)
		}
		return fmt.Errorf("cloudwatch PutMetricData namespace %q (%d data): %w", namespace, len(data), err)
	}
	return nil
}

func toMetricDatum(d MetricDatum) (cwtypes.MetricDatum, error) {
	if d.Name == "" {
		return cwtypes.MetricDatum{}, errors.New("metric datum without a name")
	}
	if len(d.Dimensions) > maxDimensions {
		return cwtypes.MetricDatum{}, fmt.Errorf("metric %s: %d dimensions, CloudWatch takes at most %d", d.Name, len(d.Dimensions), maxDimensions)
	}
	unit := cwtypes.StandardUnit(d.Unit)
	if d.Unit == "" {
		unit = cwtypes.StandardUnitNone
	}
	if !slices.Contains(unit.Values(), unit) {
		return cwtypes.MetricDatum{}, fmt.Errorf("metric %s: unit %q is not a CloudWatch unit", d.Name, d.Unit)
	}
	md := cwtypes.MetricDatum{MetricName: aws.String(d.Name), Unit: unit, Value: aws.Float64(d.Value)}
	if !d.Timestamp.IsZero() {
		md.Timestamp = aws.Time(d.Timestamp)
	}
	names := make([]string, 0, len(d.Dimensions))
	for k := range d.Dimensions {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		md.Dimensions = append(md.Dimensions, cwtypes.Dimension{Name: aws.String(k), Value: aws.String(d.Dimensions[k])})
	}
	return md, nil
}

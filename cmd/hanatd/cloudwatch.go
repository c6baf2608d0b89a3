package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/hanat/hanat/admin"
	"github.com/hanat/hanat/cloud"
	"github.com/hanat/hanat/config"
	"github.com/hanat/hanat/metrics"
)

// cloudWatchClient adapts cloud.CloudWatch to the publisher's interface:
// metrics and cloud do not know each other's types.
type cloudWatchClient struct{ c *cloud.CloudWatch }

func (a cloudWatchClient) PutMetricData(ctx context.Context, namespace string, data []metrics.Datum) error {
	out := make([]cloud.MetricDatum, len(data))
	for i, d := range data {
		out[i] = cloud.MetricDatum{Name: d.Name, Unit: d.Unit, Value: d.Value, Timestamp: d.Timestamp, Dimensions: d.Dimensions}
	}
	return a.c.PutMetricData(ctx, namespace, out)
}

// newCloudWatch builds the publisher from the config: the InstanceId
// dimension and the region come from IMDS, so off EC2 (or when discovery
// failed) it is an error naming why, and hanatd runs on without it.
func newCloudWatch(ctx context.Context, log *slog.Logger, cfg config.CloudWatch, node *cloud.Node, source metrics.Source) (*metrics.CloudWatch, error) {
	if !node.OnEC2() {
		return nil, errors.New("metrics.cloudwatch needs the instance id from IMDS, and hanatd is not on EC2 (or cloud.discover is false)")
	}
	c, err := cloud.NewCloudWatch(ctx, log.With("component", "cloudwatch"), cloud.CloudWatchOptions{
		Region:   node.Instance().Region,
		Endpoint: cfg.Endpoint,
	})
	if err != nil {
		return nil, fmt.Errorf("cloudwatch client (region %s): %w", node.Instance().Region, err)
	}
	pub, err := metrics.NewCloudWatch(log.With("component", "cloudwatch"), metrics.CloudWatchOptions{
		Client:     cloudWatchClient{c},
		Source:     source,
		Namespace:  cfg.Namespace,
		InstanceID: node.Instance().ID,
		Interval:   cfg.Interval.Duration,
	})
	if err != nil {
		return nil, err
	}
	return pub, nil
}

// cloudWatchStatus is the publication as the admin API shows it (nil:
// off).
func cloudWatchStatus(p *metrics.CloudWatch) *admin.CloudWatchStatus {
	if p == nil {
		return nil
	}
	o, s := p.Options(), p.Status()
	return &admin.CloudWatchStatus{
		Namespace:     o.Namespace,
		InstanceID:    o.InstanceID,
		Interval:      o.Interval.String(),
		Publications:  s.Publications,
		LastPublished: s.LastPublished,
		LastError:     s.LastError,
	}
}

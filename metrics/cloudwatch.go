package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// The AWS NAT gateway's CloudWatch metric names. hanat publishes under the
// same names (in its own namespace, with an InstanceId dimension), so the
// NAT gateway's dashboards and alarms port over by changing the namespace
// and the dimension.
const (
	CWActiveConnectionCount      = "ActiveConnectionCount"
	CWBytesInFromDestination     = "BytesInFromDestination"
	CWBytesInFromSource          = "BytesInFromSource"
	CWBytesOutToDestination      = "BytesOutToDestination"
	CWBytesOutToSource           = "BytesOutToSource"
	CWConnectionAttemptCount     = "ConnectionAttemptCount"
	CWConnectionEstablishedCount = "ConnectionEstablishedCount"
	CWErrorPortAllocation        = "ErrorPortAllocation"
	CWIdleTimeoutCount           = "IdleTimeoutCount"
	CWPacketsDropCount           = "PacketsDropCount"
	CWPacketsInFromDestination   = "PacketsInFromDestination"
	CWPacketsInFromSource        = "PacketsInFromSource"
	CWPacketsOutToDestination    = "PacketsOutToDestination"
	CWPacketsOutToSource         = "PacketsOutToSource"

	// CWDimensionInstanceID is the dimension naming the NAT instance
	// (where the NAT gateway has NatGatewayId).
	CWDimensionInstanceID = "InstanceId"
)

// CloudWatch units.
const (
	UnitCount = "Count"
	UnitBytes = "Bytes"
)

// Defaults of CloudWatchOptions.
const (
	DefaultCloudWatchNamespace = "hanat"
	DefaultCloudWatchInterval  = time.Minute
	// DefaultCloudWatchBatch is the most metric data PutMetricData takes
	// in one request.
	DefaultCloudWatchBatch = 1000
)

// Datum is one CloudWatch metric datum.
type Datum struct {
	Name       string
	Unit       string // UnitCount or UnitBytes
	Value      float64
	Timestamp  time.Time
	Dimensions map[string]string
}

// CloudWatchClient puts metric data into CloudWatch; package cloud
// implements it (the only package that talks to AWS). One call is one
// PutMetricData request.
type CloudWatchClient interface {
	PutMetricData(ctx context.Context, namespace string, data []Datum) error
}

// CloudWatchOptions configures the CloudWatch publisher.
type CloudWatchOptions struct {
	// Client sends the data; required.
	Client CloudWatchClient
	// Source returns the daemon's counters; required.
	Source Source
	// Namespace of the metrics (default DefaultCloudWatchNamespace). The
	// NAT gateway's is AWS/NATGateway, which only AWS may publish to.
	Namespace string
	// InstanceID is the InstanceId dimension of every datum; required.
	InstanceID string
	// Interval between two publications (default one minute, the NAT
	// gateway's period).
	Interval time.Duration
	// BatchSize is the most data per PutMetricData request (default and
	// maximum DefaultCloudWatchBatch).
	BatchSize int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// CloudWatch publishes the NAT gateway's metrics every Interval: the
// active connection count as a gauge and every counter as its increase
// since the last successful publication (a failed one is folded into the
// next, so no traffic goes uncounted).
type CloudWatch struct {
	log  *slog.Logger
	opts CloudWatchOptions
	// last is the snapshot the published increases were counted up to;
	// nil before the first reading.
	last *Snapshot

	mu     sync.Mutex
	status CloudWatchStatus // guarded by mu
}

// CloudWatchStatus is what the publisher did so far.
type CloudWatchStatus struct {
	// Publications counts PutMetricData requests that succeeded.
	Publications  uint64
	LastPublished time.Time
	// LastError is the last publication's error, "" when it succeeded.
	LastError string
}

// Status returns what the publisher did so far.
func (c *CloudWatch) Status() CloudWatchStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// Options returns the options in effect (defaults filled in).
func (c *CloudWatch) Options() CloudWatchOptions { return c.opts }

// NewCloudWatch builds the publisher; nothing is sent before Run or
// Publish.
func NewCloudWatch(log *slog.Logger, opts CloudWatchOptions) (*CloudWatch, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.Client == nil || opts.Source == nil {
		return nil, errors.New("metrics: CloudWatchOptions.Client and Source are required")
	}
	if opts.InstanceID == "" {
		return nil, errors.New("metrics: CloudWatchOptions.InstanceID is required (the InstanceId dimension)")
	}
	if opts.Namespace == "" {
		opts.Namespace = DefaultCloudWatchNamespace
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultCloudWatchInterval
	}
	if opts.BatchSize <= 0 || opts.BatchSize > DefaultCloudWatchBatch {
		opts.BatchSize = DefaultCloudWatchBatch
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &CloudWatch{log: log, opts: opts}, nil
}

// Run publishes every Interval until ctx is done. The first reading only
// sets the baseline of the counters (hanatd's counters include what was
// counted before this publisher started).
func (c *CloudWatch) Run(ctx context.Context) error {
	c.log.Info("publishing NAT gateway metrics to CloudWatch", "namespace", c.opts.Namespace,
		"instance_id", c.opts.InstanceID, "interval", c.opts.Interval)
	if err := c.Publish(ctx); err != nil {
		c.log.Warn("cloudwatch publish", "err", err)
	}
	t := time.NewTicker(c.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := c.Publish(ctx); err != nil {
				c.log.Warn("cloudwatch publish", "err", err)
			}
		}
	}
}

// Publish reads the Source and sends one period's data in batches. On the
// first call it only records the baseline and sends the gauge.
func (c *CloudWatch) Publish(ctx context.Context) error {
	err := c.publish(ctx)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		c.status.LastError = err.Error()
	} else {
		c.status.LastError = ""
		c.status.LastPublished = c.opts.Now()
	}
	return err
}

func (c *CloudWatch) publish(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, DefaultSourceTimeout)
	s, err := c.opts.Source(sctx)
	cancel()
	if err != nil {
		return fmt.Errorf("cloudwatch publish: read hanatd's counters: %w", err)
	}
	data := c.data(&s, c.opts.Now())
	for start := 0; start < len(data); start += c.opts.BatchSize {
		end := min(start+c.opts.BatchSize, len(data))
		if err := c.opts.Client.PutMetricData(ctx, c.opts.Namespace, data[start:end]); err != nil {
			// The baseline stays: the next period carries these increases.
			return fmt.Errorf("cloudwatch publish %d data to namespace %q: %w", end-start, c.opts.Namespace, err)
		}
		c.mu.Lock()
		c.status.Publications++
		c.mu.Unlock()
	}
	c.last = &s
	return nil
}

// data is one period's data: the gauge, and the counters' increases since
// c.last (none before a baseline exists).
func (c *CloudWatch) data(s *Snapshot, now time.Time) []Datum {
	dims := map[string]string{CWDimensionInstanceID: c.opts.InstanceID}
	d := func(name, unit string, v float64) Datum {
		return Datum{Name: name, Unit: unit, Value: v, Timestamp: now, Dimensions: dims}
	}
	out := []Datum{d(CWActiveConnectionCount, UnitCount, float64(s.ActiveConnections))}
	if c.last == nil {
		return out
	}
	p := c.last
	for _, m := range []struct {
		name, unit string
		now, prev  uint64
	}{
		{CWBytesInFromDestination, UnitBytes, s.BytesInFromDestination, p.BytesInFromDestination},
		{CWBytesInFromSource, UnitBytes, s.BytesInFromSource, p.BytesInFromSource},
		{CWBytesOutToDestination, UnitBytes, s.BytesOutToDestination, p.BytesOutToDestination},
		{CWBytesOutToSource, UnitBytes, s.BytesOutToSource, p.BytesOutToSource},
		{CWConnectionAttemptCount, UnitCount, s.ConnectionAttempts, p.ConnectionAttempts},
		{CWConnectionEstablishedCount, UnitCount, s.ConnectionsEstablished, p.ConnectionsEstablished},
		{CWErrorPortAllocation, UnitCount, s.PortAllocationErrors, p.PortAllocationErrors},
		{CWIdleTimeoutCount, UnitCount, s.IdleTimeouts, p.IdleTimeouts},
		{CWPacketsDropCount, UnitCount, s.packetsDropped(), p.packetsDropped()},
		{CWPacketsInFromDestination, UnitCount, s.PacketsInFromDestination, p.PacketsInFromDestination},
		{CWPacketsInFromSource, UnitCount, s.PacketsInFromSource, p.PacketsInFromSource},
		{CWPacketsOutToDestination, UnitCount, s.PacketsOutToDestination, p.PacketsOutToDestination},
		{CWPacketsOutToSource, UnitCount, s.PacketsOutToSource, p.PacketsOutToSource},
	} {
		out = append(out, d(m.name, m.unit, float64(increase(m.now, m.prev))))
	}
	return out
}

// increase is a counter's growth from prev to now; a counter that went
// down was reset (hanatd restarted), so all of now is new.
func increase(now, prev uint64) uint64 {
	if now < prev {
		return now
	}
	return now - prev
}

// Package cwtest decodes CloudWatch PutMetricData requests as the AWS SDK
// sends them (Smithy RPC v2 CBOR), for tests that stand in for the
// CloudWatch endpoint (cloud's publisher tests and the end-to-end test of
// hanatd's publishing).
package cwtest

import (
	"fmt"
	"time"

	"github.com/aws/smithy-go/encoding/cbor"
)

// Datum is one metric datum as the endpoint received it.
type Datum struct {
	Name, Unit string
	Value      float64
	Dims       map[string]string
	Timestamp  time.Time // zero when the request carried none
}

// PutMetricData is one decoded request body.
type PutMetricData struct {
	Namespace string
	Data      []Datum
}

// DecodePutMetricData decodes a PutMetricData request body.
func DecodePutMetricData(body []byte) (PutMetricData, error) {
	v, err := cbor.Decode(body)
	if err != nil {
		return PutMetricData{}, fmt.Errorf("decode CBOR body: %w", err)
	}
	m, ok := v.(cbor.Map)
	if !ok {
		return PutMetricData{}, fmt.Errorf("body is %T, want a map", v)
	}
	var req PutMetricData
	if s, ok := m["Namespace"].(cbor.String); ok {
		req.Namespace = string(s)
	}
	list, _ := m["MetricData"].(cbor.List)
	for _, item := range list {
		dm, ok := item.(cbor.Map)
		if !ok {
			return PutMetricData{}, fmt.Errorf("MetricData item is %T", item)
		}
		d := Datum{Dims: map[string]string{}}
		if s, ok := dm["MetricName"].(cbor.String); ok {
			d.Name = string(s)
		}
		if s, ok := dm["Unit"].(cbor.String); ok {
			d.Unit = string(s)
		}
		if dm["Value"] != nil {
			if d.Value, err = cbor.AsFloat64(dm["Value"]); err != nil {
				return PutMetricData{}, fmt.Errorf("%s Value: %w", d.Name, err)
			}
		}
		if dm["Timestamp"] != nil {
			if d.Timestamp, err = cbor.AsTime(dm["Timestamp"]); err != nil {
				return PutMetricData{}, fmt.Errorf("%s Timestamp: %w", d.Name, err)
			}
		}
		dl, _ := dm["Dimensions"].(cbor.List)
		for _, di := range dl {
			dd, _ := di.(cbor.Map)
			n, _ := dd["Name"].(cbor.String)
			v, _ := dd["Value"].(cbor.String)
			d.Dims[string(n)] = string(v)
		}
		req.Data = append(req.Data, d)
	}
	return req, nil
}

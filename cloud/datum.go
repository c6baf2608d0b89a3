package cloud

import "time"

// MetricDatum is one CloudWatch metric datum as package cloud sends it.
// Package cloud defines its own type so it depends on no other hanat
// package; hanatd adapts the metrics publisher's data to it.
type MetricDatum struct {
	Name string
	// Unit is a CloudWatch standard unit ("Count", "Bytes", …); "" is
	// "None".
	Unit      string
	Value     float64
	Timestamp time.Time // zero: CloudWatch uses the time of receipt
	// Dimensions are name → value (at most 30).
	Dimensions map[string]string
}

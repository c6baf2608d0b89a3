//go:build linux

package fastpath

import (
	"github.com/hanat/hanat/bpf"
	"github.com/hanat/hanat/conntrack"
)

// The engine's tests speak conntrack's language.
type (
	Flow      = conntrack.Flow
	Tuple     = conntrack.Tuple
	Event     = conntrack.Event
	EventKind = conntrack.EventKind
	Filter    = conntrack.Filter
)

const (
	EventNew     = conntrack.EventNew
	EventUpdate  = conntrack.EventUpdate
	EventDestroy = conntrack.EventDestroy
	protoTCP     = bpf.ProtoTCP
	protoUDP     = bpf.ProtoUDP
)

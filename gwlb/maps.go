package gwlb

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"github.com/hanat/hanat/bpf"
	"github.com/hanat/hanat/geneve"
)

// The reasons of the counters that are not geneve's own: what the member
// did, and the refusals outside GENEVE's header.
const (
	ReasonDecap          = "decap"           // decapsulated into the stack
	ReasonEncap          = "encap"           // a reply encapsulated back to its GWLB
	ReasonForeignSource  = "foreign_source"  // GENEVE to the ENI from a non-GWLB address
	ReasonInnerIPv6      = "inner_ipv6"      // GWLB's packet carries IPv6; hanat NATs IPv4
	ReasonInnerMalformed = "inner_malformed" // the inner packet is no well-formed IPv4
	ReasonFragment       = "fragment"        // an outer first fragment to port 6081
	ReasonOuterMalformed = "outer_malformed" // outer IPv4 with options or a bad checksum
	ReasonDecapError     = "decap_error"     // the kernel refused to strip the headers
	ReasonEncapError     = "encap_error"     // the kernel refused to add them
	ReasonGWLBGone       = "gwlb_gone"       // a reply of a flow whose GWLB was removed
	ReasonNeighMiss      = "neigh_miss"      // a reply sent with bpf_redirect_neigh: no fresh MACs for its GWLB
)

// reasonNames maps the program's enum gwlb_reason to counter names; the
// GENEVE refusals are geneve.Reason's own strings.
var reasonNames = [bpf.GwlbGwlbReasonGWLB_REASON_MAX]string{
	bpf.GwlbGwlbReasonGWLB_DECAP:            ReasonDecap,
	bpf.GwlbGwlbReasonGWLB_ENCAP:            ReasonEncap,
	bpf.GwlbGwlbReasonGWLB_FOREIGN_SOURCE:   ReasonForeignSource,
	bpf.GwlbGwlbReasonGWLB_TRUNCATED:        string(geneve.ReasonTruncated),
	bpf.GwlbGwlbReasonGWLB_VERSION:          string(geneve.ReasonVersion),
	bpf.GwlbGwlbReasonGWLB_OAM:              string(geneve.ReasonOAM),
	bpf.GwlbGwlbReasonGWLB_PROTOCOL:         string(geneve.ReasonProtocol),
	bpf.GwlbGwlbReasonGWLB_UNKNOWN_OPTION:   string(geneve.ReasonUnknownOption),
	bpf.GwlbGwlbReasonGWLB_MISSING_OPTION:   string(geneve.ReasonMissingOption),
	bpf.GwlbGwlbReasonGWLB_DUPLICATE_OPTION: string(geneve.ReasonDuplicate),
	bpf.GwlbGwlbReasonGWLB_OPTION_LENGTH:    string(geneve.ReasonOptionLength),
	bpf.GwlbGwlbReasonGWLB_INNER_IPV6:       ReasonInnerIPv6,
	bpf.GwlbGwlbReasonGWLB_INNER_MALFORMED:  ReasonInnerMalformed,
	bpf.GwlbGwlbReasonGWLB_FRAGMENT:         ReasonFragment,
	bpf.GwlbGwlbReasonGWLB_OUTER_MALFORMED:  ReasonOuterMalformed,
	bpf.GwlbGwlbReasonGWLB_DECAP_ERROR:      ReasonDecapError,
	bpf.GwlbGwlbReasonGWLB_ENCAP_ERROR:      ReasonEncapError,
	bpf.GwlbGwlbReasonGWLB_GWLB_GONE:        ReasonGWLBGone,
	bpf.GwlbGwlbReasonGWLB_NEIGH_MISS:       ReasonNeighMiss,
}

// Reasons lists every counter name Counters returns.
func Reasons() []string { return append([]string(nil), reasonNames[:]...) }

// Flow is one inner flow the member remembers: the 5-tuple as the private
// host sent it (an ICMP echo's id as both ports), the GWLB it came from and
// its options, which its replies carry back.
type Flow struct {
	Proto    uint8
	Src, Dst netip.AddrPort
	GWLB     netip.Addr
	Options  geneve.Options
}

// Endpoint is the flow's GWLB endpoint as AWS names it (vpce-…).
func (f Flow) Endpoint() string { return geneve.EndpointName(f.Options.EndpointID) }

type (
	rawKey  = bpf.GwlbGwlbFlowKey
	rawFlow = bpf.GwlbGwlbFlow
)

func decodeFlow(k rawKey, v rawFlow) Flow {
	return Flow{
		Proto: k.Proto,
		Src:   netip.AddrPortFrom(bpf.WordAddr(k.Saddr), bpf.FromBE16(k.Sport)),
		Dst:   netip.AddrPortFrom(bpf.WordAddr(k.Daddr), bpf.FromBE16(k.Dport)),
		GWLB:  bpf.WordAddr(v.GwlbAddr),
		Options: geneve.Options{
			EndpointID:   binary.BigEndian.Uint64(v.EndpointId[:]),
			AttachmentID: binary.BigEndian.Uint64(v.AttachmentId[:]),
			FlowCookie:   binary.BigEndian.Uint32(v.FlowCookie[:]),
		},
	}
}

// tables are the programs' maps, with the reads and writes the API needs.
type tables struct {
	m *bpf.GwlbMaps
}

func (m tables) setLocal(a netip.Addr) error {
	if !a.Is4() {
		return fmt.Errorf("gwlb: local address %v is not IPv4", a)
	}
	// The programs' flags describe the flows remembered (pinned maps
	// keep them across an Attach): kept, only the address is set.
	var v bpf.GwlbGwlbMember
	if err := m.m.GwlbConfig.Lookup(uint32(0), &v); err != nil {
		return fmt.Errorf("gwlb: read the member's config: %w", err)
	}
	v.LocalAddr = bpf.AddrWord(a)
	if err := m.m.GwlbConfig.Update(uint32(0), &v, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("gwlb: set local address %v: %w", a, err)
	}
	return nil
}

// setGWLBAddrs makes the map hold exactly addrs: new ones are added before
// stale ones go, so an address in both lists is never missing.
func (m tables) setGWLBAddrs(addrs []netip.Addr) error {
	want := make(map[uint32]bool, len(addrs))
	for _, a := range addrs {
		a = a.Unmap()
		if !a.Is4() {
			return fmt.Errorf("gwlb: GWLB address %v is not IPv4", a)
		}
		want[bpf.AddrWord(a)] = true
	}
	if len(want) > int(m.m.GwlbAddrs.MaxEntries()) {
		return fmt.Errorf("gwlb: %d GWLB addresses, the map holds %d", len(want), m.m.GwlbAddrs.MaxEntries())
	}
	for w := range want {
		if err := m.m.GwlbAddrs.Update(w, uint32(1), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("gwlb: add GWLB address %v: %w", bpf.WordAddr(w), err)
		}
	}
	return removeStale[uint32](m.m.GwlbAddrs, want, "GWLB address")
}

// removeStale deletes the entries of a map keyed by IPv4 address (V its
// value type) that keep does not hold; what names an entry in errors.
func removeStale[V any](em *ebpf.Map, keep map[uint32]bool, what string) error {
	var stale []uint32
	var k uint32
	var v V
	it := em.Iterate()
	for it.Next(&k, &v) {
		if !keep[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("gwlb: list every %s: %w", what, err)
	}
	for _, w := range stale {
		if err := em.Delete(w); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("gwlb: remove %s %v: %w", what, bpf.WordAddr(w), err)
		}
	}
	return nil
}

func (m tables) gwlbAddrs() ([]netip.Addr, error) {
	var out []netip.Addr
	var k, v uint32
	it := m.m.GwlbAddrs.Iterate()
	for it.Next(&k, &v) {
		out = append(out, bpf.WordAddr(k))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("gwlb: list GWLB addresses: %w", err)
	}
	return out, nil
}

func (m tables) counters() (map[string]uint64, error) {
	out := make(map[string]uint64, len(reasonNames))
	var perCPU []uint64
	for id, name := range reasonNames {
		if err := m.m.GwlbCounters.Lookup(uint32(id), &perCPU); err != nil {
			return nil, fmt.Errorf("gwlb: read counter %s: %w", name, err)
		}
		var sum uint64
		for _, c := range perCPU {
			sum += c
		}
		out[name] = sum
	}
	return out, nil
}

// flows reads the flow map; limit bounds the walk (the map's size).
func (m tables) flows() ([]Flow, error) {
	var out []Flow
	var k rawKey
	var v rawFlow
	it := m.m.GwlbFlows.Iterate()
	for it.Next(&k, &v) && len(out) <= int(m.m.GwlbFlows.MaxEntries()) {
		out = append(out, decodeFlow(k, v))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("gwlb: list flows: %w", err)
	}
	return out, nil
}

//go:build linux

package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// IP protocol numbers accepted in FlowKey.Proto.
const (
	ProtoTCP uint8 = unix.IPPROTO_TCP
	ProtoUDP uint8 = unix.IPPROTO_UDP
)

// DefaultMaxFlows is the flow map size when LoadOptions.MaxFlows is 0. Each
// direction of a connection is one entry.
const DefaultMaxFlows = 65536

// minMTU is the smallest IPv4 MTU (RFC 791).
const minMTU = 68

// Names under LoadOptions.PinPath of the maps this package pins.
var pinnedMaps = []string{FastpathMapFlows, FastpathMapTxPorts, FastpathMapTcPorts, FastpathMapTcPortSlots, FastpathMapCounters}

// ErrFlowNotFound is wrapped by LookupFlow and DeleteFlow when the flow is
// not in the map (it may have been evicted by the LRU).
var ErrFlowNotFound = errors.New("flow not in the fast-path map")

// FlowKey is one direction of a flow as the packet arrives, before NAT.
type FlowKey struct {
	Ifindex  uint32 // ingress interface
	Proto    uint8  // ProtoTCP or ProtoUDP
	Src, Dst netip.AddrPort
}

// FlowAction is what the fast path does with a packet of the flow.
type FlowAction struct {
	NewSrc, NewDst netip.AddrPort // the packet's addresses and ports after NAT
	EgressIfindex  uint32         // == FlowKey.Ifindex: XDP_TX; else redirect (AddTxPort first)
	SrcMAC, DstMAC net.HardwareAddr
	MTU            uint16 // egress L3 MTU; longer packets go to the slow path
	// Outbound marks the private → internet direction of a connection
	// (the one whose packets come from a private host); its hits count in
	// Counters.OutPackets/OutBytes, the other direction's in InPackets/
	// InBytes.
	Outbound bool
}

// FlowStats are the fast path's counters of one flow direction. There is
// no last-seen time (reading a clock per packet costs more than the rest of
// the bookkeeping): a reader that wants activity compares Packets between
// two reads. The program adds without atomics, so concurrent hits of one
// flow on several CPUs may be undercounted (rarely, a value may even step
// back a little); treat them as statistics, and "changed" as "active".
type FlowStats struct {
	Packets, Bytes uint64 // bytes are IPv4 total lengths, as conntrack counts
}

// RawFlowKey and RawFlowValue are the map's binary layouts (struct flow_key
// and struct flow_value in fastpath.c).
type (
	RawFlowKey   = FastpathFlowKey
	RawFlowValue = FastpathFlowValue
)

// Counters are the fast path's per-CPU counters summed over CPUs. Every
// packet the program sees adds one to exactly one of them.
type Counters struct {
	Hits          uint64 // rewritten and sent (XDP_TX or XDP_REDIRECT)
	Misses        uint64 // TCP/UDP packet of a flow not in the map
	PassSYN       uint64
	PassFIN       uint64
	PassRST       uint64
	PassFragment  uint64 // MF set or fragment offset != 0
	PassIPOptions uint64 // IHL > 5
	PassTTL       uint64 // TTL <= 1
	PassNotTCPUDP uint64 // IPv4 but not TCP or UDP (ICMP, ...)
	PassTooBig    uint64 // IPv4 total length > the flow's egress MTU
	PassNotIPv4   uint64 // other ethertype (ARP, IPv6, QinQ, ...)
	PassParse     uint64 // truncated or malformed headers
	PassRedirect  uint64 // egress ifindex not in tx_ports, or redirect failed
	// PassUnwritable: the tc program could not make the skb's headers
	// writable; never under XDP, and no longer under tc either (its
	// direct writes have the verifier's prologue unshare a cloned skb,
	// which drops it when out of memory: bpf/fastpath_tc.c). Kept so the
	// counter layout and the metrics' reasons stay as they were.
	PassUnwritable uint64

	// Hits split by direction (FlowAction.Outbound), packets and bytes
	// (IPv4 total lengths, as conntrack counts): forwarded private →
	// internet (Out) and internet → private (In), the NAT gateway's
	// PacketsOutToDestination/BytesOutToDestination and
	// PacketsInFromDestination/BytesInFromDestination for the fast path's
	// share of the traffic. OutPackets + InPackets == Hits.
	OutPackets, OutBytes uint64
	InPackets, InBytes   uint64
}

// Flags of a flow value (flow_value.flags in fastpath.c).
const flowFlagOutbound = 0x1

// RawStats is the per-CPU statistics slot (struct fastpath_stats).
type RawStats = FastpathFastpathStats

// field returns the Counters field of a counter id, nil for an unknown id.
func (c *Counters) field(id FastpathCounterId) *uint64 {
	switch id {
	case FastpathCounterIdCOUNTER_HIT:
		return &c.Hits
	case FastpathCounterIdCOUNTER_MISS:
		return &c.Misses
	case FastpathCounterIdCOUNTER_PASS_SYN:
		return &c.PassSYN
	case FastpathCounterIdCOUNTER_PASS_FIN:
		return &c.PassFIN
	case FastpathCounterIdCOUNTER_PASS_RST:
		return &c.PassRST
	case FastpathCounterIdCOUNTER_PASS_FRAGMENT:
		return &c.PassFragment
	case FastpathCounterIdCOUNTER_PASS_IP_OPTIONS:
		return &c.PassIPOptions
	case FastpathCounterIdCOUNTER_PASS_TTL:
		return &c.PassTTL
	case FastpathCounterIdCOUNTER_PASS_NOT_TCP_UDP:
		return &c.PassNotTCPUDP
	case FastpathCounterIdCOUNTER_PASS_TOO_BIG:
		return &c.PassTooBig
	case FastpathCounterIdCOUNTER_PASS_NOT_IPV4:
		return &c.PassNotIPv4
	case FastpathCounterIdCOUNTER_PASS_PARSE:
		return &c.PassParse
	case FastpathCounterIdCOUNTER_PASS_REDIRECT:
		return &c.PassRedirect
	case FastpathCounterIdCOUNTER_PASS_UNWRITABLE:
		return &c.PassUnwritable
	}
	return nil
}

// Passed is the number of packets sent to the slow path for any reason,
// misses included.
func (c Counters) Passed() uint64 {
	return c.Misses + c.PassSYN + c.PassFIN + c.PassRST + c.PassFragment +
		c.PassIPOptions + c.PassTTL + c.PassNotTCPUDP + c.PassTooBig +
		c.PassNotIPv4 + c.PassParse + c.PassRedirect + c.PassUnwritable
}

// be16 returns the native-endian value whose memory holds v in network
// byte order (a __be16 field of a map struct).
func be16(v uint16) uint16 {
	return binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, v))
}

// fromBE16 is the inverse of be16.
func fromBE16(v uint16) uint16 {
	return binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, v))
}

// addrWord is an IPv4 address as the native-endian word whose memory
// holds the address bytes (a __be32 field).
func addrWord(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

// wordAddr is the inverse of addrWord.
func wordAddr(w uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], w)
	return netip.AddrFrom4(b)
}

func checkAddr(what string, ap netip.AddrPort) (netip.Addr, error) {
	a := ap.Addr().Unmap()
	if !ap.IsValid() || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("%s %v: not an IPv4 address and port", what, ap)
	}
	return a, nil
}

// MaxIfindex is the largest ingress ifindex a flow key holds (24 bits:
// the key packs ifindex << 8 | protocol into one word to stay 16 bytes).
// Linux hands out ifindexes counting up from 1, so only a host that has
// created millions of interfaces since boot gets near it; flows arriving on
// a larger ifindex stay on the slow path.
const MaxIfindex = 1<<24 - 1

// newRawKey validates k and returns its map layout.
func newRawKey(k FlowKey) (RawFlowKey, error) {
	if k.Ifindex == 0 {
		return RawFlowKey{}, fmt.Errorf("flow key %v: ingress ifindex 0", k)
	}
	if k.Ifindex > MaxIfindex {
		return RawFlowKey{}, fmt.Errorf("flow key %v: ingress ifindex %d above %d, the largest the fast path's 16-byte key holds", k, k.Ifindex, MaxIfindex)
	}
	if k.Proto != ProtoTCP && k.Proto != ProtoUDP {
		return RawFlowKey{}, fmt.Errorf("flow key %v: protocol %d is not TCP or UDP", k, k.Proto)
	}
	src, err := checkAddr("flow key source", k.Src)
	if err != nil {
		return RawFlowKey{}, err
	}
	dst, err := checkAddr("flow key destination", k.Dst)
	if err != nil {
		return RawFlowKey{}, err
	}
	return RawFlowKey{
		Saddr:        addrWord(src),
		Daddr:        addrWord(dst),
		Sport:        be16(k.Src.Port()),
		Dport:        be16(k.Dst.Port()),
		IfindexProto: k.Ifindex<<8 | uint32(k.Proto),
	}, nil
}

// NewFlowEntry validates a flow direction and returns its map key and value,
// with the checksum deltas precomputed and zero counters.
func NewFlowEntry(k FlowKey, a FlowAction) (RawFlowKey, RawFlowValue, error) {
	rk, err := newRawKey(k)
	if err != nil {
		return RawFlowKey{}, RawFlowValue{}, err
	}
	newSrc, err := checkAddr("flow action new source", a.NewSrc)
	if err != nil {
		return RawFlowKey{}, RawFlowValue{}, err
	}
	newDst, err := checkAddr("flow action new destination", a.NewDst)
	if err != nil {
		return RawFlowKey{}, RawFlowValue{}, err
	}
	if a.EgressIfindex == 0 {
		return RawFlowKey{}, RawFlowValue{}, fmt.Errorf("flow %v: egress ifindex 0", k)
	}
	if len(a.SrcMAC) != 6 || len(a.DstMAC) != 6 {
		return RawFlowKey{}, RawFlowValue{}, fmt.Errorf("flow %v: MACs %q and %q must be 6-byte Ethernet addresses", k, a.SrcMAC, a.DstMAC)
	}
	if a.MTU < minMTU {
		return RawFlowKey{}, RawFlowValue{}, fmt.Errorf("flow %v: egress MTU %d below %d", k, a.MTU, minMTU)
	}
	oldSrc, oldDst := k.Src.Addr().Unmap().As4(), k.Dst.Addr().Unmap().As4()
	rv := RawFlowValue{
		NewSaddr:      addrWord(newSrc),
		NewDaddr:      addrWord(newDst),
		NewSport:      be16(a.NewSrc.Port()),
		NewDport:      be16(a.NewDst.Port()),
		L3CsumDelta:   be16(l3CsumDelta(oldSrc, oldDst, newSrc.As4(), newDst.As4())),
		L4CsumDelta:   be16(l4CsumDelta(oldSrc, oldDst, newSrc.As4(), newDst.As4(), k.Src.Port(), k.Dst.Port(), a.NewSrc.Port(), a.NewDst.Port())),
		EgressIfindex: a.EgressIfindex,
		Mtu:           a.MTU,
	}
	if a.Outbound {
		rv.Flags |= flowFlagOutbound
	}
	copy(rv.SrcMac[:], a.SrcMAC)
	copy(rv.DstMac[:], a.DstMAC)
	return rk, rv, nil
}

// decodeFlow turns map entries back into the Go view.
func decodeFlow(rk RawFlowKey, rv RawFlowValue) (FlowKey, FlowAction, FlowStats) {
	k := decodeFlowKey(rk)
	a := FlowAction{
		NewSrc:        netip.AddrPortFrom(wordAddr(rv.NewSaddr), fromBE16(rv.NewSport)),
		NewDst:        netip.AddrPortFrom(wordAddr(rv.NewDaddr), fromBE16(rv.NewDport)),
		EgressIfindex: rv.EgressIfindex,
		SrcMAC:        bytes.Clone(rv.SrcMac[:]),
		DstMAC:        bytes.Clone(rv.DstMac[:]),
		MTU:           rv.Mtu,
		Outbound:      rv.Flags&flowFlagOutbound != 0,
	}
	s := FlowStats{Packets: rv.Packets, Bytes: rv.Bytes}
	return k, a, s
}

// decodeFlowKey is a raw key as a FlowKey.
func decodeFlowKey(rk RawFlowKey) FlowKey {
	return FlowKey{
		Ifindex: rk.IfindexProto >> 8,
		Proto:   uint8(rk.IfindexProto),
		Src:     netip.AddrPortFrom(wordAddr(rk.Saddr), fromBE16(rk.Sport)),
		Dst:     netip.AddrPortFrom(wordAddr(rk.Daddr), fromBE16(rk.Dport)),
	}
}

// sameAction reports whether two values rewrite and send identically.
func sameAction(a, b RawFlowValue) bool {
	a.Packets, a.Bytes = 0, 0
	b.Packets, b.Bytes = 0, 0
	return a == b
}

// KtimeNow returns CLOCK_MONOTONIC_COARSE (the kernel's jiffy-resolution
// monotonic clock), a cheap clock for aging flows.
func KtimeNow() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC_COARSE, &ts); err != nil {
		return 0, fmt.Errorf("clock_gettime(CLOCK_MONOTONIC_COARSE): %w", err)
	}
	return time.Duration(ts.Nano()), nil
}

// LoadOptions configure Load.
type LoadOptions struct {
	// MaxFlows is the flow map size (entries, one per flow direction);
	// 0 means DefaultMaxFlows. The map is an LRU: when full, inserting
	// evicts the least recently used flow (which then takes the slow path).
	MaxFlows uint32
	// PinPath, when set, is a directory on a bpffs (e.g. /sys/fs/bpf/hanat)
	// where the maps are pinned by name, so they outlive the process. Maps
	// already pinned there are reused when compatible (same type, sizes and
	// MaxFlows) and replaced, with a warning, when not.
	PinPath string
	// Logger receives warnings; nil discards them.
	Logger *slog.Logger
}

// Objects is the loaded fast-path programs and their maps: the XDP
// program and the tc program, both on the same flow map, redirect ports
// and counters.
type Objects struct {
	objs     FastpathObjects
	tc       *ebpf.Program // nil when the kernel refused it (tcErr says why)
	tcErr    error
	maxFlows uint32
	// portsMu serialises changes to tc_ports and its cache, whose order
	// keeps the cache right.
	portsMu sync.Mutex
}

// Load loads the fast-path program and its maps into the kernel. It does not
// attach the program.
func Load(opts LoadOptions) (*Objects, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	maxFlows := opts.MaxFlows
	if maxFlows == 0 {
		maxFlows = DefaultMaxFlows
	}
	spec, err := sizedSpec("fast-path", LoadFastpath, maxFlows)
	if err != nil {
		return nil, err
	}

	o := &Objects{maxFlows: maxFlows}
	if err := loadPinned(spec, &o.objs, opts.PinPath, pinnedMaps, "fast path", log); err != nil {
		return nil, err
	}
	if o.tc, o.tcErr = o.loadTC(); o.tcErr != nil {
		log.Warn("tc fast-path program not loaded; XDP only", "err", o.tcErr)
	}
	return o, nil
}

// loadPinned loads spec into objs (a bpf2go Objects struct) with the maps
// named in pinned pinned by name under pinPath (none when it is ""):
// compatible pins are reused, incompatible ones replaced with a warning.
func loadPinned(spec *ebpf.CollectionSpec, objs any, pinPath string, pinned []string, what string, log *slog.Logger) error {
	copts := &ebpf.CollectionOptions{}
	if pinPath != "" {
		if err := os.MkdirAll(pinPath, 0o700); err != nil {
			return fmt.Errorf("bpf: create pin directory %q: %w", pinPath, err)
		}
		for _, name := range pinned {
			ms, ok := spec.Maps[name]
			if !ok {
				return fmt.Errorf("bpf: %s spec has no map %q", what, name)
			}
			ms.Pinning = ebpf.PinByName
		}
		copts.Maps.PinPath = pinPath
	}
	err := spec.LoadAndAssign(objs, copts)
	if errors.Is(err, ebpf.ErrMapIncompatible) && pinPath != "" {
		if uerr := unpinIncompatible(spec, pinPath, pinned, log); uerr != nil {
			return fmt.Errorf("bpf: load %s with maps pinned under %q: %w (and %w)", what, pinPath, err, uerr)
		}
		err = spec.LoadAndAssign(objs, copts)
	}
	if err != nil {
		return loadError(fmt.Sprintf("%s (pin path %q)", what, pinPath), err)
	}
	return nil
}

// sizedSpec loads a program's spec with its flow map sized for maxFlows.
func sizedSpec(what string, load func() (*ebpf.CollectionSpec, error), maxFlows uint32) (*ebpf.CollectionSpec, error) {
	spec, err := load()
	if err != nil {
		return nil, fmt.Errorf("bpf: load %s spec: %w", what, err)
	}
	fm, ok := spec.Maps[FastpathMapFlows]
	if !ok {
		return nil, fmt.Errorf("bpf: %s spec has no map %q", what, FastpathMapFlows)
	}
	fm.MaxEntries = maxFlows
	return spec, nil
}

// loadTC loads the tc program onto the XDP program's maps.
func (o *Objects) loadTC() (*ebpf.Program, error) {
	spec, err := sizedSpec("tc fast-path", LoadFastpathTc, o.maxFlows)
	if err != nil {
		return nil, err
	}
	var objs FastpathTcPrograms
	err = spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		FastpathMapFlows:       o.objs.Flows,
		FastpathMapTxPorts:     o.objs.TxPorts,
		FastpathMapTcPorts:     o.objs.TcPorts,
		FastpathMapTcPortSlots: o.objs.TcPortSlots,
		FastpathMapCounters:    o.objs.Counters,
	}})
	if err != nil {
		return nil, loadError("tc fast path", err)
	}
	return objs.HanatFastpathTc, nil
}

// loadError wraps a failed program load; a verifier rejection carries the
// whole verifier log (%+v), which is what a reader needs.
func loadError(what string, err error) error {
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		return fmt.Errorf("bpf: load %s: %+v", what, verr)
	}
	return fmt.Errorf("bpf: load %s: %w", what, err)
}

// unpinIncompatible removes pinned maps that do not match spec, so the next
// load creates fresh ones. Programs still attached keep the old maps.
func unpinIncompatible(spec *ebpf.CollectionSpec, pinPath string, pinned []string, log *slog.Logger) error {
	for _, name := range pinned {
		path := filepath.Join(pinPath, name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("open pinned map %q: %w", path, err)
		}
		cerr := spec.Maps[name].Compatible(m)
		if cerr != nil {
			log.Warn("replacing incompatible pinned map; its entries are lost", "path", path, "reason", cerr)
			if err := m.Unpin(); err != nil {
				m.Close()
				return fmt.Errorf("unpin map %q: %w", path, err)
			}
		}
		m.Close()
	}
	return nil
}

// RemovePins deletes the map pins Load creates under pinPath (for
// `hanatd --cleanup`); missing pins are not an error. Other files in the
// directory (e.g. a pinned link) are left alone.
func RemovePins(pinPath string) error { return removePins(pinPath, pinnedMaps) }

func removePins(pinPath string, pinned []string) error {
	var errs []error
	for _, name := range pinned {
		path := filepath.Join(pinPath, name)
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove pinned map %q: %w", path, err))
		}
	}
	return errors.Join(errs...)
}

// Program is the XDP program, for attaching.
func (o *Objects) Program() *ebpf.Program { return o.objs.HanatFastpath }

// TCProgram is the tc program (tcx or clsact ingress), for attaching; the
// error says why there is none.
func (o *Objects) TCProgram() (*ebpf.Program, error) {
	if o.tc == nil {
		return nil, o.tcErr
	}
	return o.tc, nil
}

// MaxFlows is the flow map's size.
func (o *Objects) MaxFlows() uint32 { return o.maxFlows }

// Close releases the program and maps. Pinned maps and attached programs
// stay in the kernel.
func (o *Objects) Close() error {
	if o.tc != nil {
		if err := o.tc.Close(); err != nil {
			return fmt.Errorf("bpf: close tc fast-path program: %w", err)
		}
		o.tc = nil
	}
	if err := o.objs.Close(); err != nil {
		return fmt.Errorf("bpf: close fast-path objects: %w", err)
	}
	return nil
}

// PutFlow writes one flow direction. Rewriting an existing flow with the
// same action is a no-op; a changed action keeps the flow's counters
// (increments racing with the update may be lost); a new entry starts at
// zero.
func (o *Objects) PutFlow(k FlowKey, a FlowAction) error {
	rk, rv, err := NewFlowEntry(k, a)
	if err != nil {
		return fmt.Errorf("bpf: put flow: %w", err)
	}
	var old RawFlowValue
	switch err := o.objs.Flows.Lookup(&rk, &old); {
	case err == nil:
		if sameAction(old, rv) {
			return nil
		}
		rv.Packets, rv.Bytes = old.Packets, old.Bytes
	case errors.Is(err, ebpf.ErrKeyNotExist):
	default:
		return fmt.Errorf("bpf: put flow %v: lookup: %w", k, err)
	}
	if err := o.objs.Flows.Update(&rk, &rv, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("bpf: put flow %v: update: %w", k, err)
	}
	return nil
}

// DeleteFlow removes one flow direction; the error wraps ErrFlowNotFound
// when it was not there.
func (o *Objects) DeleteFlow(k FlowKey) error {
	rk, err := newRawKey(k)
	if err != nil {
		return fmt.Errorf("bpf: delete flow: %w", err)
	}
	if err := o.objs.Flows.Delete(&rk); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("bpf: delete flow %v: %w", k, ErrFlowNotFound)
		}
		return fmt.Errorf("bpf: delete flow %v: %w", k, err)
	}
	return nil
}

// LookupFlow returns one flow direction's action and counters; the error
// wraps ErrFlowNotFound when it is not in the map.
func (o *Objects) LookupFlow(k FlowKey) (FlowAction, FlowStats, error) {
	rk, err := newRawKey(k)
	if err != nil {
		return FlowAction{}, FlowStats{}, fmt.Errorf("bpf: lookup flow: %w", err)
	}
	var rv RawFlowValue
	if err := o.objs.Flows.Lookup(&rk, &rv); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return FlowAction{}, FlowStats{}, fmt.Errorf("bpf: lookup flow %v: %w", k, ErrFlowNotFound)
		}
		return FlowAction{}, FlowStats{}, fmt.Errorf("bpf: lookup flow %v: %w", k, err)
	}
	_, a, s := decodeFlow(rk, rv)
	return a, s, nil
}

// iterateBatch is the number of entries read per BPF_MAP_LOOKUP_BATCH call.
const iterateBatch = 1024

// IterateFlows calls fn for every flow direction in the map until fn returns
// false. It reads the map in batches (BPF_MAP_LOOKUP_BATCH), so a sweep of
// a large map costs few syscalls. Flows added or removed meanwhile may or
// may not be seen; on kernels without batch lookups (before 5.6), where it
// walks key by key, a concurrent delete can also make it see a flow twice.
func (o *Objects) IterateFlows(fn func(FlowKey, FlowAction, FlowStats) bool) error {
	return o.iterateRaw(func(rk *RawFlowKey, rv *RawFlowValue) bool {
		k, a, s := decodeFlow(*rk, *rv)
		return fn(k, a, s)
	})
}

// IterateFlowStats is IterateFlows without the actions: the key and the
// counters of each direction, with nothing allocated per entry (the
// offload engine's sweep reads millions).
func (o *Objects) IterateFlowStats(fn func(FlowKey, FlowStats) bool) error {
	return o.iterateRaw(func(rk *RawFlowKey, rv *RawFlowValue) bool {
		return fn(decodeFlowKey(*rk), FlowStats{Packets: rv.Packets, Bytes: rv.Bytes})
	})
}

// iterateRaw calls fn for every raw entry, in batches where the kernel
// has them (see IterateFlows).
func (o *Objects) iterateRaw(fn func(*RawFlowKey, *RawFlowValue) bool) error {
	keys := make([]RawFlowKey, iterateBatch)
	vals := make([]RawFlowValue, iterateBatch)
	var cursor ebpf.MapBatchCursor
	// Each call consumes at least one hash bucket; there are at most
	// 2*MaxFlows buckets, so this bound is never reached in practice.
	for calls := uint64(0); calls <= 2*uint64(o.maxFlows)+1; calls++ {
		n, err := o.objs.Flows.BatchLookup(&cursor, keys, vals, nil)
		for i := range n {
			if !fn(&keys[i], &vals[i]) {
				return nil
			}
		}
		switch {
		case errors.Is(err, ebpf.ErrKeyNotExist):
			return nil
		case errors.Is(err, ebpf.ErrNotSupported) && calls == 0 && n == 0:
			return o.iterateRawOneByOne(fn)
		case err != nil:
			return fmt.Errorf("bpf: iterate flows: %w", err)
		}
	}
	return fmt.Errorf("bpf: iterate flows: batch lookup did not finish")
}

// iterateRawOneByOne is iterateRaw for kernels without batch lookups.
func (o *Objects) iterateRawOneByOne(fn func(*RawFlowKey, *RawFlowValue) bool) error {
	var rk RawFlowKey
	var rv RawFlowValue
	it := o.objs.Flows.Iterate()
	for it.Next(&rk, &rv) {
		if !fn(&rk, &rv) {
			return nil
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("bpf: iterate flows: %w", err)
	}
	return nil
}

// AddTxPort allows redirecting to ifindex (an egress interface other than
// the ingress one) from both programs. The interface must exist in the
// caller's network namespace and, for native XDP redirect, support
// ndo_xdp_xmit with frames it can deliver (AddTCPort otherwise).
func (o *Objects) AddTxPort(ifindex uint32) error {
	if err := o.objs.TxPorts.Update(ifindex, ifindex, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("bpf: add tx port ifindex %d: %w", ifindex, err)
	}
	return o.addTCPort(ifindex)
}

// AddTCPort allows the tc program (only) to redirect to ifindex: an
// interface that takes skbs but not XDP frames; the XDP program passes
// flows towards it to the stack. It removes ifindex from the XDP program's
// ports.
func (o *Objects) AddTCPort(ifindex uint32) error {
	if err := o.objs.TxPorts.Delete(ifindex); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("bpf: remove XDP tx port ifindex %d: %w", ifindex, err)
	}
	return o.addTCPort(ifindex)
}

func (o *Objects) addTCPort(ifindex uint32) error {
	o.portsMu.Lock()
	defer o.portsMu.Unlock()
	if err := o.objs.TcPorts.Update(ifindex, ifindex, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("bpf: add tc port ifindex %d: %w", ifindex, err)
	}
	// The cache after the port (include/fastpath.h, tc_port_slots).
	if err := o.objs.TcPortSlots.Update(o.tcPortSlot(ifindex), ifindex, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("bpf: cache tc port ifindex %d: %w", ifindex, err)
	}
	return nil
}

// removeTCPort removes ifindex from the tc program's ports: from their
// cache first, if its slot names it, then from tc_ports.
func (o *Objects) removeTCPort(ifindex uint32) error {
	o.portsMu.Lock()
	defer o.portsMu.Unlock()
	slot := o.tcPortSlot(ifindex)
	var cached uint32
	if err := o.objs.TcPortSlots.Lookup(slot, &cached); err != nil {
		return fmt.Errorf("bpf: read tc port cache slot %d: %w", slot, err)
	}
	if cached == ifindex {
		if err := o.objs.TcPortSlots.Update(slot, uint32(0), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("bpf: clear tc port cache slot %d (ifindex %d): %w", slot, ifindex, err)
		}
	}
	if err := o.objs.TcPorts.Delete(ifindex); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("bpf: remove tc port ifindex %d: %w", ifindex, err)
	}
	return nil
}

// tcPortSlot is ifindex's slot in tc_port_slots.
func (o *Objects) tcPortSlot(ifindex uint32) uint32 {
	return ifindex % o.objs.TcPortSlots.MaxEntries()
}

// RemoveTxPort removes ifindex from both programs' redirect ports; flows
// to it then take the slow path. Removing a missing port is not an error.
func (o *Objects) RemoveTxPort(ifindex uint32) error {
	var errs []error
	if err := o.objs.TxPorts.Delete(ifindex); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, fmt.Errorf("bpf: remove tx port ifindex %d: %w", ifindex, err))
	}
	if err := o.removeTCPort(ifindex); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Counters returns the program's counters summed over all CPUs (one read
// of the per-CPU statistics slot).
func (o *Objects) Counters() (Counters, error) {
	var perCPU []RawStats
	if err := o.objs.Counters.Lookup(uint32(0), &perCPU); err != nil {
		return Counters{}, fmt.Errorf("bpf: read counters: %w", err)
	}
	return sumStats(perCPU), nil
}

// sumStats adds up per-CPU statistics slots.
func sumStats(perCPU []RawStats) Counters {
	var c Counters
	for _, s := range perCPU {
		for id := range FastpathCounterIdCOUNTER_MAX {
			if f := c.field(id); f != nil {
				*f += s.Count[id]
			}
		}
		c.InPackets += s.Dir[0].Packets
		c.InBytes += s.Dir[0].Bytes
		c.OutPackets += s.Dir[flowFlagOutbound].Packets
		c.OutBytes += s.Dir[flowFlagOutbound].Bytes
	}
	return c
}

// LoadFloorProgram loads the benchmark floor program (swap MACs, XDP_TX). The
// caller closes it.
func LoadFloorProgram() (*ebpf.Program, error) {
	var objs FloorObjects
	if err := LoadFloorObjects(&objs, nil); err != nil {
		return nil, fmt.Errorf("bpf: load floor program: %w", err)
	}
	return objs.HanatFloor, nil
}

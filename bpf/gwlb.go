//go:build linux

package bpf

import (
	"fmt"
	"log/slog"
	"net/netip"
)

// GWLBPinnedMaps are the maps of the GWLB member's programs (gwlb.c) that
// LoadGWLB pins; their names do not clash with the fast path's, so both
// may share a pin directory.
var GWLBPinnedMaps = []string{GwlbMapGwlbAddrs, GwlbMapGwlbConfig, GwlbMapGwlbCounters, GwlbMapGwlbFlows, GwlbMapGwlbNeighs}

// LoadGWLB loads the GWLB member's ingress and egress programs and their
// maps, pinned under pinPath when it is set (reused when compatible,
// replaced with a warning when not). It attaches nothing.
func LoadGWLB(pinPath string, log *slog.Logger) (*GwlbObjects, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	spec, err := LoadGwlb()
	if err != nil {
		return nil, fmt.Errorf("bpf: load GWLB spec: %w", err)
	}
	objs := &GwlbObjects{}
	if err := loadPinned(spec, objs, pinPath, GWLBPinnedMaps, "GWLB programs", log); err != nil {
		return nil, err
	}
	return objs, nil
}

// RemoveGWLBPins deletes the map pins LoadGWLB creates under pinPath;
// missing pins are not an error.
func RemoveGWLBPins(pinPath string) error { return removePins(pinPath, GWLBPinnedMaps) }

// AddrWord is an IPv4 address as the native-endian word whose memory holds
// the address bytes: a __be32 field of a map's key or value.
func AddrWord(a netip.Addr) uint32 { return addrWord(a) }

// WordAddr is the inverse of AddrWord.
func WordAddr(w uint32) netip.Addr { return wordAddr(w) }

// FromBE16 reads a __be16 field of a map's key or value.
func FromBE16(v uint16) uint16 { return fromBE16(v) }

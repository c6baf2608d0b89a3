// Package geneve reads and writes the GENEVE encapsulation (RFC 8926) the
// way an AWS Gateway Load Balancer (GWLB) uses it: UDP port 6081, an IPv4
// or IPv6 packet inside (no Ethernet header), and three options of AWS's
// class 0x0108 that identify the GWLB endpoint, the attachment and the
// flow. A packet without all three is not GWLB's, and a packet with any
// other option is refused: a fleet member must never guess at what an
// encapsulation means.
//
// The package only parses and builds bytes; it knows nothing of sockets,
// BPF or AWS's API, so the lab's GWLB and hanatd's fleet mode share it.
package geneve

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Port is GENEVE's UDP port (IANA), the one GWLB sends to and listens on.
const Port = 6081

// ClassAWS is the option class AWS uses for GWLB's metadata.
const ClassAWS = 0x0108

// The AWS option types and their data lengths in bytes.
const (
	OptEndpointID   = 1 // the GWLB (VPC) endpoint id, 8 bytes
	OptAttachmentID = 2 // the attachment id, 8 bytes
	OptFlowCookie   = 3 // the flow cookie, 4 bytes

	lenEndpointID   = 8
	lenAttachmentID = 8
	lenFlowCookie   = 4
)

// Inner protocols GWLB carries (GENEVE's protocol type is an ethertype).
const (
	ProtoIPv4 = 0x0800
	ProtoIPv6 = 0x86dd
)

// BaseLen is the fixed GENEVE header; OptionsLen what GWLB's three options
// add (a 4-byte option header each); HeaderLen their sum, the whole GENEVE
// header of every GWLB packet.
const (
	BaseLen    = 8
	OptionsLen = 4 + lenEndpointID + 4 + lenAttachmentID + 4 + lenFlowCookie
	HeaderLen  = BaseLen + OptionsLen
)

// Overhead is what GWLB's encapsulation adds to an inner packet on the
// wire: an outer IPv4 header (20), UDP (8) and the GENEVE header.
const Overhead = 20 + 8 + HeaderLen

// Options are GWLB's metadata of one packet. A fleet member keeps them per
// flow and sends them back unchanged with the flow's return packets.
type Options struct {
	EndpointID   uint64 // the GWLB endpoint the packet came through (vpce-…)
	AttachmentID uint64
	FlowCookie   uint32
}

// Header is one parsed GENEVE header.
type Header struct {
	OAM      bool   // an OAM (control) packet, never data
	Protocol uint16 // the inner packet's ethertype: ProtoIPv4 or ProtoIPv6
	VNI      uint32 // 24 bits; GWLB sends 0
	Options  Options
}

// Reason is why a packet was refused, and the name of its drop counter.
type Reason string

// The reasons a packet is not accepted as GWLB's. They are the label
// values of the drop counters, so they never change.
const (
	ReasonTruncated     Reason = "truncated"      // shorter than its headers say
	ReasonVersion       Reason = "version"        // GENEVE version other than 0
	ReasonOAM           Reason = "oam"            // an OAM packet, not data
	ReasonProtocol      Reason = "protocol"       // inner protocol neither IPv4 nor IPv6
	ReasonUnknownOption Reason = "unknown_option" // an option GWLB does not send
	ReasonMissingOption Reason = "missing_option" // one of GWLB's three is absent
	ReasonDuplicate     Reason = "duplicate_option"
	ReasonOptionLength  Reason = "option_length" // an AWS option of the wrong size
)

// Reasons lists every Reason, for counters that must exist at zero.
var Reasons = []Reason{ReasonTruncated, ReasonVersion, ReasonOAM, ReasonProtocol,
	ReasonUnknownOption, ReasonMissingOption, ReasonDuplicate, ReasonOptionLength}

// Error is a refused packet: the reason and what was found.
type Error struct {
	Reason Reason
	Detail string
}

func (e *Error) Error() string { return fmt.Sprintf("geneve: %s: %s", e.Reason, e.Detail) }

func refuse(r Reason, format string, args ...any) error {
	return &Error{Reason: r, Detail: fmt.Sprintf(format, args...)}
}

// ReasonOf returns the reason of an error Parse returned, or "" for nil or
// another error.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return ""
}

// Parse reads the GENEVE header at the start of b (a UDP payload) and
// returns it and the inner packet, which aliases b. It accepts only what
// GWLB sends: version 0, not OAM, an IPv4 or IPv6 inner packet, and
// exactly the three AWS options, each once, in any order.
func Parse(b []byte) (Header, []byte, error) {
	var h Header
	if len(b) < BaseLen {
		return h, nil, refuse(ReasonTruncated, "%d bytes, the base header is %d", len(b), BaseLen)
	}
	if v := b[0] >> 6; v != 0 {
		return h, nil, refuse(ReasonVersion, "version %d", v)
	}
	optLen := int(b[0]&0x3f) * 4
	h.OAM = b[1]&0x80 != 0
	h.Protocol = binary.BigEndian.Uint16(b[2:4])
	h.VNI = binary.BigEndian.Uint32(b[4:8]) >> 8
	if len(b) < BaseLen+optLen {
		return h, nil, refuse(ReasonTruncated, "%d bytes, the header with options is %d", len(b), BaseLen+optLen)
	}
	if h.OAM {
		return h, nil, refuse(ReasonOAM, "OAM bit set")
	}
	if h.Protocol != ProtoIPv4 && h.Protocol != ProtoIPv6 {
		return h, nil, refuse(ReasonProtocol, "protocol type %#04x", h.Protocol)
	}
	seen, err := parseOptions(b[BaseLen:BaseLen+optLen], &h.Options)
	if err != nil {
		return h, nil, err
	}
	if seen != 1<<OptEndpointID|1<<OptAttachmentID|1<<OptFlowCookie {
		return h, nil, refuse(ReasonMissingOption, "AWS options present %03b (bit per type 1..3), want all three", seen>>1)
	}
	return h, b[BaseLen+optLen:], nil
}

// parseOptions reads GWLB's options from opts into o and returns a bit per
// option type seen.
func parseOptions(opts []byte, o *Options) (seen uint, err error) {
	for len(opts) > 0 {
		if len(opts) < 4 {
			return seen, refuse(ReasonTruncated, "%d bytes left for an option header", len(opts))
		}
		class := binary.BigEndian.Uint16(opts[0:2])
		typ := opts[2]
		n := int(opts[3]&0x1f) * 4
		if len(opts) < 4+n {
			return seen, refuse(ReasonTruncated, "option class %#04x type %d says %d bytes, %d left", class, typ, n, len(opts)-4)
		}
		data := opts[4 : 4+n]
		opts = opts[4+n:]
		if class != ClassAWS || typ < OptEndpointID || typ > OptFlowCookie {
			return seen, refuse(ReasonUnknownOption, "class %#04x type %#02x", class, typ)
		}
		if seen&(1<<typ) != 0 {
			return seen, refuse(ReasonDuplicate, "AWS option type %d twice", typ)
		}
		seen |= 1 << typ
		want := lenEndpointID
		switch typ {
		case OptAttachmentID:
			want = lenAttachmentID
		case OptFlowCookie:
			want = lenFlowCookie
		}
		if n != want {
			return seen, refuse(ReasonOptionLength, "AWS option type %d has %d bytes, want %d", typ, n, want)
		}
		switch typ {
		case OptEndpointID:
			o.EndpointID = binary.BigEndian.Uint64(data)
		case OptAttachmentID:
			o.AttachmentID = binary.BigEndian.Uint64(data)
		case OptFlowCookie:
			o.FlowCookie = binary.BigEndian.Uint32(data)
		}
	}
	return seen, nil
}

// Append appends h as GWLB writes it (version 0, the three AWS options in
// type order, HeaderLen bytes) to dst. The OAM flag is written as given;
// Parse refuses it.
func Append(dst []byte, h Header) []byte {
	var flags byte
	if h.OAM {
		flags = 0x80
	}
	dst = append(dst, OptionsLen/4, flags)
	dst = binary.BigEndian.AppendUint16(dst, h.Protocol)
	dst = binary.BigEndian.AppendUint32(dst, h.VNI<<8)
	opt := func(typ uint8, n int) {
		dst = binary.BigEndian.AppendUint16(dst, ClassAWS)
		dst = append(dst, typ, byte(n/4))
	}
	opt(OptEndpointID, lenEndpointID)
	dst = binary.BigEndian.AppendUint64(dst, h.Options.EndpointID)
	opt(OptAttachmentID, lenAttachmentID)
	dst = binary.BigEndian.AppendUint64(dst, h.Options.AttachmentID)
	opt(OptFlowCookie, lenFlowCookie)
	return binary.BigEndian.AppendUint32(dst, h.Options.FlowCookie)
}

// Encap returns inner wrapped in GWLB's GENEVE header for h, with the
// protocol type taken from inner's IP version: a UDP payload for port
// Port.
func Encap(h Header, inner []byte) ([]byte, error) {
	if len(inner) == 0 {
		return nil, fmt.Errorf("geneve: encapsulate an empty packet")
	}
	switch inner[0] >> 4 {
	case 4:
		h.Protocol = ProtoIPv4
	case 6:
		h.Protocol = ProtoIPv6
	default:
		return nil, fmt.Errorf("geneve: encapsulate IP version %d", inner[0]>>4)
	}
	return append(Append(make([]byte, 0, HeaderLen+len(inner)), h), inner...), nil
}

// EndpointName is an endpoint id as AWS prints it: vpce- and 17 hex
// digits (the 8-byte option holds the number).
func EndpointName(id uint64) string { return fmt.Sprintf("vpce-%017x", id) }

// ParseEndpointName reads a name EndpointName wrote ("vpce-0123456789abcdef0").
func ParseEndpointName(s string) (uint64, error) {
	var id uint64
	var rest string
	if len(s) != len("vpce-")+17 || s[:5] != "vpce-" {
		return 0, fmt.Errorf("geneve: endpoint id %q: want vpce- and 17 hex digits", s)
	}
	if _, err := fmt.Sscanf(s[5:]+"|", "%x%s", &id, &rest); err != nil || rest != "|" {
		return 0, fmt.Errorf("geneve: endpoint id %q: want vpce- and 17 hex digits", s)
	}
	return id, nil
}

package geneve

import (
	"bytes"
	"encoding/binary"
	"testing"
)

var opts = Options{EndpointID: 0x0123456789abcdef, AttachmentID: 0x1122334455667788, FlowCookie: 0xdeadbeef}

// ipv4 is a minimal IPv4 header (version nibble is what Encap reads).
var ipv4 = append([]byte{0x45, 0, 0, 20}, make([]byte, 16)...)

func TestRoundTrip(t *testing.T) {
	pkt, err := Encap(Header{VNI: 0, Options: opts}, ipv4)
	if err != nil {
		t.Fatal(err)
	}
	if len(pkt) != HeaderLen+len(ipv4) || HeaderLen != 40 {
		t.Fatalf("encapsulated %d bytes, header %d; want 40 + %d", len(pkt), HeaderLen, len(ipv4))
	}
	h, inner, err := Parse(pkt)
	if err != nil {
		t.Fatal(err)
	}
	if h.Options != opts || h.Protocol != ProtoIPv4 || h.OAM || h.VNI != 0 || !bytes.Equal(inner, ipv4) {
		t.Fatalf("parsed %+v inner %x", h, inner)
	}
}

// The wire bytes are AWS's layout: opt len 8 words, protocol 0x0800, then
// class 0x0108 type 1 len 2 words, …
func TestWireLayout(t *testing.T) {
	got := Append(nil, Header{Protocol: ProtoIPv4, Options: opts})
	want := []byte{
		0x08, 0x00, 0x08, 0x00, 0, 0, 0, 0,
		0x01, 0x08, 1, 2, 0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
		0x01, 0x08, 2, 2, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
		0x01, 0x08, 3, 1, 0xde, 0xad, 0xbe, 0xef,
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("header\n%x\nwant\n%x", got, want)
	}
}

// Options in another order are still GWLB's.
func TestOptionOrder(t *testing.T) {
	b := Append(nil, Header{Protocol: ProtoIPv4, Options: opts})
	reordered := append(append(append(bytes.Clone(b[:8]), b[32:40]...), b[20:32]...), b[8:20]...)
	h, _, err := Parse(append(reordered, ipv4...))
	if err != nil || h.Options != opts {
		t.Fatalf("reordered options: %+v %v", h, err)
	}
}

func TestRefused(t *testing.T) {
	good := append(Append(nil, Header{Protocol: ProtoIPv4, Options: opts}), ipv4...)
	mut := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	for _, tc := range []struct {
		name string
		pkt  []byte
		want Reason
	}{
		{"empty", nil, ReasonTruncated},
		{"base only", good[:7], ReasonTruncated},
		{"options cut", good[:30], ReasonTruncated},
		{"version 1", mut(func(b []byte) []byte { b[0] |= 0x40; return b }), ReasonVersion},
		{"oam", mut(func(b []byte) []byte { b[1] |= 0x80; return b }), ReasonOAM},
		{"ethernet inside", mut(func(b []byte) []byte { b[2], b[3] = 0x65, 0x58; return b }), ReasonProtocol},
		{"foreign class", mut(func(b []byte) []byte { b[8+1] = 0x09; return b }), ReasonUnknownOption},
		{"type 4", mut(func(b []byte) []byte { b[8+2] = 4; return b }), ReasonUnknownOption},
		{"critical type", mut(func(b []byte) []byte { b[32+2] = 0x83; return b }), ReasonUnknownOption},
		{"endpoint twice", mut(func(b []byte) []byte { copy(b[20:32], b[8:20]); return b }), ReasonDuplicate},
		{"no cookie", mut(func(b []byte) []byte { b[0] = 6; return append(b[:32], ipv4...) }), ReasonMissingOption},
		{"no options", mut(func(b []byte) []byte { b[0] = 0; return append(b[:8], ipv4...) }), ReasonMissingOption},
		{"short endpoint", mut(func(b []byte) []byte { b[11] = 1; b[12], b[13], b[14], b[15] = 0x01, 0x08, 9, 0; return b }), ReasonOptionLength},
		{"option length past header", mut(func(b []byte) []byte { b[35] = 3; return b }), ReasonTruncated},
	} {
		_, _, err := Parse(tc.pkt)
		if got := ReasonOf(err); got != tc.want {
			t.Errorf("%s: reason %q (%v), want %q", tc.name, got, err, tc.want)
		}
	}
}

func TestEndpointName(t *testing.T) {
	name := EndpointName(opts.EndpointID)
	if name != "vpce-00123456789abcdef" {
		t.Fatalf("name %q", name)
	}
	id, err := ParseEndpointName(name)
	if err != nil || id != opts.EndpointID {
		t.Fatalf("parse %q: %x %v", name, id, err)
	}
	for _, bad := range []string{"", "vpce-", "vpce-0123456789abcdefg", "eni-00123456789abcdef", "vpce-00123456789abcdef0"} {
		if _, err := ParseEndpointName(bad); err == nil {
			t.Errorf("ParseEndpointName(%q) accepted", bad)
		}
	}
}

// FuzzParse: Parse never panics, its inner packet is the tail of its input,
// and what it accepts re-encodes to the same header (in AWS's order).
func FuzzParse(f *testing.F) {
	good := append(Append(nil, Header{Protocol: ProtoIPv4, Options: opts}), ipv4...)
	f.Add(good)
	f.Add(good[:20])
	f.Add(Append(nil, Header{Protocol: ProtoIPv6, VNI: 0xabcdef, Options: opts}))
	f.Add([]byte{0x3f, 0, 0x08, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, inner, err := Parse(b)
		if err != nil {
			if ReasonOf(err) == "" {
				t.Fatalf("error without a reason: %v", err)
			}
			return
		}
		hdr := len(b) - len(inner)
		if !bytes.Equal(b[hdr:], inner) || hdr < HeaderLen {
			t.Fatalf("inner is not the input's tail after a %d-byte header", hdr)
		}
		again, rest, err := Parse(append(Append(nil, h), inner...))
		if err != nil || again != h || !bytes.Equal(rest, inner) {
			t.Fatalf("re-encoded %+v: %+v %v", h, again, err)
		}
		if binary.BigEndian.Uint16(b[2:4]) != h.Protocol {
			t.Fatalf("protocol %#x not the header's", h.Protocol)
		}
	})
}

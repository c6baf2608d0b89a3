package bpf

// Test frames are built with github.com/google/gopacket (build), and
// checked against the hand-written builder (buildByHand, frame_test.go)
// byte for byte, so two independent encoders agree on every frame the
// tests feed the program. Rewritten frames are decoded again with gopacket
// and their checksums recomputed by gopacket (verifyWithGopacket), next to
// the from-scratch verifier of frame_test.go.

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// build serializes o with gopacket: lengths and checksums computed by
// gopacket, the IPv4 header's options and the TCP options as o asks.
// gopacket pads Ethernet frames to 60 bytes; the frame is cut back to its
// IPv4 length and o.pad zero bytes appended, so short frames stay short
// (the truncation and "length beyond the frame" cases need exact lengths).
func (o frameOpts) build() []byte {
	b, err := o.gopacketBuild()
	if err != nil {
		panic(fmt.Sprintf("test frame %+v: gopacket: %v", o, err))
	}
	return b
}

func (o frameOpts) gopacketBuild() ([]byte, error) {
	et := layers.EthernetType(o.ethType)
	if et == 0 {
		et = layers.EthernetTypeIPv4
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr(o.srcMAC[:]), DstMAC: net.HardwareAddr(o.dstMAC[:]), EthernetType: et}
	stack := []gopacket.SerializableLayer{eth}
	l2 := 14
	if o.vlan {
		eth.EthernetType = layers.EthernetTypeDot1Q
		stack = append(stack, &layers.Dot1Q{
			Priority:       uint8(o.vlanTCI >> 13),
			DropEligible:   o.vlanTCI&0x1000 != 0,
			VLANIdentifier: o.vlanTCI & 0x0fff,
			Type:           et,
		})
		l2 += 4
	}
	if et != layers.EthernetTypeIPv4 {
		stack = append(stack, gopacket.Payload(o.raw))
		out, err := serialize(stack...)
		if err != nil {
			return nil, err
		}
		return out[:l2+len(o.raw)], nil
	}

	ip := &layers.IPv4{
		Version:    4,
		Id:         0xbeef,
		Flags:      layers.IPv4Flag(o.fragOff >> 13),
		FragOffset: o.fragOff & 0x1fff,
		TTL:        o.ttl,
		Protocol:   layers.IPProtocol(o.proto),
		SrcIP:      o.src.Addr().AsSlice(),
		DstIP:      o.dst.Addr().AsSlice(),
	}
	if o.ihl > 5 {
		for range (o.ihl - 5) * 4 {
			ip.Options = append(ip.Options, layers.IPv4Option{OptionType: 1}) // NOP
		}
	}
	stack = append(stack, ip)
	var udp *layers.UDP
	switch o.proto {
	case protoTCP:
		tcp := &layers.TCP{
			SrcPort: layers.TCPPort(o.src.Port()),
			DstPort: layers.TCPPort(o.dst.Port()),
			Seq:     0x11223344,
			Ack:     0x55667788,
			FIN:     o.tcpFlags&tcpFIN != 0,
			SYN:     o.tcpFlags&tcpSYN != 0,
			RST:     o.tcpFlags&tcpRST != 0,
			PSH:     o.tcpFlags&tcpPSH != 0,
			ACK:     o.tcpFlags&tcpACK != 0,
			Window:  64240,
		}
		opts, err := tcpOptions(o.tcpOpts)
		if err != nil {
			return nil, err
		}
		tcp.Options = opts
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			return nil, err
		}
		stack = append(stack, tcp)
	case protoUDP:
		udp = &layers.UDP{SrcPort: layers.UDPPort(o.src.Port()), DstPort: layers.UDPPort(o.dst.Port())}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			return nil, err
		}
		stack = append(stack, udp)
	case protoICMP:
		stack = append(stack, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 0x1234, Seq: 1})
	}
	stack = append(stack, gopacket.Payload(o.payload))
	out, err := serialize(stack...)
	if err != nil {
		return nil, err
	}
	out = out[:l2+int(ip.Length)]
	if udp != nil {
		at := l2 + int(ip.IHL)*4 + 6
		switch {
		case o.udpNoCsum:
			out[at], out[at+1] = 0, 0
		case udp.Checksum == 0:
			// RFC 768: a computed 0 is sent as all ones (gopacket
			// leaves it 0, which would mean "no checksum").
			out[at], out[at+1] = 0xff, 0xff
		}
	}
	return append(out, make([]byte, o.pad)...), nil
}

func serialize(ls ...gopacket.SerializableLayer) ([]byte, error) {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		return nil, err
	}
	return bytes.Clone(buf.Bytes()), nil
}

// tcpOptions parses raw TCP option bytes into gopacket's form.
func tcpOptions(raw []byte) ([]layers.TCPOption, error) {
	var out []layers.TCPOption
	for i := 0; i < len(raw); {
		kind := layers.TCPOptionKind(raw[i])
		if kind == layers.TCPOptionKindEndList || kind == layers.TCPOptionKindNop {
			out = append(out, layers.TCPOption{OptionType: kind, OptionLength: 1})
			i++
			continue
		}
		if i+1 >= len(raw) || raw[i+1] < 2 || i+int(raw[i+1]) > len(raw) {
			return nil, fmt.Errorf("TCP option at %d of %x is malformed", i, raw)
		}
		n := int(raw[i+1])
		out = append(out, layers.TCPOption{OptionType: kind, OptionLength: uint8(n), OptionData: raw[i+2 : i+n]})
		i += n
	}
	return out, nil
}

// verifyWithGopacket decodes frame with gopacket and recomputes the IPv4
// and TCP/UDP checksums with gopacket's own serializer; a UDP checksum of 0
// passes only when allowZeroUDP is set.
func verifyWithGopacket(frame []byte, allowZeroUDP bool) error {
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.DecodeOptions{NoCopy: false})
	// Only the layers up to TCP/UDP matter; gopacket also tries to decode
	// payloads by port (DNS on 53) and may fail there.
	if el := p.ErrorLayer(); el != nil && p.TransportLayer() == nil {
		return fmt.Errorf("gopacket decode: %v", el.Error())
	}
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ip == nil {
		return fmt.Errorf("gopacket found no IPv4 layer")
	}
	// Recompute the IPv4 checksum over the received header.
	hdr := bytes.Clone(ip.Contents)
	gotIP := binary.BigEndian.Uint16(hdr[10:])
	hdr[10], hdr[11] = 0, 0
	ip2 := *ip
	ip2.Options = append([]layers.IPv4Option(nil), ip.Options...)
	reIP, err := serialize(&ip2, gopacket.Payload(ip.Payload))
	if err != nil {
		return fmt.Errorf("gopacket re-serialize IPv4: %w", err)
	}
	if want := binary.BigEndian.Uint16(reIP[10:]); gotIP != want {
		return fmt.Errorf("IPv4 checksum %#04x, gopacket computes %#04x", gotIP, want)
	}
	switch l4 := p.TransportLayer().(type) {
	case *layers.TCP:
		t2 := *l4
		if err := t2.SetNetworkLayerForChecksum(ip); err != nil {
			return err
		}
		re, err := serialize(&t2, gopacket.Payload(l4.Payload))
		if err != nil {
			return fmt.Errorf("gopacket re-serialize TCP: %w", err)
		}
		if want := binary.BigEndian.Uint16(re[16:]); l4.Checksum != want {
			return fmt.Errorf("TCP checksum %#04x, gopacket computes %#04x", l4.Checksum, want)
		}
	case *layers.UDP:
		if l4.Checksum == 0 {
			if allowZeroUDP {
				return nil
			}
			return fmt.Errorf("UDP checksum 0")
		}
		u2 := *l4
		if err := u2.SetNetworkLayerForChecksum(ip); err != nil {
			return err
		}
		re, err := serialize(&u2, gopacket.Payload(l4.Payload))
		if err != nil {
			return fmt.Errorf("gopacket re-serialize UDP: %w", err)
		}
		want := binary.BigEndian.Uint16(re[6:])
		if want == 0 {
			want = 0xffff
		}
		if l4.Checksum != want {
			return fmt.Errorf("UDP checksum %#04x, gopacket computes %#04x", l4.Checksum, want)
		}
	}
	return nil
}

// frameVariants are frame shapes beyond the hit cases: every field the
// builders take.
func frameVariants() []frameOpts {
	ack := packet(tcpOut, tcpACK, []byte("data"))
	udp := packet(udpOut, 0, []byte("data"))
	with := func(o frameOpts, f func(*frameOpts)) frameOpts { f(&o); return o }
	return []frameOpts{
		with(ack, func(o *frameOpts) { o.tcpFlags = tcpSYN }),
		with(ack, func(o *frameOpts) { o.tcpFlags = tcpSYN | tcpACK }),
		with(ack, func(o *frameOpts) { o.tcpFlags = tcpFIN | tcpACK | tcpPSH }),
		with(ack, func(o *frameOpts) { o.tcpFlags = tcpRST }),
		with(ack, func(o *frameOpts) { o.ihl = 6 }),
		with(ack, func(o *frameOpts) { o.ihl = 15 }),
		with(udp, func(o *frameOpts) { o.fragOff = ipMF }),
		with(udp, func(o *frameOpts) { o.fragOff = 185 }),
		with(udp, func(o *frameOpts) { o.fragOff = 0x4000 }), // DF
		with(ack, func(o *frameOpts) { o.proto = protoICMP }),
		with(ack, func(o *frameOpts) { o.proto = 47 }),
		with(udp, func(o *frameOpts) { o.udpNoCsum = true }),
		with(udp, func(o *frameOpts) { o.vlan, o.vlanTCI = true, 0xf00d }),
		with(udp, func(o *frameOpts) { o.payload = nil }),
		with(ack, func(o *frameOpts) { o.tcpOpts = []byte{2, 4, 0x05, 0xb4, 1, 3, 3, 7} }), // MSS, NOP, WS
		{dstMAC: macNAT, srcMAC: macRouter, ethType: ethPARP, raw: make([]byte, 28)},
		{dstMAC: macNAT, srcMAC: macRouter, ethType: ethPIPv6, raw: make([]byte, 40)},
		{dstMAC: macNAT, srcMAC: macRouter, ethType: ethP8021AD, raw: []byte{0, 100, 8, 0}},
		{dstMAC: macNAT, srcMAC: macRouter, vlan: true, vlanTCI: 7, ethType: ethPARP, raw: make([]byte, 28)},
	}
}

// TestFastpathFrameBuildersAgree: gopacket and the hand-written encoder
// produce the same bytes for every test frame shape, and both pass both
// checksum verifiers.
func TestFastpathFrameBuildersAgree(t *testing.T) {
	var all []frameOpts
	for _, tc := range hitCases() {
		all = append(all, tc.in, rewritten(tc.in, tc.act))
	}
	all = append(all, frameVariants()...)
	for i, o := range all {
		gp, err := o.gopacketBuild()
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		hand := o.buildByHand()
		if !bytes.Equal(gp, hand) {
			t.Errorf("frame %d (%+v): builders differ\ngopacket %x\nby hand  %x", i, o, gp, hand)
			continue
		}
		if o.ethType != 0 && o.ethType != ethPIPv4 || o.proto != protoTCP && o.proto != protoUDP {
			continue
		}
		if err := verifyChecksums(gp, o.udpNoCsum); err != nil {
			t.Errorf("frame %d: from-scratch verifier: %v", i, err)
		}
		if err := verifyWithGopacket(gp, o.udpNoCsum); err != nil {
			t.Errorf("frame %d: gopacket verifier: %v", i, err)
		}
	}
}

// TestFastpathGopacketVerifierCatchesCorruption: the gopacket verifier is
// not a rubber stamp.
func TestFastpathGopacketVerifierCatchesCorruption(t *testing.T) {
	for _, o := range []frameOpts{packet(tcpOut, tcpACK, []byte("x")), packet(udpIn, 0, []byte("y"))} {
		good := o.build()
		if err := verifyWithGopacket(good, false); err != nil {
			t.Fatalf("good frame rejected: %v", err)
		}
		for _, at := range []int{14 + 10, 14 + 12, 14 + 20, len(good) - 1} { // IP csum, saddr, L4 port, payload
			bad := bytes.Clone(good)
			bad[at] ^= 0x40
			if verifyWithGopacket(bad, false) == nil {
				t.Errorf("corruption at byte %d not detected", at)
			}
		}
	}
}

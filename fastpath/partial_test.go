//go:build linux

package fastpath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hanat/hanat/internal/natlab"
	"github.com/hanat/hanat/internal/netns"
)

// udpCapture is a packet socket on one interface of a test namespace that
// sees the IPv4 frames it receives with the kernel's checksum state
// (PACKET_AUXDATA): the way to look at a CHECKSUM_PARTIAL skb's checksum
// field, which no receiving socket checks.
type udpCapture struct {
	fd  int
	dev string
}

// captureUDP opens a capture on dev in ns; it is closed at cleanup.
func captureUDP(t *testing.T, ns *netns.NS, dev string) *udpCapture {
	t.Helper()
	c := &udpCapture{fd: -1, dev: dev}
	if err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_IP))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		c.fd = fd
		if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
			return fmt.Errorf("PACKET_AUXDATA: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: uint16(proto), Ifindex: ifi.Index}); err != nil {
			return fmt.Errorf("bind to %s (ifindex %d): %w", dev, ifi.Index, err)
		}
		return nil
	}); err != nil {
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
		t.Fatalf("capture on %s: %v", dev, err)
	}
	t.Cleanup(func() { unix.Close(c.fd) })
	return c
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// checkUDP reads every frame queued (at most 1000) and checks the UDP
// checksum field of each datagram to dstPort: a CHECKSUM_PARTIAL one
// (TP_STATUS_CSUMNOTREADY) must hold the pseudo header's sum of its own
// addresses and length, any other a full checksum that verifies (or 0).
// It returns how many PARTIAL datagrams it checked.
func (c *udpCapture) checkUDP(t *testing.T, dstPort uint16) (partial int) {
	t.Helper()
	buf, oob := make([]byte, 2048), make([]byte, 256)
	for range 1000 {
		n, oobn, _, _, err := unix.Recvmsg(c.fd, buf, oob, unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			return partial
		}
		if err != nil {
			t.Fatalf("capture on %s: %v", c.dev, err)
		}
		// The socket is SOCK_RAW: the frame with its Ethernet header.
		f := buf[:n]
		if len(f) < 14+20+8 || f[14]>>4 != 4 || f[14]&0xf != 5 || f[14+9] != unix.IPPROTO_UDP ||
			binary.BigEndian.Uint16(f[14+20+2:]) != dstPort {
			continue
		}
		ip, udp := f[14:34], f[34:]
		udpLen := int(binary.BigEndian.Uint16(udp[4:]))
		if udpLen < 8 || udpLen > len(udp) {
			t.Fatalf("capture on %s: UDP length %d in a %d-byte frame", c.dev, udpLen, n)
		}
		check := binary.BigEndian.Uint16(udp[6:])
		pseudo := uint32(natlab.OnesSum(ip[12:20])) + unix.IPPROTO_UDP + uint32(udpLen)
		if c.csumNotReady(oob[:oobn]) {
			partial++
			if got, want := fold(uint32(check)), fold(pseudo); got != want {
				t.Errorf("capture on %s: CHECKSUM_PARTIAL datagram %s -> %s: checksum field %#04x, want the pseudo header's sum %#04x",
					c.dev, addr4(ip[12:16]), addr4(ip[16:20]), check, want)
			}
			continue
		}
		if check != 0 && fold(pseudo+uint32(natlab.OnesSum(udp[:udpLen]))) != 0 {
			t.Errorf("capture on %s: datagram %s -> %s: checksum %#04x does not verify", c.dev, addr4(ip[12:16]), addr4(ip[16:20]), check)
		}
	}
	return partial
}

// csumNotReady: the frame's PACKET_AUXDATA says TP_STATUS_CSUMNOTREADY.
func (c *udpCapture) csumNotReady(oob []byte) bool {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return false
	}
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA && len(m.Data) >= 4 {
			return binary.NativeEndian.Uint32(m.Data)&unix.TP_STATUS_CSUMNOTREADY != 0
		}
	}
	return false
}

// fold folds s to 16 bits and maps 0xffff to 0: one value per residue mod
// 0xffff, so two checksum fields that mean the same compare equal.
func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	if s == 0xffff {
		return 0
	}
	return uint16(s)
}

func addr4(b []byte) string { return fmt.Sprintf("%d.%d.%d.%d", b[0], b[1], b[2], b[3]) }

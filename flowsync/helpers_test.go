package flowsync

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hanat/hanat/conntrack"
)

// The tests' pair: private subnets in 10.0.0.0/16, the peer's SNAT
// address 10.0.1.10 (its AZ's private IP carrying its EIP), the survivor's
// address for that EIP 10.0.2.20, internet hosts in TEST-NET-2 and -3.
var (
	testKey      = []byte("a shared pair key of 32 bytes..!")
	testPrivate  = netip.MustParsePrefix("10.0.0.0/16")
	testPeerNAT  = netip.MustParseAddr("10.0.1.10")
	testOwnNAT   = netip.MustParseAddr("10.0.2.20")
	testFilter   = conntrack.Filter{PrivateCIDRs: []netip.Prefix{testPrivate}, NATAddrs: []netip.Addr{testPeerNAT}}
	testTakeover = Takeover{PrivateCIDRs: []netip.Prefix{testPrivate}, Addrs: map[netip.Addr]netip.Addr{testPeerNAT: testOwnNAT}}
)

func tcp(src, dst string) conntrack.Tuple {
	return conntrack.Tuple{Proto: protoTCP, Src: netip.MustParseAddrPort(src), Dst: netip.MustParseAddrPort(dst)}
}

// testFlow is flow i: an established SNAT TCP flow from a private host to
// an internet server, unique in its original and translated tuples for i
// below 2^24.
func testFlow(i int) conntrack.Flow {
	host := netip.AddrFrom4([4]byte{10, 0, byte(16 + i>>16&0x3f), byte(i >> 8)})
	dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)}), 443)
	src := netip.AddrPortFrom(host, uint16(1024+i%50000))
	nat := netip.AddrPortFrom(testPeerNAT, uint16(1024+i%60000))
	return conntrack.Flow{
		Original:  conntrack.Tuple{Proto: protoTCP, Src: src, Dst: dst},
		Reply:     conntrack.Tuple{Proto: protoTCP, Src: dst, Dst: nat},
		ProtoName: "tcp", TCPState: "ESTABLISHED", Assured: true, SNAT: true,
		Timeout: 300 * time.Second, Mark: uint32(i % 3),
	}
}

// canon prints flows sorted, the timeout left out, to compare views.
func canon(flows []conntrack.Flow) string {
	lines := make([]string, 0, len(flows))
	for _, f := range flows {
		lines = append(lines, fmt.Sprintf("%s %s | %s | %s a=%v s=%v d=%v m=%d", f.ProtoName, f.Original, f.Reply, f.TCPState, f.Assured, f.SNAT, f.DNAT, f.Mark))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// memLink is one side of an in-memory link.
type memLink struct {
	in  <-chan []byte
	out chan<- []byte
}

func memPair() (a, b *memLink) {
	ab, ba := make(chan []byte, 64), make(chan []byte, 64)
	return &memLink{in: ba, out: ab}, &memLink{in: ab, out: ba}
}

func (l *memLink) send(ctx context.Context, msg []byte) error {
	select {
	case l.out <- msg:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *memLink) recv(ctx context.Context) ([]byte, error) {
	select {
	case m := <-l.in:
		return m, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (l *memLink) close() error { return nil }

// sessionPair runs the handshake over an in-memory link and returns the
// sender's and the receiver's sessions.
func sessionPair(senderKey, receiverKey []byte, random func() io.Reader) (s, r *session, err error) {
	a, b := memPair()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	rr, sr := random(), random()
	go func() {
		var err error
		r, err = handshake(ctx, b, receiverKey, roleReceiver, rr)
		errc <- err
	}()
	s, err = handshake(ctx, a, senderKey, roleSender, sr)
	if rerr := <-errc; err == nil {
		err = rerr
	}
	return s, r, err
}

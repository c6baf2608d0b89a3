//go:build linux

package gwlb

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/hanat/hanat/bpf"
	"github.com/hanat/hanat/geneve"
	"github.com/hanat/hanat/internal/natlab"
)

// TestWithFastPathTC: the fast path's tc program on the same ENI, after
// gwlb's ingress (tcx runs them in order). An offloaded inner flow is
// NATed by the fast path (its SNAT port, which conntrack would not pick,
// shows it) and the reply, de-NATed by the fast path and redirected to the
// ENI's transmit path, still passes gwlb's egress and returns to the GWLB
// encapsulated: bpf_redirect to an interface's egress runs its tcx egress.
func TestWithFastPathTC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var fp *bpf.Objects
	snat := netip.AddrPortFrom(labENI, 61000)
	// The fast path's tc program goes on first, as fastpath/tc.go attaches
	// it (no anchor: the hook's end); gwlb's Attach then puts its ingress
	// at the head.
	l := newLab(t, ctx, func(l *lab) {
		h := natlab.Handle(t, l.nat)
		eni := natlab.LinkByName(t, h, "eni0").Attrs()
		hr := natlab.Handle(t, l.router)
		routerMAC := natlab.LinkByName(t, hr, "r-nat").Attrs().HardwareAddr

		var err error
		fp, err = bpf.Load(bpf.LoadOptions{MaxFlows: 64})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { fp.Close() })
		tc, err := fp.TCProgram()
		if err != nil {
			t.Fatal(err)
		}
		ifx := uint32(eni.Index)
		out := bpf.FlowKey{Ifindex: ifx, Proto: bpf.ProtoUDP, Src: labHost, Dst: labServer}
		in := bpf.FlowKey{Ifindex: ifx, Proto: bpf.ProtoUDP, Src: labServer, Dst: snat}
		for k, a := range map[bpf.FlowKey]bpf.FlowAction{
			out: {NewSrc: snat, NewDst: labServer, EgressIfindex: ifx, SrcMAC: eni.HardwareAddr, DstMAC: routerMAC, MTU: 1500, Outbound: true},
			in:  {NewSrc: labServer, NewDst: labHost, EgressIfindex: ifx, SrcMAC: eni.HardwareAddr, DstMAC: routerMAC, MTU: 1500},
		} {
			if err := fp.PutFlow(k, a); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.nat.Do(func() error {
			lnk, err := link.AttachTCX(link.TCXOptions{Interface: eni.Index, Program: tc, Attach: ebpf.AttachTCXIngress})
			if err == nil {
				t.Cleanup(func() { lnk.Close() })
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
	})

	peers := natlab.ServeUDPEcho(t, l.inet, labServer.String())
	gw := genevePeer(t, l.gwlb, labGWLB)
	msg := []byte("fast path inside the tunnel")
	ok := false
	var reply []byte
	for try := 0; try < 3 && !ok; try++ {
		sendGeneve(t, gw, labOpts, udpPacket(labHost, labServer, msg))
		var h geneve.Header
		_, h, reply, ok = recvGeneve(t, gw, 2*time.Second)
		if ok && h.Options != labOpts {
			t.Fatalf("reply options %+v, want %+v", h.Options, labOpts)
		}
	}
	c, _ := fp.Counters()
	t.Logf("fast path counters: hits %d (out %d, in %d), misses %d, passed %d; gwlb %v", c.Hits, c.OutPackets, c.InPackets, c.Misses, c.Passed(), l.counters(t))
	select {
	case p := <-peers:
		if p != snat {
			t.Fatalf("server saw %v, want the fast path's SNAT %v", p, snat)
		}
	default:
		t.Fatal("the server saw no query")
	}
	if !ok {
		t.Fatal("no encapsulated reply")
	}
	if err := verifyIPv4(reply, false); err != nil {
		t.Fatalf("inner reply: %v", err)
	}
	if c.OutPackets < 1 || c.InPackets < 1 {
		t.Fatalf("fast path hits out %d in %d, want both directions", c.OutPackets, c.InPackets)
	}
}

package fastpath

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hanat/hanat/bpf"
)

// TestFastpathWithdrawsFailingOutput: native XDP attached while the
// internet host's veth had NAPI (GRO on), which it then loses (GRO off):
// every frame the NAT redirects there is dropped. One watch interval
// later the output watch has withdrawn native XDP and tc forwards the flow
// (its datagrams arrive again); the state says why.
func TestFastpathWithdrawsFailingOutput(t *testing.T) {
	ft := newFastTopo(t)
	ctx := testContext(t)
	ft.slowPath(t, ctx)
	ft.peersGRO(t, true)
	// Full checksums from the private host: an XDP rewrite cannot finish
	// a partial one.
	if out, err := ft.priv.Run(ctx, "ethtool", "-K", ft.privIf, "tx", "off"); err != nil {
		t.Fatalf("ethtool: %v: %s", err, out)
	}
	f := openFast(t, ft, filepath.Join(bpffsDir(t), "hanat"), XDPModeNative)
	defer f.Close()
	if st := syncFast(t, ft, f, ft.in, ft.out); st.Mode != XDPNative {
		t.Fatalf("state %+v, want native", st)
	}
	srv, cl := ft.udpPair(t)
	receive := func(n int) int {
		got := 0
		buf := make([]byte, 64)
		for range n {
			_ = srv.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			if _, _, err := srv.ReadFromUDPAddrPort(buf); err != nil {
				break
			}
			got++
		}
		return got
	}
	if _, err := cl.Write([]byte("slow")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_ = srv.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, seen, err := srv.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("slow path: %v", err)
	}
	priv, inet := netip.MustParseAddrPort("10.0.11.2:40000"), netip.MustParseAddrPort("203.0.113.100:5353")
	po, err := NewPathResolver(ft.hn, f.Attached).Resolve(ctx, priv.Addr(), inet.Addr())
	if err != nil {
		t.Fatal(err)
	}
	objs := f.Objects()
	if err := objs.PutFlow(bpf.FlowKey{Ifindex: po.InIfindex, Proto: bpf.ProtoUDP, Src: priv, Dst: inet},
		bpf.FlowAction{NewSrc: seen, NewDst: inet, EgressIfindex: po.OutIfindex, SrcMAC: po.SrcMAC, DstMAC: po.DstMAC, MTU: po.MTU, Outbound: true}); err != nil {
		t.Fatal(err)
	}
	watch := func() bool {
		t.Helper()
		c, err := objs.Counters()
		if err != nil {
			t.Fatal(err)
		}
		var withdrew bool
		if err := ft.nat.Do(func() error { withdrew = f.WatchOutputs(c.Hits); return nil }); err != nil {
			t.Fatal(err)
		}
		return withdrew
	}
	send := func(n int) {
		for i := range n {
			if _, err := cl.Write([]byte{byte(i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	watch() // the baseline
	send(20)
	if got := receive(20); got != 20 {
		t.Fatalf("native XDP with NAPI on the peer: %d of 20 datagrams arrived", got)
	}
	if watch() {
		t.Fatalf("withdrew a working backend: %+v", f.State())
	}

	if out, err := ft.inet.Run(ctx, "ethtool", "-K", ft.inetIf, "gro", "off"); err != nil {
		t.Fatalf("ethtool: %v: %s", err, out)
	}
	send(20)
	if got := receive(20); got != 0 {
		t.Fatalf("%d of 20 datagrams arrived with no NAPI on the peer; the test needs them dropped", got)
	}
	if !watch() {
		t.Fatalf("a blackhole went unnoticed: %+v", f.State())
	}
	st := f.State()
	if st.Mode != BackendTC {
		t.Fatalf("after the withdrawal: %+v, want tc", st)
	}
	for _, is := range st.Interfaces {
		if is.Mode != BackendTC || !strings.Contains(is.Note, "output failing") {
			t.Errorf("%s: mode %s note %q, want tc saying native XDP's output failed", is.Name, is.Mode, is.Note)
		}
	}
	before, _ := objs.Counters()
	send(20)
	if got := receive(20); got != 20 {
		t.Fatalf("after falling back to tc: %d of 20 datagrams arrived", got)
	}
	if after, _ := objs.Counters(); after.Hits-before.Hits < 20 {
		t.Errorf("tc forwarded %d of the 20 datagrams; want the fast path to carry them", after.Hits-before.Hits)
	}
	// It holds: a Sync keeps tc.
	if st := syncFast(t, ft, f, ft.in, ft.out); st.Mode != BackendTC {
		t.Errorf("Sync after the withdrawal: %+v, want tc still", st)
	}
}

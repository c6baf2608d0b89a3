package conntrack

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"
)

// TestTableEntriesInNamespace: Get returns a real entry as an update
// event would carry it, SetTimeout changes its remaining timeout, and both
// report ErrFlowGone for an entry the kernel does not have.
func TestTableEntriesInNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	lab := newNATLab(t, ctx)
	serveTCPEcho(t, lab.inet, "198.51.100.100:7")
	local := tcpRoundTrip(t, lab.private, "198.51.100.100:7")
	orig := Tuple{Proto: protoTCP, Src: local, Dst: netip.MustParseAddrPort("198.51.100.100:7")}

	tbl, err := Open(nil, NetNSFD(lab.nat.FD()))
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Close()
	if err := tbl.SetTimeout(ctx, orig, 77*time.Second); err != nil {
		t.Fatalf("SetTimeout: %v", err)
	}
	ev, err := tbl.Get(ctx, orig)
	if err != nil || ev.Kind != EventUpdate || !ev.Plain || ev.Flow.TCPState != "ESTABLISHED" || !ev.Flow.SNAT ||
		ev.Flow.Timeout < 75*time.Second || ev.Flow.Timeout > 77*time.Second {
		t.Errorf("entry after setting a 77s timeout: %+v, %v", ev, err)
	}
	var walked int
	if err := tbl.Walk(ctx, func() { walked = 0 }, func(ev Event) {
		if ev.Flow.Original == orig && ev.Kind == EventUpdate && ev.Plain {
			walked++
		}
	}); err != nil || walked != 1 {
		t.Errorf("Walk found the entry %d times, %v; want once", walked, err)
	}
	gone := Tuple{Proto: protoTCP, Src: netip.MustParseAddrPort("10.0.11.10:9"), Dst: orig.Dst}
	if err := tbl.SetTimeout(ctx, gone, time.Second); !errors.Is(err, ErrFlowGone) {
		t.Errorf("SetTimeout on a missing entry: %v, want ErrFlowGone", err)
	}
	if _, err := tbl.Get(ctx, gone); !errors.Is(err, ErrFlowGone) {
		t.Errorf("Get of a missing entry: %v, want ErrFlowGone", err)
	}
	// The socket survives ENOENT: the entry is still there to read.
	if _, err := tbl.Get(ctx, orig); err != nil {
		t.Errorf("Get after a missing entry: %v", err)
	}
}

package fastpath

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
)

// Withdrawal: a backend whose output fails must not keep flows. The
// checks before attaching (the driver accepts native XDP, a veth peer has
// NAPI) can be wrong or go stale (a peer's GRO turned off later, a driver
// that accepts XDP but cannot transmit it), and a frame the fast path sends
// that the interface cannot transmit is gone: the kernel never sees it, the
// flow stays offloaded. So WatchOutputs, called every OutputWatchInterval,
// compares each attached interface's drop and error counters with the fast
// path's hits over the interval; when the drops are a large share of the
// hits, the interface's backend is withdrawn: native (or generic) XDP
// falls back to tc on every XDP interface (a failed XDP redirect is
// counted on the ingress interface, not on the one that could not send),
// tc falls back to the slow path. The flows themselves stay in the map:
// the tc program forwards them as the XDP program did, and a flow towards
// an interface with no backend takes the slow path (tc_ports). A withdrawal
// holds until the mode changes or the interface is recreated.

// OutputWatchInterval is how often the Controller calls WatchOutputs.
const OutputWatchInterval = 250 * time.Millisecond

// Thresholds of a withdrawal: over one interval an interface dropped at
// least withdrawMinDrops packets and at least 1/withdrawDropShare of the
// packets the fast path forwarded. A blackhole drops them all; an RX ring
// overflowing under load drops a small share.
const (
	withdrawMinDrops  = 8
	withdrawDropShare = 4
)

// withdrawal is why a backend was taken off an interface.
type withdrawal struct {
	ifindex int
	from    string // the backend withdrawn: XDPNative, XDPGeneric or BackendTC
	why     string
}

// linkSample is what an interface's counters say: drops counts rx_dropped
// (where veth and drivers count failed XDP redirects and XDP_TX),
// tx_dropped and tx_errors; txDrops only the last two; tx is tx_packets.
type linkSample struct {
	drops, txDrops, tx uint64
}

func sampleLink(l netlink.Link) (linkSample, bool) {
	s := l.Attrs().Statistics
	if s == nil {
		return linkSample{}, false
	}
	return linkSample{drops: s.RxDropped + s.TxDropped + s.TxErrors, txDrops: s.TxDropped + s.TxErrors, tx: s.TxPackets}, true
}

// failing reports whether d dropped packets are a failing output's share of
// dHits forwarded ones.
func failing(d, dHits uint64) bool {
	return d >= withdrawMinDrops && d*withdrawDropShare >= dHits && dHits > 0
}

// WatchOutputs takes one sample: hits is the programs' hit counter now.
// It reports whether it withdrew a backend (State then says where and
// why). It runs in the NAT's namespace.
//
// XDP fails when an XDP interface's drops are a large share of the hits
// and the XDP interfaces together transmitted less than half of them (so
// an RX ring overflowing under load, which drops before the program and
// leaves what it forwards leaving, does not count). tc fails when a tc
// interface's transmit drops and errors are a large share of the hits
// (its GSO packets leave as one, so transmitted packets say nothing).
func (f *XDP) WatchOutputs(hits uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	dHits := hits - f.watchHits
	first := !f.watched
	f.watchHits, f.watched = hits, true
	var tripped []*attachment
	var whys []string
	var xdpTx uint64
	var xdpDropping []*attachment
	for _, name := range slices.Sorted(maps.Keys(f.attached)) {
		a := f.attached[name]
		if !a.on() {
			continue
		}
		l, err := netlink.LinkByIndex(a.ifindex)
		if err != nil {
			continue // Sync reports a vanished interface
		}
		now, ok := sampleLink(l)
		prev, seen := f.watchLinks[name]
		f.watchLinks[name] = now
		if !ok || !seen || first || now.drops < prev.drops || now.tx < prev.tx {
			continue
		}
		if a.mode != BackendTC {
			xdpTx += now.tx - prev.tx
			if d := now.drops - prev.drops; failing(d, dHits) {
				xdpDropping = append(xdpDropping, a)
				whys = append(whys, fmt.Sprintf("%s dropped %d packets", name, d))
			}
		} else if d := now.txDrops - prev.txDrops; failing(d, dHits) {
			tripped = append(tripped, a)
			whys = append(whys, fmt.Sprintf("%s failed to send %d packets", name, d))
		}
	}
	if len(xdpDropping) > 0 && 2*xdpTx < dHits {
		tripped = append(tripped, xdpDropping...)
		whys = append(whys, fmt.Sprintf("the XDP interfaces sent %d", xdpTx))
	}
	whys = append(whys, fmt.Sprintf("while the fast path forwarded %d", dHits))
	if len(tripped) == 0 {
		return false
	}
	why := "output failing (" + strings.Join(whys, ", ") + ")"
	xdpFailed := false
	for _, a := range tripped {
		if a.mode != BackendTC {
			xdpFailed = true
		}
	}
	for _, name := range slices.Sorted(maps.Keys(f.attached)) {
		a := f.attached[name]
		if !a.on() || (a.mode == BackendTC && !slices.Contains(tripped, a)) || (a.mode != BackendTC && !xdpFailed) {
			continue
		}
		w := withdrawal{ifindex: a.ifindex, from: a.mode, why: why}
		f.withdrawn[name] = w
		f.log.Error("fast path: withdrawing a backend whose output fails", "interface", name, "backend", a.mode, "reason", why)
		f.detach(a)
		l, err := netlink.LinkByIndex(a.ifindex)
		if err != nil {
			f.setOff(name, a.ifindex, fmt.Sprintf("interface %s: %v", name, err))
			continue
		}
		na := f.attach(name, l, a.err)
		f.attached[name] = na
		if na.on() {
			f.addPort(na)
		}
	}
	return true
}

// withdrawnPlan is the plan for an interface whose backend was withdrawn:
// tc after XDP, nothing after tc.
func (f *XDP) withdrawnPlan(l netlink.Link) (attachPlan, bool) {
	w, ok := f.withdrawn[l.Attrs().Name]
	if !ok {
		return attachPlan{}, false
	}
	if w.ifindex != l.Attrs().Index {
		delete(f.withdrawn, l.Attrs().Name) // recreated: a fresh start
		return attachPlan{}, false
	}
	if w.from == BackendTC || f.mode == XDPModeGeneric {
		return attachPlan{note: "withdrawn from " + w.from + ": " + w.why + "; slow path only"}, true
	}
	note := "tc: " + w.from + " XDP withdrawn: " + w.why
	return attachPlan{tries: []try{{mode: BackendTC}}, note: note}, true
}

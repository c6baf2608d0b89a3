package fastpath

import (
	"testing"

	"github.com/hanat/hanat/internal/deptest"
)

// TestImports keeps the arrows pointing one way (docs/ARCHITECTURE.md):
// the fast path sits on the datapath, the BPF programs and conntrack, and
// knows nothing of AWS, HA or the admin socket.
func TestImports(t *testing.T) {
	deptest.Allow(t,
		"github.com/hanat/hanat/bpf",
		"github.com/hanat/hanat/conntrack",
		"github.com/hanat/hanat/datapath",
		"github.com/cilium/ebpf",
		"github.com/cilium/ebpf/",
		"github.com/vishvananda/netlink",
		"github.com/vishvananda/netlink/nl",
		"github.com/vishvananda/netns",
		"golang.org/x/sys/unix",
	)
}

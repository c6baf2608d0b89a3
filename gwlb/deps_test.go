package gwlb

import (
	"testing"

	"github.com/hanat/hanat/internal/deptest"
)

// TestImports: the fleet member's datapath sits on the BPF programs and
// the GENEVE bytes, and asks conntrack which of its flows still live; like the fast path it knows nothing of AWS's API, HA
// or the admin socket (the wiring hands it the GWLB addresses).
func TestImports(t *testing.T) {
	deptest.Allow(t,
		"github.com/hanat/hanat/bpf",
		"github.com/hanat/hanat/geneve",
		"github.com/hanat/hanat/conntrack",
		"github.com/cilium/ebpf",
		"github.com/cilium/ebpf/",
		"github.com/vishvananda/netlink",
		"golang.org/x/sys/unix",
	)
}

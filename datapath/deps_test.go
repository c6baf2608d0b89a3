package datapath

import (
	"testing"

	"github.com/hanat/hanat/internal/deptest"
)

// TestImports keeps the arrows pointing one way (docs/ARCHITECTURE.md):
// the datapath knows nothing of AWS, HA or the admin socket.
func TestImports(t *testing.T) {
	deptest.Allow(t,
		"github.com/hanat/hanat/bpf",
		"github.com/cilium/ebpf/",
		"github.com/google/nftables",
		"github.com/google/nftables/",
		"github.com/vishvananda/netlink",
		"golang.org/x/sys/unix",
		"golang.org/x/sync/",
	)
}

package datapath

import (
	"testing"

	"github.com/hanat/hanat/internal/deptest"
)

// TestImports keeps the arrows pointing one way (docs/ARCHITECTURE.md):
// the slow path knows nothing of AWS, HA, the admin socket or the fast
// path above it.
func TestImports(t *testing.T) {
	deptest.Allow(t,
		"github.com/google/nftables",
		"github.com/google/nftables/",
		"github.com/vishvananda/netlink",
		"golang.org/x/sys/unix",
		"golang.org/x/sync/",
	)
}

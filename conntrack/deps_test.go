package conntrack

import (
	"testing"

	"github.com/hanat/hanat/internal/deptest"
)

// TestImports keeps the arrows pointing one way (docs/ARCHITECTURE.md):
// conntrack speaks ctnetlink and writes the flow map; it never imports
// cloud, ha, admin or datapath.
func TestImports(t *testing.T) {
	deptest.Allow(t,
		"github.com/hanat/hanat/bpf",
		"github.com/mdlayher/netlink",
		"github.com/ti-mo/conntrack",
		"github.com/ti-mo/netfilter",
		"golang.org/x/sys/unix",
		"golang.org/x/sync/",
	)
}

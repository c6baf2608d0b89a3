package conntrack

import (
	"testing"

	"github.com/hanat/hanat/internal/deptest"
)

// TestImports keeps the arrows pointing one way (docs/ARCHITECTURE.md):
// conntrack is the one package that speaks ctnetlink (dumps, events,
// entry updates); it imports no other hanat package.
func TestImports(t *testing.T) {
	deptest.Allow(t,
		"github.com/mdlayher/netlink",
		"github.com/ti-mo/conntrack",
		"github.com/ti-mo/netfilter",
		"golang.org/x/sys/unix",
	)
}

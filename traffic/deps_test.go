package traffic

import (
	"testing"

	"github.com/hanat/hanat/internal/deptest"
)

// TestImports keeps the arrows pointing one way (docs/ARCHITECTURE.md):
// traffic reads the datapath, the fast path and conntrack, and knows
// nothing of AWS, HA or the admin socket.
func TestImports(t *testing.T) {
	deptest.Allow(t,
		"github.com/hanat/hanat/conntrack",
		"github.com/hanat/hanat/datapath",
		"github.com/hanat/hanat/fastpath",
	)
}

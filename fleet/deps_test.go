package fleet

import (
	"testing"

	"github.com/hanat/hanat/internal/deptest"
)

// TestImports: the fleet member's state knows the datapath, the upstream
// check and IMDS only through its own interfaces; it never imports cloud,
// ha or the daemon. GENEVE's options name the endpoints of its flows.
func TestImports(t *testing.T) {
	deptest.Allow(t, "github.com/hanat/hanat/geneve")
}

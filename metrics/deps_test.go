package metrics

import (
	"testing"

	"github.com/hanat/hanat/internal/deptest"
)

// TestImports keeps the arrows pointing one way: metrics knows nothing of
// AWS (package cloud implements CloudWatchClient), the datapath or the
// daemon.
func TestImports(t *testing.T) {
	deptest.Allow(t, "github.com/prometheus/client_golang/")
}

package gwlbsim

import (
	"testing"

	"github.com/hanat/hanat/internal/deptest"
)

// TestImports: the lab's GWLB is logic over bytes; it builds GENEVE with
// the geneve package and knows nothing of namespaces, sockets or EC2.
func TestImports(t *testing.T) { deptest.Allow(t, "github.com/hanat/hanat/geneve") }

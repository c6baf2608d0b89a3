package geneve

import (
	"testing"

	"github.com/hanat/hanat/internal/deptest"
)

// TestImports: GENEVE is bytes only, shared by the lab's GWLB and hanatd's
// fleet mode; it imports nothing but the standard library.
func TestImports(t *testing.T) { deptest.Allow(t) }

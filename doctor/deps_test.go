package doctor

import (
	"testing"

	"github.com/hanat/hanat/internal/deptest"
)

// TestImports keeps the arrows pointing one way (docs/ARCHITECTURE.md):
// the checklist is pure checks over facts; it imports nothing.
func TestImports(t *testing.T) {
	deptest.Allow(t)
}

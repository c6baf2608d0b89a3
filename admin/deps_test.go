package admin

import (
	"testing"

	"github.com/hanat/hanat/internal/deptest"
)

// TestImports keeps the arrows pointing one way: admin defines its own API
// types and never imports the datapath, conntrack, config, or AWS code.
func TestImports(t *testing.T) {
	deptest.Allow(t, "golang.org/x/sys/unix")
}

package bpf

import (
	"testing"

	"github.com/hanat/hanat/internal/deptest"
)

// TestImports keeps the arrows pointing one way (docs/ARCHITECTURE.md):
// bpf is the bottom floor, the programs and their maps; it imports no
// other hanat room.
func TestImports(t *testing.T) {
	deptest.Allow(t,
		"github.com/cilium/ebpf",
		"golang.org/x/sys/unix",
	)
}

package flowsync

import (
	"testing"

	"github.com/hanat/hanat/internal/deptest"
)

// TestImports keeps flowsync pure: the standard library (its AEAD and HKDF
// too) and conntrack for the Flow type and Pair's sockets (every kernel
// call goes through conntrack); no cloud, ha or daemon package, and no
// golang.org/x/crypto.
func TestImports(t *testing.T) {
	deptest.Allow(t, "github.com/hanat/hanat/conntrack")
}

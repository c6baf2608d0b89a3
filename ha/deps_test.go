package ha

import (
	"testing"

	"github.com/hanat/hanat/internal/deptest"
)

// TestImports keeps the arrows pointing one way: ha talks to EC2 through
// its Cloud interface and never imports the AWS SDK, nftables, BPF or
// other hanat packages.
func TestImports(t *testing.T) {
	deptest.Allow(t, "golang.org/x/sync/errgroup")
}

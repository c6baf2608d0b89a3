package cloud

import (
	"testing"

	"github.com/hanat/hanat/internal/deptest"
)

// TestImports keeps the arrows pointing one way (docs/ARCHITECTURE.md):
// cloud is the only AWS SDK user and imports no other hanat room but
// doctor, whose facts it gathers (ha talks to it through an adapter in
// cmd/hanatd).
func TestImports(t *testing.T) {
	deptest.Allow(t,
		"github.com/aws/aws-sdk-go-v2/",
		"github.com/aws/smithy-go",
		"github.com/aws/smithy-go/",
		"github.com/hanat/hanat/doctor",
		"golang.org/x/sync/",
	)
}

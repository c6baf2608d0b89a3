package config

import (
	"testing"

	"github.com/hanat/hanat/internal/deptest"
)

// TestImports keeps the arrows pointing one way (docs/ARCHITECTURE.md):
// config is the schema and its validation; it imports no other room.
func TestImports(t *testing.T) {
	deptest.Allow(t,
		"go.yaml.in/yaml/v3",
	)
}

// Package deptest keeps hanat's arrows pointing one way (docs/ARCHITECTURE.md): a
// package's test lists what it may import besides the standard library,
// and the build fails on anything else.
package deptest

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// Allow checks the non-test Go files in the current directory (a test's
// working directory is its package). Every import outside the standard
// library must equal an entry of allowed, or start with an entry that ends
// in "/".
func Allow(t *testing.T, allowed ...string) {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("deptest: no Go files in the package directory")
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if first, _, _ := strings.Cut(p, "/"); !strings.Contains(first, ".") {
				continue // standard library
			}
			if !allowedPath(p, allowed) {
				t.Errorf("%s imports %s: this package may import only the standard library and %v", f, p, allowed)
			}
		}
	}
}

func allowedPath(p string, allowed []string) bool {
	for _, a := range allowed {
		if p == a || strings.HasSuffix(a, "/") && strings.HasPrefix(p, a) {
			return true
		}
	}
	return false
}

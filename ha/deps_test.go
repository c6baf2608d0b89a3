package ha

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestImports keeps the arrows pointing one way: ha talks to EC2 through
// its Cloud interface and never touches AWS, nftables or BPF itself.
func TestImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"golang.org/x/sync/errgroup": true}
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
			first, _, _ := strings.Cut(p, "/")
			switch {
			case strings.Contains(p, "aws-sdk"), strings.Contains(p, "nftables"), strings.Contains(p, "cilium/ebpf"),
				strings.HasPrefix(p, "github.com/hanat/hanat/"):
				t.Errorf("%s imports %s: ha may not import the AWS SDK, nftables, BPF or other hanat packages", f, p)
			case strings.Contains(first, ".") && !allowed[p]:
				t.Errorf("%s imports %s: ha may import only the standard library and %v", f, p, allowed)
			}
		}
	}
}

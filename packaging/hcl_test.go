package packaging

// Checks of the HCL that need no provider or plugin (terraform validate
// runs too, against the local plugin directory: terraform_test.go; packer
// validate needs plugins that cannot be downloaded here): every file parses
// as HCL, every var./local./data./resource reference names something
// declared, the user-data template renders with exactly the values
// Terraform passes and is valid shell, and the resources the IAM policy
// acts on carry the "hanat" tag.

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// hclConfig is what a directory of HCL files declares and references.
type hclConfig struct {
	declared map[string]bool // "var.x", "local.x", "data.t.n", "t.n", "source.t.n"
	refs     []hclRef
	blocks   []*hclsyntax.Block // top-level
}

type hclRef struct {
	name  string
	where hcl.Range
}

func parseHCLDir(t *testing.T, pattern string) *hclConfig {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil || len(files) == 0 {
		t.Fatalf("no files match %s", pattern)
	}
	c := &hclConfig{declared: map[string]bool{}}
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		file, diags := hclsyntax.ParseConfig(src, f, hcl.InitialPos)
		if diags.HasErrors() {
			t.Errorf("%s", diags.Error())
			continue
		}
		body := file.Body.(*hclsyntax.Body)
		for _, b := range body.Blocks {
			c.blocks = append(c.blocks, b)
			switch {
			case b.Type == "variable" && len(b.Labels) == 1:
				c.declared["var."+b.Labels[0]] = true
			case b.Type == "locals":
				for name := range b.Body.Attributes {
					c.declared["local."+name] = true
				}
			case b.Type == "data" && len(b.Labels) == 2:
				c.declared["data."+b.Labels[0]+"."+b.Labels[1]] = true
			case b.Type == "resource" && len(b.Labels) == 2:
				c.declared[b.Labels[0]+"."+b.Labels[1]] = true
			case b.Type == "source" && len(b.Labels) == 2:
				c.declared["source."+b.Labels[0]+"."+b.Labels[1]] = true
			}
		}
		c.collectRefs(body)
	}
	return c
}

// collectRefs records the references of every attribute (an attribute's
// Variables() already leaves out for-expression iterators), except in
// lifecycle blocks, whose ignore_changes lists attribute names.
func (c *hclConfig) collectRefs(body *hclsyntax.Body) {
	for _, a := range body.Attributes {
		for _, tr := range a.Expr.Variables() {
			c.refs = append(c.refs, hclRef{name: traversalName(tr), where: tr.SourceRange()})
		}
	}
	for _, b := range body.Blocks {
		if b.Type != "lifecycle" {
			c.collectRefs(b.Body)
		}
	}
}

// traversalName is the declared thing a reference points at: var.x,
// local.x, data.t.n or t.n (resource), or just the root for the rest
// (each, count, path, self, source, …).
func traversalName(tr hcl.Traversal) string {
	var parts []string
	for _, s := range tr {
		switch s := s.(type) {
		case hcl.TraverseRoot:
			parts = append(parts, s.Name)
		case hcl.TraverseAttr:
			parts = append(parts, s.Name)
		default:
			return strings.Join(parts, ".")
		}
	}
	return strings.Join(parts, ".")
}

func (c *hclConfig) checkRefs(t *testing.T, builtins ...string) {
	t.Helper()
	for _, r := range c.refs {
		root, rest, _ := strings.Cut(r.name, ".")
		// Type constraints (type = list(string)) read as variables.
		if slices.Contains(builtins, root) || slices.Contains([]string{"string", "number", "bool", "any"}, r.name) {
			continue
		}
		var key string
		switch root {
		case "var", "local":
			name, _, _ := strings.Cut(rest, ".")
			key = root + "." + name
		case "data":
			p := strings.SplitN(rest, ".", 3)
			if len(p) < 2 {
				t.Errorf("%s: incomplete data reference %s", r.where, r.name)
				continue
			}
			key = "data." + p[0] + "." + p[1]
		default:
			p := strings.SplitN(r.name, ".", 3)
			if len(p) < 2 {
				t.Errorf("%s: unknown reference %s", r.where, r.name)
				continue
			}
			key = p[0] + "." + p[1]
		}
		if !c.declared[key] {
			t.Errorf("%s: %s is not declared", r.where, key)
		}
	}
}

// resources returns the top-level resource blocks of a type.
func (c *hclConfig) resources(typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range c.blocks {
		if b.Type == "resource" && len(b.Labels) == 2 && b.Labels[0] == typ {
			out = append(out, b)
		}
	}
	return out
}

func objectKeys(e hclsyntax.Expression) []string {
	obj, ok := e.(*hclsyntax.ObjectConsExpr)
	if !ok {
		return nil
	}
	var keys []string
	for _, item := range obj.Items {
		if v, diags := item.KeyExpr.Value(nil); !diags.HasErrors() && v.Type() == cty.String {
			keys = append(keys, v.AsString())
		}
	}
	return keys
}

func TestTerraform(t *testing.T) {
	c := parseHCLDir(t, "terraform/*.tf")
	c.checkRefs(t, "each", "path", "count", "self", "terraform")

	// What packaging/iam-policy.json acts on must carry the tag key hanat.
	for _, typ := range []string{"aws_network_interface", "aws_eip", "aws_instance", "aws_route_table"} {
		for _, b := range c.resources(typ) {
			if typ == "aws_route_table" && b.Labels[1] != "private" {
				continue
			}
			tags, ok := b.Body.Attributes["tags"]
			if !ok || !slices.Contains(objectKeys(tags.Expr), "hanat") {
				t.Errorf("%s.%s has no hanat tag (the IAM policy only lets hanat act on tagged resources)", typ, b.Labels[1])
			}
		}
	}
	// The ENIs a NAT forwards through have the source/dest check off.
	for _, b := range c.resources("aws_network_interface") {
		a, ok := b.Body.Attributes["source_dest_check"]
		if v, _ := a.Expr.Value(nil); !ok || v != cty.False {
			t.Errorf("aws_network_interface.%s: source_dest_check must be false", b.Labels[1])
		}
	}
	// The role gets the policy file itself, not a copy.
	src, _ := os.ReadFile("terraform/iam.tf")
	if !strings.Contains(string(src), `file("${path.module}/../iam-policy.json")`) {
		t.Error("iam.tf does not use packaging/iam-policy.json")
	}
}

func TestPackerTemplate(t *testing.T) {
	c := parseHCLDir(t, "ami/*.pkr.hcl")
	c.checkRefs(t, "path", "source")
	var names []string
	for _, b := range c.blocks {
		if b.Type != "build" {
			continue
		}
		for _, s := range b.Body.Blocks {
			if s.Type == "source" {
				if a, ok := s.Body.Attributes["name"]; ok {
					v, _ := a.Expr.Value(nil)
					names = append(names, v.AsString())
				}
			}
		}
	}
	slices.Sort(names)
	want := []string{"al2023-amd64", "al2023-arm64", "debian12-amd64", "debian12-arm64"}
	if !slices.Equal(names, want) {
		t.Errorf("packer builds %v, want %v", names, want)
	}
	src, _ := os.ReadFile("ami/hanat.pkr.hcl")
	if !strings.Contains(string(src), "provision.sh /tmp/") {
		t.Error("the packer build does not run provision.sh")
	}
}

// TestUserDataTemplate renders the user data of the pair and of the fleet
// the way Terraform's templatefile does, with the values their examples
// pass, and checks the result is valid shell carrying them.
func TestUserDataTemplate(t *testing.T) {
	for _, c := range []struct {
		script, tf string
		vars       map[string]string
		want       []string
	}{
		{"ami/user-data-ha.sh", "terraform/nat.tf",
			map[string]string{"peer_address": "10.0.2.10", "key_source": "ssm:/hanat/ha-key", "region": "eu-west-1"},
			[]string{"peer='10.0.2.10'", "key_source='ssm:/hanat/ha-key'", "region='eu-west-1'"}},
		{"ami/user-data-fleet.sh", "terraform-fleet/fleet.tf",
			map[string]string{"gwlb_description": "ELB gwy/hanat-gwlb/0123456789abcdef", "region": "eu-west-1",
				"health_check_port": "80", "deregistration_delay": "300s"},
			[]string{"description='ELB gwy/hanat-gwlb/0123456789abcdef'", "region='eu-west-1'", "port='80'", "delay='300s'"}},
	} {
		t.Run(filepath.Base(c.script), func(t *testing.T) { checkUserData(t, c.script, c.tf, c.vars, c.want) })
	}
}

func checkUserData(t *testing.T, script, tfFile string, values map[string]string, want []string) {
	src, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, diags := hclsyntax.ParseTemplate(src, filepath.Base(script), hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("%s is not a valid template: %s", script, diags.Error())
	}
	var vars []string
	for _, tr := range tmpl.Variables() {
		vars = append(vars, tr.RootName())
	}
	slices.Sort(vars)
	vars = slices.Compact(vars)
	// The example's templatefile() passes exactly these.
	tf, _ := os.ReadFile(tfFile)
	for _, v := range vars {
		if !strings.Contains(string(tf), "    "+v+" ") {
			t.Errorf("template variable %s is not passed by %s", v, tfFile)
		}
	}
	ctx := &hcl.EvalContext{Variables: map[string]cty.Value{}}
	for k, v := range values {
		ctx.Variables[k] = cty.StringVal(v)
	}
	out, diags := tmpl.Value(ctx)
	if diags.HasErrors() {
		t.Fatalf("render: %s", diags.Error())
	}
	rendered := out.AsString()
	for _, w := range want {
		if !strings.Contains(rendered, w) {
			t.Errorf("rendered user data lacks %s", w)
		}
	}
	path := filepath.Join(t.TempDir(), "user-data.sh")
	if err := os.WriteFile(path, []byte(rendered), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("sh", "-n", path).CombinedOutput(); err != nil {
		t.Errorf("rendered user data: sh -n: %v\n%s", err, b)
	}
}

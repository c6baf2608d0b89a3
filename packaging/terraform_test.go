package packaging

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hanat/hanat/internal/testtool"
)

// tfPluginDirEnv names a Terraform plugin directory (the layout
// `terraform init -plugin-dir` reads) holding the AWS provider.
const tfPluginDirEnv = "HANAT_TF_PLUGIN_DIR"

// tfPluginDirs are the usual places of a local plugin directory: the
// machine image's, the system's, and the user's (Terraform's implied local
// mirror directories).
func tfPluginDirs() []string {
	dirs := []string{"/opt/tf-plugins", "/opt/terraform/plugins", "/usr/local/share/terraform/plugins", "/usr/share/terraform/plugins"}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".terraform.d", "plugins"), filepath.Join(home, ".local", "share", "terraform", "plugins"))
	}
	if x := os.Getenv("XDG_DATA_HOME"); x != "" {
		dirs = append(dirs, filepath.Join(x, "terraform", "plugins"))
	}
	return dirs
}

// hasAWSProvider reports whether dir holds hashicorp/aws for this platform,
// unpacked (…/aws/VERSION/OS_ARCH/terraform-provider-aws*) or packed
// (…/aws/terraform-provider-aws_VERSION_OS_ARCH.zip).
func hasAWSProvider(dir string) bool {
	platform := runtime.GOOS + "_" + runtime.GOARCH
	aws := filepath.Join(dir, "registry.terraform.io", "hashicorp", "aws")
	unpacked, _ := filepath.Glob(filepath.Join(aws, "*", platform, "terraform-provider-aws*"))
	packed, _ := filepath.Glob(filepath.Join(aws, "terraform-provider-aws_*_"+platform+".zip"))
	return len(unpacked)+len(packed) > 0
}

// tfPluginDir finds the plugin directory: $HANAT_TF_PLUGIN_DIR, which must
// hold the provider, or the first usual place that does.
func tfPluginDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv(tfPluginDirEnv); d != "" {
		if !hasAWSProvider(d) {
			t.Fatalf("%s=%s holds no hashicorp/aws provider for %s_%s", tfPluginDirEnv, d, runtime.GOOS, runtime.GOARCH)
		}
		return d
	}
	for _, d := range tfPluginDirs() {
		if hasAWSProvider(d) {
			return d
		}
	}
	testtool.Unavailable(t, "no Terraform plugin directory with the hashicorp/aws provider (set %s; looked in %s)",
		tfPluginDirEnv, strings.Join(tfPluginDirs(), ", "))
	return ""
}

// copyTree copies the regular files and directories under src to dst,
// leaving out Terraform's working files (.terraform*).
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".terraform") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
}

// TestTerraformValidate runs `terraform init -plugin-dir=… && terraform
// validate` (and `terraform fmt -check`) on a copy of each example (the
// pair's and the fleet's), offline: only the local plugin directory is a
// provider source, so an example may need no provider but the AWS one the
// machine image carries.
func TestTerraformValidate(t *testing.T) {
	if testing.Short() {
		t.Skip("terraform validate loads the AWS provider's schema (~5-15 s; -short)")
	}
	testtool.Require(t, "terraform")
	plugins := tfPluginDir(t)
	for _, example := range []string{"terraform", "terraform-fleet"} {
		t.Run(example, func(t *testing.T) { terraformValidate(t, example, plugins) })
	}
}

func terraformValidate(t *testing.T, example, plugins string) {
	// The examples read ../iam-policy.json and ../ami/user-data-*.sh.
	root := t.TempDir()
	work := filepath.Join(root, example)
	for _, c := range [][2]string{{example, work}, {"ami", filepath.Join(root, "ami")}, {"iam-policy.json", filepath.Join(root, "iam-policy.json")}} {
		fi, err := os.Stat(c[0])
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() {
			b, err := os.ReadFile(c[0])
			if err == nil {
				err = os.WriteFile(c[1], b, 0o644)
			}
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := copyTree(c[0], c[1]); err != nil {
			t.Fatalf("copying %s: %v", c[0], err)
		}
	}
	cli := filepath.Join(root, "terraformrc")
	if err := os.WriteFile(cli, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// No user configuration, no checkpoint (network) call. The plugin
	// directory doubles as the plugin cache, so init links the provider
	// (~700 MB) into .terraform instead of copying it; it holds the only
	// providers init may install, so nothing is written there.
	env := append(os.Environ(), "TF_CLI_CONFIG_FILE="+cli, "CHECKPOINT_DISABLE=1", "TF_IN_AUTOMATION=1",
		"TF_INPUT=0", "TF_PLUGIN_CACHE_DIR="+plugins, "TF_PLUGIN_CACHE_MAY_BREAK_DEPENDENCY_LOCK_FILE=true",
		"TF_DATA_DIR="+filepath.Join(root, "tfdata"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	terraform := func(args ...string) error {
		cmd := exec.CommandContext(ctx, "terraform", args...)
		cmd.Dir, cmd.Env = work, env
		start := time.Now()
		out, err := cmd.CombinedOutput()
		t.Logf("terraform %s: %v (%s)", strings.Join(args, " "), err, time.Since(start).Round(time.Millisecond))
		if err != nil {
			return fmt.Errorf("terraform %s in a copy of packaging/%s: %w\n%s", strings.Join(args, " "), example, err, out)
		}
		return nil
	}
	if err := terraform("init", "-backend=false", "-input=false", "-no-color", "-plugin-dir="+plugins); err != nil {
		t.Fatal(err)
	}
	if err := terraform("validate", "-no-color"); err != nil {
		t.Error(err)
	}
	if err := terraform("fmt", "-check", "-diff", "-no-color"); err != nil {
		t.Error(err)
	}
}

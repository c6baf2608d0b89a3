package deptest

import "testing"

func TestAllowedPath(t *testing.T) {
	allowed := []string{"golang.org/x/sys/unix", "github.com/prometheus/client_golang/"}
	for p, want := range map[string]bool{
		"golang.org/x/sys/unix":                               true,
		"golang.org/x/sys/unix/extra":                         false,
		"github.com/prometheus/client_golang/prometheus":      true,
		"github.com/prometheus/client_golang_fork/prometheus": false,
		"github.com/aws/aws-sdk-go-v2/service/ec2":            false,
		"github.com/hanat/hanat/cloud":                        false,
	} {
		if got := allowedPath(p, allowed); got != want {
			t.Errorf("allowedPath(%q) = %v, want %v", p, got, want)
		}
	}
}

// The package itself imports only the standard library.
func TestSelf(t *testing.T) { Allow(t) }

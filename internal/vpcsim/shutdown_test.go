package vpcsim

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestListeningUnixSockets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// A connected (not listening) socket is not reported.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := listeningUnixSockets(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, path) {
		t.Errorf("listeningUnixSockets = %v, want %s among them", got, path)
	}
	if _, err := listeningUnixSockets(-1); err == nil {
		t.Error("pid -1: no error")
	}
}

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
	// Bound under a temporary name and renamed into place (as hanatd's
	// admin socket is): found under its new name.
	tmp := filepath.Join(filepath.Dir(path), ".other.sock.1")
	ln2, err := net.Listen("unix", tmp)
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	moved := filepath.Join(filepath.Dir(path), "moved.sock")
	if err := os.Rename(tmp, moved); err != nil {
		t.Fatal(err)
	}
	got, err = listeningUnixSockets(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(got, moved) || slices.Contains(got, tmp) {
		t.Errorf("listeningUnixSockets = %v, want %s (renamed from %s)", got, moved, tmp)
	}
	if _, err := listeningUnixSockets(-1); err == nil {
		t.Error("pid -1: no error")
	}
}

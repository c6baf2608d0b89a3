// Package netns creates and enters named network namespaces for hanat's
// tests, benchmarks and the lab. It is the one place that switches a thread
// between namespaces, so the locking rules live here only.
package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

// MaxNameLen is the longest namespace name we create; interface names built
// from it must still fit IFNAMSIZ-1 (15) when a short suffix is added.
const MaxNameLen = 32

// NS is a named network namespace under /run/netns.
type NS struct {
	Name string

	mu     sync.RWMutex // guards handle: Close may race with a late Do
	handle vnetns.NsHandle
}

// UniqueName returns prefix followed by a random hex suffix, e.g. "hnt-3fa9c1".
func UniqueName(prefix string) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// Create makes a new named namespace with its loopback up. The calling
// goroutine's namespace is unchanged when Create returns.
func Create(name string) (*NS, error) {
	if name == "" || len(name) > MaxNameLen || strings.ContainsAny(name, "/ ") {
		return nil, fmt.Errorf("netns.Create(%q): invalid name", name)
	}
	runtime.LockOSThread()
	orig, err := vnetns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("netns.Create(%q): get current namespace: %w", name, err)
	}
	defer orig.Close()
	h, err := vnetns.NewNamed(name)
	if err != nil {
		// NewNamed may or may not have switched; try to go back.
		if serr := vnetns.Set(orig); serr != nil {
			// Leave the thread locked: the runtime kills it when the goroutine exits.
			return nil, fmt.Errorf("netns.Create(%q): %w (and restoring namespace: %v)", name, err, serr)
		}
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("netns.Create(%q): %w", name, err)
	}
	if serr := vnetns.Set(orig); serr != nil {
		h.Close()
		return nil, fmt.Errorf("netns.Create(%q): restore namespace: %w", name, serr)
	}
	runtime.UnlockOSThread()
	ns := &NS{Name: name, handle: h}
	if err := ns.Do(func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	}); err != nil {
		_ = ns.Close()
		return nil, fmt.Errorf("netns.Create(%q): loopback up: %w", name, err)
	}
	return ns, nil
}

// Open returns an existing named namespace.
func Open(name string) (*NS, error) {
	h, err := vnetns.GetFromName(name)
	if err != nil {
		return nil, fmt.Errorf("netns.Open(%q): %w", name, err)
	}
	return &NS{Name: name, handle: h}, nil
}

// Handle is the namespace's file descriptor, for netlink.NewHandleAt and
// nftables.Conn{NetNS: int(h)}.
func (n *NS) Handle() vnetns.NsHandle {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.handle
}

// FD is the namespace's file descriptor as an int.
func (n *NS) FD() int { return int(n.Handle()) }

// Do runs fn on a locked OS thread inside the namespace and switches back.
// If switching back fails the thread stays locked, so the Go runtime
// terminates it instead of reusing a thread in the wrong namespace.
func (n *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: get current namespace: %w", n.Name, err)
			return
		}
		defer orig.Close()
		n.mu.RLock()
		err = vnetns.Set(n.handle)
		n.mu.RUnlock()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("netns %s: enter: %w", n.Name, err)
			return
		}
		ferr := fn()
		if err := vnetns.Set(orig); err != nil {
			// Thread stays locked and dies with this goroutine.
			errc <- errors.Join(ferr, fmt.Errorf("netns %s: leave: %w", n.Name, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Command returns a command that runs inside the namespace via `ip netns exec`.
func (n *NS) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	full := append([]string{"netns", "exec", n.Name, name}, args...)
	return exec.CommandContext(ctx, "ip", full...)
}

// Run runs a command in the namespace and returns its combined output; the
// error names the command and carries the output.
func (n *NS) Run(ctx context.Context, name string, args ...string) (string, error) {
	out, err := n.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("netns %s: %s %s: %w: %s", n.Name, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Close deletes the namespace. Processes still inside keep it alive until
// they exit, but its name is gone.
func (n *NS) Close() error {
	n.mu.Lock()
	if n.handle >= 0 {
		n.handle.Close()
		n.handle = -1
	}
	n.mu.Unlock()
	if err := vnetns.DeleteNamed(n.Name); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netns.Close(%q): %w", n.Name, err)
	}
	return nil
}

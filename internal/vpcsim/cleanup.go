package vpcsim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
)

// netnsDir is where `ip netns` keeps named namespaces.
const netnsDir = "/run/netns"

// Namespaces lists the named namespaces of the lab prefix ("<prefix>-…").
func Namespaces(prefix string) ([]string, error) {
	if err := ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", netnsDir, err)
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix+"-") {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// Cleanup removes everything of the lab prefix: it kills every process
// inside the prefix's namespaces, deletes the namespaces (and with them
// their links and nftables tables), and deletes any link named
// "<prefix>-…" left in the calling namespace by an interrupted creation.
// It is what `hanat-lab down` and Up (for leftovers of a crash) run.
func Cleanup(prefix string) error {
	names, err := Namespaces(prefix)
	if err != nil {
		return fmt.Errorf("vpcsim.Cleanup(%q): %w", prefix, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var errs []error
	for _, n := range names {
		if err := killNSProcesses(ctx, n); err != nil {
			errs = append(errs, err)
		}
	}
	for _, n := range names {
		if err := vnetns.DeleteNamed(n); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("delete namespace %s: %w", n, err))
		}
	}
	links, err := netlink.LinkList()
	if err != nil {
		errs = append(errs, fmt.Errorf("list links: %w", err))
	}
	for _, link := range links {
		if strings.HasPrefix(link.Attrs().Name, prefix+"-") {
			if err := netlink.LinkDel(link); err != nil {
				errs = append(errs, fmt.Errorf("delete link %s: %w", link.Attrs().Name, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("vpcsim.Cleanup(%q): %w", prefix, err)
	}
	return nil
}

// nsInode returns the inode of a namespace file.
func nsInode(path string) (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// NSProcesses returns the pids of processes whose network namespace is
// the named namespace (other than the caller).
func NSProcesses(name string) ([]int, error) {
	ino, err := nsInode(filepath.Join(netnsDir, name))
	if err != nil {
		return nil, fmt.Errorf("namespace %s: %w", name, err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list /proc: %w", err)
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		pi, err := nsInode(filepath.Join("/proc", e.Name(), "ns", "net"))
		if err == nil && pi == ino {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// killNSProcesses SIGKILLs every process in the named namespace and waits
// (bounded) until none is left.
func killNSProcesses(ctx context.Context, name string) error {
	for range 50 {
		pids, err := NSProcesses(name)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kill processes in %s: %w", name, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("kill processes in %s: still running after 50 rounds", name)
}

package fastpath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"unsafe"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Whether a veth peer has GRO on, which gives it NAPI and so lets it take
// XDP frames. rtnetlink does not carry device features and a veth peer is
// usually in another namespace, named only by its netns id: the peer's
// namespace is found among the named ones (/run/netns) and the processes'
// (/proc/PID/ns/net), and the legacy ethtool ioctl asks it there.

// maxNetnsCandidates bounds the namespaces tried.
const maxNetnsCandidates = 4096

// ethtoolGGRO is ETHTOOL_GGRO (include/uapi/linux/ethtool.h).
const ethtoolGGRO = 0x0000002b

// peerGRO reports whether the interface name has GRO on in the namespace
// with id nsid as seen from the calling thread's namespace (-1: that
// namespace itself).
func peerGRO(nsid int, name string) (bool, error) {
	if nsid < 0 {
		return ethtoolGRO(name)
	}
	fd, err := netnsByID(nsid)
	if err != nil {
		return false, err
	}
	defer unix.Close(fd)
	type result struct {
		on  bool
		err error
	}
	done := make(chan result, 1)
	// On a goroutine of its own: should restoring its thread's namespace
	// fail, the thread stays locked and dies with the goroutine.
	go func() {
		runtime.LockOSThread()
		orig, err := vnetns.Get()
		if err != nil {
			done <- result{err: fmt.Errorf("current netns: %w", err)}
			return
		}
		defer orig.Close()
		if err := vnetns.Set(vnetns.NsHandle(fd)); err != nil {
			done <- result{err: fmt.Errorf("enter netns id %d: %w", nsid, err)}
			return
		}
		on, gerr := ethtoolGRO(name)
		if err := vnetns.Set(orig); err != nil {
			done <- result{err: errors.Join(gerr, fmt.Errorf("return from netns id %d: %w", nsid, err))}
			return
		}
		runtime.UnlockOSThread()
		done <- result{on, gerr}
	}()
	r := <-done
	return r.on, r.err
}

// netnsByID opens the network namespace whose id (in the calling thread's
// namespace) is nsid.
func netnsByID(nsid int) (int, error) {
	named, _ := filepath.Glob("/run/netns/*")
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/net")
	seen := map[[2]uint64]bool{}
	for i, path := range append(named, procs...) {
		if i >= maxNetnsCandidates {
			break
		}
		var st unix.Stat_t
		if unix.Stat(path, &st) != nil || seen[[2]uint64{st.Dev, st.Ino}] {
			continue
		}
		seen[[2]uint64{st.Dev, st.Ino}] = true
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		if id, err := netlink.GetNetNsIdByFd(fd); err == nil && id == nsid {
			return fd, nil
		}
		unix.Close(fd)
	}
	return -1, fmt.Errorf("netns id %d: not among /run/netns and the processes' namespaces: %w", nsid, os.ErrNotExist)
}

// ethtoolGRO asks the calling thread's namespace whether name has GRO on.
func ethtoolGRO(name string) (bool, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("socket for ethtool: %w", err)
	}
	defer unix.Close(fd)
	val := &struct{ cmd, data uint32 }{cmd: ethtoolGGRO}
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer
		_    [16]byte
	}
	copy(ifr.name[:unix.IFNAMSIZ-1], name)
	ifr.data = unsafe.Pointer(val)
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		return false, fmt.Errorf("ethtool GRO of %s: %w", name, errno)
	}
	runtime.KeepAlive(val)
	return val.data != 0, nil
}

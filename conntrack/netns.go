package conntrack

import (
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// NetNS names the network namespace whose conntrack table a socket reads.
// The zero value is the caller's current namespace (hanatd's); NetNSFD
// names another one by an open namespace fd (a lab's or a benchmark's).
// Every socket of the package is dialled through it, so the one rule of
// the netlink library (a NetNS of 0 means "current") is checked once.
type NetNS struct {
	fd  int
	set bool
}

// NetNSFD names the namespace an open fd refers to. The fd must stay open
// while sockets are dialled with it (Open keeps a duplicate of its own).
func NetNSFD(fd int) NetNS { return NetNS{fd: fd, set: true} }

// errNetNSFD0 refuses fd 0 (and negative fds) as a namespace: the netlink
// library reads NetNS 0 as the current namespace, so a socket would read
// the wrong table.
var errNetNSFD0 = errors.New("not usable as a namespace fd (the netlink library reads NetNS 0 as the current namespace; use the zero NetNS for that)")

// String is "current netns" or "netns fd 7", for errors and logs.
func (n NetNS) String() string {
	if !n.set {
		return "current netns"
	}
	return fmt.Sprintf("netns fd %d", n.fd)
}

// config is the netlink configuration that dials in n.
func (n NetNS) config() (*netlink.Config, error) {
	if !n.set {
		return &netlink.Config{}, nil
	}
	if n.fd <= 0 {
		return nil, fmt.Errorf("%s: %w", n, errNetNSFD0)
	}
	return &netlink.Config{NetNS: n.fd}, nil
}

// dialNetfilter opens a NETLINK_NETFILTER socket in n.
func (n NetNS) dialNetfilter() (*netlink.Conn, error) {
	cfg, err := n.config()
	if err != nil {
		return nil, err
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return nil, fmt.Errorf("netlink.Dial(NETLINK_NETFILTER, %s): %w", n, err)
	}
	return c, nil
}

// dup returns a NetNS on a duplicate of n's fd that the caller owns (the
// current namespace needs none) and a function closing it.
func (n NetNS) dup() (NetNS, func() error, error) {
	if _, err := n.config(); err != nil {
		return NetNS{}, nil, err
	}
	if !n.set {
		return n, func() error { return nil }, nil
	}
	fd, err := unix.FcntlInt(uintptr(n.fd), unix.F_DUPFD_CLOEXEC, 3)
	if err != nil {
		return NetNS{}, nil, fmt.Errorf("%s: dup namespace fd: %w", n, err)
	}
	return NetNSFD(fd), func() error { return unix.Close(fd) }, nil
}

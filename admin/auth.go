package admin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// PeerCred is who is on the other end of an admin connection: the kernel's
// SO_PEERCRED answer (taken when the peer connected) plus the peer's
// supplementary groups read from /proc at accept time.
type PeerCred struct {
	PID int32
	UID uint32
	GID uint32
	// Groups are the supplementary groups; nil when they could not be read
	// (then only UID and GID count).
	Groups []uint32
}

// authorize decides whether a peer may make a request. Reads are allowed
// for any peer that could connect (the socket's mode restricts who can);
// writes need uid 0 or membership of the admin group (primary or
// supplementary). groupGID < 0 means the group does not exist: root only.
func authorize(cred PeerCred, groupGID int, write bool) bool {
	if !write {
		return true
	}
	if cred.UID == 0 {
		return true
	}
	if groupGID < 0 {
		return false
	}
	gid := uint32(groupGID)
	return cred.GID == gid || slices.Contains(cred.Groups, gid)
}

// peerCredOf asks the kernel who connected on c (SO_PEERCRED) and adds the
// peer's supplementary groups from procDir (normally /proc).
func peerCredOf(c net.Conn, procDir string) (PeerCred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return PeerCred{}, fmt.Errorf("peer credentials: %T is not a unix connection", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return PeerCred{}, fmt.Errorf("peer credentials: %w", err)
	}
	var ucred *unix.Ucred
	var sockErr error
	if err := raw.Control(func(fd uintptr) {
		ucred, sockErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return PeerCred{}, fmt.Errorf("peer credentials: %w", err)
	}
	if sockErr != nil {
		return PeerCred{}, fmt.Errorf("getsockopt SO_PEERCRED: %w", sockErr)
	}
	cred := PeerCred{PID: ucred.Pid, UID: ucred.Uid, GID: ucred.Gid}
	if cred.UID != 0 && cred.PID > 0 {
		// Root needs no group lookup; everyone else may be a member
		// through a supplementary group. An error leaves Groups nil:
		// the peer is then judged on its uid and primary gid only.
		cred.Groups, _ = supplementaryGroups(procDir, cred.PID, cred.UID)
	}
	return cred, nil
}

// supplementaryGroups reads the "Groups:" line of procDir/<pid>/status. It
// refuses to answer when the process's effective uid there differs from
// uid (the pid was reused, or the process changed identity since it
// connected), so a reused pid cannot lend its groups to a peer.
func supplementaryGroups(procDir string, pid int32, uid uint32) ([]uint32, error) {
	path := filepath.Join(procDir, strconv.Itoa(int(pid)), "status")
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("supplementary groups of pid %d: %w", pid, err)
	}
	defer f.Close()
	st, err := parseProcStatus(f)
	if err != nil {
		return nil, fmt.Errorf("supplementary groups of pid %d: %s: %w", pid, path, err)
	}
	if st.euid != uid {
		return nil, fmt.Errorf("supplementary groups of pid %d: effective uid is %d now, %d when it connected", pid, st.euid, uid)
	}
	return st.groups, nil
}

type procStatus struct {
	euid   uint32
	groups []uint32
}

var errNoUID = errors.New(`no "Uid:" line`)

// parseProcStatus extracts the effective uid and the supplementary groups
// from the text of /proc/<pid>/status.
func parseProcStatus(r io.Reader) (procStatus, error) {
	var st procStatus
	haveUID := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		switch key {
		case "Uid":
			// real, effective, saved set, filesystem
			f := strings.Fields(val)
			if len(f) < 2 {
				return procStatus{}, fmt.Errorf("Uid line %q: want 4 fields", val)
			}
			n, err := strconv.ParseUint(f[1], 10, 32)
			if err != nil {
				return procStatus{}, fmt.Errorf("Uid line %q: %w", val, err)
			}
			st.euid, haveUID = uint32(n), true
		case "Groups":
			for _, g := range strings.Fields(val) {
				n, err := strconv.ParseUint(g, 10, 32)
				if err != nil {
					return procStatus{}, fmt.Errorf("Groups line %q: %w", val, err)
				}
				st.groups = append(st.groups, uint32(n))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return procStatus{}, err
	}
	if !haveUID {
		return procStatus{}, errNoUID
	}
	return st, nil
}

type peerCredKey struct{}

// peerInfo is stored in each connection's context by the server.
type peerInfo struct {
	cred PeerCred
	err  error // why cred is unknown
}

// withPeerCred returns ctx carrying cred as the connection's peer. The
// server does this for every accepted connection; tests use it to inject
// a peer.
func withPeerCred(ctx context.Context, cred PeerCred) context.Context {
	return context.WithValue(ctx, peerCredKey{}, peerInfo{cred: cred})
}

func withPeerCredError(ctx context.Context, err error) context.Context {
	return context.WithValue(ctx, peerCredKey{}, peerInfo{err: err})
}

// peerCredFrom returns the peer of the request's connection, or an error
// when it is unknown (then writes are refused).
func peerCredFrom(ctx context.Context) (PeerCred, error) {
	pi, ok := ctx.Value(peerCredKey{}).(peerInfo)
	if !ok {
		return PeerCred{}, errors.New("no peer credentials on this connection")
	}
	if pi.err != nil {
		return PeerCred{}, pi.err
	}
	return pi.cred, nil
}

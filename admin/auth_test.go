package admin

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestAuthorize(t *testing.T) {
	const hanat = 990
	tests := []struct {
		name     string
		cred     PeerCred
		groupGID int
		write    bool
		want     bool
	}{
		{"read by anyone", PeerCred{UID: 1000, GID: 1000}, hanat, false, true},
		{"read without group", PeerCred{UID: 1000, GID: 1000}, -1, false, true},
		{"write by root", PeerCred{UID: 0, GID: 0}, hanat, true, true},
		{"write by root, no group", PeerCred{UID: 0, GID: 0}, -1, true, true},
		{"write by root with other gid", PeerCred{UID: 0, GID: 1000}, hanat, true, true},
		{"write by primary member", PeerCred{UID: 1000, GID: hanat}, hanat, true, true},
		{"write by supplementary member", PeerCred{UID: 1000, GID: 1000, Groups: []uint32{4, hanat, 27}}, hanat, true, true},
		{"write by non-member", PeerCred{UID: 1000, GID: 1000, Groups: []uint32{4, 27}}, hanat, true, false},
		{"write by nobody", PeerCred{UID: 65534, GID: 65534}, hanat, true, false},
		{"write when group missing", PeerCred{UID: 1000, GID: hanat, Groups: []uint32{hanat}}, -1, true, false},
		{"gid 0 is not uid 0", PeerCred{UID: 1000, GID: 0}, -1, true, false},
		{"member of group root", PeerCred{UID: 1000, GID: 1000, Groups: []uint32{0}}, 0, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := authorize(tt.cred, tt.groupGID, tt.write); got != tt.want {
				t.Errorf("authorize(%+v, %d, write=%v) = %v, want %v", tt.cred, tt.groupGID, tt.write, got, tt.want)
			}
		})
	}
}

const statusText = `Name:	bash
Umask:	0022
State:	S (sleeping)
Tgid:	4242
Pid:	4242
PPid:	1
Uid:	1000	1001	1000	1000
Gid:	1000	1000	1000	1000
FDSize:	256
Groups:	4 24 27 990 
NStgid:	4242
`

func TestParseProcStatus(t *testing.T) {
	st, err := parseProcStatus(strings.NewReader(statusText))
	if err != nil {
		t.Fatal(err)
	}
	if st.euid != 1001 {
		t.Errorf("euid = %d, want 1001 (the second Uid field)", st.euid)
	}
	if want := []uint32{4, 24, 27, 990}; !slices.Equal(st.groups, want) {
		t.Errorf("groups = %v, want %v", st.groups, want)
	}

	st, err = parseProcStatus(strings.NewReader("Uid:\t0\t0\t0\t0\nGroups:\t\n"))
	if err != nil || st.euid != 0 || len(st.groups) != 0 {
		t.Errorf("no groups: %+v, %v", st, err)
	}
	for _, bad := range []string{
		"Name: x\n",                        // no Uid
		"Uid:\t1000\n",                     // short Uid
		"Uid:\tx\ty\tz\tw\n",               // not numbers
		"Uid:\t1\t1\t1\t1\nGroups:\t4 x\n", // bad group
		"Uid:\t1\t99999999999\t1\t1\n",     // out of range
	} {
		if _, err := parseProcStatus(strings.NewReader(bad)); err == nil {
			t.Errorf("parseProcStatus(%q): no error", bad)
		}
	}
}

func TestSupplementaryGroups(t *testing.T) {
	proc := t.TempDir()
	if err := os.MkdirAll(filepath.Join(proc, "4242"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(proc, "4242", "status"), []byte(statusText), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := supplementaryGroups(proc, 4242, 1001)
	if err != nil || !slices.Equal(got, []uint32{4, 24, 27, 990}) {
		t.Errorf("supplementaryGroups = %v, %v", got, err)
	}
	// The pid now belongs to someone else: no groups.
	if got, err := supplementaryGroups(proc, 4242, 1000); err == nil {
		t.Errorf("uid mismatch: got %v, want an error", got)
	}
	if _, err := supplementaryGroups(proc, 4243, 1001); err == nil {
		t.Error("missing pid: want an error")
	}
}

// TestPeerCredOf reads our own credentials back through a socketpair.
func TestPeerCredOf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	cred, err := peerCredOf(sc, "/proc")
	if err != nil {
		t.Fatal(err)
	}
	if int(cred.PID) != os.Getpid() || int(cred.UID) != os.Geteuid() || int(cred.GID) != os.Getegid() {
		t.Errorf("cred = %+v, want pid %d uid %d gid %d", cred, os.Getpid(), os.Geteuid(), os.Getegid())
	}
	if os.Geteuid() != 0 {
		groups, _ := os.Getgroups()
		for _, g := range groups {
			if !slices.Contains(cred.Groups, uint32(g)) {
				t.Errorf("supplementary groups %v lack %d (os.Getgroups %v)", cred.Groups, g, groups)
			}
		}
	}
	if _, err := peerCredOf(&net.TCPConn{}, "/proc"); err == nil {
		t.Error("peerCredOf(TCP conn): want an error")
	}
}

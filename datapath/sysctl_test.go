package datapath

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDesiredSysctls(t *testing.T) {
	const GiB = 1 << 30
	tests := []struct {
		name   string
		s      SysctlSettings
		mem    uint64
		iface  string
		want   map[string]string
		absent []string
	}{
		{
			name:  "defaults, 2 GiB, eth0",
			mem:   2 * GiB,
			iface: "eth0",
			want: map[string]string{
				"net.ipv4.ip_forward":                                "1",
				"net.ipv4.conf.all.send_redirects":                   "0",
				"net.ipv4.conf.default.send_redirects":               "0",
				"net.ipv4.conf.eth0.send_redirects":                  "0",
				"net.ipv4.conf.all.rp_filter":                        "2",
				"net.ipv4.conf.eth0.rp_filter":                       "2",
				"net.netfilter.nf_conntrack_max":                     "131072",
				"net.netfilter.nf_conntrack_tcp_timeout_established": "350",
				"net.netfilter.nf_conntrack_udp_timeout":             "30",
				"net.netfilter.nf_conntrack_udp_timeout_stream":      "120",
				"net.netfilter.nf_conntrack_acct":                    "1",
				// No mid-stream pickup (reset_no_flow answers such a
				// segment), and no window check that would make a live
				// flow's segment invalid and reset it.
				"net.netfilter.nf_conntrack_tcp_loose":      "0",
				"net.netfilter.nf_conntrack_tcp_be_liberal": "1",
			},
			absent: []string{"net.netfilter.nf_conntrack_events"},
		},
		{
			name:  "fast path on: every entry reports its events",
			s:     SysctlSettings{FastPath: true},
			mem:   2 * GiB,
			iface: "eth0",
			want: map[string]string{
				"net.netfilter.nf_conntrack_tcp_be_liberal": "1",
				"net.netfilter.nf_conntrack_events":         "1",
				"net.netfilter.nf_conntrack_acct":           "1",
				"net.netfilter.nf_conntrack_tcp_loose":      "0",
			},
		},
		{
			name:   "small instance gets the floor, no iface",
			mem:    512 << 20,
			want:   map[string]string{"net.netfilter.nf_conntrack_max": "65536"},
			absent: []string{"net.ipv4.conf..send_redirects", "net.ipv4.conf..rp_filter"},
		},
		{
			name: "huge instance is capped",
			mem:  1024 * GiB,
			want: map[string]string{"net.netfilter.nf_conntrack_max": "4194304"},
		},
		{
			name: "unknown memory gets the floor",
			want: map[string]string{"net.netfilter.nf_conntrack_max": "65536"},
		},
		{
			name: "explicit settings win",
			s: SysctlSettings{
				ConntrackMax:          1000,
				TCPEstablishedTimeout: 2 * time.Hour,
				UDPTimeout:            10 * time.Second,
				UDPStreamTimeout:      1500 * time.Millisecond,
			},
			mem:   64 * GiB,
			iface: "ens5.100",
			want: map[string]string{
				"net.netfilter.nf_conntrack_max":                     "1000",
				"net.netfilter.nf_conntrack_tcp_timeout_established": "7200",
				"net.netfilter.nf_conntrack_udp_timeout":             "10",
				"net.netfilter.nf_conntrack_udp_timeout_stream":      "2", // rounded up
				"net.ipv4.conf.ens5.100.rp_filter":                   "2",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DesiredSysctls(tt.s, tt.mem, tt.iface)
			m := make(map[string]string)
			for _, s := range got {
				if _, dup := m[s.Key]; dup {
					t.Errorf("key %s listed twice", s.Key)
				}
				m[s.Key] = s.Value
			}
			if got[0] != (Sysctl{"net.ipv4.ip_forward", "1"}) {
				t.Errorf("first sysctl = %v, want ip_forward=1", got[0])
			}
			for k, v := range tt.want {
				if m[k] != v {
					t.Errorf("%s = %q, want %q", k, m[k], v)
				}
			}
			for _, k := range tt.absent {
				if _, ok := m[k]; ok {
					t.Errorf("%s present, want absent", k)
				}
			}
			if tt.iface == "" {
				for k := range m {
					if strings.Count(k, ".") > 4 || strings.Contains(k, "..") {
						t.Errorf("per-interface key %s without an interface", k)
					}
				}
			}
		})
	}
}

func TestSysctlPath(t *testing.T) {
	for key, want := range map[string]string{
		"net.ipv4.ip_forward":                   "/p/net/ipv4/ip_forward",
		"net.ipv4.conf.eth0.rp_filter":          "/p/net/ipv4/conf/eth0/rp_filter",
		"net.ipv4.conf.ens5.100.send_redirects": "/p/net/ipv4/conf/ens5.100/send_redirects",
		"net.netfilter.nf_conntrack_max":        "/p/net/netfilter/nf_conntrack_max",
	} {
		got, err := SysctlPath("/p", key)
		if err != nil || got != want {
			t.Errorf("SysctlPath(%q) = %q, %v; want %q", key, got, err, want)
		}
	}
	for _, bad := range []string{"", "net/ipv4", "net..x", ".net", "net.", "net.ipv4.conf.rp_filter"} {
		if got, err := SysctlPath("/p", bad); err == nil {
			t.Errorf("SysctlPath(%q) = %q, want error", bad, got)
		}
	}
}

// fakeProc builds a ProcRoot with the given files.
func fakeProc(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for key, v := range files {
		p, err := SysctlPath(root, key)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func readFake(t *testing.T, root, key string) string {
	t.Helper()
	p, _ := SysctlPath(root, key)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestSysctlsApplyRestore(t *testing.T) {
	ctx := context.Background()
	root := fakeProc(t, map[string]string{
		"net.ipv4.ip_forward":              "0",
		"net.ipv4.conf.all.rp_filter":      "1",
		"net.ipv4.conf.all.send_redirects": "0",
		"net.netfilter.nf_conntrack_max":   "262144",
	})
	// nf_conntrack_max is read-only, as in a non-initial namespace.
	ro, _ := SysctlPath(root, "net.netfilter.nf_conntrack_max")
	if err := os.Chmod(ro, 0o444); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(t.TempDir(), "state", "sysctl.json")
	s := &Sysctls{ProcRoot: root, StatePath: state}
	want := []Sysctl{
		{"net.ipv4.ip_forward", "1"},
		{"net.ipv4.conf.all.rp_filter", "2"},
		{"net.ipv4.conf.all.send_redirects", "0"},
		{"net.netfilter.nf_conntrack_max", "65536"},
		{"net.netfilter.nf_conntrack_acct", "1"}, // absent: module not loaded
	}
	res, err := s.Apply(ctx, want)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	byKey := make(map[string]SysctlResult)
	for _, r := range res {
		byKey[r.Key] = r
	}
	check := func(key string, applied bool, old, now, note string) {
		t.Helper()
		r := byKey[key]
		if r.Applied != applied || r.Old != old || r.Now != now || (note != "" && r.Note != note) {
			t.Errorf("%s = %+v, want applied %t old %q now %q note %q", key, r, applied, old, now, note)
		}
	}
	check("net.ipv4.ip_forward", true, "0", "1", "")
	check("net.ipv4.conf.all.rp_filter", true, "1", "2", "")
	check("net.ipv4.conf.all.send_redirects", true, "0", "0", NoteUnchanged)
	if os.Geteuid() != 0 { // root ignores file modes on a plain file
		check("net.netfilter.nf_conntrack_max", false, "262144", "262144", NoteReadOnly)
	}
	check("net.netfilter.nf_conntrack_acct", false, "", "", NoteAbsent)
	if got := readFake(t, root, "net.ipv4.ip_forward"); got != "1" {
		t.Errorf("ip_forward file = %q, want 1", got)
	}

	// Someone (or an older hanat run) changes ip_forward again; a second
	// Apply must not record that value as the original.
	if err := os.WriteFile(filepath.Join(root, "net/ipv4/ip_forward"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, want); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatalf("state file: %v", err)
	}
	var st sysctlState
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("state %s: %v", b, err)
	}
	wantOrig := map[string]string{
		"net.ipv4.ip_forward":         "0",
		"net.ipv4.conf.all.rp_filter": "1",
	}
	if os.Geteuid() != 0 {
		wantOrig["net.netfilter.nf_conntrack_max"] = "262144"
	} else {
		delete(st.Original, "net.netfilter.nf_conntrack_max")
	}
	if !reflect.DeepEqual(st.Original, wantOrig) {
		t.Errorf("recorded originals = %v, want %v", st.Original, wantOrig)
	}

	// Change rp_filter on a restart with a different first value: the
	// recorded original "1" must win.
	if err := os.WriteFile(filepath.Join(root, "net/ipv4/conf/all/rp_filter"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, want); err != nil {
		t.Fatal(err)
	}

	res, err = s.Restore(ctx)
	if err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if len(res) == 0 {
		t.Errorf("Restore reported nothing")
	}
	if got := readFake(t, root, "net.ipv4.ip_forward"); got != "0" {
		t.Errorf("after Restore ip_forward = %q, want 0", got)
	}
	if got := readFake(t, root, "net.ipv4.conf.all.rp_filter"); got != "1" {
		t.Errorf("after Restore rp_filter = %q, want the first original 1", got)
	}
	if got := readFake(t, root, "net.ipv4.conf.all.send_redirects"); got != "0" {
		t.Errorf("after Restore send_redirects = %q, want untouched 0", got)
	}
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("state file still present after Restore: %v", err)
	}
	// Restore without state is a no-op.
	if res, err := s.Restore(ctx); err != nil || len(res) != 0 {
		t.Errorf("second Restore = %v, %v; want nothing", res, err)
	}
}

func TestSysctlsBadState(t *testing.T) {
	root := fakeProc(t, map[string]string{"net.ipv4.ip_forward": "0"})
	state := filepath.Join(t.TempDir(), "sysctl.json")
	if err := os.WriteFile(state, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Sysctls{ProcRoot: root, StatePath: state}
	if _, err := s.Apply(context.Background(), []Sysctl{{"net.ipv4.ip_forward", "1"}}); err == nil || !strings.Contains(err.Error(), state) {
		t.Errorf("Apply with corrupt state = %v, want error naming %s", err, state)
	}
	if got := readFake(t, root, "net.ipv4.ip_forward"); got != "0" {
		t.Errorf("ip_forward changed to %q although the original could not be recorded", got)
	}
	if _, err := s.Restore(context.Background()); err == nil {
		t.Errorf("Restore with corrupt state: nil error")
	}
}

func TestSysctlsCanceled(t *testing.T) {
	root := fakeProc(t, map[string]string{"net.ipv4.ip_forward": "0"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	s := &Sysctls{ProcRoot: root}
	if _, err := s.Apply(ctx, []Sysctl{{"net.ipv4.ip_forward", "1"}}); err == nil {
		t.Errorf("Apply with canceled context: nil error")
	}
}

func TestConntrackMaxForMemory(t *testing.T) {
	for mem, want := range map[uint64]int{
		0:        ConntrackMaxFloor,
		1 << 30:  ConntrackMaxFloor,
		4 << 30:  262144,
		64 << 30: ConntrackMaxCeiling,
	} {
		if got := ConntrackMaxForMemory(mem); got != want {
			t.Errorf("ConntrackMaxForMemory(%d) = %d, want %d", mem, got, want)
		}
	}
}

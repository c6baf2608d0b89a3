package datapath

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// SysctlSettings are the tunable sysctls; zero values mean the defaults.
type SysctlSettings struct {
	// ConntrackMax is nf_conntrack_max; 0 sizes it for the instance's
	// memory (ConntrackMaxForMemory).
	ConntrackMax int
	// TCPEstablishedTimeout is nf_conntrack_tcp_timeout_established;
	// default 350 s, the NAT gateway's idle timeout.
	TCPEstablishedTimeout time.Duration
	// UDPTimeout is nf_conntrack_udp_timeout (UDP seen in one direction
	// only, e.g. a DNS query); default 30 s, the kernel's.
	UDPTimeout time.Duration
	// UDPStreamTimeout is nf_conntrack_udp_timeout_stream (UDP seen both
	// ways); default 120 s, the kernel's and config's default.
	UDPStreamTimeout time.Duration
	// FastPath is set when the XDP fast path forwards established flows:
	// nf_conntrack_events=1 makes every entry report its events; with the
	// default (2) entries created while no one listens (hanatd
	// restarting) never report their FIN or DESTROY. Leaving the fast
	// path off later keeps the key as it is (harmless); --cleanup
	// restores it.
	FastPath bool
}

// Defaults for SysctlSettings.
const (
	DefaultTCPEstablishedTimeout = 350 * time.Second
	DefaultUDPTimeout            = 30 * time.Second
	DefaultUDPStreamTimeout      = 120 * time.Second

	ConntrackMaxFloor    = 65536
	ConntrackMaxCeiling  = 4 << 20 // 4194304
	conntrackBytesPerMax = 16 << 10
)

// Sysctl is one key and the value hanat wants for it. Key is dotted, as in
// sysctl(8); an interface name in net.ipv4.conf.<iface>.<param> may itself
// contain dots.
type Sysctl struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// SysctlResult reports what happened to one key.
type SysctlResult struct {
	Key     string `json:"key"`
	Want    string `json:"want"`
	Old     string `json:"old,omitempty"` // value found before; "" if unreadable
	Now     string `json:"now,omitempty"` // value after; "" if unreadable
	Applied bool   `json:"applied"`       // Now == Want
	Note    string `json:"note,omitempty"`
}

// Notes on keys that could not be set and are not failures.
const (
	NoteReadOnly  = "read-only in this network namespace"
	NoteAbsent    = "absent (kernel module not loaded?)"
	NoteUnchanged = "already set"
)

// ConntrackMaxForMemory sizes nf_conntrack_max: one entry per 16 KiB of
// memory, at least ConntrackMaxFloor, at most ConntrackMaxCeiling.
func ConntrackMaxForMemory(memBytes uint64) int {
	n := memBytes / conntrackBytesPerMax
	return int(min(max(n, ConntrackMaxFloor), ConntrackMaxCeiling))
}

// DesiredSysctls lists the sysctls a NAT needs, in the order they are
// applied. outsideIface "" leaves out the per-interface keys.
func DesiredSysctls(s SysctlSettings, memBytes uint64, outsideIface string) []Sysctl {
	ctMax := s.ConntrackMax
	if ctMax <= 0 {
		ctMax = ConntrackMaxForMemory(memBytes)
	}
	out := []Sysctl{
		{"net.ipv4.ip_forward", "1"},
		// A NAT routes packets back out the interface they came in on; it
		// must not tell private hosts to bypass it.
		{"net.ipv4.conf.all.send_redirects", "0"},
		{"net.ipv4.conf.default.send_redirects", "0"},
	}
	if outsideIface != "" {
		out = append(out, Sysctl{"net.ipv4.conf." + outsideIface + ".send_redirects", "0"})
	}
	// Loose reverse-path filtering: strict (1) drops replies that arrive
	// on another interface than the route back, which NAT with asymmetric
	// paths produces.
	out = append(out, Sysctl{"net.ipv4.conf.all.rp_filter", "2"})
	if outsideIface != "" {
		out = append(out, Sysctl{"net.ipv4.conf." + outsideIface + ".rp_filter", "2"})
	}
	out = append(out,
		Sysctl{"net.netfilter.nf_conntrack_max", strconv.Itoa(ctMax)},
		Sysctl{"net.netfilter.nf_conntrack_tcp_timeout_established", seconds(s.TCPEstablishedTimeout, DefaultTCPEstablishedTimeout)},
		Sysctl{"net.netfilter.nf_conntrack_udp_timeout", seconds(s.UDPTimeout, DefaultUDPTimeout)},
		Sysctl{"net.netfilter.nf_conntrack_udp_timeout_stream", seconds(s.UDPStreamTimeout, DefaultUDPStreamTimeout)},
		// Per-flow byte and packet counters, for `hanatctl flows`.
		Sysctl{"net.netfilter.nf_conntrack_acct", "1"},
		// A mid-stream TCP segment without a conntrack entry (its flow
		// timed out) is never picked up as a new flow and SNATed again,
		// maybe to another port: it stays invalid, and the forward
		// chain answers it with a RST as the NAT gateway does
		// (RuleResetNoFlow).
		Sysctl{"net.netfilter.nf_conntrack_tcp_loose", "0"},
		// No window check: a segment of a live flow that conntrack's
		// window tracking rejects would be invalid too, and reset by
		// RuleResetNoFlow. Tracking also falls behind while the XDP fast
		// path carries a flow (the kernel never sees its mid-stream
		// segments) and would then mark its closing FIN/RST invalid.
		// The end hosts check sequence numbers themselves, as they do
		// behind the NAT gateway.
		Sysctl{"net.netfilter.nf_conntrack_tcp_be_liberal", "1"},
	)
	if s.FastPath {
		out = append(out, Sysctl{"net.netfilter.nf_conntrack_events", "1"})
	}
	return out
}

// seconds renders d (or def when d <= 0) in whole seconds, rounding up so
// a sub-second timeout never becomes 0.
func seconds(d, def time.Duration) string {
	if d <= 0 {
		d = def
	}
	return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10)
}

// Sysctls applies sysctls under ProcRoot and remembers the values it
// replaced in StatePath, so Restore can put them back.
//
// /proc/sys/net reflects the network namespace of the calling thread: run
// Apply and Restore on a thread inside the namespace to change.
type Sysctls struct {
	ProcRoot  string // "/proc/sys" when empty
	StatePath string // JSON file of original values; "" records nothing
}

// sysctlState is the JSON in StatePath.
type sysctlState struct {
	Version  int               `json:"version"`
	Original map[string]string `json:"original"`
}

// Apply sets each key to its wanted value. Before changing a key it records
// the key's current value in StatePath unless the key is already recorded
// (the first recorded value is the true original, a restart must not
// overwrite it). Keys that are read-only in this namespace or absent are
// reported with Applied false and a Note, not as errors.
func (s *Sysctls) Apply(ctx context.Context, want []Sysctl) ([]SysctlResult, error) {
	results := make([]SysctlResult, len(want))
	var toChange []int
	for i, w := range want {
		if err := ctx.Err(); err != nil {
			return results[:i], fmt.Errorf("sysctl apply: %w", err)
		}
		r := SysctlResult{Key: w.Key, Want: normValue(w.Value)}
		old, err := s.read(w.Key)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			r.Note = NoteAbsent
		case err != nil:
			return results[:i], err
		case old == r.Want:
			r.Old, r.Now, r.Applied, r.Note = old, old, true, NoteUnchanged
		default:
			r.Old = old
			toChange = append(toChange, i)
		}
		results[i] = r
	}
	if len(toChange) == 0 {
		return results, nil
	}

	// Record originals before touching anything, so a crash in between
	// still lets Restore put them back.
	originals := make(map[string]string, len(toChange))
	for _, i := range toChange {
		originals[results[i].Key] = results[i].Old
	}
	if err := s.record(originals); err != nil {
		return results, err
	}

	var errs []error
	for _, i := range toChange {
		if err := ctx.Err(); err != nil {
			return results, errors.Join(append(errs, fmt.Errorf("sysctl apply: %w", err))...)
		}
		r := &results[i]
		if err := s.write(r.Key, r.Want); err != nil {
			if isReadOnly(err) {
				r.Note = NoteReadOnly
				r.Now = r.Old
				continue
			}
			errs = append(errs, err)
			continue
		}
		now, err := s.read(r.Key)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r.Now = now
		r.Applied = now == r.Want
		if !r.Applied {
			r.Note = fmt.Sprintf("kernel kept %q", now)
		}
	}
	return results, errors.Join(errs...)
}

// Restore writes back every recorded original value and removes the state
// file. Keys it could not restore stay recorded and make the error.
// Without a state file it does nothing.
func (s *Sysctls) Restore(ctx context.Context) ([]SysctlResult, error) {
	st, err := s.load()
	if err != nil {
		return nil, err
	}
	if len(st.Original) == 0 {
		return nil, s.removeState()
	}
	keys := make([]string, 0, len(st.Original))
	for k := range st.Original {
		keys = append(keys, k)
	}
	slices.Sort(keys)

	var results []SysctlResult
	var errs []error
	left := make(map[string]string)
	for _, k := range keys {
		orig := st.Original[k]
		if err := ctx.Err(); err != nil {
			left[k] = orig
			continue
		}
		r := SysctlResult{Key: k, Want: orig}
		cur, err := s.read(k)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			r.Note = NoteAbsent // nothing left to restore (module unloaded, iface gone)
		case err != nil:
			errs = append(errs, err)
			left[k] = orig
		case cur == orig:
			r.Old, r.Now, r.Applied, r.Note = cur, cur, true, NoteUnchanged
		default:
			r.Old = cur
			if err := s.write(k, orig); err != nil {
				if isReadOnly(err) {
					r.Now, r.Note = cur, NoteReadOnly
					break
				}
				errs = append(errs, err)
				left[k] = orig
				break
			}
			now, err := s.read(k)
			if err != nil {
				errs = append(errs, err)
				left[k] = orig
				break
			}
			r.Now, r.Applied = now, now == orig
		}
		results = append(results, r)
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, fmt.Errorf("sysctl restore: %w", err))
	}
	if len(left) > 0 {
		if err := s.save(sysctlState{Version: 1, Original: left}); err != nil {
			errs = append(errs, err)
		}
		return results, errors.Join(errs...)
	}
	if err := s.removeState(); err != nil {
		errs = append(errs, err)
	}
	return results, errors.Join(errs...)
}

func (s *Sysctls) procRoot() string {
	if s.ProcRoot == "" {
		return "/proc/sys"
	}
	return s.ProcRoot
}

// SysctlPath maps a dotted key to its path under root, keeping the dots of
// an interface name in net.ipv{4,6}.conf.<iface>.<param> and
// net.ipv{4,6}.neigh.<iface>.<param>.
func SysctlPath(root, key string) (string, error) {
	if key == "" || strings.ContainsAny(key, "/\x00") || strings.Contains(key, "..") ||
		strings.HasPrefix(key, ".") || strings.HasSuffix(key, ".") {
		return "", fmt.Errorf("sysctl key %q: invalid", key)
	}
	for _, pre := range []string{"net.ipv4.conf.", "net.ipv6.conf.", "net.ipv4.neigh.", "net.ipv6.neigh."} {
		rest, ok := strings.CutPrefix(key, pre)
		if !ok {
			continue
		}
		dot := strings.LastIndexByte(rest, '.')
		if dot <= 0 {
			return "", fmt.Errorf("sysctl key %q: want %s<iface>.<param>", key, pre)
		}
		return filepath.Join(root, strings.ReplaceAll(pre, ".", "/"), rest[:dot], rest[dot+1:]), nil
	}
	return filepath.Join(root, strings.ReplaceAll(key, ".", "/")), nil
}

func (s *Sysctls) read(key string) (string, error) {
	p, err := SysctlPath(s.procRoot(), key)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("sysctl read %s: %w", key, err)
	}
	return normValue(string(b)), nil
}

func (s *Sysctls) write(key, value string) error {
	p, err := SysctlPath(s.procRoot(), key)
	if err != nil {
		return err
	}
	// O_TRUNC is harmless on procfs and needed for regular files in tests.
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("sysctl write %s=%s: %w", key, value, err)
	}
	_, werr := f.WriteString(value + "\n")
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("sysctl write %s=%s: %w", key, value, err)
	}
	return nil
}

// normValue trims and collapses whitespace, so "1024\t65535\n" compares
// equal to "1024 65535".
func normValue(v string) string {
	return strings.Join(strings.Fields(v), " ")
}

func isReadOnly(err error) bool {
	return errors.Is(err, fs.ErrPermission) || errors.Is(err, unix.EROFS) || errors.Is(err, unix.EPERM)
}

// record adds originals for keys not recorded yet and saves the state.
func (s *Sysctls) record(originals map[string]string) error {
	if s.StatePath == "" {
		return nil
	}
	st, err := s.load()
	if err != nil {
		return err
	}
	if st.Original == nil {
		st.Original = make(map[string]string)
	}
	added := false
	for k, v := range originals {
		if _, ok := st.Original[k]; !ok { // first recorded value wins
			st.Original[k] = v
			added = true
		}
	}
	if !added {
		return nil
	}
	return s.save(st)
}

func (s *Sysctls) load() (sysctlState, error) {
	if s.StatePath == "" {
		return sysctlState{}, nil
	}
	b, err := os.ReadFile(s.StatePath)
	if errors.Is(err, fs.ErrNotExist) {
		return sysctlState{Version: 1}, nil
	}
	if err != nil {
		return sysctlState{}, fmt.Errorf("sysctl state read %s: %w", s.StatePath, err)
	}
	var st sysctlState
	if err := json.Unmarshal(b, &st); err != nil {
		return sysctlState{}, fmt.Errorf("sysctl state parse %s: %w", s.StatePath, err)
	}
	if st.Version != 1 {
		return sysctlState{}, fmt.Errorf("sysctl state %s: unknown version %d", s.StatePath, st.Version)
	}
	return st, nil
}

// save writes the state atomically: temp file in the same directory,
// fsync, rename, fsync the directory.
func (s *Sysctls) save(st sysctlState) error {
	st.Version = 1
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("sysctl state encode: %w", err)
	}
	b = append(b, '\n')
	dir := filepath.Dir(s.StatePath)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("sysctl state mkdir %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(s.StatePath)+".tmp*")
	if err != nil {
		return fmt.Errorf("sysctl state write %s: %w", s.StatePath, err)
	}
	tmp := f.Name()
	_, werr := f.Write(b)
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("sysctl state write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, s.StatePath); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("sysctl state rename %s: %w", s.StatePath, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}

func (s *Sysctls) removeState() error {
	if s.StatePath == "" {
		return nil
	}
	if err := os.Remove(s.StatePath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sysctl state remove %s: %w", s.StatePath, err)
	}
	return nil
}

// MemTotalBytes is the machine's total RAM, for DesiredSysctls.
func MemTotalBytes() (uint64, error) {
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return 0, fmt.Errorf("sysinfo: %w", err)
	}
	return uint64(si.Totalram) * uint64(si.Unit), nil
}

// IPForward reads net.ipv4.ip_forward in the calling process's
// namespace; nil when it cannot be read.
func IPForward() *bool {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	if err != nil {
		return nil
	}
	on := strings.TrimSpace(string(b)) == "1"
	return &on
}

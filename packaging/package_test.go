package packaging

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hanat/hanat/internal/testtool"
)

// built is the result of one packaging/package.sh run, shared by the tests
// of this binary (building four packages costs a minute or two).
var built struct {
	once sync.Once
	dir  string
	err  error
	out  string
}

// testVersion is the package version the tests build.
const testVersion = "0.0.0~test1"

// buildPackages runs `packaging/package.sh` (what `make package` runs) for
// both architectures and both formats into a temporary directory.
func buildPackages(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		if _, err := os.Stat(filepath.Join(runtime.GOROOT(), "bin", "go")); err != nil {
			testtool.Unavailable(t, "no go toolchain to build the packages")
		}
	}
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "hanat-pkg-test-")
		if err != nil {
			built.err = err
			return
		}
		built.dir = dir
		start := time.Now()
		cmd := exec.Command("./package.sh", dir)
		cmd.Env = append(os.Environ(), "VERSION="+testVersion, "ARCHES=amd64 arm64", "FORMATS=deb rpm",
			"GO="+goBinary())
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		built.err = cmd.Run()
		built.out = fmt.Sprintf("%s(took %v)", out.String(), time.Since(start).Round(time.Second))
	})
	if built.err != nil {
		t.Fatalf("package.sh: %v\n%s", built.err, built.out)
	}
	return built.dir
}

func goBinary() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func debPath(dir, arch string) string {
	return filepath.Join(dir, fmt.Sprintf("hanat_%s_%s.deb", testVersion, arch))
}

func rpmPath(dir, arch string) string {
	rarch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[arch]
	return filepath.Join(dir, fmt.Sprintf("hanat-%s-1.%s.rpm", testVersion, rarch))
}

// pkgFile is one file of a package.
type pkgFile struct {
	mode   os.FileMode
	data   []byte // regular files of the deb only
	config bool   // conffile / %config
	noRepl bool   // %config(noreplace) (rpm)
}

// wantFiles is what every package must install, with its permission bits.
var wantFiles = map[string]os.FileMode{
	"/usr/sbin/hanatd":                               0o755,
	"/usr/bin/hanatctl":                              0o755,
	"/usr/lib/systemd/system/hanatd.service":         0o644,
	"/usr/lib/systemd/system/hanat-handover.service": 0o644,
	"/usr/lib/sysctl.d/60-hanat.conf":                0o644,
	"/usr/lib/modules-load.d/hanat.conf":             0o644,
	"/usr/lib/tmpfiles.d/hanat.conf":                 0o644,
	"/usr/lib/sysusers.d/hanat.conf":                 0o644,
	"/etc/hanat/hanat.yaml":                          0o644,
	"/usr/share/doc/hanat/iam-policy.json":           0o644,
	"/usr/share/doc/hanat/example.yaml":              0o644,
	"/usr/share/man/man8/hanatd.8.gz":                0o644,
	"/usr/share/man/man8/hanatctl.8.gz":              0o644,
}

func TestPackages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds hanatd and hanatctl for two architectures (-short)")
	}
	dir := buildPackages(t)
	example, err := os.ReadFile("../config/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	policy, err := os.ReadFile("iam-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	elfMachine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

	for _, arch := range []string{"amd64", "arm64"} {
		t.Run("deb-"+arch, func(t *testing.T) {
			control, files, err := readDeb(debPath(dir, arch))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{"Package: hanat", "Version: " + testVersion + "-1", "Architecture: " + arch} {
				if !strings.Contains(control["control"], want+"\n") {
					t.Errorf("control lacks %q:\n%s", want, control["control"])
				}
			}
			if got := strings.TrimSpace(control["conffiles"]); got != "/etc/hanat/hanat.yaml" {
				t.Errorf("conffiles = %q, want /etc/hanat/hanat.yaml", got)
			}
			for _, s := range []string{"postinst", "prerm", "postrm"} {
				if control[s] == "" {
					t.Errorf("maintainer script %s missing", s)
				}
			}
			if !strings.Contains(control["postinst"], "systemctl enable hanatd.service hanat-handover.service") {
				t.Errorf("postinst does not enable the unit:\n%s", control["postinst"])
			}
			checkFiles(t, files)
			if f := files["/etc/hanat/hanat.yaml"]; f != nil && !bytes.Equal(f.data, example) {
				t.Errorf("/etc/hanat/hanat.yaml differs from config/example.yaml")
			}
			if f := files["/usr/share/doc/hanat/iam-policy.json"]; f != nil && !bytes.Equal(f.data, policy) {
				t.Errorf("iam-policy.json differs from packaging/iam-policy.json")
			}
			for _, bin := range []string{"/usr/sbin/hanatd", "/usr/bin/hanatctl"} {
				f := files[bin]
				if f == nil {
					continue
				}
				ef, err := elf.NewFile(bytes.NewReader(f.data))
				if err != nil {
					t.Errorf("%s is not an ELF binary: %v", bin, err)
					continue
				}
				if ef.Machine != elfMachine[arch] {
					t.Errorf("%s is built for %v, want %v", bin, ef.Machine, elfMachine[arch])
				}
				if ef.Type != elf.ET_EXEC {
					// CGO_ENABLED=0 gives a static executable; a PIE or
					// dynamic binary would need the target's libc.
					t.Errorf("%s: ELF type %v, want a static executable", bin, ef.Type)
				}
				ef.Close()
			}
		})
		t.Run("rpm-"+arch, func(t *testing.T) {
			h, err := readRPM(rpmPath(dir, arch))
			if err != nil {
				t.Fatal(err)
			}
			rarch := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[arch]
			if h.name != "hanat" || h.version != testVersion || h.arch != rarch {
				t.Errorf("rpm name/version/arch = %q %q %q, want hanat %q %q", h.name, h.version, h.arch, testVersion, rarch)
			}
			checkFiles(t, h.files)
			if f := h.files["/etc/hanat/hanat.yaml"]; f != nil && (!f.config || !f.noRepl) {
				t.Errorf("/etc/hanat/hanat.yaml is not %%config(noreplace) (config=%v noreplace=%v)", f.config, f.noRepl)
			}
			if !strings.Contains(h.postin, "systemctl enable hanatd.service hanat-handover.service") || h.preun == "" {
				t.Errorf("rpm scripts: %%post does not enable the unit or %%preun is missing")
			}
		})
	}
}

func checkFiles(t *testing.T, files map[string]*pkgFile) {
	t.Helper()
	for path, mode := range wantFiles {
		f, ok := files[path]
		if !ok {
			t.Errorf("package lacks %s", path)
			continue
		}
		if f.mode.Perm() != mode {
			t.Errorf("%s mode %v, want %v", path, f.mode.Perm(), mode)
		}
	}
	var extra []string
	for path, f := range files {
		if _, ok := wantFiles[path]; !ok && !f.mode.IsDir() {
			extra = append(extra, path)
		}
	}
	if len(extra) > 0 {
		slices.Sort(extra)
		t.Errorf("package has unexpected files %v", extra)
	}
}

// readDeb returns the control files (control, conffiles, postinst, …) and
// the data files of a .deb: an ar archive of debian-binary,
// control.tar.gz and data.tar.gz.
func readDeb(path string) (map[string]string, map[string]*pkgFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	if !bytes.HasPrefix(b, []byte("!<arch>\n")) {
		return nil, nil, fmt.Errorf("%s: not an ar archive", path)
	}
	members := map[string][]byte{}
	for off := 8; off+60 <= len(b); {
		hdr := b[off : off+60]
		name := strings.TrimRight(strings.TrimSpace(string(hdr[0:16])), "/")
		var size int
		if _, err := fmt.Sscan(strings.TrimSpace(string(hdr[48:58])), &size); err != nil {
			return nil, nil, fmt.Errorf("%s: ar member %q size: %w", path, name, err)
		}
		off += 60
		if off+size > len(b) {
			return nil, nil, fmt.Errorf("%s: ar member %q truncated", path, name)
		}
		members[name] = b[off : off+size]
		off += size + size%2
	}
	control := map[string]string{}
	if err := walkTarGz(members["control.tar.gz"], func(h *tar.Header, data []byte) {
		control[strings.TrimPrefix(h.Name, "./")] = string(data)
	}); err != nil {
		return nil, nil, fmt.Errorf("%s control.tar.gz: %w", path, err)
	}
	files := map[string]*pkgFile{}
	if err := walkTarGz(members["data.tar.gz"], func(h *tar.Header, data []byte) {
		name := "/" + strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		files[name] = &pkgFile{mode: h.FileInfo().Mode(), data: data}
	}); err != nil {
		return nil, nil, fmt.Errorf("%s data.tar.gz: %w", path, err)
	}
	for line := range strings.Lines(control["conffiles"]) {
		if f := files[strings.TrimSpace(line)]; f != nil {
			f.config = true
		}
	}
	return control, files, nil
}

func walkTarGz(b []byte, fn func(*tar.Header, []byte)) error {
	if b == nil {
		return errors.New("member missing")
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return err
	}
	tr := tar.NewReader(zr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		data, err := io.ReadAll(io.LimitReader(tr, 64<<20))
		if err != nil {
			return err
		}
		fn(h, data)
	}
}

// rpmHeader is what the tests read from an .rpm's main header.
type rpmHeader struct {
	name, version, arch string
	postin, preun       string
	files               map[string]*pkgFile
}

// RPM header tags and types (rpm's rpmtag.h).
const (
	rpmTagName       = 1000
	rpmTagVersion    = 1001
	rpmTagPostin     = 1024
	rpmTagPreun      = 1025
	rpmTagArch       = 1022
	rpmTagFileModes  = 1030
	rpmTagFileFlags  = 1037
	rpmTagDirIndexes = 1116
	rpmTagBasenames  = 1117
	rpmTagDirnames   = 1118

	rpmFileConfig    = 1 << 0
	rpmFileNoReplace = 1 << 4
)

// readRPM parses the lead, the signature header and the main header of an
// .rpm (the payload is not read).
func readRPM(path string) (*rpmHeader, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 96 || !bytes.Equal(b[:4], []byte{0xed, 0xab, 0xee, 0xdb}) {
		return nil, fmt.Errorf("%s: no rpm lead", path)
	}
	off := 96
	// Signature header, padded to 8 bytes.
	_, n, err := rpmParseHeader(b[off:])
	if err != nil {
		return nil, fmt.Errorf("%s signature header: %w", path, err)
	}
	off += n
	off += (8 - off%8) % 8
	tags, _, err := rpmParseHeader(b[off:])
	if err != nil {
		return nil, fmt.Errorf("%s header: %w", path, err)
	}
	h := &rpmHeader{files: map[string]*pkgFile{}}
	str := func(tag int) string {
		if v := tags[tag]; len(v.strs) > 0 {
			return v.strs[0]
		}
		return ""
	}
	h.name, h.version, h.arch = str(rpmTagName), str(rpmTagVersion), str(rpmTagArch)
	h.postin, h.preun = str(rpmTagPostin), str(rpmTagPreun)
	base, dirs, idx := tags[rpmTagBasenames].strs, tags[rpmTagDirnames].strs, tags[rpmTagDirIndexes].ints
	modes, flags := tags[rpmTagFileModes].ints, tags[rpmTagFileFlags].ints
	if len(idx) != len(base) || len(modes) != len(base) || len(flags) != len(base) {
		return nil, fmt.Errorf("%s: file arrays of different lengths", path)
	}
	for i, name := range base {
		if int(idx[i]) >= len(dirs) {
			return nil, fmt.Errorf("%s: dir index %d out of range", path, idx[i])
		}
		full := strings.TrimSuffix(dirs[idx[i]]+name, "/")
		mode := os.FileMode(modes[i] & 0o777)
		if modes[i]&0o170000 == 0o040000 {
			mode |= os.ModeDir
		}
		h.files[full] = &pkgFile{mode: mode, config: flags[i]&rpmFileConfig != 0, noRepl: flags[i]&rpmFileNoReplace != 0}
	}
	return h, nil
}

type rpmValue struct {
	strs []string
	ints []int64
}

// rpmParseHeader parses one header structure: magic, index entries, data
// store. It returns the tags and the header's length in bytes.
func rpmParseHeader(b []byte) (map[int]rpmValue, int, error) {
	if len(b) < 16 || !bytes.Equal(b[:3], []byte{0x8e, 0xad, 0xe8}) {
		return nil, 0, errors.New("bad header magic")
	}
	nindex := int(binary.BigEndian.Uint32(b[8:12]))
	hsize := int(binary.BigEndian.Uint32(b[12:16]))
	if nindex > 10000 || hsize > 64<<20 || 16+nindex*16+hsize > len(b) {
		return nil, 0, fmt.Errorf("header of %d entries and %d bytes does not fit", nindex, hsize)
	}
	store := b[16+nindex*16 : 16+nindex*16+hsize]
	tags := map[int]rpmValue{}
	for i := range nindex {
		e := b[16+i*16 : 32+i*16]
		tag := int(binary.BigEndian.Uint32(e[0:4]))
		typ := binary.BigEndian.Uint32(e[4:8])
		off := int(binary.BigEndian.Uint32(e[8:12]))
		count := int(binary.BigEndian.Uint32(e[12:16]))
		if off > len(store) {
			return nil, 0, fmt.Errorf("tag %d offset %d out of range", tag, off)
		}
		var v rpmValue
		switch typ {
		case 3, 4: // INT16, INT32
			size := 2
			if typ == 4 {
				size = 4
			}
			if off+count*size > len(store) {
				return nil, 0, fmt.Errorf("tag %d data out of range", tag)
			}
			for j := range count {
				p := store[off+j*size:]
				if size == 2 {
					v.ints = append(v.ints, int64(binary.BigEndian.Uint16(p)))
				} else {
					v.ints = append(v.ints, int64(binary.BigEndian.Uint32(p)))
				}
			}
		case 6, 8, 9: // STRING, STRING_ARRAY, I18NSTRING
			r := bufio.NewReader(bytes.NewReader(store[off:]))
			for range count {
				s, err := r.ReadString(0)
				if err != nil {
					return nil, 0, fmt.Errorf("tag %d string: %w", tag, err)
				}
				v.strs = append(v.strs, strings.TrimSuffix(s, "\x00"))
			}
		default:
			continue
		}
		tags[tag] = v
	}
	return tags, 16 + nindex*16 + hsize, nil
}

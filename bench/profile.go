package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// profile is where the time of one packet-rate sample goes
// (Options.ProfileDir): each BPF program's runs and run time during the
// sample (the kernel's BPF stats, on while the profile runs) and, when
// perf is installed, a system-wide perf profile of the same seconds.
type profile struct {
	log    *slog.Logger
	name   string // file name stem, e.g. fastpath-1M
	dir    string
	stats  io.Closer
	before map[ebpf.ProgramID]progRun
	perf   *exec.Cmd
	perfTo string
}

// progRun is a program's name and run stats at one moment.
type progRun struct {
	name string
	runs uint64
	took time.Duration
}

// startProfile starts a profile of the next d.
func startProfile(log *slog.Logger, dir, name string, d time.Duration) (*profile, error) {
	p := &profile{log: log, name: name, dir: dir}
	var err error
	if p.stats, err = ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME)); err != nil {
		return nil, fmt.Errorf("profile: enable BPF stats: %w", err)
	}
	if p.before, err = progRuns(); err != nil {
		p.stats.Close()
		return nil, err
	}
	if _, err := exec.LookPath("perf"); err == nil {
		p.perfTo = filepath.Join(dir, name+".perf.data")
		secs := strconv.FormatFloat(d.Seconds(), 'f', 1, 64)
		p.perf = exec.Command("perf", "record", "-a", "-g", "-F", "999", "-o", p.perfTo, "--", "sleep", secs)
		p.perf.Stdout, p.perf.Stderr = io.Discard, io.Discard
		if err := p.perf.Start(); err != nil {
			log.Warn("profile: perf record did not start", "err", err)
			p.perf = nil
		}
	}
	return p, nil
}

// stop ends the profile and writes name.bpf.txt (and name.perf.txt) in
// the profile's directory; it returns the BPF lines.
func (p *profile) stop() ([]string, error) {
	defer p.stats.Close()
	after, err := progRuns()
	if err != nil {
		return nil, err
	}
	var lines []string
	for id, a := range after {
		b := p.before[id]
		if runs := a.runs - b.runs; runs > 0 {
			took := a.took - b.took
			lines = append(lines, fmt.Sprintf("%-16s id %-6d runs %-10d %7.1f ns/run", a.name, id, runs, float64(took.Nanoseconds())/float64(runs)))
		}
	}
	slices.Sort(lines)
	errs := []error{os.WriteFile(filepath.Join(p.dir, p.name+".bpf.txt"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)}
	if p.perf != nil {
		if err := p.perf.Wait(); err != nil {
			errs = append(errs, fmt.Errorf("perf record: %w", err))
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			out, err := exec.CommandContext(ctx, "perf", "report", "-i", p.perfTo, "--stdio", "--no-children",
				"--sort", "sym", "--percent-limit", "1", "-g", "none").Output()
			cancel()
			errs = append(errs, err, os.WriteFile(filepath.Join(p.dir, p.name+".perf.txt"), out, 0o644))
		}
	}
	return lines, errors.Join(errs...)
}

// progRuns reads the run stats of every BPF program loaded.
func progRuns() (map[ebpf.ProgramID]progRun, error) {
	runs := map[ebpf.ProgramID]progRun{}
	var id ebpf.ProgramID
	for {
		next, err := ebpf.ProgramGetNextID(id)
		if errors.Is(err, os.ErrNotExist) {
			return runs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("profile: program ids: %w", err)
		}
		id = next
		prog, err := ebpf.NewProgramFromID(id)
		if err != nil {
			continue // gone meanwhile
		}
		info, ierr := prog.Info()
		st, serr := prog.Stats()
		prog.Close()
		if ierr != nil || serr != nil {
			continue
		}
		runs[id] = progRun{name: info.Name, runs: st.RunCount, took: st.Runtime}
	}
}

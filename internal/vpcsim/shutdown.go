package vpcsim

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A graceful stop (EC2 StopInstances, TerminateInstances, an OS reboot)
// is an ACPI shutdown: systemd stops the services in reverse order while
// the network is still up. The lab models what hanat's units do then:
// hanat-handover.service's ExecStop (`hanatctl maintenance on --wait=10s`)
// for every hanatd of the instance, then SIGTERM to everything, then the
// power goes (SIGKILL, links down).
const (
	// handoverWait is the --wait of the handover, as in the unit.
	handoverWait = 10 * time.Second
	// shutdownHooksTimeout bounds the hooks of one instance.
	shutdownHooksTimeout = handoverWait + 5*time.Second
	// termGrace is how long SIGTERMed processes get before SIGKILL.
	termGrace = 3 * time.Second
)

// runShutdownHooks runs, for every hanatd in the instance's namespace,
// what hanat-handover.service runs at shutdown, bounded. Failures are
// logged and returned for the log; the stop goes on (as EC2's would).
func (l *Lab) runShutdownHooks(ctx context.Context, in *instState, name string) error {
	ctx, cancel := context.WithTimeout(ctx, shutdownHooksTimeout)
	defer cancel()
	pids, err := NSProcesses(in.ns.Name)
	if err != nil {
		return fmt.Errorf("shutdown hooks of %s: %w", name, err)
	}
	var errs []string
	for _, pid := range pids {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if err != nil || strings.TrimSpace(string(comm)) != "hanatd" {
			continue
		}
		ctl, err := hanatctlFor(pid)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		socks, err := listeningUnixSockets(pid)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if len(socks) == 0 {
			errs = append(errs, fmt.Sprintf("hanatd pid %d: no admin socket", pid))
			continue
		}
		for _, sock := range socks {
			argv := []string{"--socket", sock, "maintenance", "on", "--wait=" + handoverWait.String()}
			start := time.Now()
			cmd := in.ns.Command(ctx, ctl, argv...)
			cmd.WaitDelay = time.Second
			out, err := cmd.CombinedOutput()
			l.log.Info("shutdown hook", "instance", name, "hanatd_pid", pid, "cmd", ctl+" "+strings.Join(argv, " "),
				"took", time.Since(start).Round(time.Millisecond), "err", err, "output", strings.TrimSpace(string(out)))
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s %s: %v: %s", ctl, strings.Join(argv, " "), err, strings.TrimSpace(string(out))))
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("shutdown hooks of %s: %s", name, strings.Join(errs, "; "))
	}
	return nil
}

// hanatctlFor finds the hanatctl that goes with a hanatd: beside its
// executable (bin/, a test's build directory), else on $PATH.
func hanatctlFor(pid int) (string, error) {
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil {
		ctl := filepath.Join(filepath.Dir(strings.TrimSuffix(exe, " (deleted)")), "hanatctl")
		if st, err := os.Stat(ctl); err == nil && st.Mode().IsRegular() {
			return ctl, nil
		}
	}
	ctl, err := exec.LookPath("hanatctl")
	if err != nil {
		return "", fmt.Errorf("hanatd pid %d: no hanatctl beside it or on $PATH: %w", pid, err)
	}
	return ctl, nil
}

// listeningUnixInodes adds the listening, path-named unix sockets of one
// /proc/…/net/unix table to paths (inode → path).
func listeningUnixInodes(table string, paths map[string]string) error {
	f, err := os.Open(table)
	if err != nil {
		return err
	}
	defer f.Close()
	const acceptCon = 0x10000 // __SO_ACCEPTCON: listening
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// Num RefCount Protocol Flags Type St Inode [Path]
		fs := strings.Fields(sc.Text())
		if len(fs) < 8 || fs[0] == "Num" || strings.HasPrefix(fs[7], "@") {
			continue
		}
		flags, err := strconv.ParseUint(fs[3], 16, 32)
		if err != nil || flags&acceptCon == 0 {
			continue
		}
		paths[fs[6]] = fs[7]
	}
	return sc.Err()
}

// listeningUnixSockets returns the filesystem paths of the listening unix
// sockets a process holds (hanatd: its admin socket).
func listeningUnixSockets(pid int) ([]string, error) {
	// Unix sockets of the network namespaces the process's threads are
	// in (/proc/PID/net is only the main thread's, and a Go program may
	// have moved that thread into another namespace): inode → path.
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, fmt.Errorf("threads of pid %d: %w", pid, err)
	}
	paths := map[string]string{}
	var lastErr error
	read := 0
	for _, task := range tasks {
		if err := listeningUnixInodes(fmt.Sprintf("/proc/%d/task/%s/net/unix", pid, task.Name()), paths); err != nil {
			lastErr = err // a thread that exited meanwhile, usually
			continue
		}
		read++
	}
	if read == 0 {
		return nil, fmt.Errorf("unix sockets of pid %d: %w", pid, lastErr)
	}
	fdDir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(fdDir)
	if err != nil {
		return nil, fmt.Errorf("file descriptors of pid %d: %w", pid, err)
	}
	var out []string
	for _, e := range ents {
		link, err := os.Readlink(filepath.Join(fdDir, e.Name()))
		if err != nil || !strings.HasPrefix(link, "socket:[") {
			continue
		}
		ino := strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")
		if p, ok := paths[ino]; ok {
			for _, f := range socketFilesOf(p, pid) {
				if !slices.Contains(out, f) {
					out = append(out, f)
				}
			}
			delete(paths, ino)
		}
	}
	return out, nil
}

// socketFilesOf returns where pid's listening socket, bound at bound, is
// reachable now. The kernel keeps the name it was bound to; hanatd binds
// a temporary name and renames it into place, so the socket files of the
// same directory are tried too: those whose listener is pid (SO_PEERCRED).
// (A process with several listeners in one directory gets them all.)
func socketFilesOf(bound string, pid int) []string {
	cands := []string{bound}
	if ents, err := os.ReadDir(filepath.Dir(bound)); err == nil {
		for _, e := range ents {
			if p := filepath.Join(filepath.Dir(bound), e.Name()); p != bound && e.Type()&os.ModeSocket != 0 {
				cands = append(cands, p)
			}
		}
	}
	var out []string
	for _, c := range cands {
		if listenerPID(c) == pid {
			out = append(out, c)
		}
	}
	return out
}

// listenerPID is the pid that listens on the unix socket file path (0:
// none, or it does not answer).
func listenerPID(path string) int {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer syscall.Close(fd)
	if err := syscall.Connect(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		return 0
	}
	cred, err := syscall.GetsockoptUcred(fd, syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	if err != nil {
		return 0
	}
	return int(cred.Pid)
}

// terminateNSProcesses SIGTERMs every process in the namespace and waits
// up to grace for them to exit (what is left is killed afterwards).
func terminateNSProcesses(ctx context.Context, name string, grace time.Duration) {
	pids, err := NSProcesses(name)
	if err != nil || len(pids) == 0 {
		return
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.NewTimer(grace)
	defer deadline.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			return
		case <-time.After(20 * time.Millisecond):
		}
		left, err := NSProcesses(name)
		if err != nil || len(left) == 0 {
			return
		}
	}
}

package vpcsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/hanat/hanat/internal/vpcsim/ec2sim"
)

// Process is a command the lab runs inside an instance. StopInstance,
// CrashInstance and Close kill it (its whole process group).
type Process struct {
	Instance string
	Cmd      *exec.Cmd

	out  lockedBuffer
	done chan struct{}
	err  error
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// maxProcessOutput bounds what a Process keeps of its output.
const maxProcessOutput = 1 << 20

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := maxProcessOutput - b.buf.Len(); room > 0 {
		if len(p) > room {
			b.buf.Write(p[:room])
		} else {
			b.buf.Write(p)
		}
	}
	return len(p), nil
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Output is the combined stdout and stderr so far (first MiB).
func (p *Process) Output() string { return p.out.String() }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit and returns its exit error.
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// Kill sends SIGKILL to the process group.
func (p *Process) Kill() {
	if p.Cmd.Process != nil {
		_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	}
}

func (p *Process) waitBounded(ctx context.Context) {
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-p.done:
	case <-ctx.Done():
	case <-t.C:
	}
}

// Start runs argv inside the instance's namespace (through `ip netns
// exec`) in its own process group, tracked by the lab, with the caller's
// environment plus Env(). ctx cancellation kills it.
func (l *Lab) Start(ctx context.Context, instance string, argv ...string) (*Process, error) {
	in := l.inst(instance)
	if in == nil {
		return nil, fmt.Errorf("vpcsim Start in %q: unknown instance", instance)
	}
	if len(argv) == 0 {
		return nil, fmt.Errorf("vpcsim Start in %q: empty command", instance)
	}
	p := &Process{Instance: instance, done: make(chan struct{})}
	cmd := in.ns.Command(ctx, argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Env = append(os.Environ(), l.Env()...)
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	cmd.Cancel = func() error { p.Kill(); return nil }
	cmd.WaitDelay = 5 * time.Second
	p.Cmd = cmd
	l.mu.Lock()
	defer l.mu.Unlock()
	if in.stopped {
		return nil, fmt.Errorf("vpcsim Start %v in %q: instance is stopped", argv, instance)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("vpcsim Start %v in %q: %w", argv, instance, err)
	}
	l.procs[p] = struct{}{}
	go func() {
		p.err = cmd.Wait()
		l.mu.Lock()
		delete(l.procs, p)
		l.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// StopInstance stops an instance as EC2 StopInstances does: a graceful
// (ACPI) shutdown first — hanatd hands its route tables to its peer as
// hanat-handover.service does (`hanatctl maintenance on --wait=10s`,
// bounded), then every process gets SIGTERM (up to 3 s) — and then the
// power goes: whatever is left is killed, all of its links go down and the
// model reports it stopped (routes to its ENIs show "blackhole"). A failed
// handover does not stop the stop, as on EC2: the instance is stopped and
// the error (a *ShutdownError) says what the hooks reported.
func (l *Lab) StopInstance(ctx context.Context, name string) error {
	return l.stopInstance(ctx, name, false)
}

// CrashInstance stops an instance without a shutdown, as EC2
// StopInstances --force (or a host failure) does: every process in its
// namespace is killed at once (SIGKILL), its links go down and the model
// reports it stopped. Its peer only notices the missing heartbeats.
func (l *Lab) CrashInstance(ctx context.Context, name string) error {
	return l.stopInstance(ctx, name, true)
}

func (l *Lab) stopInstance(ctx context.Context, name string, force bool) error {
	call := "StopInstance"
	if force {
		call = "CrashInstance"
	}
	in := l.inst(name)
	if in == nil {
		return fmt.Errorf("vpcsim %s %q: unknown instance", call, name)
	}
	l.mu.Lock()
	wasStopped := in.stopped
	in.stopped = true
	var procs []*Process
	for p := range l.procs {
		if p.Instance == name {
			procs = append(procs, p)
		}
	}
	l.mu.Unlock()
	var hookErr error
	if !force && !wasStopped {
		if hookErr = l.runShutdownHooks(ctx, in, name); hookErr != nil {
			l.log.Warn("graceful stop: shutdown hooks failed; stopping anyway", "instance", name, "err", hookErr)
		}
		terminateNSProcesses(ctx, in.ns.Name, termGrace)
	}
	for _, p := range procs {
		p.Kill()
	}
	var errs []error
	if err := killNSProcesses(ctx, in.ns.Name); err != nil {
		errs = append(errs, err)
	}
	for _, p := range procs {
		p.waitBounded(ctx)
	}
	l.mu.Lock()
	for _, e := range in.enis {
		errs = append(errs, setLinkState(in.h, e.dev, false), setLinkState(l.rtrH, e.port, false))
	}
	l.mu.Unlock()
	if err := l.model.SetInstanceState(in.id, ec2sim.InstanceStopped); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("vpcsim %s %q: %w", call, name, err)
	}
	l.log.Info("instance stopped", "instance", name, "force", force)
	if hookErr != nil {
		return &ShutdownError{Instance: name, Err: hookErr}
	}
	return nil
}

// ShutdownError: the instance stopped, but its shutdown hooks (the
// handover of its route tables) failed.
type ShutdownError struct {
	Instance string
	Err      error
}

func (e *ShutdownError) Error() string {
	return fmt.Sprintf("vpcsim StopInstance %q: stopped, but the shutdown did not finish cleanly: %v", e.Instance, e.Err)
}

func (e *ShutdownError) Unwrap() error { return e.Err }

// StartInstance brings a stopped instance back: links up, default route
// restored, model state running. Processes are not restarted.
func (l *Lab) StartInstance(ctx context.Context, name string) error {
	in := l.inst(name)
	if in == nil {
		return fmt.Errorf("vpcsim StartInstance %q: unknown instance", name)
	}
	l.mu.Lock()
	var errs []error
	for _, e := range in.enis {
		errs = append(errs, setLinkState(l.rtrH, e.port, true), setLinkState(in.h, e.dev, true))
		for _, ip := range e.ips() {
			l.forgetNeighborLocked(e.subnet, ip)
		}
	}
	if len(in.enis) > 0 {
		if link, err := in.h.LinkByName(in.enis[0].dev); err != nil {
			errs = append(errs, err)
		} else {
			errs = append(errs, defaultRoute(in.h, link, in.subnet.gw))
		}
	}
	in.stopped = false
	l.mu.Unlock()
	if err := l.model.SetInstanceState(in.id, ec2sim.InstanceRunning); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("vpcsim StartInstance %q: %w", name, err)
	}
	l.log.Info("instance started", "instance", name)
	return nil
}

func setLinkState(h *netlink.Handle, name string, up bool) error {
	link, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("link %q: %w", name, err)
	}
	if up {
		err = h.LinkSetUp(link)
	} else {
		err = h.LinkSetDown(link)
	}
	if err != nil {
		return fmt.Errorf("set link %q up=%v: %w", name, up, err)
	}
	return nil
}

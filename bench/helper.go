package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The short-connection client and server run as processes of their own,
// started inside priv and inet: the benchmark's own binary re-executed
// with $HANAT_BENCH_HELPER naming the role. In-process they would share
// the Go scheduler with the fast-path mode's offload engine, and every
// blocking socket call on a namespace-locked thread would hand the
// engine's goroutines a processor and back: the measured connection rate
// would then include a scheduler interaction no real NAT's clients have
// with it. Out of process, hanat's engine competes with the clients for CPU
// only, as hanatd does.

// helperEnv selects a helper role in MaybeRunHelper.
const helperEnv = "HANAT_BENCH_HELPER"

// Roles.
const (
	roleConnServer = "conn-server" // args: listen address
	roleConnClient = "conn-client" // args: address, workers, duration, rate (connections/s, 0: as fast as they go)
)

// MaybeRunHelper runs the helper role named by $HANAT_BENCH_HELPER and
// exits; without it, it returns at once. Call it first thing in main (and
// in TestMain of tests that run the benchmark).
func MaybeRunHelper() {
	role := os.Getenv(helperEnv)
	if role == "" {
		return
	}
	var err error
	switch role {
	case roleConnServer:
		err = connServerMain(os.Args[1:])
	case roleConnClient:
		err = connClientMain(os.Args[1:])
	default:
		err = fmt.Errorf("unknown helper role %q", role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "hanat-bench %s: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// connServerMain answers short connections until stdin closes: read a
// request, write an answer, close.
func connServerMain(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("want a listen address, got %q", args)
	}
	ln, err := net.Listen("tcp4", args[0])
	if err != nil {
		return err
	}
	fmt.Println("ready")
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		_ = ln.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return nil // closed
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			buf := make([]byte, connMsg)
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(c, buf); err != nil {
				return
			}
			_, _ = c.Write(buf)
		}()
	}
}

// connResult counts short connections.
type connResult struct {
	OK       uint64 `json:"ok"`
	Failed   uint64 `json:"failed"`
	TookNS   int64  `json:"took_ns"`
	FirstErr string `json:"first_error,omitempty"`
}

func (r connResult) perSecond() float64 {
	return float64(r.OK) / time.Duration(r.TookNS).Seconds()
}

// connClientMain opens short connections with workers concurrent clients
// for a duration and prints a connResult as JSON. A rate above 0 paces
// them: connection k starts no earlier than k/rate after the start (one
// schedule shared by the workers, so a slow connection delays only its
// worker); below that rate the workers go as fast as they can.
func connClientMain(args []string) error {
	if len(args) != 4 {
		return fmt.Errorf("want address, workers, duration, rate, got %q", args)
	}
	workers, err := strconv.Atoi(args[1])
	if err != nil || workers < 1 || workers > 256 {
		return fmt.Errorf("workers %q: want 1..256", args[1])
	}
	d, err := time.ParseDuration(args[2])
	if err != nil || d <= 0 || d > 10*time.Minute {
		return fmt.Errorf("duration %q: want (0, 10m]", args[2])
	}
	rate, err := strconv.Atoi(args[3])
	if err != nil || rate < 0 || rate > 1_000_000 {
		return fmt.Errorf("rate %q: want 0..1000000 connections/s", args[3])
	}
	var ok, failed, tickets atomic.Uint64
	var once sync.Once
	var firstErr string
	start := time.Now()
	deadline := start.Add(d)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := make([]byte, connMsg)
			buf := make([]byte, connMsg+1)
			// A worker makes at most 10^6 connections.
			for i := 0; i < 1_000_000 && time.Now().Before(deadline); i++ {
				if rate > 0 {
					due := start.Add(time.Duration(tickets.Add(1)-1) * time.Second / time.Duration(rate))
					if !due.Before(deadline) {
						break
					}
					if wait := time.Until(due); wait > 0 {
						time.Sleep(wait)
					}
				}
				if err := oneConn(args[0], req, buf); err != nil {
					failed.Add(1)
					once.Do(func() { firstErr = err.Error() })
					continue
				}
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	return json.NewEncoder(os.Stdout).Encode(connResult{OK: ok.Load(), Failed: failed.Load(), TookNS: time.Since(start).Nanoseconds(), FirstErr: firstErr})
}

// helperCommand is this binary re-executed as role inside ns's namespace,
// under nice(1) with the given niceness when it is above 0.
func helperCommand(ctx context.Context, ns interface {
	Command(context.Context, string, ...string) *exec.Cmd
}, role string, niceness int, args ...string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own executable for the %s helper: %w", role, err)
	}
	cmd := ns.Command(ctx, self, args...)
	if niceness > 0 {
		cmd = ns.Command(ctx, "nice", append([]string{"-n", strconv.Itoa(niceness), self}, args...)...)
	}
	cmd.Env = append(os.Environ(), helperEnv+"="+role)
	return cmd, nil
}

// connServer is the conn-server helper process in inet.
type connServer struct {
	cmd   *exec.Cmd
	stdin io.Closer
	done  chan error
}

// startConnServer starts the conn-server helper in inet, niced when
// niceness is above 0.
func startConnServer(t *topo, niceness int) (*connServer, error) {
	addr := net.JoinHostPort(inetAddr.String(), strconv.Itoa(connPort))
	cmd, err := helperCommand(context.Background(), t.inet, roleConnServer, niceness, addr)
	if err != nil {
		return nil, err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("conn server: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("conn server: %w", err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start conn server in %s: %w", t.inet.Name, err)
	}
	s := &connServer{cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("unexpected %q", line)
		}
		ready <- err
		s.done <- cmd.Wait()
	}()
	select {
	case err := <-ready:
		if err != nil {
			s.stop()
			return nil, fmt.Errorf("conn server in %s did not start: %w", t.inet.Name, err)
		}
	case <-time.After(10 * time.Second):
		s.stop()
		return nil, fmt.Errorf("conn server in %s: not ready after 10s", t.inet.Name)
	}
	return s, nil
}

// stop closes the server's stdin (it then stops accepting and exits) and
// kills it if it has not exited after 5 s.
func (s *connServer) stop() {
	_ = s.stdin.Close()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// connLoad is a run of the conn-client helper: workers concurrent
// clients for d; rate > 0 paces them to at most rate connections/s;
// niceness > 0 runs the helper under nice(1).
type connLoad struct {
	workers        int
	d              time.Duration
	rate, niceness int
}

// connRate runs the conn-client helper in priv: each client connects to
// inet, sends 64 bytes, reads the 64-byte answer and the server's FIN, and
// closes.
func connRate(ctx context.Context, t *topo, l connLoad) (connResult, error) {
	addr := net.JoinHostPort(inetAddr.String(), strconv.Itoa(connPort))
	cctx, cancel := context.WithTimeout(ctx, l.d+30*time.Second)
	defer cancel()
	cmd, err := helperCommand(cctx, t.priv, roleConnClient, l.niceness, addr, strconv.Itoa(l.workers), l.d.String(), strconv.Itoa(l.rate))
	if err != nil {
		return connResult{}, err
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return connResult{}, fmt.Errorf("conn client in %s: %w", t.priv.Name, err)
	}
	var r connResult
	if err := json.Unmarshal(out, &r); err != nil {
		return connResult{}, fmt.Errorf("conn client in %s: output %q: %w", t.priv.Name, out, err)
	}
	if r.OK == 0 {
		return r, errors.New("no short connection succeeded: " + r.FirstErr)
	}
	return r, nil
}

package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"time"
)

const (
	iperfPort = 5201
	connPort  = 7001
	connMsg   = 64 // request and answer size of a short connection
)

// iperfServer is iperf3 -s in inet, started once for the whole run.
type iperfServer struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func startIperf(ctx context.Context, t *topo, bin string) (*iperfServer, error) {
	cmd := t.inet.Command(ctx, bin, "-s", "-B", inetAddr.String(), "-p", strconv.Itoa(iperfPort))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s -s in %s: %w", bin, t.inet.Name, err)
	}
	s := &iperfServer{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(s.done) }()
	// Wait (bounded) until it listens.
	addr := netip.AddrPortFrom(inetAddr, iperfPort).String()
	for i := 0; i < 100; i++ {
		var c net.Conn
		err := t.inet.Do(func() (err error) {
			c, err = net.DialTimeout("tcp4", addr, 200*time.Millisecond)
			return err
		})
		if err == nil {
			_ = c.Close()
			return s, nil
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("%s -s exited at start", bin)
		case <-time.After(50 * time.Millisecond):
		}
	}
	s.stop()
	return nil, fmt.Errorf("%s -s not listening on %s after 5s", bin, addr)
}

// stop kills the server this run started (by its own pid).
func (s *iperfServer) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
	}
}

// iperfResult is the part of iperf3 -J output the benchmark reads.
type iperfResult struct {
	End struct {
		SumSent struct {
			BitsPerSecond float64 `json:"bits_per_second"`
			Retransmits   int     `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// tcpBulk runs one iperf3 stream priv → inet for d (after a one-second
// warm-up iperf3 omits, when d is 2 s or more) and returns the received bits per second and the
// sender's retransmits.
func tcpBulk(ctx context.Context, t *topo, bin string, d time.Duration) (bps float64, retrans int, err error) {
	secs := max(1, int(d/time.Second))
	args := []string{"-c", inetAddr.String(), "-p", strconv.Itoa(iperfPort), "-t", strconv.Itoa(secs), "-J"}
	if secs >= 2 {
		args = append(args, "-O", "1") // leave slow start out
	}
	cctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	out, err := t.priv.Command(cctx, bin, args...).Output()
	if ctx.Err() != nil {
		return 0, 0, ctx.Err()
	}
	var r iperfResult
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		return 0, 0, fmt.Errorf("iperf3 -c: %w", errors.Join(err, fmt.Errorf("output not JSON: %w", jerr)))
	}
	if r.Error != "" {
		return 0, 0, fmt.Errorf("iperf3 -c: %s", r.Error)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("iperf3 -c: %w", err)
	}
	return r.End.SumReceived.BitsPerSecond, r.End.SumSent.Retransmits, nil
}

func oneConn(addr string, req, buf []byte) error {
	c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write(req); err != nil {
		return err
	}
	n, err := io.ReadAtLeast(c, buf, connMsg)
	if err != nil {
		return err
	}
	// The server closes after answering: wait for its FIN, so the NAT
	// sees the whole connection.
	if m, err := c.Read(buf[n:]); err != io.EOF || m != 0 {
		return fmt.Errorf("want EOF after the answer, got %d bytes, %v", m, err)
	}
	return nil
}

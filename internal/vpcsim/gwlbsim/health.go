package gwlbsim

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DialFunc connects from local (a GWLB address) to remote over TCP, inside
// the GWLB's network namespace.
type DialFunc func(ctx context.Context, local netip.Addr, remote netip.AddrPort) (net.Conn, error)

// RunHealthChecks checks every registered target each interval, from the
// GWLB's address in the target's AZ, until ctx ends: a TCP connect, or an
// HTTP GET of the path answered 200-399 (AWS's default matcher), within
// the timeout.
func (g *GWLB) RunHealthChecks(ctx context.Context, dial DialFunc) {
	tick := time.NewTicker(g.cfg.HealthCheck.Interval)
	defer tick.Stop()
	for {
		var wg sync.WaitGroup
		for ip, az := range g.checkTargets() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := g.check(ctx, dial, g.Addr(az), ip)
				if ctx.Err() != nil {
					return
				}
				detail := ""
				if err != nil {
					detail = err.Error()
				}
				g.ReportCheck(ip, err == nil, detail)
			}()
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// check runs one health check of target ip from src.
func (g *GWLB) check(ctx context.Context, dial DialFunc, src, ip netip.Addr) error {
	hc := g.cfg.HealthCheck
	ctx, cancel := context.WithTimeout(ctx, hc.Timeout)
	defer cancel()
	remote := netip.AddrPortFrom(ip, hc.Port)
	c, err := dial(ctx, src, remote)
	if err != nil {
		return fmt.Errorf("%s check of %s from %s: %w", hc.Protocol, remote, src, err)
	}
	defer c.Close()
	if hc.Protocol == CheckTCP {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ELB-HealthChecker/2.0\r\nConnection: close\r\n\r\n", hc.Path, ip); err != nil {
		return fmt.Errorf("HTTP check of %s%s: send: %w", remote, hc.Path, err)
	}
	line, err := bufio.NewReaderSize(&io.LimitedReader{R: c, N: 4096}, 4096).ReadString('\n')
	if err != nil {
		return fmt.Errorf("HTTP check of %s%s: read the status line: %w", remote, hc.Path, err)
	}
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/") {
		return fmt.Errorf("HTTP check of %s%s: status line %q", remote, hc.Path, strings.TrimSpace(line))
	}
	code, err := strconv.Atoi(f[1])
	if err != nil || code < 200 || code > 399 {
		return fmt.Errorf("HTTP check of %s%s: status %q, want 200-399", remote, hc.Path, f[1])
	}
	return nil
}

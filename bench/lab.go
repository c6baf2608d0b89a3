package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/hanat/hanat/internal/netns"
)

// lab is one namespace set of a shape with its traffic generator,
// counter and servers. Every mode of every round, and every bare
// forwarder sample, gets a lab of its own, deleted before the next one is
// built: nothing a mode leaves in its namespaces (iptables-legacy's nat
// table, once registered, stays hooked in until its namespace goes;
// conntrack entries; sysctls) reaches the next mode's figures.
type lab struct {
	t     *topo
	tr    *traffic
	iperf *iperfServer // two-ENI shape, TCP figures on
	conns *connServer
}

// newLab builds a lab of the given shape. On error everything created so
// far is removed; otherwise the caller calls close.
func newLab(ctx context.Context, log *slog.Logger, opts Options, singleENI bool) (_ *lab, err error) {
	l := &lab{}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.close())
		}
	}()
	if singleENI {
		l.t, err = newSingleENITopo(ctx)
	} else {
		l.t, err = newTopo(ctx)
	}
	if err != nil {
		return nil, err
	}
	if l.tr, err = newTraffic(log, l.t, opts.Flows); err != nil {
		return nil, err
	}
	if singleENI || opts.SkipTCP {
		return l, nil
	}
	// Many short connections: a wide ephemeral port range on the client.
	if _, err := l.t.priv.Run(ctx, "sysctl", "-q", "-w", "net.ipv4.ip_local_port_range=1024 65000"); err != nil {
		return nil, err
	}
	if l.iperf, err = startIperf(ctx, l.t, opts.Iperf3); err != nil {
		return nil, err
	}
	if l.conns, err = startConnServer(l.t, 0); err != nil {
		return nil, err
	}
	return l, nil
}

// close stops the servers and deletes the namespaces.
func (l *lab) close() error {
	if l.conns != nil {
		l.conns.stop()
	}
	if l.iperf != nil {
		l.iperf.stop()
	}
	if l.tr != nil {
		l.tr.close()
	}
	if l.t == nil {
		return nil
	}
	if err := l.t.close(); err != nil {
		return fmt.Errorf("bench lab cleanup: %w", err)
	}
	return nil
}

// ipTablesNames lists the legacy iptables tables registered in ns
// (/proc/net/ip_tables_names of its network namespace; empty when
// ip_tables is not loaded). Reading the file registers nothing, unlike
// `iptables-legacy -t nat -S`, which would create the table it lists.
func ipTablesNames(ns *netns.NS) ([]string, error) {
	var names []string
	err := ns.Do(func() error {
		// thread-self: the namespace of this (locked) thread, not the
		// process's.
		b, err := os.ReadFile("/proc/thread-self/net/ip_tables_names")
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		names = strings.Fields(string(b))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("legacy iptables tables of %s: %w", ns.Name, err)
	}
	return names, nil
}

// checkNoLegacyNAT fails when iptables-legacy's nat table is registered
// in the NAT namespace while mode m (any other than iptables_legacy) is
// measured: its hooks would charge every packet of m (and of the
// benchmark's own earlier bug, a namespace set shared by all modes).
func checkNoLegacyNAT(t *topo, m Mode) error {
	if m == ModeIptablesLegacy {
		return nil
	}
	names, err := ipTablesNames(t.nat)
	if err != nil {
		return err
	}
	for _, n := range names {
		if n == "nat" {
			return fmt.Errorf("mode %s: iptables-legacy's nat table is hooked in namespace %s (tables %q): a mode's namespaces must be its own", m, t.nat.Name, names)
		}
	}
	return nil
}

package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cilium/ebpf"

	"github.com/hanat/hanat/bpf"
	"github.com/hanat/hanat/internal/netns"
)

// Test runs use the loopback interface (ifindex 1 in every namespace) as
// the ingress interface; flows egressing there are sent with XDP_TX.
const loIfindex = 1

const xdpTX = 3

var (
	costMACa = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	costMACb = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
)

// sprayCost is the fast path's per-packet cost with flows flows in its map,
// measured with BPF_PROG_TEST_RUN through the spray driver.
type sprayCost struct {
	flows       int
	maxEntries  uint32
	driver      time.Duration // driver + the empty program (bench_empty), per packet
	raw         time.Duration // driver + NAT program, per packet
	floor       time.Duration // driver + floor program (swap MACs, XDP_TX), per packet
	lookup      time.Duration // driver + floor + the flow lookup (bench_lookup), per packet
	memlock     uint64        // the flow map's kernel memory
	hits, other uint64        // NAT program verdicts during the runs
}

// net is the NAT program's own share: raw minus driver and floor.
func (s sprayCost) net() time.Duration { return s.raw - s.floor }

func (s sprayCost) bytesPerEntry() float64 { return float64(s.memlock) / float64(s.maxEntries) }

// Spray flows: source 10.1.x.y (sprayPorts ports per address), to inet.
const (
	spraySaddrBase = 0x0a010000 // 10.1.0.0
	spraySportBase = 10000
	sprayPorts     = 50000
)

func sprayKey(f int) bpf.FlowKey {
	a := spraySaddrBase + uint32(f/sprayPorts)
	src := netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
	return bpf.FlowKey{Ifindex: loIfindex, Proto: bpf.ProtoUDP,
		Src: netip.AddrPortFrom(src, uint16(spraySportBase+f%sprayPorts)),
		Dst: netip.AddrPortFrom(inetAddr, genDport)}
}

// measureSpray loads a fresh fast-path program whose flow map holds n
// flows and measures packets spread over all of them. The spray driver
// writes a whole header for the next flow on every run (the stride of
// about 0.62 n puts far-apart entries on consecutive packets; n = 1 is a
// single hot flow; burst packets per flow before the next, 1 for an even
// spread) and tail-calls the NAT program; the same driver
// tail-calling the floor program is the comparison. Rounds alternate
// between the two, so drift on a shared machine hits both alike; the
// figures are the medians of rounds calls.
func measureSpray(n, burst, rounds int, floorProg *ebpf.Program) (sprayCost, error) {
	if n < 1 || n > 16<<20 {
		return sprayCost{}, fmt.Errorf("spray: %d flows: want 1..%d", n, 16<<20)
	}
	sc := sprayCost{flows: n}
	spec, err := bpf.LoadFastpath()
	if err != nil {
		return sc, fmt.Errorf("spray %d: %w", n, err)
	}
	// Room beyond n: an LRU map evicts before it is completely full
	// (nodes sit in per-CPU free lists).
	sc.maxEntries = uint32(n + n/16 + 1024)
	spec.Maps[bpf.FastpathMapFlows].MaxEntries = sc.maxEntries
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return sc, fmt.Errorf("spray %d: load fast path: %w", n, err)
	}
	defer coll.Close()
	flows := coll.Maps[bpf.FastpathMapFlows]
	if err := fillFlows(flows, n); err != nil {
		return sc, fmt.Errorf("spray %d: %w", n, err)
	}
	if sc.memlock, err = mapMemlock(flows); err != nil {
		return sc, fmt.Errorf("spray %d: %w", n, err)
	}

	dspec, err := loadBenchXDP()
	if err != nil {
		return sc, fmt.Errorf("spray %d: %w", n, err)
	}
	stride := coprimeStride(n)
	if err := setVars(dspec, map[string]any{
		"spray_flows":      uint32(n),
		"spray_stride":     uint32(stride),
		"spray_ports":      uint32(sprayPorts),
		"spray_burst":      uint32(max(burst, 1)),
		"spray_saddr_base": uint32(spraySaddrBase),
		"spray_sport_base": uint16(spraySportBase),
		"spray_daddr":      inetAddr.As4(),
		"spray_dport":      be16(genDport),
		"spray_src_mac":    mac6(costMACa),
		"spray_dst_mac":    mac6(costMACb),
	}); err != nil {
		return sc, fmt.Errorf("spray %d: %w", n, err)
	}
	// bench_lookup looks up the fast path's own map.
	dspec.Maps[benchXDPMapFlows].MaxEntries = sc.maxEntries
	var drv struct {
		BenchSpray  *ebpf.Program `ebpf:"bench_spray"`
		BenchLookup *ebpf.Program `ebpf:"bench_lookup"`
		BenchEmpty  *ebpf.Program `ebpf:"bench_empty"`
		Target      *ebpf.Map     `ebpf:"target"`
	}
	if err := dspec.LoadAndAssign(&drv, &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{benchXDPMapFlows: flows}}); err != nil {
		return sc, fmt.Errorf("spray %d: load driver: %w", n, err)
	}
	defer drv.BenchSpray.Close()
	defer drv.BenchLookup.Close()
	defer drv.BenchEmpty.Close()
	defer drv.Target.Close()

	// Every call runs every flow at least once.
	repeat := max(n, 1<<20)
	frame := make([]byte, genFrameLen)
	nat := coll.Programs[bpf.FastpathProgHanatFastpath]
	run := func(target *ebpf.Program) (time.Duration, error) {
		if err := drv.Target.Put(uint32(0), target); err != nil {
			return 0, fmt.Errorf("tail-call slot: %w", err)
		}
		ret, d, err := drv.BenchSpray.Benchmark(frame, repeat, nil)
		if err != nil {
			return 0, fmt.Errorf("BPF_PROG_TEST_RUN: %w", err)
		}
		if ret != xdpTX {
			return 0, fmt.Errorf("verdict %d, want XDP_TX", ret)
		}
		return d, nil
	}
	// One untimed pass each brings caches and the map into the state
	// steady traffic would.
	var rawRuns, floorRuns, lookupRuns, driverRuns []time.Duration
	for i := -1; i < rounds; i++ {
		e, err := run(drv.BenchEmpty)
		if err != nil {
			return sc, fmt.Errorf("spray %d: driver + empty program: %w", n, err)
		}
		f, err := run(floorProg)
		if err != nil {
			return sc, fmt.Errorf("spray %d: driver + floor: %w", n, err)
		}
		l, err := run(drv.BenchLookup)
		if err != nil {
			return sc, fmt.Errorf("spray %d: driver + floor + lookup: %w", n, err)
		}
		r, err := run(nat)
		if err != nil {
			return sc, fmt.Errorf("spray %d: driver + fast path: %w", n, err)
		}
		if i >= 0 {
			floorRuns, lookupRuns, rawRuns = append(floorRuns, f), append(lookupRuns, l), append(rawRuns, r)
			driverRuns = append(driverRuns, e)
		}
	}
	sc.floor, sc.lookup, sc.raw = median(floorRuns), median(lookupRuns), median(rawRuns)
	sc.driver = median(driverRuns)
	var per []bpf.RawStats
	if err := coll.Maps[bpf.FastpathMapCounters].Lookup(uint32(0), &per); err != nil {
		return sc, fmt.Errorf("spray %d: counters: %w", n, err)
	}
	for _, s := range per {
		for id, v := range s.Count {
			if id == int(bpf.FastpathCounterIdCOUNTER_HIT) {
				sc.hits += v
			} else {
				sc.other += v
			}
		}
	}
	return sc, nil
}

// fillFlows writes the spray's flows 0..n-1 with batched updates.
func fillFlows(m *ebpf.Map, n int) error {
	return fillFlowMap(m, n, sprayKey, loIfindex)
}

// fillFlowMap writes flows key(0)..key(n-1), each SNATed to natOut and
// sent out of egress, with batched updates.
func fillFlowMap(m *ebpf.Map, n int, key func(int) bpf.FlowKey, egress uint32) error {
	const chunk = 1 << 16
	keys := make([]bpf.RawFlowKey, 0, chunk)
	vals := make([]bpf.RawFlowValue, 0, chunk)
	flush := func() error {
		if len(keys) == 0 {
			return nil
		}
		if _, err := m.BatchUpdate(keys, vals, nil); err != nil {
			return fmt.Errorf("fill flow map: batch update of %d: %w", len(keys), err)
		}
		keys, vals = keys[:0], vals[:0]
		return nil
	}
	for f := 0; f < n; f++ {
		k := key(f)
		a := bpf.FlowAction{NewSrc: netip.AddrPortFrom(natOut, k.Src.Port()), NewDst: k.Dst,
			EgressIfindex: egress, SrcMAC: costMACa, DstMAC: costMACb, MTU: 1500, Outbound: true}
		rk, rv, err := bpf.NewFlowEntry(k, a)
		if err != nil {
			return fmt.Errorf("flow %d: %w", f, err)
		}
		keys, vals = append(keys, rk), append(vals, rv)
		if len(keys) == chunk {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// coprimeStride is a stride near 0.62 n sharing no factor with n, so that
// stepping by it visits every flow once per n packets.
func coprimeStride(n int) int {
	if n <= 2 {
		return 1
	}
	for s := n * 618 / 1000; s < n; s++ {
		if s > 0 && gcd(s, n) == 1 {
			return s
		}
	}
	return 1
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// mapMemlock reads the kernel's memory accounting of a map (fdinfo
// "memlock", the map's actual usage since Linux 6.5).
func mapMemlock(m *ebpf.Map) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/self/fdinfo/%d", m.FD()))
	if err != nil {
		return 0, fmt.Errorf("map fdinfo: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "memlock:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("map fdinfo memlock %q: %w", v, err)
			}
			return n, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("map fdinfo: %w", err)
	}
	return 0, fmt.Errorf("map fdinfo: no memlock line")
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// RunCosts measures only the program costs (NAT program next to the
// floor, and the scale test) with BPF_PROG_TEST_RUN, in a network namespace
// of its own (its loopback is the ingress interface); no traffic leaves and
// no mode is set up. opts.CostRounds and opts.ScaleFlows apply.
func RunCosts(ctx context.Context, log *slog.Logger, opts Options) (*Report, error) {
	opts.defaults()
	if os.Geteuid() != 0 {
		return nil, errors.New("bench: program costs need root (BPF_PROG_TEST_RUN, network namespace)")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ns, err := netns.Create(netns.UniqueName("hnt-cost-"))
	if err != nil {
		return nil, fmt.Errorf("bench: program costs: %w", err)
	}
	defer func() {
		if err := ns.Close(); err != nil {
			log.Error("bench: program costs namespace cleanup", "err", err)
		}
	}()
	rep := newReport()
	if err := ns.Do(func() error { return runCosts(log, opts, rep) }); err != nil {
		return rep, err
	}
	return rep, nil
}

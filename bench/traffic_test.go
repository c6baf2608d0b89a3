package bench

import (
	"encoding/binary"
	"maps"
	"os"
	"testing"

	"github.com/cilium/ebpf"
)

// udpSumOK verifies an IPv4/UDP frame's UDP checksum from scratch: the
// one's-complement sum of the pseudo-header and the whole datagram,
// checksum included, is 0xffff (RFC 768), and the checksum is not 0 (no
// checksum).
func udpSumOK(t *testing.T, f []byte) {
	t.Helper()
	ip := f[14:]
	ulen := int(binary.BigEndian.Uint16(ip[24:]))
	udp := ip[20 : 20+ulen]
	if binary.BigEndian.Uint16(udp[6:]) == 0 {
		t.Fatalf("UDP checksum 0 (none)")
	}
	ph := make([]byte, 0, 12+ulen)
	ph = append(ph, ip[12:20]...)
	ph = append(ph, 0, ip[9], byte(ulen>>8), byte(ulen))
	ph = append(ph, udp...)
	if s := onesSum(ph); s != 0xffff {
		t.Fatalf("UDP checksum %#04x: sum %#04x, want 0xffff", binary.BigEndian.Uint16(udp[6:]), s)
	}
}

// The generator tests' flows: more than ports per destination, so the
// generator moves on to the next destination port every 100 flows (as
// genPorts in a run).
const testGenFlows, testGenPorts = 300, 100

// loadGenerator loads the benchmark's programs with the generator set for
// the test flows priv -> inet and the globals of extra. Needs root.
func loadGenerator(t *testing.T, extra map[string]any) *benchXDPObjects {
	t.Helper()
	spec, err := loadBenchXDP()
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]any{
		"gen_saddr":      privAddr.As4(),
		"gen_daddr":      inetAddr.As4(),
		"gen_sport_base": uint16(genSportBase),
		"gen_dport":      be16(genDport),
		"gen_flows":      uint32(testGenFlows),
		"gen_ports":      uint32(testGenPorts),
	}
	maps.Copy(vars, extra)
	if err := setVars(spec, vars); err != nil {
		t.Fatal(err)
	}
	objs := &benchXDPObjects{}
	if err := spec.LoadAndAssign(objs, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	return objs
}

// TestGenUDPChecksum runs the generator (bench_gen) with BPF_PROG_RUN on a
// zeroed frame, as the packet-rate test does, and checks every flow's
// datagram's UDP checksum from scratch. Needs root (CAP_BPF), no namespace.
func TestGenUDPChecksum(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to load BPF")
	}
	const flows, ports = testGenFlows, testGenPorts
	objs := loadGenerator(t, map[string]any{"gen_tot_len": be16(genFrameLen - 14)})
	out := make([]byte, genFrameLen)
	for i := 0; i < flows; i++ {
		ret, err := objs.BenchGen.Run(&ebpf.RunOptions{Data: make([]byte, genFrameLen), DataOut: out})
		if err != nil || ret != 3 { // XDP_TX
			t.Fatalf("flow %d: ret %d, %v", i, ret, err)
		}
		if sp, dp := binary.BigEndian.Uint16(out[34:]), binary.BigEndian.Uint16(out[36:]); sp != uint16(genSportBase+i%ports) || dp != uint16(genDport+i/ports) {
			t.Fatalf("flow %d: ports %d -> %d, want %d -> %d", i, sp, dp, genSportBase+i%ports, genDport+i/ports)
		}
		udpSumOK(t, out)
	}
}

// Package bench is hanat's benchmark (`make bench`, root): the same
// namespaces and the same traffic through four NATs side by side in one
// run,
//
//   - ModeNftables: hanat's nftables slow path only (table inet hanat from
//     datapath, hanat's sysctls);
//   - ModeFastpath: the same plus the XDP fast path attached in native
//     (driver) mode on the NAT's two veths and the real conntrack offload
//     engine (fastpath.Controller, as hanatd runs it) filling the flow map from conntrack
//     events, as hanatd wires them;
//   - ModeFastpathTC: the same with the fast path's tc backend
//     (fastpath.mode tc) instead of XDP, in every default run and in
//     the text table's fastpath_tc and tc/nft columns;
//   - ModeIptablesLegacy: a hand-made NAT instance as fck-nat configures it
//     (ip_forward=1, `iptables-legacy -t nat -A POSTROUTING -o <outside> -j
//     MASQUERADE`, nothing else),
//
// in the two-ENI topology
//
//	priv: c0 10.0.11.10 ─c1 ≈XDP wire≈ eth0──in0─ nat ─out0──eth0 ≈tc wire≈ s1─ s0 198.51.100.100 :inet
//	                                        10.0.11.1   198.51.100.2
//
// The hosts' TCP stacks sit behind wires (see wire): on EC2 the NAT
// receives frames from the ENA NIC, never a local sender's 64 KB GSO
// socket buffers, so the client's segments cross an XDP wire and reach
// in0 as frames in every mode, and the server side is a tc wire that
// passes socket buffers whole (the slow path's GSO output is not
// segmented on the way, as with TSO). The UDP generator and counter use
// the eth0s directly. The UDP packet rate is measured again in the
// single-ENI topology, the usual EC2 NAT instance, where the fast path
// answers with XDP_TX:
//
//	vpc: eth0 198.51.100.100 + 10.0.11.10/32 ──out0─ nat 198.51.100.2
//
// and, in both, with bare forwarders (MACs + redirect or XDP_TX, no NAT,
// no lookup) in place of the NAT: bench_fwd in native XDP mode, the
// ceiling of any XDP NAT on this machine; the same program in generic
// mode, whose packets reach the receiver as socket buffers as the slow
// path's do (the same forwarder, delivered the other way); and
// bench_fwd_tc on tcx ingress (MACs + bpf_redirect), the tc backend's
// bound. The report prints them as bounds next to the targets.
//
// Every mode of every round is measured in a namespace set (lab) of its
// own, built for it and deleted before the next mode's is built, and the
// bare forwarders of a round in another: iptables-legacy's nat table,
// once registered in a namespace, stays hooked in until the namespace
// goes, and must not charge the modes after it. runMode checks
// /proc/net/ip_tables_names of the NAT's namespace before measuring any
// other mode (TestModesInOwnNamespaces).
//
// The receiver counts on tc ingress (tcx, before the tc wire) in the
// two-ENI shape: every mode's packets reach it as socket buffers (the XDP
// fast path's frames built into one by the veth, as a NIC driver does),
// so it does the same work per packet in every mode. A native XDP
// counter, as before, copies every socket buffer into a page and not the
// redirected frames; the bare XDP forwarder's figures under that counter
// (_xdp_counter) show how much that favoured XDP. The single-ENI shape
// keeps the XDP counter: frames sent back with XDP_TX to a veth with GRO
// but no XDP program stall in its ring on this kernel.
//
// Issue 16's GWLB shape (gwlb.go; -skip-gwlb leaves it out, some 40 s):
// a GWLB fleet member in two-arm mode, the single-ENI shape with the
// GWLB's address on the peer too,
//
//	vpc: eth0 198.51.100.100 + 198.51.100.50/32 (GWLB) ──out0─ member 198.51.100.2
//
// bench_gen_geneve sends the single-ENI shape's 64-byte datagrams GENEVE-
// wrapped with AWS's three options from the GWLB to the ENI (headers built
// once by package geneve, ports and both UDP checksums written per
// packet); gwlb's tc ingress (at the head of tcx) decapsulates, the slow
// path or the tc fast path after it NATs, and the datagram leaves out0 to
// the peer's native XDP counter, as in the single-ENI shape. The reply
// direction: bench_gen sends the server's datagrams to the NAT address,
// the member de-NATs and gwlb's egress wraps them again to the GWLB,
// counted as GENEVE from the ENI. Each mode (nftables, fastpath_tc) gets a
// lab of its own per round; the warm-up (the same as every mode's) primes
// the member's flow memory. Its targets: plain single-ENI pps over GWLB
// pps, the per-packet cost ratio, at most 1.3 in each mode; their bound is
// plain NAT plus only the decap cost a bare tc forwarder pays for it
// (bench_decap_fwd_tc: strip the outer headers, MACs, redirect), and for
// the reply plus only the encap (bench_encap_fwd_tc: fixed outer headers,
// MACs, redirect), both measured in the same run; and the member doing
// strictly less: the same lab, flows and attached programs sent the inner
// frames unwrapped (udp_64b_pps_gwlb_member_plain_frames). Under the
// native XDP mode GENEVE reaches XDP before gwlb's decap, so the XDP fast
// path sees no inner flow: the member runs the slow path there (a note,
// not measured).
//
// The packet rate is measured again at scale (scale.go): 64-byte UDP
// with 1 k, 100 k and 1 M concurrent flows (Options.ScalePPSFlows), two
// ENIs, through the slow path, native XDP and tc, one sample each, each
// in a lab of its own. The generator spreads the flows over 40 k source
// ports per destination port (one SNAT address has a port range per
// destination) and the counter counts every destination port used. The
// slow path holds every flow in the kernel's conntrack: the namespace's
// nf_conntrack_max, and the host's and the hash size (global: nf_conntrack
// hashsize, as many buckets as flows) are raised for the run and put
// back. The fast path gets a flow map with room for four entries per
// flow and offloads after 4 packets instead of 16 (the warm-up of 1 M
// flows; the steady state measured does not depend on it). The targets
// want every fast-path backend at >= 3x the slow path at 1 M flows. Two
// bounds go with them, each in a lab of no mode: the bare forwarders over
// the slow path at 1 M, and the bare forwarders plus the fast path's flow
// lookup (bench_fwd_lookup, bench_fwd_lookup_tc) in a map of the same
// size holding every generator flow: strictly less than the NAT program,
// so what the kernel's hash lookup at that size leaves any fast path.
//
// TCP bulk has a bound too: iperf3 through a bare tc forwarder both ways
// (bench_fwd2_tc on in0 and out0, the hosts' MACs, a route back to the
// private subnet on the internet host, as nothing translates), in the
// bare forwarders' lab of each round: the hosts' TCP stacks and the
// wires alone.
//
// Last, the fast path is set up once per shape with fastpath.mode auto
// (hanatd's default) to record the backend it picks on each interface;
// auto's targets take that backend's column.
//
// and measures, in rounds (each round sets every mode up in turn and takes
// one sample of each figure; the report has the medians, so background load
// drifting during a run hits all modes alike):
//
//   - 64-byte UDP packets per second over many flows: an XDP program run
//     with BPF_PROG_RUN and BPF_F_TEST_XDP_LIVE_FRAMES on priv's veth
//     writes a whole header for the next flow on every run (live-frame
//     pages come back rewritten by the receivers), with the datagram's
//     real UDP checksum (pseudo-header; never 0, so the NAT's checksum
//     update is measured; TestGenUDPChecksum verifies it from scratch;
//     the program-cost driver's headers carry it too), and returns XDP_TX, so
//     real frames enter the NAT far faster than any socket loop; a
//     program on inet's veth (tc ingress, see above) counts the translated
//     datagrams that arrive and drops them. Before measuring, every flow is made ASSURED in
//     conntrack (a datagram, a reply, and another datagram more than two
//     seconds later), the same way in every mode, so the offload engine
//     offloads them. veth hands XDP frames to its peer's NAPI on the same
//     CPU, so generator, NAT and receiver run in lockstep on one CPU: the
//     figure is that chain's rate, the generator's own share included
//     (about a tenth of the fast-path chain).
//   - TCP bulk throughput with iperf3 (one stream, priv → inet), without
//     the arrival counter on inet's veth (an XDP program there would strip
//     GSO from out0 and copy every skb); with the fast path, a note says
//     how much of the stream the XDP program forwarded itself.
//   - New TCP connections per second (connect, 64-byte request and answer,
//     the server's FIN, close), with offload on (fast path) and off.
//   - The NAT program's per-packet cost on a hit, one flow, the XDP_TX
//     floor program's (bpf.LoadFloorProgram) and the floor plus the flow
//     lookup alone (bench_lookup, on the fast path's own map: the part of
//     the NAT's cost that is the kernel's LRU hash), all with BPF_PROG_TEST_RUN
//     through a driver program that writes a fresh header on every run and
//     tail-calls the program measured (a plain repeated test run would
//     feed the program its own rewritten frame). The driver's own time
//     is measured too (it tail-calls bench_empty, which only returns
//     XDP_TX); the report gives the NAT's cost above the floor in ns
//     (prog_cost_nat_above_floor) and the ratio with the driver
//     subtracted from both terms (prog_cost_nat_over_floor_own), besides
//     the plain ratio.
//   - The fast path's per-packet cost with 1 k, 100 k and 1 M flows in the
//     map, traffic spread evenly over all of them (the driver walks the
//     flows with a stride of about 0.62 n), the driver+floor cost
//     subtracted; for the largest map also with 8 packets per flow in a
//     row, for context, and the lookup alone at each size. Memory per flow is the map's kernel memory (fdinfo
//     memlock) divided by its entries.
//
// Last, the answer time of hanatd's /metrics with 10 k and 1 M of its
// NATed flows in conntrack (metrics.go): the real hanatd binary
// (Options.Hanatd; make bench builds it) runs in a namespace of its own,
// slow path only, whose table is filled with UDP entries SNATed to its
// address through ctnetlink (IPCTNL_MSG_CT_NEW with CTA_NAT_SRC, in
// acknowledged batches); hanatd is started on each size, its first
// conntrack reading must count every flow, then /metrics is fetched over
// HTTP several times (median and max), as Prometheus fetches it. The
// figure also shows what that one periodic reading cost hanatd. A
// namespace's nf_conntrack_max cannot exceed the host's, so for the 1 M
// table the host's is raised for the run and put back afterwards (also
// on error); it is the only host setting the benchmark changes (the state
// sync's tables, below, may raise it the same way).
// `hanat-bench -metrics-only` measures this figure alone.
//
// Then issue 14's state sync (sync.go, storm.go; `hanat-bench -sync-only`
// measures it alone, -skip-sync leaves it out), with the package flowsync
// as hanatd runs it:
//
//   - full sync: a NAT node's namespace (hanat's ruleset) holds
//     Options.SyncFlows (250 k) established TCP flows SNATed to its
//     address, created through conntrack.Injector; a flowsync.Sender whose
//     Source is a conntrack.Table of that namespace dials a
//     flowsync.Receiver in its peer's namespace over a veth (the sync
//     link). The figure is the time from the sender's start to the
//     receiver holding the completed snapshot, with the dump alone as its
//     bound, and the receiver's Go heap per held flow (runtime.MemStats
//     after GC, with the sender stopped so that only the receiver's view
//     is live);
//   - inject: the node's entries are flushed (a dead node's table is not
//     in the survivor's kernel), then the held flows are rewritten as at
//     a takeover (the node's SNAT address becomes the peer's address
//     carrying the node's EIP) and injected into the peer's kernel, which
//     runs the survivor's ruleset (a zone SNATed to that address); the
//     entries are read back as SNATed, established and assured. The
//     figure is Receiver.NATAddrs (what the takeover's address map is
//     made of) + Receiver.InjectTakeover, which rewrites each flow as the
//     injector's encoder takes it, overlapping the rewrite with the
//     kernel's work on the batch before (Injector.InjectSeq); shown with
//     its parts, the rewrite alone (Receiver.Takeover, for context), the
//     same takeover in steps (Held, Rewrite, Inject of the whole list),
//     and as bounds the kernel's time of the inject and of a bare
//     ctnetlink create loop of the same entries without NAT. Both use
//     one socket: ctnetlink creates entries under its subsystem's mutex,
//     and a second socket measured no faster (conntrack's
//     BenchmarkInject250k), spinning on it. Most of the kernel's time
//     per entry is hash lookups the NAT needs (the entry, the null DST
//     binding's and the SNAT tuple's uniqueness, the insert) and
//     attribute parsing;
//   - storm: short TCP connections (the conn-client helper, paced to
//     Options.StormRate, 10 k/s, or what the machine sustains below it)
//     through the two-ENI topology's NAT in the nftables and fastpath
//     modes, with sync off, with a bare subscriber on the NAT's
//     conntrack event feed (the bound: what consuming the events costs)
//     and with the Sender following the feed (Sender.Follow, the feed the
//     fast path's engine reads, as in hanatd) to a Receiver over the sync
//     link. The sync lag is measured on probe connections: from a
//     probe's connect to the receiver holding its flow, and to its event
//     reaching the feed's subscribers (the lag's bound); Sender.Status's
//     acknowledged lag is sampled too. The storm's client and server run
//     niced (on EC2 they are other machines, not on the NAT's CPUs), and
//     the NAT's TIME_WAIT timeout is 1 s so that a sample of seconds has
//     a storm's steady state of as many ends (DESTROY events) as new
//     connections.
//
// The full sync and inject raise the host's nf_conntrack_max for the run
// when 250 k entries need it, as the /metrics figure does.
//
// The hosts' veths carry traffic generated by local sockets with partial
// checksums, which an XDP rewrite cannot finish, so tx checksum offload is
// turned off on them; GRO is on everywhere (it gives veth the NAPI it needs
// to receive XDP frames). Nothing outside the namespaces is touched: the
// fast path's pins live on a private bpffs mounted in a temporary
// directory, the host's nf_conntrack_max is left alone except for the
// /metrics figure (above) and the packet rate at scale (which also
// raises the conntrack hash size), and everything is removed at the end,
// also on error or interrupt.
package bench

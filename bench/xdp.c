//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * XDP programs of hanat's benchmark (not part of the NAT):
 *
 *  bench_gen    the traffic generator, run with BPF_PROG_RUN and
 *               BPF_F_TEST_XDP_LIVE_FRAMES on the private host's veth: it
 *               writes a whole Ethernet/IPv4/UDP header for the next of
 *               gen_flows flows and returns XDP_TX, so the frame really leaves
 *               through the veth into the NAT. Live-frame pages are recycled
 *               after the receivers rewrote them in place (TTL, MACs, NAT),
 *               so every header byte is written on every run.
 *  bench_gen_geneve the GWLB shape's generator (gwlb.go): the same flows as
 *               bench_gen, each datagram GENEVE-wrapped as a GWLB sends it
 *               (outer IPv4 from the GWLB's address to the member's ENI, UDP
 *               6081, the base header and AWS's three options): the loader
 *               builds the outer headers and the inner IPv4 header once
 *               (gg_tmpl, with package geneve); every run copies them, writes
 *               the flow's inner ports and both real UDP checksums.
 *  bench_decap_fwd_tc the GWLB shape's bound: on tc ingress, strips the outer
 *               IPv4, UDP and GENEVE headers of a datagram to port 6081 (no
 *               parsing, no flow memory), writes the MACs and sends the inner
 *               packet back out (bpf_redirect): a bare forwarder plus decap.
 *  bench_encap_fwd_tc the reply direction's bound: on tc ingress, wraps a
 *               datagram to the NAT address (cnt_saddr) in fixed outer
 *               headers (gg_encap, built by the loader for the frame's one
 *               size), writes the MACs and sends it back out: a bare
 *               forwarder plus encap (no flow lookup, no de-NAT, no
 *               neighbour lookup).
 *  bench_count_tc on the internet host's veth, tc ingress (tcx, first):
 *               counts the generator's UDP datagrams (destination port
 *               cnt_dport) as they arrive after NAT, as translated (source
 *               cnt_saddr) or not, and drops them; everything else goes on
 *               (the tc wire, iperf3, ARP, ...). Every mode's packets
 *               reach it as socket buffers: the same work per packet.
 *  bench_count  the same counter as a native XDP program (the benchmark's
 *               counter before; kept to show its asymmetry: a socket buffer
 *               arriving at a veth with XDP is copied into a page first, a
 *               redirected frame is not).
 *  bench_fwd    the ceiling: on the NAT's receiving interface in place of
 *               the NAT, a bare forwarder (write the MACs, then XDP_TX, or
 *               redirect to fwd_ifindex through fwd_port). No NAT, no flow
 *               lookup: the packet rate of the same chain with the least an
 *               XDP forwarder can do, which bounds any XDP NAT's rate here.
 *  bench_fwd_tc the tc bound: the same on tc ingress (MACs, bpf_redirect).
 *  bench_fwd_lookup, bench_fwd_lookup_tc
 *               the scale test's bounds: bench_fwd and bench_fwd_tc plus
 *               the fast path's flow lookup in `flows` (the fast path's
 *               map layout, filled with the generator's flows); a miss
 *               goes on untouched. Strictly less than the NAT program (no
 *               rewrite, no checks, no accounting): at 1 M flows, what the
 *               kernel's hash lookup leaves any fast path of this shape.
 *               With fwd_lookup_touch they also read the value found and
 *               add to its counters: what the kernel's hash leaves a fast
 *               path that keeps its rewrite and counters in the value.
 *  bench_fwd2_tc the TCP bound: a bare tc forwarder both ways (fwd_hops:
 *               ingress ifindex -> egress ifindex and MACs), IPv4 only
 *               (ARP goes to the stack), no NAT, no lookup, no TTL.
 *  bench_lookup the floor plus the fast path's flow lookup: builds the same
 *               16-byte key from the frame, looks it up in `flows` (the
 *               fast path's own map, passed in at load), swaps the MACs and
 *               returns XDP_TX (XDP_PASS on a miss). Next to the floor and
 *               the NAT program it splits the NAT's cost into the kernel's
 *               hash lookup and everything else.
 *  wire_xdp     a wire between two veths of one host namespace (native
 *               XDP): every frame arriving on an interface is redirected,
 *               unchanged, to the interface wire_xdp_ports names for it. Put
 *               between a host's TCP stack and the NAT it makes the NAT
 *               receive frames, as from a NIC, instead of the sender's
 *               (GSO) socket buffers.
 *  wire_tc      the same on tc ingress (tcx): socket buffers, GSO ones
 *               included, are redirected whole (the NAT's transmit side,
 *               where a wire of frames would charge the slow path a
 *               software segmentation a TSO NIC does not).
 *  bench_spray  for BPF_PROG_TEST_RUN cost runs over many flows: writes the
 *               header of flow i (i walks the spray_flows flows with a
 *               stride, so consecutive flows are far-apart map entries;
 *               spray_burst packets per flow) and tail-calls the program in
 *               slot 0 of `target`: the NAT program, or the floor program to
 *               measure the harness alone.
 *
 * Configuration is read-only data set by the loader; addresses and ports
 * are in network byte order.
 */
#include "hanat_kernel.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define BPF_MAP_TYPE_PROG_ARRAY 3

#define GEN_HDR_LEN (sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr))

volatile const __u8 gen_src_mac[ETH_ALEN];
volatile const __u8 gen_dst_mac[ETH_ALEN];
volatile const __be32 gen_saddr;
volatile const __be32 gen_daddr;
volatile const __u16 gen_sport_base; /* host order: flow i uses base + i % gen_ports */
volatile const __be16 gen_dport;     /* flow i: gen_dport + i / gen_ports */
volatile const __u32 gen_flows = 1;
volatile const __u32 gen_ports = 65535; /* flows per destination port */
volatile const __be16 gen_ip_check; /* constant: only the ports vary */
volatile const __be16 gen_tot_len;  /* IPv4 total length */

__u32 gen_next; /* next flow; one generator thread, so no atomics */

/* The real UDP checksum (RFC 768, pseudo-header) of a datagram whose
 * payload is all zero bytes, as the generators' frames are (their pages
 * start zeroed and nothing on the way writes past the UDP header). The
 * one's-complement sum is byte-order independent (RFC 1071), so the
 * network-order fields are summed as they are. A sum of 0 is sent as
 * 0xffff (0 would mean no checksum). */
static __always_inline __be16 udp_check(__be32 saddr, __be32 daddr, __be16 sport, __be16 dport,
					__be16 ulen)
{
	__u32 sum = (saddr >> 16) + (saddr & 0xffff) + (daddr >> 16) + (daddr & 0xffff) +
		    bpf_htons(IPPROTO_UDP) + 2 * (__u32)ulen + sport + dport;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = ~sum & 0xffff;
	return sum ? (__be16)sum : 0xffff;
}

static __always_inline void write_udp_header(struct ethhdr *eth, const volatile __u8 *dst_mac,
					      const volatile __u8 *src_mac, __be32 saddr, __be32 daddr,
					      __be16 sport, __be16 dport, __be16 tot_len, __be16 check)
{
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *uh = (void *)(ip + 1);

	/* Byte by byte through the volatile pointers: a memcpy from a const
	 * global would be folded to its zero initial value. */
#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++) {
		eth->h_dest[i] = dst_mac[i];
		eth->h_source[i] = src_mac[i];
	}
	eth->h_proto = bpf_htons(ETH_P_IP);
	*(__u8 *)ip = 0x45; /* version 4, IHL 5 */
	ip->tos = 0;
	ip->tot_len = tot_len;
	ip->id = 0;
	ip->frag_off = 0;
	ip->ttl = 64;
	ip->protocol = IPPROTO_UDP;
	ip->check = check;
	ip->saddr = saddr;
	ip->daddr = daddr;
	uh->source = sport;
	uh->dest = dport;
	uh->len = bpf_htons(bpf_ntohs(tot_len) - sizeof(struct iphdr));
	uh->check = udp_check(saddr, daddr, sport, dport, uh->len);
}

SEC("xdp")
int bench_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 f = gen_next;

	if (data + GEN_HDR_LEN > data_end)
		return XDP_ABORTED;
	gen_next = f + 1 >= gen_flows ? 0 : f + 1;
	/* More flows than source ports: the next destination port (one SNAT
	 * address has a source port range per destination). */
	write_udp_header(data, gen_dst_mac, gen_src_mac, gen_saddr, gen_daddr,
			 bpf_htons((__u16)(gen_sport_base + f % gen_ports)),
			 bpf_htons((__u16)(bpf_ntohs(gen_dport) + f / gen_ports)), gen_tot_len,
			 gen_ip_check);
	return XDP_TX;
}

/* The GWLB generator's frame: Ethernet, outer IPv4 (checksum in), UDP
 * (checksum 0), GENEVE with its options, inner IPv4 (checksum in), inner
 * UDP (ports and checksum 0), two payload bytes: whole words. */
#define GG_INNER_UDP (sizeof(struct ethhdr) + 20 + 8 + 40 + 20)
#define GG_TMPL_WORDS ((GG_INNER_UDP + 8 + 2) / 4)
#define GG_OUTER_CHECK (sizeof(struct ethhdr) + 20 + 6)

volatile const __u32 gg_tmpl[GG_TMPL_WORDS];
/* The one's-complement sum of the outer UDP checksum's constant part: the
 * pseudo-header and the whole datagram with the inner ports and both UDP
 * checksums 0 (as the words lie in the packet, like udp_check's). */
volatile const __be16 gg_outer_sum;

static __always_inline __u32 fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	return (sum & 0xffff) + (sum >> 16);
}

SEC("xdp")
int bench_gen_geneve(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 f = gen_next, *w = data, sum;
	struct udphdr *inner = data + GG_INNER_UDP;
	__be16 *outer_check = data + GG_OUTER_CHECK;

	if (data + GG_TMPL_WORDS * 4 > data_end)
		return XDP_ABORTED;
	gen_next = f + 1 >= gen_flows ? 0 : f + 1;
#pragma unroll
	for (int i = 0; i < GG_TMPL_WORDS; i++)
		w[i] = gg_tmpl[i];
	inner->source = bpf_htons((__u16)(gen_sport_base + f % gen_ports));
	inner->dest = bpf_htons((__u16)(bpf_ntohs(gen_dport) + f / gen_ports));
	inner->check = udp_check(gen_saddr, gen_daddr, inner->source, inner->dest, inner->len);
	/* The outer checksum covers the inner header: its ports and checksum
	 * are the only words that change. */
	sum = fold((__u32)gg_outer_sum + inner->source + inner->dest + inner->check);
	sum = ~sum & 0xffff;
	*outer_check = sum ? (__be16)sum : 0xffff;
	return XDP_TX;
}

volatile const __be32 cnt_saddr;
volatile const __be16 cnt_dport;
volatile const __u16 cnt_dports = 1; /* ports from cnt_dport on */

enum { CNT_TRANSLATED = 0, CNT_UNTRANSLATED, CNT_MAX };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, CNT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} cnt_packets SEC(".maps");

/* Counts one arrival if it is one of the generators' datagrams (1), else
 * leaves it alone (0). The same work whatever delivered the packet. */
static __always_inline int count_arrival(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *uh = (void *)(ip + 1);
	__u32 k;
	__u64 *c;

	if ((void *)(uh + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) ||
	    ip->ihl != 5 || ip->protocol != IPPROTO_UDP ||
	    (__u16)(bpf_ntohs(uh->dest) - bpf_ntohs(cnt_dport)) >= cnt_dports)
		return 0;
	k = ip->saddr == cnt_saddr ? CNT_TRANSLATED : CNT_UNTRANSLATED;
	c = bpf_map_lookup_elem(&cnt_packets, &k);
	if (c)
		*c += 1;
	return 1;
}

SEC("xdp")
int bench_count(struct xdp_md *ctx)
{
	return count_arrival((void *)(long)ctx->data, (void *)(long)ctx->data_end) ? XDP_DROP : XDP_PASS;
}

#define TC_ACT_OK 0
#define TC_ACT_SHOT 2

/* The counter on tc ingress (tcx, first in the chain): every packet
 * reaches it as a socket buffer, the slow path's as it was sent, the XDP
 * fast path's frames built into one by the veth as a NIC driver builds
 * them. Whatever is not counted goes on to the next program (the tc
 * wire) or the stack. */
SEC("tc")
int bench_count_tc(struct __sk_buff *skb)
{
	return count_arrival((void *)(long)skb->data, (void *)(long)skb->data_end) ? TC_ACT_SHOT
										   : TC_ACT_UNSPEC;
}

volatile const __u8 fwd_src_mac[ETH_ALEN];
volatile const __u8 fwd_dst_mac[ETH_ALEN];
volatile const __u32 fwd_ifindex; /* 0: XDP_TX */

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} fwd_port SEC(".maps");

static __always_inline int fwd_write_macs(void *data, void *data_end)
{
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return 0;
#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++) {
		eth->h_dest[i] = fwd_dst_mac[i];
		eth->h_source[i] = fwd_src_mac[i];
	}
	return 1;
}

SEC("xdp")
int bench_fwd(struct xdp_md *ctx)
{
	if (!fwd_write_macs((void *)(long)ctx->data, (void *)(long)ctx->data_end))
		return XDP_PASS;
	if (!fwd_ifindex)
		return XDP_TX;
	return bpf_redirect_map(&fwd_port, fwd_ifindex, XDP_PASS);
}

/* The tc bound: the same bare forwarder on tc ingress (MACs, then
 * bpf_redirect to fwd_ifindex's egress, or back out of the receiving
 * interface when it is 0), no NAT, no lookup. */
SEC("tc")
int bench_fwd_tc(struct __sk_buff *skb)
{
	if (!fwd_write_macs((void *)(long)skb->data, (void *)(long)skb->data_end))
		return TC_ACT_UNSPEC;
	return bpf_redirect(fwd_ifindex ? fwd_ifindex : skb->ifindex, 0);
}

/* include/uapi/linux/bpf.h */
#define BPF_ADJ_ROOM_MAC 1
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)
#define GENEVE_PORT 6081
/* What GWLB's encapsulation adds: outer IPv4, UDP, GENEVE with AWS's
 * three options. */
#define GWLB_OVERHEAD (20 + 8 + 40)

/* udp_ip is the IPv4 header of an skb holding Ethernet, IPv4 and a UDP
 * header, else NULL (the bounds checked for the UDP header after an
 * option-less IPv4 header). */
static __always_inline struct iphdr *udp_ip(struct __sk_buff *skb)
{
	struct ethhdr *eth = (void *)(long)skb->data;
	struct iphdr *ip = (void *)(eth + 1);

	if ((void *)ip + sizeof(*ip) + sizeof(struct udphdr) > (void *)(long)skb->data_end ||
	    eth->h_proto != bpf_htons(ETH_P_IP) || ip->protocol != IPPROTO_UDP)
		return NULL;
	return ip;
}

/* fwd_back writes the bare forwarders' MACs and sends the skb back out of
 * its interface. */
static __always_inline int fwd_back(struct __sk_buff *skb)
{
	if (!fwd_write_macs((void *)(long)skb->data, (void *)(long)skb->data_end))
		return TC_ACT_SHOT;
	return bpf_redirect(skb->ifindex, 0);
}

/* The GWLB shape's bound: decap and a bare forwarder, nothing else (no
 * GWLB address check, no option parsing, no flow memory, no NAT). */
SEC("tc")
int bench_decap_fwd_tc(struct __sk_buff *skb)
{
	struct iphdr *ip = udp_ip(skb);

	if (!ip || ((struct udphdr *)(ip + 1))->dest != bpf_htons(GENEVE_PORT))
		return TC_ACT_UNSPEC;
	if (bpf_skb_adjust_room(skb, -GWLB_OVERHEAD, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_DECAP_L3_IPV4) &&
	    bpf_skb_adjust_room(skb, -GWLB_OVERHEAD, BPF_ADJ_ROOM_MAC, 0))
		return TC_ACT_SHOT;
	return fwd_back(skb);
}

#define BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 (1ULL << 1)
#define BPF_F_ADJ_ROOM_ENCAP_L4_UDP (1ULL << 4)

/* The outer IPv4, UDP and GENEVE headers of the reply direction's frames
 * (all one size), checksums in. */
volatile const __u8 gg_encap[GWLB_OVERHEAD];

SEC("tc")
int bench_encap_fwd_tc(struct __sk_buff *skb)
{
	struct iphdr *ip = udp_ip(skb);

	if (!ip || ip->daddr != cnt_saddr)
		return TC_ACT_UNSPEC;
	if (bpf_skb_adjust_room(skb, GWLB_OVERHEAD, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP))
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, sizeof(struct ethhdr), (const void *)gg_encap, GWLB_OVERHEAD, 0))
		return TC_ACT_SHOT;
	return fwd_back(skb);
}

/* The fast path's flow key and map (same layout as bpf/fastpath.c; the
 * loader replaces this map with the fast path's). */
struct lookup_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u32 ifindex_proto;
};

struct lookup_value {
	__u64 words[8];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1);
	__type(key, struct lookup_key);
	__type(value, struct lookup_value);
} flows SEC(".maps");

/* The empty program: the program-cost driver's own time (tail call
 * included) is the cost of tail-calling it. */
SEC("xdp")
int bench_empty(struct xdp_md *ctx)
{
	return XDP_TX;
}

SEC("xdp")
int bench_lookup(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *uh = (void *)(ip + 1);
	struct lookup_key key;
	__u8 tmp[ETH_ALEN];

	if ((void *)(uh + 1) > data_end)
		return XDP_PASS;
	__builtin_memcpy(&key.saddr, &ip->saddr, 8);
	__builtin_memcpy(&key.sport, uh, 4);
	key.ifindex_proto = ctx->ingress_ifindex << 8 | ip->protocol;
	if (!bpf_map_lookup_elem(&flows, &key))
		return XDP_PASS;
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	return XDP_TX;
}

/* What the lookup bounds do with the value they find: 0 nothing; 1 read
 * the rewrite (the value's first line) and add the packet and its bytes to
 * the flow's counters, as a hit of the fast path does (fp_account): the
 * per-flow memory a fast path keeping its flows in the kernel's hash
 * touches, with no rewrite and no checks. */
volatile const __u32 fwd_lookup_touch = 0;

/* fwd_lookup_hit: whether the frame's UDP flow, as the fast path keys
 * it (bench_lookup's key), is in flows; with fwd_lookup_touch, its value
 * read and its counters added to. */
static __always_inline int fwd_lookup_hit(void *data, void *data_end, __u32 ifindex)
{
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *uh = (void *)(ip + 1);
	struct lookup_key key;
	struct lookup_value *v;

	if ((void *)(uh + 1) > data_end)
		return 0;
	__builtin_memcpy(&key.saddr, &ip->saddr, 8);
	__builtin_memcpy(&key.sport, uh, 4);
	key.ifindex_proto = ifindex << 8 | ip->protocol;
	v = bpf_map_lookup_elem(&flows, &key);
	if (!v)
		return 0;
	if (fwd_lookup_touch) {
		/* words[0]: the new addresses, read as the rewrite reads them;
		 * words[6..7]: packets and bytes (flow_value's layout). */
		if (*(volatile __u64 *)&v->words[0] == 0)
			return 0;
		v->words[6] += 1;
		v->words[7] += bpf_ntohs(ip->tot_len);
	}
	return 1;
}

SEC("xdp")
int bench_fwd_lookup(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;

	if (!fwd_lookup_hit(data, data_end, ctx->ingress_ifindex) || !fwd_write_macs(data, data_end))
		return XDP_PASS;
	if (!fwd_ifindex)
		return XDP_TX;
	return bpf_redirect_map(&fwd_port, fwd_ifindex, XDP_PASS);
}

SEC("tc")
int bench_fwd_lookup_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;

	if (!fwd_lookup_hit(data, data_end, skb->ingress_ifindex) || !fwd_write_macs(data, data_end))
		return TC_ACT_UNSPEC;
	return bpf_redirect(fwd_ifindex ? fwd_ifindex : skb->ifindex, 0);
}

/* bench_fwd2_tc's next hop of each receiving interface. */
struct fwd_hop {
	__u32 ifindex;
	__u8 src_mac[ETH_ALEN];
	__u8 dst_mac[ETH_ALEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, struct fwd_hop);
} fwd_hops SEC(".maps");

SEC("tc")
int bench_fwd2_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	__u32 in = skb->ingress_ifindex;
	struct fwd_hop *hop;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_UNSPEC;
	hop = bpf_map_lookup_elem(&fwd_hops, &in);
	if (!hop)
		return TC_ACT_UNSPEC;
	__builtin_memcpy(eth->h_dest, hop->dst_mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, hop->src_mac, ETH_ALEN);
	return bpf_redirect(hop->ifindex, 0);
}

/* key: ingress ifindex, value: where its frames go */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u32);
} wire_xdp_ports SEC(".maps");

SEC("xdp")
int wire_xdp(struct xdp_md *ctx)
{
	return bpf_redirect_map(&wire_xdp_ports, ctx->ingress_ifindex, XDP_PASS);
}

/* struct __sk_buff is hanat_kernel.h's. */
#define WIRE_TC_PORTS 256

/* index: ingress ifindex, value: where its packets go (0: none) */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, WIRE_TC_PORTS);
	__type(key, __u32);
	__type(value, __u32);
} wire_tc_ports SEC(".maps");

SEC("tc")
int wire_tc(struct __sk_buff *skb)
{
	__u32 in = skb->ingress_ifindex;
	__u32 *out = bpf_map_lookup_elem(&wire_tc_ports, &in);

	if (!out || !*out)
		return TC_ACT_OK;
	return bpf_redirect(*out, 0);
}

volatile const __u32 spray_flows = 1;
volatile const __u32 spray_stride = 1; /* coprime with spray_flows */
volatile const __u32 spray_ports = 1;  /* flows per source address */
volatile const __u32 spray_burst = 1;  /* packets per flow before the next */
volatile const __u32 spray_saddr_base; /* host order */
volatile const __u16 spray_sport_base; /* host order */
volatile const __be32 spray_daddr;
volatile const __be16 spray_dport;
volatile const __u8 spray_src_mac[ETH_ALEN];
volatile const __u8 spray_dst_mac[ETH_ALEN];

__u32 spray_next;
__u32 spray_sent; /* packets of the current flow so far */

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} target SEC(".maps");

SEC("xdp")
int bench_spray(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	__u32 f = spray_next, n = f + spray_stride;

	if (data + GEN_HDR_LEN > data_end)
		return XDP_ABORTED;
	if (++spray_sent >= spray_burst) {
		spray_sent = 0;
		spray_next = n >= spray_flows ? n - spray_flows : n;
	}
	write_udp_header(data, spray_dst_mac, spray_src_mac, bpf_htonl(spray_saddr_base + f / spray_ports),
			 spray_daddr, bpf_htons((__u16)(spray_sport_base + f % spray_ports)), spray_dport,
			 bpf_htons(46), 0);
	bpf_tail_call(ctx, &target, 0);
	return XDP_ABORTED; /* slot empty */
}

char _license[] SEC("license") = "Dual BSD/GPL";

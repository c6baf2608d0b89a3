//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * hanat XDP fast path for established, NATed IPv4 flows.
 *
 * The kernel (nftables + conntrack) decides every new flow; userspace
 * (conntrack/) writes both directions of an established flow into `flows`.
 * On a hit this program rewrites addresses and ports, fixes the IPv4 and
 * TCP/UDP checksums incrementally from precomputed deltas, decrements the
 * TTL, sets the MACs and sends the frame: XDP_TX when the egress interface is
 * the ingress one (the single-ENI NAT instance), else bpf_redirect_map
 * through `tx_ports`. Everything else goes XDP_PASS to the slow path with a
 * per-CPU counter naming the reason. It never returns XDP_DROP or XDP_ABORTED.
 *
 * Per-packet cost is the point of this program (issue 5's benchmark): one
 * flow lookup with a 16-byte key, no clock, no atomics, one devmap lookup
 * only when redirecting, one per-CPU statistics lookup, word-sized copies.
 */
#include "hanat_kernel.h"
#include "csum.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

/*
 * Flow key: the packet's pre-NAT 5-tuple as it arrives, plus the ingress
 * interface, in 16 bytes with no implicit padding (the key is hashed and
 * compared byte for byte, and with the LRU element header (48 bytes) it
 * fills exactly one cache line). Addresses and ports are in network byte
 * order as in the packet; ifindex_proto is the ingress ifindex << 8 | the
 * IP protocol, host order, so ingress ifindexes up to FLOW_IFINDEX_MAX fit
 * (Go rejects larger ones; the program treats a packet arriving on a larger
 * one as a miss). IPv4 only: a future NAT64/IPv6 fast path gets a map of its
 * own rather than widening every IPv4 key.
 */
struct flow_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u32 ifindex_proto;
};

#define FLOW_IFINDEX_MAX 0xffffff

/* flow_value.flags */
#define FLOW_F_OUTBOUND 0x1 /* private host -> internet; else inbound */

/*
 * Flow value: what to write and where to send it, plus counters; 64 bytes,
 * so an LRU element (48-byte header, 16-byte key, value) is 128 bytes: two
 * whole cache lines, the second one all value.
 *
 * l3_csum_delta is the one's-complement sum of (~old + new) over the IPv4
 * header words that change (source and destination address and the TTL
 * decrement); l4_csum_delta covers the pseudo-header addresses and the ports.
 * Both are stored in network byte order. dst_mac and src_mac are in frame
 * order (one 12-byte copy); the frame's own VLAN tag, if any, is kept. mtu
 * is the egress L3 MTU: frames whose IPv4 total length exceeds it go to the
 * slow path (which fragments or sends ICMP). flags: FLOW_F_OUTBOUND picks
 * the direction totals a hit adds to. packets/bytes (IPv4 total length, as
 * conntrack counts) are plain (non-atomic) adds on the shared value, see the
 * hit path. There is no last-seen time: reading a clock per packet cost more
 * than the rest of the bookkeeping, and userspace's sweep sees activity as
 * the packet counter changing between two reads.
 */
struct flow_value {
	__be32 new_saddr;
	__be32 new_daddr;
	__be16 new_sport;
	__be16 new_dport;
	__be16 l3_csum_delta;
	__be16 l4_csum_delta;
	__u8 dst_mac[ETH_ALEN];
	__u8 src_mac[ETH_ALEN];
	__u16 mtu;
	__u16 flags;
	__u32 egress_ifindex;
	__u32 reserved[3]; /* 0; pads the value to 64 bytes */
	__u64 packets;
	__u64 bytes;
};

_Static_assert(sizeof(struct flow_key) == 16, "flow_key must be 16 bytes");
_Static_assert(sizeof(struct flow_value) == 64, "flow_value must be 64 bytes");

/* Index into fastpath_stats.count. Keep in sync with Counters in fastpath.go. */
enum counter_id {
	COUNTER_HIT = 0,
	COUNTER_MISS,
	COUNTER_PASS_SYN,
	COUNTER_PASS_FIN,
	COUNTER_PASS_RST,
	COUNTER_PASS_FRAGMENT,
	COUNTER_PASS_IP_OPTIONS,
	COUNTER_PASS_TTL,
	COUNTER_PASS_NOT_TCP_UDP,
	COUNTER_PASS_TOO_BIG,
	COUNTER_PASS_NOT_IPV4,
	COUNTER_PASS_PARSE,
	COUNTER_PASS_REDIRECT,
	COUNTER_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* overridden by LoadOptions.MaxFlows */
	__type(key, struct flow_key);
	__type(value, struct flow_value);
} flows SEC(".maps");

/* Egress interfaces other than the ingress one: key and value = ifindex. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} tx_ports SEC(".maps");

/* Forwarded traffic of one direction. */
struct dir_totals {
	__u64 packets;
	__u64 bytes; /* IPv4 total lengths */
};

/* flow_value.flags & FLOW_F_OUTBOUND indexes fastpath_stats.dir. */
enum flow_dir {
	FLOW_DIR_IN = 0,  /* internet -> private host */
	FLOW_DIR_OUT = 1, /* private host -> internet */
};

/*
 * The per-CPU statistics: one slot per CPU holding every counter, so a
 * packet costs one (inlined) lookup however many counters it adds to.
 * count[] has one counter per packet (its verdict or pass reason); dir[]
 * splits the hits by direction for NAT-gateway style metrics.
 */
struct fastpath_stats {
	__u64 count[COUNTER_MAX];
	struct dir_totals dir[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fastpath_stats);
} counters SEC(".maps");

static __always_inline struct fastpath_stats *stats_slot(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&counters, &zero);
}

/*
 * A BPF-to-BPF call rather than inlined: it is off the hit path, one copy is
 * smaller than a dozen inlined ones, and its signature keeps enum counter_id
 * in the object's BTF for bpf2go (-type counter_id).
 */
static __attribute__((noinline)) int pass(enum counter_id id)
{
	struct fastpath_stats *s = stats_slot();

	if (s)
		s->count[id] += 1; /* per-CPU slot: no atomic needed */
	return XDP_PASS;
}

SEC("xdp")
int hanat_fastpath(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct flow_key key;
	struct flow_value *v;
	struct fastpath_stats *s;
	struct iphdr *ip;
	void *l4;
	__be16 h_proto;
	__u32 tot_len, in_ifindex;
	__u16 *l4_check;
	int act;

	if ((void *)(eth + 1) > data_end)
		return pass(COUNTER_PASS_PARSE);
	h_proto = eth->h_proto;
	ip = (void *)(eth + 1);
	if (h_proto == bpf_htons(ETH_P_8021Q)) {
		struct vlan_hdr *vh = (void *)(eth + 1);

		if ((void *)(vh + 1) > data_end)
			return pass(COUNTER_PASS_PARSE);
		h_proto = vh->h_vlan_encapsulated_proto;
		ip = (void *)(vh + 1);
	}
	/* Anything else, including a second (QinQ) tag, is not ours. */
	if (h_proto != bpf_htons(ETH_P_IP))
		return pass(COUNTER_PASS_NOT_IPV4);

	if ((void *)(ip + 1) > data_end)
		return pass(COUNTER_PASS_PARSE);
	if (ip->version != 4 || ip->ihl < 5)
		return pass(COUNTER_PASS_PARSE);
	if (ip->ihl != 5)
		return pass(COUNTER_PASS_IP_OPTIONS);
	tot_len = bpf_ntohs(ip->tot_len);
	if (tot_len < sizeof(*ip) || (void *)ip + tot_len > data_end)
		return pass(COUNTER_PASS_PARSE);
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return pass(COUNTER_PASS_FRAGMENT);
	if (ip->ttl <= 1)
		return pass(COUNTER_PASS_TTL);

	/* TCP and UDP both start with the source and destination port; only
	 * where the checksum sits differs. */
	l4 = ip + 1;
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end ||
		    tot_len < sizeof(*ip) + sizeof(*th) || (th->doff_res >> 4) < 5)
			return pass(COUNTER_PASS_PARSE);
		/* conntrack must see every state change. */
		if (th->flags & TCP_FLAG_RST)
			return pass(COUNTER_PASS_RST);
		if (th->flags & TCP_FLAG_FIN)
			return pass(COUNTER_PASS_FIN);
		if (th->flags & TCP_FLAG_SYN)
			return pass(COUNTER_PASS_SYN);
		l4_check = &th->check;
	} else if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end ||
		    tot_len < sizeof(*ip) + sizeof(*uh))
			return pass(COUNTER_PASS_PARSE);
		l4_check = &uh->check;
	} else {
		return pass(COUNTER_PASS_NOT_TCP_UDP);
	}

	in_ifindex = ctx->ingress_ifindex;
	if (in_ifindex > FLOW_IFINDEX_MAX)
		return pass(COUNTER_MISS); /* no flow can have this key */
	/* Addresses and ports as two word copies (saddr and daddr are
	 * adjacent in the header and in the key, so are the ports). */
	__builtin_memcpy(&key.saddr, &ip->saddr, 8);
	__builtin_memcpy(&key.sport, (const __u32 *)l4, 4);
	key.ifindex_proto = in_ifindex << 8 | ip->protocol;

	v = bpf_map_lookup_elem(&flows, &key);
	if (!v)
		return pass(COUNTER_MISS);
	if (tot_len > v->mtu)
		return pass(COUNTER_PASS_TOO_BIG);
	act = XDP_TX;
	if (v->egress_ifindex != in_ifindex) {
		/* One devmap lookup: bpf_redirect_map only records the target
		 * (the frame is sent after the program returns XDP_REDIRECT)
		 * and returns the fallback XDP_PASS when the egress port is not
		 * in tx_ports, so calling it before touching the frame sends a
		 * flow without a port to the slow path unmodified. Nothing
		 * after this point can fail. */
		act = bpf_redirect_map(&tx_ports, v->egress_ifindex, XDP_PASS);
		if (act != XDP_REDIRECT)
			return pass(COUNTER_PASS_REDIRECT);
	}

	__builtin_memcpy(&ip->saddr, &v->new_saddr, 8); /* and daddr */
	ip->ttl--;
	ip->check = csum_apply(ip->check, v->l3_csum_delta);
	__builtin_memcpy((__u32 *)l4, (const __u32 *)&v->new_sport, 4); /* and new_dport */
	if (ip->protocol == IPPROTO_TCP) {
		*l4_check = csum_apply(*l4_check, v->l4_csum_delta);
	} else if (*l4_check) {
		/* UDP: 0 means "no checksum" and stays 0; a computed 0 is
		 * sent as 0xffff (RFC 768). */
		__u16 sum = csum_apply(*l4_check, v->l4_csum_delta);

		*l4_check = sum ? sum : 0xffff;
	}
	/* h_dest and h_source from dst_mac and src_mac (adjacent, 4-byte
	 * aligned in the value): three word copies. */
	__builtin_memcpy((__u32 *)eth, (const __u32 *)v->dst_mac, 2 * ETH_ALEN);

	/* Plain adds: the value is shared by all CPUs, so two CPUs hitting the
	 * same flow at once can lose an increment (and, rarely, a stalled
	 * store can move the counter back a little). That is acceptable: these
	 * are statistics and an activity signal (the sweep only asks whether
	 * the counter changed), and a locked add costs more than the rest of
	 * the bookkeeping. One flow direction is usually on one RX queue, so
	 * one CPU, anyway. */
	v->packets += 1;
	v->bytes += tot_len;
	s = stats_slot();
	if (s) {
		struct dir_totals *d = &s->dir[v->flags & FLOW_F_OUTBOUND];

		s->count[COUNTER_HIT] += 1;
		d->packets += 1;
		d->bytes += tot_len;
	}
	return act;
}

char _license[] SEC("license") = "Dual BSD/GPL";

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
 * The maps, the parse and lookup and the hit's accounting are in
 * include/fastpath.h, shared with the tc program (fastpath_tc.c).
 *
 * Per-packet cost is the point of this program (issue 5's benchmark): one
 * flow lookup with a 16-byte key, no clock, no atomics, one devmap lookup
 * only when redirecting, one per-CPU statistics lookup, word-sized copies.
 */
#include "fastpath.h"
#include "csum.h"

#define PASS(id) (fp_count(id), XDP_PASS)

SEC("xdp")
int hanat_fastpath(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct fp_packet p;
	struct flow_value *v;
	struct iphdr *ip;
	enum counter_id why;
	__u32 in_ifindex = ctx->ingress_ifindex;
	__u16 *l4_check;
	int act;

	v = fp_classify(data, data_end, data_end - data, in_ifindex, 0, &p, &why);
	if (!v)
		return PASS(why);
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
			return PASS(COUNTER_PASS_REDIRECT);
	}

	ip = p.ip;
	l4_check = p.l4_check;
	__builtin_memcpy(&ip->saddr, &v->new_saddr, 8); /* and daddr */
	ip->ttl--;
	ip->check = csum_apply(ip->check, v->l3_csum_delta);
	__builtin_memcpy((__u32 *)p.l4, (const __u32 *)&v->new_sport, 4); /* and new_dport */
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

	fp_account(v, p.tot_len, 1, 0);
	return act;
}

char _license[] SEC("license") = "Dual BSD/GPL";

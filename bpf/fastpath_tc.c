//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * hanat tc fast path: the XDP program's flows forwarded from tc ingress
 * (tcx, or a clsact filter on older kernels), for interfaces where native
 * XDP is not to be had (ENA above MTU 3498, veths whose peer cannot take
 * XDP frames). Unlike generic XDP it leaves GRO and GSO on: a GRO packet of
 * many segments is looked up once, and leaves as a GSO packet the egress
 * driver (or the stack) segments.
 *
 * Parse, lookup, MTU check and accounting are include/fastpath.h's, the
 * same as the XDP program's, on the same maps. What differs is the write:
 * an skb carries a checksum-offload state, so every change goes through the
 * kernel's helpers, which keep it right:
 *   - bpf_l3_csum_replace with the flow's IPv4 header delta;
 *   - bpf_l4_csum_replace twice, the address change with BPF_F_PSEUDO_HDR
 *     (for CHECKSUM_PARTIAL, whose checksum field holds only the pseudo
 *     header's sum, only this one applies; for CHECKSUM_COMPLETE the helper
 *     also fixes skb->csum) and the port change without (it applies unless
 *     the checksum is PARTIAL: the device or the stack sums the ports);
 *   - BPF_F_MARK_MANGLED_0 for UDP: a 0 checksum ("none") stays 0 and a
 *     computed 0 is written as 0xffff (RFC 768).
 * Then bpf_redirect to the egress interface's transmit path (the ingress
 * one too, the single-ENI case); anything it does not forward goes on to
 * the next program or the stack (TC_ACT_UNSPEC, tcx's TCX_NEXT), untouched.
 * It never drops.
 */
#include "fastpath.h"

/* The headers the program reads directly: Ethernet, one VLAN tag, IPv4
 * without options, a TCP header without options (the longest). */
#define FP_TC_HEADERS (14 + 4 + 20 + 20)

#define PASS(id) (fp_count(id), TC_ACT_UNSPEC)

/* csum_word_diff adds to sum the change of one 32-bit word from old to new
 * as a one's-complement diff (~old + new, RFC 1624), unfolded. */
static __always_inline __u64 csum_word_diff(__u64 sum, __u32 old, __u32 new)
{
	return sum + (__u32)~old + new;
}

/* csum_fold32 folds a 64-bit one's-complement sum to a 32-bit one (the
 * __wsum the checksum helpers take). */
static __always_inline __u32 csum_fold32(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	return (__u32)sum;
}

SEC("tc")
int hanat_fastpath_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 in_ifindex = skb->ingress_ifindex;
	__u32 len = skb->len;
	__u32 l3, l4, check_off, tot_len, hdr_len, old_ports;
	__u32 old_addr[2];
	struct fp_packet p;
	struct flow_value *v;
	enum counter_id why;
	__u64 addr_sum;
	__u64 flags;
	__u8 ttl, proto;

	/* A driver may leave headers in pages (paged RX): pull what the
	 * parse reads into the linear part; almost always a no-op. */
	if (data + FP_TC_HEADERS > data_end && data_end - data < len) {
		bpf_skb_pull_data(skb, len < FP_TC_HEADERS ? len : FP_TC_HEADERS);
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
	}
	v = fp_classify(data, data_end, len, in_ifindex, skb->gso_size, &p, &why);
	if (!v)
		return PASS(why);
	/* tc_ports names the interfaces the fast path runs on; a flow to any
	 * other (or one withdrawn) takes the slow path, as under XDP. */
	if (v->egress_ifindex != in_ifindex &&
	    !bpf_map_lookup_elem(&tc_ports, &v->egress_ifindex))
		return PASS(COUNTER_PASS_REDIRECT);

	/* Everything the write needs, read before the first helper call
	 * (which invalidates the packet pointers). */
	l3 = (void *)p.ip - data;
	l4 = p.l4 - data;
	check_off = (void *)p.l4_check - data;
	tot_len = p.tot_len;
	hdr_len = p.hdr_len;
	proto = p.ip->protocol;
	ttl = p.ip->ttl - 1;
	__builtin_memcpy(old_addr, &p.ip->saddr, 8);
	__builtin_memcpy(&old_ports, p.l4, 4);

	/* Unshare (a clone seen by a packet socket) and make the headers
	 * writable once, so no write below can fail halfway and leave a
	 * half-rewritten packet to the slow path. */
	if (bpf_skb_pull_data(skb, check_off + 2))
		return PASS(COUNTER_PASS_UNWRITABLE);

	addr_sum = csum_word_diff(0, old_addr[0], *(__u32 *)&v->new_saddr);
	addr_sum = csum_word_diff(addr_sum, old_addr[1], *(__u32 *)&v->new_daddr);
	flags = proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;

	bpf_skb_store_bytes(skb, l3 + __builtin_offsetof(struct iphdr, saddr), &v->new_saddr, 8, 0);
	bpf_skb_store_bytes(skb, l3 + __builtin_offsetof(struct iphdr, ttl), &ttl, 1, 0);
	bpf_l3_csum_replace(skb, l3 + __builtin_offsetof(struct iphdr, check), 0, v->l3_csum_delta, 0);
	bpf_skb_store_bytes(skb, l4, &v->new_sport, 4, 0); /* and new_dport */
	bpf_l4_csum_replace(skb, check_off, 0, csum_fold32(addr_sum), flags | BPF_F_PSEUDO_HDR);
	bpf_l4_csum_replace(skb, check_off, 0, csum_fold32(csum_word_diff(0, old_ports, *(__u32 *)&v->new_sport)), flags);
	/* h_dest and h_source from dst_mac and src_mac (adjacent). */
	bpf_skb_store_bytes(skb, 0, v->dst_mac, 2 * ETH_ALEN, 0);

	fp_account(v, tot_len, skb->gso_segs, hdr_len);
	return bpf_redirect(v->egress_ifindex, 0);
}

char _license[] SEC("license") = "Dual BSD/GPL";

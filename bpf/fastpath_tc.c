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
 * same as the XDP program's, on the same maps. What differs is the write.
 * It writes the headers directly, as the XDP program does (addresses, TTL,
 * IPv4 header checksum, ports, MACs), and uses one kernel helper at most, for
 * the one thing it cannot see: the skb's checksum-offload state
 * (skb->ip_summed), on which the TCP/UDP checksum field's meaning depends.
 *
 * Writable headers. A tc program that writes packet data directly gets a
 * prologue from the verifier (bpf_unclone_prologue): before its first
 * instruction a cloned skb (one a packet socket also holds) is made
 * private with bpf_skb_pull_data(skb, 0), the whole linear part writable;
 * if that allocation fails the kernel drops the packet (TC_ACT_SHOT), the
 * one drop this program has, and only under memory pressure. The bytes the
 * program writes are inside the bounds-checked linear part (a paged head
 * is pulled first), so nothing below can fail halfway.
 *
 * Checksums, and skb->csum. With CHECKSUM_COMPLETE (the NIC summed the
 * packet) skb->csum is the one's-complement sum of every byte from the IP
 * header on, and a direct write must leave that sum unchanged or be
 * accounted for:
 *   - the IPv4 header: addresses and TTL change by the flow's delta, and
 *     the header checksum, updated inline by RFC 1624 eqn. 3 with
 *     l3_csum_delta (HC' = ~(~HC + m)), changes by -m: the header sums to
 *     what it did (a right header to 0xffff, a wrong one stays as wrong);
 *   - the ports change by the port delta dp, and the L4 checksum field by
 *     -dp for it (below): they compensate;
 *   - what is left is the pseudo-header change, the address delta da: the
 *     L4 checksum field moves by -da for bytes outside the sum. That is
 *     bpf_l4_csum_replace with BPF_F_PSEUDO_HDR, which subtracts da from
 *     skb->csum too (for COMPLETE only), and which for CHECKSUM_PARTIAL
 *     adds da to the field, then the pseudo-header's sum (the device or
 *     the stack sums the rest, ports included), and otherwise (NONE,
 *     UNNECESSARY, COMPLETE) applies -da as an update of the full checksum.
 * MACs are outside skb->csum (bpf_redirect adds the MAC header back for
 * a COMPLETE skb at ingress, from the rewritten bytes).
 *
 * Which state it was shows in the field after that one call: it moved by
 * -da (a full checksum) or by +da (PARTIAL). da != 0 (mod 0xffff) makes the
 * two differ (-da = +da would need 2da = 0, and 0xffff is odd), so the
 * program reads the field back and, for a full checksum only, applies the
 * port delta inline as the second helper call (without PSEUDO_HDR) did.
 * So per hit:
 *   - da != 0: the PSEUDO_HDR call, then dp inline unless PARTIAL;
 *   - da = 0, dp != 0: the port-delta call alone (without PSEUDO_HDR: the
 *     kernel skips it for PARTIAL), the pseudo-header sum is unchanged;
 *   - da = 0, dp = 0: no call;
 *   - UDP with checksum 0 ("none", RFC 768): the field stays 0 whatever the
 *     state (a PARTIAL UDP field holds a pseudo-header sum, never 0); the
 *     ports alone change the summed bytes, by dp, which bpf_csum_update
 *     adds to skb->csum (a no-op unless COMPLETE; no call when dp = 0).
 * BPF_F_MARK_MANGLED_0 for UDP, and inline the same rule: a computed 0 is
 * written as 0xffff. The tests run every hit with CHECKSUM_COMPLETE, whose
 * skb->csum the kernel checks after the run (backend_test.go).
 *
 * Then bpf_redirect to the egress interface's transmit path (the ingress
 * one too, the single-ENI case); anything it does not forward goes on to
 * the next program or the stack (TC_ACT_UNSPEC, tcx's TCX_NEXT), untouched.
 */
#include "fastpath.h"
#include "csum.h"

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

/* csum_fold16 folds a 64-bit one's-complement sum to 16 bits (not
 * complemented): 0 only for a zero sum, 0xffff for any other multiple of
 * 0xffff. */
static __always_inline __u16 csum_fold16(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* csum16_zero: a 16-bit one's-complement value is 0 (mod 0xffff). */
static __always_inline int csum16_zero(__u16 x)
{
	return x == 0 || x == 0xffff;
}

SEC("tc")
int hanat_fastpath_tc(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u32 in_ifindex = skb->ingress_ifindex;
	__u32 len = skb->len;
	__u32 check_off, tot_len, hdr_len, old_ports;
	__u16 da, dp, check, *check_p;
	struct fp_packet p;
	struct flow_value *v;
	enum counter_id why;
	__u64 flags;
	int udp;

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
	 * other (or one withdrawn) takes the slow path, as under XDP. Its
	 * cache, tc_port_slots, answers without a call. */
	if (v->egress_ifindex != in_ifindex && !fp_tc_port(v->egress_ifindex))
		return PASS(COUNTER_PASS_REDIRECT);

	/* The deltas, from the header before it changes: da over the
	 * addresses (the pseudo header), dp over the ports. */
	__builtin_memcpy(&old_ports, p.l4, 4);
	da = csum_fold16(csum_word_diff(csum_word_diff(0, *(__u32 *)&p.ip->saddr, *(__u32 *)&v->new_saddr),
					*(__u32 *)&p.ip->daddr, *(__u32 *)&v->new_daddr));
	dp = csum_fold16(csum_word_diff(0, old_ports, *(__u32 *)&v->new_sport));
	udp = p.ip->protocol == IPPROTO_UDP;
	check = *p.l4_check;
	check_off = (void *)p.l4_check - data;
	tot_len = p.tot_len;
	hdr_len = p.hdr_len;

	/* Everything but the L4 checksum, directly (see the top comment). */
	__builtin_memcpy(&p.ip->saddr, &v->new_saddr, 8); /* and daddr */
	p.ip->ttl--;
	p.ip->check = csum_apply(p.ip->check, v->l3_csum_delta);
	__builtin_memcpy((__u32 *)p.l4, (const __u32 *)&v->new_sport, 4); /* and new_dport */
	/* h_dest and h_source from dst_mac and src_mac (adjacent, 4-byte
	 * aligned in the value): three word copies. */
	__builtin_memcpy((__u32 *)data, (const __u32 *)v->dst_mac, 2 * ETH_ALEN);

	flags = udp ? BPF_F_MARK_MANGLED_0 : 0;
	if (udp && check == 0) {
		if (!csum16_zero(dp))
			bpf_csum_update(skb, (__wsum)dp);
	} else if (!csum16_zero(da)) {
		bpf_l4_csum_replace(skb, check_off, 0, da, flags | BPF_F_PSEUDO_HDR);
		/* The helper may have moved the data: re-derive and check. */
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		check_p = data + (check_off & 0xff);
		/* Always in bounds (the field was read above, nothing was
		 * trimmed); the verifier wants the check. */
		if ((void *)(check_p + 1) <= data_end && !csum16_zero(dp)) {
			/* How far the field moved: +da for PARTIAL (the ports
			 * are not summed there), else -da (a full checksum,
			 * which the port change must update too). da != 0 has
			 * one 16-bit form, which -da's never equals. */
			if (csum_fold16((__u64)*check_p + (__u16)~check) != da) {
				__u16 sum = csum_apply(*check_p, dp);

				*check_p = udp && sum == 0 ? 0xffff : sum;
			}
		}
	} else if (!csum16_zero(dp)) {
		bpf_l4_csum_replace(skb, check_off, 0, dp, flags);
	}

	fp_account(v, tot_len, skb->gso_segs, hdr_len);
	return bpf_redirect(v->egress_ifindex, 0);
}

char _license[] SEC("license") = "Dual BSD/GPL";

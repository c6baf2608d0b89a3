/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * What hanat's two fast-path programs share: the flow map and its layouts,
 * the redirect ports, the per-CPU counters, and the per-packet logic up to
 * the rewrite (parse, look the flow up, check the MTU) and after it (count
 * the hit). fastpath.c (XDP) and fastpath_tc.c (tc) include it and differ
 * only in how they write the packet and send it. Both objects declare the
 * same maps; package bpf loads the tc object onto the XDP object's maps, so
 * one flow map, filled by one offload engine, serves both.
 */
#ifndef HANAT_FASTPATH_H
#define HANAT_FASTPATH_H

#include "hanat_kernel.h"
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

/* Index into fastpath_stats.count. Keep in sync with Counters in bpf/fastpath.go. */
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
	COUNTER_PASS_UNWRITABLE, /* tc: the skb could not be made writable (no longer counted) */
	COUNTER_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536); /* overridden by LoadOptions.MaxFlows */
	__type(key, struct flow_key);
	__type(value, struct flow_value);
} flows SEC(".maps");

/* Egress interfaces other than the ingress one that can transmit the XDP
 * program's frames (native XDP, ndo_xdp_xmit): key and value = ifindex. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} tx_ports SEC(".maps");

/* Egress interfaces the tc program may redirect an skb to (every interface
 * the fast path runs on, whatever its backend): key and value = ifindex. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u32);
} tc_ports SEC(".maps");

/* A cache in front of tc_ports that costs no call (the verifier inlines an
 * array lookup, a hash lookup is a call and a hash): slot ifindex %
 * TC_PORT_SLOTS holds ifindex while tc_ports has it, or 0 or another
 * port's ifindex. Package bpf sets a slot after adding the port to tc_ports
 * and clears it before deleting the port (serialised), so a slot that names
 * an interface is never wrong; any other value sends the program to
 * tc_ports itself (two ports sharing a slot, a port added before the
 * cache existed). */
#define TC_PORT_SLOTS 64

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, TC_PORT_SLOTS);
	__type(key, __u32);
	__type(value, __u32);
} tc_port_slots SEC(".maps");

/* fp_tc_port: the tc program may redirect to ifindex (tc_ports has it). */
static __always_inline int fp_tc_port(__u32 ifindex)
{
	__u32 slot = ifindex % TC_PORT_SLOTS;
	__u32 *cached = bpf_map_lookup_elem(&tc_port_slots, &slot);

	if (cached && *cached == ifindex)
		return 1;
	return bpf_map_lookup_elem(&tc_ports, &ifindex) != NULL;
}

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
 * in the object's BTF for bpf2go (-type counter_id). Each program returns
 * its own "not mine" verdict after it (XDP_PASS, TC_ACT_UNSPEC).
 */
static __attribute__((noinline)) void fp_count(enum counter_id id)
{
	struct fastpath_stats *s = stats_slot();

	if (s)
		s->count[id] += 1; /* per-CPU slot: no atomic needed */
}

/* A parsed candidate packet (pointers into the directly readable bytes). */
struct fp_packet {
	struct iphdr *ip;
	void *l4;          /* TCP or UDP header: the ports first */
	__u16 *l4_check;   /* its checksum field */
	__u32 tot_len;     /* IPv4 total length */
	__u32 hdr_len;     /* IPv4 + TCP/UDP header bytes, repeated per GSO segment */
};

/*
 * fp_classify parses the frame at data and looks its flow up. data_end ends
 * the bytes the program may read directly; frame_len is the whole frame's
 * length (the same under XDP; under tc an skb's payload may lie beyond
 * data_end, in pages the program never reads). gso_size is the skb's
 * segment payload size, 0 when the packet is not GSO (always under XDP):
 * for a GSO packet each segment, not the whole, must fit the flow's MTU.
 * It returns the flow on a hit, else NULL with *why the counter to pass
 * with; it changes nothing.
 */
static __always_inline struct flow_value *
fp_classify(void *data, void *data_end, __u32 frame_len, __u32 in_ifindex,
	    __u32 gso_size, struct fp_packet *p, enum counter_id *why)
{
	struct ethhdr *eth = data;
	struct flow_key key;
	struct flow_value *v;
	struct iphdr *ip;
	void *l4;
	__be16 h_proto;
	__u32 tot_len, l3_off, seg_len;

	*why = COUNTER_PASS_PARSE;
	if ((void *)(eth + 1) > data_end)
		return NULL;
	h_proto = eth->h_proto;
	ip = (void *)(eth + 1);
	l3_off = sizeof(*eth);
	if (h_proto == bpf_htons(ETH_P_8021Q)) {
		struct vlan_hdr *vh = (void *)(eth + 1);

		if ((void *)(vh + 1) > data_end)
			return NULL;
		h_proto = vh->h_vlan_encapsulated_proto;
		ip = (void *)(vh + 1);
		l3_off += sizeof(*vh);
	}
	/* Anything else, including a second (QinQ) tag, is not ours. */
	if (h_proto != bpf_htons(ETH_P_IP)) {
		*why = COUNTER_PASS_NOT_IPV4;
		return NULL;
	}

	if ((void *)(ip + 1) > data_end)
		return NULL;
	if (ip->version != 4 || ip->ihl < 5)
		return NULL;
	if (ip->ihl != 5) {
		*why = COUNTER_PASS_IP_OPTIONS;
		return NULL;
	}
	tot_len = bpf_ntohs(ip->tot_len);
	if (tot_len < sizeof(*ip) || l3_off + tot_len > frame_len)
		return NULL;
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET)) {
		*why = COUNTER_PASS_FRAGMENT;
		return NULL;
	}
	if (ip->ttl <= 1) {
		*why = COUNTER_PASS_TTL;
		return NULL;
	}

	/* TCP and UDP both start with the source and destination port; only
	 * where the checksum sits differs. */
	l4 = ip + 1;
	if (ip->protocol == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end ||
		    tot_len < sizeof(*ip) + sizeof(*th) || (th->doff_res >> 4) < 5)
			return NULL;
		/* conntrack must see every state change. */
		if (th->flags & TCP_FLAG_RST) {
			*why = COUNTER_PASS_RST;
			return NULL;
		}
		if (th->flags & TCP_FLAG_FIN) {
			*why = COUNTER_PASS_FIN;
			return NULL;
		}
		if (th->flags & TCP_FLAG_SYN) {
			*why = COUNTER_PASS_SYN;
			return NULL;
		}
		p->l4_check = &th->check;
		p->hdr_len = sizeof(*ip) + (th->doff_res >> 4) * 4;
	} else if (ip->protocol == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end ||
		    tot_len < sizeof(*ip) + sizeof(*uh))
			return NULL;
		p->l4_check = &uh->check;
		p->hdr_len = sizeof(*ip) + sizeof(*uh);
	} else {
		*why = COUNTER_PASS_NOT_TCP_UDP;
		return NULL;
	}

	*why = COUNTER_MISS;
	if (in_ifindex > FLOW_IFINDEX_MAX)
		return NULL; /* no flow can have this key */
	/* Addresses and ports as two word copies (saddr and daddr are
	 * adjacent in the header and in the key, so are the ports). */
	__builtin_memcpy(&key.saddr, &ip->saddr, 8);
	__builtin_memcpy(&key.sport, (const __u32 *)l4, 4);
	key.ifindex_proto = in_ifindex << 8 | ip->protocol;

	v = bpf_map_lookup_elem(&flows, &key);
	if (!v)
		return NULL;
	seg_len = gso_size ? p->hdr_len + gso_size : tot_len;
	if (seg_len > v->mtu) {
		*why = COUNTER_PASS_TOO_BIG;
		return NULL;
	}
	p->ip = ip;
	p->l4 = l4;
	p->tot_len = tot_len;
	return v;
}

/*
 * fp_account counts a forwarded packet: segs is 1, or a GSO packet's
 * segment count, whose bytes are the IPv4 total lengths of the segments it
 * leaves as (conntrack counts the segments).
 *
 * Plain adds: the value is shared by all CPUs, so two CPUs hitting the same
 * flow at once can lose an increment (and, rarely, a stalled store can move
 * the counter back a little). That is acceptable: these are statistics and
 * an activity signal (the sweep only asks whether the counter changed), and
 * a locked add costs more than the rest of the bookkeeping. One flow
 * direction is usually on one RX queue, so one CPU, anyway.
 */
static __always_inline void fp_account(struct flow_value *v, __u32 tot_len,
				       __u32 segs, __u32 hdr_len)
{
	struct fastpath_stats *s;
	__u64 bytes = tot_len;

	if (segs > 1)
		bytes += (__u64)(segs - 1) * hdr_len;
	else
		segs = 1;
	v->packets += segs;
	v->bytes += bytes;
	s = stats_slot();
	if (s) {
		struct dir_totals *d = &s->dir[v->flags & FLOW_F_OUTBOUND];

		s->count[COUNTER_HIT] += segs;
		d->packets += segs;
		d->bytes += bytes;
	}
}

#endif /* HANAT_FASTPATH_H */

//go:build ignore

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * hanat as a Gateway Load Balancer (GWLB) target in two-arm mode: two tc
 * programs on the member's ENI.
 *
 * hanat_gwlb_ingress: GWLB sends the private hosts' packets to the ENI's own
 * address, GENEVE on UDP 6081 with AWS's three options (class 0x0108:
 * endpoint id, attachment id, flow cookie). The program takes them only
 * from the GWLB addresses in gwlb_addrs, parses the header with exactly
 * package geneve's rules (Parse), remembers the options and the GWLB per
 * inner flow in gwlb_flows, strips the outer IPv4, UDP and GENEVE headers
 * and lets the inner IPv4 packet go on into the stack, where the ruleset
 * forwards and SNATs it like any private host's packet. Every refusal is a
 * drop counted under its reason; traffic that is not GENEVE to the ENI is
 * not touched.
 *
 * hanat_gwlb_egress: a packet leaving the ENI whose reversed 5-tuple is a
 * remembered flow (a de-NATed reply towards a private host) is wrapped
 * again, outer source the ENI's address, outer destination the flow's
 * GWLB, UDP 6081, the flow's own options. Its Ethernet header comes from
 * gwlb_neighs (the GWLB's next hop's MAC and the ENI's, which the Go side
 * copies from the kernel's route and neighbour tables) and the packet goes
 * on out of the ENI; without a fresh entry it is sent with
 * bpf_redirect_neigh (a route and neighbour lookup fills in L2), counted.
 * An ICMP error towards a private host about one of its remembered
 * flows goes back the same way. Everything else leaves untouched.
 *
 * Two limits the programs live with:
 *   - the ingress strips headers from an skb whose checksum state it cannot
 *     read. A CHECKSUM_PARTIAL outer packet (never from an ENA; from a
 *     local socket over a veth, unless it sends without a UDP checksum, as
 *     the tests' fake GWLB does) would keep a checksum start inside the
 *     removed headers;
 *   - the egress adds 68 bytes: the ENI's MTU must leave room for them
 *     above the inner packets' (EC2's 9001 above the internet's 1500).
 *
 * Keep enum gwlb_reason in sync with gwlb/maps.go.
 */
#include "hanat_kernel.h"
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define TC_ACT_OK 0
#define TC_ACT_SHOT 2
#define BPF_ANY 0

/* include/uapi/linux/bpf.h (this libbpf's copy predates DECAP_L3). */
#define BPF_ADJ_ROOM_MAC 1
#define BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 (1ULL << 1)
#define BPF_F_ADJ_ROOM_ENCAP_L4_UDP (1ULL << 4)
#define BPF_F_ADJ_ROOM_DECAP_L3_IPV4 (1ULL << 7)

#define IPPROTO_ICMP 1
#define ICMP_ECHOREPLY 0
#define ICMP_ECHO 8
#define ICMP_DEST_UNREACH 3
#define ICMP_TIME_EXCEEDED 11
#define ICMP_PARAMETERPROB 12
#define ETH_P_IPV6 0x86dd

#define GENEVE_PORT 6081
#define GENEVE_BASE_LEN 8
#define GENEVE_PROTO_IPV4 0x0800
#define GENEVE_PROTO_IPV6 0x86dd
#define GENEVE_CLASS_AWS 0x0108
#define AWS_OPT_ENDPOINT 1
#define AWS_OPT_ATTACHMENT 2
#define AWS_OPT_COOKIE 3
/* The three options as GWLB writes them: a 4-byte header each, 8 + 8 + 4
 * bytes of data. */
#define GENEVE_OPTIONS_LEN (4 + 8 + 4 + 8 + 4 + 4)
#define GENEVE_HEADER_LEN (GENEVE_BASE_LEN + GENEVE_OPTIONS_LEN)
/* What the encapsulation adds: outer IPv4, UDP, GENEVE. */
#define GWLB_OVERHEAD (20 + 8 + GENEVE_HEADER_LEN)
/* How many options the walk needs to look at: each option it passes adds
 * one of the three AWS types, so after three the fourth is always refused
 * (duplicate, unknown or truncated): four steps decide every header, and
 * the verifier walks four instead of the 63 an options area can hold. */
#define GENEVE_WALK_OPTIONS 4

enum gwlb_reason {
	GWLB_DECAP = 0,		/* decapsulated, into the stack */
	GWLB_ENCAP,		/* a reply encapsulated towards its GWLB */
	GWLB_FOREIGN_SOURCE,	/* GENEVE to the ENI from an address not a GWLB's */
	GWLB_TRUNCATED,		/* the geneve package's reasons, same names */
	GWLB_VERSION,
	GWLB_OAM,
	GWLB_PROTOCOL,
	GWLB_UNKNOWN_OPTION,
	GWLB_MISSING_OPTION,
	GWLB_DUPLICATE_OPTION,
	GWLB_OPTION_LENGTH,
	GWLB_INNER_IPV6,	/* a valid GWLB packet carrying IPv6: hanat NATs IPv4 */
	GWLB_INNER_MALFORMED,	/* the inner packet is no well-formed IPv4 */
	GWLB_FRAGMENT,		/* an outer IPv4 first fragment to port 6081 */
	GWLB_OUTER_MALFORMED,	/* outer IPv4 with options or a wrong checksum */
	GWLB_DECAP_ERROR,	/* bpf_skb_adjust_room refused to shrink */
	GWLB_ENCAP_ERROR,	/* bpf_skb_adjust_room or a store refused to grow */
	GWLB_GWLB_GONE,		/* a reply of a flow whose GWLB is no longer one */
	GWLB_NEIGH_MISS,	/* an encapsulated reply sent with bpf_redirect_neigh:
				 * no fresh gwlb_neighs entry for its GWLB */
	GWLB_REASON_MAX,
};

/* flags of struct gwlb_member. */
enum gwlb_member_flag {
	/* The ingress has remembered a flow whose inner destination is
	 * local_addr (a private host talking to the member itself): the
	 * egress early exit is off from then on. Sticky. */
	GWLB_MEMBER_LOCAL_FLOWS = 1,
};

/* The member's own address: GENEVE is taken only to it, and replies leave
 * from it. */
struct gwlb_member {
	__be32 local_addr;
	__u32 flags; /* enum gwlb_member_flag; the ingress sets, the Go side keeps */
};

/* How long the egress trusts a gwlb_neighs entry after the Go side last
 * found its MAC REACHABLE (or PERMANENT) in the kernel's neighbour table;
 * keep in sync with gwlb/neigh.go. */
#define GWLB_NEIGH_TTL_NS (15ULL * 1000 * 1000 * 1000)

/* The Ethernet addresses of an encapsulated reply towards one GWLB: its
 * next hop's MAC and the ENI's, and when the Go side last confirmed them
 * (bpf_ktime_get_ns, CLOCK_MONOTONIC). */
struct gwlb_neigh {
	__u8 dst_mac[6];
	__u8 src_mac[6];
	__u32 pad;
	__u64 confirmed_ns;
};

_Static_assert(sizeof(struct gwlb_neigh) == 24, "gwlb_neigh must be 24 bytes");

/* An inner flow as the private host sent it (ICMP echo: the id is both
 * ports, so the reply's reversed tuple is the same key). */
struct gwlb_flow_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 pad[3];
};

/* Where the flow's replies go back: its GWLB and its options, the option
 * data as on the wire. */
struct gwlb_flow {
	__be32 gwlb_addr;
	__u8 flow_cookie[4];
	__u8 endpoint_id[8];
	__u8 attachment_id[8];
};

_Static_assert(sizeof(struct gwlb_flow_key) == 16, "gwlb_flow_key must be 16 bytes");
_Static_assert(sizeof(struct gwlb_flow) == 24, "gwlb_flow must be 24 bytes");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gwlb_member);
} gwlb_config SEC(".maps");

/* The GWLB addresses (key: the address; value unused). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __be32);
	__type(value, __u32);
} gwlb_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct gwlb_flow_key);
	__type(value, struct gwlb_flow);
} gwlb_flows SEC(".maps");

/* GWLB address -> the Ethernet header its encapsulated replies get. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __be32);
	__type(value, struct gwlb_neigh);
} gwlb_neighs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GWLB_REASON_MAX);
	__type(key, enum gwlb_reason);
	__type(value, __u64);
} gwlb_counters SEC(".maps");

static __always_inline void count(enum gwlb_reason r)
{
	__u32 key = r;
	__u64 *c = bpf_map_lookup_elem(&gwlb_counters, &key);

	if (c)
		*c += 1;
}

#define DROP(r) (count(r), TC_ACT_SHOT)

static __always_inline struct gwlb_member *member(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&gwlb_config, &zero);
}

/* The outer headers up to GENEVE's base header, read in one copy when the
 * outer IPv4 header has no options (GWLB's never has). */
struct outer {
	struct ethhdr eth;
	struct iphdr ip;
} __attribute__((packed));

struct geneve_base {
	__u8 ver_optlen; /* version (2 bits), options length in words (6) */
	__u8 flags;	 /* O (OAM), C, reserved */
	__be16 protocol;
	__u8 vni[3];
	__u8 reserved;
};

struct geneve_opt {
	__be16 class;
	__u8 type;
	__u8 len; /* reserved (3 bits), data length in words (5) */
};

/* ipv4_csum is the checksum of the 20-byte IPv4 header at p: the value
 * its check field needs when that field is 0, and 0 when the header with
 * its check field is right. */
static __always_inline __u16 ipv4_csum(const __u8 *p)
{
	__u32 sum = 0;
	__u16 w;
	int i;

#pragma unroll
	for (i = 0; i < 20; i += 2) {
		__builtin_memcpy(&w, p + i, 2);
		sum += w;
	}
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* same_flow compares two return paths (no memcmp in BPF). */
static __always_inline int same_flow(const struct gwlb_flow *a, const struct gwlb_flow *b)
{
	const __u32 *x = (const __u32 *)a, *y = (const __u32 *)b;

	return !((x[0] ^ y[0]) | (x[1] ^ y[1]) | (x[2] ^ y[2]) | (x[3] ^ y[3]) | (x[4] ^ y[4]) |
		 (x[5] ^ y[5]));
}

/* parse_options walks the options area [off, off+len) of the skb like
 * geneve's parseOptions and fills f's option data; it returns the refusal
 * or GWLB_DECAP when all three AWS options are there exactly once. */
/* The options as GWLB writes them: endpoint, attachment, cookie, in this
 * order, each of its own length. */
struct aws_options {
	__be32 endpoint_hdr; /* struct geneve_opt as one word */
	__u8 endpoint_id[8];
	__be32 attachment_hdr;
	__u8 attachment_id[8];
	__be32 cookie_hdr;
	__u8 flow_cookie[4];
};

_Static_assert(sizeof(struct aws_options) == GENEVE_OPTIONS_LEN, "aws_options must be GWLB's options");

/* The option headers of struct aws_options as the words on the wire:
 * class 0x0108, type, length in words (reserved bits clear). */
#define AWS_OPT_WORD(type, words) bpf_htonl(GENEVE_CLASS_AWS << 16 | (type) << 8 | (words))

static __always_inline enum gwlb_reason parse_options(struct __sk_buff *skb, __u32 off, __u32 len,
						      struct gwlb_flow *f)
{
	__u32 pos = 0, seen = 0;
	struct aws_options a;
	struct geneve_opt o;
	__u32 i, n, want;

	/* GWLB's own layout in one load: what the walk below would accept,
	 * with the same data. Anything else takes the walk. */
	if (len == sizeof(a) && !bpf_skb_load_bytes(skb, off, &a, sizeof(a)) &&
	    a.endpoint_hdr == AWS_OPT_WORD(AWS_OPT_ENDPOINT, 2) &&
	    a.attachment_hdr == AWS_OPT_WORD(AWS_OPT_ATTACHMENT, 2) &&
	    a.cookie_hdr == AWS_OPT_WORD(AWS_OPT_COOKIE, 1)) {
		__builtin_memcpy(f->endpoint_id, a.endpoint_id, 8);
		__builtin_memcpy(f->attachment_id, a.attachment_id, 8);
		__builtin_memcpy(f->flow_cookie, a.flow_cookie, 4);
		return GWLB_DECAP;
	}

	for (i = 0; i < GENEVE_WALK_OPTIONS; i++) {
		if (pos >= len)
			break;
		if (len - pos < sizeof(o))
			return GWLB_TRUNCATED;
		if (bpf_skb_load_bytes(skb, off + pos, &o, sizeof(o)))
			return GWLB_TRUNCATED;
		n = (o.len & 0x1f) * 4;
		if (len - pos - sizeof(o) < n)
			return GWLB_TRUNCATED;
		if (o.class != bpf_htons(GENEVE_CLASS_AWS) || o.type < AWS_OPT_ENDPOINT ||
		    o.type > AWS_OPT_COOKIE)
			return GWLB_UNKNOWN_OPTION;
		if (seen & (1 << o.type))
			return GWLB_DUPLICATE_OPTION;
		seen |= 1 << o.type;
		want = o.type == AWS_OPT_COOKIE ? 4 : 8;
		if (n != want)
			return GWLB_OPTION_LENGTH;
		if (o.type == AWS_OPT_ENDPOINT) {
			if (bpf_skb_load_bytes(skb, off + pos + sizeof(o), f->endpoint_id, 8))
				return GWLB_TRUNCATED;
		} else if (o.type == AWS_OPT_ATTACHMENT) {
			if (bpf_skb_load_bytes(skb, off + pos + sizeof(o), f->attachment_id, 8))
				return GWLB_TRUNCATED;
		} else {
			if (bpf_skb_load_bytes(skb, off + pos + sizeof(o), f->flow_cookie, 4))
				return GWLB_TRUNCATED;
		}
		pos += sizeof(o) + n;
	}
	if (pos < len) /* never: the fourth option is refused above */
		return GWLB_UNKNOWN_OPTION;
	if (seen != (1 << AWS_OPT_ENDPOINT | 1 << AWS_OPT_ATTACHMENT | 1 << AWS_OPT_COOKIE))
		return GWLB_MISSING_OPTION;
	return GWLB_DECAP;
}

/* inner_key reads the inner IPv4 packet at off (len bytes of it in the
 * skb) into k; GWLB_INNER_MALFORMED when it is no well-formed IPv4. */
static __always_inline enum gwlb_reason inner_key(struct __sk_buff *skb, __u32 off, __u32 len,
						  struct gwlb_flow_key *k)
{
	struct iphdr ip;
	__u32 hl, tot;
	__u8 icmp[8];

	if (len < sizeof(ip) || bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)))
		return GWLB_INNER_MALFORMED;
	hl = ip.ihl * 4;
	tot = bpf_ntohs(ip.tot_len);
	if (ip.version != 4 || hl < sizeof(ip) || tot < hl || tot > len)
		return GWLB_INNER_MALFORMED;
	k->saddr = ip.saddr;
	k->daddr = ip.daddr;
	k->proto = ip.protocol;
	/* A later fragment has no ports: its flow is the first fragment's. */
	if (ip.frag_off & bpf_htons(IP_OFFSET))
		return GWLB_DECAP;
	if (ip.protocol == IPPROTO_TCP || ip.protocol == IPPROTO_UDP) {
		if (tot - hl < 4 || bpf_skb_load_bytes(skb, off + hl, &k->sport, 4))
			return GWLB_INNER_MALFORMED;
	} else if (ip.protocol == IPPROTO_ICMP) {
		if (tot - hl < 8 || bpf_skb_load_bytes(skb, off + hl, icmp, 8))
			return GWLB_INNER_MALFORMED;
		if (icmp[0] == ICMP_ECHO || icmp[0] == ICMP_ECHOREPLY) {
			__builtin_memcpy(&k->sport, &icmp[4], 2);
			k->dport = k->sport;
		}
	}
	return GWLB_DECAP;
}

SEC("tc")
int hanat_gwlb_ingress(struct __sk_buff *skb)
{
	struct gwlb_flow_key key = {};
	struct gwlb_flow f = {}, *old;
	struct geneve_base g;
	struct udphdr udp;
	struct outer h;
	__u32 l4, ulen, payload, optlen, hdr;
	struct gwlb_member *c;
	enum gwlb_reason r;

	if (bpf_skb_load_bytes(skb, 0, &h, sizeof(h)))
		return TC_ACT_UNSPEC;
	if (h.eth.h_proto != bpf_htons(ETH_P_IP) || h.ip.version != 4 || h.ip.ihl < 5 ||
	    h.ip.protocol != IPPROTO_UDP)
		return TC_ACT_UNSPEC;
	c = member();
	if (!c || !c->local_addr || h.ip.daddr != c->local_addr)
		return TC_ACT_UNSPEC;
	/* A later fragment has no UDP header; whatever it is, the stack's. */
	if (h.ip.frag_off & bpf_htons(IP_OFFSET))
		return TC_ACT_UNSPEC;
	l4 = sizeof(h.eth) + h.ip.ihl * 4;
	if (bpf_skb_load_bytes(skb, l4, &udp, sizeof(udp)))
		return TC_ACT_UNSPEC;
	if (udp.dest != bpf_htons(GENEVE_PORT))
		return TC_ACT_UNSPEC;

	/* GENEVE to the ENI: GWLB's, or dropped. */
	if (!bpf_map_lookup_elem(&gwlb_addrs, &h.ip.saddr))
		return DROP(GWLB_FOREIGN_SOURCE);
	/* The stack would have checked the outer header; it never sees it. */
	if (h.ip.ihl != 5 || ipv4_csum((__u8 *)&h + sizeof(h.eth)))
		return DROP(GWLB_OUTER_MALFORMED);
	if (h.ip.frag_off & bpf_htons(IP_MF))
		return DROP(GWLB_FRAGMENT);
	/* The UDP payload is what the UDP length says, inside the IPv4
	 * packet, inside the skb. */
	ulen = bpf_ntohs(udp.len);
	if (ulen < sizeof(udp) || l4 + ulen > sizeof(h.eth) + bpf_ntohs(h.ip.tot_len) ||
	    l4 + ulen > skb->len)
		return DROP(GWLB_TRUNCATED);
	payload = ulen - sizeof(udp);

	/* geneve.Parse, in its order. */
	if (payload < sizeof(g) || bpf_skb_load_bytes(skb, l4 + sizeof(udp), &g, sizeof(g)))
		return DROP(GWLB_TRUNCATED);
	if (g.ver_optlen >> 6)
		return DROP(GWLB_VERSION);
	optlen = (g.ver_optlen & 0x3f) * 4;
	if (payload < sizeof(g) + optlen)
		return DROP(GWLB_TRUNCATED);
	if (g.flags & 0x80)
		return DROP(GWLB_OAM);
	if (g.protocol != bpf_htons(GENEVE_PROTO_IPV4) && g.protocol != bpf_htons(GENEVE_PROTO_IPV6))
		return DROP(GWLB_PROTOCOL);
	r = parse_options(skb, l4 + sizeof(udp) + sizeof(g), optlen, &f);
	if (r != GWLB_DECAP)
		return DROP(r);
	if (g.protocol == bpf_htons(GENEVE_PROTO_IPV6))
		return DROP(GWLB_INNER_IPV6);

	hdr = l4 + sizeof(udp) + sizeof(g) + optlen; /* where the inner packet starts */
	r = inner_key(skb, hdr, payload - sizeof(g) - optlen, &key);
	if (r != GWLB_DECAP)
		return DROP(r);

	f.gwlb_addr = h.ip.saddr;
	/* The egress early exit's premise: set before such a flow is stored.
	 * A plain store (no 32-bit atomics in BPF v1): the bit is the only
	 * one the programs write, and every writer writes the same word. */
	if (key.daddr == c->local_addr && !(c->flags & GWLB_MEMBER_LOCAL_FLOWS))
		c->flags |= GWLB_MEMBER_LOCAL_FLOWS;
	/* Written only when new or changed (options, GWLB): an LRU hash
	 * update on every packet costs more than the lookup. */
	old = bpf_map_lookup_elem(&gwlb_flows, &key);
	if (!old || !same_flow(old, &f))
		bpf_map_update_elem(&gwlb_flows, &key, &f, BPF_ANY);

	/* Remove outer IPv4 + UDP + GENEVE, keeping the Ethernet header (its
	 * destination is the ENI's MAC, so the stack takes the packet). The
	 * DECAP_L3 flag (6.3+) says the inner is IPv4; older kernels refuse
	 * it and need none, IPv4 stays IPv4. */
	hdr -= sizeof(h.eth);
	if (bpf_skb_adjust_room(skb, -(__s32)hdr, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_DECAP_L3_IPV4) &&
	    bpf_skb_adjust_room(skb, -(__s32)hdr, BPF_ADJ_ROOM_MAC, 0))
		return DROP(GWLB_DECAP_ERROR);
	count(GWLB_DECAP);
	return TC_ACT_UNSPEC;
}

/* The outer headers the egress program writes after the Ethernet header. */
struct encap {
	struct iphdr ip;
	struct udphdr udp;
	struct geneve_base g;
	struct geneve_opt endpoint_hdr;
	__u8 endpoint_id[8];
	struct geneve_opt attachment_hdr;
	__u8 attachment_id[8];
	struct geneve_opt cookie_hdr;
	__u8 flow_cookie[4];
} __attribute__((packed));

_Static_assert(sizeof(struct encap) == GWLB_OVERHEAD, "encap must be GWLB's overhead");

/* The encapsulated packet's headers from the start of the frame: written
 * in one store. */
struct encap_frame {
	struct ethhdr eth;
	struct encap e;
} __attribute__((packed));

/* quoted_key reads the packet an ICMP error quotes at off (its IPv4 header
 * and at least 8 bytes of L4, RFC 792) into k, as that packet's sender
 * (host, which the error goes back to) sent it; non-zero when the quote is
 * not a packet of host's. */
static __always_inline int quoted_key(struct __sk_buff *skb, __u32 off, __be32 host, struct gwlb_flow_key *k)
{
	struct iphdr ip;
	__u8 l4[8];

	if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) || ip.version != 4 || ip.ihl < 5 || ip.saddr != host ||
	    bpf_skb_load_bytes(skb, off + ip.ihl * 4, l4, sizeof(l4)))
		return -1;
	k->saddr = ip.saddr;
	k->daddr = ip.daddr;
	k->proto = ip.protocol;
	k->sport = 0;
	k->dport = 0;
	if (ip.protocol == IPPROTO_TCP || ip.protocol == IPPROTO_UDP) {
		__builtin_memcpy(&k->sport, l4, 4);
	} else if (ip.protocol == IPPROTO_ICMP && l4[0] == ICMP_ECHO) {
		__builtin_memcpy(&k->sport, &l4[4], 2);
		k->dport = k->sport;
	}
	return 0;
}

SEC("tc")
int hanat_gwlb_egress(struct __sk_buff *skb)
{
	struct gwlb_flow_key key = {};
	struct gwlb_member *c;
	struct gwlb_neigh *n;
	struct encap_frame fr;
	struct encap e = {};
	struct outer h;
	struct gwlb_flow *f;
	__u32 l4, inner_len;
	__be16 ports[2];
	__u8 icmp[8];
	__be32 gwlb;

	if (bpf_skb_load_bytes(skb, 0, &h, sizeof(h)))
		return TC_ACT_UNSPEC;
	if (h.eth.h_proto != bpf_htons(ETH_P_IP) || h.ip.version != 4 || h.ip.ihl < 5)
		return TC_ACT_UNSPEC;
	c = member();
	/* Early exit, without the flow lookup: the member's own packets (the
	 * SNATed outbound traffic, the encapsulated replies coming back
	 * through the hook) have source local_addr. For every packet but
	 * ICMP the key below takes its daddr from that source, and a
	 * remembered flow's daddr is local_addr only after the ingress set
	 * GWLB_MEMBER_LOCAL_FLOWS: until then the lookup would miss. ICMP is
	 * always looked up: an error the member sends itself towards a
	 * private host (source local_addr) is keyed by the packet it quotes,
	 * and goes back through the GWLB like any reply. */
	if (!c || !c->local_addr)
		return TC_ACT_UNSPEC;
	if (h.ip.saddr == c->local_addr && h.ip.protocol != IPPROTO_ICMP &&
	    !(c->flags & GWLB_MEMBER_LOCAL_FLOWS))
		return TC_ACT_UNSPEC;
	/* The reply as the flow's reverse: its destination was the source. */
	key.saddr = h.ip.daddr;
	key.daddr = h.ip.saddr;
	key.proto = h.ip.protocol;
	l4 = sizeof(h.eth) + h.ip.ihl * 4;
	if (!(h.ip.frag_off & bpf_htons(IP_OFFSET))) {
		if (h.ip.protocol == IPPROTO_TCP || h.ip.protocol == IPPROTO_UDP) {
			if (bpf_skb_load_bytes(skb, l4, ports, sizeof(ports)))
				return TC_ACT_UNSPEC;
			key.sport = ports[1];
			key.dport = ports[0];
		} else if (h.ip.protocol == IPPROTO_ICMP) {
			if (bpf_skb_load_bytes(skb, l4, icmp, sizeof(icmp)))
				return TC_ACT_UNSPEC;
			if (icmp[0] == ICMP_ECHO || icmp[0] == ICMP_ECHOREPLY) {
				__builtin_memcpy(&key.sport, &icmp[4], 2);
				key.dport = key.sport;
			} else if (icmp[0] == ICMP_DEST_UNREACH || icmp[0] == ICMP_TIME_EXCEEDED ||
				   icmp[0] == ICMP_PARAMETERPROB) {
				/* An error about a packet the private host sent
				 * (conntrack has de-NATed the quote too): the
				 * quoted packet's own tuple is the flow. */
				if (quoted_key(skb, l4 + sizeof(icmp), h.ip.daddr, &key))
					return TC_ACT_UNSPEC;
			}
		}
	}
	f = bpf_map_lookup_elem(&gwlb_flows, &key);
	if (!f)
		return TC_ACT_UNSPEC;
	/* Never towards an address that is not (or no longer) a GWLB's. */
	gwlb = f->gwlb_addr;
	if (!bpf_map_lookup_elem(&gwlb_addrs, &gwlb))
		return DROP(GWLB_GWLB_GONE);

	inner_len = skb->len - sizeof(h.eth);
	e.ip.version = 4;
	e.ip.ihl = 5;
	e.ip.tot_len = bpf_htons(GWLB_OVERHEAD + inner_len);
	e.ip.frag_off = bpf_htons(0x4000); /* DF */
	e.ip.ttl = 64;
	e.ip.protocol = IPPROTO_UDP;
	e.ip.saddr = c->local_addr;
	e.ip.daddr = gwlb;
	e.ip.check = ipv4_csum((__u8 *)&e);
	/* Source port 6081 as well (one GENEVE socket's); checksum 0, which
	 * UDP over IPv4 allows and GENEVE (RFC 8926 §3.3) too. */
	e.udp.source = bpf_htons(GENEVE_PORT);
	e.udp.dest = bpf_htons(GENEVE_PORT);
	e.udp.len = bpf_htons(GWLB_OVERHEAD - sizeof(e.ip) + inner_len);
	e.g.ver_optlen = GENEVE_OPTIONS_LEN / 4;
	e.g.protocol = bpf_htons(GENEVE_PROTO_IPV4);
	e.endpoint_hdr.class = bpf_htons(GENEVE_CLASS_AWS);
	e.endpoint_hdr.type = AWS_OPT_ENDPOINT;
	e.endpoint_hdr.len = 2;
	__builtin_memcpy(e.endpoint_id, f->endpoint_id, 8);
	e.attachment_hdr.class = bpf_htons(GENEVE_CLASS_AWS);
	e.attachment_hdr.type = AWS_OPT_ATTACHMENT;
	e.attachment_hdr.len = 2;
	__builtin_memcpy(e.attachment_id, f->attachment_id, 8);
	e.cookie_hdr.class = bpf_htons(GENEVE_CLASS_AWS);
	e.cookie_hdr.type = AWS_OPT_COOKIE;
	e.cookie_hdr.len = 1;
	__builtin_memcpy(e.flow_cookie, f->flow_cookie, 4);

	/* The GWLB's next hop's MAC and the ENI's as the source, from the
	 * cache: the packet is on the ENI's egress already, so it goes on.
	 * An entry the Go side has not confirmed for GWLB_NEIGH_TTL_NS is
	 * not used (gwlb/neigh.go says how long a changed MAC can last).
	 * Without one the Ethernet header stays as it was and
	 * bpf_redirect_neigh fills it in. */
	__builtin_memcpy(&fr, &h.eth, sizeof(h.eth));
	__builtin_memcpy((__u8 *)&fr + sizeof(h.eth), &e, sizeof(e));
	n = bpf_map_lookup_elem(&gwlb_neighs, &gwlb);
	if (n && bpf_ktime_get_ns() - n->confirmed_ns >= GWLB_NEIGH_TTL_NS)
		n = NULL;
	if (n)
		__builtin_memcpy(&fr, n->dst_mac, 12);
	if (bpf_skb_adjust_room(skb, GWLB_OVERHEAD, BPF_ADJ_ROOM_MAC,
				BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 | BPF_F_ADJ_ROOM_ENCAP_L4_UDP))
		return DROP(GWLB_ENCAP_ERROR);
	if (bpf_skb_store_bytes(skb, 0, &fr, sizeof(fr), 0))
		return DROP(GWLB_ENCAP_ERROR);
	count(GWLB_ENCAP);
	if (n)
		return TC_ACT_OK;
	/* A route and neighbour lookup for the new destination (the
	 * redirected packet passes this hook again and leaves by the early
	 * exit). */
	count(GWLB_NEIGH_MISS);
	return bpf_redirect_neigh(skb->ifindex, 0, 0, 0);
}

char _license[] SEC("license") = "Dual BSD/GPL";

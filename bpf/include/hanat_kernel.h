/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Minimal subset of the Linux UAPI that hanat's XDP programs need, written
 * out here so `go generate` builds on a fresh Debian with only clang and
 * libbpf-dev installed (the kernel's own <linux/...h> headers pull in <asm/types.h>,
 * which lives in an arch-specific multiarch directory that clang does not
 * search for -target bpf). Layouts follow include/uapi/linux/{bpf,if_ether,
 * ip,tcp,udp}.h; only what the programs use is declared.
 */
#ifndef HANAT_KERNEL_H
#define HANAT_KERNEL_H

typedef unsigned char __u8;
typedef signed char __s8;
typedef unsigned short __u16;
typedef signed short __s16;
typedef unsigned int __u32;
typedef signed int __s32;
typedef unsigned long long __u64;
typedef signed long long __s64;

typedef __u16 __be16;
typedef __u32 __be32;
typedef __u64 __be64;
typedef __u16 __sum16;
typedef __u32 __wsum;

/* include/uapi/linux/bpf.h */
enum bpf_map_type {
	BPF_MAP_TYPE_HASH = 1,
	BPF_MAP_TYPE_ARRAY = 2,
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_DEVMAP_HASH = 25,
};

enum xdp_action {
	XDP_ABORTED = 0,
	XDP_DROP,
	XDP_PASS,
	XDP_TX,
	XDP_REDIRECT,
};

struct xdp_md {
	__u32 data;
	__u32 data_end;
	__u32 data_meta;
	__u32 ingress_ifindex;
	__u32 rx_queue_index;
	__u32 egress_ifindex;
};

/* include/uapi/linux/bpf.h: the skb context of tc programs, up to the
 * fields the tc program reads (the verifier checks offsets, so the layout
 * up to gso_size must be the kernel's). */
struct __sk_buff {
	__u32 len;
	__u32 pkt_type;
	__u32 mark;
	__u32 queue_mapping;
	__u32 protocol;
	__u32 vlan_present;
	__u32 vlan_tci;
	__u32 vlan_proto;
	__u32 priority;
	__u32 ingress_ifindex;
	__u32 ifindex;
	__u32 tc_index;
	__u32 cb[5];
	__u32 hash;
	__u32 tc_classid;
	__u32 data;
	__u32 data_end;
	__u32 napi_id;
	__u32 family;
	__u32 remote_ip4;
	__u32 local_ip4;
	__u32 remote_ip6[4];
	__u32 local_ip6[4];
	__u32 remote_port;
	__u32 local_port;
	__u32 data_meta;
	__u64 flow_keys; /* __bpf_md_ptr(struct bpf_flow_keys *, flow_keys) */
	__u64 tstamp;
	__u32 wire_len;
	__u32 gso_segs;
	__u64 sk; /* __bpf_md_ptr(struct bpf_sock *, sk) */
	__u32 gso_size;
};

/* Flags of bpf_l4_csum_replace. */
#define BPF_F_PSEUDO_HDR (1ULL << 4)
#define BPF_F_MARK_MANGLED_0 (1ULL << 5)

/* include/uapi/linux/pkt_cls.h; TC_ACT_UNSPEC is also tcx's TCX_NEXT. */
#define TC_ACT_UNSPEC (-1)
#define TC_ACT_REDIRECT 7

/* include/uapi/linux/if_ether.h */
#define ETH_ALEN 6
#define ETH_P_IP 0x0800
#define ETH_P_8021Q 0x8100

/* The kernel declares this packed; without it the layout is the same (14
 * bytes, no padding) and clang may assume 2-byte alignment, so MAC copies
 * become halfword moves. Frames start at least 2-byte aligned. */
struct ethhdr {
	__u8 h_dest[ETH_ALEN];
	__u8 h_source[ETH_ALEN];
	__be16 h_proto;
};

/* include/uapi/linux/if_vlan.h has no UAPI struct; this is the tag after h_proto. */
struct vlan_hdr {
	__be16 h_vlan_TCI;
	__be16 h_vlan_encapsulated_proto;
};

/* include/uapi/linux/ip.h (bitfields for little-endian; see below) */
struct iphdr {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	__u8 ihl : 4, version : 4;
#else
	__u8 version : 4, ihl : 4;
#endif
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__sum16 check;
	__be32 saddr;
	__be32 daddr;
};

#define IP_MF 0x2000
#define IP_OFFSET 0x1fff

#define IPPROTO_TCP 6
#define IPPROTO_UDP 17

/* include/uapi/linux/tcp.h: only the fields the fast path reads. */
struct tcphdr {
	__be16 source;
	__be16 dest;
	__be32 seq;
	__be32 ack_seq;
	__u8 doff_res; /* data offset (high nibble) and reserved bits */
	__u8 flags;    /* CWR ECE URG ACK PSH RST SYN FIN, MSB first */
	__be16 window;
	__sum16 check;
	__be16 urg_ptr;
};

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04

/* include/uapi/linux/udp.h */
struct udphdr {
	__be16 source;
	__be16 dest;
	__be16 len;
	__sum16 check;
};

#define AF_INET 2

#endif /* HANAT_KERNEL_H */

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Incremental Internet checksum update (RFC 1624, eqn. 3). */
#ifndef HANAT_CSUM_H
#define HANAT_CSUM_H

#include "hanat_kernel.h"
#include <bpf/bpf_helpers.h>

/*
 * csum_apply returns the checksum field value after the covered data changed
 * by delta, where delta is the one's-complement sum of (~old + new) over the
 * 16-bit words that changed: HC' = ~(~HC + delta).
 *
 * Both csum and delta are the raw bytes as stored in the packet (network
 * order) loaded natively; the one's-complement sum is byte-order independent
 * (RFC 1071 §2(B)), so this is exact on little- and big-endian hosts as long
 * as the delta was stored in network byte order too (see fastpath.go).
 * One fold suffices: 0xffff + 0xffff = 0x1fffe folds to 0xffff.
 */
static __always_inline __u16 csum_apply(__u16 csum, __u16 delta)
{
	__u32 sum = (__u32)(__u16)~csum + (__u32)delta;

	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

#endif /* HANAT_CSUM_H */

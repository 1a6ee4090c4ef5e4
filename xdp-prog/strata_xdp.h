/* SPDX-License-Identifier: Apache-2.0 OR BSD-2-Clause OR GPL-2.0-only */
/*
 * The contract between the XDP program and user space (src/fastpath/abi.rs mirrors it; change
 * both together). Everything here is plain data: map layouts, counter indices, the metadata
 * that precedes each redirected frame.
 */
#ifndef STRATA_XDP_H
#define STRATA_XDP_H

#include <linux/types.h>

/* Written into the XDP metadata area, directly before the frame. User space reads it at
 * (frame address - sizeof(struct strata_meta)) in the UMEM. */
struct strata_meta {
	/* bpf_ktime_get_tai_ns() when the program saw the frame: always set. */
	__u64 xdp_tai_ns;
	/* The NIC's receive stamp (bpf_xdp_metadata_rx_timestamp), 0 when there is none. It is
	 * in the NIC's clock (PHC), not TAI: user space needs a PHC mapping to use it. */
	__u64 hw_ns;
	/* STRATA_META_MAGIC, so that user space never mistakes stale headroom bytes (a driver
	 * or kernel that did not copy the metadata) for a stamp. */
	__u32 magic;
	__u32 flags;
};

#define STRATA_META_MAGIC 0x53545241u /* "STRA" */
#define STRATA_META_HW 1u             /* hw_ns holds a hardware stamp */

/* The single entry of the config map. */
struct strata_config {
	/* UDP destination port of requests, network byte order. */
	__u16 ntp_port_be;
	/* STRATA_CFG_*: which address families are checked against the address maps. A family
	 * whose bit is clear accepts every destination address (user space sets the bit when it
	 * put at least one address of that family into its map). */
	__u16 flags;
	__u32 reserved;
};

#define STRATA_CFG_CHECK_V4 1u
#define STRATA_CFG_CHECK_V6 2u

/* Per-CPU counters, indices into the counters array. Drops are grouped so that the ACL and
 * the rate limiter (a later issue) add their reasons after STRATA_DROP_SRC_PORT_ZERO. */
enum strata_counter {
	STRATA_SEEN = 0,            /* every frame the program ran on */
	STRATA_REDIRECTED = 1,      /* NTP requests handed to the AF_XDP socket of their queue */
	STRATA_PASSED = 2,          /* not ours: given to the kernel untouched */
	STRATA_REDIRECT_FAILED = 3, /* ours, but no socket on this queue: passed to the kernel */
	STRATA_DROP_SHORT = 4,      /* to the NTP port with less than a 48-byte NTP header */
	STRATA_DROP_SRC_PORT_ZERO = 5, /* source port 0 cannot be answered */
	STRATA_META_FAILED = 6,     /* no room for metadata: redirected without a stamp */
	STRATA_HW_STAMPED = 7,      /* the NIC gave a hardware stamp */
	STRATA_COUNTERS = 8,
};

#define STRATA_MAX_QUEUES 64
#define STRATA_MAX_ADDRS 256

#endif

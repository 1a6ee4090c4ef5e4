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
/* Bits 1-2 of flags: admission's Kiss-o'-Death for the responder to send instead of the time
 * (0 none, STRATA_KISS_RATE, _DENY, _RSTR). */
#define STRATA_META_KISS_SHIFT 1
#define STRATA_KISS_RATE 1u
#define STRATA_KISS_DENY 2u
#define STRATA_KISS_RSTR 3u

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
/* Answer plain requests in the program (XDP_TX) instead of redirecting them (--xdp-answer). */
#define STRATA_CFG_ANSWER 4u

/* The single entry of the state map: what the control thread publishes (the server state and
 * the TAI->NTP conversion), written by user space through an mmap of the map while the program
 * reads it. A sequence lock keeps a reader from combining two generations: `seq` is odd while
 * user space writes; a reader copies the fields and keeps them only if `seq` was even and
 * unchanged around the copy. A reader that fails twice hands the request to AF_XDP instead.
 *
 * The conversion needs only unsigned multiplies and shifts (BPF has no signed division before
 * cpu v4, and it is not needed): for a CLOCK_TAI reading t,
 *     ntp(t) = ntp_anchor + (t - tai_anchor_ns) * rate_int + hi64((t - tai_anchor_ns) * rate_frac)
 * for t >= tai_anchor_ns, and the same subtracted for t < tai_anchor_ns, modulo 2^64 (the NTP era).
 * rate_int + rate_frac / 2^64 is the number of NTP fraction units (2^-32 s) per TAI nanosecond,
 * frequency correction included; the pending leap second (below) is applied to the result; src/sys/fastpath/state_map.rs computes it from ClockParams and
 * mirrors this formula exactly. */
struct strata_state {
	__u64 seq;
	__u64 tai_anchor_ns;
	__u64 ntp_anchor;
	__u64 rate_int;
	__u64 rate_frac;
	/* NTP 32.32: when the clock was last set (0: never, no dispersion growth). */
	__u64 reference_time;
	/* NTP short format (16.16), host byte order. */
	__u32 root_delay;
	__u32 root_dispersion;
	/* The reference ID as it goes on the wire. */
	__u8 refid[4];
	/* STRATA_STATE_* */
	__u8 flags;
	/* The leap indicator announced while synchronized (0-3). */
	__u8 leap;
	__u8 stratum;
	__s8 precision;
	/* The pending leap second, applied to the line's value u by apply_leap (strata_answer.h),
	 * as src/proto/clock/scale.rs defines it: stepped by leap_delta seconds (+1 an inserted
	 * second, -1 a deleted one, 0 none) from u >= leap_at on, or, when smear_len_s is not 0,
	 * smeared over smear_len_s seconds of u from smear_start. NTP 32.32, wrapping. */
	__u64 leap_at;
	__u64 smear_start;
	__u32 smear_len_s;
	__s8 leap_delta;
	__u8 reserved[3];
};

/* The single entry of the strata_phc map: the interface's PHC-to-TAI line, written by user
 * space's PHC thread under the sequence lock `seq` (odd while writing), the words after it as
 * src/proto/clock/phc/line.rs encodes a PhcLine:
 * tai = phc + offset_ns + ((phc - phc_ref_ns) * slope_q48) >> 48, used while `unusable` is 0
 * and the line was fitted at most STRATA_PHC_MAX_AGE_NS ago. strata_phc.h applies it. */
struct strata_phc {
	__u64 seq;
	__s64 phc_ref_ns;
	__s64 offset_ns;
	__s64 slope_q48;
	__s64 fitted_tai_ns;
	/* 0: usable; else why not, as HardwareUnused codes it (1 no mapping, 2 too few samples,
	 * 3 too noisy, 4 stale). Zeroed map memory is "no mapping" only once user space wrote. */
	__u64 unusable;
};

#define STRATA_STATE_VALID 1u  /* published at least once: until then every request goes up */
#define STRATA_STATE_SYNCED 2u /* synchronized: answer with the time */
#define STRATA_STATE_UNSYNC_DROP 4u /* while unsynchronized, drop instead of answering LI=3 */

/* Admission (strata_admit.h; src/proto/admission/ is the one definition). The single entry of
 * the strata_admit map, written once at load. */
struct strata_admit_config {
	/* The limiter: average interval between answered requests, and how far a client's
	 * theoretical arrival time may run ahead of now ((burst - 1) * interval). */
	__u64 interval_ns;
	__u64 burst_span_ns;
	/* The keyed hash's secret, drawn at start. */
	__u64 secret[2];
	/* Buckets - 1 (a power of two); the strata_limiter map has that many + 1 entries. */
	__u32 bucket_mask;
	/* 1 in 2^leak over-limit requests answered anyway; 1 in 2^kod of the rest get a KoD RATE;
	 * 0: none. */
	__u8 leak;
	__u8 kod;
	/* Bits of a source address that make a client. */
	__u8 v4_prefix;
	__u8 v6_prefix;
	/* STRATA_DENY_*: what a denied source gets. */
	__u8 deny_action;
	/* STRATA_ADMIT_*. */
	__u8 flags;
	/* 1 in 2^sample_shift requests are sampled for `strata clients` (0: none). */
	__u8 sample_shift;
	__u8 reserved;
	__u32 reserved2;
	/* The total cap, this CPU's share (quota.rs QuotaConfig): nanoseconds between answers,
	 * and how far ahead of now quiet and busy clients may push its TAT. */
	__u64 quota_interval_ns;
	__u64 quota_quiet_span_ns;
	__u64 quota_busy_span_ns;
};

#define STRATA_ADMIT_ACL_V4 1u /* the IPv4 trie has rules */
#define STRATA_ADMIT_ACL_V6 2u /* the IPv6 trie has rules */
#define STRATA_ADMIT_LIMIT 4u  /* rate limiting is on */
#define STRATA_ADMIT_QUOTA 8u  /* the total cap is on */

#define STRATA_DENY_DROP 0u
#define STRATA_DENY_KISS_DENY 1u
#define STRATA_DENY_KISS_RSTR 2u

/* The value of an access-list rule. */
#define STRATA_ACL_ALLOW 1u
#define STRATA_ACL_DENY 2u
#define STRATA_MAX_ACL_RULES 65536

/* A sampled request for `strata clients` (talkers.rs Sample), in the strata_samples ring:
 * the client key and what admission decided (STRATA_SAMPLE_*, talkers.rs SampleVerdict). */
struct strata_sample {
	__u64 key_hi;
	__u64 key_lo;
	__u8 verdict;
	__u8 pad[7];
};

#define STRATA_SAMPLE_SERVED 0u
#define STRATA_SAMPLE_KISSED 1u
#define STRATA_SAMPLE_LIMITED 2u
#define STRATA_SAMPLE_DENIED 3u
#define STRATA_SAMPLE_OVER_QUOTA 4u
#define STRATA_SAMPLES_BYTES (1u << 18)

/* One client in the limiter's table (limiter.rs Slot); a bucket holds two. */
struct strata_slot {
	__u64 tat_ns;
	__u32 over;
	__u32 tag;
};

struct strata_bucket {
	struct strata_slot slot[2];
};

/* Per-CPU counters, indices into the counters array. Drops are grouped so that the ACL and
 * the rate limiter (a later issue) add their reasons after STRATA_DROP_SRC_PORT_ZERO. */
enum strata_counter {
	STRATA_SEEN = 0,            /* every frame the program ran on */
	STRATA_REDIRECTED = 1,      /* NTP requests handed to the AF_XDP socket of their queue */
	STRATA_PASSED = 2,          /* not ours: given to the kernel untouched */
	STRATA_REDIRECT_FAILED = 3, /* ours, but no socket on this queue: passed to the kernel */
	STRATA_DROP_SHORT = 4,      /* to the NTP port with less than a 48-byte NTP header (mode 6: 12) */
	STRATA_DROP_SRC_PORT_ZERO = 5, /* source port 0 cannot be answered */
	STRATA_META_FAILED = 6,     /* no room for metadata: redirected without a stamp */
	STRATA_HW_STAMPED = 7,      /* the NIC gave a hardware stamp */
	STRATA_ANSWERED = 8,        /* answered by the program itself (XDP_TX) with the time */
	STRATA_ANSWERED_UNSYNC = 9, /* answered by the program itself, unsynchronized (LI=3) */
	STRATA_DROP_UNSYNC = 10,    /* not synchronized and configured to stay silent */
	STRATA_STATE_TORN = 11,     /* the state changed under two reads: redirected instead */
	STRATA_ANSWER_FAILED = 12,  /* could not shorten the frame for the reply: redirected */
	STRATA_DROP_DENIED = 13,    /* the access list denies the source: dropped */
	STRATA_DROP_LIMITED = 14,   /* over its rate limit: dropped */
	STRATA_LEAKED = 15,         /* over its rate limit, answered anyway (the leak) */
	STRATA_KOD_RATE = 16,       /* over its rate limit: a KoD RATE (here or by a responder) */
	STRATA_KOD_DENY = 17,       /* denied: a KoD DENY */
	STRATA_KOD_RSTR = 18,       /* denied: a KoD RSTR */
	STRATA_DROP_QUOTA = 19,     /* over the server's total cap: dropped */
	STRATA_LIMITER_TRACKED = 20, /* limiter slots taken while empty: clients tracked */
	STRATA_LIMITER_EVICTED = 21, /* limiter slots taken over: clients forgotten */
	STRATA_SAMPLES_LOST = 22,   /* samples for `strata clients` the full ring refused */
	STRATA_HW_MAPPED = 23,      /* answered here with T2 from the NIC's stamp (the PHC line) */
	STRATA_HW_UNUSED = 24,      /* answered here with the XDP-time T2 though the NIC stamped */
	STRATA_COUNTERS = 25,
};

#define STRATA_MAX_QUEUES 64
#define STRATA_MAX_ADDRS 256

#endif

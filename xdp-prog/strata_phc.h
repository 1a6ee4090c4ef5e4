/* SPDX-License-Identifier: Apache-2.0 OR BSD-2-Clause OR GPL-2.0-only */
/*
 * A NIC's receive stamp (its PHC's time) to CLOCK_TAI through the published line. The
 * definition is PhcLine::tai_ns in src/proto/clock/phc/line.rs; this is the same arithmetic
 * without a 128-bit multiply (BPF has none), exact within the ranges both refuse outside of.
 * tests/xdp_phc_diff.rs compiles this header for the host and holds it to the Rust one.
 * Plain C on linux/types.h only, so that the test can compile it.
 */
#ifndef STRATA_PHC_H
#define STRATA_PHC_H

#include "strata_xdp.h"

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* line.rs: MAX_LINE_AGE_NS, MAX_ELAPSED_NS, MAX_SLOPE_Q48 and the HardwareUnused codes. */
#define STRATA_PHC_MAX_AGE_NS 10000000000ll
#define STRATA_PHC_MAX_ELAPSED_NS (1ll << 40)
#define STRATA_PHC_MAX_SLOPE_Q48 (1ll << 42)
#define STRATA_PHC_TOO_NOISY 3
#define STRATA_PHC_STALE 4

/* 0 with the CLOCK_TAI time of `phc` in *tai, else the HardwareUnused code of why not. `now`
 * is CLOCK_TAI as the frame arrived. Differences wrap as Rust's wrapping_sub does. */
static __always_inline __u32 strata_phc_tai(const struct strata_phc *l, __u64 phc, __u64 now, __u64 *tai)
{
	__s64 age = (__s64)(now - (__u64)l->fitted_tai_ns);
	__s64 e = (__s64)(phc - (__u64)l->phc_ref_ns);
	__s64 s = l->slope_q48;
	__s64 e_hi, a, b, drift;

	if (l->unusable)
		return (__u32)l->unusable;
	if (age < 0 || age > STRATA_PHC_MAX_AGE_NS)
		return STRATA_PHC_STALE;
	if (e <= -STRATA_PHC_MAX_ELAPSED_NS || e >= STRATA_PHC_MAX_ELAPSED_NS)
		return STRATA_PHC_STALE;
	if (s <= -STRATA_PHC_MAX_SLOPE_Q48 || s >= STRATA_PHC_MAX_SLOPE_Q48)
		return STRATA_PHC_TOO_NOISY;
	/* e = e_hi * 2^20 + e_lo (0 <= e_lo < 2^20): e * s = a * 2^20 + b, each under 2^62, and
	 * (e * s) >> 48 = (a >> 28) + (((a mod 2^28) << 20) + b) >> 48, floor for floor. */
	e_hi = e >> 20;
	a = e_hi * s;
	b = (e & 0xfffff) * s;
	drift = (a >> 28) + ((((a & 0xfffffff) << 20) + b) >> 48);
	*tai = phc + (__u64)l->offset_ns + (__u64)drift;
	return 0;
}

#endif

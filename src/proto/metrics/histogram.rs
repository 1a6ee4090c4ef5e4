//! Fixed bucket layouts for the two histograms the responders record: server response time
//! (T3 − T2) and receive batch size.
//!
//! Both layouts use power-of-two upper bounds so that finding a bucket is a subtraction, a
//! leading-zero count and a clamp (no search, no branch on the value): recording stays within
//! the responder's per-packet budget. The counter block keeps one plain count per bucket
//! (not cumulative); the exporter accumulates them into Prometheus `le` buckets.

/// Response time buckets: upper bounds 2^8 ns (256 ns) up to 2^23 ns (about 8.4 ms), then +Inf.
/// 256 ns is below what a reply can take on any path; 8 ms is far above a healthy one, and
/// anything beyond lands in +Inf.
pub const RESPONSE_FIRST_BIT: u32 = 8;
pub const RESPONSE_FINITE: usize = 16;
/// Slots in the counter block: the finite buckets and +Inf.
pub const RESPONSE_BUCKETS: usize = RESPONSE_FINITE + 1;

/// Batch size buckets: 1, 2, 4, ... 1024 (the largest batch the configuration allows), then
/// +Inf for completeness.
pub const BATCH_FINITE: usize = 11;
pub const BATCH_BUCKETS: usize = BATCH_FINITE + 1;

/// Bits needed for `v - 1`: the exponent of the smallest power of two that is >= `v` (0 for 0
/// and 1).
#[inline(always)]
fn ceil_log2(v: u64) -> u32 {
    u64::BITS - v.saturating_sub(1).leading_zeros()
}

/// The bucket of a response time of `ns` nanoseconds (a negative time, from a clock step
/// between T2 and T3, counts in the first bucket).
#[inline(always)]
pub fn response_bucket(ns: i64) -> usize {
    let ns = ns.max(0) as u64;
    (ceil_log2(ns).saturating_sub(RESPONSE_FIRST_BIT) as usize).min(RESPONSE_FINITE)
}

/// The bucket of a batch of `size` datagrams.
#[inline(always)]
pub fn batch_bucket(size: usize) -> usize {
    (ceil_log2(size as u64) as usize).min(BATCH_FINITE)
}

/// Upper bound of response time bucket `i`, in seconds (`f64::INFINITY` for the last).
pub fn response_bound_seconds(i: usize) -> f64 {
    if i >= RESPONSE_FINITE {
        f64::INFINITY
    } else {
        (1u64 << (RESPONSE_FIRST_BIT as usize + i)) as f64 * 1e-9
    }
}

/// Upper bound of batch size bucket `i` (`f64::INFINITY` for the last).
pub fn batch_bound(i: usize) -> f64 {
    if i >= BATCH_FINITE {
        f64::INFINITY
    } else {
        (1u64 << i) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_buckets_are_inclusive_upper_bounds() {
        assert_eq!(response_bucket(-5), 0);
        assert_eq!(response_bucket(0), 0);
        assert_eq!(response_bucket(256), 0);
        assert_eq!(response_bucket(257), 1);
        assert_eq!(response_bucket(512), 1);
        assert_eq!(response_bucket(1 << 23), RESPONSE_FINITE - 1);
        assert_eq!(response_bucket((1 << 23) + 1), RESPONSE_FINITE);
        assert_eq!(response_bucket(i64::MAX), RESPONSE_FINITE);
        for ns in [1i64, 300, 5_000, 123_456, 8_000_000, 9_000_000] {
            let i = response_bucket(ns);
            assert!(ns as f64 * 1e-9 <= response_bound_seconds(i), "{ns}");
            if i > 0 {
                assert!(ns as f64 * 1e-9 > response_bound_seconds(i - 1), "{ns}");
            }
        }
        assert_eq!(response_bound_seconds(0), 256e-9);
        assert!(response_bound_seconds(RESPONSE_FINITE).is_infinite());
    }

    #[test]
    fn batch_buckets_are_inclusive_upper_bounds() {
        assert_eq!(batch_bucket(0), 0);
        assert_eq!(batch_bucket(1), 0);
        assert_eq!(batch_bucket(2), 1);
        assert_eq!(batch_bucket(3), 2);
        assert_eq!(batch_bucket(64), 6);
        assert_eq!(batch_bucket(1024), 10);
        assert_eq!(batch_bucket(1025), BATCH_FINITE);
        for size in 1..=1100usize {
            let i = batch_bucket(size);
            assert!(size as f64 <= batch_bound(i));
            if i > 0 {
                assert!(size as f64 > batch_bound(i - 1));
            }
        }
    }
}

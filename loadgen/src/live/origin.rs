//! The pure arithmetic the live mode shares with its XDP programs (xdp/loadgen_live.c), kept
//! here so that it is written down and tested once in Rust; the C mirrors every function.
//!
//! - The origin timestamp: a request's transmit timestamp (which the server copies into the
//!   reply's origin) is 32 bits of send time (CLOCK_MONOTONIC in 16 ns ticks, wrapping every
//!   68.7 s) and a 32-bit tag, a hash of that time, the client's address and port and a secret
//!   drawn for each step. The reply counter checks a reply with no per-request state, tells a
//!   reply to the previous step (its secret) from a forged or corrupted one, and takes the round
//!   trip as its receive time less the send time.
//! - Pacing: the mean gap in ns << 16, and for Poisson arrivals a table of exponential quantiles.
//! - Round trips: a log-linear histogram with 8 buckets per octave.

use std::net::Ipv4Addr;

/// Send times are in ticks of 2^TICK_SHIFT ns.
pub const TICK_SHIFT: u32 = 4;
/// Entries of the exponential table.
pub const EXP_TABLE: usize = 256;
/// Buckets of the round-trip histogram: exact below 16 ns, then 8 per octave up to 2^40 ns.
pub const RTT_BUCKETS: usize = 304;

/// The tag of a request sent at `ticks` from `addr:port` in a step with `secret` (a
/// splitmix64-style mix; `origin_tag` in the C).
pub fn tag(ticks: u32, addr: Ipv4Addr, port: u16, secret: u64) -> u32 {
    let mut x = secret ^ ((u64::from(ticks) << 32) | u64::from(u32::from(addr)));
    x ^= u64::from(port).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^= x >> 31;
    x as u32
}

/// The origin timestamp (as the 64-bit NTP value) of a request sent at `now_ns`.
pub fn encode(now_ns: u64, addr: Ipv4Addr, port: u16, secret: u64) -> u64 {
    let ticks = (now_ns >> TICK_SHIFT) as u32;
    (u64::from(ticks) << 32) | u64::from(tag(ticks, addr, port, secret))
}

/// What a reply's origin says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// A request of this step, sent this many ns before `now_ns`.
    Ours { rtt_ns: u64 },
    /// A request of the previous step.
    Previous,
    /// No request of ours (corrupted, forged, or for another client).
    Unknown,
}

/// Checks the origin of a reply received at `now_ns` by client `addr:port`.
pub fn check(origin: u64, addr: Ipv4Addr, port: u16, secret: u64, prev_secret: u64, now_ns: u64) -> Origin {
    let ticks = (origin >> 32) as u32;
    let t = origin as u32;
    if t == tag(ticks, addr, port, secret) {
        let elapsed = ((now_ns >> TICK_SHIFT) as u32).wrapping_sub(ticks);
        Origin::Ours {
            rtt_ns: u64::from(elapsed) << TICK_SHIFT,
        }
    } else if t == tag(ticks, addr, port, prev_secret) {
        Origin::Previous
    } else {
        Origin::Unknown
    }
}

/// The mean gap between requests at `rate`/s, in ns << 16 (at least 1).
pub fn gap_q(rate: f64) -> u64 {
    ((1e9 / rate) * 65536.0).round().max(1.0) as u64
}

/// Quantiles of the unit exponential distribution at the midpoints of [`EXP_TABLE`] equal
/// slices, scaled by 2^16 and normalised so that their mean is exactly 1: a gap drawn as the
/// mean gap times a random entry keeps the rate, and its spread is Poisson's up to about six
/// mean gaps (the largest entry).
pub fn exp_table() -> [u32; EXP_TABLE] {
    let raw: Vec<f64> = (0..EXP_TABLE)
        .map(|i| -((i as f64 + 0.5) / EXP_TABLE as f64).ln())
        .collect();
    let mean = raw.iter().sum::<f64>() / EXP_TABLE as f64;
    let mut table = [0u32; EXP_TABLE];
    for (t, r) in table.iter_mut().zip(&raw) {
        *t = (r / mean * 65536.0).round() as u32;
    }
    table
}

/// The histogram bucket of a round trip (`rtt_bucket` in the C).
pub fn rtt_bucket(ns: u64) -> usize {
    if ns < 16 {
        return ns as usize;
    }
    let ns = ns.min((1 << 40) - 1);
    let msb = 63 - ns.leading_zeros();
    16 + (msb as usize - 4) * 8 + ((ns >> (msb - 3)) & 7) as usize
}

/// The value a bucket stands for: its middle (exact below 16 ns).
pub fn rtt_bucket_value(bucket: usize) -> u64 {
    if bucket < 16 {
        return bucket as u64;
    }
    let octave = (bucket - 16) / 8 + 4;
    let sub = ((bucket - 16) % 8) as u64;
    let width = 1u64 << (octave - 3);
    ((8 + sub) << (octave - 3)) + width / 2
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 7);

    #[test]
    fn origins_check_out_for_their_client_and_step_only() {
        let (secret, prev) = (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210);
        let sent = 5_000_000_123u64;
        let o = encode(sent, A, 1234, secret);
        assert_eq!(
            check(o, A, 1234, secret, prev, sent + 40_000),
            Origin::Ours { rtt_ns: 40_000 }
        );
        // Another client, port, step or a flipped bit: not ours.
        assert_eq!(
            check(o, Ipv4Addr::new(198, 19, 0, 8), 1234, secret, prev, sent),
            Origin::Unknown
        );
        assert_eq!(check(o, A, 1235, secret, prev, sent), Origin::Unknown);
        assert_eq!(check(o ^ 1 << 40, A, 1234, secret, prev, sent), Origin::Unknown);
        assert_eq!(check(o ^ 1, A, 1234, secret, prev, sent), Origin::Unknown);
        assert_eq!(check(o, A, 1234, 99, secret, sent), Origin::Previous);
        // Requests a tick apart get different origins.
        assert_ne!(encode(sent + 16, A, 1234, secret), o);
    }

    #[test]
    fn round_trips_survive_the_tick_counter_wrapping() {
        let secret = 7;
        let sent = (1u64 << (32 + TICK_SHIFT)) - 32; // two ticks before the wrap
        let o = encode(sent, A, 1, secret);
        match check(o, A, 1, secret, 0, sent + 1_000_000) {
            Origin::Ours { rtt_ns } => assert!((999_984..=1_000_016).contains(&rtt_ns), "{rtt_ns}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn gaps_and_the_exponential_table_keep_the_rate() {
        assert_eq!(gap_q(1e6), 1000 << 16);
        assert_eq!(gap_q(3e6), ((1e3 / 3.0) * 65536.0f64).round() as u64);
        assert_eq!(gap_q(1e9), 1 << 16);
        let t = exp_table();
        let mean = t.iter().map(|&v| v as f64).sum::<f64>() / EXP_TABLE as f64 / 65536.0;
        assert!((mean - 1.0).abs() < 1e-4, "{mean}");
        assert!(t.windows(2).all(|w| w[0] > w[1]), "decreasing");
        // About exponential: the median near ln 2, the largest near ln 512.
        let median = (t[127] + t[128]) as f64 / 2.0 / 65536.0;
        assert!((median - 2f64.ln()).abs() < 0.02, "{median}");
        assert!(t[0] < 7 << 16 && t[0] > 6 << 16);
    }

    #[test]
    fn buckets_are_log_linear_and_hold_their_values() {
        for ns in 0..16 {
            assert_eq!(rtt_bucket(ns), ns as usize);
            assert_eq!(rtt_bucket_value(ns as usize), ns);
        }
        assert_eq!(rtt_bucket(16), 16);
        assert_eq!(rtt_bucket(17), 16);
        assert_eq!(rtt_bucket(18), 17);
        assert_eq!(rtt_bucket(u64::MAX), RTT_BUCKETS - 1);
        let mut last = 0;
        for shift in 4..40 {
            for k in [0u64, 1, 3, 7] {
                let ns = (1u64 << shift) + k * (1u64 << (shift - 3)) + 1;
                let b = rtt_bucket(ns);
                assert!(b >= last && b < RTT_BUCKETS);
                last = b;
                let v = rtt_bucket_value(b) as f64;
                assert!((v - ns as f64).abs() / (ns as f64) < 0.07, "{ns} -> {b} -> {v}");
                assert_eq!(rtt_bucket(v as u64), b, "the middle is in its bucket");
            }
        }
    }
}

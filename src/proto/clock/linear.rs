//! The TAI -> NTP conversion of [`ClockParams`] as a straight line through one anchor, for a
//! reader that can only add, multiply and shift unsigned integers: the XDP program (BPF has no
//! signed division before cpu v4, and Debian's clang 14 targets v3). The control thread
//! computes it whenever it publishes; the program applies it (`xdp-prog/strata_xdp.h`, struct
//! strata_state). [`LinearNtp::ntp_at`] is the same formula in Rust, so tests can hold the two to
//! each other and this to [`ClockParams::ntp_from_tai`].
//!
//! `ClockParams` is linear in the TAI reading (an offset plus a frequency correction since a base
//! time), so one anchor and one slope reproduce it everywhere; the slope carries 64 fractional
//! bits, which keeps the line within a nanosecond of `ClockParams` for days from the anchor.

use super::params::{ClockParams, FREQUENCY_FRACTION_BITS};
use super::scale::LeapScale;
use crate::proto::wire::NtpTimestamp;

/// `ntp(t) = leap(ntp_anchor + (t - tai_anchor_ns) * rate)` (wrapping at the era), the rate in
/// NTP fraction units (2^-32 s) per TAI nanosecond as `rate_int + rate_frac / 2^64`, and `leap`
/// the pending leap second ([`LeapScale::apply`]; the leaps that are over are in the anchor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinearNtp {
    pub tai_anchor_ns: u64,
    pub ntp_anchor: u64,
    pub rate_int: u64,
    pub rate_frac: u64,
    /// The pending leap of the parameters; `past_s` always 0 (the anchor includes it).
    pub leap: LeapScale,
}

impl LinearNtp {
    /// The line through `params` at the CLOCK_TAI reading `tai_anchor_ns` (take the time of
    /// publication: the line is exact there).
    pub fn new(params: &ClockParams, tai_anchor_ns: u64) -> LinearNtp {
        let ntp_anchor = params.pre_leap_from_tai(tai_anchor_ns as i64).0;
        // NTP units per ns, scaled by 2^64: 2^96 (1 + f / 2^48) / 1e9 = 2^48 (2^48 + f) / 1e9.
        // A correction of -100% or beyond would stop or reverse the clock: never published, and
        // clamped so that the line stays monotonic.
        let slope = ((1i128 << FREQUENCY_FRACTION_BITS) + params.frequency_q48 as i128).max(0) as u128;
        let scaled = ((slope << 48) + 500_000_000) / 1_000_000_000;
        LinearNtp {
            tai_anchor_ns,
            ntp_anchor,
            rate_int: (scaled >> 64) as u64,
            rate_frac: scaled as u64,
            leap: LeapScale {
                past_s: 0,
                ..params.leap
            },
        }
    }

    /// NTP fraction units in `ns` nanoseconds, modulo 2^64.
    fn units(&self, ns: u64) -> u64 {
        let frac = ((ns as u128 * self.rate_frac as u128) >> 64) as u64;
        ns.wrapping_mul(self.rate_int).wrapping_add(frac)
    }

    /// The NTP time of a CLOCK_TAI reading, exactly as the XDP program computes it.
    pub fn ntp_at(&self, tai_ns: u64) -> NtpTimestamp {
        self.leap.apply(self.pre_leap_at(tai_ns))
    }

    /// The line alone: the time before the pending leap.
    pub fn pre_leap_at(&self, tai_ns: u64) -> NtpTimestamp {
        NtpTimestamp(if tai_ns >= self.tai_anchor_ns {
            self.ntp_anchor
                .wrapping_add(self.units(tai_ns - self.tai_anchor_ns))
        } else {
            self.ntp_anchor
                .wrapping_sub(self.units(self.tai_anchor_ns - tai_ns))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: u64 = 1_800_000_000_000_000_000;
    const DAY_NS: i64 = 86_400_000_000_000;

    #[test]
    fn identity_rate_is_2_pow_32_over_1e9() {
        let line = LinearNtp::new(&ClockParams::identity(37), T0);
        assert_eq!(line.rate_int, 4);
        // 2^64 / 1e9 = 18446744073.709551616: 4 + 0.294967296.
        let expected = (((1u128 << 96) + 500_000_000) / 1_000_000_000) as u64;
        assert_eq!(line.rate_frac, expected);
        assert_eq!(line.ntp_at(T0), ClockParams::identity(37).ntp_from_tai(T0 as i64));
    }

    proptest! {
        /// The line and ClockParams agree within a microsecond (in fact a few nanoseconds) a day
        /// either side of the anchor, for any offset and any frequency a disciplined clock has.
        #[test]
        fn agrees_with_clock_params(
            tai in 0i32..40,
            base_from_anchor in -DAY_NS..DAY_NS,
            offset in -10_000_000_000i64..10_000_000_000,
            ppm in -1000.0f64..1000.0,
            at in -DAY_NS..DAY_NS,
            past in -3i32..3,
            delta in -1i8..=1,
            leap_from_anchor in -DAY_NS..DAY_NS,
            smear in prop::bool::ANY,
        ) {
            let mut params = ClockParams {
                tai_minus_utc: tai,
                base_ns: T0 as i64 - tai as i64 * 1_000_000_000 + base_from_anchor,
                offset_ns: offset,
                frequency_q48: ClockParams::frequency_q48_from_ppm(ppm),
                leap: Default::default(),
            };
            // A leap (stepped or smeared over 12 h) somewhere within a day of the anchor.
            let leap_at = params.pre_leap_from_tai(T0 as i64 + leap_from_anchor);
            params.leap = LeapScale {
                past_s: past,
                delta,
                at: leap_at,
                smear_start: leap_at.add_nanos(-6 * 3_600_000_000_000),
                smear_len_s: if smear { 43_200 } else { 0 },
                kernel_steps_realtime: false,
            };
            let line = LinearNtp::new(&params, T0);
            let t = (T0 as i64 + at) as u64;
            let got = line.ntp_at(t);
            let want = params.ntp_from_tai(t as i64);
            let diff = got.diff_nanos(want);
            // Within a few ns of a step the two may fall on either side of it.
            let near_step = !smear && delta != 0 && (at - leap_from_anchor).abs() < 1_000;
            prop_assume!(!near_step);
            prop_assert!(diff.abs() <= 3, "{diff} ns apart at {at} ns from the anchor");
        }
    }
}

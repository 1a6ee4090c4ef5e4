//! Conversion of kernel clock readings (CLOCK_TAI, CLOCK_REALTIME, both in nanoseconds) into NTP
//! time, corrected by strata's own clock model: `ntp = utc + offset + (utc - base) * frequency`.
//! The control thread owns these parameters and publishes them; responders only apply them.

use super::scale::LeapScale;
use crate::proto::wire::NtpTimestamp;

/// Frequency corrections are fixed-point fractions with this many fractional bits
/// (1 ppm = 2^48 / 10^6 ≈ 2.8e8 units), so applying one is a multiply and a shift.
pub const FREQUENCY_FRACTION_BITS: u32 = 48;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockParams {
    /// TAI − UTC in seconds, as the kernel applies it to CLOCK_TAI (0 when nobody set it, in
    /// which case CLOCK_TAI reads the same as CLOCK_REALTIME).
    pub tai_minus_utc: i32,
    /// UTC nanoseconds at which `offset_ns` held; the frequency correction grows from here.
    pub base_ns: i64,
    /// Correction added to the kernel's UTC at `base_ns`, in nanoseconds.
    pub offset_ns: i64,
    /// Frequency correction as a fraction scaled by 2^48 (positive: strata's clock runs faster).
    pub frequency_q48: i64,
    /// The leap seconds applied to the served time (see [`super::scale`]): the model above runs
    /// on a uniform scale, and this turns it into UTC.
    pub leap: LeapScale,
}

impl ClockParams {
    /// Parameters that apply no correction.
    pub const fn identity(tai_minus_utc: i32) -> Self {
        ClockParams {
            tai_minus_utc,
            base_ns: 0,
            offset_ns: 0,
            frequency_q48: 0,
            leap: LeapScale {
                past_s: 0,
                delta: 0,
                at: NtpTimestamp::ZERO,
                smear_start: NtpTimestamp::ZERO,
                smear_len_s: 0,
                kernel_steps_realtime: false,
            },
        }
    }

    /// Frequency correction in parts per million, for display.
    pub fn frequency_ppm(&self) -> f64 {
        self.frequency_q48 as f64 * 1e6 / (1u64 << FREQUENCY_FRACTION_BITS) as f64
    }

    pub fn frequency_q48_from_ppm(ppm: f64) -> i64 {
        (ppm * 1e-6 * (1u64 << FREQUENCY_FRACTION_BITS) as f64).round() as i64
    }

    /// strata's UTC in nanoseconds for a CLOCK_REALTIME reading.
    #[inline]
    pub fn corrected_utc_ns(&self, realtime_ns: i64) -> i64 {
        let elapsed = realtime_ns.wrapping_sub(self.base_ns) as i128;
        let drift = (elapsed * self.frequency_q48 as i128) >> FREQUENCY_FRACTION_BITS;
        realtime_ns
            .wrapping_add(self.offset_ns)
            .wrapping_add(drift as i64)
    }

    /// NTP time for a CLOCK_REALTIME reading (kernel software timestamps use this clock).
    #[inline]
    pub fn ntp_from_realtime(&self, realtime_ns: i64) -> NtpTimestamp {
        let u = self.pre_leap_from_realtime(realtime_ns);
        if self.leap.kernel_steps_realtime {
            u
        } else {
            self.leap.apply(u)
        }
    }

    /// NTP time for a CLOCK_TAI reading (the responders' clock and the XDP-time stamps).
    #[inline]
    pub fn ntp_from_tai(&self, tai_ns: i64) -> NtpTimestamp {
        self.leap.apply(self.pre_leap_from_tai(tai_ns))
    }

    /// The time before the pending leap is applied (`u` of [`super::scale`]): the uniform
    /// scale less the leaps that are over. The XDP program's line computes this.
    #[inline]
    pub fn pre_leap_from_realtime(&self, realtime_ns: i64) -> NtpTimestamp {
        let past = self.leap.past_s as i64 * 1_000_000_000;
        NtpTimestamp::from_unix_nanos(self.corrected_utc_ns(realtime_ns).wrapping_sub(past) as i128)
    }

    /// [`ClockParams::pre_leap_from_realtime`] for a CLOCK_TAI reading.
    #[inline]
    pub fn pre_leap_from_tai(&self, tai_ns: i64) -> NtpTimestamp {
        self.pre_leap_from_realtime(tai_ns - self.tai_minus_utc as i64 * 1_000_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_700_000_000_000_000_000;

    #[test]
    fn identity_maps_realtime_to_the_same_instant() {
        let p = ClockParams::identity(0);
        assert_eq!(p.ntp_from_realtime(T0).to_unix_nanos(T0 as i128), T0 as i128);
    }

    #[test]
    fn tai_is_shifted_by_the_kernel_offset() {
        let p = ClockParams::identity(37);
        let tai = T0 + 37_000_000_000;
        assert_eq!(p.ntp_from_tai(tai), p.ntp_from_realtime(T0));
    }

    #[test]
    fn offset_and_frequency_apply_from_the_base() {
        let p = ClockParams {
            tai_minus_utc: 0,
            base_ns: T0,
            offset_ns: 1_000,
            frequency_q48: ClockParams::frequency_q48_from_ppm(50.0),
            leap: LeapScale::default(),
        };
        assert_eq!(p.corrected_utc_ns(T0), T0 + 1_000);
        // 1000 s after the base, 50 ppm adds 50 ms.
        let later = T0 + 1_000_000_000_000;
        let got = p.corrected_utc_ns(later) - later - 1_000;
        assert!((got - 50_000_000).abs() <= 1, "{got}");
        assert!((p.frequency_ppm() - 50.0).abs() < 1e-6);
        // Before the base the correction runs backwards.
        let earlier = T0 - 1_000_000_000_000;
        assert!((p.corrected_utc_ns(earlier) - earlier - 1_000 + 50_000_000).abs() <= 1);
    }
}

//! NTP time formats: the 64-bit timestamp (32.32 seconds since the era start) and the 32-bit
//! short format (16.16 seconds) used for root delay and root dispersion.
//!
//! A wire timestamp carries no era number. Converting it back to an absolute time therefore needs
//! a pivot: the era is chosen that puts the result nearest the pivot (RFC 5905 section 6), which
//! is correct as long as the two are within 68 years of each other.

/// Seconds from the NTP prime epoch (1900-01-01) to the Unix epoch (1970-01-01).
pub const UNIX_EPOCH_NTP_SECONDS: i64 = 2_208_988_800;

const NANOS_PER_SECOND: i128 = 1_000_000_000;
/// Nanoseconds in one NTP era (2^32 seconds).
const ERA_NANOS: i128 = (1i128 << 32) * NANOS_PER_SECOND;

/// A 64-bit NTP timestamp exactly as it is on the wire: seconds in the high 32 bits, fraction in
/// the low 32 bits. Zero means "unknown" in the origin, receive and reference fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NtpTimestamp(pub u64);

impl NtpTimestamp {
    pub const ZERO: NtpTimestamp = NtpTimestamp(0);

    pub const fn from_bits(bits: u64) -> Self {
        NtpTimestamp(bits)
    }

    pub const fn to_bits(self) -> u64 {
        self.0
    }

    pub const fn seconds(self) -> u32 {
        (self.0 >> 32) as u32
    }

    pub const fn fraction(self) -> u32 {
        self.0 as u32
    }

    /// The timestamp of a time given in nanoseconds since the Unix epoch (any era; negative
    /// values are before 1970). The fraction is truncated, never rounded up into the next second.
    pub fn from_unix_nanos(unix_nanos: i128) -> Self {
        let ntp_nanos = unix_nanos + UNIX_EPOCH_NTP_SECONDS as i128 * NANOS_PER_SECOND;
        let within_era = ntp_nanos.rem_euclid(ERA_NANOS);
        let secs = (within_era / NANOS_PER_SECOND) as u64;
        let sub = (within_era % NANOS_PER_SECOND) as u64;
        // sub < 1e9 < 2^30, so sub << 32 fits in u64.
        let frac = (sub << 32) / NANOS_PER_SECOND as u64;
        NtpTimestamp((secs << 32) | frac)
    }

    /// Nanoseconds since the Unix epoch, in the era that puts the result nearest `pivot_unix_nanos`.
    /// The fraction is rounded to the nearest nanosecond.
    pub fn to_unix_nanos(self, pivot_unix_nanos: i128) -> i128 {
        let within_era = self.nanos_within_era() as i128;
        let pivot_ntp = pivot_unix_nanos + UNIX_EPOCH_NTP_SECONDS as i128 * NANOS_PER_SECOND;
        let pivot_era = pivot_ntp.div_euclid(ERA_NANOS);
        let pivot_in_era = pivot_ntp.rem_euclid(ERA_NANOS);
        let mut era = pivot_era;
        let diff = within_era - pivot_in_era;
        if diff > ERA_NANOS / 2 {
            era -= 1;
        } else if diff < -ERA_NANOS / 2 {
            era += 1;
        }
        era * ERA_NANOS + within_era - UNIX_EPOCH_NTP_SECONDS as i128 * NANOS_PER_SECOND
    }

    /// Nanoseconds since the start of this timestamp's era, fraction rounded to nearest.
    pub fn nanos_within_era(self) -> u64 {
        let secs = self.seconds() as u64;
        let frac_nanos = ((self.fraction() as u64 * 1_000_000_000) + (1 << 31)) >> 32;
        secs * 1_000_000_000 + frac_nanos
    }

    /// The signed difference `self - earlier` in nanoseconds, valid when the two are within 68
    /// years of each other (wrapping arithmetic makes it era-independent).
    pub fn diff_nanos(self, earlier: NtpTimestamp) -> i64 {
        let d = self.0.wrapping_sub(earlier.0) as i64; // 32.32 fixed point, signed
                                                       // d * 1e9 / 2^32 without overflow: split into whole seconds and fraction.
        let secs = d >> 32;
        let frac = d & 0xffff_ffff;
        secs * 1_000_000_000 + ((frac * 1_000_000_000) >> 32)
    }

    /// Adds a signed number of nanoseconds, wrapping at the era boundary.
    pub fn add_nanos(self, nanos: i64) -> NtpTimestamp {
        let secs = nanos.div_euclid(1_000_000_000);
        let sub = nanos.rem_euclid(1_000_000_000) as u64;
        let frac = (sub << 32) / 1_000_000_000;
        NtpTimestamp(self.0.wrapping_add((secs as u64) << 32).wrapping_add(frac))
    }
}

/// The 32-bit NTP short format (16.16 seconds), used for root delay and root dispersion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct NtpShort(pub u32);

impl NtpShort {
    pub const ZERO: NtpShort = NtpShort(0);
    /// The largest value, just under 65536 s; used where a value would overflow.
    pub const MAX: NtpShort = NtpShort(u32::MAX);

    pub const fn from_bits(bits: u32) -> Self {
        NtpShort(bits)
    }

    pub const fn to_bits(self) -> u32 {
        self.0
    }

    /// From a non-negative duration in nanoseconds, rounded up (a delay or dispersion is never
    /// reported smaller than it is) and saturated at the format's maximum.
    pub fn from_nanos(nanos: u64) -> Self {
        let bits = ((nanos as u128) << 16).div_ceil(1_000_000_000);
        NtpShort(bits.min(u32::MAX as u128) as u32)
    }

    /// The duration in nanoseconds, truncated (so that `from_nanos` gives the same value back).
    pub fn to_nanos(self) -> u64 {
        (self.0 as u64 * 1_000_000_000) >> 16
    }

    pub fn from_seconds_f64(seconds: f64) -> Self {
        if seconds.is_nan() || seconds <= 0.0 {
            return NtpShort::ZERO;
        }
        let bits = (seconds * 65536.0).ceil();
        if bits >= u32::MAX as f64 {
            NtpShort::MAX
        } else {
            NtpShort(bits as u32)
        }
    }

    pub fn to_seconds_f64(self) -> f64 {
        self.0 as f64 / 65536.0
    }

    pub fn saturating_add(self, other: NtpShort) -> NtpShort {
        NtpShort(self.0.saturating_add(other.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECOND: i128 = 1_000_000_000;

    #[test]
    fn unix_epoch_is_ntp_2208988800() {
        let ts = NtpTimestamp::from_unix_nanos(0);
        assert_eq!(ts.seconds(), 2_208_988_800);
        assert_eq!(ts.fraction(), 0);
        assert_eq!(ts.to_unix_nanos(0), 0);
    }

    #[test]
    fn half_second_is_half_the_fraction_range() {
        let ts = NtpTimestamp::from_unix_nanos(SECOND / 2);
        assert_eq!(ts.fraction(), 1 << 31);
    }

    #[test]
    fn era_one_starts_in_2036() {
        // 2036-02-07T06:28:16Z is the first second of era 1.
        let era1_unix = (1i128 << 32) - UNIX_EPOCH_NTP_SECONDS as i128;
        assert_eq!(era1_unix, 2_085_978_496);
        let ts = NtpTimestamp::from_unix_nanos(era1_unix * SECOND);
        assert_eq!(ts.0, 0);
        // Near 2036 the zero timestamp means the era boundary, not 1900.
        assert_eq!(
            ts.to_unix_nanos(era1_unix * SECOND - 10 * SECOND),
            era1_unix * SECOND
        );
        // One second before the boundary, with a pivot just after it.
        let before = NtpTimestamp::from_unix_nanos((era1_unix - 1) * SECOND);
        assert_eq!(before.seconds(), u32::MAX);
        assert_eq!(
            before.to_unix_nanos((era1_unix + 5) * SECOND),
            (era1_unix - 1) * SECOND
        );
    }

    #[test]
    fn pivot_chooses_nearest_era() {
        let t_2020 = 1_577_836_800 * SECOND;
        let ts = NtpTimestamp::from_unix_nanos(t_2020);
        assert_eq!(ts.to_unix_nanos(t_2020 + 30 * 365 * 86_400 * SECOND), t_2020);
        assert_eq!(ts.to_unix_nanos(t_2020 - 30 * 365 * 86_400 * SECOND), t_2020);
    }

    #[test]
    fn diff_and_add_are_era_independent() {
        let a = NtpTimestamp(u64::MAX - (1 << 32)); // one second before the wrap, roughly
        let b = a.add_nanos(3_000_000_000);
        assert!(b.0 < a.0, "wrapped");
        assert_eq!(b.diff_nanos(a), 3_000_000_000);
        assert_eq!(a.diff_nanos(b), -3_000_000_000);
    }

    #[test]
    fn short_format_round_trips_and_rounds_up() {
        assert_eq!(NtpShort::from_nanos(1_000_000_000).0, 0x0001_0000);
        assert_eq!(NtpShort::from_nanos(1).0, 1, "never reported as zero");
        assert_eq!(NtpShort::from_nanos(u64::MAX), NtpShort::MAX);
        assert_eq!(NtpShort(0x0000_8000).to_nanos(), 500_000_000);
        assert_eq!(NtpShort::from_seconds_f64(0.5).0, 0x8000);
        assert_eq!(NtpShort::from_seconds_f64(-1.0), NtpShort::ZERO);
        assert_eq!(NtpShort::from_seconds_f64(1e9), NtpShort::MAX);
    }

    proptest! {
        #[test]
        fn unix_nanos_round_trip_within_a_nanosecond(
            unix_nanos in -2_208_988_800i128 * SECOND..4_000_000_000i128 * SECOND,
        ) {
            let ts = NtpTimestamp::from_unix_nanos(unix_nanos);
            let back = ts.to_unix_nanos(unix_nanos);
            // 2^-32 s resolution is 0.23 ns; truncation plus rounding stays within 1 ns.
            prop_assert!((back - unix_nanos).abs() <= 1, "{unix_nanos} -> {back}");
        }

        #[test]
        fn bits_round_trip(bits: u64) {
            prop_assert_eq!(NtpTimestamp::from_bits(bits).to_bits(), bits);
        }

        #[test]
        fn diff_inverts_add(base: u64, nanos in -2_000_000_000_000_000i64..2_000_000_000_000_000i64) {
            let a = NtpTimestamp(base);
            let d = a.add_nanos(nanos).diff_nanos(a);
            prop_assert!((d - nanos).abs() <= 1, "{nanos} -> {d}");
        }

        #[test]
        fn short_round_trip(bits: u32) {
            prop_assert_eq!(NtpShort::from_nanos(NtpShort(bits).to_nanos()), NtpShort(bits));
        }
    }
}

//! The leap second as strata applies it to the time it serves: one definition, used by
//! [`super::ClockParams`] (the socket and AF_XDP tiers, through `respond()`), by
//! [`super::LinearNtp`] and, written again in C, by the XDP answer tier
//! (`xdp-prog/strata_answer.h`, `apply_leap`), which the differential test holds to this one.
//!
//! strata's clock model runs on a uniform scale (the kernel clock plus the discipline's
//! correction; no leap ever happens in it). Served UTC is that scale less the leaps that are
//! over (`past_s`), then less the pending leap as a function of the time `u` so obtained, which
//! reads as UTC did before the leap:
//!
//! - step (the default): at `u >= at` the served time steps by `delta` seconds. `at` is where
//!   the kernel steps its own clock: for an inserted second (`delta = +1`) 00:00:00 as read
//!   before the leap, so the served time goes 23:59:59.999 -> 23:59:59.000 and 23:59:59 is
//!   served twice (the kernel's and chronyd's convention: NTP timestamps cannot say 23:59:60);
//!   for a deleted second (`delta = -1`) 23:59:59, so 23:59:58.999 is followed by 00:00:00.
//! - smear (`smear_len_s > 0`): from `smear_start` on, the served time lags (or, deleted,
//!   leads) by `(u - smear_start) / smear_len_s` NTP units, until the whole second is done
//!   after `smear_len_s` seconds of `u`: a straight line, so that a client sees a clock off in
//!   rate by 1/smear_len_s and never a step.
//!
//! Only integer operations a BPF program has (unsigned 64-bit division, wrapping add and
//! subtract, a signed compare) so that the C is the same function, bit for bit; comparisons
//! wrap at the NTP era like every NTP timestamp.

use crate::proto::wire::NtpTimestamp;

/// One second in NTP 32.32 units.
pub const NTP_SECOND: u64 = 1 << 32;

/// What the served time does about leap seconds (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeapScale {
    /// Leaps that are over, summed (+1 each inserted second, -1 each deleted one): seconds
    /// taken off the uniform scale before anything else. Folded in once a leap is well past.
    pub past_s: i32,
    /// The pending leap: +1 an inserted second, -1 a deleted one, 0 none.
    pub delta: i8,
    /// Where a stepped leap happens, as the time read before it (NTP 32.32).
    pub at: NtpTimestamp,
    /// Where a smeared leap starts (NTP 32.32), and how many seconds of `u` it lasts (0: the
    /// leap is stepped at `at`).
    pub smear_start: NtpTimestamp,
    pub smear_len_s: u32,
    /// The kernel steps CLOCK_REALTIME at the pending leap itself (`--discipline-system` armed
    /// it): readings of that clock already carry it, so [`super::ClockParams::ntp_from_realtime`]
    /// does not apply it again. CLOCK_TAI never leaps, so its readings always get it here.
    pub kernel_steps_realtime: bool,
}

impl LeapScale {
    /// Served time for `u`, the time after `past_s` (the XDP program's line gives this `u`).
    #[inline]
    pub fn apply(&self, u: NtpTimestamp) -> NtpTimestamp {
        NtpTimestamp(apply_bits(
            u.0,
            self.delta,
            self.at.0,
            self.smear_start.0,
            self.smear_len_s,
        ))
    }

    /// How far the served time is from `u` (NTP units; negative: behind), at `u`.
    pub fn offset_units(&self, u: NtpTimestamp) -> i64 {
        self.apply(u).0.wrapping_sub(u.0) as i64
    }

    /// Whether the pending leap (if any) is smeared.
    pub fn smearing(&self) -> bool {
        self.delta != 0 && self.smear_len_s > 0
    }

    /// Where the pending leap is complete (in `u`): the step, or the end of the smear.
    pub fn end(&self) -> NtpTimestamp {
        if self.smear_len_s > 0 {
            NtpTimestamp(
                self.smear_start
                    .0
                    .wrapping_add(self.smear_len_s as u64 * NTP_SECOND),
            )
        } else {
            self.at
        }
    }

    /// The first instant of the new day, as UTC reads it once the leap is done: the instant
    /// from which upstream timestamps are on the new scale (see [`LeapScale::uniform_from_utc`]).
    pub fn midnight(&self) -> NtpTimestamp {
        if self.delta < 0 {
            NtpTimestamp(self.at.0.wrapping_add(NTP_SECOND))
        } else {
            self.at
        }
    }

    /// An upstream's UTC timestamp on strata's uniform scale: the leaps that are over added
    /// back, and the pending one if the timestamp is from after it. Upstream timestamps within
    /// the inserted second are ambiguous (23:59:59 twice); the engine does not measure then.
    pub fn uniform_from_utc(&self, t: NtpTimestamp) -> NtpTimestamp {
        let mut shift = self.past_s as i64;
        if self.delta != 0 && t.0.wrapping_sub(self.midnight().0) as i64 >= 0 {
            shift += self.delta as i64;
        }
        NtpTimestamp(t.0.wrapping_add((shift as u64).wrapping_mul(NTP_SECOND)))
    }

    /// The same scale with the pending leap counted as over: serves the same time once the
    /// leap is complete (from [`LeapScale::end`] on), for the next leap to be scheduled.
    pub fn folded(&self) -> LeapScale {
        LeapScale {
            past_s: self.past_s + self.delta as i32,
            ..LeapScale::default()
        }
    }
}

/// The function itself on plain integers, as `apply_leap` in the C has it.
#[inline]
fn apply_bits(u: u64, delta: i8, at: u64, smear_start: u64, smear_len_s: u32) -> u64 {
    if delta == 0 {
        return u;
    }
    let shift = if smear_len_s > 0 {
        let into = u.wrapping_sub(smear_start);
        if (into as i64) < 0 {
            0
        } else if into >= smear_len_s as u64 * NTP_SECOND {
            NTP_SECOND
        } else {
            into / smear_len_s as u64
        }
    } else if (u.wrapping_sub(at) as i64) < 0 {
        0
    } else {
        NTP_SECOND
    };
    if delta > 0 {
        u.wrapping_sub(shift)
    } else {
        u.wrapping_add(shift)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2017-01-01T00:00:00Z, the last inserted second's end, as NTP seconds.
    const NEW_YEAR_2017: u64 = 3_692_217_600;

    fn ntp(s: u64, frac: u64) -> NtpTimestamp {
        NtpTimestamp((s << 32) | frac)
    }

    #[test]
    fn an_inserted_second_repeats_23_59_59() {
        let scale = LeapScale {
            delta: 1,
            at: ntp(NEW_YEAR_2017, 0),
            ..LeapScale::default()
        };
        let half = 1 << 31;
        assert_eq!(
            scale.apply(ntp(NEW_YEAR_2017 - 1, half)),
            ntp(NEW_YEAR_2017 - 1, half)
        );
        assert_eq!(
            scale.apply(ntp(NEW_YEAR_2017 - 1, u32::MAX as u64)).seconds() as u64,
            NEW_YEAR_2017 - 1
        );
        // 00:00:00 as read before the leap is 23:59:59 again...
        assert_eq!(scale.apply(ntp(NEW_YEAR_2017, 0)), ntp(NEW_YEAR_2017 - 1, 0));
        assert_eq!(
            scale.apply(ntp(NEW_YEAR_2017, half)),
            ntp(NEW_YEAR_2017 - 1, half)
        );
        // ...and a second later the new year begins.
        assert_eq!(scale.apply(ntp(NEW_YEAR_2017 + 1, 0)), ntp(NEW_YEAR_2017, 0));
        assert_eq!(scale.midnight(), ntp(NEW_YEAR_2017, 0));
        assert_eq!(scale.end(), ntp(NEW_YEAR_2017, 0));
    }

    #[test]
    fn a_deleted_second_skips_23_59_59() {
        let midnight = 3_944_678_400; // 2025-01-01, say
        let scale = LeapScale {
            delta: -1,
            at: ntp(midnight - 1, 0),
            ..LeapScale::default()
        };
        assert_eq!(
            scale.apply(ntp(midnight - 2, 1 << 31)),
            ntp(midnight - 2, 1 << 31)
        );
        assert_eq!(scale.apply(ntp(midnight - 1, 0)), ntp(midnight, 0));
        assert_eq!(scale.midnight(), ntp(midnight, 0));
    }

    #[test]
    fn upstream_time_after_the_leap_maps_back_onto_the_uniform_scale() {
        let scale = LeapScale {
            past_s: 2,
            delta: 1,
            at: ntp(NEW_YEAR_2017, 0),
            ..LeapScale::default()
        };
        assert_eq!(
            scale.uniform_from_utc(ntp(NEW_YEAR_2017 - 5, 7)),
            ntp(NEW_YEAR_2017 - 3, 7)
        );
        assert_eq!(
            scale.uniform_from_utc(ntp(NEW_YEAR_2017 + 5, 7)),
            ntp(NEW_YEAR_2017 + 8, 7)
        );
        // Folded, the same upstream time is the same uniform time.
        let folded = scale.folded();
        assert_eq!(folded.past_s, 3);
        assert_eq!(
            folded.uniform_from_utc(ntp(NEW_YEAR_2017 + 5, 7)),
            ntp(NEW_YEAR_2017 + 8, 7)
        );
    }

    #[test]
    fn a_smear_is_a_straight_line_over_its_length() {
        let len = 86_401;
        let start = ntp(NEW_YEAR_2017 - 43_200, 0);
        let scale = LeapScale {
            delta: 1,
            at: ntp(NEW_YEAR_2017, 0),
            smear_start: start,
            smear_len_s: len,
            ..LeapScale::default()
        };
        assert_eq!(scale.offset_units(start.add_nanos(-1)), 0);
        assert_eq!(scale.offset_units(start), 0);
        let mid = NtpTimestamp(start.0 + len as u64 * NTP_SECOND / 2);
        assert_eq!(scale.offset_units(mid), -((NTP_SECOND / 2) as i64));
        assert_eq!(scale.offset_units(scale.end()), -(NTP_SECOND as i64));
        assert_eq!(
            scale.offset_units(NtpTimestamp(scale.end().0 + 12345 * NTP_SECOND)),
            -(NTP_SECOND as i64)
        );
        // Noon to noon: the served time at the end reads noon of the new day.
        assert_eq!(scale.apply(scale.end()), ntp(NEW_YEAR_2017 + 43_200, 0));
    }

    proptest! {
        /// Served time never runs backwards except at a stepped inserted second, and then by
        /// exactly one second; a smear never steps at all.
        #[test]
        fn monotonic_but_for_the_inserted_step(
            delta in prop::sample::select(vec![-1i8, 1]),
            smear in prop::bool::ANY,
            u in 0u64..(1 << 40),
            d in 1u64..(1 << 34),
        ) {
            let base = NEW_YEAR_2017 << 32;
            let scale = LeapScale {
                delta,
                at: NtpTimestamp(base),
                smear_start: NtpTimestamp(base - (1 << 38)),
                smear_len_s: if smear { 86_400 } else { 0 },
                ..LeapScale::default()
            };
            let a = NtpTimestamp(base - (1 << 39) + u);
            let b = NtpTimestamp(a.0 + d);
            let step = scale.apply(b).0.wrapping_sub(scale.apply(a).0) as i64;
            let crosses = a < scale.at && b >= scale.at;
            if delta > 0 && !smear && crosses {
                prop_assert_eq!(step, d as i64 - NTP_SECOND as i64);
            } else if delta < 0 && !smear && crosses {
                prop_assert_eq!(step, d as i64 + NTP_SECOND as i64);
            } else {
                prop_assert!(step >= 0, "{step}");
                prop_assert!((step - d as i64).abs() <= d as i64 / 86_000 + 1);
            }
        }
    }
}

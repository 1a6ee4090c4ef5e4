//! The PHC-to-TAI line as it is published to the responders: integers only, so that applying it
//! is a multiply and a shift (the same shape as [`ClockParams::corrected_utc_ns`]) and a BPF
//! program can do the same arithmetic. The control thread fits the line ([`super::PhcMapping`],
//! on cross-stamps whose system side it has put on CLOCK_TAI) and publishes one per interface
//! with a PHC; a responder reads it once per batch and maps each hardware receive stamp with
//! [`PhcLine::tai_ns`]. That, then [`ClockParams::ntp_from_tai`], is the one conversion from a
//! NIC's stamp to the served time: [`ntp_from_phc`].
//!
//! [`ClockParams::corrected_utc_ns`]: crate::proto::clock::ClockParams::corrected_utc_ns
//! [`ClockParams::ntp_from_tai`]: crate::proto::clock::ClockParams::ntp_from_tai

use super::{PhcMapping, Unusable};
use crate::proto::clock::params::FREQUENCY_FRACTION_BITS;
use crate::proto::clock::seqlock::{SeqLockReader, SeqLockWriter, Words};
use crate::proto::clock::ClockParams;
use crate::proto::wire::NtpTimestamp;

/// A line fitted longer ago than this (TAI ns) is not used: the control thread stopped
/// updating it, and the PHC's frequency against the system clock may have moved since.
pub const MAX_LINE_AGE_NS: i64 = 10_000_000_000;

/// A stamp this far (ns) from the line's reference point is not mapped (stale): the XDP
/// program's arithmetic (xdp-prog/strata_phc.h) has no 128-bit multiply and is exact only
/// within this and [`MAX_SLOPE_Q48`]. The window and [`MAX_LINE_AGE_NS`] keep real stamps
/// within seconds of it.
pub const MAX_ELAPSED_NS: i64 = 1 << 40;
/// A line steeper than this (1/64, 15 625 ppm) is not used (too noisy): no PHC runs that far
/// off the system clock.
pub const MAX_SLOPE_Q48: i64 = 1 << 42;

/// Why a hardware receive stamp was not used as T2 (the XDP-time stamp was served instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HardwareUnused {
    /// No mapping is published for the interface: it has no PHC, or its PHC cannot be read.
    NoMapping,
    /// The mapping has too few cross-stamps yet (since the start or the last step).
    TooFewSamples,
    /// The cross-stamps' jitter is over the bound.
    TooNoisy,
    /// The mapping was not refreshed for [`MAX_LINE_AGE_NS`].
    Stale,
}

impl HardwareUnused {
    pub const ALL: [HardwareUnused; 4] = [
        HardwareUnused::NoMapping,
        HardwareUnused::TooFewSamples,
        HardwareUnused::TooNoisy,
        HardwareUnused::Stale,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            HardwareUnused::NoMapping => "no_mapping",
            HardwareUnused::TooFewSamples => "too_few_samples",
            HardwareUnused::TooNoisy => "too_noisy",
            HardwareUnused::Stale => "stale",
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }

    /// The code of a reason as the XDP program's `struct strata_phc` holds it (0: usable; a
    /// code this build does not know is no mapping, never usable).
    pub const fn from_code(code: u64) -> Option<HardwareUnused> {
        match code {
            0 => None,
            1 => Some(HardwareUnused::NoMapping),
            2 => Some(HardwareUnused::TooFewSamples),
            3 => Some(HardwareUnused::TooNoisy),
            4 => Some(HardwareUnused::Stale),
            _ => Some(HardwareUnused::NoMapping),
        }
    }

    pub const fn code(reason: Option<HardwareUnused>) -> u64 {
        match reason {
            None => 0,
            Some(r) => r as u64 + 1,
        }
    }
}

impl From<Unusable> for HardwareUnused {
    fn from(u: Unusable) -> Self {
        match u {
            Unusable::TooFewSamples => HardwareUnused::TooFewSamples,
            Unusable::TooNoisy => HardwareUnused::TooNoisy,
        }
    }
}

/// `tai = phc + offset_ns + ((phc − phc_ref_ns) × slope_q48) >> 48`, usable or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhcLine {
    pub phc_ref_ns: i64,
    /// TAI − PHC at `phc_ref_ns`.
    pub offset_ns: i64,
    /// d(TAI − PHC)/d(PHC), scaled by 2^48.
    pub slope_q48: i64,
    /// CLOCK_TAI when the line was fitted: its age.
    pub fitted_tai_ns: i64,
    /// Why the line may not be used (None: usable).
    pub unusable: Option<HardwareUnused>,
}

impl PhcLine {
    /// No mapping: every hardware stamp falls back.
    pub const NONE: PhcLine = PhcLine {
        phc_ref_ns: 0,
        offset_ns: 0,
        slope_q48: 0,
        fitted_tai_ns: 0,
        unusable: Some(HardwareUnused::NoMapping),
    };

    /// The line of `mapping` (whose system side is CLOCK_TAI), fitted at `fitted_tai_ns`.
    pub fn of(mapping: &PhcMapping, fitted_tai_ns: i64) -> PhcLine {
        let (phc_ref_ns, intercept, slope) = mapping.line_parameters();
        PhcLine {
            phc_ref_ns,
            offset_ns: intercept.round() as i64,
            slope_q48: (slope * (1u64 << FREQUENCY_FRACTION_BITS) as f64).round() as i64,
            fitted_tai_ns,
            unusable: match mapping.samples() {
                0 => Some(HardwareUnused::NoMapping),
                _ => mapping.unusable_because().map(HardwareUnused::from),
            },
        }
    }

    /// The line applied, whatever its state (for the control side's own checks and tests).
    #[inline]
    pub fn apply(&self, phc_ns: i64) -> i64 {
        let elapsed = phc_ns.wrapping_sub(self.phc_ref_ns) as i128;
        let drift = (elapsed * self.slope_q48 as i128) >> FREQUENCY_FRACTION_BITS;
        phc_ns.wrapping_add(self.offset_ns).wrapping_add(drift as i64)
    }

    /// CLOCK_TAI of a hardware stamp `phc_ns`, at `now_tai_ns`; or why it may not be used.
    #[inline]
    pub fn tai_ns(&self, phc_ns: i64, now_tai_ns: i64) -> Result<i64, HardwareUnused> {
        if let Some(reason) = self.unusable {
            return Err(reason);
        }
        if !(0..=MAX_LINE_AGE_NS).contains(&now_tai_ns.wrapping_sub(self.fitted_tai_ns)) {
            return Err(HardwareUnused::Stale);
        }
        if phc_ns.wrapping_sub(self.phc_ref_ns).unsigned_abs() >= MAX_ELAPSED_NS as u64 {
            return Err(HardwareUnused::Stale);
        }
        if self.slope_q48.unsigned_abs() >= MAX_SLOPE_Q48 as u64 {
            return Err(HardwareUnused::TooNoisy);
        }
        Ok(self.apply(phc_ns))
    }
}

/// The served time of a hardware receive stamp: the one definition every tier uses.
#[inline]
pub fn ntp_from_phc(
    line: &PhcLine,
    clock: &ClockParams,
    phc_ns: i64,
    now_tai_ns: i64,
) -> Result<NtpTimestamp, HardwareUnused> {
    line.tai_ns(phc_ns, now_tai_ns).map(|tai| clock.ntp_from_tai(tai))
}

impl Words for PhcLine {
    const WORDS: usize = 5;

    fn encode(&self, w: &mut [u64]) {
        w[0] = self.phc_ref_ns as u64;
        w[1] = self.offset_ns as u64;
        w[2] = self.slope_q48 as u64;
        w[3] = self.fitted_tai_ns as u64;
        w[4] = HardwareUnused::code(self.unusable);
    }

    fn decode(w: &[u64]) -> Self {
        PhcLine {
            phc_ref_ns: w[0] as i64,
            offset_ns: w[1] as i64,
            slope_q48: w[2] as i64,
            fitted_tai_ns: w[3] as i64,
            unusable: HardwareUnused::from_code(w[4]),
        }
    }
}

/// The control thread's handle on one interface's published line.
pub type PhcLineWriter = SeqLockWriter<PhcLine>;
/// A responder's handle on its interface's line.
pub type PhcLineReader = SeqLockReader<PhcLine>;

#[cfg(test)]
mod tests {
    use super::super::CrossStamp;
    use super::*;
    use proptest::prelude::*;

    const T0: i64 = 1_800_000_000_000_000_000;

    fn mapping(ppm: f64, offset: i64) -> PhcMapping {
        let mut m = PhcMapping::new(1_000.0);
        for i in 0..8 {
            let phc = T0 + i * 250_000_000;
            let sys = phc + offset + ((phc - T0) as f64 * ppm * 1e-6) as i64;
            m.add(CrossStamp::precise(phc, sys));
        }
        m
    }

    #[test]
    fn the_integer_line_agrees_with_the_fit() {
        for (ppm, offset) in [(0.0, 37_000_000_123), (-12.5, -5_000), (250.0, 1)] {
            let m = mapping(ppm, offset);
            let line = PhcLine::of(&m, T0);
            assert_eq!(line.unusable, None);
            // Within the window and a minute past it.
            for dt in [0, 1_000_000_000, 60_000_000_000] {
                let phc = T0 + dt;
                let want = m.map(phc).unwrap();
                assert!(
                    (line.apply(phc) - want).abs() <= 1,
                    "{ppm} {dt}: {} vs {want}",
                    line.apply(phc)
                );
            }
        }
    }

    #[test]
    fn an_unusable_or_stale_line_says_why() {
        assert_eq!(PhcLine::NONE.tai_ns(T0, T0), Err(HardwareUnused::NoMapping));
        assert_eq!(
            PhcLine::of(&PhcMapping::new(1_000.0), T0).unusable,
            Some(HardwareUnused::NoMapping)
        );
        let mut few = PhcMapping::new(1_000.0);
        few.add(CrossStamp::precise(T0, T0));
        assert_eq!(
            PhcLine::of(&few, T0).tai_ns(T0, T0),
            Err(HardwareUnused::TooFewSamples)
        );
        let line = PhcLine::of(&mapping(0.0, 5), T0);
        assert_eq!(line.tai_ns(T0, T0 + MAX_LINE_AGE_NS), Ok(T0 + 5));
        assert_eq!(
            line.tai_ns(T0, T0 + MAX_LINE_AGE_NS + 1),
            Err(HardwareUnused::Stale)
        );
        // A line from the future (the system clock stepped back) is no better.
        assert_eq!(line.tai_ns(T0, T0 - 1), Err(HardwareUnused::Stale));
    }

    #[test]
    fn stamps_far_from_the_line_or_a_wild_slope_are_refused() {
        let line = PhcLine::of(&mapping(0.0, 5), T0);
        assert_eq!(
            line.tai_ns(T0 + MAX_ELAPSED_NS - 1, T0),
            Ok(T0 + MAX_ELAPSED_NS - 1 + 5)
        );
        assert_eq!(line.tai_ns(T0 + MAX_ELAPSED_NS, T0), Err(HardwareUnused::Stale));
        assert_eq!(line.tai_ns(T0 - MAX_ELAPSED_NS, T0), Err(HardwareUnused::Stale));
        let steep = PhcLine {
            slope_q48: -MAX_SLOPE_Q48,
            ..line
        };
        assert_eq!(steep.tai_ns(T0, T0), Err(HardwareUnused::TooNoisy));
        // A code from a newer writer is never taken as usable.
        assert_eq!(HardwareUnused::from_code(99), Some(HardwareUnused::NoMapping));
    }

    #[test]
    fn labels_are_distinct_and_indexed_in_order() {
        for (i, r) in HardwareUnused::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(
                HardwareUnused::from_code(HardwareUnused::code(Some(*r))),
                Some(*r)
            );
        }
        let mut labels: Vec<_> = HardwareUnused::ALL.iter().map(|r| r.label()).collect();
        labels.dedup();
        assert_eq!(labels.len(), HardwareUnused::ALL.len());
    }

    proptest! {
        #[test]
        fn words_round_trip(a: i64, b: i64, c: i64, d: i64, reason in 0u64..5) {
            let line = PhcLine {
                phc_ref_ns: a, offset_ns: b, slope_q48: c, fitted_tai_ns: d,
                unusable: HardwareUnused::from_code(reason),
            };
            let mut w = [0u64; PhcLine::WORDS];
            line.encode(&mut w);
            prop_assert_eq!(PhcLine::decode(&w), line);
        }
    }
}

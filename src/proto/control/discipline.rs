//! strata's clock model, driven towards the combined estimate without ever jumping.
//!
//! The served time is `kernel + c(kernel)` with `c` linear between updates (`ClockParams`).
//! The target is the combined estimate: true time minus the kernel clock, `θ + f·(t − now)`.
//! At an update the model keeps `c` continuous at "now" and sets its slope to the target's
//! frequency plus the rate that closes the remaining error `e` within `|e| / MAX_SLEW_RATE` (at
//! least [`MIN_SLEW`]); when that time is up, the slope goes back to the target's frequency. So
//! the served time never jumps and its rate never differs from the target's by more than
//! `MAX_SLEW_RATE`. The one exception is an update the caller allows to step (before the first
//! synchronization, when no client has been served synchronized time yet, or by an operator's
//! override): an error above the step threshold is then stepped at once.

use crate::proto::clock::ClockParams;

/// Largest rate of correction, 500 ppm as RFC 5905 and the kernel allow.
pub const MAX_SLEW_RATE: f64 = 500e-6;
/// Shortest slew (seconds): a small error is spread over this long rather than corrected at once.
pub const MIN_SLEW: f64 = 1.0;
/// Error above which the first update steps rather than slews (RFC 5905's STEPT).
pub const DEFAULT_STEP_THRESHOLD: f64 = 0.128;

/// What an update did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Correction {
    /// The model jumped by this many seconds.
    Step(f64),
    /// The model closes this error (seconds) by kernel time `until`.
    Slew { error: f64, until: i64 },
}

#[derive(Debug, Clone)]
pub struct Discipline {
    params: ClockParams,
    /// The target's frequency, in force once the slew ends.
    frequency: f64,
    slew_end: Option<i64>,
    updates: u64,
    step_threshold: f64,
}

fn q48(freq: f64) -> i64 {
    ClockParams::frequency_q48_from_ppm(freq * 1e6)
}

impl Discipline {
    pub fn new(params: ClockParams, step_threshold: f64) -> Discipline {
        Discipline {
            params,
            frequency: 0.0,
            slew_end: None,
            updates: 0,
            step_threshold,
        }
    }

    pub fn params(&self) -> ClockParams {
        self.params
    }

    /// The frequency of the last update's target (s/s).
    pub fn frequency(&self) -> f64 {
        self.frequency
    }

    /// How many updates were made.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// The correction the model applies at kernel time `t`, in nanoseconds.
    pub fn correction_ns(&self, t: i64) -> i64 {
        self.params.corrected_utc_ns(t) - t
    }

    /// When the current slew ends (kernel nanoseconds), if one is running.
    pub fn slew_end(&self) -> Option<i64> {
        self.slew_end
    }

    /// Moves the model towards `offset` (true minus kernel time at `now`, seconds) and
    /// `frequency` (s/s). An error above the step threshold is stepped when `may_step` (the
    /// caller's word: before the first synchronization, or by an operator's override), else
    /// slewed.
    pub fn update(&mut self, now: i64, offset: f64, frequency: f64, may_step: bool) -> Correction {
        self.updates += 1;
        self.frequency = frequency;
        let current = self.correction_ns(now);
        let error = offset - current as f64 * 1e-9;
        if may_step && error.abs() > self.step_threshold {
            self.params = ClockParams {
                base_ns: now,
                offset_ns: (offset * 1e9).round() as i64,
                frequency_q48: q48(frequency),
                ..self.params
            };
            self.slew_end = None;
            return Correction::Step(error);
        }
        let duration = (error.abs() / MAX_SLEW_RATE).max(MIN_SLEW);
        let until = now + (duration * 1e9) as i64;
        self.params = ClockParams {
            base_ns: now,
            offset_ns: current,
            frequency_q48: q48(frequency + error / duration),
            ..self.params
        };
        self.slew_end = Some(until);
        Correction::Slew { error, until }
    }

    /// Ends a slew whose time is up. Returns true when the parameters changed.
    pub fn tick(&mut self, now: i64) -> bool {
        match self.slew_end {
            Some(end) if now >= end => {
                self.params = ClockParams {
                    base_ns: now,
                    offset_ns: self.correction_ns(now),
                    frequency_q48: q48(self.frequency),
                    ..self.params
                };
                self.slew_end = None;
                true
            }
            _ => false,
        }
    }

    /// The kernel clock was stepped by `step` seconds and its frequency changed by `dfreq` at
    /// kernel time `at` (by us, disciplining the system clock): the model changes so that the
    /// served time stays exactly what it was.
    pub fn clock_changed(&mut self, at: i64, step: f64, dfreq: f64) {
        let step_ns = (step * 1e9).round() as i64;
        let served_at = self.params.corrected_utc_ns(at);
        let old_freq = self.params.frequency_ppm() * 1e-6;
        self.params = ClockParams {
            base_ns: at + step_ns,
            offset_ns: served_at - (at + step_ns),
            frequency_q48: q48(old_freq - dfreq),
            ..self.params
        };
        self.frequency -= dfreq;
        if let Some(end) = self.slew_end.as_mut() {
            *end += step_ns;
        }
    }

    /// Takes a new TAI − UTC offset from the kernel.
    pub fn set_tai_offset(&mut self, tai_minus_utc: i32) {
        self.params.tai_minus_utc = tai_minus_utc;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_700_000_000_000_000_000;
    const S: i64 = 1_000_000_000;

    #[test]
    fn first_large_error_steps() {
        let mut d = Discipline::new(ClockParams::identity(37), DEFAULT_STEP_THRESHOLD);
        assert_eq!(d.update(T, 0.5, 20e-6, true), Correction::Step(0.5));
        assert_eq!(d.correction_ns(T), 500_000_000);
        assert_eq!(d.params().tai_minus_utc, 37);
        // Later large errors slew.
        assert!(matches!(
            d.update(T + 10 * S, 1.0, 20e-6, false),
            Correction::Slew { .. }
        ));
    }

    #[test]
    fn slews_are_continuous_bounded_and_end_on_target() {
        let mut d = Discipline::new(ClockParams::identity(0), DEFAULT_STEP_THRESHOLD);
        let freq = 50e-6;
        // A 10 ms error: 20 s at 500 ppm.
        let c = d.update(T, 0.01, freq, true);
        let Correction::Slew { error, until } = c else {
            panic!("{c:?}")
        };
        assert_eq!(error, 0.01);
        assert_eq!(until, T + 20 * S);
        assert_eq!(d.correction_ns(T), 0, "continuous at the update");
        let rate = d.params().frequency_ppm() * 1e-6 - freq;
        assert!((rate - MAX_SLEW_RATE).abs() < 1e-9, "{rate}");
        assert!(!d.tick(until - 1));
        assert!(d.tick(until));
        // At the end the model is on the target line: 10 ms + 50 ppm * 20 s.
        let target = 0.01 + freq * 20.0;
        assert!((d.correction_ns(until) as f64 * 1e-9 - target).abs() < 1e-8);
        assert!((d.params().frequency_ppm() - 50.0).abs() < 1e-6);
        assert_eq!(d.slew_end(), None);
    }

    #[test]
    fn small_errors_take_the_minimum_slew() {
        let mut d = Discipline::new(ClockParams::identity(0), DEFAULT_STEP_THRESHOLD);
        let Correction::Slew { until, .. } = d.update(T, 1e-5, 0.0, true) else {
            panic!()
        };
        assert_eq!(until, T + S);
    }

    #[test]
    fn clock_changes_leave_the_served_time_alone() {
        let mut d = Discipline::new(ClockParams::identity(0), DEFAULT_STEP_THRESHOLD);
        d.update(T, 0.5, 30e-6, true);
        let served = |d: &Discipline, kernel: i64| d.params().corrected_utc_ns(kernel);
        let before = served(&d, T + 100 * S);
        // The kernel is stepped by the model's 0.5 s and given its 30 ppm at T + 100 s.
        d.clock_changed(T + 100 * S, 0.5 + 30e-6 * 100.0, 30e-6);
        let kernel_after = T + 100 * S + 500_000_000 + 3_000_000;
        assert!((served(&d, kernel_after) - before).abs() <= 1);
        // From then on the model adds nothing.
        assert!(d.correction_ns(kernel_after + 1000 * S).abs() <= 1);
    }
}

//! The clock filter of one source (RFC 5905 section 10): the last eight measurements, of which
//! the one with the lowest delay is the best estimate, since queueing only ever adds delay and
//! the added delay is what makes a measurement's offset wrong.
//!
//! One departure from RFC 5905: when the lowest-delay sample is old (an initial burst fills all
//! eight stages within seconds), the RFC filter hands nothing on for up to eight polls; with an
//! undisciplined clock drifting at tens of ppm that starves the frequency estimate. So after
//! [`STARVED`] samples have come in without an output, the lowest-delay sample among those newer
//! than the last one handed on goes out. And the spike test needs the drift taken out, so it
//! only runs once the frequency is known.
//!
//! Offsets here are measured against the *uncorrected* kernel clock, so they drift with its
//! frequency error; every sample keeps its own time, so a selected sample that is several polls
//! old is still a correct point for the regression that follows. Only the jitter and the spike
//! test need offsets at one instant: they take out the drift with the frequency estimate given.

/// RFC 5905's PHI: the frequency tolerance assumed of any clock, 15 ppm.
pub const PHI: f64 = 15e-6;
/// Stages in the filter.
pub const STAGES: usize = 8;
/// A sample whose offset is further than this many jitters from the last one used is a spike
/// (the popcorn spike suppressor), unless the last one used is old.
const SPIKE_GATE: f64 = 3.0;
/// Samples without an output after which the quickest new one is handed on anyway.
const STARVED: usize = 2;

/// One measurement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Kernel (CLOCK_REALTIME) nanoseconds at the middle of the exchange, where the offset holds.
    pub time: i64,
    /// True time minus the kernel clock, in seconds.
    pub offset: f64,
    /// Round-trip delay in seconds.
    pub delay: f64,
    /// Error bound of the measurement itself (both clocks' precision, PHI over the exchange).
    pub dispersion: f64,
}

/// What the filter makes of its stages after a new sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FilterOutput {
    /// The lowest-delay sample, not used before.
    pub sample: Sample,
    /// The filter dispersion: the stages' dispersions (grown at PHI) weighted 1/2, 1/4, ...
    pub dispersion: f64,
    /// RMS of the other stages' (drift-corrected) offsets from the selected one.
    pub jitter: f64,
}

#[derive(Debug, Clone, Default)]
pub struct ClockFilter {
    /// Newest first.
    stages: Vec<Sample>,
    /// Time of the last sample handed on: an older one is never handed on again.
    last_used: Option<Sample>,
    jitter: f64,
    /// Samples added since the last output.
    since_output: usize,
}

impl ClockFilter {
    pub fn new() -> ClockFilter {
        ClockFilter {
            stages: Vec::with_capacity(STAGES),
            last_used: None,
            jitter: 0.0,
            since_output: 0,
        }
    }

    /// The jitter of the last output (seconds).
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Forgets everything (after the source changed address, or the clock was reset).
    pub fn clear(&mut self) {
        self.stages.clear();
        self.last_used = None;
        self.jitter = 0.0;
        self.since_output = 0;
    }

    /// Adds `new` at kernel time `now`. Returns the best sample if it is newer than the last one
    /// handed on and not a spike. `freq` is the best estimate of the kernel clock's frequency
    /// error (s/s, the slope of the offsets), or `None` while it is not known yet, `poll_secs`
    /// the current poll interval and `floor` the smallest jitter to report (our precision).
    pub fn add(
        &mut self,
        new: Sample,
        now: i64,
        freq: Option<f64>,
        poll_secs: f64,
        floor: f64,
    ) -> Option<FilterOutput> {
        let known = freq.is_some();
        let freq = freq.unwrap_or(0.0);
        self.since_output += 1;
        if self.stages.len() == STAGES {
            self.stages.pop();
        }
        self.stages.insert(0, new);

        let age = |s: &Sample| ((now - s.time) as f64 * 1e-9).max(0.0);
        let mut order: Vec<usize> = (0..self.stages.len()).collect();
        order.sort_by(|&a, &b| {
            self.stages[a]
                .delay
                .total_cmp(&self.stages[b].delay)
                .then(a.cmp(&b))
        });
        let best = self.stages[order[0]];

        // Dispersion: each stage's own, grown at PHI since it was taken, weighted by its rank.
        let mut dispersion = 0.0;
        let mut weight = 0.5;
        for &i in &order {
            let s = &self.stages[i];
            dispersion += (s.dispersion + PHI * age(s)) * weight;
            weight /= 2.0;
        }
        // The spike test below compares against the jitter as it was before this sample.
        let previous_jitter = self.jitter;
        // Jitter: the other stages' offsets, brought to the best one's time with `freq`.
        let at_best = |s: &Sample| s.offset - freq * (s.time - best.time) as f64 * 1e-9;
        let n = self.stages.len();
        self.jitter = if n > 1 {
            let sum: f64 = order[1..]
                .iter()
                .map(|&i| (at_best(&self.stages[i]) - best.offset).powi(2))
                .sum();
            (sum / (n - 1) as f64).sqrt().max(floor)
        } else {
            floor
        };

        let mut chosen = best;
        if let Some(last) = self.last_used {
            if best.time <= last.time {
                if self.since_output < STARVED {
                    return None;
                }
                // Starved: the quickest of the samples not yet handed on.
                chosen = *order
                    .iter()
                    .map(|&i| &self.stages[i])
                    .find(|s| s.time > last.time)?;
            }
            let since = (chosen.time - last.time) as f64 * 1e-9;
            let moved = (chosen.offset - last.offset - freq * since).abs();
            if known && moved > SPIKE_GATE * previous_jitter.max(floor) && since < 2.0 * poll_secs {
                return None;
            }
        }
        self.last_used = Some(chosen);
        self.since_output = 0;
        Some(FilterOutput {
            sample: chosen,
            dispersion,
            jitter: self.jitter,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn sample(t: i64, offset: f64, delay: f64) -> Sample {
        Sample {
            time: t * S,
            offset,
            delay,
            dispersion: 1e-6,
        }
    }

    #[test]
    fn lowest_delay_wins_and_is_used_once() {
        let mut f = ClockFilter::new();
        let out = f.add(sample(0, 1e-3, 5e-3), 0, Some(0.0), 64.0, 1e-7).unwrap();
        assert_eq!(out.sample.offset, 1e-3);
        // A worse sample: the best is still the first, already used.
        assert!(f
            .add(sample(64, 2e-3, 9e-3), 64 * S, Some(0.0), 64.0, 1e-7)
            .is_none());
        // A better one: handed on.
        let out = f
            .add(sample(128, 1.1e-3, 4e-3), 128 * S, Some(0.0), 64.0, 1e-7)
            .unwrap();
        assert_eq!(out.sample.delay, 4e-3);
        assert!(out.jitter > 0.0);
        // Three stages by delay (ages 0, 128, 64 s), weighted 1/2, 1/4, 1/8, grown at PHI.
        let expected = 1e-6 * 0.875 + PHI * (128.0 / 4.0 + 64.0 / 8.0);
        assert!((out.dispersion - expected).abs() < 1e-12, "{}", out.dispersion);
    }

    #[test]
    fn an_old_best_does_not_starve_the_output() {
        let mut f = ClockFilter::new();
        f.add(sample(0, 0.0, 1e-3), 0, Some(0.0), 64.0, 1e-6).unwrap();
        let mut handed = Vec::new();
        for i in 1..=8 {
            let t = i * 64;
            // Delays 2.008, 2.007, ... ms: each newer sample is quicker than the last.
            if let Some(o) = f.add(
                sample(t, 0.0, 2e-3 + (9 - i) as f64 * 1e-6),
                t * S,
                Some(0.0),
                64.0,
                1e-6,
            ) {
                handed.push((i, o.sample.time / S));
            }
        }
        // Every second sample, the quicker of the two new ones goes out.
        assert_eq!(handed, vec![(2, 2 * 64), (4, 4 * 64), (6, 6 * 64), (8, 8 * 64)]);
    }

    #[test]
    fn no_spike_test_while_the_frequency_is_unknown() {
        let mut f = ClockFilter::new();
        f.add(sample(0, 0.0, 1e-3), 0, None, 64.0, 1e-7).unwrap();
        // 3.2 ms of drift in 64 s: a spike if the frequency were known to be zero.
        assert!(f
            .add(sample(64, 3.2e-3, 0.9e-3), 64 * S, None, 64.0, 1e-7)
            .is_some());
    }

    #[test]
    fn drift_is_not_jitter_and_spikes_are_suppressed() {
        let freq = 50e-6;
        let mut f = ClockFilter::new();
        for i in 0..8 {
            let t = i * 64;
            f.add(
                sample(t, freq * t as f64, 1e-3 + (8 - i) as f64 * 1e-7),
                t * S,
                Some(freq),
                64.0,
                1e-7,
            );
        }
        assert!(f.jitter() < 1e-6, "drift taken out: {}", f.jitter());
        // A low-delay sample far off the line, soon after the last one used: a spike.
        let t = 8 * 64;
        assert!(f
            .add(
                sample(t, freq * t as f64 + 0.01, 1e-4),
                t * S,
                Some(freq),
                64.0,
                1e-7
            )
            .is_none());
    }
}

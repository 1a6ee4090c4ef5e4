//! Pacing: when each request of a step is due, against CLOCK_MONOTONIC.
//!
//! Every request has an absolute due time computed from the step's start (request i at
//! `start + i / rate` for constant gaps, or the running sum of exponential gaps), never from the
//! time the previous batch actually went out. A late wake-up therefore releases a larger batch
//! instead of shifting everything after it, and the step's rate cannot drift.

/// A small, fast generator (xorshift64*) for exponential gaps: quality is ample for that, and
/// it keeps the crate free of a random-number dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // A zero state would stay zero forever.
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in (0, 1]: never 0, so that its logarithm is finite.
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
}

/// How the gaps between requests are drawn.
#[derive(Debug, Clone)]
pub enum Gaps {
    /// Every gap is 1/rate.
    Constant,
    /// Gaps are exponential with mean 1/rate: arrivals form a Poisson process, as from many
    /// independent clients.
    Exponential(Rng),
}

/// Releases the requests of one step (of one worker) as they fall due.
#[derive(Debug, Clone)]
pub struct Pacer {
    start_ns: i64,
    end_ns: i64,
    interval_ns: f64,
    gaps: Gaps,
    /// Due time of the next unreleased request, in ns after `start_ns`.
    next_due: f64,
    released: u64,
    limit: u64,
}

impl Pacer {
    /// A step that starts at `start_ns` (monotonic) and releases at most `limit` requests at
    /// `rate` per second until `start_ns + duration_ns`.
    pub fn new(start_ns: i64, duration_ns: i64, rate: f64, limit: u64, gaps: Gaps) -> Pacer {
        let mut pacer = Pacer {
            start_ns,
            end_ns: start_ns + duration_ns,
            interval_ns: 1e9 / rate,
            gaps,
            next_due: 0.0,
            released: 0,
            limit,
        };
        // With exponential gaps the first request also waits a random gap, so that workers that
        // start together do not all send at once.
        if let Gaps::Exponential(rng) = &mut pacer.gaps {
            pacer.next_due = -rng.unit().ln() * pacer.interval_ns;
        }
        pacer
    }

    /// Releases every request due at `now` (monotonic ns), at most `max`; returns how many.
    pub fn release(&mut self, now: i64, max: usize) -> usize {
        let elapsed = (now - self.start_ns) as f64;
        let mut n = 0;
        while n < max && !self.exhausted() && self.next_due <= elapsed && self.next_due_ns() < self.end_ns {
            n += 1;
            self.released += 1;
            self.next_due = match &mut self.gaps {
                // From the index, not by accumulation: no rounding error builds up.
                Gaps::Constant => self.released as f64 * self.interval_ns,
                Gaps::Exponential(rng) => self.next_due - rng.unit().ln() * self.interval_ns,
            };
        }
        n
    }

    /// When the next request falls due (monotonic ns).
    pub fn next_due_ns(&self) -> i64 {
        self.start_ns + self.next_due as i64
    }

    /// Whether no request is left to release: the count is used up or the next one would fall
    /// after the end of the step.
    pub fn exhausted(&self) -> bool {
        self.released >= self.limit || self.next_due_ns() >= self.end_ns
    }

    pub fn released(&self) -> u64 {
        self.released
    }

    pub fn start_ns(&self) -> i64 {
        self.start_ns
    }

    pub fn end_ns(&self) -> i64 {
        self.end_ns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_gaps_release_on_schedule_without_drift() {
        let mut p = Pacer::new(1_000, 1_000_000_000, 1000.0, u64::MAX, Gaps::Constant);
        assert_eq!(p.release(999, 10), 0, "nothing before the start");
        assert_eq!(p.release(1_000, 10), 1, "the first request is due at the start");
        assert_eq!(p.release(1_000 + 999_999, 10), 0);
        assert_eq!(p.release(1_000 + 1_000_000, 10), 1);
        // A wake-up 10 ms late releases the backlog, capped at the batch size...
        assert_eq!(p.release(1_000 + 12_000_000, 5), 5);
        assert_eq!(p.release(1_000 + 12_000_000, 100), 6);
        // ...and the schedule after it is unchanged.
        assert_eq!(p.next_due_ns(), 1_000 + 13_000_000);
        // The whole step releases exactly rate * duration.
        let total = 13 + p.release(10_000_000_000, usize::MAX);
        assert_eq!(total, 1000);
        assert!(p.exhausted());
    }

    #[test]
    fn the_count_limit_bounds_a_step() {
        let mut p = Pacer::new(0, 1_000_000_000, 1e6, 250, Gaps::Constant);
        assert_eq!(p.release(2_000_000_000, usize::MAX), 250);
        assert!(p.exhausted());
        assert_eq!(p.release(3_000_000_000, usize::MAX), 0);
    }

    #[test]
    fn exponential_gaps_keep_the_mean_rate() {
        let mut p = Pacer::new(
            0,
            10_000_000_000,
            10_000.0,
            u64::MAX,
            Gaps::Exponential(Rng::new(42)),
        );
        let n = p.release(10_000_000_000, usize::MAX);
        // Poisson with mean 100000: the standard deviation is about 316.
        assert!((n as i64 - 100_000).abs() < 2_000, "{n}");
        // The gaps vary: over 1 ms windows the counts are not all the same.
        let mut p = Pacer::new(
            0,
            1_000_000_000,
            10_000.0,
            u64::MAX,
            Gaps::Exponential(Rng::new(7)),
        );
        let counts: Vec<usize> = (1..=100)
            .map(|ms| p.release(ms * 1_000_000, usize::MAX))
            .collect();
        assert!(counts.iter().min() != counts.iter().max());
    }

    #[test]
    fn rng_unit_is_in_range() {
        let mut rng = Rng::new(0);
        for _ in 0..10_000 {
            let u = rng.unit();
            assert!(u > 0.0 && u <= 1.0);
        }
    }
}

//! What one step measured: counters by outcome and histograms of round-trip time, server
//! response time and offset. Each worker fills its own (no sharing in the hot loop); the main
//! thread merges them when the step is over.

use hdrhistogram::Histogram;

use crate::classify::{Invalid, KISS_KINDS};

/// The largest value a histogram keeps exactly; larger ones are recorded as this (100 s).
const HIGHEST_NS: u64 = 100_000_000_000;
/// Three significant digits: 0.1% resolution at every scale.
const SIGFIGS: u8 = 3;

/// A histogram of nanoseconds with fixed bounds, so that recording never allocates.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIGHEST_NS, SIGFIGS).expect("valid histogram bounds")
}

/// Signed values (offsets) as two histograms of magnitudes: a bias would cost the resolution
/// near zero, where offsets live.
#[derive(Debug, Clone)]
pub struct SignedHistogram {
    negative: Histogram<u64>,
    positive: Histogram<u64>,
}

impl Default for SignedHistogram {
    fn default() -> Self {
        SignedHistogram {
            negative: new_histogram(),
            positive: new_histogram(),
        }
    }
}

impl SignedHistogram {
    #[inline]
    pub fn record(&mut self, value: i64) {
        if value < 0 {
            self.negative.saturating_record(value.unsigned_abs());
        } else {
            self.positive.saturating_record(value as u64);
        }
    }

    /// Records `value` `count` times.
    pub fn record_n(&mut self, value: i64, count: u64) {
        if value < 0 {
            self.negative.saturating_record_n(value.unsigned_abs(), count);
        } else {
            self.positive.saturating_record_n(value as u64, count);
        }
    }

    pub fn len(&self) -> u64 {
        self.negative.len() + self.positive.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value at quantile `q` (0..=1) of all recorded values.
    pub fn quantile(&self, q: f64) -> i64 {
        let n = self.len();
        if n == 0 {
            return 0;
        }
        let (neg, pos) = (self.negative.len(), self.positive.len());
        // The rank of the value among all, counted from the most negative.
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as u64).max(1);
        if rank <= neg {
            // Among the negatives the order is reversed: rank 1 is the largest magnitude.
            let q_mag = (neg - rank + 1) as f64 / neg as f64;
            -(self.negative.value_at_quantile(q_mag) as i64)
        } else {
            let q_pos = (rank - neg) as f64 / pos as f64;
            self.positive.value_at_quantile(q_pos) as i64
        }
    }

    pub fn min(&self) -> i64 {
        self.quantile(0.0)
    }

    pub fn max(&self) -> i64 {
        self.quantile(1.0)
    }

    pub fn add(&mut self, other: &SignedHistogram) {
        self.negative.add(&other.negative).expect("same bounds");
        self.positive.add(&other.positive).expect("same bounds");
    }

    pub fn reset(&mut self) {
        self.negative.reset();
        self.positive.reset();
    }
}

/// The counters and histograms of one step (one worker's, or all merged).
#[derive(Debug, Clone)]
pub struct StepStats {
    /// Requests sent.
    pub sent: u64,
    /// Datagrams received, whatever they were.
    pub received: u64,
    /// Requests of this step whose first reply came in time (valid, kiss or invalid content).
    pub answered: u64,
    pub valid: u64,
    /// Kisses by code, in the slots of [`crate::classify::kiss_label`].
    pub kod: [u64; KISS_KINDS],
    /// Invalid replies by reason ([`Invalid::index`]).
    pub invalid: [u64; Invalid::COUNT],
    pub late: u64,
    pub duplicate: u64,
    /// Achieved send rate, requests/s; the sum over workers once merged.
    pub achieved_rate: f64,
    /// Round trip as the client sees it (T4 − T1).
    pub rtt: Histogram<u64>,
    /// The server's own time with the request (T3 − T2).
    pub response: Histogram<u64>,
    /// ((T2 − T1) + (T3 − T4)) / 2: the server's T3 against the local receive time less half the
    /// network round trip (the round trip without the server's response time).
    pub offset: SignedHistogram,
}

impl Default for StepStats {
    fn default() -> Self {
        StepStats {
            sent: 0,
            received: 0,
            answered: 0,
            valid: 0,
            kod: [0; KISS_KINDS],
            invalid: [0; Invalid::COUNT],
            late: 0,
            duplicate: 0,
            achieved_rate: 0.0,
            rtt: new_histogram(),
            response: new_histogram(),
            offset: SignedHistogram::default(),
        }
    }
}

impl StepStats {
    /// Records a valid reply: t1/t4 are the local send and receive times and t2/t3 the server's,
    /// all in nanoseconds on the same (UTC) scale.
    #[inline]
    pub fn record_valid(&mut self, t1: i64, t2: i64, t3: i64, t4: i64) {
        self.valid += 1;
        self.rtt.saturating_record((t4 - t1).max(0) as u64);
        self.response.saturating_record((t3 - t2).max(0) as u64);
        self.offset.record(((t2 - t1) + (t3 - t4)) / 2);
    }

    pub fn invalid_total(&self) -> u64 {
        self.invalid.iter().sum()
    }

    pub fn kod_total(&self) -> u64 {
        self.kod.iter().sum()
    }

    /// Requests that got no reply in time.
    pub fn lost(&self) -> u64 {
        self.sent.saturating_sub(self.answered)
    }

    pub fn merge(&mut self, other: &StepStats) {
        self.sent += other.sent;
        self.received += other.received;
        self.answered += other.answered;
        self.valid += other.valid;
        for (a, b) in self.kod.iter_mut().zip(other.kod) {
            *a += b;
        }
        for (a, b) in self.invalid.iter_mut().zip(other.invalid) {
            *a += b;
        }
        self.late += other.late;
        self.duplicate += other.duplicate;
        self.achieved_rate += other.achieved_rate;
        self.rtt.add(&other.rtt).expect("same bounds");
        self.response.add(&other.response).expect("same bounds");
        self.offset.add(&other.offset);
    }

    /// Clears everything for the next step, keeping the histograms' memory.
    pub fn reset(&mut self) {
        self.sent = 0;
        self.received = 0;
        self.answered = 0;
        self.valid = 0;
        self.kod = [0; KISS_KINDS];
        self.invalid = [0; Invalid::COUNT];
        self.late = 0;
        self.duplicate = 0;
        self.achieved_rate = 0.0;
        self.rtt.reset();
        self.response.reset();
        self.offset.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_quantiles_span_both_signs() {
        let mut h = SignedHistogram::default();
        for v in -50..=49 {
            h.record(v * 1000);
        }
        assert_eq!(h.len(), 100);
        // Three significant digits: within 0.1%.
        assert!((h.min() - -50_000).abs() <= 50, "{}", h.min());
        assert!((h.max() - 49_000).abs() <= 49, "{}", h.max());
        assert!((h.quantile(0.5) - -1000).abs() <= 1, "{}", h.quantile(0.5));
        assert!((h.quantile(0.01) - -50_000).abs() <= 50);
        assert_eq!(SignedHistogram::default().quantile(0.5), 0);
    }

    #[test]
    fn valid_replies_fill_the_histograms_and_merge() {
        let mut a = StepStats {
            sent: 2,
            answered: 1,
            ..StepStats::default()
        };
        // Sent at 0, server clock 500 ns ahead, 100 ns one way, 1000 ns in the server.
        a.record_valid(0, 600, 1_600, 1_200);
        assert_eq!(a.rtt.max(), 1_200);
        assert_eq!(a.response.max(), 1_000);
        assert_eq!(a.offset.max(), 500);
        let mut b = StepStats {
            sent: 3,
            answered: 3,
            ..StepStats::default()
        };
        b.invalid[Invalid::BadMode.index()] = 1;
        b.merge(&a);
        assert_eq!(
            (b.sent, b.answered, b.lost(), b.valid, b.invalid_total()),
            (5, 4, 1, 1, 1)
        );
        b.reset();
        assert_eq!((b.sent, b.valid, b.rtt.len(), b.offset.len()), (0, 0, 0, 0));
    }
}

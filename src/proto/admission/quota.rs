//! The operator's cap on the total this server answers per second (`rate_limit_total`), applied
//! fairly: clients that poll at or below their rate ("quiet") are served first, and clients that
//! are spending their burst or are over their limit ("busy") get only what the quiet ones leave.
//!
//! The cap is one GCRA bucket: an answer at `now` is within the cap if the bucket's theoretical
//! arrival time is at most a span ahead of `now`, and then pushes it one interval (1 / the rate)
//! further. Quiet clients may push the TAT up to [`QuotaConfig::quiet_span_ns`] ahead, busy ones
//! only up to [`QuotaConfig::busy_span_ns`], half of it. So while busy clients saturate the cap,
//! the TAT sits at the busy span and a quiet client still finds room; and when quiet clients
//! alone need more than the cap, everyone is cut in proportion, busy clients first. Over any
//! window of W seconds at most `rate * W + rate * quiet_span` requests are admitted.
//!
//! A path with several threads or CPUs may split the cap in shares, one bucket each: the XDP
//! program keeps one per CPU, each with the cap divided by the number of receive queues (RSS
//! spreads clients evenly over the queues); the socket path keeps one for all its threads. The
//! XDP program (xdp-prog/strata_admit.h, `quota_take`) computes exactly [`take`].

use std::sync::atomic::{AtomicU64, Ordering};

/// How far ahead of now the quiet clients may push the bucket: 100 ms worth of answers may go
/// out back to back (a burst of the cap's tenth), never more.
pub const QUIET_SPAN_NS: u64 = 100_000_000;

/// One share of the cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaConfig {
    /// Nanoseconds between answers at this share's rate.
    pub interval_ns: u64,
    /// How far ahead of now a quiet client's answer may push the TAT.
    pub quiet_span_ns: u64,
    /// The same for a busy client (half the quiet span).
    pub busy_span_ns: u64,
}

impl QuotaConfig {
    /// One of `shares` equal shares of `per_second` answers per second (both at least 1).
    pub fn share_of(per_second: u32, shares: u32) -> QuotaConfig {
        let interval_ns = 1_000_000_000u64 * shares.max(1) as u64 / per_second.max(1) as u64;
        QuotaConfig {
            interval_ns: interval_ns.max(1),
            quiet_span_ns: QUIET_SPAN_NS,
            busy_span_ns: QUIET_SPAN_NS / 2,
        }
    }
}

/// The bucket's TAT after an answer at `now_ns` by a quiet or `busy` client, or None when the
/// answer is over the cap (and the TAT stays as it was).
#[inline]
pub fn take(config: &QuotaConfig, tat_ns: u64, now_ns: u64, busy: bool) -> Option<u64> {
    let tat = tat_ns.max(now_ns);
    let span = if busy {
        config.busy_span_ns
    } else {
        config.quiet_span_ns
    };
    (tat - now_ns <= span).then(|| tat.saturating_add(config.interval_ns))
}

/// One share's bucket, shared by the threads that answer. A lost update between two threads
/// makes the cap slightly looser, never stricter.
pub struct Quota {
    config: QuotaConfig,
    /// The interval in force: a reload changes the cap, the spans stay.
    interval_ns: AtomicU64,
    tat_ns: AtomicU64,
}

impl Quota {
    pub fn new(config: QuotaConfig) -> Quota {
        Quota {
            config,
            interval_ns: AtomicU64::new(config.interval_ns),
            tat_ns: AtomicU64::new(0),
        }
    }

    /// The settings in force.
    #[inline]
    pub fn config(&self) -> QuotaConfig {
        QuotaConfig {
            interval_ns: self.interval_ns.load(Ordering::Relaxed),
            ..self.config
        }
    }

    /// Changes the cap (a reload) to `config`'s rate.
    pub fn set_rate(&self, config: QuotaConfig) {
        self.interval_ns.store(config.interval_ns, Ordering::Relaxed);
    }

    /// Whether an answer at `now_ns` to a quiet or `busy` client is within the cap (recorded
    /// if it is).
    #[inline]
    pub fn take(&self, now_ns: u64, busy: bool) -> bool {
        match take(&self.config(), self.tat_ns.load(Ordering::Relaxed), now_ns, busy) {
            Some(next) => {
                self.tat_ns.store(next, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn the_cap_holds_over_a_long_run_with_a_tenth_of_a_second_of_burst() {
        let q = Quota::new(QuotaConfig::share_of(1000, 1));
        // 10 000 requests/s for 10 s, all quiet.
        let admitted = (0..100_000u64).filter(|i| q.take(S + i * 100_000, false)).count() as u64;
        assert!((10_000..=10_000 + 101).contains(&admitted), "{admitted}");
    }

    #[test]
    fn quiet_clients_are_served_while_busy_ones_saturate_the_cap() {
        let q = Quota::new(QuotaConfig::share_of(1000, 1));
        // Busy clients at 5000/s and quiet ones at 500/s (half the cap) for 10 s.
        let (mut quiet, mut busy) = (0u64, 0u64);
        for i in 0..50_000u64 {
            let t = S + i * 200_000;
            if q.take(t, true) {
                busy += 1;
            }
            if i % 10 == 0 && q.take(t + 1, false) {
                quiet += 1;
            }
        }
        assert_eq!(quiet, 5_000, "every quiet request within the cap is answered");
        // The busy ones get what is left: the cap (with its burst) less the quiet ones.
        assert!((4_900..=5_000 + 101).contains(&busy), "{busy}");
    }

    #[test]
    fn a_new_cap_applies_from_the_next_answer() {
        let q = Quota::new(QuotaConfig::share_of(1000, 1));
        let at = |i: u64| 10 * S + i * 100_000;
        let first = (0..10_000u64).filter(|&i| q.take(at(i), false)).count();
        q.set_rate(QuotaConfig::share_of(100, 1));
        assert_eq!(q.config().interval_ns, 10_000_000);
        let second = (10_000..20_000u64).filter(|&i| q.take(at(i), false)).count();
        // One second at 1000/s (and its burst), then one at 100/s (and its burst).
        assert!((1_000..=1_101).contains(&first), "{first}");
        assert!((100..=111).contains(&second), "{second}");
    }

    #[test]
    fn shares_split_the_rate() {
        assert_eq!(QuotaConfig::share_of(1000, 4).interval_ns, 4_000_000);
        assert_eq!(QuotaConfig::share_of(0, 0).interval_ns, S);
        assert_eq!(
            take(&QuotaConfig::share_of(1, 1), u64::MAX - 1, u64::MAX - 1, false),
            Some(u64::MAX)
        );
    }
}

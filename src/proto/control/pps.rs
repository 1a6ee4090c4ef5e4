//! Pulse-per-second edges into refclock readings. A PPS edge says precisely *when* a second (or
//! a 1/rate of one) began, but not *which* one: something coarser must number it. As chrony's
//! refclock code does it:
//!
//! - with `lock REFID`, the edge is paired with the named refclock's latest reading (a GNSS
//!   receiver's time through SHM or SOCK): the reading must be younger than `MAX_LOCK_AGE`
//!   pulses, and once the edge is aligned to the nearest pulse of the reading's time, the two
//!   must agree to within [`PPS_LOCK_LIMIT`] of a pulse period (readings and edges that disagree
//!   more are not the same second, and the edge is dropped);
//! - without a lock, the edge is numbered by the served clock, which must be synchronized (to
//!   another source first; once the PPS is selected it keeps itself) with a root distance under
//!   half a pulse period, so that the nearest pulse cannot be the wrong one.
//!
//! Every edge dropped is counted by its reason ([`PulseRefusal`]). The sequence numbers the
//! kernel gives each edge make sure an edge is read once and that missed ones are counted
//! ([`EdgeTracker`]).

use super::refclock::RefSample;
use crate::proto::wire::ntp::Leap;

/// The largest disagreement between a locked edge and its reference reading, as a fraction of
/// the pulse period (chrony's PPS_LOCK_LIMIT).
pub const PPS_LOCK_LIMIT: f64 = 0.4;
/// The oldest reference reading an edge is paired with, in pulse periods (chrony's default
/// `maxlockage`).
pub const MAX_LOCK_AGE: u32 = 2;
/// The largest `rate` (pulses per second) accepted.
pub const MAX_RATE: u32 = 1_000_000;

/// The pps driver's options, as chrony names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PulseOptions {
    /// Pulses per second (`rate`).
    pub rate: u32,
    /// The refid of the refclock whose readings number the edges (`lock`); `None`: the served
    /// clock does.
    pub lock: Option<[u8; 4]>,
    /// Use the clear edge instead of the assert edge (`clear`).
    pub clear: bool,
}

impl Default for PulseOptions {
    fn default() -> Self {
        PulseOptions {
            rate: 1,
            lock: None,
            clear: false,
        }
    }
}

/// What numbers an edge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PulseReference {
    /// The latest reading of the `lock` refclock (`None`: none yet), with that refclock's
    /// configured `offset` already added, and its dispersion (seconds).
    Lock(Option<LockReading>),
    /// The served clock.
    Served(ServedClock),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LockReading {
    pub reading: RefSample,
    pub dispersion: f64,
}

/// The served clock at the edge.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServedClock {
    pub synchronized: bool,
    /// Served time minus the kernel clock at the edge (seconds).
    pub correction: f64,
    /// Root distance of the served time (seconds).
    pub distance: f64,
    pub leap: Leap,
}

/// Why an edge made no reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PulseRefusal {
    /// The lock refclock has given no reading yet.
    NoLockReading,
    /// Its latest reading is older than `MAX_LOCK_AGE` pulses.
    LockTooOld,
    /// The edge and the reading disagree by more than `PPS_LOCK_LIMIT` of a pulse.
    LockDisagrees,
    /// No lock, and the served clock is not synchronized (or not within half a pulse).
    NotSynchronized,
}

impl PulseRefusal {
    pub const ALL: [PulseRefusal; 4] = [
        PulseRefusal::NoLockReading,
        PulseRefusal::LockTooOld,
        PulseRefusal::LockDisagrees,
        PulseRefusal::NotSynchronized,
    ];

    /// Its name in the status and the metrics.
    pub fn label(self) -> &'static str {
        match self {
            PulseRefusal::NoLockReading => "no_lock_reading",
            PulseRefusal::LockTooOld => "lock_too_old",
            PulseRefusal::LockDisagrees => "lock_disagrees",
            PulseRefusal::NotSynchronized => "not_synchronized",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            PulseRefusal::NoLockReading => "no reading of the lock refclock yet",
            PulseRefusal::LockTooOld => "the lock refclock's latest reading is too old",
            PulseRefusal::LockDisagrees => "the edge and the lock refclock disagree",
            PulseRefusal::NotSynchronized => "the served clock is not synchronized to number it",
        }
    }
}

/// Edges dropped by reason, and edges missed between two reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PulseCounts {
    pub refused: [u64; 4],
    pub missed: u64,
    pub numbered: u64,
}

impl PulseCounts {
    pub fn count(&mut self, why: PulseRefusal) {
        self.refused[PulseRefusal::ALL.iter().position(|&r| r == why).unwrap_or(0)] += 1;
    }

    pub fn refused(&self, why: PulseRefusal) -> u64 {
        PulseRefusal::ALL
            .iter()
            .position(|&r| r == why)
            .map_or(0, |i| self.refused[i])
    }
}

/// `x` moved by whole pulse periods into [-0.5/rate, 0.5/rate).
fn wrap(x: f64, rate: f64) -> f64 {
    let mut w = x - (x * rate).trunc() / rate;
    if w < -0.5 / rate {
        w += 1.0 / rate;
    } else if w >= 0.5 / rate {
        w -= 1.0 / rate;
    }
    w
}

/// The reading an edge at kernel time `edge_ns` makes (the nearest pulse minus the edge), or
/// why it makes none. `rate` is pulses per second; `dispersion` the edge's own (its precision).
pub fn number_pulse(
    edge_ns: i64,
    rate: u32,
    dispersion: f64,
    reference: PulseReference,
) -> Result<RefSample, PulseRefusal> {
    let rate = rate.max(1) as f64;
    let period = 1.0 / rate;
    // The pulse nearest to the edge by the kernel clock, minus the edge.
    let raw = wrap(-((edge_ns.rem_euclid(1_000_000_000)) as f64 * 1e-9), rate);
    let (offset, leap) = match reference {
        PulseReference::Lock(None) => return Err(PulseRefusal::NoLockReading),
        PulseReference::Lock(Some(lock)) => {
            let age = (edge_ns - lock.reading.time) as f64 * 1e-9;
            if age.abs() >= MAX_LOCK_AGE as f64 * period {
                return Err(PulseRefusal::LockTooOld);
            }
            let reference = lock.reading.offset;
            let offset = raw + ((reference - raw) * rate).round() / rate;
            if (reference - offset).abs() + lock.dispersion + dispersion > PPS_LOCK_LIMIT * period {
                return Err(PulseRefusal::LockDisagrees);
            }
            (offset, lock.reading.leap)
        }
        PulseReference::Served(served) => {
            if !served.synchronized || served.leap == Leap::Unsynchronized || served.distance >= 0.5 * period
            {
                return Err(PulseRefusal::NotSynchronized);
            }
            let offset = raw + ((served.correction - raw) * rate).round() / rate;
            (offset, served.leap)
        }
    };
    Ok(RefSample {
        time: edge_ns,
        offset,
        leap,
    })
}

/// What the latest fetched edge is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeVerdict {
    /// A new edge; `missed` edges came between it and the last one read.
    New { missed: u32 },
    /// The edge already read.
    Seen,
}

/// Tells new edges from the one read last by the kernel's sequence number.
#[derive(Debug, Clone, Copy, Default)]
pub struct EdgeTracker {
    last: Option<u32>,
}

impl EdgeTracker {
    pub fn accept(&mut self, sequence: u32) -> EdgeVerdict {
        match self.last.replace(sequence) {
            Some(last) if last == sequence => EdgeVerdict::Seen,
            Some(last) => EdgeVerdict::New {
                missed: sequence.wrapping_sub(last).saturating_sub(1),
            },
            None => EdgeVerdict::New { missed: 0 },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;
    const T: i64 = 1_796_266_740 * S;

    fn served(correction: f64, distance: f64) -> PulseReference {
        PulseReference::Served(ServedClock {
            synchronized: true,
            correction,
            distance,
            leap: Leap::NoWarning,
        })
    }

    fn lock(time: i64, offset: f64) -> PulseReference {
        PulseReference::Lock(Some(LockReading {
            reading: RefSample {
                time,
                offset,
                leap: Leap::AddSecond,
            },
            dispersion: 1e-6,
        }))
    }

    #[test]
    fn an_edge_is_numbered_by_the_lock_reading() {
        // The kernel clock is 3.2 s behind: the edge of second N comes at kernel N - 3.2 + 250 ns.
        let edge = T - 3_200_000_000 + 250;
        let r = number_pulse(edge, 1, 1e-9, lock(edge - 600_000_000, 3.2)).unwrap();
        assert_eq!(r.time, edge);
        assert!((r.offset - (3.2 - 250e-9)).abs() < 1e-9, "{}", r.offset);
        assert_eq!(r.leap, Leap::AddSecond, "the lock's leap warning");
        // The same with a coarse reading 0.3 s off: the edge still numbers the right second.
        let r = number_pulse(edge, 1, 1e-9, lock(edge, 3.2 + 0.3)).unwrap();
        assert!((r.offset - (3.2 - 250e-9)).abs() < 1e-9);
    }

    #[test]
    fn lock_refusals() {
        let edge = T + 1_000;
        assert_eq!(
            number_pulse(edge, 1, 1e-9, PulseReference::Lock(None)),
            Err(PulseRefusal::NoLockReading)
        );
        assert_eq!(
            number_pulse(edge, 1, 1e-9, lock(edge - 2 * S, 0.0)),
            Err(PulseRefusal::LockTooOld)
        );
        // Half a second apart: which second is the edge's cannot be told.
        assert_eq!(
            number_pulse(edge, 1, 1e-9, lock(edge - S / 2, 0.5)),
            Err(PulseRefusal::LockDisagrees)
        );
        // At 10 pulses a second, the limit is 0.04 s.
        assert_eq!(
            number_pulse(edge, 10, 1e-9, lock(edge, 0.045)),
            Err(PulseRefusal::LockDisagrees)
        );
        assert!(number_pulse(edge, 10, 1e-9, lock(edge, 0.035)).is_ok());
    }

    #[test]
    fn without_a_lock_the_served_clock_numbers_the_edge() {
        // Served time is 0.2 s ahead of the kernel: the edge 100 µs after kernel second N is
        // served N + 0.2001, nearest to pulse N, so the reference is 100 µs behind the kernel;
        // 0.7 s ahead, the edge is served N + 0.7001, nearest to pulse N + 1.
        let edge = T + 100_000;
        let r = number_pulse(edge, 1, 1e-9, served(0.2, 0.001)).unwrap();
        assert!((r.offset - (-100e-6)).abs() < 1e-9, "{}", r.offset);
        let r = number_pulse(edge, 1, 1e-9, served(0.7, 0.001)).unwrap();
        assert!((r.offset - (1.0 - 100e-6)).abs() < 1e-9, "{}", r.offset);
        assert_eq!(
            number_pulse(edge, 1, 1e-9, served(0.0, 0.5)),
            Err(PulseRefusal::NotSynchronized)
        );
        let unsynchronized = PulseReference::Served(ServedClock {
            synchronized: false,
            correction: 0.0,
            distance: 0.0,
            leap: Leap::NoWarning,
        });
        assert_eq!(
            number_pulse(edge, 1, 1e-9, unsynchronized),
            Err(PulseRefusal::NotSynchronized)
        );
    }

    #[test]
    fn edges_before_1970_and_at_high_rates_wrap_into_half_a_period() {
        let r = number_pulse(-S + 300_000_000, 1, 0.0, served(0.0, 0.0)).unwrap();
        assert!((r.offset + 0.3).abs() < 1e-9, "{}", r.offset);
        let r = number_pulse(T + 260_000_000, 5, 0.0, served(0.0, 0.0)).unwrap();
        assert!((r.offset + 0.06).abs() < 1e-9, "{}", r.offset);
    }

    #[test]
    fn each_edge_is_read_once_and_missed_ones_are_counted() {
        let mut t = EdgeTracker::default();
        assert_eq!(t.accept(7), EdgeVerdict::New { missed: 0 });
        assert_eq!(t.accept(7), EdgeVerdict::Seen);
        assert_eq!(t.accept(8), EdgeVerdict::New { missed: 0 });
        assert_eq!(t.accept(11), EdgeVerdict::New { missed: 2 });
        let mut t = EdgeTracker::default();
        t.accept(u32::MAX);
        assert_eq!(t.accept(1), EdgeVerdict::New { missed: 1 }, "the count wraps");
    }

    #[test]
    fn refusals_are_counted_by_reason() {
        let mut c = PulseCounts::default();
        c.count(PulseRefusal::LockTooOld);
        c.count(PulseRefusal::LockTooOld);
        assert_eq!(c.refused(PulseRefusal::LockTooOld), 2);
        assert_eq!(c.refused(PulseRefusal::NoLockReading), 0);
    }
}

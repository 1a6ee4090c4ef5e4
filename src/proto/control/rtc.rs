//! Keeping the hardware calendar (the RTC) in step with the served time while it is
//! synchronized (`rtc_sync`), as the kernel's 11-minute mode and chrony's `rtcsync` do.
//!
//! Every [`CHECK_INTERVAL`] while synchronized, the RTC is compared with the served time. The
//! RTC shows whole seconds only, so one reading `R` at served time `U` says that the RTC's
//! error lies in `[R − U, R − U + 1)`; the readings of a short window (one at each turn of the
//! control loop, at least every [`READ_SPACING`]) are intersected until the error is known to
//! within a loop turn. When it is off by more than [`MAX_ERROR`], it is set as the kernel sets
//! it: second `X` is written [`SET_LEAD`] before served time `X`, the kernel's default transport
//! time, so that the RTC's second `X` starts as the write lands (the RTC counts on from the
//! moment it is written). A set that would be late by more than [`SET_LATE`] waits for the
//! next second.
//!
//! When the kernel's 11-minute mode writes the RTC itself (the kernel clock marked synchronized,
//! as `discipline_system` leaves it), strata does not write it too: it only reads it and
//! reports the offset, so that two writers never fight over it.

/// Between two comparisons (ns): the kernel's 11 minutes.
pub const CHECK_INTERVAL: i64 = 11 * 60 * SECOND;
/// The largest error left alone (seconds).
pub const MAX_ERROR: f64 = 0.1;
/// How long the readings of one comparison are taken (ns).
pub const READ_WINDOW: i64 = 1_500 * MS;
/// The longest gap between two readings of a window (ns).
pub const READ_SPACING: i64 = 50 * MS;
/// How long before the second it names a set is made (ns): the kernel's default transport
/// time (its `set_offset_nsec` less one second).
pub const SET_LEAD: i64 = 10 * MS;
/// The latest a set may be made after its moment (ns) before it waits for the next second.
pub const SET_LATE: i64 = 20 * MS;
/// After a set, the RTC is read back this soon (ns), to show where the set left it.
pub const VERIFY_AFTER: i64 = 3 * SECOND;

const SECOND: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;

/// Who keeps the RTC in step now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcKeeping {
    /// Not yet compared: the served time has not been synchronized since the start.
    WaitingForSync,
    /// strata compares it and sets it.
    Strata,
    /// The kernel's 11-minute mode writes it; strata only compares.
    Kernel,
}

/// What the keeper knows, for the status.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RtcKnowledge {
    pub keeping: RtcKeeping,
    /// The RTC minus served time (seconds) at the last comparison, and its uncertainty (±).
    pub offset: Option<(f64, f64)>,
    /// Served time (Unix ns) of the last comparison.
    pub checked: Option<i64>,
    /// The second last written, and the served time (Unix ns) it was written at.
    pub last_set: Option<(i64, i64)>,
    pub sets: u64,
}

/// What the daemon is to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RtcStep {
    Nothing,
    /// Read the RTC and hand the second to [`RtcKeeper::reading`].
    Read,
    /// Write this second to the RTC now and tell [`RtcKeeper::written`].
    Set(i64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// The next comparison at this kernel time (once synchronized); `verify`: it reads back
    /// a set, and does not set again.
    Idle { next: i64, verify: bool },
    /// Readings since kernel time `started`; the error interval so far (seconds).
    Reading {
        started: i64,
        lo: f64,
        hi: f64,
        verify: bool,
    },
    /// Write second `value` when served time reaches `value` − SET_LEAD.
    Setting { value: i64 },
}

impl Phase {
    fn idle(next: i64) -> Phase {
        Phase::Idle { next, verify: false }
    }
}

/// Decides when to read and to set the RTC; it does no I/O (the daemon does what it says).
#[derive(Debug, Clone)]
pub struct RtcKeeper {
    phase: Phase,
    knowledge: RtcKnowledge,
}

impl RtcKeeper {
    /// A keeper that compares as soon as the served time is synchronized.
    pub fn new(now: i64) -> RtcKeeper {
        RtcKeeper {
            phase: Phase::idle(now),
            knowledge: RtcKnowledge {
                keeping: RtcKeeping::WaitingForSync,
                offset: None,
                checked: None,
                last_set: None,
                sets: 0,
            },
        }
    }

    pub fn knowledge(&self) -> RtcKnowledge {
        self.knowledge
    }

    /// What to do at kernel time `now`, served time `served` (Unix ns); `synchronized`: the
    /// served time is; `kernel_keeps`: the kernel's 11-minute mode writes the RTC.
    pub fn step(&mut self, now: i64, served: i64, synchronized: bool, kernel_keeps: bool) -> RtcStep {
        match self.phase {
            Phase::Idle { next, verify } => {
                if now < next || !synchronized {
                    return RtcStep::Nothing;
                }
                self.phase = Phase::Reading {
                    started: now,
                    lo: f64::NEG_INFINITY,
                    hi: f64::INFINITY,
                    verify,
                };
                RtcStep::Read
            }
            Phase::Reading { .. } => {
                if !synchronized {
                    self.phase = Phase::idle(now);
                    return RtcStep::Nothing;
                }
                RtcStep::Read
            }
            Phase::Setting { value } => {
                if !synchronized || kernel_keeps {
                    self.phase = Phase::idle(now);
                    return RtcStep::Nothing;
                }
                let at = value * SECOND - SET_LEAD;
                if served < at {
                    RtcStep::Nothing
                } else if served - at <= SET_LATE {
                    RtcStep::Set(value)
                } else {
                    // Missed the moment: the next second's.
                    self.phase = Phase::Setting {
                        value: next_settable(served),
                    };
                    RtcStep::Nothing
                }
            }
        }
    }

    /// The RTC showed second `rtc` at kernel time `now`, served time `served` (Unix ns).
    pub fn reading(&mut self, now: i64, served: i64, rtc: i64, kernel_keeps: bool) {
        let Phase::Reading {
            started,
            lo,
            hi,
            verify,
        } = self.phase
        else {
            return;
        };
        // The RTC's error e satisfies rtc = floor(served + e): e in [rtc − served, +1 s).
        let low = (rtc * SECOND - served) as f64 * 1e-9;
        let (lo, hi) = (lo.max(low), hi.min(low + 1.0));
        if now - started < READ_WINDOW {
            self.phase = Phase::Reading {
                started,
                lo,
                hi,
                verify,
            };
            return;
        }
        // An empty interval: the RTC moved under the readings (set by someone else, or a
        // leap second): no verdict this time.
        let estimate = (lo <= hi).then_some(((lo + hi) / 2.0, (hi - lo) / 2.0));
        self.knowledge.offset = estimate;
        self.knowledge.checked = Some(served);
        self.knowledge.keeping = if kernel_keeps {
            RtcKeeping::Kernel
        } else {
            RtcKeeping::Strata
        };
        self.phase = match estimate {
            Some((e, _)) if e.abs() > MAX_ERROR && !kernel_keeps && !verify => Phase::Setting {
                value: next_settable(served),
            },
            _ => Phase::idle(now + CHECK_INTERVAL),
        };
    }

    /// The RTC could not be read at kernel time `now`, served time `served`. `invalid`: it
    /// holds no valid time (the kernel's EINVAL after its battery ran out): it is set, as the
    /// kernel's 11-minute mode would (unless that mode writes it); otherwise no verdict until
    /// the next comparison.
    pub fn read_failed(&mut self, now: i64, served: i64, invalid: bool, kernel_keeps: bool) {
        self.phase = match self.phase {
            Phase::Reading { verify: false, .. } if invalid && !kernel_keeps => Phase::Setting {
                value: next_settable(served),
            },
            _ => Phase::idle(now + CHECK_INTERVAL),
        };
    }

    /// Second `value` was written (`ok`) at kernel time `now`, served time `served`.
    pub fn written(&mut self, now: i64, served: i64, value: i64, ok: bool) {
        self.phase = if ok {
            self.knowledge.last_set = Some((value, served));
            self.knowledge.sets += 1;
            Phase::Idle {
                next: now + VERIFY_AFTER,
                verify: true,
            }
        } else {
            Phase::idle(now + CHECK_INTERVAL)
        };
    }

    /// The kernel time by which the daemon should look again (`None`: no hurry, the next
    /// turn of its loop will do); `served` is served time (Unix ns) at kernel time `now`.
    pub fn next_wakeup(&self, now: i64, served: i64) -> Option<i64> {
        match self.phase {
            // Due, but waiting for synchronization: any later turn will do.
            Phase::Idle { next, .. } => (next > now).then_some(next),
            Phase::Reading { .. } => Some(now + READ_SPACING),
            Phase::Setting { value } => Some(now + (value * SECOND - SET_LEAD - served).max(0)),
        }
    }
}

/// The first second that can still be set on time from served time `served` (Unix ns).
fn next_settable(served: i64) -> i64 {
    (served + SET_LEAD).div_euclid(SECOND) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_796_266_740 * SECOND;

    /// Runs the keeper against an RTC `error_ns` from served time (served = kernel + 0.2 s),
    /// looking every `turn` ns for `for_ns`; returns the seconds set and where each left it.
    struct Run {
        keeper: RtcKeeper,
        now: i64,
        /// The RTC's time (ns) minus served time, which it shows in whole seconds.
        error_ns: i64,
        sets: Vec<(i64, i64)>,
    }

    const CORRECTION: i64 = 200 * MS;

    impl Run {
        fn new(error_ns: i64) -> Run {
            Run {
                keeper: RtcKeeper::new(T),
                now: T,
                error_ns,
                sets: Vec::new(),
            }
        }

        fn go(&mut self, for_ns: i64, turn: i64, synchronized: bool, kernel: bool) {
            let end = self.now + for_ns;
            while self.now < end {
                let served = self.now + CORRECTION;
                match self.keeper.step(self.now, served, synchronized, kernel) {
                    RtcStep::Nothing => {}
                    RtcStep::Read => {
                        let rtc = (served + self.error_ns).div_euclid(SECOND);
                        self.keeper.reading(self.now, served, rtc, kernel);
                    }
                    RtcStep::Set(value) => {
                        // The second starts as the write lands, SET_LEAD later.
                        self.error_ns = value * SECOND - (served + SET_LEAD);
                        self.sets.push((served, value));
                        self.keeper.written(self.now, served, value, true);
                    }
                }
                let wake = self.keeper.next_wakeup(self.now, served);
                self.now = wake.unwrap_or(i64::MAX).clamp(self.now + 1, self.now + turn);
            }
        }
    }

    #[test]
    fn nothing_happens_before_synchronization() {
        let mut r = Run::new(5 * SECOND);
        r.go(CHECK_INTERVAL, 100 * MS, false, false);
        assert!(r.sets.is_empty());
        assert_eq!(r.keeper.knowledge().keeping, RtcKeeping::WaitingForSync);
        assert_eq!(r.keeper.knowledge().offset, None);
    }

    #[test]
    fn an_rtc_off_is_measured_to_a_loop_turn_and_set_at_the_second() {
        let mut r = Run::new(-3_700 * MS);
        r.go(10 * SECOND, 100 * MS, true, false);
        assert_eq!(r.sets.len(), 1, "{:?}", r.sets);
        let (served_at, value) = r.sets[0];
        assert_eq!(
            served_at,
            value * SECOND - SET_LEAD,
            "written at the kernel's moment"
        );
        assert_eq!(r.error_ns, 0);
        let k = r.keeper.knowledge();
        assert_eq!(k.keeping, RtcKeeping::Strata);
        assert_eq!(k.sets, 1);
        // Read back after the set: in step, and not set again.
        let (offset, uncertainty) = k.offset.unwrap();
        assert!(
            offset.abs() <= uncertainty && uncertainty <= 0.05,
            "{offset} ± {uncertainty}"
        );
        r.go(CHECK_INTERVAL - 20 * SECOND, 100 * MS, true, false);
        assert_eq!(r.sets.len(), 1);
    }

    #[test]
    fn the_first_measurement_brackets_the_error() {
        let mut r = Run::new(-3_700 * MS);
        // Only the window's readings, not the set.
        r.go(READ_WINDOW + 200 * MS, 100 * MS, true, false);
        let (offset, uncertainty) = r.keeper.knowledge().offset.unwrap();
        assert!(
            (offset + 3.7).abs() <= uncertainty + 1e-9,
            "{offset} ± {uncertainty}"
        );
        assert!(uncertainty <= 0.05, "{uncertainty}");
    }

    #[test]
    fn a_small_error_is_left_alone_and_checked_every_11_minutes() {
        let mut r = Run::new(30 * MS);
        r.go(3 * CHECK_INTERVAL, SECOND, true, false);
        assert!(r.sets.is_empty());
        let checked = r.keeper.knowledge().checked.unwrap();
        assert!(r.now + CORRECTION - checked <= CHECK_INTERVAL + 2 * SECOND);
    }

    #[test]
    fn when_the_kernel_keeps_it_strata_reads_but_never_writes() {
        let mut r = Run::new(2 * SECOND);
        r.go(2 * CHECK_INTERVAL, 100 * MS, true, true);
        assert!(r.sets.is_empty());
        let k = r.keeper.knowledge();
        assert_eq!(k.keeping, RtcKeeping::Kernel);
        assert!((k.offset.unwrap().0 - 2.0).abs() < 0.06);
    }

    #[test]
    fn an_rtc_without_a_valid_time_is_set() {
        let mut keeper = RtcKeeper::new(T);
        let served = T + CORRECTION;
        assert_eq!(keeper.step(T, served, true, false), RtcStep::Read);
        keeper.read_failed(T, served, true, false);
        let due = T + SECOND - SET_LEAD;
        assert_eq!(keeper.next_wakeup(T, served), Some(due - CORRECTION));
        assert_eq!(
            keeper.step(due - CORRECTION, due, true, false),
            RtcStep::Set(T / SECOND + 1)
        );
        // Another failure (not an invalid time), or one while the kernel keeps it: no set.
        let mut keeper = RtcKeeper::new(T);
        keeper.step(T, served, true, false);
        keeper.read_failed(T, served, false, false);
        assert_eq!(keeper.next_wakeup(T, served), Some(T + CHECK_INTERVAL));
        let mut keeper = RtcKeeper::new(T);
        keeper.step(T, served, true, true);
        keeper.read_failed(T, served, true, true);
        assert_eq!(keeper.next_wakeup(T, served), Some(T + CHECK_INTERVAL));
    }

    #[test]
    fn a_late_turn_waits_for_the_next_second() {
        let mut keeper = RtcKeeper::new(T);
        let served = |now: i64| now + CORRECTION;
        let mut now = T;
        assert_eq!(keeper.step(now, served(now), true, false), RtcStep::Read);
        while now < T + READ_WINDOW {
            keeper.reading(now, served(now), (served(now) + 5 * SECOND) / SECOND, false);
            now += 50 * MS;
        }
        keeper.reading(now, served(now), (served(now) + 5 * SECOND) / SECOND, false);
        // Served time is now 1.7 s past T: the set is for second T + 2 at served T + 1.99.
        assert_eq!(served(now), T + 1_700 * MS);
        assert_eq!(keeper.next_wakeup(now, served(now)), Some(now + 290 * MS));
        // The loop comes back 100 ms late: no set, the next second instead.
        now += 390 * MS;
        assert_eq!(keeper.step(now, served(now), true, false), RtcStep::Nothing);
        now = T + 3 * SECOND - SET_LEAD - CORRECTION;
        assert_eq!(
            keeper.step(now, served(now), true, false),
            RtcStep::Set(T / SECOND + 3)
        );
    }
}

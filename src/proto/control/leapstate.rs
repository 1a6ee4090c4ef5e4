//! The leap second as the control core keeps it: the list, the upstreams' warning and the
//! operator's override go in ([`leapplan`](super::leapplan) decides), the served time's
//! [`LeapScale`] and the leap indicator come out.
//!
//! Everything is judged at `u`, the served time before the pending leap (see
//! `crate::proto::clock::scale`); the caller gives a function from a scale to `u` now, since
//! folding a leap that is done changes `u` itself.
//!
//! The life of a leap: scheduled as soon as something says so (it can still be cancelled);
//! announced (LI) from the start of its UTC day, unless smeared; committed [`LEAP_CLOSE`] before
//! it (a smear: at the smear's start), after which nothing changes it; applied; folded into
//! `past_s` [`LEAP_CLOSE`] after it is complete. No upstream sample is taken within
//! [`LEAP_CLOSE`] of it.

use super::events::Event;
use super::leapplan::{self, LeapHandling, LeapMode, LeapSettings, LeapSource, Scheduled, DAY};
use crate::proto::clock::scale::NTP_SECOND;
use crate::proto::clock::LeapScale;
use crate::proto::leap::LeapList;
use crate::proto::wire::ntp::Leap;
use crate::proto::wire::NtpTimestamp;

const SECOND: i64 = 1_000_000_000;

/// Around a leap second no sample is taken (an upstream may step a little before or after us,
/// and its timestamps in the inserted second are ambiguous), the scheduled leap can no longer
/// be cancelled, and a leap is folded into the past this long after it is done.
pub const LEAP_CLOSE: i64 = 10 * SECOND;

/// The leap second as `strata status` shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LeapStatus {
    pub scheduled: Option<Scheduled>,
    /// The leap indicator replies carry now (while synchronized).
    pub announced: Leap,
    /// A smear is in progress (its start passed, its end not yet).
    pub smearing: bool,
    /// Served time minus UTC as the uniform scale would read it without the pending leap
    /// (seconds): the smear's progress, or the step once it is done.
    pub offset: f64,
    /// Leaps applied since start, summed (+1 each inserted second).
    pub applied_s: i32,
    pub mode: LeapMode,
    pub handling: LeapHandling,
}

/// `a >= b` for NTP timestamps, wrapping at the era.
fn at_or_after(a: NtpTimestamp, b: NtpTimestamp) -> bool {
    a.0.wrapping_sub(b.0) as i64 >= 0
}

fn ntp(unix_s: i64) -> NtpTimestamp {
    NtpTimestamp::from_unix_nanos(unix_s as i128 * SECOND as i128)
}

#[derive(Debug, Clone)]
pub struct LeapState {
    settings: LeapSettings,
    /// The leap-seconds.list, if one verified.
    list: Option<LeapList>,
    /// The leap second applied to the served time, and the one scheduled.
    scale: LeapScale,
    scheduled: Option<Scheduled>,
    /// The warning the majority of the survivors sent at the last selection.
    upstream: Leap,
    /// An override leap was done: the override does not repeat it every month.
    override_done: bool,
    /// The midnight of the last leap done: never scheduled again (in an inserted second, UTC
    /// reads as before that midnight once more).
    done_midnight: i64,
    /// How far `u` is from the next boundary (announcement, commitment, step, fold), ns.
    next_boundary: Option<i64>,
}

impl LeapState {
    pub fn new(settings: LeapSettings) -> LeapState {
        LeapState {
            settings,
            list: None,
            scale: LeapScale::default(),
            scheduled: None,
            upstream: Leap::NoWarning,
            override_done: false,
            done_midnight: i64::MIN,
            next_boundary: None,
        }
    }

    /// The scale the served time is converted with.
    pub fn scale(&self) -> LeapScale {
        self.scale
    }

    pub fn set_list(&mut self, list: Option<LeapList>) {
        self.list = list;
    }

    /// The warning of the majority of the selected sources.
    pub fn set_upstream(&mut self, leap: Leap) {
        self.upstream = leap;
    }

    /// The kernel was armed to step CLOCK_REALTIME at the pending leap (or disarmed).
    pub fn set_kernel(&mut self, armed: bool) {
        self.scale.kernel_steps_realtime = armed;
    }

    /// The pending leap, if it is to be stepped (the kernel can be armed for it).
    pub fn pending_step(&self) -> Option<i8> {
        (self.scale.delta != 0 && self.scale.smear_len_s == 0).then_some(self.scale.delta)
    }

    /// Nanoseconds of `u` to the next boundary, if a leap is pending.
    pub fn next_boundary(&self) -> Option<i64> {
        self.next_boundary
    }

    /// The leap second is done (complete, or performed by the kernel): it goes into `past_s`.
    pub fn fold(&mut self, events: &mut Vec<Event>) {
        let delta = self.scale.delta;
        if let Some(s) = self.scheduled {
            self.override_done |= s.source == LeapSource::Override;
            self.done_midnight = s.midnight;
        }
        self.scale = self.scale.folded();
        self.scheduled = None;
        // The warning was for this leap; the next selection says whether there is another.
        self.upstream = Leap::NoWarning;
        events.push(Event::LeapDone { delta });
    }

    pub fn status(&self, u: NtpTimestamp) -> LeapStatus {
        LeapStatus {
            scheduled: self.scheduled,
            announced: self.announced(u),
            smearing: self.scale.smearing()
                && at_or_after(u, self.scale.smear_start)
                && !at_or_after(u, self.scale.end()),
            offset: self.scale.offset_units(u) as f64 / NTP_SECOND as f64,
            applied_s: self.scale.past_s,
            mode: self.settings.mode,
            handling: self.settings.handling,
        }
    }

    /// Whether `u` is too close to the leap to take a sample.
    pub fn near(&self, u: NtpTimestamp) -> bool {
        self.scale.delta != 0 && u.diff_nanos(self.scale.at).abs() < LEAP_CLOSE
    }

    /// The leap indicator at `u`: from the start of the last day of the month until the step,
    /// as RFC 5905 says; never while smearing (the clients of a smearing server must not leap
    /// themselves).
    pub fn announced(&self, u: NtpTimestamp) -> Leap {
        let Some(s) = self.scheduled else {
            return Leap::NoWarning;
        };
        if self.scale.delta == 0 || self.scale.smear_len_s > 0 {
            return Leap::NoWarning;
        }
        if at_or_after(u, ntp(s.midnight - DAY)) && !at_or_after(u, self.scale.at) {
            if s.delta > 0 {
                Leap::AddSecond
            } else {
                Leap::DeleteSecond
            }
        } else {
            Leap::NoWarning
        }
    }

    /// The scale for a scheduled leap, the leaps so far kept.
    fn scale_for(&self, s: &Scheduled) -> LeapScale {
        let (smear_start, smear_len_s) = match self.settings.handling {
            LeapHandling::Step => (NtpTimestamp::ZERO, 0),
            LeapHandling::Smear { window_s } => (
                ntp(s.midnight - window_s as i64 / 2),
                // Seconds of the uniform scale: the window has one more (inserted) or one
                // fewer, so that it ends exactly `window_s` of UTC after it started.
                (window_s as i64 + s.delta as i64) as u32,
            ),
        };
        LeapScale {
            past_s: self.scale.past_s,
            delta: s.delta,
            at: ntp(s.midnight + (s.delta as i64).min(0)),
            smear_start,
            smear_len_s,
            kernel_steps_realtime: self.scale.kernel_steps_realtime,
        }
    }

    /// Folds a leap that is done, schedules (or cancels) the next one until it is committed,
    /// and finds the next boundary. `u_of` gives `u` now for a scale; `pivot_ns` is any Unix
    /// time within decades of now (it picks the NTP era).
    pub fn refresh(
        &mut self,
        u_of: impl Fn(&LeapScale) -> NtpTimestamp,
        pivot_ns: i64,
        events: &mut Vec<Event>,
    ) {
        if self.scale.delta != 0 && at_or_after(u_of(&self.scale), self.scale.end().add_nanos(LEAP_CLOSE)) {
            self.fold(events);
        }
        let u = u_of(&self.scale);
        let commit = if self.scale.smear_len_s > 0 {
            self.scale.smear_start
        } else {
            self.scale.at.add_nanos(-LEAP_CLOSE)
        };
        if self.scale.delta == 0 || !at_or_after(u, commit) {
            let mode = match self.settings.mode {
                LeapMode::Insert | LeapMode::Delete if self.override_done => LeapMode::Auto,
                mode => mode,
            };
            let unix_now = u.to_unix_nanos(pivot_ns as i128).div_euclid(SECOND as i128) as i64;
            let plan = leapplan::plan(unix_now, mode, self.list.as_ref(), self.upstream)
                .filter(|s| s.midnight > self.done_midnight);
            if plan != self.scheduled {
                events.push(match plan {
                    Some(s) => Event::LeapScheduled {
                        midnight: s.midnight,
                        delta: s.delta,
                        source: s.source,
                    },
                    None => Event::LeapCancelled,
                });
            }
            self.scheduled = plan;
            self.scale = match &plan {
                Some(s) => self.scale_for(s),
                None => LeapScale {
                    past_s: self.scale.past_s,
                    ..LeapScale::default()
                },
            };
        }
        let u = u_of(&self.scale);
        self.next_boundary = None;
        if let (Some(s), true) = (self.scheduled, self.scale.delta != 0) {
            let boundaries = [
                ntp(s.midnight - DAY),
                self.scale.at.add_nanos(-LEAP_CLOSE),
                self.scale.at,
                self.scale.smear_start,
                self.scale.end(),
                self.scale.end().add_nanos(LEAP_CLOSE),
            ];
            self.next_boundary = boundaries
                .iter()
                .map(|b| b.diff_nanos(u))
                .filter(|&d| d > 0)
                .min();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW_YEAR_2017: i64 = 1_483_228_800;

    fn insert() -> LeapState {
        LeapState::new(LeapSettings {
            mode: LeapMode::Insert,
            handling: LeapHandling::Step,
        })
    }

    #[test]
    fn an_override_leap_lives_and_is_folded_once() {
        let mut s = insert();
        let mut events = vec![];
        let at = |u: i64| move |scale: &LeapScale| ntp(u - scale.past_s as i64);
        let pivot = NEW_YEAR_2017 * SECOND;
        s.refresh(at(NEW_YEAR_2017 - 2 * DAY), pivot, &mut events);
        assert!(matches!(
            events[..],
            [Event::LeapScheduled {
                midnight: NEW_YEAR_2017,
                delta: 1,
                source: LeapSource::Override
            }]
        ));
        assert_eq!(s.announced(ntp(NEW_YEAR_2017 - 2 * DAY)), Leap::NoWarning);
        assert_eq!(s.next_boundary(), Some(DAY * SECOND), "the announcement");
        assert_eq!(s.announced(ntp(NEW_YEAR_2017 - DAY)), Leap::AddSecond);
        assert_eq!(s.announced(ntp(NEW_YEAR_2017)), Leap::NoWarning);
        assert!(s.near(ntp(NEW_YEAR_2017 + 9)) && !s.near(ntp(NEW_YEAR_2017 + 10)));
        // Committed: a changed mind is no longer heard.
        s.set_upstream(Leap::DeleteSecond);
        s.refresh(at(NEW_YEAR_2017 - 5), pivot, &mut events);
        assert_eq!(s.pending_step(), Some(1));
        // Folded ten seconds after, once; the override does not insert another in January (it
        // falls back to auto: the list, else the upstreams).
        s.set_upstream(Leap::NoWarning);
        s.refresh(at(NEW_YEAR_2017 + 11), pivot, &mut events);
        assert_eq!((s.scale().past_s, s.scale().delta), (1, 0));
        assert!(matches!(events.last(), Some(Event::LeapDone { delta: 1 })));
        s.refresh(at(NEW_YEAR_2017 + 5 * DAY), pivot, &mut events);
        assert_eq!(s.pending_step(), None);
        assert_eq!(s.next_boundary(), None);
    }

    #[test]
    fn a_smear_is_committed_at_its_start_and_never_announced() {
        let mut s = LeapState::new(LeapSettings {
            mode: LeapMode::Insert,
            handling: LeapHandling::Smear { window_s: 86_400 },
        });
        let mut events = vec![];
        let at = |u: i64| move |scale: &LeapScale| ntp(u - scale.past_s as i64);
        s.refresh(at(NEW_YEAR_2017 - DAY), NEW_YEAR_2017 * SECOND, &mut events);
        let scale = s.scale();
        assert_eq!(
            (scale.smear_start, scale.smear_len_s),
            (ntp(NEW_YEAR_2017 - 43_200), 86_401)
        );
        assert_eq!(s.announced(ntp(NEW_YEAR_2017 - 60)), Leap::NoWarning);
        assert_eq!(s.pending_step(), None, "the kernel is not armed for a smear");
        let status = s.status(ntp(NEW_YEAR_2017));
        assert!(status.smearing);
        assert!(
            (status.offset + 43_200.0 / 86_401.0).abs() < 1e-9,
            "{}",
            status.offset
        );
    }
}

//! Which leap second comes next, and who says so: the operator's override, the
//! leap-seconds.list, or the upstreams' majority. Pure: the engine asks with the time now and
//! turns the answer into the served time's [`LeapScale`](crate::proto::clock::LeapScale).
//!
//! With `leap = "auto"` (the default) a list that covers the end of the current month decides
//! (a leap its data has, or none, whatever the upstreams say: a list that verified is better
//! evidence than a warning bit); a list that is expired or missing leaves it to the upstreams'
//! majority, whose warning means a leap at the end of the current month (UTC), as RFC 5905
//! says. `insert` and `delete` put one at the end of the current month; `none` never leaps.

use crate::proto::leap::LeapList;
use crate::proto::wire::ntp::Leap;
use crate::proto::wire::timestamp::UNIX_EPOCH_NTP_SECONDS;

pub const DAY: i64 = 86_400;
/// The smear's default window: 24 hours, noon to noon UTC around the leap.
pub const DEFAULT_SMEAR_WINDOW: u32 = 86_400;

/// The operator's leap setting (`leap = ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LeapMode {
    /// The list, else the upstreams' majority.
    #[default]
    Auto,
    /// Never a leap second, whatever the list or the upstreams say.
    None,
    /// A second inserted at the end of the current month (once).
    Insert,
    /// A second deleted at the end of the current month (once).
    Delete,
}

/// How the served time goes through a leap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LeapHandling {
    /// Stepped at the leap, as the kernel and chronyd do (23:59:59 served twice).
    #[default]
    Step,
    /// Smeared linearly over this many seconds of UTC centred on the leap (not for the pool).
    Smear { window_s: u32 },
}

/// The leap settings the engine is started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeapSettings {
    pub mode: LeapMode,
    pub handling: LeapHandling,
}

/// Who decided the scheduled leap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeapSource {
    Override,
    List,
    Upstreams,
}

impl LeapSource {
    pub const fn label(self) -> &'static str {
        match self {
            LeapSource::Override => "override",
            LeapSource::List => "list",
            LeapSource::Upstreams => "upstreams",
        }
    }
}

/// A leap second to come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scheduled {
    /// Unix seconds of the UTC midnight that ends the day with the leap (as UTC reads it after
    /// the leap: the list's own instants).
    pub midnight: i64,
    /// +1 an inserted second, -1 a deleted one.
    pub delta: i8,
    pub source: LeapSource,
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; H. Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + (m <= 2) as i64, m, d)
}

/// Unix seconds of the midnight that ends the month of Unix second `t`.
pub fn end_of_month(t: i64) -> i64 {
    let (y, m, _) = civil_from_days(t.div_euclid(DAY));
    let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    days_from_civil(y, m, 1) * DAY
}

/// The next leap second after Unix second `now` (UTC as read before it), if any.
/// `upstreams` is the warning the majority of the selected sources sends.
pub fn plan(now: i64, mode: LeapMode, list: Option<&LeapList>, upstreams: Leap) -> Option<Scheduled> {
    let month_end = end_of_month(now);
    let at_month_end = |delta, source| {
        Some(Scheduled {
            midnight: month_end,
            delta,
            source,
        })
    };
    match mode {
        LeapMode::None => None,
        LeapMode::Insert => at_month_end(1, LeapSource::Override),
        LeapMode::Delete => at_month_end(-1, LeapSource::Override),
        LeapMode::Auto => {
            if let Some(list) = list {
                let ntp_now = (now + UNIX_EPOCH_NTP_SECONDS).max(0) as u64;
                if let Some((at, delta)) = list.next_leap_after(ntp_now) {
                    if at <= list.expires {
                        return Some(Scheduled {
                            midnight: at as i64 - UNIX_EPOCH_NTP_SECONDS,
                            delta: delta.signum() as i8,
                            source: LeapSource::List,
                        });
                    }
                }
                if list.expires as i64 - UNIX_EPOCH_NTP_SECONDS >= month_end {
                    // The list speaks for this month's end, and it has no leap there.
                    return None;
                }
            }
            match upstreams {
                Leap::AddSecond => at_month_end(1, LeapSource::Upstreams),
                Leap::DeleteSecond => at_month_end(-1, LeapSource::Upstreams),
                _ => None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2016-12-31T00:00:00Z and the midnight that ended it.
    const LAST_DAY_2016: i64 = 1_483_142_400;
    const NEW_YEAR_2017: i64 = 1_483_228_800;

    /// A list that verified: the 2017 leap, expiring 2017-06-28 (built by hand, hash unchecked).
    fn list(expires_unix: i64) -> LeapList {
        LeapList {
            updated: 3_690_000_000,
            expires: (expires_unix + UNIX_EPOCH_NTP_SECONDS) as u64,
            entries: vec![
                crate::proto::leap::Entry {
                    start: 3_644_697_600,
                    tai_minus_utc: 36,
                },
                crate::proto::leap::Entry {
                    start: 3_692_217_600,
                    tai_minus_utc: 37,
                },
            ],
        }
    }

    #[test]
    fn calendar() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2017, 1, 1) * DAY, NEW_YEAR_2017);
        assert_eq!(civil_from_days(NEW_YEAR_2017 / DAY - 1), (2016, 12, 31));
        assert_eq!(end_of_month(LAST_DAY_2016), NEW_YEAR_2017);
        assert_eq!(end_of_month(NEW_YEAR_2017 - 1), NEW_YEAR_2017);
        assert_eq!(end_of_month(NEW_YEAR_2017), days_from_civil(2017, 2, 1) * DAY);
        // Leap years and the 2036 NTP era boundary are nothing special to the calendar.
        assert_eq!(civil_from_days(days_from_civil(2036, 2, 29)), (2036, 2, 29));
        assert_eq!(
            end_of_month(days_from_civil(2036, 2, 7) * DAY),
            days_from_civil(2036, 3, 1) * DAY
        );
        for z in -800_000..800_000i64 {
            if z % 997 == 0 {
                let (y, m, d) = civil_from_days(z);
                assert_eq!(days_from_civil(y, m, d), z);
            }
        }
    }

    #[test]
    fn the_list_decides_when_it_covers_the_month() {
        let valid = list(NEW_YEAR_2017 + 180 * DAY);
        let s = plan(LAST_DAY_2016, LeapMode::Auto, Some(&valid), Leap::NoWarning).unwrap();
        assert_eq!(
            (s.midnight, s.delta, s.source),
            (NEW_YEAR_2017, 1, LeapSource::List)
        );
        // Months before, the list already knows.
        assert_eq!(
            plan(
                LAST_DAY_2016 - 100 * DAY,
                LeapMode::Auto,
                Some(&valid),
                Leap::NoWarning
            ),
            Some(s)
        );
        // A bogus warning from the upstreams, in a month the list says has no leap: refused.
        let in_2017 = NEW_YEAR_2017 + 40 * DAY;
        assert_eq!(plan(in_2017, LeapMode::Auto, Some(&valid), Leap::AddSecond), None);
    }

    #[test]
    fn an_expired_or_missing_list_leaves_it_to_the_upstreams() {
        let expired = list(NEW_YEAR_2017 - 200 * DAY);
        for l in [Some(&expired), None] {
            let s = plan(LAST_DAY_2016, LeapMode::Auto, l, Leap::AddSecond).unwrap();
            assert_eq!(
                (s.midnight, s.delta, s.source),
                (NEW_YEAR_2017, 1, LeapSource::Upstreams)
            );
            let s = plan(LAST_DAY_2016 - 20 * DAY, LeapMode::Auto, l, Leap::DeleteSecond).unwrap();
            assert_eq!((s.midnight, s.delta), (NEW_YEAR_2017, -1));
            assert_eq!(plan(LAST_DAY_2016, LeapMode::Auto, l, Leap::NoWarning), None);
            assert_eq!(plan(LAST_DAY_2016, LeapMode::Auto, l, Leap::Unsynchronized), None);
        }
    }

    #[test]
    fn the_override_wins() {
        let valid = list(NEW_YEAR_2017 + 180 * DAY);
        assert_eq!(
            plan(LAST_DAY_2016, LeapMode::None, Some(&valid), Leap::AddSecond),
            None
        );
        let s = plan(
            NEW_YEAR_2017 + 5 * DAY,
            LeapMode::Delete,
            Some(&valid),
            Leap::NoWarning,
        )
        .unwrap();
        assert_eq!(
            (s.midnight, s.delta, s.source),
            (days_from_civil(2017, 2, 1) * DAY, -1, LeapSource::Override)
        );
        let s = plan(LAST_DAY_2016, LeapMode::Insert, None, Leap::DeleteSecond).unwrap();
        assert_eq!((s.midnight, s.delta), (NEW_YEAR_2017, 1));
    }
}

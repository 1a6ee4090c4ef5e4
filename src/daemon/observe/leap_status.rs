//! The leap second as `strata status` and `/metrics` show it: TAI − UTC and where it comes
//! from, what is scheduled and who decided it, whether it is announced or being smeared.

use serde::{Deserialize, Serialize};

use super::board::{LeapListState, LeapListStatus};
use crate::proto::control::engine::LeapStatus;
use crate::proto::control::leapplan::{civil_from_days, LeapHandling, LeapMode, DAY};

/// Where TAI − UTC comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaiSource {
    /// Not known: no usable list and the kernel's offset is 0. Leap warnings then come from
    /// the upstreams' majority, which says nothing of TAI − UTC itself.
    #[default]
    Unknown,
    /// The leap-seconds.list, current.
    List,
    /// An expired list's last value and the leaps the upstreams announced since.
    Upstreams,
    /// The kernel's TAI offset (adjtimex), set by someone.
    Kernel,
}

impl TaiSource {
    pub const fn label(self) -> &'static str {
        match self {
            TaiSource::Unknown => "unknown",
            TaiSource::List => "list",
            TaiSource::Upstreams => "upstreams",
            TaiSource::Kernel => "kernel",
        }
    }
}

/// A leap second to come.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduledLeap {
    /// Unix seconds of the midnight that ends the day with the leap.
    pub midnight: i64,
    /// +1 inserted, -1 deleted.
    pub delta: i8,
    /// Who decided it: override, list or upstreams.
    pub source: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LeapSecondStatus {
    /// TAI − UTC now (seconds), if known, and where it comes from.
    pub tai_minus_utc: Option<i32>,
    pub tai_source: TaiSource,
    /// The `leap` setting: auto, none, insert or delete.
    pub mode: String,
    /// The smear's window (seconds) when leaps are smeared; None: stepped.
    pub smear_window: Option<u32>,
    pub scheduled: Option<ScheduledLeap>,
    /// The leap indicator replies carry for it now (0 none, 1 insert, 2 delete).
    pub announced: u8,
    /// A smear is in progress, and the served time's offset from unsmeared UTC (seconds).
    pub smearing: bool,
    pub smear_offset: f64,
    /// Leaps applied since start (+1 each inserted second).
    pub applied: i32,
}

fn mode_name(mode: LeapMode) -> &'static str {
    match mode {
        LeapMode::Auto => "auto",
        LeapMode::None => "none",
        LeapMode::Insert => "insert",
        LeapMode::Delete => "delete",
    }
}

impl LeapSecondStatus {
    /// From the engine's leap state, the list's status and the kernel's TAI offset.
    pub fn new(leap: &LeapStatus, list: &LeapListStatus, kernel_tai: i32) -> LeapSecondStatus {
        let (tai_minus_utc, tai_source) = match (list.state, list.tai_minus_utc) {
            (LeapListState::Valid, Some(t)) => (Some(t), TaiSource::List),
            // Leaps applied since start are after the list expired (it knew of none to come).
            (LeapListState::Expired, Some(t)) => (Some(t + leap.applied_s), TaiSource::Upstreams),
            _ if kernel_tai != 0 => (Some(kernel_tai), TaiSource::Kernel),
            _ => (None, TaiSource::Unknown),
        };
        LeapSecondStatus {
            tai_minus_utc,
            tai_source,
            mode: mode_name(leap.mode).to_string(),
            smear_window: match leap.handling {
                LeapHandling::Step => None,
                LeapHandling::Smear { window_s } => Some(window_s),
            },
            scheduled: leap.scheduled.map(|s| ScheduledLeap {
                midnight: s.midnight,
                delta: s.delta,
                source: s.source.label().to_string(),
            }),
            announced: leap.announced as u8,
            smearing: leap.smearing,
            smear_offset: if leap.smearing { leap.offset } else { 0.0 },
            applied: leap.applied_s,
        }
    }

    /// The status lines: TAI − UTC, then the leap second.
    pub fn describe_tai(&self) -> String {
        match self.tai_minus_utc {
            Some(t) => format!("{t} seconds (from the {})", self.tai_source.label()),
            None => "unknown (no current list, the kernel's offset is 0)".to_string(),
        }
    }

    pub fn describe_leap(&self) -> String {
        let how = match self.smear_window {
            Some(w) => format!("smeared over {w} s (not for public servers)"),
            None => "stepped".to_string(),
        };
        let what = match &self.scheduled {
            Some(s) => {
                let (y, m, d) = civil_from_days(s.midnight.div_euclid(DAY) - 1);
                format!(
                    "{} at the end of {y:04}-{m:02}-{d:02} UTC (decided by the {}){}{}",
                    if s.delta > 0 { "inserted" } else { "deleted" },
                    s.source,
                    if self.announced != 0 { ", announced" } else { "" },
                    if self.smearing {
                        format!(", smearing: {:+.6} s", self.smear_offset)
                    } else {
                        String::new()
                    }
                )
            }
            None => "none scheduled".to_string(),
        };
        format!("{what}; leap = {}, {how}", self.mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::control::leapplan::{LeapSource, Scheduled};
    use crate::proto::wire::ntp::Leap;

    fn engine_side(applied_s: i32) -> LeapStatus {
        LeapStatus {
            scheduled: Some(Scheduled {
                midnight: 1_483_228_800,
                delta: 1,
                source: LeapSource::List,
            }),
            announced: Leap::AddSecond,
            smearing: false,
            offset: 0.0,
            applied_s,
            mode: LeapMode::Auto,
            handling: LeapHandling::Step,
        }
    }

    #[test]
    fn tai_minus_utc_comes_from_the_list_else_the_kernel() {
        let valid = LeapListStatus {
            state: LeapListState::Valid,
            tai_minus_utc: Some(36),
            ..LeapListStatus::default()
        };
        let s = LeapSecondStatus::new(&engine_side(0), &valid, 0);
        assert_eq!((s.tai_minus_utc, s.tai_source), (Some(36), TaiSource::List));
        assert_eq!(s.describe_tai(), "36 seconds (from the list)");
        assert_eq!(
            s.describe_leap(),
            "inserted at the end of 2016-12-31 UTC (decided by the list), announced; leap = auto, stepped"
        );
        let expired = LeapListStatus {
            state: LeapListState::Expired,
            ..valid.clone()
        };
        let s = LeapSecondStatus::new(&engine_side(1), &expired, 0);
        assert_eq!((s.tai_minus_utc, s.tai_source), (Some(37), TaiSource::Upstreams));
        let s = LeapSecondStatus::new(&engine_side(0), &LeapListStatus::default(), 37);
        assert_eq!((s.tai_minus_utc, s.tai_source), (Some(37), TaiSource::Kernel));
        let s = LeapSecondStatus::new(&engine_side(0), &LeapListStatus::default(), 0);
        assert_eq!(s.tai_minus_utc, None);
        assert!(s.describe_tai().starts_with("unknown"));
    }
}

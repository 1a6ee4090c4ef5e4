//! The hardware calendar (`rtc_sync`) as `strata status` and `/metrics` show it: the device,
//! who keeps it in step, its offset from the served time at the last comparison, and the last
//! set. Times are Unix seconds.

use serde::{Deserialize, Serialize};

/// Who keeps the RTC, or why nobody does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RtcState {
    /// `rtc_sync` is off.
    #[default]
    Off,
    /// `rtc_sync` is on but there is no RTC device (or it cannot be opened).
    Missing,
    /// Not compared yet: the served time has not been synchronized.
    Waiting,
    /// strata compares it every 11 minutes and sets it when it is off.
    Strata,
    /// The kernel's 11-minute mode writes it; strata only compares.
    Kernel,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RtcStatus {
    pub state: RtcState,
    pub device: Option<String>,
    /// Why the device is missing, or why the last read or set failed (none after a success).
    pub problem: Option<String>,
    /// RTC minus served time (seconds) at the last comparison, and its uncertainty (±).
    pub offset: Option<f64>,
    pub offset_uncertainty: Option<f64>,
    pub checked: Option<f64>,
    /// The last set: when (served time) and the second written.
    pub last_set: Option<f64>,
    pub sets: u64,
}

fn utc(unix: f64) -> String {
    let ts = crate::proto::wire::NtpTimestamp::from_unix_nanos((unix * 1e9) as i128);
    crate::proto::control::events::format_time(ts)[..19].to_string()
}

impl RtcStatus {
    /// One line for the status.
    pub fn describe(&self) -> String {
        let device = self.device.as_deref().unwrap_or("-");
        let problem = self
            .problem
            .as_ref()
            .map_or(String::new(), |p| format!("; failing: {p}"));
        let measured = match (self.offset, self.offset_uncertainty, self.checked) {
            (Some(o), Some(u), Some(at)) => {
                format!("{o:+.3} ± {u:.3} s from served time at {}", utc(at))
            }
            _ => "not compared yet".to_string(),
        };
        let set = match self.last_set {
            Some(at) => format!("last set {} ({} since start)", utc(at), self.sets),
            None => "never set".to_string(),
        };
        match self.state {
            RtcState::Off => "off".to_string(),
            RtcState::Missing => format!(
                "no RTC ({device} {}); rtc_sync does nothing",
                self.problem.as_deref().unwrap_or("missing")
            ),
            RtcState::Waiting => {
                format!("{device}: waiting for synchronization to compare it{problem}")
            }
            RtcState::Strata => format!("{device}: {measured}; {set}, kept by strata{problem}"),
            RtcState::Kernel => format!(
                "{device}: {measured}; written by the kernel's 11-minute mode (the kernel \
                 clock is marked synchronized), not by strata{problem}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_says_who_keeps_the_rtc() {
        assert_eq!(RtcStatus::default().describe(), "off");
        let missing = RtcStatus {
            state: RtcState::Missing,
            device: Some("/dev/rtc0".into()),
            problem: Some("missing".into()),
            ..RtcStatus::default()
        };
        assert_eq!(
            missing.describe(),
            "no RTC (/dev/rtc0 missing); rtc_sync does nothing"
        );
        let kept = RtcStatus {
            state: RtcState::Strata,
            device: Some("/dev/rtc0".into()),
            offset: Some(-0.012),
            offset_uncertainty: Some(0.025),
            checked: Some(1_796_266_740.0),
            last_set: Some(1_796_266_700.0),
            sets: 1,
            ..RtcStatus::default()
        };
        assert_eq!(
            kept.describe(),
            "/dev/rtc0: -0.012 ± 0.025 s from served time at 2026-12-03 02:59:00; last set \
             2026-12-03 02:58:20 (1 since start), kept by strata"
        );
        let kernel = RtcStatus {
            state: RtcState::Kernel,
            ..kept
        };
        assert!(kernel.describe().contains("kernel's 11-minute mode"));
    }
}

//! The RTC upkeep of the control thread (`rtc_sync`): it does what the keeper
//! (`crate::proto::control::rtc`) decides, on the device (`crate::sys::rtc`), once per turn of
//! the loop, and says what it knows for the status. Without an RTC it says so once (a warning)
//! and in the status; that is not an error, as machines without one (most VMs, many boards)
//! are common.

use std::io;
use std::path::Path;

use crate::daemon::observe::rtc_status::{RtcState, RtcStatus};
use crate::proto::control::engine::{Engine, SyncState};
use crate::proto::control::rtc::{RtcKeeper, RtcKeeping, RtcStep};
use crate::proto::wire::NtpTimestamp;
use crate::sys::rtc::{KernelRtc, Rtc};

/// Whether the kernel's 11-minute mode writes the RTC now.
pub type KernelKeeps = Box<dyn FnMut() -> bool + Send>;

pub struct RtcUpkeep {
    device_path: String,
    device: Option<Box<dyn Rtc>>,
    kernel_keeps: KernelKeeps,
    keeper: RtcKeeper,
    /// Why the device is missing, or why the last read or set failed (cleared by a success).
    problem: Option<String>,
}

/// Served time (Unix ns) at kernel time `now`.
fn served_ns(engine: &Engine, now: i64) -> i64 {
    let ts: NtpTimestamp = engine.served_time(now);
    ts.to_unix_nanos(now as i128) as i64
}

impl RtcUpkeep {
    /// Opens `path`; a missing or unopenable device is logged once and shown in the status.
    pub fn open(path: &str, now: i64) -> RtcUpkeep {
        let kernel_keeps: KernelKeeps = Box::new(|| {
            // Unreadable: assume the kernel does not write it (strata then does).
            crate::sys::rtc::kernel_keeps_rtc().unwrap_or(false)
        });
        match KernelRtc::open(Path::new(path)) {
            Ok(rtc) => {
                log::info!("rtc_sync: keeping {path} in step with the served time while synchronized");
                RtcUpkeep::with_device(path, Some(Box::new(rtc)), kernel_keeps, now)
            }
            Err(e) => {
                let problem = if e.kind() == io::ErrorKind::NotFound {
                    "missing".to_string()
                } else {
                    format!("cannot be opened: {e}")
                };
                log::warn!("rtc_sync is on, but there is no RTC to keep ({path} {problem})");
                let mut upkeep = RtcUpkeep::with_device(path, None, kernel_keeps, now);
                upkeep.problem = Some(problem);
                upkeep
            }
        }
    }

    /// An upkeep of `device` (a simulated one in tests; `None`: no RTC).
    pub fn with_device(
        path: &str,
        device: Option<Box<dyn Rtc>>,
        kernel_keeps: KernelKeeps,
        now: i64,
    ) -> RtcUpkeep {
        RtcUpkeep {
            device_path: path.to_string(),
            device,
            kernel_keeps,
            keeper: RtcKeeper::new(now),
            problem: None,
        }
    }

    /// One turn at kernel time `now`: a reading or a set if the keeper asks for one.
    pub fn turn(&mut self, engine: &Engine, now: i64) {
        let Some(device) = self.device.as_mut() else {
            return;
        };
        let synchronized = matches!(engine.sync_state(), SyncState::Synchronized { .. });
        let served = served_ns(engine, now);
        let kernel_keeps = (self.kernel_keeps)();
        match self.keeper.step(now, served, synchronized, kernel_keeps) {
            RtcStep::Nothing => {}
            RtcStep::Read => match device.read() {
                Ok(second) => {
                    self.problem = None;
                    let before = self.keeper.knowledge().checked;
                    self.keeper.reading(now, served, second, kernel_keeps);
                    let k = self.keeper.knowledge();
                    if k.checked != before {
                        if let Some((offset, within)) = k.offset {
                            log::debug!(
                                "{}: {offset:+.3} ± {within:.3} s from served time",
                                self.device_path
                            );
                        }
                    }
                }
                Err(e) => {
                    log::warn!("{}: cannot read the RTC: {e}", self.device_path);
                    self.problem = Some(format!("read: {e}"));
                    // RTC_RD_TIME's EINVAL, or a date the RTC cannot hold: no valid time.
                    let invalid =
                        e.raw_os_error() == Some(libc::EINVAL) || e.kind() == io::ErrorKind::InvalidData;
                    self.keeper.read_failed(now, served, invalid, kernel_keeps);
                }
            },
            RtcStep::Set(second) => {
                let result = device.set(second);
                if let Err(e) = &result {
                    log::warn!("{}: cannot set the RTC: {e}", self.device_path);
                    self.problem = Some(format!("set: {e}"));
                } else {
                    self.problem = None;
                    let off = self.keeper.knowledge().offset.map_or(0.0, |(o, _)| o);
                    log::info!(
                        "{}: set to the served time (it was {off:+.3} s off)",
                        self.device_path
                    );
                }
                self.keeper.written(now, served, second, result.is_ok());
            }
        }
    }

    /// The kernel time by which the next turn should come.
    pub fn next_wakeup(&self, engine: &Engine, now: i64) -> Option<i64> {
        self.device.as_ref()?;
        self.keeper.next_wakeup(now, served_ns(engine, now))
    }

    pub fn status(&self) -> RtcStatus {
        let device = Some(self.device_path.clone());
        if self.device.is_none() {
            return RtcStatus {
                state: RtcState::Missing,
                device,
                problem: self.problem.clone(),
                ..RtcStatus::default()
            };
        }
        let k = self.keeper.knowledge();
        RtcStatus {
            state: match k.keeping {
                RtcKeeping::WaitingForSync => RtcState::Waiting,
                RtcKeeping::Strata => RtcState::Strata,
                RtcKeeping::Kernel => RtcState::Kernel,
            },
            device,
            problem: self.problem.clone(),
            offset: k.offset.map(|(o, _)| o),
            offset_uncertainty: k.offset.map(|(_, u)| u),
            checked: k.checked.map(|ns| ns as f64 * 1e-9),
            last_set: k.last_set.map(|(_, at)| at as f64 * 1e-9),
            sets: k.sets,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_rtc_the_status_says_so() {
        let upkeep = RtcUpkeep::open("/dev/rtc-strata-missing", 0);
        let status = upkeep.status();
        assert_eq!(status.state, RtcState::Missing);
        assert_eq!(
            status.describe(),
            "no RTC (/dev/rtc-strata-missing missing); rtc_sync does nothing"
        );
    }
}

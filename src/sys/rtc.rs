//! The hardware calendar (the RTC, `/dev/rtc0`), read and set through the kernel's RTC
//! character device (include/uapi/linux/rtc.h): `RTC_RD_TIME` and `RTC_SET_TIME` exchange a
//! `struct rtc_time`, a broken-down date with one-second resolution. strata keeps the RTC in UTC
//! (as the kernel's 11-minute mode and chrony's `rtcsync` do).
//!
//! [`Rtc`] is what the upkeep uses; [`KernelRtc`] is the device, and [`SimulatedRtc`] a
//! drifting one-second calendar behind the same interface for the tests.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::proto::control::leapplan::{civil_from_days, days_from_civil};

/// The RTC device the kernel itself keeps in step (its CONFIG_RTC_SYSTOHC_DEVICE default).
pub const RTC_DEVICE: &str = "/dev/rtc0";

/// `struct rtc_time`: the fields of C's `struct tm` (year since 1900, month 0..=11).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RtcTime {
    pub tm_sec: libc::c_int,
    pub tm_min: libc::c_int,
    pub tm_hour: libc::c_int,
    pub tm_mday: libc::c_int,
    pub tm_mon: libc::c_int,
    pub tm_year: libc::c_int,
    pub tm_wday: libc::c_int,
    pub tm_yday: libc::c_int,
    pub tm_isdst: libc::c_int,
}

const fn ioc(dir: u64, kind: u8, nr: u8, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | ((kind as u64) << 8) | nr as u64
}
pub const RTC_RD_TIME: u64 = ioc(2, b'p', 0x09, std::mem::size_of::<RtcTime>());
pub const RTC_SET_TIME: u64 = ioc(1, b'p', 0x0a, std::mem::size_of::<RtcTime>());

impl RtcTime {
    /// The calendar of Unix second `secs` (UTC).
    pub fn from_unix(secs: i64) -> RtcTime {
        let days = secs.div_euclid(86_400);
        let of_day = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        RtcTime {
            tm_sec: (of_day % 60) as i32,
            tm_min: (of_day / 60 % 60) as i32,
            tm_hour: (of_day / 3600) as i32,
            tm_mday: d as i32,
            tm_mon: m as i32 - 1,
            tm_year: (y - 1900) as i32,
            // 1970-01-01 was a Thursday.
            tm_wday: (days + 4).rem_euclid(7) as i32,
            tm_yday: (days - days_from_civil(y, 1, 1)) as i32,
            tm_isdst: 0,
        }
    }

    /// The Unix second (UTC) it names, if it is a date.
    pub fn to_unix(&self) -> Option<i64> {
        let ok = (0..=60).contains(&self.tm_sec)
            && (0..60).contains(&self.tm_min)
            && (0..24).contains(&self.tm_hour)
            && (1..=31).contains(&self.tm_mday)
            && (0..12).contains(&self.tm_mon);
        if !ok {
            return None;
        }
        let days = days_from_civil(
            self.tm_year as i64 + 1900,
            self.tm_mon as u32 + 1,
            self.tm_mday as u32,
        );
        Some(days * 86_400 + self.tm_hour as i64 * 3600 + self.tm_min as i64 * 60 + self.tm_sec as i64)
    }
}

/// A hardware calendar.
pub trait Rtc: Send {
    /// The second it shows now (Unix seconds, UTC).
    fn read(&mut self) -> io::Result<i64>;
    /// Sets it to `secs`: the RTC starts that second as the write lands and counts on from it.
    fn set(&mut self, secs: i64) -> io::Result<()>;
}

/// `/dev/rtcN`.
pub struct KernelRtc {
    file: File,
}

impl KernelRtc {
    /// Opens the device (read-only would do for reading, but setting needs it writable).
    pub fn open(path: &Path) -> io::Result<KernelRtc> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(KernelRtc { file })
    }
}

impl Rtc for KernelRtc {
    fn read(&mut self) -> io::Result<i64> {
        let mut tm = RtcTime::default();
        // SAFETY: `tm` is a live, writable `struct rtc_time` (layout checked by the tests
        // below), which RTC_RD_TIME fills in during the call only.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), RTC_RD_TIME as _, &mut tm as *mut RtcTime) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        tm.to_unix().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the RTC reads no date: {tm:?}"),
            )
        })
    }

    fn set(&mut self, secs: i64) -> io::Result<()> {
        let tm = RtcTime::from_unix(secs);
        // SAFETY: `tm` is a live `struct rtc_time` (layout checked by the tests below), which
        // RTC_SET_TIME reads during the call only.
        let rc = unsafe { libc::ioctl(self.file.as_raw_fd(), RTC_SET_TIME as _, &tm as *const RtcTime) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Whether the kernel's 11-minute mode writes the RTC now: it does while the kernel clock is
/// marked synchronized (STA_UNSYNC clear), if the kernel was built with RTC_SYSTOHC.
pub fn kernel_keeps_rtc() -> io::Result<bool> {
    Ok(crate::sys::adjtimex::read_status()? & libc::STA_UNSYNC == 0)
}

/// A one-second calendar whose oscillator runs `drift_ppm` fast, on a clock the test moves
/// ([`SimulatedRtc::advance_to`], Unix nanoseconds of true time). Setting it starts the second
/// written `transport_ns` after the call, as an RTC on a bus does. Clones share the device.
#[derive(Debug, Clone)]
pub struct SimulatedRtc {
    inner: Arc<Mutex<SimRtc>>,
}

#[derive(Debug)]
struct SimRtc {
    now: i64,
    /// The RTC's own time (ns) at `now`.
    rtc_ns: i64,
    drift_ppm: f64,
    transport_ns: i64,
    sets: Vec<(i64, i64)>,
    /// It holds no valid time (a flat battery) until set: reads fail with EINVAL.
    invalid: bool,
}

impl SimulatedRtc {
    /// An RTC `offset_ns` from true time at `now`.
    pub fn new(now: i64, offset_ns: i64, drift_ppm: f64, transport_ns: i64) -> SimulatedRtc {
        SimulatedRtc {
            inner: Arc::new(Mutex::new(SimRtc {
                now,
                rtc_ns: now + offset_ns,
                drift_ppm,
                transport_ns,
                sets: Vec::new(),
                invalid: false,
            })),
        }
    }

    /// True time moves on to `now`; the RTC with it, at its own rate.
    pub fn advance_to(&self, now: i64) {
        let mut s = self.inner.lock().expect("simulated RTC");
        let dt = now - s.now;
        s.rtc_ns += dt + (dt as f64 * s.drift_ppm * 1e-6).round() as i64;
        s.now = now;
    }

    /// The RTC's time minus true time (ns), at sub-second resolution the device never shows.
    pub fn error_ns(&self) -> i64 {
        let s = self.inner.lock().expect("simulated RTC");
        s.rtc_ns - s.now
    }

    /// It loses its time, as after a flat battery: reads fail (EINVAL) until it is set.
    pub fn invalidate(&self) {
        self.inner.lock().expect("simulated RTC").invalid = true;
    }

    /// Every set so far: (true time of the call, second written).
    pub fn sets(&self) -> Vec<(i64, i64)> {
        self.inner.lock().expect("simulated RTC").sets.clone()
    }
}

impl Rtc for SimulatedRtc {
    fn read(&mut self) -> io::Result<i64> {
        let s = self.inner.lock().expect("simulated RTC");
        if s.invalid {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok(s.rtc_ns.div_euclid(1_000_000_000))
    }

    fn set(&mut self, secs: i64) -> io::Result<()> {
        let mut s = self.inner.lock().expect("simulated RTC");
        let now = s.now;
        s.sets.push((now, secs));
        s.invalid = false;
        // The second `secs` begins as the write lands, `transport_ns` from now.
        s.rtc_ns = secs * 1_000_000_000 - s.transport_ns;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    /// include/uapi/linux/rtc.h on Linux (as a C compiler gives it): nine ints, and the
    /// request numbers _IOR('p', 0x09, struct rtc_time), _IOW('p', 0x0a, struct rtc_time).
    #[test]
    fn layout_and_numbers_match_the_kernel_header() {
        assert_eq!(size_of::<RtcTime>(), 36);
        assert_eq!(offset_of!(RtcTime, tm_year), 20);
        assert_eq!(offset_of!(RtcTime, tm_isdst), 32);
        assert_eq!(RTC_RD_TIME, 0x8024_7009);
        assert_eq!(RTC_SET_TIME, 0x4024_700a);
    }

    #[test]
    fn calendar_conversions_round_trip() {
        // 2026-12-03 05:42:07 UTC, a Thursday, day 336 of the year.
        let t = 1_796_276_527;
        let tm = RtcTime::from_unix(t);
        assert_eq!(
            (tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec),
            (126, 11, 3, 5, 42, 7)
        );
        assert_eq!((tm.tm_wday, tm.tm_yday), (4, 336));
        assert_eq!(tm.to_unix(), Some(t));
        for t in [0, 951_782_400, 4_107_542_399, 1_796_266_740] {
            assert_eq!(RtcTime::from_unix(t).to_unix(), Some(t));
        }
        let bad = RtcTime {
            tm_mon: 12,
            ..RtcTime::from_unix(t)
        };
        assert_eq!(bad.to_unix(), None);
    }

    #[test]
    fn a_missing_device_is_not_found() {
        let e = KernelRtc::open(Path::new("/dev/rtc-strata-missing"))
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn the_simulated_rtc_drifts_in_whole_seconds_and_sets_at_the_landing() {
        let s = 1_000_000_000;
        let t0 = 1_796_266_740 * s;
        let mut rtc = SimulatedRtc::new(t0, 400_000_000, 100.0, 10_000_000);
        assert_eq!(rtc.read().unwrap(), 1_796_266_740);
        rtc.advance_to(t0 + 700_000_000);
        assert_eq!(rtc.read().unwrap(), 1_796_266_741, "1.1 s in");
        rtc.advance_to(t0 + 10_000 * s);
        // 100 ppm over 10 000 s: one more second ahead.
        assert_eq!(rtc.error_ns(), 1_400_000_000);
        rtc.set(1_796_276_740).unwrap();
        assert_eq!(
            rtc.error_ns(),
            -10_000_000,
            "the second starts as the write lands"
        );
        assert_eq!(rtc.sets(), vec![(t0 + 10_000 * s, 1_796_276_740)]);
    }
}

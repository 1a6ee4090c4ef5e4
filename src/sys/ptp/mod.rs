//! The PTP hardware clocks (PHCs) of NICs, /dev/ptpN: what one can do (PTP_CLOCK_GETCAPS) and
//! its cross-timestamps against the system clock, read the way chrony's sys_linux.c does:
//! PTP_SYS_OFFSET_PRECISE where the driver has it (the device's own simultaneous pair), else
//! PTP_SYS_OFFSET_EXTENDED (triples, each PHC read bracketed by two system reads), else
//! PTP_SYS_OFFSET (alternating readings). The first that works is kept for the device's
//! lifetime, as chrony keeps its reading mode. Each call is reduced to one
//! [`CrossStamp`] by the constructors of `crate::proto::clock::phc` (the shortest bracket).
//!
//! [`CrossStampSource`] is what the control thread's [`tracker`] and `strata phc` read; it is the
//! real [`PtpDevice`] or, in tests, the [`sim::SimulatedPhc`], whose readings go through the
//! same ABI structures and the same reductions as the device's.
//!
//! What could be exercised here: the ABI (against the header's figures), the reductions, the
//! errors for a missing device. No machine here has a PHC; the ioctls themselves have not run.

pub mod abi;
pub mod sim;
pub mod tracker;

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::proto::clock::phc::CrossStamp;

use abi::{ClockCaps, ClockTime, SysOffset, SysOffsetExtended, SysOffsetPrecise, MAX_SAMPLES};

/// Readings per PTP_SYS_OFFSET(_EXTENDED) call; the shortest bracket of them is kept.
pub const READINGS: usize = 10;

/// Which ioctl gave a cross-stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Precise,
    Extended,
    Plain,
}

impl Method {
    /// Best first, the order they are tried in.
    pub const ALL: [Method; 3] = [Method::Precise, Method::Extended, Method::Plain];

    pub const fn label(self) -> &'static str {
        match self {
            Method::Precise => "precise",
            Method::Extended => "extended",
            Method::Plain => "plain",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// One cross-timestamp and how it was taken. `stamp.sys_ns` is CLOCK_REALTIME.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub method: Method,
    pub stamp: CrossStamp,
    /// Readings the call took (1 for precise).
    pub samples: usize,
}

/// What a PHC can do, from PTP_CLOCK_GETCAPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    pub max_adj_ppb: i32,
    pub n_ext_ts: i32,
    pub n_per_out: i32,
    pub n_pins: i32,
    pub pps: bool,
    /// PTP_SYS_OFFSET_PRECISE is there.
    pub cross_timestamping: bool,
}

impl From<&ClockCaps> for Capabilities {
    fn from(c: &ClockCaps) -> Self {
        Capabilities {
            max_adj_ppb: c.max_adj,
            n_ext_ts: c.n_ext_ts,
            n_per_out: c.n_per_out,
            n_pins: c.n_pins,
            pps: c.pps != 0,
            cross_timestamping: c.cross_timestamping != 0,
        }
    }
}

/// A source of cross-timestamps: a PHC, real or simulated.
pub trait CrossStampSource: Send {
    /// The device's path, for messages and `strata status`.
    fn path(&self) -> &Path;
    fn capabilities(&self) -> Capabilities;
    /// One cross-stamp by the best method that works.
    fn read(&mut self) -> io::Result<Reading>;
}

/// PTP_SYS_OFFSET_PRECISE's pair.
pub fn reduce_precise(r: &SysOffsetPrecise) -> CrossStamp {
    CrossStamp::precise(r.device.ns(), r.sys_realtime.ns())
}

/// PTP_SYS_OFFSET_EXTENDED's triples (the first `n_samples`), to the shortest bracket.
pub fn reduce_extended(r: &SysOffsetExtended) -> Option<CrossStamp> {
    let n = (r.n_samples as usize).min(MAX_SAMPLES);
    let mut triples = [(0i64, 0i64, 0i64); MAX_SAMPLES];
    for (t, [before, phc, after]) in triples.iter_mut().zip(&r.ts[..n]) {
        *t = (before.ns(), phc.ns(), after.ns());
    }
    CrossStamp::bracketed(&triples[..n])
}

/// PTP_SYS_OFFSET's 2n+1 alternating readings, to the shortest bracket.
pub fn reduce_plain(r: &SysOffset) -> Option<CrossStamp> {
    let n = (r.n_samples as usize).min(MAX_SAMPLES);
    let mut readings = [0i64; 2 * MAX_SAMPLES + 1];
    for (ns, t) in readings.iter_mut().zip(&r.ts[..2 * n + 1]) {
        *ns = t.ns();
    }
    CrossStamp::alternating(&readings[..2 * n + 1])
}

fn no_bracket(method: Method) -> io::Error {
    io::Error::other(format!(
        "{method}: no reading had a bracket of at most {} ns",
        crate::proto::clock::phc::MAX_BRACKET_NS
    ))
}

/// An open /dev/ptpN.
pub struct PtpDevice {
    path: PathBuf,
    file: File,
    caps: Capabilities,
    /// The method that worked first, kept from then on.
    method: Option<Method>,
}

impl PtpDevice {
    /// Opens `path` and reads its capabilities; the error names the path.
    pub fn open(path: &Path) -> io::Result<PtpDevice> {
        let named =
            |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()));
        let file = File::open(path).map_err(|e| named("cannot open", e))?;
        let mut caps = ClockCaps::default();
        // SAFETY: PTP_CLOCK_GETCAPS writes one ptp_clock_caps, which `caps` is.
        let rc = unsafe {
            libc::ioctl(
                file.as_raw_fd(),
                abi::PTP_CLOCK_GETCAPS as _,
                &mut caps as *mut ClockCaps,
            )
        };
        if rc < 0 {
            return Err(named("PTP_CLOCK_GETCAPS on", io::Error::last_os_error()));
        }
        Ok(PtpDevice {
            path: path.to_owned(),
            file,
            caps: Capabilities::from(&caps),
            method: None,
        })
    }

    /// /dev/ptpN of a PHC index.
    pub fn path_of_index(index: u32) -> PathBuf {
        PathBuf::from(format!("/dev/ptp{index}"))
    }

    fn ioctl<T>(&self, request: libc::c_ulong, arg: &mut T) -> io::Result<()> {
        // SAFETY: every caller passes the structure `request` reads and writes (abi.rs holds
        // them to the kernel's sizes, which the request number also encodes).
        if unsafe { libc::ioctl(self.file.as_raw_fd(), request as _, arg as *mut T) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn read_with(&self, method: Method) -> io::Result<CrossStamp> {
        match method {
            Method::Precise => {
                let mut r = SysOffsetPrecise::default();
                self.ioctl(abi::PTP_SYS_OFFSET_PRECISE, &mut r)?;
                Ok(reduce_precise(&r))
            }
            Method::Extended => {
                let mut r = SysOffsetExtended {
                    n_samples: READINGS as u32,
                    rsv: [0; 3],
                    ts: [[ClockTime::default(); 3]; MAX_SAMPLES],
                };
                self.ioctl(abi::PTP_SYS_OFFSET_EXTENDED, &mut r)?;
                reduce_extended(&r).ok_or_else(|| no_bracket(method))
            }
            Method::Plain => {
                let mut r = SysOffset {
                    n_samples: READINGS as u32,
                    rsv: [0; 3],
                    ts: [ClockTime::default(); 2 * MAX_SAMPLES + 1],
                };
                self.ioctl(abi::PTP_SYS_OFFSET, &mut r)?;
                reduce_plain(&r).ok_or_else(|| no_bracket(method))
            }
        }
    }
}

/// Whether an ioctl's error means the driver lacks the method (try the next one) rather than a
/// failed reading.
fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOTTY | libc::ENOSYS)
    )
}

impl CrossStampSource for PtpDevice {
    fn path(&self) -> &Path {
        &self.path
    }

    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn read(&mut self) -> io::Result<Reading> {
        if let Some(method) = self.method {
            let stamp = self.read_with(method)?;
            return Ok(reading(method, stamp));
        }
        let mut last = None;
        for method in Method::ALL {
            if method == Method::Precise && !self.caps.cross_timestamping {
                continue;
            }
            match self.read_with(method) {
                Ok(stamp) => {
                    self.method = Some(method);
                    return Ok(reading(method, stamp));
                }
                Err(e) if unsupported(&e) => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "{}: no cross-timestamp ioctl works (last: {})",
            self.path.display(),
            last.map_or("none tried".into(), |e| e.to_string())
        )))
    }
}

fn reading(method: Method, stamp: CrossStamp) -> Reading {
    Reading {
        method,
        stamp,
        samples: if method == Method::Precise { 1 } else { READINGS },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ns: i64) -> ClockTime {
        ClockTime {
            sec: ns.div_euclid(1_000_000_000),
            nsec: ns.rem_euclid(1_000_000_000) as u32,
            reserved: 0,
        }
    }

    #[test]
    fn extended_keeps_the_shortest_bracket_of_the_samples_asked_for() {
        let mut r = SysOffsetExtended {
            n_samples: 3,
            rsv: [0; 3],
            ts: [[ClockTime::default(); 3]; MAX_SAMPLES],
        };
        let base = 1_800_000_000_000_000_000;
        r.ts[0] = [t(base), t(base + 37_000_000_500), t(base + 1_000)];
        r.ts[1] = [t(base + 2_000), t(base + 37_000_002_200), t(base + 2_400)];
        r.ts[2] = [t(base + 3_000), t(base + 37_000_003_500), t(base + 4_000)];
        // Beyond n_samples: ignored even though its bracket is the shortest.
        r.ts[3] = [t(base + 5_000), t(base), t(base + 5_001)];
        let s = reduce_extended(&r).unwrap();
        assert_eq!(
            (s.phc_ns, s.sys_ns, s.error_ns),
            (base + 37_000_002_200, base + 2_200, 200)
        );
        r.n_samples = 0;
        assert_eq!(reduce_extended(&r), None);
    }

    #[test]
    fn plain_reads_2n_plus_1_alternating() {
        let mut r = SysOffset {
            n_samples: 2,
            rsv: [0; 3],
            ts: [ClockTime::default(); 2 * MAX_SAMPLES + 1],
        };
        let base = 1_800_000_000_000_000_000;
        for (i, ns) in [base, base + 10_500, base + 1_000, base + 11_100, base + 1_200]
            .iter()
            .enumerate()
        {
            r.ts[i] = t(*ns);
        }
        let s = reduce_plain(&r).unwrap();
        assert_eq!(
            (s.phc_ns, s.sys_ns, s.error_ns),
            (base + 11_100, base + 1_100, 100)
        );
    }

    #[test]
    fn precise_is_the_devices_pair() {
        let r = SysOffsetPrecise {
            device: t(5_000_000_123),
            sys_realtime: t(4_000_000_000),
            sys_monoraw: t(1),
            rsv: [0; 4],
        };
        assert_eq!(
            reduce_precise(&r),
            CrossStamp::precise(5_000_000_123, 4_000_000_000)
        );
    }

    #[test]
    fn a_missing_device_is_an_error_naming_it() {
        let path = Path::new("/dev/ptp-strata-test-none");
        let e = PtpDevice::open(path).err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("/dev/ptp-strata-test-none"), "{e}");
    }

    #[test]
    fn a_file_that_is_no_ptp_device_is_refused() {
        // /dev/null opens, but PTP_CLOCK_GETCAPS is not its ioctl.
        let e = PtpDevice::open(Path::new("/dev/null")).err().unwrap();
        assert!(e.to_string().contains("PTP_CLOCK_GETCAPS on /dev/null"), "{e}");
    }
}

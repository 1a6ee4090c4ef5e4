//! Reference clocks as sources: how the configuration names them (`refclock` entries and the
//! `--refclock` flag, written as chrony's `refclock` directive, e.g.
//! `shm:0 refid GPS poll 4 offset 0.1 delay 0.2 precision -20 prefer filter 16`), and what a
//! refclock's samples become before they enter the same filter, selection and combination as
//! network sources: the samples of one poll interval are median-filtered into one sample per
//! poll, as chrony's refclock code does, and a poll without any sample shifts the reach register
//! like an unanswered request.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};

use super::filter::Sample;
use super::pps::{PulseOptions, MAX_RATE};
use super::spec::POLL_RANGE;
use crate::proto::wire::ntp::Leap;

/// Poll interval of a refclock unless `poll` says otherwise (log2 s), as chrony's.
pub const DEFAULT_POLL: i8 = 4;
/// Samples kept for the median of one poll unless `filter` says otherwise (chrony's default).
pub const DEFAULT_FILTER: usize = 64;
/// The largest `filter`: samples kept per poll (a 1 Hz source at poll 10 is 1024).
pub const MAX_FILTER: usize = 1024;
/// A reading's precision unless `precision` says otherwise (log2 s; a microsecond, the
/// resolution of the SHM and SOCK timestamps' microsecond fields).
pub const DEFAULT_PRECISION: i8 = -20;
/// The delay a refclock's samples are given unless `delay` says otherwise (seconds, as chrony's
/// 1e-9).
pub const DEFAULT_DELAY_NS: i64 = 1;
/// The largest `offset` and `delay` accepted (seconds): a configured correction larger than
/// this is a typo, not a cable.
pub const MAX_CORRECTION_S: f64 = 1.0;

/// How the daemon reads the clock.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RefclockDriver {
    /// The ntpshm shared-memory segment of this unit (key 0x4e545030 + unit), which gpsd and
    /// phc2sys write.
    Shm(u8),
    /// chrony's SOCK protocol: a datagram Unix socket strata binds at this path.
    Sock(String),
    /// A kernel PPS device (RFC 2783, `/dev/ppsN`): precise edges, numbered by `lock` or the
    /// served clock (`super::pps`).
    Pps(String),
    /// A PTP hardware clock (/dev/ptpN), kept on time by someone else (ptp4l from a PTP
    /// grandmaster), read by cross-timestamps (`crate::sys::ptp`).
    Phc(String),
}

impl RefclockDriver {
    /// ntpd's type number of the driver (28 SHM; 46 is ntpd's GPSD-JSON, the nearest to SOCK):
    /// the second octet of the source's pseudo-address.
    const fn type_number(&self) -> u8 {
        match self {
            RefclockDriver::Shm(_) => 28,
            RefclockDriver::Sock(_) => 46,
            // ntpd's ATOM (PPS) driver.
            RefclockDriver::Pps(_) => 22,
            // ntpd has no PHC driver: the number after its last one.
            RefclockDriver::Phc(_) => 47,
        }
    }

    /// The refid announced unless `refid` says otherwise (chrony's: the driver and its unit).
    fn default_refid(&self, index: usize) -> [u8; 4] {
        let mut id = *b"SHM\0";
        match self {
            RefclockDriver::Shm(unit) => id[3] = b'0' + unit % 10,
            RefclockDriver::Sock(_) => {
                id = *b"SOC\0";
                id[3] = b'0' + (index % 10) as u8;
            }
            RefclockDriver::Pps(_) => id = *b"PPS\0",
            RefclockDriver::Phc(_) => {
                id = *b"PHC\0";
                id[3] = b'0' + (index % 10) as u8;
            }
        }
        id
    }
}

impl fmt::Display for RefclockDriver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RefclockDriver::Shm(unit) => write!(f, "shm:{unit}"),
            RefclockDriver::Sock(path) => write!(f, "sock:{path}"),
            RefclockDriver::Pps(path) => write!(f, "pps:{path}"),
            RefclockDriver::Phc(path) => write!(f, "phc:{path}"),
        }
    }
}

/// The options of one refclock (chrony's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefclockOptions {
    /// The reference ID announced when it is the system peer (`refid`, up to four ASCII
    /// characters); `None`: the driver's default.
    pub refid: Option<[u8; 4]>,
    /// Poll interval (log2 s): one median-filtered sample per poll.
    pub poll: i8,
    /// Added to every sample's offset (nanoseconds; chrony's `offset`, e.g. a cable's delay).
    pub offset_ns: i64,
    /// The sample's delay (nanoseconds; half of it counts into the root distance).
    pub delay_ns: i64,
    /// The reading's precision (log2 s).
    pub precision: i8,
    pub prefer: bool,
    pub noselect: bool,
    /// Samples kept for the median of one poll.
    pub filter: usize,
    /// The pps driver's `rate`, `lock` and `clear`.
    pub pulse: PulseOptions,
    /// The reference keeps TAI, not UTC (chrony's `tai`, for a PHC): TAI − UTC from the leap
    /// list is taken off its readings.
    pub tai: bool,
}

impl Default for RefclockOptions {
    fn default() -> Self {
        RefclockOptions {
            refid: None,
            poll: DEFAULT_POLL,
            offset_ns: 0,
            delay_ns: DEFAULT_DELAY_NS,
            precision: DEFAULT_PRECISION,
            prefer: false,
            noselect: false,
            filter: DEFAULT_FILTER,
            pulse: PulseOptions::default(),
            tai: false,
        }
    }
}

/// One configured reference clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefclockSpec {
    pub driver: RefclockDriver,
    pub options: RefclockOptions,
}

impl RefclockSpec {
    /// The reference ID it announces; `index` is its place among the refclocks.
    pub fn refid(&self, index: usize) -> [u8; 4] {
        self.options
            .refid
            .unwrap_or_else(|| self.driver.default_refid(index))
    }

    /// The pseudo-address the status and the logs name it by: ntpd's refclock convention,
    /// 127.127.TYPE.UNIT (port 0), with `index` as the unit for socket drivers. No packet is
    /// ever sent to it.
    pub fn pseudo_addr(&self, index: usize) -> SocketAddr {
        let unit = match &self.driver {
            RefclockDriver::Shm(unit) => *unit,
            RefclockDriver::Sock(_) => index.min(255) as u8,
            // /dev/ppsN is unit N.
            RefclockDriver::Pps(path) => path
                .trim_start_matches("/dev/pps")
                .parse()
                .unwrap_or(index.min(255) as u8),
            // /dev/ptpN: unit N.
            RefclockDriver::Phc(path) => path
                .trim_start_matches("/dev/ptp")
                .parse::<u8>()
                .unwrap_or(index.min(255) as u8),
        };
        SocketAddr::from((Ipv4Addr::new(127, 127, self.driver.type_number(), unit), 0))
    }
}

impl fmt::Display for RefclockSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "refclock {}", self.driver)
    }
}

fn parse_driver(word: &str) -> Result<RefclockDriver, String> {
    let (name, arg) = word.split_once(':').ok_or_else(|| {
        format!("{word:?} is not DRIVER:PARAMETER (shm:UNIT, sock:PATH, pps:DEVICE or phc:DEVICE)")
    })?;
    match name.to_ascii_lowercase().as_str() {
        "shm" => arg
            .parse::<u8>()
            .map(RefclockDriver::Shm)
            .map_err(|_| format!("shm:{arg}: the unit must be a number 0..=255")),
        "sock" => {
            if !arg.starts_with('/') {
                return Err(format!("sock:{arg}: the socket path must be absolute"));
            }
            if arg.len() >= 108 {
                return Err(format!("sock:{arg}: a Unix socket path has at most 107 bytes"));
            }
            Ok(RefclockDriver::Sock(arg.to_string()))
        }
        "pps" => {
            if !arg.starts_with('/') {
                return Err(format!("pps:{arg}: the device path must be absolute (/dev/ppsN)"));
            }
            Ok(RefclockDriver::Pps(arg.to_string()))
        }
        "phc" => {
            if !arg.starts_with('/') {
                return Err(format!("phc:{arg}: the device path must be absolute (/dev/ptpN)"));
            }
            Ok(RefclockDriver::Phc(arg.to_string()))
        }
        _ => Err(format!(
            "unknown refclock driver {name:?} (known: shm:UNIT, sock:PATH, pps:DEVICE, phc:DEVICE)"
        )),
    }
}

/// A refid option's value: one to four printable ASCII characters.
fn parse_refid(option: &str, v: &str) -> Result<[u8; 4], String> {
    if v.is_empty() || v.len() > 4 || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "option `{option}`: {v:?} is not one to four printable ASCII characters"
        ));
    }
    let mut id = [0u8; 4];
    id[..v.len()].copy_from_slice(v.as_bytes());
    Ok(id)
}

/// Parses `DRIVER:PARAMETER [refid ID] [poll N] [offset S] [delay S] [precision N] [prefer]
/// [noselect] [filter N]`, and for `pps:` also `[rate N] [lock REFID] [clear]`.
pub fn parse_refclock(text: &str) -> Result<RefclockSpec, String> {
    let mut words = text.split_whitespace();
    let first = words
        .next()
        .ok_or_else(|| "empty refclock: give DRIVER:PARAMETER [OPTION...]".to_string())?;
    let driver = parse_driver(first)?;
    let mut options = RefclockOptions::default();
    while let Some(word) = words.next() {
        let mut value = || -> Result<&str, String> {
            words
                .next()
                .ok_or_else(|| format!("option `{word}` needs a value"))
        };
        let integer = |v: &str, range: std::ops::RangeInclusive<i64>| -> Result<i64, String> {
            let n = v
                .parse::<i64>()
                .map_err(|_| format!("option `{word}`: {v:?} is not a whole number"))?;
            if !range.contains(&n) {
                return Err(format!(
                    "option `{word}`: {n} is out of range {}..={}",
                    range.start(),
                    range.end()
                ));
            }
            Ok(n)
        };
        let seconds = |v: &str, min: f64| -> Result<i64, String> {
            let s = v
                .parse::<f64>()
                .ok()
                .filter(|s| s.is_finite())
                .ok_or_else(|| format!("option `{word}`: {v:?} is not a number of seconds"))?;
            if s < min || s.abs() > MAX_CORRECTION_S {
                return Err(format!(
                    "option `{word}`: {s} s is out of range {min}..={MAX_CORRECTION_S}"
                ));
            }
            Ok((s * 1e9).round() as i64)
        };
        match word {
            "prefer" => options.prefer = true,
            "tai" => options.tai = true,
            "noselect" => options.noselect = true,
            "refid" => options.refid = Some(parse_refid(word, value()?)?),
            "lock" => options.pulse.lock = Some(parse_refid(word, value()?)?),
            "rate" => options.pulse.rate = integer(value()?, 1..=MAX_RATE as i64)? as u32,
            "clear" => options.pulse.clear = true,
            "poll" => {
                let range = *POLL_RANGE.start() as i64..=*POLL_RANGE.end() as i64;
                options.poll = integer(value()?, range)? as i8;
            }
            "precision" => options.precision = integer(value()?, -30..=0)? as i8,
            "filter" => options.filter = integer(value()?, 1..=MAX_FILTER as i64)? as usize,
            "offset" => options.offset_ns = seconds(value()?, -MAX_CORRECTION_S)?,
            "delay" => options.delay_ns = seconds(value()?, 0.0)?,
            other => {
                return Err(format!(
                    "unknown option {other:?} (known: refid ID, poll N, offset S, delay S, \
                     precision N, prefer, noselect, filter N; pps: rate N, lock REFID, clear; \
                     phc: tai)"
                ))
            }
        }
    }
    if options.pulse != PulseOptions::default() && !matches!(driver, RefclockDriver::Pps(_)) {
        return Err(format!(
            "{driver}: the options rate, lock and clear are for the pps driver only"
        ));
    }
    if options.tai && !matches!(driver, RefclockDriver::Phc(_)) {
        return Err(format!("option `tai` is for the phc driver only, not {driver}"));
    }
    Ok(RefclockSpec { driver, options })
}

/// Checks that each `lock` names another configured refclock by its refid.
pub fn check_locks(refclocks: &[RefclockSpec]) -> Result<(), String> {
    for (index, spec) in refclocks.iter().enumerate() {
        let Some(lock) = spec.options.pulse.lock else {
            continue;
        };
        let named = refclocks
            .iter()
            .enumerate()
            .any(|(i, other)| i != index && other.refid(i) == lock);
        if !named {
            let text = String::from_utf8_lossy(&lock).trim_end_matches('\0').to_string();
            return Err(format!(
                "{spec}: lock {text} names no other configured refclock (lock takes the refid \
                 of the refclock that numbers the seconds, e.g. a shm: or sock: GPS)"
            ));
        }
    }
    Ok(())
}

/// One reading of a reference clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RefSample {
    /// Kernel (CLOCK_REALTIME) nanoseconds when the reference was read.
    pub time: i64,
    /// The reference's time minus the kernel clock at `time` (seconds), as the driver read it.
    pub offset: f64,
    /// The leap warning the reference gives.
    pub leap: Leap,
}

/// The samples of one poll interval, median-filtered into one sample at each poll.
#[derive(Debug, Clone)]
pub struct Accumulator {
    options: RefclockOptions,
    /// Oldest first, at most `options.filter`.
    samples: Vec<RefSample>,
    /// Samples refused as out of order since the last poll (the driver's clock went back).
    pub stale: u64,
    /// The newest reading taken, kept across polls (a PPS locked to this refclock numbers its
    /// edges with it).
    latest: Option<RefSample>,
}

/// One median-filtered sample of a poll, and the leap warning the reference gave last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PollSample {
    pub sample: Sample,
    pub leap: Leap,
    /// How many readings it was made of.
    pub readings: usize,
}

impl Accumulator {
    pub fn new(options: RefclockOptions) -> Accumulator {
        Accumulator {
            options,
            samples: Vec::with_capacity(options.filter.min(64)),
            stale: 0,
            latest: None,
        }
    }

    pub fn options(&self) -> &RefclockOptions {
        &self.options
    }

    /// Takes a reading; the oldest goes once `filter` readings are held. A reading not newer
    /// than the last one is the same reading again (or a clock that went back) and is dropped.
    pub fn push(&mut self, reading: RefSample) {
        if !reading.offset.is_finite() {
            self.stale += 1;
            return;
        }
        if self.samples.last().is_some_and(|last| reading.time <= last.time) {
            self.stale += 1;
            return;
        }
        if self.samples.len() == self.options.filter {
            self.samples.remove(0);
        }
        self.samples.push(reading);
        self.latest = Some(reading);
    }

    /// The newest reading taken, with the configured `offset` added.
    pub fn latest(&self) -> Option<RefSample> {
        self.latest.map(|r| RefSample {
            offset: r.offset + self.options.offset_ns as f64 * 1e-9,
            ..r
        })
    }

    /// How many readings wait for the next poll.
    pub fn pending(&self) -> usize {
        self.samples.len()
    }

    /// At a poll: the sample the readings since the last poll make, if any, and a fresh start.
    /// As chrony's median filter: the readings are sorted by offset and the middle ones kept
    /// (the outer ones are outliers); their mean is the sample, at their mean time, and their
    /// spread (standard deviation) is added to its dispersion.
    pub fn take(&mut self) -> Option<PollSample> {
        if self.samples.is_empty() {
            return None;
        }
        let leap = self.samples.last().map_or(Leap::NoWarning, |s| s.leap);
        let readings = self.samples.len();
        let mut sorted = std::mem::take(&mut self.samples);
        sorted.sort_by(|a, b| a.offset.total_cmp(&b.offset));
        // Keep the middle 60 % (at least one): with 16 readings, the 10 around the median.
        let keep = ((readings * 3) / 5).max(1);
        let first = (readings - keep) / 2;
        let kept = &sorted[first..first + keep];
        let n = kept.len() as f64;
        let mean = kept.iter().map(|s| s.offset).sum::<f64>() / n;
        let base = kept[0].time;
        let time = base + (kept.iter().map(|s| (s.time - base) as f64).sum::<f64>() / n) as i64;
        let variance = kept.iter().map(|s| (s.offset - mean).powi(2)).sum::<f64>() / n;
        sorted.clear();
        self.samples = sorted;
        let precision = 2f64.powi(self.options.precision as i32);
        Some(PollSample {
            sample: Sample {
                time,
                offset: mean + self.options.offset_ns as f64 * 1e-9,
                delay: self.options.delay_ns as f64 * 1e-9,
                dispersion: precision + variance.sqrt(),
            },
            leap,
            readings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_and_options_as_chrony_names_them() {
        let r = parse_refclock(
            "shm:0 refid GPS poll 4 offset 0.0 delay 0.2 precision -20 prefer noselect filter 16",
        )
        .unwrap();
        assert_eq!(r.driver, RefclockDriver::Shm(0));
        assert_eq!(r.refid(0), *b"GPS\0");
        let o = r.options;
        assert_eq!(
            (o.poll, o.offset_ns, o.delay_ns, o.precision, o.filter),
            (4, 0, 200_000_000, -20, 16)
        );
        assert!(o.prefer && o.noselect);
        assert_eq!(r.pseudo_addr(0), "127.127.28.0:0".parse().unwrap());

        let r = parse_refclock("SOCK:/run/chrony.ttyS0.sock offset -0.0005").unwrap();
        assert_eq!(r.driver, RefclockDriver::Sock("/run/chrony.ttyS0.sock".into()));
        assert_eq!(r.options.offset_ns, -500_000);
        assert_eq!(r.refid(2), *b"SOC2");
        assert_eq!(parse_refclock("shm:1").unwrap().refid(0), *b"SHM1");
        assert_eq!(
            parse_refclock("shm:1").unwrap().options,
            RefclockOptions::default()
        );
    }

    #[test]
    fn phc_refclocks_parse_with_tai() {
        let r = parse_refclock("phc:/dev/ptp1 tai refid PTP prefer").unwrap();
        assert_eq!(r.driver, RefclockDriver::Phc("/dev/ptp1".into()));
        assert!(r.options.tai && r.options.prefer);
        assert_eq!(r.refid(0), *b"PTP\0");
        assert_eq!(r.pseudo_addr(3), "127.127.47.1:0".parse().unwrap());
        assert_eq!(r.to_string(), "refclock phc:/dev/ptp1");
        let plain = parse_refclock("PHC:/dev/ptp_eth0").unwrap();
        assert!(!plain.options.tai);
        assert_eq!(plain.refid(2), *b"PHC2");
        // Not /dev/ptpN: the unit is its place among the refclocks.
        assert_eq!(plain.pseudo_addr(2), "127.127.47.2:0".parse().unwrap());
        let e = |t| parse_refclock(t).unwrap_err();
        assert!(e("phc:ptp0").contains("absolute"));
        assert!(e("shm:0 tai").contains("phc driver only"));
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = |t| parse_refclock(t).unwrap_err();
        assert!(e("").contains("empty"));
        assert!(e("shm").contains("DRIVER:PARAMETER"));
        assert!(e("shm:x").contains("unit must be a number"));
        assert!(e("shm:256").contains("unit must be a number"));
        assert!(e("sock:relative.sock").contains("absolute"));
        assert!(e("gps:0").contains("unknown refclock driver"));
        assert!(e("pps:pps0").contains("absolute"));
        assert!(e("pps:/dev/pps0 rate 0").contains("out of range"));
        assert!(e("pps:/dev/pps0 lock TOOLONG").contains("one to four"));
        assert!(e("shm:0 lock GPS").contains("pps driver only"));
        assert!(e("sock:/run/x.sock clear").contains("pps driver only"));
        assert!(e("shm:0 refid").contains("needs a value"));
        assert!(e("shm:0 refid TOOLONG").contains("one to four"));
        assert!(e("shm:0 poll 18").contains("out of range"));
        assert!(e("shm:0 poll x").contains("not a whole number"));
        assert!(e("shm:0 filter 0").contains("out of range"));
        assert!(e("shm:0 offset NaN").contains("not a number of seconds"));
        assert!(e("shm:0 offset 5").contains("out of range"));
        assert!(e("shm:0 delay -0.1").contains("out of range"));
        assert!(e("shm:0 precision 3").contains("out of range"));
        assert!(e("shm:0 iburst").contains("unknown option \"iburst\""));
    }

    #[test]
    fn pps_with_its_options_and_the_lock_it_names() {
        let r = parse_refclock("pps:/dev/pps1 lock GPS rate 5 clear offset 0.00002").unwrap();
        assert_eq!(r.driver, RefclockDriver::Pps("/dev/pps1".into()));
        assert_eq!(r.refid(0), *b"PPS\0");
        assert_eq!(r.pseudo_addr(3), "127.127.22.1:0".parse().unwrap());
        assert_eq!(
            r.options.pulse,
            PulseOptions {
                rate: 5,
                lock: Some(*b"GPS\0"),
                clear: true
            }
        );
        assert_eq!(r.options.offset_ns, 20_000);
        assert_eq!(r.to_string(), "refclock pps:/dev/pps1");
        let gps = parse_refclock("shm:0 refid GPS").unwrap();
        assert_eq!(check_locks(&[gps.clone(), r.clone()]), Ok(()));
        let e = check_locks(std::slice::from_ref(&r)).unwrap_err();
        assert!(e.contains("lock GPS names no other configured refclock"), "{e}");
        // A PPS cannot lock to itself.
        let own = parse_refclock("pps:/dev/pps0 refid GPS lock GPS").unwrap();
        assert!(check_locks(&[own]).is_err());
        assert_eq!(check_locks(&[gps]), Ok(()));
    }

    fn reading(time: i64, offset: f64) -> RefSample {
        RefSample {
            time,
            offset,
            leap: Leap::NoWarning,
        }
    }

    #[test]
    fn a_poll_makes_one_sample_from_the_middle_readings() {
        let options = RefclockOptions {
            offset_ns: 1_000,
            filter: 16,
            ..RefclockOptions::default()
        };
        let mut acc = Accumulator::new(options);
        assert_eq!(acc.take(), None, "no reading: no sample");
        // Ten readings 1 s apart around 2 ms, one outlier each way.
        for i in 0..10 {
            let offset = match i {
                3 => 0.5,
                7 => -0.5,
                _ => 0.002 + (i % 2) as f64 * 1e-6,
            };
            acc.push(reading(i * 1_000_000_000, offset));
        }
        // The same reading again is not a second one.
        acc.push(reading(9_000_000_000, 0.002));
        assert_eq!(acc.stale, 1);
        let p = acc.take().unwrap();
        assert_eq!(p.readings, 10);
        assert!(
            (p.sample.offset - 0.002_001_5).abs() < 1e-6,
            "{}",
            p.sample.offset
        );
        assert!(
            p.sample.dispersion < 1e-5,
            "outliers left out: {}",
            p.sample.dispersion
        );
        assert_eq!(p.sample.delay, 1e-9);
        assert_eq!(acc.pending(), 0);
        assert_eq!(acc.take(), None, "each reading counts for one poll only");
    }

    #[test]
    fn the_filter_keeps_the_newest_readings() {
        let options = RefclockOptions {
            filter: 3,
            ..RefclockOptions::default()
        };
        let mut acc = Accumulator::new(options);
        for i in 0..6 {
            acc.push(reading(i, i as f64));
        }
        assert_eq!(acc.pending(), 3);
        let p = acc.take().unwrap();
        assert_eq!(p.sample.offset, 4.0, "the median of 3, 4, 5");
    }
}

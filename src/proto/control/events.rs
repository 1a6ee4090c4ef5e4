//! What the control core reports: significant events (one log line each) and the per-sample
//! records of the measurements and statistics logs.

use std::fmt;
use std::net::SocketAddr;

use super::guard::Refusal;
use super::leapplan::{civil_from_days, LeapSource, DAY};
use super::source::Unfit;
use crate::proto::wire::ntp::Leap;
use crate::proto::wire::NtpTimestamp;

/// What was done about a Kiss-o'-Death.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KissAction {
    /// RATE: the poll interval was raised to this (log2 s).
    SlowedDown { poll: i8 },
    /// DENY or RSTR: the source is no longer polled.
    Dropped,
    /// A code RFC 5905 leaves to the client: ignored.
    Ignored,
}

/// One measurement, as chrony's measurements.log has it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeasurementRecord {
    /// Our (served) time when the reply arrived.
    pub time: NtpTimestamp,
    pub addr: SocketAddr,
    pub leap: Leap,
    pub stratum: u8,
    pub reach: u8,
    pub poll: i8,
    /// The source's time minus our served time (seconds).
    pub offset: f64,
    pub delay: f64,
    pub dispersion: f64,
    pub root_delay: f64,
    pub root_dispersion: f64,
    pub reference_id: [u8; 4],
    /// Whether the clock filter handed a sample on to the regression.
    pub used: bool,
}

/// The source's fitted line after a filter output, as chrony's statistics.log has it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatisticsRecord {
    pub time: NtpTimestamp,
    pub addr: SocketAddr,
    /// Residual standard deviation (seconds).
    pub std_dev: f64,
    /// The source's time minus our served time, estimated now (seconds), and its standard error.
    pub offset: f64,
    pub offset_sd: f64,
    /// The kernel clock's frequency error as this source sees it (ppm) and its standard error.
    pub frequency_ppm: f64,
    pub frequency_sd_ppm: f64,
    pub points: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A source answered for the first time, or again after being unreachable.
    Reachable {
        addr: SocketAddr,
    },
    /// Eight polls without a valid reply.
    Unreachable {
        addr: SocketAddr,
    },
    Kiss {
        addr: SocketAddr,
        code: [u8; 4],
        action: KissAction,
    },
    /// A reachable source cannot be used (reported when the reason changes).
    Unusable {
        addr: SocketAddr,
        why: Unfit,
    },
    /// A source fell outside the intersection of the others.
    Falseticker {
        addr: SocketAddr,
    },
    /// A new system peer.
    Selected {
        addr: SocketAddr,
        stratum: u8,
    },
    /// The clock model jumped (before the first synchronization, or by an operator's override).
    Step {
        seconds: f64,
    },
    /// The sources asked for a correction beyond the step and panic limits; it was not applied.
    /// Reported once until a correction is accepted again.
    CorrectionRefused {
        refusal: Refusal,
    },
    /// The sources asked for a correction (seconds) that puts the served time outside the time
    /// constraints, which say the correction is within `low..high`; it was not applied.
    /// Reported once until a correction is accepted again.
    ConstraintRefused {
        seconds: f64,
        low: f64,
        high: f64,
    },
    /// A correction was accepted past the limits by the operator's one-time override.
    Overridden {
        seconds: f64,
    },
    /// Synchronized: serving at this stratum, reference ID from this source.
    Synchronized {
        addr: SocketAddr,
        stratum: u8,
    },
    /// No usable source: serving on the last frequency until the root distance says no more.
    Holdover {
        reason: String,
    },
    /// The root distance reached the maximum (or there never was a source).
    Unsynchronized {
        reason: String,
    },
    /// No usable source: serving the local clock at this stratum.
    Local {
        stratum: u8,
    },
    /// A leap second is scheduled (midnight: Unix seconds of the midnight ending its day).
    LeapScheduled {
        midnight: i64,
        delta: i8,
        source: LeapSource,
    },
    /// The scheduled leap second was called off before it was close.
    LeapCancelled,
    /// A leap second is done and folded into the served time.
    LeapDone {
        delta: i8,
    },
    Measurement(MeasurementRecord),
    Statistics(StatisticsRecord),
}

impl Event {
    /// Whether this is a per-sample record (for the log directory) rather than an event.
    pub fn is_record(&self) -> bool {
        matches!(self, Event::Measurement(_) | Event::Statistics(_))
    }
}

fn code_text(code: [u8; 4]) -> String {
    code.iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect()
}

fn leap_char(leap: Leap) -> char {
    match leap {
        Leap::NoWarning => 'N',
        Leap::AddSecond => '+',
        Leap::DeleteSecond => '-',
        Leap::Unsynchronized => '?',
    }
}

/// The NTP era of a timestamp is taken as the one that puts it within 68 years of this instant
/// (2036-02-07, where era 1 begins): 1968 to 2104, without reading a clock.
const ERA_PIVOT_UNIX_NS: i128 = 2_085_978_496 * 1_000_000_000;

/// `2024-01-02 03:04:05.123456` from an NTP timestamp (UTC, proleptic Gregorian).
pub fn format_time(ts: NtpTimestamp) -> String {
    let unix_ns = ts.to_unix_nanos(ERA_PIVOT_UNIX_NS);
    let secs = unix_ns.div_euclid(1_000_000_000) as i64;
    let micros = unix_ns.rem_euclid(1_000_000_000) / 1000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{micros:06}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl fmt::Display for MeasurementRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:<39} {} {:2} {:08b} {:3} {:+.6e} {:.6e} {:.6e} {:.6e} {:.6e} {:02X}{:02X}{:02X}{:02X} {}",
            format_time(self.time),
            self.addr.ip(),
            leap_char(self.leap),
            self.stratum,
            self.reach,
            self.poll,
            self.offset,
            self.delay,
            self.dispersion,
            self.root_delay,
            self.root_dispersion,
            self.reference_id[0],
            self.reference_id[1],
            self.reference_id[2],
            self.reference_id[3],
            if self.used { 'Y' } else { 'N' }
        )
    }
}

impl MeasurementRecord {
    pub const HEADER: &'static str = "Date (UTC) Time            IP Address                              L St Reach    Poll Offset        Delay        Dispersion   Root delay   Root disp.   Refid    Used";
}

impl fmt::Display for StatisticsRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:<39} {:.3e} {:+.3e} {:.3e} {:+.3e} {:.3e} {:3}",
            format_time(self.time),
            self.addr.ip(),
            self.std_dev,
            self.offset,
            self.offset_sd,
            self.frequency_ppm,
            self.frequency_sd_ppm,
            self.points
        )
    }
}

impl StatisticsRecord {
    pub const HEADER: &'static str = "Date (UTC) Time            IP Address                              Std dev'n  Est offset  Offset sd  Freq (ppm)  Freq sd    Np";
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Reachable { addr } => write!(f, "source {addr} is reachable"),
            Event::Unreachable { addr } => {
                write!(f, "source {addr} is unreachable (no reply to the last 8 polls)")
            }
            Event::Kiss { addr, code, action } => match action {
                KissAction::SlowedDown { poll } => write!(
                    f,
                    "source {addr} sent Kiss-o'-Death {}: polling it every {} s",
                    code_text(*code),
                    1u64 << (*poll).clamp(0, 17)
                ),
                KissAction::Dropped => write!(
                    f,
                    "source {addr} sent Kiss-o'-Death {}: it refuses us, no longer using it",
                    code_text(*code)
                ),
                KissAction::Ignored => {
                    write!(
                        f,
                        "source {addr} sent Kiss-o'-Death {} (ignored)",
                        code_text(*code)
                    )
                }
            },
            Event::Unusable { addr, why } => write!(f, "source {addr} is not usable: {}", why.label()),
            Event::Falseticker { addr } => {
                write!(
                    f,
                    "source {addr} is a falseticker: it disagrees with the majority"
                )
            }
            Event::Selected { addr, stratum } => write!(f, "selected source {addr} (stratum {stratum})"),
            Event::Step { seconds } => write!(f, "clock stepped by {seconds:+.6} s"),
            Event::LeapScheduled {
                midnight,
                delta,
                source,
            } => {
                let (y, m, d) = civil_from_days(midnight.div_euclid(DAY) - 1);
                write!(
                    f,
                    "leap second scheduled: {} at the end of {y:04}-{m:02}-{d:02} UTC (source: {})",
                    if *delta > 0 { "inserted" } else { "deleted" },
                    source.label()
                )
            }
            Event::LeapCancelled => f.write_str("the scheduled leap second is cancelled"),
            Event::LeapDone { delta } => write!(
                f,
                "leap second {}: TAI-UTC is now {} by one second",
                if *delta > 0 { "inserted" } else { "deleted" },
                if *delta > 0 { "larger" } else { "smaller" }
            ),
            Event::CorrectionRefused { refusal } => f.write_str(&refusal.describe()),
            Event::ConstraintRefused { seconds, low, high } => write!(
                f,
                "the correction of {seconds:+.3} s the sources ask for is outside the time \
                 constraints (which allow {low:+.3} s to {high:+.3} s): refused"
            ),
            Event::Overridden { seconds } => write!(
                f,
                "correction of {seconds:+.6} s accepted past the limits by --allow-step (once)"
            ),
            Event::Synchronized { addr, stratum } => {
                write!(f, "synchronized to {} stratum {stratum}", addr.ip())
            }
            Event::Holdover { reason } => write!(f, "holdover: {reason}"),
            Event::Unsynchronized { reason } => write!(f, "unsynchronized: {reason}"),
            Event::Local { stratum } => write!(
                f,
                "serving the local clock at stratum {stratum} (no usable source)"
            ),
            Event::Measurement(m) => write!(f, "measurement: {m}"),
            Event::Statistics(s) => write!(f, "statistics: {s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_utc() {
        let ts = NtpTimestamp::from_unix_nanos(1_700_000_000_123_456_789);
        assert_eq!(format_time(ts), "2023-11-14 22:13:20.123456");
        let ts = NtpTimestamp::from_unix_nanos(951_782_400_000_000_000); // leap day 2000
        assert_eq!(format_time(ts), "2000-02-29 00:00:00.000000");
    }

    #[test]
    fn events_read_as_sentences() {
        let addr: SocketAddr = "198.18.0.1:123".parse().unwrap();
        assert_eq!(
            Event::Synchronized { addr, stratum: 2 }.to_string(),
            "synchronized to 198.18.0.1 stratum 2"
        );
        let kiss = Event::Kiss {
            addr,
            code: *b"RATE",
            action: KissAction::SlowedDown { poll: 7 },
        };
        assert_eq!(
            kiss.to_string(),
            "source 198.18.0.1:123 sent Kiss-o'-Death RATE: polling it every 128 s"
        );
        assert!(!kiss.is_record());
    }
}

//! The log: one line per event on stderr, in text or JSON (`log_format`), with the level and
//! format changeable while running (SIGHUP, [`crate::daemon::reload`]).
//!
//! - text: `[TIME LEVEL target] message key=value ...`; under journald (stderr is the stream
//!   named by $JOURNAL_STREAM) the line is `<P>message key=value ...` instead, P being the syslog
//!   priority that journald files the line under (sd-daemon(3)), and journald adds the time.
//! - json: `{"time":...,"level":...,"target":...,"message":...,"KEY":VALUE...}`, the event's
//!   fields (the `key = value;` part of a `log` macro) as top-level members.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{kv, Level, LevelFilter, Log, Metadata, Record};

use crate::daemon::config::LogFormat;
use crate::daemon::reload::LogControl;

struct Logger {
    /// RUST_LOG's per-module filter, when it was used instead of `log_level`.
    filter: Option<env_filter::Filter>,
    format: AtomicU8,
    journald: bool,
}

static LOGGER: OnceLock<Logger> = OnceLock::new();

const TEXT: u8 = 0;
const JSON: u8 = 1;

fn format_code(format: LogFormat) -> u8 {
    match format {
        LogFormat::Text => TEXT,
        LogFormat::Json => JSON,
    }
}

/// Installs the logger: `level` if given, else RUST_LOG (a level or env_logger's per-module
/// syntax), else info.
pub fn init(level: Option<LevelFilter>, format: LogFormat) -> Handle {
    let (filter, max) = match level {
        Some(level) => (None, level),
        None => match std::env::var("RUST_LOG") {
            Ok(spec) if !spec.is_empty() => {
                let filter = env_filter::Builder::new().parse(&spec).build();
                let max = filter.filter();
                (Some(filter), max)
            }
            _ => (None, LevelFilter::Info),
        },
    };
    let logger = LOGGER.get_or_init(|| Logger {
        filter,
        format: AtomicU8::new(format_code(format)),
        journald: stderr_is_journal(),
    });
    if log::set_logger(logger).is_ok() {
        log::set_max_level(max);
    }
    Handle
}

/// Changes the installed logger.
pub struct Handle;

impl LogControl for Handle {
    fn set_level(&self, level: LevelFilter) {
        log::set_max_level(level);
    }

    fn set_format(&self, format: LogFormat) {
        if let Some(l) = LOGGER.get() {
            l.format.store(format_code(format), Ordering::Relaxed);
        }
    }
}

/// Whether stderr is the journal stream systemd connected (`$JOURNAL_STREAM` is "DEV:INODE").
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    stream == format!("{}:{}", meta.dev(), meta.ino())
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level() && self.filter.as_ref().is_none_or(|f| f.enabled(metadata))
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let line = match self.format.load(Ordering::Relaxed) {
            JSON => json_line(record, SystemTime::now()),
            _ if self.journald => journal_line(record),
            _ => text_line(record, SystemTime::now()),
        };
        // A closed stderr is no reason to stop serving.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {}
}

/// The syslog priority journald files a level under.
fn priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// ` key=value` for each field (values with spaces quoted).
fn text_fields(record: &Record) -> String {
    struct Collect(String);
    impl<'kvs> kv::VisitSource<'kvs> for Collect {
        fn visit_pair(&mut self, key: kv::Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
            let v = value.to_string();
            if v.is_empty() || v.contains(char::is_whitespace) || v.contains('"') {
                let _ = write!(self.0, " {key}={v:?}");
            } else {
                let _ = write!(self.0, " {key}={v}");
            }
            Ok(())
        }
    }
    let mut c = Collect(String::new());
    let _ = record.key_values().visit(&mut c);
    c.0
}

fn text_line(record: &Record, now: SystemTime) -> String {
    format!(
        "[{} {:<5} {}] {}{}\n",
        rfc3339(now, false),
        record.level(),
        record.target(),
        record.args(),
        text_fields(record)
    )
}

fn journal_line(record: &Record) -> String {
    let message = format!("{}{}", record.args(), text_fields(record));
    // Each line of a message would be an entry of its own: keep the event on one.
    format!("<{}>{}\n", priority(record.level()), message.replace('\n', " "))
}

fn json_line(record: &Record, now: SystemTime) -> String {
    struct Collect(serde_json::Map<String, serde_json::Value>);
    impl<'kvs> kv::VisitSource<'kvs> for Collect {
        fn visit_pair(&mut self, key: kv::Key<'kvs>, value: kv::Value<'kvs>) -> Result<(), kv::Error> {
            let v = if let Some(b) = value.to_bool() {
                serde_json::Value::Bool(b)
            } else if let Some(n) = value.to_u64() {
                n.into()
            } else if let Some(n) = value.to_i64() {
                n.into()
            } else if let Some(n) = value.to_f64().and_then(serde_json::Number::from_f64) {
                serde_json::Value::Number(n)
            } else {
                serde_json::Value::String(value.to_string())
            };
            self.0.insert(key.to_string(), v);
            Ok(())
        }
    }
    let mut object = serde_json::Map::new();
    object.insert("time".into(), rfc3339(now, true).into());
    object.insert("level".into(), record.level().as_str().to_lowercase().into());
    object.insert("target".into(), record.target().into());
    object.insert("message".into(), record.args().to_string().into());
    let mut fields = Collect(object);
    let _ = record.key_values().visit(&mut fields);
    let mut line = serde_json::Value::Object(fields.0).to_string();
    line.push('\n');
    line
}

/// UTC as `2026-12-02T23:59:59Z`, or with microseconds.
fn rfc3339(t: SystemTime, micros: bool) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if micros {
        format!(
            "{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:06}Z",
            d.subsec_micros()
        )
    } else {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(secs * 1_000_000 + 250)
    }

    #[test]
    fn times_are_utc() {
        assert_eq!(rfc3339(at(0), false), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(at(951_782_400), false), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(at(1_796_255_999), true), "2026-12-02T23:59:59.000250Z");
    }

    #[test]
    fn a_record_in_each_format() {
        let fields: [(&str, kv::Value); 4] = [
            ("event", kv::Value::from("sync_state")),
            ("stratum", kv::Value::from(2u8)),
            ("offset", kv::Value::from(-0.25f64)),
            ("reference", kv::Value::from("two words")),
        ];
        let args = format_args!("synchronized");
        let record = Record::builder()
            .level(Level::Info)
            .target("strata::daemon::control")
            .args(args)
            .key_values(&fields)
            .build();
        assert_eq!(
            text_line(&record, at(0)),
            "[1970-01-01T00:00:00Z INFO  strata::daemon::control] synchronized event=sync_state \
             stratum=2 offset=-0.25 reference=\"two words\"\n"
        );
        assert_eq!(
            journal_line(&record),
            "<6>synchronized event=sync_state stratum=2 offset=-0.25 reference=\"two words\"\n"
        );
        let json: serde_json::Value = serde_json::from_str(&json_line(&record, at(0))).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "time": "1970-01-01T00:00:00.000250Z",
                "level": "info",
                "target": "strata::daemon::control",
                "message": "synchronized",
                "event": "sync_state",
                "stratum": 2,
                "offset": -0.25,
                "reference": "two words",
            })
        );
    }
}

//! The server configuration: a TOML file (`--config FILE`) with the same settings as the command
//! line flags, the flags overriding the file key by key. Everything is checked here, up front,
//! into a [`ServerConfig`]; nothing starts until the whole configuration is valid, and every error
//! names the key (with the file and line) or the flag it came from and says what is wrong.
//!
//! ```toml
//! listen = ["0.0.0.0:123", "[::]:123"]   # ADDR:PORT, IPv6 as [ADDR]:PORT
//! cores = "0-3"                          # or [0, 1, 2, 3]; default: every CPU we may run on
//! local_stratum = 1                      # serve the local clock at this stratum (1..=15)
//! mode = "auto"                          # auto | socket | xdp (auto: xdp when iface is set)
//! iface = ["eth0"]                       # XDP path: serve every queue of these interfaces
//! ntp_port = 123                         # the UDP port requests go to (XDP path, fallback)
//! busy_poll = false                      # XDP path: busy-poll the AF_XDP sockets
//! unsynchronized = "answer"              # answer | drop, while not synchronized
//! batch_size = 64                        # datagrams per receive call (1..=1024)
//! log_level = "info"                     # off | error | warn | info | debug | trace
//! metrics = "127.0.0.1:9123"             # Prometheus /metrics endpoint, or "off"
//! control = "/run/strata/control.sock"   # `strata status` socket, or "off"
//! server = ["time1.example.net iburst"]  # upstream servers: HOST[:PORT] [iburst] [prefer]
//!                                        #   [noselect] [minpoll N] [maxpoll N]
//! pool = ["pool.example.org iburst maxsources 4"]  # names of several servers
//! peer = ["198.18.0.3"]                  # symmetric peers (mode 1), same options
//! max_distance = 1.5                     # seconds; largest root distance served as good
//! minsources = 2                         # agreeing sources needed to synchronize
//! max_startup_step_forward = 1000        # seconds; largest first step forward
//! max_startup_step_backward = 1000       # seconds; largest first step backward
//! max_correction = 1                     # seconds; largest later correction (at least)
//! discipline_system = false              # also discipline the system clock (adjtimex)
//! log_dir = "/var/log/strata"            # measurements.log and statistics.log per sample
//! ```
//!
//! A flag replaces the file's value for its key; a value it replaces is not checked. Syntax
//! errors and unknown keys in the file are always errors.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use log::LevelFilter;
use serde::Deserialize;
use toml::{Spanned, Value};

use crate::state::UnsyncPolicy;

/// The addresses served when neither the file nor the flags name any.
pub const DEFAULT_LISTEN: [&str; 2] = ["0.0.0.0:123", "[::]:123"];
pub const DEFAULT_BATCH_SIZE: usize = 64;
pub const MAX_BATCH_SIZE: usize = 1024;
/// Where `GET /metrics` is served unless configured otherwise (loopback only: the endpoint
/// has no authentication).
pub const DEFAULT_METRICS: &str = "127.0.0.1:9123";
/// Where the control socket of `strata status` is unless configured otherwise.
pub const DEFAULT_CONTROL: &str = "/run/strata/control.sock";
/// The longest path a Unix socket address holds (sun_path is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// An observability endpoint (`metrics`, `control`): off, the default, or given explicitly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint<T> {
    /// Turned off with `off`.
    Off,
    /// Not configured: failing to open it (another server holds it) is only a warning.
    Default(T),
    /// Configured: failing to open it is an error.
    Given(T),
}

impl<T> Endpoint<T> {
    /// Where it is, unless it is off.
    pub fn get(&self) -> Option<&T> {
        match self {
            Endpoint::Off => None,
            Endpoint::Default(t) | Endpoint::Given(t) => Some(t),
        }
    }
}

/// Parses the `metrics` setting: `ADDR:PORT` or `off`.
pub fn parse_metrics(s: &str) -> Result<Option<SocketAddr>, String> {
    if s.trim() == "off" {
        return Ok(None);
    }
    parse_listen_addr(s).map(Some)
}

/// Parses the `control` setting: a socket path or `off`.
pub fn parse_control(s: &str) -> Result<Option<PathBuf>, String> {
    if s.trim() == "off" {
        return Ok(None);
    }
    if s.is_empty() || s.contains('\0') {
        return Err(format!("{s:?} is not a socket path"));
    }
    if s.len() > MAX_SOCKET_PATH {
        return Err(format!(
            "{s:?} is longer than a Unix socket path can be ({MAX_SOCKET_PATH} bytes)"
        ));
    }
    Ok(Some(PathBuf::from(s)))
}

/// The strata a local reference may take (16 means unsynchronized).
pub const LOCAL_STRATUM_RANGE: std::ops::RangeInclusive<i64> = 1..=15;

/// The I/O path asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// XDP when an interface is given (falling back to sockets on its addresses when XDP
    /// cannot start), else sockets.
    Auto,
    Socket,
    /// AF_XDP on the interfaces given; needs at least one.
    Xdp,
}

impl Mode {
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Socket => "socket",
            Mode::Xdp => "xdp",
        }
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "auto" => Ok(Mode::Auto),
            "socket" => Ok(Mode::Socket),
            "xdp" => Ok(Mode::Xdp),
            _ => Err(format!("{s:?} is not one of auto, socket, xdp")),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The I/O path that will actually serve, resolved from [`Mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataPath {
    /// recvmmsg/sendmmsg on SO_REUSEPORT sockets (`crate::socket`).
    Socket,
    /// AF_XDP sockets fed by the XDP program (`crate::fastpath`).
    Xdp,
}

/// Parses `answer` or `drop`.
pub fn parse_unsync_policy(s: &str) -> Result<UnsyncPolicy, String> {
    match s {
        "answer" => Ok(UnsyncPolicy::Answer),
        "drop" => Ok(UnsyncPolicy::Drop),
        _ => Err(format!("{s:?} is not one of answer, drop")),
    }
}

/// The name of an [`UnsyncPolicy`] as the configuration spells it.
pub const fn unsync_policy_name(policy: UnsyncPolicy) -> &'static str {
    match policy {
        UnsyncPolicy::Answer => "answer",
        UnsyncPolicy::Drop => "drop",
    }
}

fn parse_log_level(s: &str) -> Result<LevelFilter, String> {
    match s {
        "off" | "error" | "warn" | "info" | "debug" | "trace" => {
            LevelFilter::from_str(s).map_err(|e| e.to_string())
        }
        _ => Err(format!(
            "{s:?} is not one of off, error, warn, info, debug, trace"
        )),
    }
}

/// The validated configuration. Every field holds a value that was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Addresses to serve on (no duplicates; port 0: any free port).
    pub listen: Vec<SocketAddr>,
    /// CPUs to run one responder on each (no duplicates, all usable by this process).
    pub cores: Vec<usize>,
    /// Serve the local clock at this stratum (until upstream discipline exists).
    pub local_stratum: Option<u8>,
    /// The mode as asked for.
    pub mode: Mode,
    /// The path that serves, resolved from `mode`.
    pub path: DataPath,
    pub unsynchronized: UnsyncPolicy,
    /// Datagrams per receive call, 1..=[`MAX_BATCH_SIZE`].
    pub batch_size: usize,
    /// None: not given (the caller falls back to `RUST_LOG`, then `info`).
    pub log_level: Option<LevelFilter>,
    /// Interfaces for the XDP path (no duplicates).
    pub interfaces: Vec<String>,
    /// UDP port of requests on the XDP path and its socket fallback.
    pub ntp_port: u16,
    /// Replace an XDP program on the interface that is not strata's.
    pub force: bool,
    /// Busy-poll the AF_XDP sockets.
    pub busy_poll: bool,
    /// The Prometheus endpoint.
    pub metrics: Endpoint<SocketAddr>,
    /// The control socket of `strata status`.
    pub control: Endpoint<PathBuf>,
    /// Upstream sources and how to discipline against them.
    pub upstream: crate::control::UpstreamConfig,
}

/// Settings given as command-line flags. Each one that is set replaces the file's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--listen`, repeatable; empty when not given.
    pub listen: Vec<String>,
    pub cores: Option<String>,
    pub local_stratum: Option<i64>,
    pub mode: Option<Mode>,
    pub unsynchronized: Option<UnsyncPolicy>,
    pub batch_size: Option<i64>,
    pub log_level: Option<LevelFilter>,
    /// `--iface`, repeatable; empty when not given.
    pub iface: Vec<String>,
    pub ntp_port: Option<i64>,
    /// `--force` (flag only: replacing someone else's program is a decision for the moment).
    pub force: bool,
    /// `--busy-poll`; false means "not given" (the file may still turn it on).
    pub busy_poll: bool,
    /// `--metrics ADDR:PORT|off`.
    pub metrics: Option<String>,
    /// `--control PATH|off`.
    pub control: Option<String>,
    /// `--upstream HOST[:PORT] [OPTION...]`, repeatable: replaces the file's `server` entries.
    pub upstream: Vec<String>,
    /// `--peer HOST[:PORT] [OPTION...]`, repeatable: replaces the file's `peer` entries.
    pub peer: Vec<String>,
    /// `--max-distance SECONDS`, as given.
    pub max_distance: Option<String>,
    pub minsources: Option<i64>,
    /// `--max-startup-step-forward`, `--max-startup-step-backward`, `--max-correction` SECONDS,
    /// as given.
    pub max_startup_step_forward: Option<String>,
    pub max_startup_step_backward: Option<String>,
    pub max_correction: Option<String>,
    /// `--allow-step` (flag only: a one-time override is a decision for the moment).
    pub allow_step: bool,
    /// `--discipline-system` (a flag can only turn it on).
    pub discipline_system: bool,
    pub log_dir: Option<PathBuf>,
}

/// A configuration that cannot be used; the message says where and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    message: String,
}

impl ConfigError {
    fn new(message: String) -> Self {
        ConfigError { message }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

/// The CPUs of this machine, as far as validation needs to know them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// CPUs this process may run on (its affinity mask), ascending.
    pub allowed: Vec<usize>,
    /// CPUs the machine has, online or not (`_SC_NPROCESSORS_CONF`).
    pub configured: usize,
}

impl Machine {
    /// Reads this process's affinity mask and the machine's CPU count.
    pub fn current() -> Result<Machine, ConfigError> {
        // SAFETY: an all-zero cpu_set_t is the empty set, a valid value.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, writable cpu_set_t of the size passed; pid 0 is this thread.
        let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
        if rc != 0 {
            return Err(ConfigError::new(format!(
                "cannot read this process's CPU affinity: {}",
                std::io::Error::last_os_error()
            )));
        }
        let max = libc::CPU_SETSIZE as usize;
        // SAFETY: CPU_ISSET only reads `set`, and every index is below CPU_SETSIZE.
        let allowed: Vec<usize> = (0..max)
            .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
            .collect();
        // SAFETY: sysconf has no memory-safety preconditions.
        let configured = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
        let configured = if configured > 0 {
            configured as usize
        } else {
            allowed.last().map_or(0, |c| c + 1)
        };
        Ok(Machine { allowed, configured })
    }
}

/// The file, key by key, as TOML values with their positions. Types are checked below so that
/// every message can name its key.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<Spanned<Value>>,
    cores: Option<Spanned<Value>>,
    local_stratum: Option<Spanned<Value>>,
    mode: Option<Spanned<Value>>,
    unsynchronized: Option<Spanned<Value>>,
    batch_size: Option<Spanned<Value>>,
    log_level: Option<Spanned<Value>>,
    iface: Option<Spanned<Value>>,
    ntp_port: Option<Spanned<Value>>,
    busy_poll: Option<Spanned<Value>>,
    metrics: Option<Spanned<Value>>,
    control: Option<Spanned<Value>>,
    server: Option<Spanned<Value>>,
    pool: Option<Spanned<Value>>,
    peer: Option<Spanned<Value>>,
    max_distance: Option<Spanned<Value>>,
    minsources: Option<Spanned<Value>>,
    max_startup_step_forward: Option<Spanned<Value>>,
    max_startup_step_backward: Option<Spanned<Value>>,
    max_correction: Option<Spanned<Value>>,
    discipline_system: Option<Spanned<Value>>,
    log_dir: Option<Spanned<Value>>,
}

/// Where a value came from, to name it in an error.
#[derive(Clone, Copy)]
enum Origin<'a> {
    File {
        path: &'a Path,
        text: &'a str,
        span: Option<(usize, usize)>,
    },
    Flag,
    Default,
}

/// A setting's names in the file and on the command line.
#[derive(Clone, Copy)]
struct Key {
    toml: &'static str,
    flag: &'static str,
}

const LISTEN: Key = Key {
    toml: "listen",
    flag: "--listen",
};
const CORES: Key = Key {
    toml: "cores",
    flag: "--cores",
};
const LOCAL_STRATUM: Key = Key {
    toml: "local_stratum",
    flag: "--local-stratum",
};
const MODE: Key = Key {
    toml: "mode",
    flag: "--mode",
};
const UNSYNCHRONIZED: Key = Key {
    toml: "unsynchronized",
    flag: "--unsynchronized",
};
const BATCH_SIZE: Key = Key {
    toml: "batch_size",
    flag: "--batch-size",
};
const LOG_LEVEL: Key = Key {
    toml: "log_level",
    flag: "--log-level",
};
const IFACE: Key = Key {
    toml: "iface",
    flag: "--iface",
};
const NTP_PORT: Key = Key {
    toml: "ntp_port",
    flag: "--ntp-port",
};
const BUSY_POLL: Key = Key {
    toml: "busy_poll",
    flag: "--busy-poll",
};
const METRICS: Key = Key {
    toml: "metrics",
    flag: "--metrics",
};
const CONTROL: Key = Key {
    toml: "control",
    flag: "--control",
};

fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn error_at(origin: Origin<'_>, key: Key, reason: impl fmt::Display) -> ConfigError {
    ConfigError::new(match origin {
        Origin::File { path, text, span } => match span {
            Some((start, _)) => format!(
                "{}:{}: config key `{}`: {reason}",
                path.display(),
                line_of(text, start),
                key.toml
            ),
            None => format!("{}: config key `{}`: {reason}", path.display(), key.toml),
        },
        Origin::Flag => format!("flag `{}`: {reason}", key.flag),
        Origin::Default => format!("default `{}`: {reason}", key.toml),
    })
}

/// A value to check, from either source.
enum Given<'a, T> {
    File(&'a Spanned<Value>),
    Flag(T),
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

impl FileConfig {
    fn parse(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
        toml::from_str(text).map_err(|e| {
            // toml's message names the line and column and quotes the offending text.
            ConfigError::new(format!(
                "config file {}: {}",
                path.display(),
                e.to_string().trim_end()
            ))
        })
    }
}

impl ServerConfig {
    /// Reads the file (if any), applies the flags, and checks everything against this machine.
    pub fn load(file: Option<&Path>, flags: &Overrides) -> Result<ServerConfig, ConfigError> {
        let text =
            match file {
                Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::new(format!("cannot read config file {}: {e}", path.display()))
                })?),
                None => None,
            };
        let machine = Machine::current()?;
        let file = file.zip(text.as_deref());
        ServerConfig::resolve(file, flags, &machine)
    }

    /// The pure part of [`ServerConfig::load`]: the file as `(path, text)`, the flags, the CPUs.
    pub fn resolve(
        file: Option<(&Path, &str)>,
        flags: &Overrides,
        machine: &Machine,
    ) -> Result<ServerConfig, ConfigError> {
        let (path, text) = file.unwrap_or((Path::new(""), ""));
        let parsed = match file {
            Some((path, text)) => FileConfig::parse(path, text)?,
            None => FileConfig::default(),
        };
        let origin = |v: &Spanned<Value>| {
            let span: Range<usize> = v.span();
            Origin::File {
                path,
                text,
                span: Some((span.start, span.end)),
            }
        };

        // listen
        let listen = if !flags.listen.is_empty() {
            let items: Vec<(&str, Origin)> =
                flags.listen.iter().map(|s| (s.as_str(), Origin::Flag)).collect();
            check_listen(&items, Origin::Flag)?
        } else if let Some(v) = &parsed.listen {
            let items: Vec<(&str, Origin)> = match v.get_ref() {
                Value::String(s) => vec![(s.as_str(), origin(v))],
                Value::Array(items) => items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => Ok((s.as_str(), origin(v))),
                        other => Err(error_at(
                            origin(v),
                            LISTEN,
                            format!("expected \"ADDR:PORT\" strings, found {}", type_name(other)),
                        )),
                    })
                    .collect::<Result<_, _>>()?,
                other => {
                    return Err(error_at(
                        origin(v),
                        LISTEN,
                        format!(
                            "expected an array of \"ADDR:PORT\" strings, found {}",
                            type_name(other)
                        ),
                    ))
                }
            };
            check_listen(&items, origin(v))?
        } else {
            let items: Vec<(&str, Origin)> = DEFAULT_LISTEN.iter().map(|s| (*s, Origin::Default)).collect();
            check_listen(&items, Origin::Default)?
        };

        // cores
        let cores = match (&flags.cores, &parsed.cores) {
            (Some(s), _) => {
                let list = parse_core_list(s).map_err(|e| error_at(Origin::Flag, CORES, e))?;
                check_cores(&list, machine).map_err(|e| error_at(Origin::Flag, CORES, e))?
            }
            (None, Some(v)) => {
                let list = match v.get_ref() {
                    Value::String(s) => parse_core_list(s),
                    Value::Array(items) => items
                        .iter()
                        .map(|item| match item {
                            Value::Integer(n) => Ok(*n),
                            other => Err(format!("expected CPU numbers, found {}", type_name(other))),
                        })
                        .collect(),
                    other => Err(format!(
                        "expected a list like \"0-3\" or an array of CPU numbers, found {}",
                        type_name(other)
                    )),
                }
                .map_err(|e| error_at(origin(v), CORES, e))?;
                check_cores(&list, machine).map_err(|e| error_at(origin(v), CORES, e))?
            }
            (None, None) => {
                if machine.allowed.is_empty() {
                    return Err(error_at(
                        Origin::Default,
                        CORES,
                        "this process may run on no CPU at all",
                    ));
                }
                machine.allowed.clone()
            }
        };

        let local_stratum = given_int(flags.local_stratum, &parsed.local_stratum)
            .map(|given| {
                check_int(given, LOCAL_STRATUM, origin, |n| {
                    if LOCAL_STRATUM_RANGE.contains(&n) {
                        Ok(n as u8)
                    } else {
                        Err(format!("{n} is out of range 1..=15"))
                    }
                })
            })
            .transpose()?;

        let batch_size = given_int(flags.batch_size, &parsed.batch_size)
            .map(|given| {
                check_int(given, BATCH_SIZE, origin, |n| {
                    if (1..=MAX_BATCH_SIZE as i64).contains(&n) {
                        Ok(n as usize)
                    } else {
                        Err(format!("{n} is out of range 1..={MAX_BATCH_SIZE}"))
                    }
                })
            })
            .transpose()?
            .unwrap_or(DEFAULT_BATCH_SIZE);

        let mode = given_str(flags.mode, &parsed.mode)
            .map(|given| check_str(given, MODE, origin, Mode::from_str))
            .transpose()?
            .unwrap_or(Mode::Auto);
        let interfaces = if !flags.iface.is_empty() {
            check_interfaces(&flags.iface).map_err(|e| error_at(Origin::Flag, IFACE, e))?
        } else if let Some(v) = &parsed.iface {
            let names: Vec<String> = match v.get_ref() {
                Value::String(s) => vec![s.clone()],
                Value::Array(items) => items
                    .iter()
                    .map(|item| match item {
                        Value::String(s) => Ok(s.clone()),
                        other => Err(error_at(
                            origin(v),
                            IFACE,
                            format!("expected interface names, found {}", type_name(other)),
                        )),
                    })
                    .collect::<Result<_, _>>()?,
                other => {
                    return Err(error_at(
                        origin(v),
                        IFACE,
                        format!("expected an array of interface names, found {}", type_name(other)),
                    ))
                }
            };
            check_interfaces(&names).map_err(|e| error_at(origin(v), IFACE, e))?
        } else {
            Vec::new()
        };
        let ntp_port = given_int(flags.ntp_port, &parsed.ntp_port)
            .map(|given| {
                check_int(given, NTP_PORT, origin, |n| {
                    if (1..=65535).contains(&n) {
                        Ok(n as u16)
                    } else {
                        Err(format!("{n} is out of range 1..=65535"))
                    }
                })
            })
            .transpose()?
            .unwrap_or(123);
        let busy_poll = if flags.busy_poll {
            true
        } else {
            match &parsed.busy_poll {
                None => false,
                Some(v) => match v.get_ref() {
                    Value::Boolean(b) => *b,
                    other => {
                        return Err(error_at(
                            origin(v),
                            BUSY_POLL,
                            format!("expected a boolean, found {}", type_name(other)),
                        ))
                    }
                },
            }
        };
        let path_for_mode = match mode {
            Mode::Auto if interfaces.is_empty() => DataPath::Socket,
            Mode::Auto => DataPath::Xdp,
            Mode::Socket => DataPath::Socket,
            Mode::Xdp if interfaces.is_empty() => {
                let o = match (&flags.mode, &parsed.mode) {
                    (Some(_), _) => Origin::Flag,
                    (None, Some(v)) => origin(v),
                    (None, None) => Origin::Default,
                };
                return Err(error_at(
                    o,
                    MODE,
                    "xdp needs an interface to serve on (--iface IF, or iface in the file)",
                ));
            }
            Mode::Xdp => DataPath::Xdp,
        };

        let unsynchronized = given_str(flags.unsynchronized, &parsed.unsynchronized)
            .map(|given| check_str(given, UNSYNCHRONIZED, origin, parse_unsync_policy))
            .transpose()?
            .unwrap_or_default();

        let log_level = given_str(flags.log_level, &parsed.log_level)
            .map(|given| check_str(given, LOG_LEVEL, origin, parse_log_level))
            .transpose()?;

        let metrics = endpoint(
            given_str(flags.metrics.as_deref(), &parsed.metrics),
            METRICS,
            origin,
            parse_metrics,
            DEFAULT_METRICS,
        )?;
        let control = endpoint(
            given_str(flags.control.as_deref(), &parsed.control),
            CONTROL,
            origin,
            parse_control,
            DEFAULT_CONTROL,
        )?;

        let upstream = resolve_upstream(&parsed, flags, origin)?;

        Ok(ServerConfig {
            listen,
            cores,
            local_stratum,
            mode,
            path: path_for_mode,
            unsynchronized,
            batch_size,
            log_level,
            interfaces,
            ntp_port,
            force: flags.force,
            busy_poll,
            metrics,
            control,
            upstream,
        })
    }
}

/// Resolves an observability endpoint: the flag or file value (`off` or a place), else the
/// default place.
fn endpoint<'a, T>(
    given: Option<Given<'a, &str>>,
    key: Key,
    origin: impl Fn(&'a Spanned<Value>) -> Origin<'a>,
    parse: impl Fn(&str) -> Result<Option<T>, String>,
    default: &str,
) -> Result<Endpoint<T>, ConfigError> {
    let parsed = match given {
        None => {
            let place = parse(default)
                .map_err(|e| error_at(Origin::Default, key, e))?
                .expect("the default is a place, not off");
            return Ok(Endpoint::Default(place));
        }
        Some(Given::Flag(s)) => parse(s).map_err(|e| error_at(Origin::Flag, key, e))?,
        Some(Given::File(v)) => check_str(Given::File(v), key, &origin, |s| parse(s))?,
    };
    Ok(parsed.map_or(Endpoint::Off, Endpoint::Given))
}

/// Checks interface names: non-empty, short enough for the kernel (15 bytes), no duplicates.
fn check_interfaces(names: &[String]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::with_capacity(names.len());
    for name in names {
        if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', '\0']) {
            return Err(format!("{name:?} is not an interface name"));
        }
        if out.contains(name) {
            return Err(format!("{name} is listed twice"));
        }
        out.push(name.clone());
    }
    Ok(out)
}

fn given_int(flag: Option<i64>, file: &Option<Spanned<Value>>) -> Option<Given<'_, i64>> {
    match (flag, file) {
        (Some(n), _) => Some(Given::Flag(n)),
        (None, Some(v)) => Some(Given::File(v)),
        (None, None) => None,
    }
}

fn given_str<T>(flag: Option<T>, file: &Option<Spanned<Value>>) -> Option<Given<'_, T>> {
    match (flag, file) {
        (Some(x), _) => Some(Given::Flag(x)),
        (None, Some(v)) => Some(Given::File(v)),
        (None, None) => None,
    }
}

/// Checks an integer setting: a flag's value as parsed, or a file value that must be an integer.
fn check_int<'a, T>(
    given: Given<'a, i64>,
    key: Key,
    origin: impl Fn(&'a Spanned<Value>) -> Origin<'a>,
    check: impl Fn(i64) -> Result<T, String>,
) -> Result<T, ConfigError> {
    match given {
        Given::Flag(n) => check(n).map_err(|e| error_at(Origin::Flag, key, e)),
        Given::File(v) => match v.get_ref() {
            Value::Integer(n) => check(*n).map_err(|e| error_at(origin(v), key, e)),
            other => Err(error_at(
                origin(v),
                key,
                format!("expected an integer, found {}", type_name(other)),
            )),
        },
    }
}

/// Checks a string setting: a flag's value is already parsed, a file value must be a string.
fn check_str<'a, T>(
    given: Given<'a, T>,
    key: Key,
    origin: impl Fn(&'a Spanned<Value>) -> Origin<'a>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<T, ConfigError> {
    match given {
        Given::Flag(x) => Ok(x),
        Given::File(v) => match v.get_ref() {
            Value::String(s) => parse(s).map_err(|e| error_at(origin(v), key, e)),
            other => Err(error_at(
                origin(v),
                key,
                format!("expected a string, found {}", type_name(other)),
            )),
        },
    }
}

/// Parses one listen address. Port 0 asks the kernel for a free port (one for all threads; the
/// start-up log names it), which is useful for tests and nothing else.
pub fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s.trim().parse().map_err(|_| {
        if s.contains(':') && !s.contains('[') && s.matches(':').count() > 1 {
            format!("{s:?} is not ADDR:PORT (write an IPv6 address as [ADDR]:PORT)")
        } else {
            format!("{s:?} is not ADDR:PORT")
        }
    })?;
    if let SocketAddr::V6(v6) = addr {
        if let Some(v4) = v6.ip().to_ipv4_mapped() {
            return Err(format!(
                "{s:?} is an IPv4-mapped address; write it as {v4}:{} (IPv6 sockets are IPv6-only)",
                v6.port()
            ));
        }
    }
    Ok(addr)
}

fn check_listen(items: &[(&str, Origin<'_>)], whole: Origin<'_>) -> Result<Vec<SocketAddr>, ConfigError> {
    if items.is_empty() {
        return Err(error_at(
            whole,
            LISTEN,
            "the list is empty: give at least one ADDR:PORT",
        ));
    }
    let mut out: Vec<SocketAddr> = Vec::with_capacity(items.len());
    for (s, origin) in items {
        let addr = parse_listen_addr(s).map_err(|e| error_at(*origin, LISTEN, e))?;
        if out.contains(&addr) {
            return Err(error_at(*origin, LISTEN, format!("{addr} is listed twice")));
        }
        out.push(addr);
    }
    Ok(out)
}

/// Parses a CPU list such as `0,1`, `0-3` or `0-1,4` into its numbers, in the order given.
pub fn parse_core_list(s: &str) -> Result<Vec<i64>, String> {
    if s.trim().is_empty() {
        return Err("the list is empty: give at least one CPU".to_string());
    }
    let number = |part: &str| {
        part.trim()
            .parse::<u32>()
            .map(i64::from)
            .map_err(|_| format!("{:?} is not a CPU number", part.trim()))
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        match part.split_once('-') {
            Some((lo, hi)) if !lo.trim().is_empty() => {
                let (lo, hi) = (number(lo)?, number(hi)?);
                if lo > hi {
                    return Err(format!("range \"{lo}-{hi}\" runs backwards"));
                }
                if hi - lo >= libc::CPU_SETSIZE as i64 {
                    return Err(format!("range \"{lo}-{hi}\" is larger than any machine"));
                }
                out.extend(lo..=hi);
            }
            _ => out.push(number(part)?),
        }
    }
    Ok(out)
}

/// Formats CPU numbers compactly: `0-3,6`.
pub fn format_core_list(cores: &[usize]) -> String {
    let mut sorted = cores.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            end += 1;
            i += 1;
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// Checks a list of CPU numbers against the machine: non-empty, no duplicates, each one present
/// and in this process's affinity mask.
fn check_cores(list: &[i64], machine: &Machine) -> Result<Vec<usize>, String> {
    if list.is_empty() {
        return Err("the list is empty: give at least one CPU".to_string());
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(list.len());
    for &n in list {
        if n < 0 {
            return Err(format!("{n} is not a CPU number"));
        }
        let core = n as usize;
        if !seen.insert(core) {
            return Err(format!("CPU {core} is listed twice"));
        }
        if core >= machine.configured {
            return Err(format!(
                "CPU {core} does not exist on this machine (it has {})",
                match machine.configured {
                    1 => "CPU 0".to_string(),
                    n => format!("CPUs 0-{}", n - 1),
                }
            ));
        }
        if !machine.allowed.contains(&core) {
            return Err(format!(
                "CPU {core} is not one this process may run on (allowed: {})",
                format_core_list(&machine.allowed)
            ));
        }
        out.push(core);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            allowed: vec![0, 1, 2, 3],
            configured: 8,
        }
    }

    fn from_file(text: &str) -> Result<ServerConfig, ConfigError> {
        ServerConfig::resolve(
            Some((Path::new("/etc/strata.toml"), text)),
            &Overrides::default(),
            &machine(),
        )
    }

    fn from_flags(flags: Overrides) -> Result<ServerConfig, ConfigError> {
        ServerConfig::resolve(None, &flags, &machine())
    }

    fn err(r: Result<ServerConfig, ConfigError>) -> String {
        r.expect_err("expected an error").to_string()
    }

    #[test]
    fn defaults() {
        let c = from_flags(Overrides::default()).unwrap();
        assert_eq!(
            c.listen,
            vec![
                "0.0.0.0:123".parse::<SocketAddr>().unwrap(),
                "[::]:123".parse().unwrap()
            ]
        );
        assert_eq!(c.cores, vec![0, 1, 2, 3]);
        assert_eq!(c.local_stratum, None);
        assert_eq!((c.mode, c.path), (Mode::Auto, DataPath::Socket));
        assert_eq!(c.unsynchronized, UnsyncPolicy::Answer);
        assert_eq!(c.batch_size, DEFAULT_BATCH_SIZE);
        assert_eq!(c.log_level, None);
        assert_eq!(from_file("").unwrap(), c);
    }

    #[test]
    fn a_full_file() {
        let c = from_file(
            r#"
            listen = ["127.0.0.1:12300", "[::1]:12300"]
            cores = [1, 3]
            local_stratum = 2
            mode = "socket"
            unsynchronized = "drop"
            batch_size = 1024
            log_level = "debug"
            "#,
        )
        .unwrap();
        assert_eq!(
            c,
            ServerConfig {
                listen: vec!["127.0.0.1:12300".parse().unwrap(), "[::1]:12300".parse().unwrap()],
                cores: vec![1, 3],
                local_stratum: Some(2),
                mode: Mode::Socket,
                path: DataPath::Socket,
                unsynchronized: UnsyncPolicy::Drop,
                batch_size: 1024,
                log_level: Some(LevelFilter::Debug),
                interfaces: vec![],
                ntp_port: 123,
                force: false,
                busy_poll: false,
                metrics: Endpoint::Default(DEFAULT_METRICS.parse().unwrap()),
                control: Endpoint::Default(DEFAULT_CONTROL.into()),
                upstream: Default::default(),
            }
        );
    }

    #[test]
    fn observability_endpoints() {
        let c = from_file("").unwrap();
        assert_eq!(c.metrics.get(), Some(&"127.0.0.1:9123".parse().unwrap()));
        assert!(matches!(c.control, Endpoint::Default(_)));
        let c = from_file("metrics = \"[::1]:9100\"\ncontrol = \"/tmp/s.sock\"").unwrap();
        assert_eq!(c.metrics, Endpoint::Given("[::1]:9100".parse().unwrap()));
        assert_eq!(c.control, Endpoint::Given(PathBuf::from("/tmp/s.sock")));
        let c = from_file("metrics = \"off\"\ncontrol = \"off\"").unwrap();
        assert_eq!((c.metrics, c.control), (Endpoint::Off, Endpoint::Off));
        let c = from_flags(Overrides {
            metrics: Some("127.0.0.1:0".into()),
            control: Some("off".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.metrics, Endpoint::Given("127.0.0.1:0".parse().unwrap()));
        assert_eq!(c.control, Endpoint::Off);
        let e = err(from_file("metrics = \"9123\""));
        assert!(
            e.contains("config key `metrics`: \"9123\" is not ADDR:PORT"),
            "{e}"
        );
        let e = err(from_file("metrics = 9123"));
        assert!(
            e.contains("config key `metrics`: expected a string, found an integer"),
            "{e}"
        );
        let e = err(from_flags(Overrides {
            control: Some("x".repeat(200)),
            ..Default::default()
        }));
        assert!(e.starts_with("flag `--control`: "), "{e}");
        assert!(e.contains("longer than a Unix socket path"), "{e}");
    }

    #[test]
    fn flags_override_the_file_key_by_key() {
        let flags = Overrides {
            listen: vec!["127.0.0.1:999".into()],
            local_stratum: Some(3),
            batch_size: Some(1),
            ..Default::default()
        };
        let c = ServerConfig::resolve(
            Some((
                Path::new("x.toml"),
                "listen = [\"1.2.3.4:123\"]\nlocal_stratum = 0\nbatch_size = 8\ncores = \"2\"\n",
            )),
            &flags,
            &machine(),
        )
        .unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:999".parse::<SocketAddr>().unwrap()]);
        // The file's invalid 0 is replaced by the flag, so it is not an error.
        assert_eq!(c.local_stratum, Some(3));
        assert_eq!(c.batch_size, 1);
        assert_eq!(c.cores, vec![2]);
    }

    #[test]
    fn listen_as_a_single_string_is_accepted() {
        let c = from_file("listen = \"[::1]:123\"").unwrap();
        assert_eq!(c.listen, vec!["[::1]:123".parse::<SocketAddr>().unwrap()]);
    }

    #[test]
    fn bad_listen_values() {
        let e = err(from_file("\n\nlisten = [\"1.2.3.4\"]"));
        assert_eq!(
            e,
            "/etc/strata.toml:3: config key `listen`: \"1.2.3.4\" is not ADDR:PORT"
        );
        let e = err(from_file("listen = [\"::1:123\"]"));
        assert!(e.contains("[ADDR]:PORT"), "{e}");
        assert_eq!(
            from_file("listen = [\"127.0.0.1:0\"]").unwrap().listen[0].port(),
            0
        );
        let e = err(from_file("listen = [\"1.2.3.4:70000\"]"));
        assert!(e.contains("is not ADDR:PORT"), "{e}");
        let e = err(from_file("listen = [\"[::ffff:1.2.3.4]:123\"]"));
        assert!(e.contains("write it as 1.2.3.4:123"), "{e}");
        let e = err(from_file("listen = []"));
        assert!(e.contains("config key `listen`: the list is empty"), "{e}");
        let e = err(from_file("listen = [123]"));
        assert!(
            e.contains("config key `listen`: expected \"ADDR:PORT\" strings, found an integer"),
            "{e}"
        );
        let e = err(from_file("listen = 123"));
        assert!(e.contains("config key `listen`: expected an array"), "{e}");
        let e = err(from_file("listen = [\"1.2.3.4:123\", \"1.2.3.4:123\"]"));
        assert!(
            e.contains("config key `listen`: 1.2.3.4:123 is listed twice"),
            "{e}"
        );
        let e = err(from_flags(Overrides {
            listen: vec!["[::1]:5".into(), "[0:0::1]:5".into()],
            ..Default::default()
        }));
        assert_eq!(e, "flag `--listen`: [::1]:5 is listed twice");
        let e = err(from_flags(Overrides {
            listen: vec!["localhost:123".into()],
            ..Default::default()
        }));
        assert_eq!(e, "flag `--listen`: \"localhost:123\" is not ADDR:PORT");
    }

    #[test]
    fn core_lists() {
        assert_eq!(parse_core_list("0,1").unwrap(), vec![0, 1]);
        assert_eq!(parse_core_list("0-3").unwrap(), vec![0, 1, 2, 3]);
        assert_eq!(parse_core_list(" 3, 0-1 ").unwrap(), vec![3, 0, 1]);
        assert!(parse_core_list("").unwrap_err().contains("empty"));
        assert!(parse_core_list("a")
            .unwrap_err()
            .contains("\"a\" is not a CPU number"));
        assert!(parse_core_list("1,")
            .unwrap_err()
            .contains("\"\" is not a CPU number"));
        assert!(parse_core_list("3-1").unwrap_err().contains("backwards"));
        assert!(parse_core_list("-1").unwrap_err().contains("not a CPU number"));
        assert_eq!(format_core_list(&[3, 0, 1, 2, 6, 8, 9]), "0-3,6,8-9");
        assert_eq!(format_core_list(&[5]), "5");
    }

    #[test]
    fn cores_from_the_file_and_flags() {
        assert_eq!(from_file("cores = \"0-1,3\"").unwrap().cores, vec![0, 1, 3]);
        assert_eq!(from_file("cores = [2, 0]").unwrap().cores, vec![2, 0]);
        assert_eq!(
            from_flags(Overrides {
                cores: Some("1-2".into()),
                ..Default::default()
            })
            .unwrap()
            .cores,
            vec![1, 2]
        );
    }

    #[test]
    fn bad_cores() {
        let e = err(from_file("cores = []"));
        assert!(e.contains("config key `cores`: the list is empty"), "{e}");
        let e = err(from_file("cores = \"\""));
        assert!(e.contains("config key `cores`: the list is empty"), "{e}");
        let e = err(from_file("cores = [0, 0]"));
        assert!(e.contains("CPU 0 is listed twice"), "{e}");
        let e = err(from_file("cores = [9]"));
        assert!(
            e.contains("config key `cores`: CPU 9 does not exist on this machine (it has CPUs 0-7)"),
            "{e}"
        );
        let e = err(from_file("cores = [5]"));
        assert!(
            e.contains("CPU 5 is not one this process may run on (allowed: 0-3)"),
            "{e}"
        );
        let e = err(from_file("cores = [-1]"));
        assert!(e.contains("-1 is not a CPU number"), "{e}");
        let e = err(from_file("cores = [\"0\"]"));
        assert!(e.contains("expected CPU numbers, found a string"), "{e}");
        let e = err(from_file("cores = 1"));
        assert!(e.contains("expected a list like"), "{e}");
        let e = err(from_flags(Overrides {
            cores: Some("0,x".into()),
            ..Default::default()
        }));
        assert_eq!(e, "flag `--cores`: \"x\" is not a CPU number");
        let e = err(from_flags(Overrides {
            cores: Some("12".into()),
            ..Default::default()
        }));
        assert!(e.starts_with("flag `--cores`: CPU 12 does not exist"), "{e}");
        let none = Machine {
            allowed: vec![],
            configured: 2,
        };
        let e = err(ServerConfig::resolve(None, &Overrides::default(), &none));
        assert!(e.contains("no CPU"), "{e}");
    }

    #[test]
    fn local_stratum() {
        assert_eq!(from_file("local_stratum = 1").unwrap().local_stratum, Some(1));
        assert_eq!(from_file("local_stratum = 15").unwrap().local_stratum, Some(15));
        let e = err(from_file("local_stratum = 0"));
        assert_eq!(
            e,
            "/etc/strata.toml:1: config key `local_stratum`: 0 is out of range 1..=15"
        );
        let e = err(from_file("local_stratum = 16"));
        assert!(e.contains("16 is out of range 1..=15"), "{e}");
        let e = err(from_file("local_stratum = \"1\""));
        assert!(
            e.contains("config key `local_stratum`: expected an integer, found a string"),
            "{e}"
        );
        let e = err(from_flags(Overrides {
            local_stratum: Some(-3),
            ..Default::default()
        }));
        assert_eq!(e, "flag `--local-stratum`: -3 is out of range 1..=15");
    }

    #[test]
    fn batch_size() {
        assert_eq!(from_file("batch_size = 1").unwrap().batch_size, 1);
        let e = err(from_file("batch_size = 0"));
        assert!(
            e.contains("config key `batch_size`: 0 is out of range 1..=1024"),
            "{e}"
        );
        let e = err(from_file("batch_size = 1025"));
        assert!(e.contains("1025 is out of range 1..=1024"), "{e}");
        let e = err(from_file("batch_size = 2.5"));
        assert!(e.contains("expected an integer, found a float"), "{e}");
        let e = err(from_flags(Overrides {
            batch_size: Some(5000),
            ..Default::default()
        }));
        assert_eq!(e, "flag `--batch-size`: 5000 is out of range 1..=1024");
    }

    #[test]
    fn mode() {
        assert_eq!(from_file("mode = \"auto\"").unwrap().mode, Mode::Auto);
        assert_eq!(from_file("mode = \"socket\"").unwrap().path, DataPath::Socket);
        let e = err(from_file("mode = \"xdp\""));
        assert!(
            e.contains("config key `mode`: xdp needs an interface to serve on"),
            "{e}"
        );
        let e = err(from_flags(Overrides {
            mode: Some(Mode::Xdp),
            ..Default::default()
        }));
        assert!(e.starts_with("flag `--mode`: xdp needs an interface"), "{e}");
        let c = from_file("mode = \"xdp\"\niface = \"eth0\"").unwrap();
        assert_eq!((c.mode, c.path), (Mode::Xdp, DataPath::Xdp));
        assert_eq!(c.interfaces, vec!["eth0"]);
        // auto picks XDP when an interface is given (main falls back at run time).
        let c = from_flags(Overrides {
            iface: vec!["veth0".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!((c.mode, c.path), (Mode::Auto, DataPath::Xdp));
        let e = err(from_file("mode = \"fast\""));
        assert!(
            e.contains("config key `mode`: \"fast\" is not one of auto, socket, xdp"),
            "{e}"
        );
        assert_eq!("socket".parse::<Mode>(), Ok(Mode::Socket));
        assert!("Socket".parse::<Mode>().is_err());
    }

    #[test]
    fn xdp_settings() {
        let c = from_file("iface = [\"eth0\", \"eth1\"]\nntp_port = 1123\nbusy_poll = true").unwrap();
        assert_eq!(c.interfaces, vec!["eth0", "eth1"]);
        assert_eq!((c.ntp_port, c.busy_poll, c.force), (1123, true, false));
        let c = from_flags(Overrides {
            iface: vec!["eth0".into()],
            ntp_port: Some(5),
            force: true,
            busy_poll: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!((c.ntp_port, c.busy_poll, c.force), (5, true, true));
        assert_eq!(from_file("").unwrap().ntp_port, 123);
        let e = err(from_file("iface = [\"eth0\", \"eth0\"]"));
        assert!(e.contains("config key `iface`: eth0 is listed twice"), "{e}");
        let e = err(from_flags(Overrides {
            iface: vec!["a-very-long-interface-name".into()],
            ..Default::default()
        }));
        assert!(e.starts_with("flag `--iface`: \"a-very-long"), "{e}");
        let e = err(from_file("ntp_port = 0"));
        assert!(
            e.contains("config key `ntp_port`: 0 is out of range 1..=65535"),
            "{e}"
        );
        let e = err(from_file("busy_poll = 1"));
        assert!(
            e.contains("config key `busy_poll`: expected a boolean, found an integer"),
            "{e}"
        );
    }

    #[test]
    fn unsynchronized() {
        assert_eq!(
            from_file("unsynchronized = \"drop\"").unwrap().unsynchronized,
            UnsyncPolicy::Drop
        );
        assert_eq!(
            from_file("unsynchronized = \"answer\"").unwrap().unsynchronized,
            UnsyncPolicy::Answer
        );
        let c = from_flags(Overrides {
            unsynchronized: Some(UnsyncPolicy::Drop),
            ..Default::default()
        });
        assert_eq!(c.unwrap().unsynchronized, UnsyncPolicy::Drop);
        let e = err(from_file("unsynchronized = \"ignore\""));
        assert!(
            e.contains("config key `unsynchronized`: \"ignore\" is not one of answer, drop"),
            "{e}"
        );
        let e = err(from_file("unsynchronized = true"));
        assert!(e.contains("expected a string, found a boolean"), "{e}");
        assert_eq!(unsync_policy_name(UnsyncPolicy::Drop), "drop");
    }

    #[test]
    fn log_level() {
        assert_eq!(
            from_file("log_level = \"warn\"").unwrap().log_level,
            Some(LevelFilter::Warn)
        );
        let e = err(from_file("log_level = \"loud\""));
        assert!(
            e.contains("config key `log_level`: \"loud\" is not one of off"),
            "{e}"
        );
    }

    #[test]
    fn file_syntax_and_unknown_keys() {
        let e = err(from_file("listen = [\"1.2.3.4:123\"\nbatch_size = 3"));
        assert!(
            e.starts_with("config file /etc/strata.toml: TOML parse error at line"),
            "{e}"
        );
        let e = err(from_file("\nlocal-stratum = 1"));
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("unknown field `local-stratum`"), "{e}");
        let e = err(from_file("local_stratum = 1\nlocal_stratum = 2"));
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn unreadable_file_names_path_and_os_error() {
        let e = ServerConfig::load(Some(Path::new("/nonexistent/strata.toml")), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("cannot read config file /nonexistent/strata.toml: No such file or directory"),
            "{e}"
        );
        let dir = std::env::temp_dir();
        let e = ServerConfig::load(Some(&dir), &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("Is a directory"), "{e}");
    }

    #[test]
    fn loading_a_real_file_checks_against_this_machine() {
        let machine = Machine::current().unwrap();
        assert!(!machine.allowed.is_empty());
        assert!(machine.configured > *machine.allowed.last().unwrap());
        let path = std::env::temp_dir().join(format!("strata-config-test-{}.toml", std::process::id()));
        std::fs::write(&path, "listen = [\"127.0.0.1:12300\"]\nlocal_stratum = 1\n").unwrap();
        let c = ServerConfig::load(Some(&path), &Overrides::default());
        std::fs::remove_file(&path).unwrap();
        let c = c.unwrap();
        assert_eq!(c.cores, machine.allowed);
        let beyond = machine.configured.to_string();
        let e = ServerConfig::load(
            None,
            &Overrides {
                cores: Some(beyond),
                ..Default::default()
            },
        );
        assert!(e
            .unwrap_err()
            .to_string()
            .contains("does not exist on this machine"));
    }
}

const SERVER: Key = Key {
    toml: "server",
    flag: "--upstream",
};
const POOL: Key = Key {
    toml: "pool",
    flag: "--pool",
};
const PEER: Key = Key {
    toml: "peer",
    flag: "--peer",
};
const MAX_DISTANCE: Key = Key {
    toml: "max_distance",
    flag: "--max-distance",
};
const MINSOURCES: Key = Key {
    toml: "minsources",
    flag: "--minsources",
};
const MAX_STARTUP_STEP_FORWARD: Key = Key {
    toml: "max_startup_step_forward",
    flag: "--max-startup-step-forward",
};
const MAX_STARTUP_STEP_BACKWARD: Key = Key {
    toml: "max_startup_step_backward",
    flag: "--max-startup-step-backward",
};
const MAX_CORRECTION: Key = Key {
    toml: "max_correction",
    flag: "--max-correction",
};
const DISCIPLINE_SYSTEM: Key = Key {
    toml: "discipline_system",
    flag: "--discipline-system",
};
const LOG_DIR: Key = Key {
    toml: "log_dir",
    flag: "--log-dir",
};

/// The upstream keys: source entries (a string or an array of strings each), `max_distance`,
/// `minsources`, `discipline_system`, `log_dir`.
fn resolve_upstream<'a>(
    parsed: &'a FileConfig,
    flags: &Overrides,
    origin: impl Fn(&'a Spanned<Value>) -> Origin<'a> + Copy,
) -> Result<crate::control::UpstreamConfig, ConfigError> {
    use crate::control::spec::{parse_source, SourceKind};
    let mut upstream = crate::control::UpstreamConfig::default();
    let entries = |kind: SourceKind, key: Key, flag: &[String], file: &'a Option<Spanned<Value>>| {
        if !flag.is_empty() {
            return flag
                .iter()
                .map(|s| parse_source(kind, s).map_err(|e| error_at(Origin::Flag, key, e)))
                .collect::<Result<Vec<_>, _>>();
        }
        let Some(v) = file else { return Ok(Vec::new()) };
        let texts: Vec<&str> = match v.get_ref() {
            Value::String(s) => vec![s.as_str()],
            Value::Array(items) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s.as_str()),
                    other => Err(error_at(
                        origin(v),
                        key,
                        format!(
                            "expected \"HOST[:PORT] [OPTION...]\" strings, found {}",
                            type_name(other)
                        ),
                    )),
                })
                .collect::<Result<_, _>>()?,
            other => {
                return Err(error_at(
                    origin(v),
                    key,
                    format!(
                        "expected a string or an array of strings, found {}",
                        type_name(other)
                    ),
                ))
            }
        };
        texts
            .iter()
            .map(|t| parse_source(kind, t).map_err(|e| error_at(origin(v), key, e)))
            .collect()
    };
    upstream.sources.extend(entries(
        SourceKind::Server,
        SERVER,
        &flags.upstream,
        &parsed.server,
    )?);
    upstream
        .sources
        .extend(entries(SourceKind::Pool, POOL, &[], &parsed.pool)?);
    upstream
        .sources
        .extend(entries(SourceKind::Peer, PEER, &flags.peer, &parsed.peer)?);

    // A number of seconds from the flag (text) or the file (a number), in (0, max].
    let seconds = |key: Key, flag: &Option<String>, file: &'a Option<Spanned<Value>>, max: f64| {
        let in_range = |n: f64| {
            if n.is_finite() && n > 0.0 && n <= max {
                Ok(std::time::Duration::from_secs_f64(n))
            } else {
                Err(format!("{n} is out of range (0, {max}] seconds"))
            }
        };
        match (flag, file) {
            (Some(s), _) => {
                let n: f64 = s
                    .trim()
                    .parse()
                    .map_err(|_| error_at(Origin::Flag, key, format!("{s:?} is not a number of seconds")))?;
                in_range(n).map(Some).map_err(|e| error_at(Origin::Flag, key, e))
            }
            (None, Some(v)) => {
                let n = match v.get_ref() {
                    Value::Float(f) => *f,
                    Value::Integer(i) => *i as f64,
                    other => {
                        return Err(error_at(
                            origin(v),
                            key,
                            format!("expected seconds, found {}", type_name(other)),
                        ))
                    }
                };
                in_range(n).map(Some).map_err(|e| error_at(origin(v), key, e))
            }
            (None, None) => Ok(None),
        }
    };
    /// Ten years: a limit beyond it is no limit.
    const LIMIT_MAX: f64 = 3.2e8;
    let given = seconds(MAX_DISTANCE, &flags.max_distance, &parsed.max_distance, 16.0)?;
    upstream.max_distance = given.unwrap_or(upstream.max_distance);
    let given = seconds(
        MAX_STARTUP_STEP_FORWARD,
        &flags.max_startup_step_forward,
        &parsed.max_startup_step_forward,
        LIMIT_MAX,
    )?;
    upstream.max_startup_step_forward = given.unwrap_or(upstream.max_startup_step_forward);
    let given = seconds(
        MAX_STARTUP_STEP_BACKWARD,
        &flags.max_startup_step_backward,
        &parsed.max_startup_step_backward,
        LIMIT_MAX,
    )?;
    upstream.max_startup_step_backward = given.unwrap_or(upstream.max_startup_step_backward);
    let given = seconds(
        MAX_CORRECTION,
        &flags.max_correction,
        &parsed.max_correction,
        LIMIT_MAX,
    )?;
    upstream.max_correction = given.unwrap_or(upstream.max_correction);
    upstream.allow_step = flags.allow_step;
    if let Some(given) = given_int(flags.minsources, &parsed.minsources) {
        upstream.minsources = check_int(given, MINSOURCES, origin, |n| {
            if (1..=16).contains(&n) {
                Ok(n as usize)
            } else {
                Err(format!("{n} is out of range 1..=16"))
            }
        })?;
    }
    upstream.discipline_system = flags.discipline_system
        || match &parsed.discipline_system {
            Some(v) => match v.get_ref() {
                Value::Boolean(b) => *b,
                other => {
                    return Err(error_at(
                        origin(v),
                        DISCIPLINE_SYSTEM,
                        format!("expected a boolean, found {}", type_name(other)),
                    ))
                }
            },
            None => false,
        };
    upstream.log_dir = match (&flags.log_dir, &parsed.log_dir) {
        (Some(p), _) => Some(p.clone()),
        (None, Some(v)) => match v.get_ref() {
            Value::String(s) if !s.is_empty() => Some(PathBuf::from(s)),
            other => {
                return Err(error_at(
                    origin(v),
                    LOG_DIR,
                    format!("expected a directory path, found {}", type_name(other)),
                ))
            }
        },
        (None, None) => None,
    };
    Ok(upstream)
}

#[cfg(test)]
mod upstream_tests {
    use super::*;

    fn machine() -> Machine {
        Machine {
            allowed: vec![0, 1],
            configured: 2,
        }
    }

    #[test]
    fn sources_and_settings_from_the_file_and_the_flags() {
        let text = "server = [\"a.example iburst\", \"198.18.0.1:1123 prefer\"]\npool = \"pool.example maxsources 2\"\n\
                    peer = \"198.18.0.3\"\nmax_distance = 1\nminsources = 2\ndiscipline_system = true\nlog_dir = \"/tmp/x\"\n";
        let c = ServerConfig::resolve(
            Some((Path::new("/etc/s.toml"), text)),
            &Overrides::default(),
            &machine(),
        )
        .unwrap();
        let u = &c.upstream;
        let kinds: Vec<_> = u
            .sources
            .iter()
            .map(|s| (s.kind.name(), s.host.as_str(), s.port))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("server", "a.example", 123),
                ("server", "198.18.0.1", 1123),
                ("pool", "pool.example", 123),
                ("peer", "198.18.0.3", 123)
            ]
        );
        assert!(u.sources[0].options.iburst && u.sources[1].options.prefer);
        assert_eq!(u.sources[2].options.max_sources, 2);
        assert_eq!(
            (u.max_distance, u.minsources, u.discipline_system),
            (std::time::Duration::from_secs(1), 2, true)
        );
        assert_eq!(u.log_dir.as_deref(), Some(Path::new("/tmp/x")));

        let flags = Overrides {
            upstream: vec!["198.18.0.9 iburst".into()],
            max_distance: Some("0.5".into()),
            ..Default::default()
        };
        let c = ServerConfig::resolve(Some((Path::new("/etc/s.toml"), text)), &flags, &machine()).unwrap();
        assert_eq!(c.upstream.sources[0].host, "198.18.0.9");
        assert_eq!(
            c.upstream
                .sources
                .iter()
                .filter(|s| s.kind == crate::control::spec::SourceKind::Server)
                .count(),
            1
        );
        assert_eq!(c.upstream.max_distance, std::time::Duration::from_millis(500));

        let none = ServerConfig::resolve(None, &Overrides::default(), &machine()).unwrap();
        assert_eq!(none.upstream, crate::control::UpstreamConfig::default());
    }

    #[test]
    fn step_limits_from_the_file_and_the_flags() {
        let text = "max_startup_step_forward = 60\nmax_startup_step_backward = 0.5\nmax_correction = 2\n";
        let c = ServerConfig::resolve(
            Some((Path::new("/etc/s.toml"), text)),
            &Overrides::default(),
            &machine(),
        )
        .unwrap();
        let l = c.upstream.step_limits();
        assert_eq!(
            (
                l.startup_forward,
                l.startup_backward,
                l.max_correction,
                l.allow_once
            ),
            (60.0, 0.5, 2.0, false)
        );
        let flags = Overrides {
            max_correction: Some("0.25".into()),
            allow_step: true,
            ..Default::default()
        };
        let c = ServerConfig::resolve(Some((Path::new("/etc/s.toml"), text)), &flags, &machine()).unwrap();
        let l = c.upstream.step_limits();
        assert_eq!(
            (l.startup_forward, l.max_correction, l.allow_once),
            (60.0, 0.25, true)
        );
        // The defaults.
        let l = crate::control::UpstreamConfig::default().step_limits();
        assert_eq!(
            (l.startup_forward, l.startup_backward, l.max_correction),
            (1000.0, 1000.0, 1.0)
        );
        assert_eq!(crate::control::UpstreamConfig::default().minsources, 2);
    }

    #[test]
    fn bad_step_limits_name_their_key() {
        let err = |text: &str| {
            ServerConfig::resolve(
                Some((Path::new("/etc/s.toml"), text)),
                &Overrides::default(),
                &machine(),
            )
            .unwrap_err()
            .to_string()
        };
        assert!(err("max_startup_step_forward = -1")
            .contains("config key `max_startup_step_forward`: -1 is out of range"));
        assert!(err("max_startup_step_backward = \"x\"")
            .contains("config key `max_startup_step_backward`: expected seconds"));
        assert!(err("max_correction = 0").contains("config key `max_correction`: 0 is out of range"));
        let flags = Overrides {
            max_startup_step_backward: Some("inf".into()),
            ..Default::default()
        };
        let e = ServerConfig::resolve(None, &flags, &machine())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("flag `--max-startup-step-backward`: inf is out of range"),
            "{e}"
        );
    }

    #[test]
    fn bad_upstream_settings_name_their_key() {
        let err = |text: &str| {
            ServerConfig::resolve(
                Some((Path::new("/etc/s.toml"), text)),
                &Overrides::default(),
                &machine(),
            )
            .unwrap_err()
            .to_string()
        };
        assert!(err("server = \"a minpoll 99\"")
            .contains("/etc/s.toml:1: config key `server`: option `minpoll`: 99 is out of range"));
        assert!(err("peer = [1]").contains("config key `peer`: expected"));
        assert!(err("max_distance = 0").contains("config key `max_distance`: 0 is out of range"));
        assert!(err("minsources = 0").contains("config key `minsources`"));
        assert!(err("discipline_system = 1").contains("expected a boolean"));
        let flags = Overrides {
            max_distance: Some("far".into()),
            ..Default::default()
        };
        let e = ServerConfig::resolve(None, &flags, &machine())
            .unwrap_err()
            .to_string();
        assert_eq!(e, "flag `--max-distance`: \"far\" is not a number of seconds");
        let flags = Overrides {
            upstream: vec!["a bogus".into()],
            ..Default::default()
        };
        let e = ServerConfig::resolve(None, &flags, &machine())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("flag `--upstream`: unknown option \"bogus\""),
            "{e}"
        );
    }
}

//! The values settings take, each parsed one way whether it comes from a flag or from the file:
//! [`Setting::parse`] reads a flag's text (clap calls it through [`FlagParser`]) and
//! [`Setting::from_toml`] reads the file's value (serde calls it through [`FileValue`]), checking
//! the same ranges with the same messages.

use std::ffi::OsStr;
use std::fmt;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use clap::builder::{PossibleValue, TypedValueParser, ValueParser};
use log::LevelFilter;
use serde::{Deserialize, Deserializer};
use toml::Value;

use crate::proto::control::spec::{parse_source, SourceKind, SourceSpec};
use crate::proto::state::UnsyncPolicy;

/// A setting's value: what it accepts and how it says what is wrong.
pub trait Setting: Sized + Clone + fmt::Debug + Send + Sync + 'static {
    /// The named values an enumerated setting takes (shown in `--help`); empty for the others.
    const CHOICES: &'static [Choice<Self>] = &[];
    /// Whether the value is a number. Its flag then takes negative numbers, so that `-1` reaches
    /// [`Setting::parse`] and gets its range error instead of clap's "unexpected argument" (but
    /// not any value starting with `-`: `--max-distance --minsources 2` must say that the value
    /// is missing).
    const NUMBER: bool = false;

    /// Reads a flag's text, and the file's value when it is a string.
    fn parse(text: &str) -> Result<Self, String>;

    /// Reads the file's value. Most settings are strings in the file too; numbers, booleans and
    /// lists say here which TOML types they take.
    fn from_toml(value: &Value) -> Result<Self, String> {
        match value {
            Value::String(s) => Self::parse(s),
            other => Err(expected("a string", other)),
        }
    }
}

/// One named value of an enumerated setting, and what it means for `--help` (may be empty).
#[derive(Debug)]
pub struct Choice<T> {
    pub name: &'static str,
    pub value: T,
    pub help: &'static str,
}

impl<T> Choice<T> {
    pub const fn new(name: &'static str, value: T, help: &'static str) -> Self {
        Choice { name, value, help }
    }
}

/// Picks the choice named `text`.
fn choose<T: Clone>(choices: &[Choice<T>], text: &str) -> Result<T, String> {
    choices
        .iter()
        .find(|c| c.name == text)
        .map(|c| c.value.clone())
        .ok_or_else(|| {
            let names: Vec<&str> = choices.iter().map(|c| c.name).collect();
            format!("{text:?} is not one of {}", names.join(", "))
        })
}

/// "expected WHAT, found a TYPE": the message for a file value of the wrong TOML type.
pub fn expected(what: &str, found: &Value) -> String {
    format!("expected {what}, found {}", type_name(found))
}

pub fn type_name(v: &Value) -> &'static str {
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

/// clap's value parser for a setting: [`Setting::parse`], with the choices listed in `--help`.
#[derive(Clone)]
pub struct FlagParser<T>(PhantomData<fn() -> T>);

impl<T> FlagParser<T> {
    pub fn new() -> Self {
        FlagParser(PhantomData)
    }
}

impl<T> Default for FlagParser<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Setting> TypedValueParser for FlagParser<T> {
    type Value = T;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<T, clap::Error> {
        // clap's parser for a plain function builds the "invalid value" error that names the
        // flag, which `config::flag_error` turns into this crate's wording.
        let parse: fn(&str) -> Result<T, String> = T::parse;
        parse.parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        if T::CHOICES.is_empty() {
            return None;
        }
        Some(Box::new(T::CHOICES.iter().map(|c| {
            let value = PossibleValue::new(c.name);
            if c.help.is_empty() {
                value
            } else {
                value.help(c.help)
            }
        })))
    }
}

/// A key's value as the file gives it: the setting, or why it is not one. The error is kept
/// rather than failing the whole file because a flag that replaces the key makes the file's
/// value irrelevant; it is reported only when the value is used.
#[derive(Debug)]
pub struct FileValue<T>(pub Result<T, String>);

impl<'de, T: Setting> Deserialize<'de> for FileValue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(deserializer)?;
        Ok(FileValue(T::from_toml(&value)))
    }
}

/// The three shapes of a setting, as its flag field is written: `Option<T>` (a flag with a
/// value), `Vec<T>` (a repeatable flag; a string or an array of strings in the file), `bool` (a
/// switch without a value). Everything else about a setting follows from its field type.
pub trait FlagField {
    /// The setting's value, from the flag or from the file.
    type Value;
    /// What the file's value is read as.
    type File: Setting + Into<Self::Value>;
    const NEGATIVE_NUMBERS: bool;
    fn parser() -> ValueParser;
    /// The flag's value, if the flag was given.
    fn given(&self) -> Option<Self::Value>;
}

impl<T: Setting> FlagField for Option<T> {
    type Value = T;
    type File = T;
    const NEGATIVE_NUMBERS: bool = T::NUMBER;

    fn parser() -> ValueParser {
        ValueParser::new(FlagParser::<T>::new())
    }

    fn given(&self) -> Option<T> {
        self.clone()
    }
}

impl<T: Setting + ListItem> FlagField for Vec<T> {
    type Value = Vec<T>;
    type File = List<T>;
    const NEGATIVE_NUMBERS: bool = T::NUMBER;

    fn parser() -> ValueParser {
        ValueParser::new(FlagParser::<T>::new())
    }

    fn given(&self) -> Option<Vec<T>> {
        (!self.is_empty()).then(|| self.clone())
    }
}

impl FlagField for bool {
    type Value = bool;
    type File = Switch;
    const NEGATIVE_NUMBERS: bool = false;

    fn parser() -> ValueParser {
        ValueParser::bool()
    }

    /// A switch can only turn its setting on: not given, the file decides.
    fn given(&self) -> Option<bool> {
        self.then_some(true)
    }
}

/// What a list's items are called in its messages.
pub trait ListItem {
    /// "expected ITEMS, found ..." for an item of the wrong type.
    const ITEMS: &'static str;
    /// "expected LIST, found ..." for a value that is neither an item nor an array.
    const LIST: &'static str;
}

/// A repeatable setting in the file: one item as a string, or an array of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct List<T>(pub Vec<T>);

impl<T> From<List<T>> for Vec<T> {
    fn from(list: List<T>) -> Vec<T> {
        list.0
    }
}

impl<T: Setting + ListItem> Setting for List<T> {
    fn parse(text: &str) -> Result<Self, String> {
        T::parse(text).map(|item| List(vec![item]))
    }

    fn from_toml(value: &Value) -> Result<Self, String> {
        match value {
            Value::String(s) => Self::parse(s),
            Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    Value::String(s) => T::parse(s),
                    other => Err(expected(T::ITEMS, other)),
                })
                .collect::<Result<_, _>>()
                .map(List),
            other => Err(expected(T::LIST, other)),
        }
    }
}

/// A boolean key (`busy_poll = true`); its flag is a switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switch(pub bool);

impl From<Switch> for bool {
    fn from(s: Switch) -> bool {
        s.0
    }
}

impl Setting for Switch {
    fn parse(text: &str) -> Result<Self, String> {
        match text {
            "true" => Ok(Switch(true)),
            "false" => Ok(Switch(false)),
            _ => Err(format!("{text:?} is not true or false")),
        }
    }

    fn from_toml(value: &Value) -> Result<Self, String> {
        match value {
            Value::Boolean(b) => Ok(Switch(*b)),
            other => Err(expected("a boolean", other)),
        }
    }
}

/// Integer settings: a TOML integer in the file, its decimal text on the command line.
macro_rules! integer_setting {
    ($(#[doc = $doc:tt])* $name:ident($int:ty), $lo:literal..=$hi:expr) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name(pub $int);

        impl $name {
            fn check(n: i64) -> Result<Self, String> {
                match <$int>::try_from(n) {
                    Ok(v) if ($lo..=$hi as i64).contains(&n) => Ok($name(v)),
                    _ => Err(format!("{n} is out of range {}..={}", $lo, $hi)),
                }
            }
        }

        impl Setting for $name {
            const NUMBER: bool = true;

            fn parse(text: &str) -> Result<Self, String> {
                let n = text
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| format!("{text:?} is not an integer"))?;
                Self::check(n)
            }

            fn from_toml(value: &Value) -> Result<Self, String> {
                match value {
                    Value::Integer(n) => Self::check(*n),
                    other => Err(expected("an integer", other)),
                }
            }
        }
    };
}

integer_setting!(
    /// The stratum a local reference is served at (16 would mean unsynchronized).
    Stratum(u8), 1..=15
);
integer_setting!(
    /// Datagrams per receive call.
    BatchSize(usize), 1..=super::MAX_BATCH_SIZE
);
integer_setting!(
    /// A UDP port to serve on (0, "any free port", is no port for requests to be sent to).
    Port(u16), 1..=65535
);
integer_setting!(
    /// Agreeing sources needed to synchronize.
    MinSources(usize), 1..=16
);
integer_setting!(
    /// Requests a client may send back to back before its rate limit applies.
    Burst(u32), 1..=65536
);
integer_setting!(
    /// A "1 in 2^N" share (the limiter's leak and KoD); 0: none.
    Shift(u8), 0..=16
);
integer_setting!(
    /// Bits of an IPv4 address that make one client for the limiter.
    V4PrefixLen(u8), 1..=32
);
integer_setting!(
    /// Bits of an IPv6 address that make one client for the limiter.
    V6PrefixLen(u8), 1..=128
);
integer_setting!(
    /// Clients the limiter's table holds (rounded up to a power of two, at least 1024).
    TrackedClients(u64), 1024..=(1 << 28)
);
integer_setting!(
    /// The server's cap on answers per second, over every client (0: no cap).
    TotalRate(u32), 0..=1_000_000_000
);

/// A prefix of the access list, `ADDR/LEN` or a bare address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AclPrefix(pub crate::proto::admission::Prefix);

impl Setting for AclPrefix {
    fn parse(text: &str) -> Result<Self, String> {
        text.trim().parse().map(AclPrefix)
    }
}

impl ListItem for AclPrefix {
    const ITEMS: &'static str = "prefix strings";
    const LIST: &'static str = "a prefix string or an array of them";
}

impl Setting for crate::proto::admission::DenyAction {
    const CHOICES: &'static [Choice<Self>] = &[
        Choice::new("drop", Self::Drop, "Send nothing"),
        Choice::new("kiss-deny", Self::KissDeny, "A Kiss-o'-Death DENY"),
        Choice::new("kiss-rstr", Self::KissRstr, "A Kiss-o'-Death RSTR"),
    ];

    fn parse(text: &str) -> Result<Self, String> {
        choose(Self::CHOICES, text)
    }
}

/// A duration in seconds: a TOML integer or float in the file, a decimal number on the command
/// line, from 1 ms to `MAX` seconds. Below 1 ms a limit means nothing (`1e-300` would round to
/// zero and forbid every correction), and a value this small is a typo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seconds<const MAX: u32>(pub Duration);

/// `max_distance`: RFC 5905's MAXDIST is 1.5 s; 16 s is already more than any usable source.
pub type Distance = Seconds<16>;
/// The step limits: ten years is the largest limit that still limits anything.
pub type StepLimit = Seconds<320_000_000>;

/// The smallest duration a seconds setting takes.
pub const MIN_SECONDS: f64 = 0.001;

impl<const MAX: u32> Seconds<MAX> {
    fn check(n: f64) -> Result<Self, String> {
        if n.is_finite() && (MIN_SECONDS..=f64::from(MAX)).contains(&n) {
            Ok(Seconds(Duration::from_secs_f64(n)))
        } else {
            // Written as given, but 1e-300 rather than 300 zeros.
            let shown = if n != 0.0 && n.is_finite() && !(1e-4..1e16).contains(&n.abs()) {
                format!("{n:e}")
            } else {
                format!("{n}")
            };
            Err(format!("{shown} is out of range [{MIN_SECONDS}, {MAX}] seconds"))
        }
    }
}

impl<const MAX: u32> Setting for Seconds<MAX> {
    const NUMBER: bool = true;

    fn parse(text: &str) -> Result<Self, String> {
        let n: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not a number of seconds"))?;
        Self::check(n)
    }

    fn from_toml(value: &Value) -> Result<Self, String> {
        match value {
            Value::Float(f) => Self::check(*f),
            Value::Integer(i) => Self::check(*i as f64),
            other => Err(expected("seconds", other)),
        }
    }
}

/// An address to serve on, `ADDR:PORT` (IPv6 as `[ADDR]:PORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenAddr(pub SocketAddr);

impl Setting for ListenAddr {
    fn parse(text: &str) -> Result<Self, String> {
        parse_listen_addr(text).map(ListenAddr)
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl ListItem for ListenAddr {
    const ITEMS: &'static str = "\"ADDR:PORT\" strings";
    const LIST: &'static str = "an array of \"ADDR:PORT\" strings";
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

/// CPU numbers as given: `"0,2-3"`, or an array of integers in the file. They are checked
/// against the machine when the configuration is resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreList(pub Vec<i64>);

impl Setting for CoreList {
    fn parse(text: &str) -> Result<Self, String> {
        parse_core_list(text).map(CoreList)
    }

    fn from_toml(value: &Value) -> Result<Self, String> {
        match value {
            Value::String(s) => Self::parse(s),
            Value::Array(items) => items
                .iter()
                .map(|item| match item {
                    Value::Integer(n) => Ok(*n),
                    other => Err(expected("CPU numbers", other)),
                })
                .collect::<Result<_, _>>()
                .map(CoreList),
            other => Err(expected("a list like \"0-3\" or an array of CPU numbers", other)),
        }
    }
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

/// A network interface's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceName(pub String);

impl Setting for InterfaceName {
    fn parse(text: &str) -> Result<Self, String> {
        // The kernel's IFNAMSIZ is 16 bytes with the NUL.
        if text.is_empty() || text.len() > 15 || text.contains(['/', ' ', '\0']) {
            return Err(format!("{text:?} is not an interface name"));
        }
        Ok(InterfaceName(text.to_string()))
    }
}

impl ListItem for InterfaceName {
    const ITEMS: &'static str = "interface names";
    const LIST: &'static str = "an array of interface names";
}

impl fmt::Display for InterfaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user name to run as (`user`): looked up when the server starts, refused here only when it
/// cannot be a name at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserName(pub String);

impl Setting for UserName {
    fn parse(text: &str) -> Result<Self, String> {
        // What useradd accepts, roughly: no separators of /etc/passwd, no spaces, and short.
        let bad = text.is_empty()
            || text.len() > 32
            || text.starts_with('-')
            || text
                .chars()
                .any(|c| c == ':' || c == '/' || c.is_whitespace() || c.is_control());
        if bad {
            return Err(format!("{text:?} is not a user name"));
        }
        Ok(UserName(text.to_string()))
    }
}

/// How log lines are written (`log_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `LEVEL target: message key=value ...`, for people and journald.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl Setting for LogFormat {
    const CHOICES: &'static [Choice<LogFormat>] = &[
        Choice::new(
            "text",
            LogFormat::Text,
            "One line of text per event, as journald shows it",
        ),
        Choice::new(
            "json",
            LogFormat::Json,
            "One JSON object per line, for log collectors",
        ),
    ];

    fn parse(text: &str) -> Result<Self, String> {
        choose(Self::CHOICES, text)
    }
}

/// An endpoint that may be turned off: `off`, or a place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffOr<T>(pub Option<T>);

impl<T: Setting> Setting for OffOr<T> {
    fn parse(text: &str) -> Result<Self, String> {
        if text.trim() == "off" {
            return Ok(OffOr(None));
        }
        T::parse(text).map(|t| OffOr(Some(t)))
    }
}

/// The longest path a Unix socket address holds (sun_path is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A Unix socket's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketPath(pub PathBuf);

impl Setting for SocketPath {
    fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.contains('\0') {
            return Err(format!("{text:?} is not a socket path"));
        }
        if text.len() > MAX_SOCKET_PATH {
            return Err(format!(
                "{text:?} is longer than a Unix socket path can be ({MAX_SOCKET_PATH} bytes)"
            ));
        }
        Ok(SocketPath(PathBuf::from(text)))
    }
}

/// A directory to write into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirPath(pub PathBuf);

impl Setting for DirPath {
    fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.contains('\0') {
            return Err(format!("{text:?} is not a directory path"));
        }
        Ok(DirPath(PathBuf::from(text)))
    }

    fn from_toml(value: &Value) -> Result<Self, String> {
        match value {
            Value::String(s) => Self::parse(s),
            other => Err(expected("a directory path", other)),
        }
    }
}

/// A file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePath(pub PathBuf);

impl Setting for FilePath {
    fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() || text.contains('\0') {
            return Err(format!("{text:?} is not a file path"));
        }
        Ok(FilePath(PathBuf::from(text)))
    }
}

/// The name or address NTS-KE gives clients for NTP (a DNS name or an IP address, as the NTPv4
/// Server Negotiation record carries it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtsServerName(pub String);

impl Setting for NtsServerName {
    fn parse(text: &str) -> Result<Self, String> {
        let ok = !text.is_empty()
            && text.len() <= 255
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
        if ok {
            Ok(NtsServerName(text.to_string()))
        } else {
            Err(format!("{text:?} is not a host name or an IP address"))
        }
    }
}

/// A time constraint's `https://HOST[:PORT][/PATH]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsUrl(pub crate::proto::control::constraint::ConstraintUrl);

impl Setting for HttpsUrl {
    fn parse(text: &str) -> Result<Self, String> {
        crate::proto::control::constraint::ConstraintUrl::parse(text.trim()).map(HttpsUrl)
    }
}

impl ListItem for HttpsUrl {
    const ITEMS: &'static str = "https:// URL strings";
    const LIST: &'static str = "a URL string or an array of them";
}

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

impl Setting for Mode {
    const CHOICES: &'static [Choice<Mode>] = &[
        Choice::new(
            "auto",
            Mode::Auto,
            "XDP when an interface is given (sockets on its addresses if XDP cannot start), else sockets",
        ),
        Choice::new(
            "socket",
            Mode::Socket,
            "The portable socket path (recvmmsg/sendmmsg)",
        ),
        Choice::new("xdp", Mode::Xdp, "AF_XDP kernel bypass on the --iface interfaces"),
    ];

    fn parse(text: &str) -> Result<Self, String> {
        choose(Self::CHOICES, text)
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Mode, String> {
        Mode::parse(s)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A feature that is on or off: `on`/`off` on the command line, the same strings or a boolean
/// in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnOff(pub bool);

impl Setting for OnOff {
    const CHOICES: &'static [Choice<OnOff>] = &[
        Choice::new("on", OnOff(true), ""),
        Choice::new("off", OnOff(false), ""),
    ];

    fn parse(text: &str) -> Result<Self, String> {
        choose(Self::CHOICES, text)
    }

    fn from_toml(value: &Value) -> Result<Self, String> {
        match value {
            Value::Boolean(b) => Ok(OnOff(*b)),
            Value::String(s) => Self::parse(s),
            other => Err(expected("\"on\", \"off\" or a boolean", other)),
        }
    }
}

impl Setting for UnsyncPolicy {
    const CHOICES: &'static [Choice<UnsyncPolicy>] = &[
        Choice::new(
            "answer",
            UnsyncPolicy::Answer,
            "Answer with leap indicator 3 and stratum 16",
        ),
        Choice::new(
            "drop",
            UnsyncPolicy::Drop,
            "Send nothing, so that clients turn to other servers at once",
        ),
    ];

    fn parse(text: &str) -> Result<Self, String> {
        choose(Self::CHOICES, text)
    }
}

impl Setting for crate::proto::control::leapplan::LeapMode {
    const CHOICES: &'static [Choice<Self>] = &[
        Choice::new(
            "auto",
            Self::Auto,
            "The leap-seconds list, else the upstreams' majority",
        ),
        Choice::new(
            "none",
            Self::None,
            "No leap second, whatever the list or the upstreams say",
        ),
        Choice::new(
            "insert",
            Self::Insert,
            "Insert a second at the end of this month (once)",
        ),
        Choice::new(
            "delete",
            Self::Delete,
            "Delete a second at the end of this month (once)",
        ),
    ];

    fn parse(text: &str) -> Result<Self, String> {
        choose(Self::CHOICES, text)
    }
}

integer_setting!(
    /// The leap smear's window in seconds (one hour to a week).
    SmearWindow(u32), 3600..=604800
);

/// The name of an [`UnsyncPolicy`] as the configuration spells it.
pub const fn unsync_policy_name(policy: UnsyncPolicy) -> &'static str {
    match policy {
        UnsyncPolicy::Answer => "answer",
        UnsyncPolicy::Drop => "drop",
    }
}

/// A log level (the `log` crate's filter, which cannot carry this trait itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLevel(pub LevelFilter);

impl Setting for LogLevel {
    const CHOICES: &'static [Choice<LogLevel>] = &[
        Choice::new("off", LogLevel(LevelFilter::Off), ""),
        Choice::new("error", LogLevel(LevelFilter::Error), ""),
        Choice::new("warn", LogLevel(LevelFilter::Warn), ""),
        Choice::new("info", LogLevel(LevelFilter::Info), ""),
        Choice::new("debug", LogLevel(LevelFilter::Debug), ""),
        Choice::new("trace", LogLevel(LevelFilter::Trace), ""),
    ];

    fn parse(text: &str) -> Result<Self, String> {
        choose(Self::CHOICES, text)
    }
}

/// Which kind of source a [`Source`] setting names.
pub trait KindOfSource: Clone + fmt::Debug + Send + Sync + 'static {
    const KIND: SourceKind;
}

/// `server` entries and `--upstream`.
#[derive(Debug, Clone, Copy)]
pub struct Server;
/// `pool` entries.
#[derive(Debug, Clone, Copy)]
pub struct Pool;
/// `peer` entries and `--peer`.
#[derive(Debug, Clone, Copy)]
pub struct Peer;

impl KindOfSource for Server {
    const KIND: SourceKind = SourceKind::Server;
}
impl KindOfSource for Pool {
    const KIND: SourceKind = SourceKind::Pool;
}
impl KindOfSource for Peer {
    const KIND: SourceKind = SourceKind::Peer;
}

/// An upstream source, `HOST[:PORT] [OPTION...]` (see `control::spec`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source<K>(pub SourceSpec, PhantomData<K>);

impl<K: KindOfSource> Setting for Source<K> {
    fn parse(text: &str) -> Result<Self, String> {
        parse_source(K::KIND, text).map(|spec| Source(spec, PhantomData))
    }
}

impl<K> ListItem for Source<K> {
    const ITEMS: &'static str = "\"HOST[:PORT] [OPTION...]\" strings";
    const LIST: &'static str = "a string or an array of strings";
}

/// A reference clock, `DRIVER:PARAMETER [OPTION...]` (see `control::refclock`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refclock(pub crate::proto::control::refclock::RefclockSpec);

impl Setting for Refclock {
    fn parse(text: &str) -> Result<Self, String> {
        crate::proto::control::refclock::parse_refclock(text).map(Refclock)
    }
}

impl ListItem for Refclock {
    const ITEMS: &'static str = "\"DRIVER:PARAMETER [OPTION...]\" strings";
    const LIST: &'static str = "a string or an array of strings";
}

//! Upstream sources as the configuration names them: `server`, `pool` and `peer` entries and the
//! `--upstream` flag, each written `HOST[:PORT] [OPTION...]` as chrony's directives are, e.g.
//! `time.example.net iburst maxpoll 8` or `[2001:db8::1]:123 prefer`.

use std::fmt;
use std::ops::RangeInclusive;

/// How a configured name becomes associations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// One server, polled in client mode (3); a name resolving to several addresses uses the first.
    Server,
    /// A name resolving to several servers, each polled in client mode; unreachable ones are
    /// replaced by other addresses of the name, and the name is resolved again from time to time.
    Pool,
    /// A symmetric active association (mode 1): peers at the same stratum back each other up.
    Peer,
}

impl SourceKind {
    pub const fn name(self) -> &'static str {
        match self {
            SourceKind::Server => "server",
            SourceKind::Pool => "pool",
            SourceKind::Peer => "peer",
        }
    }
}

/// Poll intervals (log2 seconds) a source may be given: 1 s to 36 h, as RFC 5905 allows.
pub const POLL_RANGE: RangeInclusive<i8> = 0..=17;
pub const DEFAULT_MINPOLL: i8 = 6;
pub const DEFAULT_MAXPOLL: i8 = 10;
/// How many servers of one pool are used at a time unless `maxsources` says otherwise.
pub const DEFAULT_POOL_SOURCES: usize = 4;
pub const DEFAULT_PORT: u16 = 123;
/// The NTS-KE port (RFC 8915), asked unless `ntsport` says otherwise.
pub const DEFAULT_NTS_KE_PORT: u16 = 4460;

/// The options of one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceOptions {
    /// Send a burst of requests at start (and when the source becomes reachable again), so that
    /// the first measurements come within seconds instead of polls.
    pub iburst: bool,
    pub minpoll: i8,
    pub maxpoll: i8,
    /// Preferred as the system peer whenever it survives selection.
    pub prefer: bool,
    /// Measured and logged, never selected.
    pub noselect: bool,
    /// Pools only: how many of its addresses are used at once.
    pub max_sources: usize,
    /// NTS (RFC 8915): keys and cookies from NTS-KE at `nts_port` of the host, every request
    /// authenticated, unauthenticated replies never used. The NTP port is then the one NTS-KE
    /// names, else the entry's.
    pub nts: bool,
    pub nts_port: u16,
    /// Authenticate with this key of the key file (RFC 5905 MAC): requests carry its MAC, and
    /// only replies with a valid MAC of it are used.
    pub key: Option<u32>,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            iburst: false,
            minpoll: DEFAULT_MINPOLL,
            maxpoll: DEFAULT_MAXPOLL,
            prefer: false,
            noselect: false,
            max_sources: DEFAULT_POOL_SOURCES,
            nts: false,
            nts_port: DEFAULT_NTS_KE_PORT,
            key: None,
        }
    }
}

/// One configured source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSpec {
    pub kind: SourceKind,
    /// A name or an address literal (IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub options: SourceOptions,
}

impl SourceSpec {
    /// `host:port` as a resolver takes it (IPv6 literals in brackets).
    pub fn endpoint(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind.name(), self.endpoint())
    }
}

/// Splits `HOST[:PORT]`, `[V6]:PORT`, `[V6]` or a bare IPv6 literal.
fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let port = |p: &str| {
        p.parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("{p:?} is not a port"))
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: unclosed '['"))?;
        let p = match after {
            "" => DEFAULT_PORT,
            _ => port(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("{s:?} is not [ADDR]:PORT"))?,
            )?,
        };
        return Ok((host.to_string(), p));
    }
    match s.matches(':').count() {
        0 => Ok((s.to_string(), DEFAULT_PORT)),
        1 => {
            let (host, p) = s.split_once(':').unwrap();
            Ok((host.to_string(), port(p)?))
        }
        // More than one colon: an IPv6 literal without a port.
        _ => Ok((s.to_string(), DEFAULT_PORT)),
    }
}

/// Parses `HOST[:PORT] [iburst] [prefer] [noselect] [minpoll N] [maxpoll N] [maxsources N]
/// [nts] [ntsport N] [key N]`.
pub fn parse_source(kind: SourceKind, text: &str) -> Result<SourceSpec, String> {
    let mut words = text.split_whitespace();
    let first = words
        .next()
        .ok_or_else(|| "empty source: give HOST[:PORT] [OPTION...]".to_string())?;
    let (host, port) = parse_host_port(first)?;
    if host.is_empty() {
        return Err(format!("{first:?} has no host"));
    }
    let mut options = SourceOptions::default();
    let mut poll_given = (false, false);
    while let Some(word) = words.next() {
        let mut number = |name: &str| -> Result<i64, String> {
            let v = words
                .next()
                .ok_or_else(|| format!("option `{name}` needs a number"))?;
            v.parse::<i64>()
                .map_err(|_| format!("option `{name}`: {v:?} is not a number"))
        };
        let poll = |name: &str, n: i64| -> Result<i8, String> {
            if (*POLL_RANGE.start() as i64..=*POLL_RANGE.end() as i64).contains(&n) {
                Ok(n as i8)
            } else {
                Err(format!(
                    "option `{name}`: {n} is out of range {}..={}",
                    POLL_RANGE.start(),
                    POLL_RANGE.end()
                ))
            }
        };
        match word {
            "iburst" => options.iburst = true,
            "prefer" => options.prefer = true,
            "noselect" => options.noselect = true,
            "minpoll" => {
                options.minpoll = poll(word, number(word)?)?;
                poll_given.0 = true;
            }
            "maxpoll" => {
                options.maxpoll = poll(word, number(word)?)?;
                poll_given.1 = true;
            }
            "key" => {
                let n = number(word)?;
                options.key = Some(
                    u32::try_from(n)
                        .ok()
                        .filter(|&k| k != 0)
                        .ok_or_else(|| format!("option `key`: {n} is not a key ID (1 to 4294967295)"))?,
                );
            }
            "nts" if kind != SourceKind::Peer => options.nts = true,
            "ntsport" if kind != SourceKind::Peer => {
                let n = number(word)?;
                options.nts_port = u16::try_from(n)
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| format!("option `ntsport`: {n} is not a port"))?;
            }
            "maxsources" if kind == SourceKind::Pool => {
                let n = number(word)?;
                if !(1..=16).contains(&n) {
                    return Err(format!("option `maxsources`: {n} is out of range 1..=16"));
                }
                options.max_sources = n as usize;
            }
            other => {
                return Err(format!(
                "unknown option {other:?} (known: iburst, prefer, noselect, minpoll N, maxpoll N, key N{}{})",
                if kind == SourceKind::Pool {
                    ", maxsources N"
                } else {
                    ""
                },
                if kind == SourceKind::Peer {
                    ""
                } else {
                    ", nts, ntsport N"
                }
            ))
            }
        }
    }
    // One bound given alone drags the default of the other along, as chrony does.
    match poll_given {
        (true, false) => options.maxpoll = options.maxpoll.max(options.minpoll),
        (false, true) => options.minpoll = options.minpoll.min(options.maxpoll),
        _ => {}
    }
    if options.minpoll > options.maxpoll {
        return Err(format!(
            "minpoll {} is above maxpoll {}",
            options.minpoll, options.maxpoll
        ));
    }
    Ok(SourceSpec {
        kind,
        host,
        port,
        options,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_ports_and_options() {
        let s = parse_source(SourceKind::Server, "time.example.net iburst maxpoll 8 prefer").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("time.example.net", 123));
        assert!(s.options.iburst && s.options.prefer && !s.options.noselect);
        assert_eq!((s.options.minpoll, s.options.maxpoll), (6, 8));
        assert_eq!(s.endpoint(), "time.example.net:123");

        let s = parse_source(SourceKind::Peer, "[2001:db8::1]:1123 minpoll 2").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("2001:db8::1", 1123));
        assert_eq!((s.options.minpoll, s.options.maxpoll), (2, 10));
        assert_eq!(s.endpoint(), "[2001:db8::1]:1123");

        let s = parse_source(SourceKind::Server, "2001:db8::2 maxpoll 4").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("2001:db8::2", 123));
        assert_eq!((s.options.minpoll, s.options.maxpoll), (4, 4));

        let s = parse_source(SourceKind::Peer, "198.18.0.2 key 4294967295").unwrap();
        assert_eq!(s.options.key, Some(u32::MAX));
        assert_eq!(parse_source(SourceKind::Server, "a").unwrap().options.key, None);

        let s = parse_source(SourceKind::Pool, "pool.example.org:10123 maxsources 2 noselect").unwrap();
        assert_eq!(
            (s.port, s.options.max_sources, s.options.noselect),
            (10123, 2, true)
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let e = |kind, t| parse_source(kind, t).unwrap_err();
        assert!(e(SourceKind::Server, "").contains("empty"));
        assert!(e(SourceKind::Server, "a:0").contains("not a port"));
        assert!(e(SourceKind::Server, "a minpoll").contains("needs a number"));
        assert!(e(SourceKind::Server, "a minpoll 18").contains("out of range"));
        assert!(e(SourceKind::Server, "a minpoll 8 maxpoll 6").contains("above maxpoll"));
        assert!(e(SourceKind::Server, "a burst").contains("unknown option \"burst\""));
        assert!(e(SourceKind::Server, "a maxsources 2").contains("unknown option"));
        assert!(e(SourceKind::Server, "[::1").contains("unclosed"));
        assert!(e(SourceKind::Server, "a ntsport 0").contains("not a port"));
        assert!(e(SourceKind::Server, "a ntsport 70000").contains("not a port"));
        assert!(e(SourceKind::Peer, "a nts").contains("unknown option \"nts\""));
        assert!(e(SourceKind::Server, "a key 0").contains("not a key ID"));
        assert!(e(SourceKind::Server, "a key 4294967296").contains("not a key ID"));
        assert!(e(SourceKind::Server, "a key").contains("needs a number"));
    }

    #[test]
    fn nts_and_its_port() {
        let s = parse_source(SourceKind::Server, "time.example.net nts iburst").unwrap();
        assert!(s.options.nts);
        assert_eq!((s.port, s.options.nts_port), (123, DEFAULT_NTS_KE_PORT));
        let s = parse_source(SourceKind::Pool, "pool.example.org:1123 nts ntsport 14460").unwrap();
        assert!(s.options.nts);
        assert_eq!((s.port, s.options.nts_port), (1123, 14460));
        assert!(!parse_source(SourceKind::Server, "a").unwrap().options.nts);
    }
}

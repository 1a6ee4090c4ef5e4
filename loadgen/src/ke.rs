//! The NTS-KE handshake benchmark (`strata-loadgen-ke`): a number of threads, each running
//! complete NTS-KE sessions back to back for a fixed time (TCP connect, TLS 1.3 handshake, the
//! request, the response with its cookies, the close), so that that many sessions are under way
//! at any moment. Each session may come from the next of many source addresses of a simulated
//! client network: a server's per-address NTS-KE limit (there against one client reconnecting in
//! a loop) then sees a fleet of clients, each within its limit, instead of one flooding address.

use std::collections::BTreeMap;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use strata::daemon::nts::ke_client;
use strata::proto::nts::Aead;

use crate::transport::frame::SrcNet;

/// The most sessions under way at once (threads).
pub const MAX_CONCURRENCY: u16 = 256;

/// What to run.
pub struct KeBench {
    pub target: SocketAddr,
    /// The name the server's certificate must carry.
    pub name: String,
    /// The CA certificate (PEM) the server's certificate is checked against; None: the system's.
    pub ca_pem: Option<Vec<u8>>,
    pub concurrency: u16,
    pub seconds: f64,
    /// Sessions come from the first `.1` addresses of `.0` in turn (IPv4 target only); None: from
    /// the address the kernel picks.
    pub sources: Option<(SrcNet, u32)>,
    /// How long one session may take.
    pub timeout: Duration,
}

/// What a run did, as `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct KeReport {
    pub target: String,
    pub concurrency: u16,
    pub sources: Option<u32>,
    pub seconds: f64,
    /// Sessions that ended with keys and at least one cookie.
    pub sessions_ok: u64,
    pub sessions_failed: u64,
    /// Failed sessions by what went wrong (connect, refused, closed, timeout, tls, ...).
    pub failures: BTreeMap<String, u64>,
    /// The first message of each kind of failure.
    pub failure_examples: BTreeMap<String, String>,
    /// Completed sessions per second over the run.
    pub rate: f64,
    pub cookies: u64,
    /// How long the completed sessions took, connect to close, in µs.
    pub session_us: Percentiles,
    /// The AEAD the server chose (of the last session), by its IANA number.
    pub aead: Option<u16>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Percentiles {
    fn of(mut v: Vec<f64>) -> Percentiles {
        if v.is_empty() {
            return Percentiles::default();
        }
        v.sort_by(f64::total_cmp);
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
        Percentiles {
            p50: at(0.5),
            p99: at(0.99),
            max: v[v.len() - 1],
            mean: v.iter().sum::<f64>() / v.len() as f64,
        }
    }
}

/// One thread's tally.
#[derive(Default)]
struct Tally {
    ok: u64,
    cookies: u64,
    failures: BTreeMap<String, u64>,
    examples: BTreeMap<String, String>,
    durations_us: Vec<f64>,
    aead: Option<u16>,
}

impl Tally {
    fn fail(&mut self, kind: &str, message: String) {
        *self.failures.entry(kind.into()).or_default() += 1;
        self.examples.entry(kind.into()).or_insert(message);
    }
}

/// Runs the benchmark; an error when it cannot start (bad CA file, source net and target of
/// different families).
pub fn run(bench: &KeBench) -> Result<KeReport, String> {
    if bench.concurrency == 0 || bench.concurrency > MAX_CONCURRENCY {
        return Err(format!("concurrency is 1 to {MAX_CONCURRENCY}"));
    }
    let target_v4 = match (bench.target, &bench.sources) {
        (SocketAddr::V4(a), _) => Some(a),
        (SocketAddr::V6(_), Some(_)) => return Err("source addresses need an IPv4 target".into()),
        (SocketAddr::V6(_), None) => None,
    };
    let config = ke_client::client_config(bench.ca_pem.as_deref())?;
    let deadline = Instant::now() + Duration::from_secs_f64(bench.seconds);
    let started = Instant::now();
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..bench.concurrency)
            .map(|index| {
                let config = config.clone();
                scope.spawn(move || session_loop(bench, config, target_v4, index, deadline))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    let mut total = Tally::default();
    for t in tallies {
        total.ok += t.ok;
        total.cookies += t.cookies;
        for (k, v) in t.failures {
            *total.failures.entry(k).or_default() += v;
        }
        for (k, v) in t.examples {
            total.examples.entry(k).or_insert(v);
        }
        total.durations_us.extend(t.durations_us);
        total.aead = total.aead.or(t.aead);
    }
    Ok(KeReport {
        target: bench.target.to_string(),
        concurrency: bench.concurrency,
        sources: bench.sources.as_ref().map(|s| s.1),
        seconds,
        sessions_ok: total.ok,
        sessions_failed: total.failures.values().sum(),
        failures: total.failures,
        failure_examples: total.examples,
        rate: total.ok as f64 / seconds,
        cookies: total.cookies,
        session_us: Percentiles::of(total.durations_us),
        aead: total.aead,
    })
}

fn session_loop(
    bench: &KeBench,
    config: Arc<rustls::ClientConfig>,
    target_v4: Option<SocketAddrV4>,
    index: u16,
    deadline: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut n: u64 = 0;
    while Instant::now() < deadline {
        // Thread i takes sources i, i + concurrency, ...: every address in turn across threads.
        let global = n * bench.concurrency as u64 + index as u64;
        n += 1;
        let began = Instant::now();
        let connected = match (&bench.sources, target_v4) {
            (Some((net, count)), Some(dst)) => {
                let src = *net.flow((global % *count as u64) as u32).ip();
                connect_from(src, dst, bench.timeout)
            }
            _ => TcpStream::connect_timeout(&bench.target, bench.timeout),
        };
        let outcome = connected.map_err(|e| format!("connect: {e}")).and_then(|tcp| {
            ke_client::establish_over(
                config.clone(),
                tcp,
                bench.target,
                &bench.name,
                &Aead::ALL,
                bench.timeout,
            )
        });
        match outcome {
            Ok(est) if !est.response.cookies.is_empty() => {
                tally.ok += 1;
                tally.cookies += est.response.cookies.len() as u64;
                tally.durations_us.push(began.elapsed().as_secs_f64() * 1e6);
                tally.aead = Some(est.keys.aead.id());
            }
            Ok(_) => tally.fail("no_cookie", "a response without cookies".into()),
            Err(e) => tally.fail(failure_kind(&e), e),
        }
    }
    tally
}

/// The kind of a failed session, from ke_client's message.
fn failure_kind(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.starts_with("connect") {
        if m.contains("refused") {
            "connect_refused"
        } else {
            "connect"
        }
    } else if m.contains("timed out") || m.contains("would block") || m.contains("temporarily unavailable") {
        "timeout"
    } else if m.contains("closed before")
        || m.contains("reset")
        || m.contains("broken pipe")
        || m.contains("end of file")
    {
        // A server refusing a session (busy, rate-limited) closes the connection unanswered.
        "closed"
    } else if m.contains("answered error") {
        "error_record"
    } else {
        "tls"
    }
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*a.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn check(ret: libc::c_int) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A TCP connection to `dst` from address `src` (any address of a network routed back to this
/// host: IP_FREEBIND), its port chosen at connect time (IP_BIND_ADDRESS_NO_PORT), the connect
/// bounded by `timeout` (SO_SNDTIMEO bounds connect on Linux).
fn connect_from(src: Ipv4Addr, dst: SocketAddrV4, timeout: Duration) -> io::Result<TcpStream> {
    // SAFETY: socket() takes plain integers; the result is checked before use.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    check(raw)?;
    // SAFETY: `raw` is a descriptor just made and owned by nothing else; OwnedFd closes it.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let one: libc::c_int = 1;
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: timeout.subsec_micros() as libc::suseconds_t,
    };
    for (level, name, value, len) in [
        (
            libc::IPPROTO_IP,
            libc::IP_FREEBIND,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>(),
        ),
        (
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>(),
        ),
        (
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            &tv as *const libc::timeval as *const libc::c_void,
            std::mem::size_of::<libc::timeval>(),
        ),
    ] {
        // SAFETY: `value` points at a live local of `len` bytes, as the option expects.
        check(unsafe { libc::setsockopt(raw, level, name, value, len as libc::socklen_t) })?;
    }
    let local = sockaddr(SocketAddrV4::new(src, 0));
    // SAFETY: `local` is a valid sockaddr_in and its size is given.
    check(unsafe {
        libc::bind(
            raw,
            &local as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    })?;
    let remote = sockaddr(dst);
    // SAFETY: as for bind.
    check(unsafe {
        libc::connect(
            raw,
            &remote as *const libc::sockaddr_in as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    })?;
    Ok(TcpStream::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_kinds_from_the_client_messages() {
        assert_eq!(
            failure_kind("connect 1.2.3.4:4460: Connection refused (os error 111)"),
            "connect_refused"
        );
        assert_eq!(failure_kind("connect: Connection timed out"), "connect");
        assert_eq!(
            failure_kind("NTS-KE with 1.2.3.4:4460: closed before the response ended"),
            "closed"
        );
        assert_eq!(
            failure_kind("NTS-KE with a: Connection reset by peer (os error 104)"),
            "closed"
        );
        assert_eq!(failure_kind("NTS-KE with a: unexpected end of file"), "closed");
        assert_eq!(failure_kind("NTS-KE with a: timed out"), "timeout");
        assert_eq!(
            failure_kind("NTS-KE with a: the server answered error 1"),
            "error_record"
        );
        assert_eq!(
            failure_kind("NTS-KE with a: invalid peer certificate: UnknownIssuer"),
            "tls"
        );
    }

    #[test]
    fn percentiles_of_a_few_values() {
        let p = Percentiles::of(vec![3.0, 1.0, 2.0, 4.0, 100.0]);
        assert_eq!((p.p50, p.max, p.mean), (3.0, 100.0, 22.0));
        assert_eq!(Percentiles::of(Vec::new()).max, 0.0);
    }

    #[test]
    fn refuses_what_it_cannot_run() {
        let mut bench = KeBench {
            target: "[::1]:4460".parse().unwrap(),
            name: "localhost".into(),
            ca_pem: Some(Vec::new()),
            concurrency: 1,
            seconds: 0.1,
            sources: Some((SrcNet::parse("198.19.0.0/16").unwrap(), 4)),
            timeout: Duration::from_secs(1),
        };
        assert!(run(&bench).unwrap_err().contains("IPv4"));
        bench.concurrency = 0;
        assert!(run(&bench).unwrap_err().contains("concurrency"));
    }

    #[test]
    fn a_closed_port_counts_as_refused_connections() {
        // A port nobody listens on (bound and closed again): every session fails at connect.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let bench = KeBench {
            target: SocketAddr::from(([127, 0, 0, 1], port)),
            name: "localhost".into(),
            // An empty trust store: nothing gets as far as TLS here.
            ca_pem: Some(Vec::new()),
            concurrency: 2,
            seconds: 0.05,
            sources: None,
            timeout: Duration::from_secs(1),
        };
        let report = run(&bench).unwrap();
        assert_eq!(report.sessions_ok, 0);
        assert!(report.sessions_failed > 0);
        assert_eq!(
            report.failures.keys().collect::<Vec<_>>(),
            vec!["connect_refused"]
        );
    }
}

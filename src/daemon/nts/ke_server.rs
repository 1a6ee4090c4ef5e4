//! The NTS-KE server: TCP, TLS 1.3 and the records of RFC 8915 section 4, on threads of its own
//! (never the responders'). One accept loop; each connection on a thread of its own, at most
//! [`MAX_SESSIONS`] at once (more are closed at once and counted), each bounded in time
//! ([`SESSION_DEADLINE`]) and size, and each client address limited in how often it may start a
//! session (the same GCRA limiter as NTP's admission), so that a fleet reconnecting in a loop
//! cannot take the server down.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::ServerConnection;
use serde::{Deserialize, Serialize};

use super::tls::{CertWatch, ALPN};
use crate::proto::admission::{LimitDecision, Limiter, LimiterConfig};
use crate::proto::nts::cookie::{cookie_len, MAX_COOKIE_LEN};
use crate::proto::nts::ke::{self, Negotiated};
use crate::proto::nts::{NtsKeys, SessionKeys};

/// Sessions served at once.
pub const MAX_SESSIONS: usize = 64;
/// How long a whole session may take, handshake included.
pub const SESSION_DEADLINE: Duration = Duration::from_secs(10);
/// Cookies per session (RFC 8915 section 4.1.6 suggests 8).
pub const COOKIES: usize = 8;
/// Per client address: a session every 2 s on average after a burst of 16.
const SESSION_LIMIT: LimiterConfig = LimiterConfig {
    interval_ns: 2_000_000_000,
    burst: 16,
    leak: 0,
    kod: 0,
    v4_prefix: 32,
    v6_prefix: 64,
    buckets_log2: 14,
};
const TICK: Duration = Duration::from_millis(100);

/// What the sessions ended in, for /metrics and `strata status`.
#[derive(Default)]
pub struct KeStats {
    pub ok: AtomicU64,
    pub bad_request: AtomicU64,
    pub tls_failed: AtomicU64,
    pub timed_out: AtomicU64,
    pub busy: AtomicU64,
    pub rate_limited: AtomicU64,
    active: AtomicUsize,
}

/// [`KeStats`] as numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeCounts {
    pub ok: u64,
    pub bad_request: u64,
    pub tls_failed: u64,
    pub timed_out: u64,
    pub busy: u64,
    pub rate_limited: u64,
}

impl KeStats {
    pub fn counts(&self) -> KeCounts {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        KeCounts {
            ok: l(&self.ok),
            bad_request: l(&self.bad_request),
            tls_failed: l(&self.tls_failed),
            timed_out: l(&self.timed_out),
            busy: l(&self.busy),
            rate_limited: l(&self.rate_limited),
        }
    }
}

/// What a session needs besides its connection.
pub struct KeOptions {
    pub keys: NtsKeys,
    pub ntp_server: Option<String>,
    pub ntp_port: Option<u16>,
}

/// Binds `addr` (a clear error when it cannot) and serves NTS-KE on it until `shutdown`.
pub fn start(
    addr: SocketAddr,
    mut certs: CertWatch,
    options: KeOptions,
    stats: Arc<KeStats>,
    reload: Arc<AtomicBool>,
    shutdown: Arc<AtomicBool>,
) -> io::Result<(SocketAddr, thread::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)
        .map_err(|e| io::Error::new(e.kind(), format!("NTS-KE: cannot listen on {addr}: {e}")))?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let options = Arc::new(options);
    let limiter = Limiter::new(SESSION_LIMIT, {
        let s = crate::sys::random::seed();
        [
            u64::from_ne_bytes(s[..8].try_into().expect("8 bytes")),
            u64::from_ne_bytes(s[8..16].try_into().expect("8 bytes")),
        ]
    });
    let started = Instant::now();
    let thread = thread::Builder::new()
        .name("strata-nts-ke".into())
        .spawn(move || {
            while !shutdown.load(Ordering::Relaxed) {
                if let Some(result) = certs.refresh(reload.swap(false, Ordering::Relaxed)) {
                    match result {
                        Ok(()) => log::info!("NTS-KE: certificate reloaded"),
                        Err(e) => log::error!("NTS-KE: {e}; still serving the previous certificate"),
                    }
                }
                let (stream, peer) = match listener.accept() {
                    Ok(accepted) => accepted,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        wait_acceptable(&listener, TICK);
                        continue;
                    }
                    Err(e) => {
                        log::warn!("NTS-KE: accept failed: {e}");
                        thread::sleep(TICK);
                        continue;
                    }
                };
                let now = started.elapsed().as_nanos() as u64;
                if !matches!(
                    limiter.check(peer.ip(), now),
                    LimitDecision::Serve | LimitDecision::Burst
                ) {
                    stats.rate_limited.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if stats.active.load(Ordering::Relaxed) >= MAX_SESSIONS {
                    stats.busy.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                stats.active.fetch_add(1, Ordering::Relaxed);
                let (config, options, session_stats) = (certs.config.clone(), options.clone(), stats.clone());
                let spawned = thread::Builder::new()
                    .name("strata-nts-session".into())
                    .spawn(move || {
                        let stats = session_stats;
                        let outcome = session(stream, config, &options);
                        let counter = match &outcome {
                            Ok(()) => &stats.ok,
                            Err(SessionError::BadRequest) => &stats.bad_request,
                            Err(SessionError::TimedOut) => &stats.timed_out,
                            Err(SessionError::Tls(_)) => &stats.tls_failed,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                        if let Err(SessionError::Tls(e)) = outcome {
                            log::debug!("NTS-KE session from {peer}: {e}");
                        }
                        stats.active.fetch_sub(1, Ordering::Relaxed);
                    });
                if spawned.is_err() {
                    stats.active.fetch_sub(1, Ordering::Relaxed);
                    stats.busy.fetch_add(1, Ordering::Relaxed);
                }
            }
        })?;
    Ok((local, thread))
}

/// Waits until `listener` has a connection to accept, or `timeout` passes: a connection is
/// taken as soon as it arrives, and the loop still looks at the shutdown flag and the
/// certificate every `timeout`. (A sleep between accepts, as before, held each new connection up
/// to `timeout`: with 100 ms, at most one batch of sessions per tick, which capped handshakes
/// per second at ten times the number of clients connecting at once.)
fn wait_acceptable(listener: &TcpListener, timeout: Duration) {
    let mut fd = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd and its count; poll writes only its revents. An error (EINTR)
    // just ends the wait early, and the caller's accept says what is there.
    unsafe { libc::poll(&mut fd, 1, timeout.as_millis() as libc::c_int) };
}

#[derive(Debug)]
enum SessionError {
    BadRequest,
    TimedOut,
    Tls(String),
}

impl From<io::Error> for SessionError {
    fn from(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => SessionError::TimedOut,
            _ => SessionError::Tls(e.to_string()),
        }
    }
}

/// One session: the handshake, the request, the response with cookies, the close.
fn session(
    mut tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    options: &KeOptions,
) -> Result<(), SessionError> {
    let deadline = Instant::now() + SESSION_DEADLINE;
    tcp.set_nonblocking(false)?;
    // Each flight is written whole and then waited on: Nagle's algorithm would hold a flight's
    // last small segment until the client's (delayed) ACK of the previous one.
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut conn = ServerConnection::new(config).map_err(|e| SessionError::Tls(e.to_string()))?;
    let mut request = Vec::new();
    let records = loop {
        if Instant::now() > deadline {
            return Err(SessionError::TimedOut);
        }
        let mut chunk = [0u8; 1024];
        let n = rustls::Stream::new(&mut conn, &mut tcp).read(&mut chunk)?;
        if n == 0 {
            return Err(SessionError::Tls(
                "the client closed before its request ended".into(),
            ));
        }
        request.extend_from_slice(&chunk[..n]);
        if request.len() > ke::MAX_REQUEST {
            return Err(SessionError::BadRequest);
        }
        if let Some(records) = ke::records(&request) {
            break records;
        }
    };
    if conn.alpn_protocol() != Some(ALPN) {
        return Err(SessionError::Tls(
            "the client did not ask for ALPN ntske/1".into(),
        ));
    }
    let negotiated = match records {
        Ok(records) => ke::negotiate(&records),
        Err(()) => Negotiated::Error(ke::ERROR_BAD_REQUEST),
    };
    let response = match negotiated {
        Negotiated::Ntpv4(aead) => {
            let mut c2s = [0u8; 32];
            let mut s2c = [0u8; 32];
            let n = aead.key_len();
            for (out, s2c_side) in [(&mut c2s, false), (&mut s2c, true)] {
                conn.export_keying_material(
                    &mut out[..n],
                    ke::EXPORTER_LABEL.as_bytes(),
                    Some(&ke::exporter_context(aead, s2c_side)),
                )
                .map_err(|e| SessionError::Tls(e.to_string()))?;
            }
            let keys = SessionKeys::new(aead, &c2s[..n], &s2c[..n]).ok_or(SessionError::BadRequest)?;
            let mut cookie_keys = options.keys.responder(crate::sys::random::seed());
            let unix_s = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let mut cookies = vec![[0u8; MAX_COOKIE_LEN]; COOKIES];
            for cookie in cookies.iter_mut() {
                let mut nonce = [0u8; 16];
                cookie_keys.nonces.fill(&mut nonce);
                cookie_keys
                    .keys
                    .seal(&keys, unix_s, &nonce, cookie)
                    .map_err(|_| SessionError::Tls("cannot seal a cookie".into()))?;
            }
            let len = cookie_len(aead);
            let refs: Vec<&[u8]> = cookies.iter().map(|c| &c[..len]).collect();
            ke::response(aead, &refs, options.ntp_server.as_deref(), options.ntp_port)
        }
        ref refused => ke::refusal(refused),
    };
    let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
    stream.write_all(&response)?;
    stream.flush()?;
    conn.send_close_notify();
    while conn.wants_write() {
        conn.write_tls(&mut tcp)?;
    }
    match negotiated {
        Negotiated::Ntpv4(_) => Ok(()),
        _ => Err(SessionError::BadRequest),
    }
}

//! Fetching the time constraints (`constraint` URLs): a minimal HTTP/1.1 GET over TLS 1.3 with
//! the certificate checked (the system's trust store, or `nts_trusted_certs`), timed with the
//! kernel clock around the request, at start and then hourly. Each fetch runs on a short-lived
//! thread bounded by [`FETCH_TIMEOUT`] and reads at most [`MAX_HEAD`] bytes (the response head:
//! the body is never read), and its result comes back over a channel the control loop drains
//! without waiting. What the Date says is `crate::proto::control::constraint`'s to judge.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

use crate::daemon::nts::ke_client::{describe_tls_error, trusting};
use crate::proto::control::constraint::{head_end, response_date, Constraint, ConstraintUrl, Constraints};
use crate::sys::clock::read::read_clock_ns;

/// The longest one fetch may take (connect, handshake, request and response head).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The most of a response that is read: its head (status line and headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// Constraints are fetched again this often...
pub const REFRESH: Duration = Duration::from_secs(3600);
/// ...or this soon when none could be fetched.
pub const RETRY: Duration = Duration::from_secs(300);

type Answer = (usize, Result<Constraint, String>);

/// The configured constraints, their latest fetches, and the fetches in flight.
pub struct ConstraintFetcher {
    urls: Vec<ConstraintUrl>,
    trusted: Option<PathBuf>,
    /// Each URL's latest constraint (kept, widening with age, when a later fetch fails) and
    /// its latest error.
    latest: Vec<Option<Constraint>>,
    errors: Vec<Option<String>>,
    in_flight: usize,
    next_round: Instant,
    tx: Sender<Answer>,
    rx: Receiver<Answer>,
}

impl ConstraintFetcher {
    pub fn new(urls: Vec<ConstraintUrl>, trusted: Option<&Path>) -> ConstraintFetcher {
        let (tx, rx) = channel();
        let n = urls.len();
        ConstraintFetcher {
            urls,
            trusted: trusted.map(Path::to_path_buf),
            latest: vec![None; n],
            errors: vec![None; n],
            in_flight: 0,
            next_round: Instant::now(),
            tx,
            rx,
        }
    }

    /// Starts a round when one is due and takes the answers in: the constraints in force when
    /// they changed.
    pub fn poll(&mut self) -> Option<Constraints> {
        if self.urls.is_empty() {
            return None;
        }
        if self.in_flight == 0 && Instant::now() >= self.next_round {
            self.start_round();
        }
        let answers: Vec<Answer> = self.rx.try_iter().collect();
        if answers.is_empty() {
            return None;
        }
        for (i, answer) in answers {
            self.in_flight -= 1;
            match answer {
                Ok(c) => {
                    self.latest[i] = Some(c);
                    self.errors[i] = None;
                }
                Err(e) => {
                    log::warn!("time constraint {}: {e}", self.urls[i]);
                    self.errors[i] = Some(e);
                }
            }
        }
        if self.in_flight == 0 {
            let fetched = self.errors.iter().filter(|e| e.is_none()).count();
            let usable = self.latest.iter().flatten().count();
            self.next_round = Instant::now() + if fetched == 0 { RETRY } else { REFRESH };
            if usable == 0 {
                log::warn!(
                    "no time constraint reachable ({} configured): sources are not checked \
                     against one; trying again in {} s",
                    self.urls.len(),
                    RETRY.as_secs()
                );
            } else {
                log::info!(
                    "time constraints: {fetched} of {} fetched, {usable} in force",
                    self.urls.len()
                );
            }
        }
        Some(Constraints::new(self.latest.iter().flatten().copied().collect()))
    }

    /// One line for the status: how many are in force, and the errors.
    pub fn describe(&self) -> Option<String> {
        if self.urls.is_empty() {
            return None;
        }
        let usable = self.latest.iter().flatten().count();
        let mut text = if usable == 0 && self.in_flight == 0 && self.errors.iter().any(Option::is_some) {
            format!(
                "none of {} reachable: sources are not checked against one",
                self.urls.len()
            )
        } else {
            format!("{usable} of {} in force", self.urls.len())
        };
        for (url, e) in self.urls.iter().zip(&self.errors) {
            if let Some(e) = e {
                text.push_str(&format!("; {url}: {e}"));
            }
        }
        Some(text)
    }

    fn start_round(&mut self) {
        let config = match trusting(self.trusted.as_deref(), b"http/1.1") {
            Ok(c) => c,
            Err(e) => {
                for (i, _) in self.urls.iter().enumerate() {
                    let _ = self.tx.send((i, Err(format!("no certificates to trust ({e})"))));
                }
                self.in_flight = self.urls.len();
                return;
            }
        };
        for (i, url) in self.urls.iter().enumerate() {
            let (tx, url, config) = (self.tx.clone(), url.clone(), config.clone());
            self.in_flight += 1;
            let spawned = thread::Builder::new()
                .name("strata-constraint".into())
                .spawn(move || {
                    let _ = tx.send((i, fetch(config, &url)));
                });
            if let Err(e) = spawned {
                let _ = self.tx.send((i, Err(format!("cannot start a thread: {e}"))));
            }
        }
    }
}

/// One GET of `url`: the Date of the response, timed around the request.
fn fetch(config: Arc<ClientConfig>, url: &ConstraintUrl) -> Result<Constraint, String> {
    let deadline = Instant::now() + FETCH_TIMEOUT;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let addr = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", url.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", url.host))?;
    let name = ServerName::try_from(url.host.clone()).map_err(|e| format!("{}: {e}", url.host))?;
    let mut conn = ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let mut tcp =
        TcpStream::connect_timeout(&addr, FETCH_TIMEOUT).map_err(|e| format!("connect {addr}: {e}"))?;
    tcp.set_write_timeout(Some(FETCH_TIMEOUT))
        .map_err(|e| e.to_string())?;
    // The handshake first, so that the round trip timed is the request's alone.
    while conn.is_handshaking() {
        tcp.set_read_timeout(Some(left())).map_err(|e| e.to_string())?;
        conn.complete_io(&mut tcp)
            .map_err(|e| describe_tls_error(format!("TLS with {addr}: {e}")))?;
        if Instant::now() > deadline {
            return Err(format!("TLS with {addr}: timed out"));
        }
    }
    let sent = read_clock_ns(libc::CLOCK_REALTIME);
    rustls::Stream::new(&mut conn, &mut tcp)
        .write_all(url.request().as_bytes())
        .map_err(|e| format!("request to {addr}: {e}"))?;
    let mut response = Vec::new();
    let end = loop {
        if Instant::now() > deadline {
            return Err(format!(
                "{addr}: no response within {} s",
                FETCH_TIMEOUT.as_secs()
            ));
        }
        tcp.set_read_timeout(Some(left())).map_err(|e| e.to_string())?;
        let mut chunk = [0u8; 4096];
        let n = rustls::Stream::new(&mut conn, &mut tcp)
            .read(&mut chunk)
            .map_err(|e| describe_tls_error(format!("response from {addr}: {e}")))?;
        if n == 0 {
            return Err(format!("{addr} closed before the response head ended"));
        }
        response.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&response) {
            break end;
        }
        if response.len() > MAX_HEAD {
            return Err(format!("{addr}: response head longer than {MAX_HEAD} bytes"));
        }
    };
    let received = read_clock_ns(libc::CLOCK_REALTIME);
    let date = response_date(&response[..end])?;
    Ok(Constraint::new(date, sent, received))
}

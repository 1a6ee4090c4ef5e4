//! NTS-KE for upstream sources, off the control thread: a TLS handshake with a slow or silent
//! server can take seconds, and the control thread must keep polling the sources it has. Each
//! session runs on a short-lived thread bounded by [`KE_TIMEOUT`] (connect, handshake and
//! response together), and its result comes back over a channel the control loop drains without
//! waiting, as name resolution does (`super::resolve`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use rustls::ClientConfig;

use crate::daemon::nts::ke_client::{describe_tls_error, establish, trusting};
use crate::daemon::nts::tls::ALPN;
use crate::proto::control::engine::SourceId;
use crate::proto::nts::session::ClientSession;
use crate::proto::nts::Aead;

/// The longest one NTS-KE session may take.
pub const KE_TIMEOUT: Duration = Duration::from_secs(10);

/// What a session gave: where to send NTP, and the keys and cookies to send it with.
pub struct NtsStart {
    pub ntp: SocketAddr,
    pub session: ClientSession,
}

/// An answer: which configured entry, which of its addresses, and the session (or why not).
pub struct KeAnswer {
    pub entry: usize,
    /// The NTS-KE server's address the session was with.
    pub ke_addr: SocketAddr,
    /// The association the session renews, if it is a renewal.
    pub rekey: Option<SourceId>,
    pub result: Result<NtsStart, String>,
}

/// Runs NTS-KE sessions for the control thread.
pub struct KeRunner {
    /// The CA certificates to trust (PEM), or the system's store.
    trusted: Option<PathBuf>,
    /// The TLS configuration, made at the first session (read once: a bad file is reported
    /// with every session's failure).
    config: Option<Result<Arc<ClientConfig>, String>>,
    tx: Sender<KeAnswer>,
    rx: Receiver<KeAnswer>,
}

impl KeRunner {
    /// Trusting the CA certificates in `trusted` (PEM), or the system's store.
    pub fn new(trusted: Option<&Path>) -> KeRunner {
        let (tx, rx) = channel();
        KeRunner {
            trusted: trusted.map(Path::to_path_buf),
            config: None,
            tx,
            rx,
        }
    }

    fn config(&mut self) -> Result<Arc<ClientConfig>, String> {
        let trusted = self.trusted.as_deref();
        self.config
            .get_or_insert_with(|| {
                let config = trusting(trusted, ALPN);
                if let Err(e) = &config {
                    log::error!("NTS sources cannot be used: no certificates to trust ({e})");
                }
                config
            })
            .clone()
    }

    /// Starts a session with the NTS-KE server at `ke_addr`, whose certificate must name `host`;
    /// NTP goes where the server says, else to `ke_addr`'s host at `ntp_port`. `rekey`: the
    /// association this renews, handed back with the answer.
    pub fn request(
        &mut self,
        entry: usize,
        host: String,
        ke_addr: SocketAddr,
        ntp_port: u16,
        rekey: Option<SourceId>,
    ) {
        let tx = self.tx.clone();
        let config = match self.config() {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send(KeAnswer {
                    entry,
                    ke_addr,
                    rekey,
                    result: Err(format!("NTS-KE failed: no trusted certificates ({e})")),
                });
                return;
            }
        };
        let spawned = thread::Builder::new()
            .name("strata-nts-ke".into())
            .spawn(move || {
                let result =
                    key_exchange(config, &host, ke_addr, ntp_port).map_err(|e| format!("NTS-KE failed: {e}"));
                let _ = tx.send(KeAnswer {
                    entry,
                    ke_addr,
                    rekey,
                    result,
                });
            });
        if let Err(e) = spawned {
            let _ = self.tx.send(KeAnswer {
                entry,
                ke_addr,
                rekey,
                result: Err(format!("NTS-KE failed: cannot start a thread: {e}")),
            });
        }
    }

    /// The answers that have come in.
    pub fn answers(&self) -> Vec<KeAnswer> {
        self.rx.try_iter().collect()
    }
}

fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
    let endpoint = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let addrs: Vec<SocketAddr> = endpoint
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {endpoint}: {e}"))?
        .collect();
    if addrs.is_empty() {
        return Err(format!("{endpoint} has no address"));
    }
    Ok(addrs)
}

fn key_exchange(
    config: Arc<ClientConfig>,
    host: &str,
    ke_addr: SocketAddr,
    ntp_port: u16,
) -> Result<NtsStart, String> {
    let est = establish(config, ke_addr, host, &Aead::ALL, KE_TIMEOUT).map_err(describe_tls_error)?;
    if est.response.cookies.is_empty() {
        return Err(format!("{ke_addr} gave no cookie"));
    }
    // RFC 8915 4.1.7/4.1.8: the NTPv4 server and port records, else the NTS-KE server's host.
    let port = est.response.port.unwrap_or(ntp_port);
    let ntp = match &est.response.server {
        Some(name) => {
            let addrs = resolve(name, port)?;
            addrs
                .iter()
                .find(|a| a.is_ipv4() == ke_addr.is_ipv4())
                .copied()
                .unwrap_or(addrs[0])
        }
        None => SocketAddr::new(ke_addr.ip(), port),
    };
    Ok(NtsStart {
        ntp,
        session: ClientSession::new(est.keys, est.response.cookies),
    })
}

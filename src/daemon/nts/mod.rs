//! Network Time Security for `strata serve`: the master key, the NTS-KE server and what the
//! responders get (the keys; src/proto/nts/ answers the requests).
//!
//! - [`master_key`]: the master key file (created when missing, shared by a fleet);
//! - [`tls`]: the TLS 1.3 configuration and the certificate reload;
//! - [`ke_server`]: the NTS-KE server on its own threads.

pub mod ke_client;
pub mod ke_server;
pub mod master_key;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use crate::daemon::config::NtsConfig;
use crate::proto::nts::NtsKeys;
pub use ke_server::{KeCounts, KeStats};

/// The running NTS service.
pub struct NtsService {
    /// What every responder gets.
    pub keys: NtsKeys,
    pub ke_addr: SocketAddr,
    pub stats: Arc<KeStats>,
    /// Set to reload the certificate now (SIGHUP).
    pub reload: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// The NTS service as the observers see it (no key material).
#[derive(Clone)]
pub struct NtsView {
    ke_addr: SocketAddr,
    stats: Arc<KeStats>,
    rotation: crate::proto::nts::Rotation,
}

impl NtsView {
    pub fn report(&self) -> NtsReport {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        NtsReport {
            ke_listen: self.ke_addr.to_string(),
            sessions: self.stats.counts(),
            key_epoch: self.rotation.epoch(now),
            key_age_s: self.rotation.key_age_s(now),
            rotation_s: self.rotation.period_s,
            grace: self.rotation.grace,
        }
    }
}

/// The NTS state `strata status` and /metrics show.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NtsReport {
    pub ke_listen: String,
    pub sessions: KeCounts,
    /// The current cookie key's epoch and how long it has been in use.
    pub key_epoch: u32,
    pub key_age_s: u64,
    pub rotation_s: u64,
    pub grace: u32,
}

impl NtsService {
    /// Loads the key and the certificate and starts NTS-KE; nothing is left running on error.
    pub fn start(config: &NtsConfig, shutdown: Arc<AtomicBool>) -> Result<NtsService, String> {
        let (master, created) = master_key::load_or_create(&config.key_file)?;
        if created {
            log::info!(
                "NTS: created the master key {} (copy it to every node that must accept this one's cookies)",
                config.key_file.display()
            );
        } else if master_key::readable_by_others(&config.key_file) {
            log::warn!(
                "NTS: the master key {} can be read by others than its owner (chmod 600 it)",
                config.key_file.display()
            );
        }
        let certs = tls::CertWatch::new(&config.certificate, &config.private_key)?;
        let keys = NtsKeys {
            master,
            rotation: config.rotation,
            require: config.require,
        };
        let stats = Arc::new(KeStats::default());
        let reload = Arc::new(AtomicBool::new(false));
        let (ke_addr, thread) = ke_server::start(
            config.ke_listen,
            certs,
            ke_server::KeOptions {
                keys: keys.clone(),
                ntp_server: config.ntp_server.clone(),
                ntp_port: config.ntp_port,
            },
            stats.clone(),
            reload.clone(),
            shutdown,
        )
        .map_err(|e| e.to_string())?;
        log::info!(
            "NTS-KE on {ke_addr} (TLS 1.3, ALPN ntske/1; certificate {}); cookie keys rotate every {} s, {} earlier ones accepted{}",
            config.certificate.display(),
            config.rotation.period_s,
            config.rotation.grace,
            if config.require {
                "; only NTS requests are answered (require_nts)"
            } else {
                ""
            }
        );
        Ok(NtsService {
            keys,
            ke_addr,
            stats,
            reload,
            thread,
        })
    }

    /// What the observers read.
    pub fn view(&self) -> NtsView {
        NtsView {
            ke_addr: self.ke_addr,
            stats: self.stats.clone(),
            rotation: self.keys.rotation,
        }
    }

    /// Waits for the NTS-KE thread (after the shutdown flag was set).
    pub fn join(self) {
        if self.thread.join().is_err() {
            log::warn!("the NTS-KE thread panicked");
        }
    }
}

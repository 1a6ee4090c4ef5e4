//! The NTS-KE server's TLS configuration: TLS 1.3 only, ALPN `ntske/1` (RFC 8915 section 4),
//! the certificate chain and key from PEM files, and a watch that reloads them when the files
//! change, so that a renewed certificate (ACME) needs no restart.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

/// The ALPN protocol of NTS-KE.
pub const ALPN: &[u8] = b"ntske/1";
/// How often the files are looked at.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// A TLS configuration from `cert` (the chain, leaf first) and `key`.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cannot read the NTS certificate {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("the NTS certificate {} is not PEM: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("{} holds no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the NTS private key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| format!("TLS 1.3: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the NTS certificate and key do not go together: {e}"))?;
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// The current configuration, reloaded when either file's modification time changes. A file
/// that fails to load keeps the old configuration (and says why, once per change).
pub struct CertWatch {
    cert: PathBuf,
    key: PathBuf,
    stamps: (Option<SystemTime>, Option<SystemTime>),
    checked: Instant,
    pub config: Arc<ServerConfig>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl CertWatch {
    pub fn new(cert: &Path, key: &Path) -> Result<CertWatch, String> {
        Ok(CertWatch {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            stamps: (modified(cert), modified(key)),
            checked: Instant::now(),
            config: load(cert, key)?,
        })
    }

    /// Reloads if the files changed since the last look (at most every few seconds, or now when
    /// `force`, as on SIGHUP). Returns what happened, for the log.
    pub fn refresh(&mut self, force: bool) -> Option<Result<(), String>> {
        if !force && self.checked.elapsed() < CHECK_EVERY {
            return None;
        }
        self.checked = Instant::now();
        let stamps = (modified(&self.cert), modified(&self.key));
        if !force && stamps == self.stamps {
            return None;
        }
        self.stamps = stamps;
        Some(load(&self.cert, &self.key).map(|config| self.config = config))
    }
}

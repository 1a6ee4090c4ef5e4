//! The client side of NTS-KE: one blocking TLS 1.3 session that asks for NTPv4 and an AEAD and
//! returns the cookies, the exported keys and where to send NTP. strata's tests, the load
//! generator and NTS towards upstream sources (`crate::daemon::control::nts_source`) use it.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::tls::ALPN;
use crate::proto::nts::ke::{self, KeResponse};
use crate::proto::nts::{Aead, SessionKeys};

/// The longest response read: eight cookies and a few records fit many times over.
const MAX_RESPONSE: usize = 64 * 1024;

/// What a session gave.
#[derive(Debug, Clone)]
pub struct Established {
    pub keys: SessionKeys,
    pub response: KeResponse,
}

/// A TLS configuration trusting the CA certificates in `ca_pem` (PEM), or the system's store
/// when None is given.
pub fn client_config(ca_pem: Option<&[u8]>) -> Result<Arc<ClientConfig>, String> {
    tls_client_config(ca_pem, ALPN)
}

/// rustls's reason for a failed session as an operator reads it: an unknown issuer is a
/// certificate not trusted.
pub fn describe_tls_error(e: String) -> String {
    if e.contains("UnknownIssuer") || e.contains("invalid peer certificate") {
        format!("certificate not trusted ({e})")
    } else {
        e
    }
}

/// A TLS 1.3 client configuration for `alpn`, trusting the CA certificates in the PEM file
/// `trusted`, or the system's store when None is given (strata's NTS sources and the HTTPS of
/// its time constraints).
pub fn trusting(trusted: Option<&std::path::Path>, alpn: &[u8]) -> Result<Arc<ClientConfig>, String> {
    match trusted {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            tls_client_config(Some(&pem), alpn)
        }
        None => tls_client_config(None, alpn),
    }
}

fn tls_client_config(ca_pem: Option<&[u8]>, alpn: &[u8]) -> Result<Arc<ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            for cert in CertificateDer::pem_slice_iter(pem) {
                roots
                    .add(cert.map_err(|e| format!("CA certificate: {e}"))?)
                    .map_err(|e| format!("CA certificate: {e}"))?;
            }
        }
        None => {
            let dir = std::path::Path::new("/etc/ssl/certs/ca-certificates.crt");
            let pem = std::fs::read(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// One NTS-KE session with the server at `addr`, whose certificate must name `name`, within
/// about `timeout` (connect, then the rest), and a response of at most 64 KiB.
pub fn establish(
    config: Arc<ClientConfig>,
    addr: SocketAddr,
    name: &str,
    aeads: &[Aead],
    timeout: Duration,
) -> Result<Established, String> {
    let tcp = TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    establish_over(config, tcp, addr, name, aeads, timeout)
}

/// [`establish`] over a connection the caller made (from a source address of its choice, as
/// the NTS-KE benchmark's simulated clients do); `addr` names the server in messages.
pub fn establish_over(
    config: Arc<ClientConfig>,
    mut tcp: TcpStream,
    addr: SocketAddr,
    name: &str,
    aeads: &[Aead],
    timeout: Duration,
) -> Result<Established, String> {
    let deadline = Instant::now() + timeout;
    let server_name = ServerName::try_from(name.to_string()).map_err(|e| format!("{name}: {e}"))?;
    let mut conn = ClientConnection::new(config, server_name).map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    // The request follows the handshake's last flight at once: without this, Nagle's algorithm
    // holds it until the server's (delayed) ACK of that flight.
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    tcp.set_write_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    rustls::Stream::new(&mut conn, &mut tcp)
        .write_all(&ke::request(aeads))
        .map_err(|e| format!("NTS-KE with {addr}: {e}"))?;
    let mut response = Vec::new();
    let records = loop {
        if Instant::now() > deadline {
            return Err(format!("NTS-KE with {addr}: timed out"));
        }
        // Each read waits no longer than what is left of the session's time.
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        tcp.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
        let mut chunk = [0u8; 4096];
        let n = rustls::Stream::new(&mut conn, &mut tcp)
            .read(&mut chunk)
            .map_err(|e| format!("NTS-KE with {addr}: {e}"))?;
        if n == 0 {
            return Err(format!("NTS-KE with {addr}: closed before the response ended"));
        }
        response.extend_from_slice(&chunk[..n]);
        if response.len() > MAX_RESPONSE {
            return Err(format!(
                "NTS-KE with {addr}: response longer than {MAX_RESPONSE} bytes"
            ));
        }
        if let Some(records) = ke::records(&response) {
            break records.map_err(|()| format!("NTS-KE with {addr}: bytes after End of Message"))?;
        }
    };
    let response = ke::parse_response(&records);
    if let Some(code) = response.error {
        return Err(format!("NTS-KE with {addr}: the server answered error {code}"));
    }
    let aead = response
        .aead
        .ok_or_else(|| format!("NTS-KE with {addr}: no AEAD in the response"))?;
    let n = aead.key_len();
    let (mut c2s, mut s2c) = ([0u8; 32], [0u8; 32]);
    for (out, s2c_side) in [(&mut c2s, false), (&mut s2c, true)] {
        conn.export_keying_material(
            &mut out[..n],
            ke::EXPORTER_LABEL.as_bytes(),
            Some(&ke::exporter_context(aead, s2c_side)),
        )
        .map_err(|e| e.to_string())?;
    }
    let keys = SessionKeys::new(aead, &c2s[..n], &s2c[..n]).ok_or("keys of the wrong length")?;
    Ok(Established { keys, response })
}

//! The client side of NTS-KE: one blocking TLS 1.3 session that asks for NTPv4 and an AEAD and
//! returns the cookies, the exported keys and where to send NTP. strata's tests and the load
//! generator use it now; NTS towards upstream sources will too.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::tls::ALPN;
use crate::proto::nts::ke::{self, KeResponse};
use crate::proto::nts::{Aead, SessionKeys};

/// What a session gave.
#[derive(Debug, Clone)]
pub struct Established {
    pub keys: SessionKeys,
    pub response: KeResponse,
}

/// A TLS configuration trusting the CA certificates in `ca_pem` (PEM), or the system's store
/// when None is given.
pub fn client_config(ca_pem: Option<&[u8]>) -> Result<Arc<ClientConfig>, String> {
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
    config.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// One NTS-KE session with the server at `addr`, whose certificate must name `name`.
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
        let mut chunk = [0u8; 4096];
        let n = rustls::Stream::new(&mut conn, &mut tcp)
            .read(&mut chunk)
            .map_err(|e| format!("NTS-KE with {addr}: {e}"))?;
        if n == 0 {
            return Err(format!("NTS-KE with {addr}: closed before the response ended"));
        }
        response.extend_from_slice(&chunk[..n]);
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

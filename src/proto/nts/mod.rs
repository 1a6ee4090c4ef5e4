//! Network Time Security (RFC 8915), the protocol without its I/O:
//!
//! - [`ke`]: the NTS-KE records a client sends and the server answers;
//! - [`aead`]: the two AEAD algorithms NTS negotiates, sealing and opening in place;
//! - [`cookie`]: cookies, and cookie keys derived per epoch from one master key (shared by a
//!   fleet, rotated on schedule, nothing stored);
//! - [`packet`]: an NTS-protected NTP request answered in place, or NAKed;
//! - [`nonce`]: the nonces the answers need, without a system call;
//! - [`client`] and [`session`]: the client's side, requests and the checks on replies, and
//!   one upstream association's cookie jar.
//!
//! The NTS-KE server (TLS, the key export) is in src/daemon/nts/; the responders call
//! [`packet::respond_nts`] from the shared pipeline.

pub mod aead;
pub mod client;
pub mod cookie;
pub mod ke;
pub mod nonce;
pub mod packet;
pub mod session;

pub use aead::Aead;
pub use cookie::{CookieKeys, Rotation, SessionKeys, MASTER_KEY_LEN};
pub use packet::{is_nts, respond_nts, NtsContext, NtsOutcome, NtsRefusal};

/// What one responder needs to answer NTS: its own cookie keys (their cache is its own) and
/// its own nonce source, so that nothing is shared on the per-packet path.
pub struct NtsResponder {
    pub keys: CookieKeys,
    pub nonces: nonce::NonceSource,
    /// Only NTS requests are answered (`require_nts`).
    pub require: bool,
}

/// The server's NTS key material as every thread gets it: the master key and the rotation.
#[derive(Clone, PartialEq, Eq)]
pub struct NtsKeys {
    pub master: [u8; MASTER_KEY_LEN],
    pub rotation: Rotation,
    /// Only NTS requests are answered (`require_nts`).
    pub require: bool,
}

impl NtsKeys {
    /// A responder's own NTS state, its nonces keyed with `seed` (32 random bytes).
    pub fn responder(&self, seed: [u8; 32]) -> NtsResponder {
        NtsResponder {
            keys: CookieKeys::new(self.master, self.rotation),
            nonces: nonce::NonceSource::new(seed),
            require: self.require,
        }
    }
}

impl std::fmt::Debug for NtsKeys {
    /// Never the key itself.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NtsKeys")
            .field("rotation", &self.rotation)
            .finish_non_exhaustive()
    }
}

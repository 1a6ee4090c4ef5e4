//! Network Time Security (RFC 8915), the protocol without its I/O:
//!
//! - [`ke`]: the NTS-KE records a client sends and the server answers;
//! - [`aead`]: the two AEAD algorithms NTS negotiates, sealing and opening in place;
//! - [`cookie`]: cookies, and cookie keys derived per epoch from one master key (shared by a
//!   fleet, rotated on schedule, nothing stored);
//! - [`packet`]: an NTS-protected NTP request answered in place, or NAKed;
//! - [`nonce`]: the nonces the answers need, without a system call.
//!
//! The NTS-KE server (TLS, the key export) is in src/daemon/nts/; the responders call
//! [`packet::respond_nts`] from the shared pipeline.

pub mod aead;
pub mod client;
pub mod cookie;
pub mod ke;
pub mod nonce;
pub mod packet;

pub use aead::Aead;
pub use cookie::{CookieKeys, Rotation, SessionKeys, MASTER_KEY_LEN};
pub use packet::{is_nts, respond_nts, NtsContext, NtsOutcome, NtsRefusal};

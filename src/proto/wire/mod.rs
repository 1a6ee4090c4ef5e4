//! Packets on the wire: zero-copy views over byte buffers (`Packet<T: AsRef<[u8]>>`) with a
//! private table of field ranges, and beside each a plain `Repr` for tests and the slow path.
//! Parsing never allocates; the views are the hot path.

pub mod checksum;
pub mod ethernet;
pub mod extension;
pub mod ipv4;
pub mod ipv6;
pub mod netdev;
pub mod ntp;
pub mod timestamp;
pub mod udp;

pub use timestamp::{NtpShort, NtpTimestamp};

/// Why a buffer is not a valid packet of the kind asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The buffer is shorter than the header (or than a length field inside it says).
    Truncated,
    /// A field holds a value the format does not allow (bad length, version, padding...).
    Malformed,
    /// A checksum does not verify.
    Checksum,
    /// A valid packet of a kind this code does not handle (another EtherType, protocol...).
    Unsupported,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Error::Truncated => "truncated packet",
            Error::Malformed => "malformed packet",
            Error::Checksum => "checksum mismatch",
            Error::Unsupported => "unsupported packet",
        })
    }
}

impl std::error::Error for Error {}

pub type Result<T> = core::result::Result<T, Error>;

/// A byte range of a header field.
pub(crate) type Field = core::ops::Range<usize>;

//! A source's symmetric key (`key N`): the MAC our packets to it carry, the check every packet
//! from it must pass before anything else is looked at, and what the status says about it.

use crate::proto::auth::{Key, MAX_DIGEST_LEN};
use crate::proto::wire::extension::{Trailer, MIN_MAC_LEN};
use crate::proto::wire::ntp::{Packet, HEADER_LEN};

/// The longest MAC we send: key ID and digest.
pub const MAX_MAC_LEN: usize = 4 + MAX_DIGEST_LEN;

/// The MAC that follows our header, its first `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MacTrailer {
    bytes: [u8; MAX_MAC_LEN],
    len: usize,
}

impl MacTrailer {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Why a packet from a source with a key was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthFailure {
    /// No MAC at all.
    Missing,
    /// A crypto-NAK: the source could not authenticate our request (it lacks our key).
    CryptoNak,
    /// A MAC of another key.
    OtherKey(u32),
    /// Our key's ID, but the digest does not match the packet.
    BadMac,
    /// What follows the header is neither extension fields nor a MAC.
    Malformed,
    /// The key is not in the key file (a key file changed under a running configuration).
    NoSuchKey,
}

impl AuthFailure {
    pub fn describe(self) -> String {
        match self {
            AuthFailure::Missing => "no MAC".into(),
            AuthFailure::CryptoNak => "crypto-NAK".into(),
            AuthFailure::OtherKey(k) => format!("MAC of key {k}"),
            AuthFailure::BadMac => "bad MAC".into(),
            AuthFailure::Malformed => "malformed MAC".into(),
            AuthFailure::NoSuchKey => "key not in the key file".into(),
        }
    }
}

/// The authentication state of one source, as the status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthStatus {
    pub key: u32,
    /// Packets that passed, and that were rejected.
    pub passed: u64,
    pub rejected: u64,
    /// The verdict on the last packet (None: nothing received yet).
    pub last: Option<Result<(), AuthFailure>>,
}

impl AuthStatus {
    /// `key 5 ok`, `key 5 failing (bad MAC)`, `key 5 waiting`.
    pub fn summary(&self) -> String {
        match self.last {
            None => format!("key {} waiting", self.key),
            Some(Ok(())) => format!("key {} ok", self.key),
            Some(Err(why)) => format!("key {} failing ({})", self.key, why.describe()),
        }
    }
}

/// A source's key and its record.
#[derive(Debug, Clone)]
pub struct SourceAuth {
    key: Option<Key>,
    status: AuthStatus,
}

impl SourceAuth {
    /// Key `id` as the key file has it (None: not there; every packet is then rejected).
    pub fn new(id: u32, key: Option<Key>) -> SourceAuth {
        SourceAuth {
            key,
            status: AuthStatus {
                key: id,
                passed: 0,
                rejected: 0,
                last: None,
            },
        }
    }

    pub fn status(&self) -> AuthStatus {
        self.status
    }

    /// The MAC of our `header`.
    pub fn sign(&self, header: &[u8; HEADER_LEN]) -> Option<MacTrailer> {
        let key = self.key.as_ref()?;
        let mut buf = [0u8; HEADER_LEN + MAX_MAC_LEN];
        buf[..HEADER_LEN].copy_from_slice(header);
        let end = key.sign(&mut buf, HEADER_LEN)?;
        let mut bytes = [0u8; MAX_MAC_LEN];
        bytes[..end - HEADER_LEN].copy_from_slice(&buf[HEADER_LEN..end]);
        Some(MacTrailer {
            bytes,
            len: end - HEADER_LEN,
        })
    }

    /// Checks a whole packet from the source and records the verdict.
    pub fn check(&mut self, packet: &[u8]) -> Result<(), AuthFailure> {
        let verdict = self.verdict(packet);
        match verdict {
            Ok(()) => self.status.passed += 1,
            Err(_) => self.status.rejected += 1,
        }
        self.status.last = Some(verdict);
        verdict
    }

    fn verdict(&self, packet: &[u8]) -> Result<(), AuthFailure> {
        let key = self.key.as_ref().ok_or(AuthFailure::NoSuchKey)?;
        let Ok(header) = Packet::new_checked(packet) else {
            return Err(AuthFailure::Missing);
        };
        let trailer =
            Trailer::parse(header.version(), &packet[HEADER_LEN..]).map_err(|_| AuthFailure::Malformed)?;
        let mac = trailer.mac.ok_or(AuthFailure::Missing)?;
        let id = u32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]);
        if mac.len() < MIN_MAC_LEN {
            return Err(AuthFailure::CryptoNak);
        }
        if id != key.id() {
            return Err(AuthFailure::OtherKey(id));
        }
        let covered = packet.len() - mac.len();
        if key.verify(&packet[..covered], &mac[4..]) {
            Ok(())
        } else {
            Err(AuthFailure::BadMac)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::auth::KeyType;

    fn header() -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = 0x24; // v4, mode 4
        h[40] = 1;
        h
    }

    fn signed(auth: &SourceAuth) -> Vec<u8> {
        let mut p = header().to_vec();
        p.extend_from_slice(auth.sign(&header()).unwrap().as_bytes());
        p
    }

    #[test]
    fn a_signed_packet_passes_and_every_other_is_rejected_with_its_reason() {
        for t in [KeyType::Md5, KeyType::Sha1, KeyType::Aes128] {
            let key = Key::new(5, t, &[3; 16]).unwrap();
            let mut auth = SourceAuth::new(5, Some(key));
            assert_eq!(auth.status().summary(), "key 5 waiting");
            let good = signed(&auth);
            assert_eq!(good.len(), 48 + 4 + t.digest_len());
            assert_eq!(auth.check(&good), Ok(()));
            assert_eq!(auth.status().summary(), "key 5 ok");

            let mut bad = good.clone();
            bad[47] ^= 0x80;
            assert_eq!(auth.check(&bad), Err(AuthFailure::BadMac));
            assert_eq!(auth.check(&header()), Err(AuthFailure::Missing));
            let mut nak = header().to_vec();
            nak.extend([0; 4]);
            assert_eq!(auth.check(&nak), Err(AuthFailure::CryptoNak));
            let mut other = good.clone();
            other[48..52].copy_from_slice(&6u32.to_be_bytes());
            assert_eq!(auth.check(&other), Err(AuthFailure::OtherKey(6)));
            let mut odd = header().to_vec();
            odd.extend([1; 9]);
            assert_eq!(auth.check(&odd), Err(AuthFailure::Malformed));
            assert_eq!(auth.check(&good[..40]), Err(AuthFailure::Missing));
            let s = auth.status();
            assert_eq!((s.passed, s.rejected), (1, 6));
            assert_eq!(s.summary(), "key 5 failing (no MAC)");
        }
        let mut missing = SourceAuth::new(9, None);
        assert!(missing.sign(&header()).is_none());
        assert_eq!(missing.check(&header()), Err(AuthFailure::NoSuchKey));
    }
}

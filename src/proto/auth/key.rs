//! One symmetric key and the MAC it gives an NTP packet.
//!
//! The hash types are RFC 5905's legacy MAC: the digest of the key followed by the packet,
//! `H(key || packet)`. AES128 and AES256 are CMAC (RFC 4493) keyed with the key, as RFC 8573
//! specifies for AES-128 (chrony offers AES-256 the same way). On the wire an NTPv4 MAC is a
//! 4-byte key ID and at most 20 bytes of digest: longer hashes (SHA-256 and up) are cut to 20
//! bytes, as chrony does.

use aes::{Aes128, Aes256};
use cmac::{Cmac, Mac};
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384, Sha512};
use subtle::ConstantTimeEq;

/// The most digest bytes a MAC carries.
pub const MAX_DIGEST_LEN: usize = 20;
/// Shorter keys are accepted but guessable; the key file's reader warns about them (as chrony).
pub const MIN_SAFE_KEY_LEN: usize = 10;

/// A key's algorithm, as the key file names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyType {
    Md5,
    Sha1,
    Sha256,
    Sha384,
    Sha512,
    /// AES-128-CMAC (RFC 8573).
    Aes128,
    /// AES-256-CMAC.
    Aes256,
}

impl KeyType {
    pub const ALL: [KeyType; 7] = [
        KeyType::Md5,
        KeyType::Sha1,
        KeyType::Sha256,
        KeyType::Sha384,
        KeyType::Sha512,
        KeyType::Aes128,
        KeyType::Aes256,
    ];

    /// The name as the key file and the status show it.
    pub const fn name(self) -> &'static str {
        match self {
            KeyType::Md5 => "MD5",
            KeyType::Sha1 => "SHA1",
            KeyType::Sha256 => "SHA256",
            KeyType::Sha384 => "SHA384",
            KeyType::Sha512 => "SHA512",
            KeyType::Aes128 => "AES128",
            KeyType::Aes256 => "AES256",
        }
    }

    /// The type a key file names (any case; `AES` is AES128).
    pub fn from_name(name: &str) -> Option<KeyType> {
        let upper = name.to_ascii_uppercase();
        if upper == "AES" {
            return Some(KeyType::Aes128);
        }
        KeyType::ALL.into_iter().find(|t| t.name() == upper)
    }

    /// How many digest bytes the MAC carries.
    pub const fn digest_len(self) -> usize {
        match self {
            KeyType::Md5 | KeyType::Aes128 | KeyType::Aes256 => 16,
            KeyType::Sha1 | KeyType::Sha256 | KeyType::Sha384 | KeyType::Sha512 => 20,
        }
    }

    /// The key length a CMAC type requires (None: any length, for the hashes).
    pub const fn required_key_len(self) -> Option<usize> {
        match self {
            KeyType::Aes128 => Some(16),
            KeyType::Aes256 => Some(32),
            _ => None,
        }
    }
}

/// What computes the MAC: the secret for a hash, or the CMAC state keyed once (its subkeys
/// derived at load, so a packet costs only the CMAC itself). Boxed, being large (the expanded
/// AES keys); a packet copies the state onto its stack, never allocates.
#[derive(Clone)]
enum Material {
    Hash(KeyType, Box<[u8]>),
    Aes128(Box<Cmac<Aes128>>),
    Aes256(Box<Cmac<Aes256>>),
}

/// One key of the key file.
#[derive(Clone)]
pub struct Key {
    id: u32,
    key_type: KeyType,
    /// Kept to tell keys apart (a changed key file); the MAC uses `material`.
    secret: Box<[u8]>,
    material: Material,
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.id == other.id
            && self.key_type == other.key_type
            && self.secret.len() == other.secret.len()
            && bool::from(self.secret.ct_eq(&other.secret))
    }
}

impl Eq for Key {}

/// Why a key cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// ID 0 marks a crypto-NAK on the wire (RFC 5905 section 7.3): no key can have it.
    ZeroId,
    Empty,
    /// A CMAC key of the wrong length: (given, required).
    Length(usize, usize),
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyError::ZeroId => write!(f, "key ID 0 is reserved (it marks a crypto-NAK)"),
            KeyError::Empty => write!(f, "the key is empty"),
            KeyError::Length(given, need) => {
                write!(f, "the key is {given} bytes long; this type needs exactly {need}")
            }
        }
    }
}

impl Key {
    pub fn new(id: u32, key_type: KeyType, secret: &[u8]) -> Result<Key, KeyError> {
        if id == 0 {
            return Err(KeyError::ZeroId);
        }
        if secret.is_empty() {
            return Err(KeyError::Empty);
        }
        if let Some(need) = key_type.required_key_len() {
            if secret.len() != need {
                return Err(KeyError::Length(secret.len(), need));
            }
        }
        let material = match key_type {
            KeyType::Aes128 => Material::Aes128(Box::new(
                <Cmac<Aes128> as Mac>::new_from_slice(secret)
                    .map_err(|_| KeyError::Length(secret.len(), 16))?,
            )),
            KeyType::Aes256 => Material::Aes256(Box::new(
                <Cmac<Aes256> as Mac>::new_from_slice(secret)
                    .map_err(|_| KeyError::Length(secret.len(), 32))?,
            )),
            hash => Material::Hash(hash, secret.into()),
        };
        Ok(Key {
            id,
            key_type,
            secret: secret.into(),
            material,
        })
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn key_type(&self) -> KeyType {
        self.key_type
    }

    /// How many digest bytes this key's MAC carries.
    pub fn digest_len(&self) -> usize {
        self.key_type.digest_len()
    }

    /// The digest of `data` (the packet up to its MAC) into the start of `out`; returns its
    /// length. Allocates nothing.
    pub fn digest(&self, data: &[u8], out: &mut [u8; MAX_DIGEST_LEN]) -> usize {
        let n = self.digest_len();
        match &self.material {
            Material::Hash(kind, secret) => match kind {
                KeyType::Md5 => hash::<Md5>(secret, data, &mut out[..n]),
                KeyType::Sha1 => hash::<Sha1>(secret, data, &mut out[..n]),
                KeyType::Sha256 => hash::<Sha256>(secret, data, &mut out[..n]),
                KeyType::Sha384 => hash::<Sha384>(secret, data, &mut out[..n]),
                KeyType::Sha512 => hash::<Sha512>(secret, data, &mut out[..n]),
                KeyType::Aes128 | KeyType::Aes256 => unreachable!("CMAC keys are never Hash"),
            },
            Material::Aes128(cmac) => {
                let mut m: Cmac<Aes128> = (**cmac).clone();
                m.update(data);
                out[..n].copy_from_slice(&m.finalize().into_bytes());
            }
            Material::Aes256(cmac) => {
                let mut m: Cmac<Aes256> = (**cmac).clone();
                m.update(data);
                out[..n].copy_from_slice(&m.finalize().into_bytes());
            }
        }
        n
    }

    /// Whether `digest` is this key's MAC of `data`, compared in constant time.
    pub fn verify(&self, data: &[u8], digest: &[u8]) -> bool {
        let mut ours = [0u8; MAX_DIGEST_LEN];
        let n = self.digest(data, &mut ours);
        digest.len() == n && bool::from(ours[..n].ct_eq(digest))
    }

    /// Appends this key's MAC (key ID, digest) to the `covered` bytes at the start of `buf`;
    /// returns the packet's new length, or None when `buf` has no room for it.
    pub fn sign(&self, buf: &mut [u8], covered: usize) -> Option<usize> {
        let end = covered + 4 + self.digest_len();
        if buf.len() < end {
            return None;
        }
        let mut digest = [0u8; MAX_DIGEST_LEN];
        let n = self.digest(&buf[..covered], &mut digest);
        buf[covered..covered + 4].copy_from_slice(&self.id.to_be_bytes());
        buf[covered + 4..end].copy_from_slice(&digest[..n]);
        Some(end)
    }
}

/// `H(key || data)`, cut to `out`'s length.
fn hash<H: Digest>(secret: &[u8], data: &[u8], out: &mut [u8]) {
    let full = H::new().chain_update(secret).chain_update(data).finalize();
    out.copy_from_slice(&full[..out.len()]);
}

impl std::fmt::Debug for Key {
    /// Never the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("type", &self.key_type)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn digest_of(key: &Key, data: &[u8]) -> Vec<u8> {
        let mut out = [0u8; MAX_DIGEST_LEN];
        let n = key.digest(data, &mut out);
        out[..n].to_vec()
    }

    #[test]
    fn aes_cmac_matches_rfc_4493() {
        let key = Key::new(1, KeyType::Aes128, &unhex("2b7e151628aed2a6abf7158809cf4f3c")).unwrap();
        // RFC 4493 section 4, examples 1 to 3.
        assert_eq!(digest_of(&key, &[]), unhex("bb1d6929e95937287fa37d129b756746"));
        let m = unhex("6bc1bee22e409f96e93d7e117393172a");
        assert_eq!(digest_of(&key, &m), unhex("070a16b46b4d4144f79bdd9dd04a287c"));
        let m40 = unhex("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e5130c81c46a35ce411");
        assert_eq!(digest_of(&key, &m40), unhex("dfa66747de9ae63030ca32611497c827"));
        // The same key cloned per packet gives the same answer twice (no state left behind).
        assert_eq!(digest_of(&key, &m), unhex("070a16b46b4d4144f79bdd9dd04a287c"));
    }

    #[test]
    fn hash_macs_are_the_digest_of_key_then_packet() {
        // Computed independently: python3 hashlib.md5(b"strata-test-key" + bytes(range(48))).
        let packet: Vec<u8> = (0..48).collect();
        let secret = b"strata-test-key";
        let md5 = Key::new(7, KeyType::Md5, secret).unwrap();
        assert_eq!(
            digest_of(&md5, &packet),
            unhex("b5c5309b2d4456f86c183a0f5f8b08cb")
        );
        let sha1 = Key::new(7, KeyType::Sha1, secret).unwrap();
        assert_eq!(
            digest_of(&sha1, &packet),
            unhex("776cd08ff4c6ec4de8ae86d30430f2dbce12d783")
        );
        let sha256 = Key::new(7, KeyType::Sha256, secret).unwrap();
        assert_eq!(
            digest_of(&sha256, &packet),
            unhex("fdd73c92ab7cc0388980ef83cb23cd89e52bdecb"),
            "cut to 20 bytes"
        );
    }

    #[test]
    fn sign_then_verify_and_tampering_fails() {
        for t in KeyType::ALL {
            let secret = vec![0x5a; t.required_key_len().unwrap_or(20)];
            let key = Key::new(42, t, &secret).unwrap();
            let mut buf = [0u8; 72];
            buf[..48].copy_from_slice(&[0x23; 48]);
            let len = key.sign(&mut buf, 48).unwrap();
            assert_eq!(len, 48 + 4 + t.digest_len(), "{t:?}");
            assert_eq!(&buf[48..52], &42u32.to_be_bytes());
            assert!(key.verify(&buf[..48], &buf[52..len]), "{t:?}");
            let mut bad = buf;
            bad[10] ^= 1;
            assert!(!key.verify(&bad[..48], &bad[52..len]), "{t:?}");
            assert!(!key.verify(&buf[..48], &buf[52..len - 1]), "{t:?} short digest");
            assert!(key.sign(&mut buf[..60], 48).is_none());
        }
    }

    #[test]
    fn bad_keys_and_names() {
        assert_eq!(Key::new(0, KeyType::Md5, b"x").err(), Some(KeyError::ZeroId));
        assert_eq!(Key::new(1, KeyType::Sha1, b"").err(), Some(KeyError::Empty));
        assert_eq!(
            Key::new(1, KeyType::Aes128, &[1; 15]).err(),
            Some(KeyError::Length(15, 16))
        );
        assert_eq!(
            Key::new(1, KeyType::Aes256, &[1; 16]).err(),
            Some(KeyError::Length(16, 32))
        );
        assert_eq!(KeyType::from_name("aes"), Some(KeyType::Aes128));
        assert_eq!(KeyType::from_name("sha1"), Some(KeyType::Sha1));
        assert_eq!(KeyType::from_name("AES256"), Some(KeyType::Aes256));
        assert_eq!(KeyType::from_name("RMD160"), None);
        assert!(!format!("{:?}", Key::new(3, KeyType::Md5, b"topsecret").unwrap()).contains("topsecret"));
    }
}

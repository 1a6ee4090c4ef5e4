//! Cookies (RFC 8915 section 6): the keys of one client's NTS association, sealed by the
//! server so that it keeps no state per client. A cookie is
//!
//! ```text
//! key epoch (u32) | nonce (16) | AES-SIV-CMAC-256( aead id (u16) | 0 (u16) | C2S key | S2C key )
//! ```
//!
//! (the zero keeps the cookie's length a multiple of 4, as chrony requires of cookies: 104 bytes
//! with AES-SIV-CMAC-256 keys inside, 72 with AES-128-GCM-SIV keys);
//! sealed with the cookie key of its epoch. Cookie keys are not stored: each is derived from
//! one master key and the epoch number (HKDF-SHA256), and an epoch is `rotation` seconds of
//! served time. So the key rotates on schedule without any state; a restart changes nothing;
//! and every node of a fleet that has the same master key issues and accepts the same cookies,
//! with no coordination (RFC 8915 section 6 suggests such a shared-key scheme). A cookie is
//! accepted while its epoch is within `grace` epochs before the current one (or one after it,
//! for a node whose clock is a little ahead).

use hkdf::Hkdf;
use sha2::Sha256;

use super::aead::{Aead, AeadError, MAX_KEY_LEN, TAG_LEN};

/// The master key's length.
pub const MASTER_KEY_LEN: usize = 32;
/// The cookie nonce's length.
pub const COOKIE_NONCE_LEN: usize = 16;
/// The longest cookie this server issues (AES-SIV-CMAC-256 keys inside).
pub const MAX_COOKIE_LEN: usize = 4 + COOKIE_NONCE_LEN + TAG_LEN + 4 + 2 * MAX_KEY_LEN;
/// The HKDF salt: the purpose of the derived keys.
const SALT: &[u8] = b"strata NTS cookie key";

/// The length of a cookie carrying keys of `aead`.
pub const fn cookie_len(aead: Aead) -> usize {
    4 + COOKIE_NONCE_LEN + TAG_LEN + 4 + 2 * aead.key_len()
}

/// One association's keys, as a cookie carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionKeys {
    pub aead: Aead,
    c2s: [u8; MAX_KEY_LEN],
    s2c: [u8; MAX_KEY_LEN],
}

impl SessionKeys {
    /// Keys of `aead`'s length (longer slices are cut, shorter refused).
    pub fn new(aead: Aead, c2s: &[u8], s2c: &[u8]) -> Option<SessionKeys> {
        let n = aead.key_len();
        if c2s.len() < n || s2c.len() < n {
            return None;
        }
        let mut keys = SessionKeys {
            aead,
            c2s: [0; MAX_KEY_LEN],
            s2c: [0; MAX_KEY_LEN],
        };
        keys.c2s[..n].copy_from_slice(&c2s[..n]);
        keys.s2c[..n].copy_from_slice(&s2c[..n]);
        Some(keys)
    }

    /// The client-to-server key: requests are authenticated with it.
    pub fn c2s(&self) -> &[u8] {
        &self.c2s[..self.aead.key_len()]
    }

    /// The server-to-client key: replies are sealed with it.
    pub fn s2c(&self) -> &[u8] {
        &self.s2c[..self.aead.key_len()]
    }
}

/// Why a cookie was not accepted (each is answered with an NTS NAK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieError {
    /// Its epoch's key is no longer (or not yet) accepted.
    Expired,
    /// It does not open: not ours, damaged, or of a length no cookie has.
    Invalid,
}

/// When cookie keys rotate and how long old ones are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// Seconds per epoch (at least 1).
    pub period_s: u64,
    /// Epochs before the current one whose cookies are still accepted.
    pub grace: u32,
}

impl Rotation {
    /// The epoch of a Unix time (seconds of served time).
    pub fn epoch(&self, unix_s: u64) -> u32 {
        (unix_s / self.period_s.max(1)) as u32
    }

    /// Seconds since the key of `unix_s`'s epoch came into use: the cookie key's age.
    pub fn key_age_s(&self, unix_s: u64) -> u64 {
        unix_s % self.period_s.max(1)
    }
}

impl Default for Rotation {
    /// A new key every day; cookies accepted for a week.
    fn default() -> Self {
        Rotation {
            period_s: 86_400,
            grace: 7,
        }
    }
}

/// Cached epoch keys: the accepted window is small, and a miss costs one HKDF.
const CACHE: usize = 16;

/// The cookie keys of one thread (each responder and the NTS-KE server keep their own: the
/// cache is mutated, and nothing is shared on the per-packet path).
#[derive(Clone)]
pub struct CookieKeys {
    master: [u8; MASTER_KEY_LEN],
    rotation: Rotation,
    cache: [(u32, [u8; 32]); CACHE],
    filled: usize,
}

impl CookieKeys {
    pub fn new(master: [u8; MASTER_KEY_LEN], rotation: Rotation) -> CookieKeys {
        CookieKeys {
            master,
            rotation: Rotation {
                period_s: rotation.period_s.max(1),
                ..rotation
            },
            cache: [(0, [0; 32]); CACHE],
            filled: 0,
        }
    }

    pub fn rotation(&self) -> Rotation {
        self.rotation
    }

    /// The epoch of a Unix time (seconds of served time).
    pub fn epoch(&self, unix_s: u64) -> u32 {
        self.rotation.epoch(unix_s)
    }

    /// The cookie key of `epoch`, HKDF-SHA256(master, salt, epoch).
    fn key(&mut self, epoch: u32) -> [u8; 32] {
        if let Some((_, key)) = self.cache[..self.filled].iter().find(|(e, _)| *e == epoch) {
            return *key;
        }
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(SALT), &self.master)
            .expand(&epoch.to_be_bytes(), &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        let slot = if self.filled < CACHE {
            self.filled += 1;
            self.filled - 1
        } else {
            // Replace the entry furthest from this epoch: the window moves forward.
            (0..CACHE)
                .max_by_key(|&i| self.cache[i].0.abs_diff(epoch))
                .expect("the cache is not empty")
        };
        self.cache[slot] = (epoch, key);
        key
    }

    /// Seals `keys` into a cookie in `out` (at least [`cookie_len`] bytes) with the current
    /// epoch's key and `nonce` (random: any value is safe with SIV, a repeat only shows that
    /// two cookies are equal); returns its length.
    pub fn seal(
        &mut self,
        keys: &SessionKeys,
        unix_s: u64,
        nonce: &[u8; COOKIE_NONCE_LEN],
        out: &mut [u8],
    ) -> Result<usize, AeadError> {
        let len = cookie_len(keys.aead);
        if out.len() < len {
            return Err(AeadError);
        }
        let epoch = self.epoch(unix_s);
        out[..4].copy_from_slice(&epoch.to_be_bytes());
        out[4..20].copy_from_slice(nonce);
        let body = &mut out[20..len];
        let n = keys.aead.key_len();
        body[..2].copy_from_slice(&keys.aead.id().to_be_bytes());
        body[2..4].fill(0);
        body[4..4 + n].copy_from_slice(keys.c2s());
        body[4 + n..4 + 2 * n].copy_from_slice(keys.s2c());
        let key = self.key(epoch);
        let (head, body) = out.split_at_mut(20);
        Aead::SivCmac256.seal(&key, &head[4..20], &head[..4], body, 4 + 2 * n)?;
        Ok(len)
    }

    /// Opens a cookie (in place: `cookie` is overwritten); the keys it carries.
    pub fn open(&mut self, cookie: &mut [u8], unix_s: u64) -> Result<SessionKeys, CookieError> {
        let aead = Aead::ALL
            .into_iter()
            .find(|&a| cookie_len(a) == cookie.len())
            .ok_or(CookieError::Invalid)?;
        let epoch = u32::from_be_bytes(cookie[..4].try_into().expect("4 bytes"));
        let now = self.epoch(unix_s);
        if epoch > now.saturating_add(1) || epoch < now.saturating_sub(self.rotation.grace) {
            return Err(CookieError::Expired);
        }
        let key = self.key(epoch);
        let (head, body) = cookie.split_at_mut(20);
        let plain = Aead::SivCmac256
            .open(&key, &head[4..20], &head[..4], body)
            .map_err(|_| CookieError::Invalid)?;
        let plain = &body[plain];
        let id = u16::from_be_bytes([plain[0], plain[1]]);
        if Aead::from_id(id) != Some(aead) || plain[2..4] != [0, 0] {
            return Err(CookieError::Invalid);
        }
        let n = aead.key_len();
        SessionKeys::new(aead, &plain[4..4 + n], &plain[4 + n..4 + 2 * n]).ok_or(CookieError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn keys(aead: Aead) -> SessionKeys {
        let c2s: Vec<u8> = (1..=32).collect();
        let s2c: Vec<u8> = (101..=132).collect();
        SessionKeys::new(aead, &c2s, &s2c).unwrap()
    }

    #[test]
    fn a_cookie_opens_on_any_node_with_the_master_key_until_its_grace_ends() {
        let t = 20_000 * DAY + 3600;
        for aead in Aead::ALL {
            let mut issuer = CookieKeys::new([7; 32], Rotation::default());
            let mut other_node = CookieKeys::new([7; 32], Rotation::default());
            let mut stranger = CookieKeys::new([8; 32], Rotation::default());
            let mut cookie = [0u8; MAX_COOKIE_LEN];
            let len = issuer.seal(&keys(aead), t, &[9; 16], &mut cookie).unwrap();
            assert_eq!(len, cookie_len(aead));
            let cookie = &cookie[..len];
            assert_eq!(other_node.open(&mut cookie.to_vec(), t), Ok(keys(aead)));
            assert_eq!(other_node.open(&mut cookie.to_vec(), t + 7 * DAY), Ok(keys(aead)));
            assert_eq!(
                other_node.open(&mut cookie.to_vec(), t + 8 * DAY),
                Err(CookieError::Expired)
            );
            // A node a day behind still accepts it; two days, not.
            assert_eq!(other_node.open(&mut cookie.to_vec(), t - DAY), Ok(keys(aead)));
            assert_eq!(
                other_node.open(&mut cookie.to_vec(), t - 2 * DAY),
                Err(CookieError::Expired)
            );
            assert_eq!(stranger.open(&mut cookie.to_vec(), t), Err(CookieError::Invalid));
            for i in 0..len {
                let mut bad = cookie.to_vec();
                bad[i] ^= 0x10;
                assert!(other_node.open(&mut bad, t).is_err(), "{aead:?}: byte {i}");
            }
            assert_eq!(
                other_node.open(&mut cookie[..len - 1].to_vec(), t),
                Err(CookieError::Invalid)
            );
        }
    }

    #[test]
    fn the_key_changes_every_epoch_and_is_cached() {
        let mut k = CookieKeys::new(
            [1; 32],
            Rotation {
                period_s: 60,
                grace: 2,
            },
        );
        let a = k.key(1);
        assert_eq!(k.key(1), a);
        assert_ne!(k.key(2), a);
        for e in 0..100 {
            k.key(e);
        }
        assert_eq!(k.key(1), a);
        assert_eq!(k.epoch(125), 2);
        assert_eq!(k.rotation().key_age_s(125), 5);
    }
}

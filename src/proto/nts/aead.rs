//! The AEAD algorithms NTS negotiates (RFC 8915 section 5.1, IANA "AEAD Algorithms"), sealing
//! and opening in place, with the tag where NTS puts it: AES-SIV-CMAC-256 (15) writes its
//! synthetic IV in front of the ciphertext (RFC 5297), AES-128-GCM-SIV (30) its tag after it
//! (RFC 8452). Nothing allocates: the buffers are the packet's.

use aes_gcm_siv::aead::{AeadInPlace, KeyInit};
use aes_gcm_siv::Aes128GcmSiv;
use aes_siv::siv::Aes128Siv;

/// A negotiated algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Aead {
    /// AEAD_AES_SIV_CMAC_256: 32-byte keys, 16-byte nonces here, IV first.
    SivCmac256,
    /// AEAD_AES_128_GCM_SIV: 16-byte keys, 12-byte nonces, tag last.
    GcmSiv128,
}

/// The tag (or synthetic IV) every sealed message carries.
pub const TAG_LEN: usize = 16;
/// The longest key of any algorithm here.
pub const MAX_KEY_LEN: usize = 32;
/// The longest nonce this server writes.
pub const MAX_NONCE_LEN: usize = 16;

/// Sealing or opening failed: a wrong key, a changed byte, or a length out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AeadError;

impl Aead {
    /// In the order this server prefers them (SIV-CMAC first: every NTS client has it).
    pub const ALL: [Aead; 2] = [Aead::SivCmac256, Aead::GcmSiv128];

    /// The IANA identifier.
    pub const fn id(self) -> u16 {
        match self {
            Aead::SivCmac256 => 15,
            Aead::GcmSiv128 => 30,
        }
    }

    pub fn from_id(id: u16) -> Option<Aead> {
        Aead::ALL.into_iter().find(|a| a.id() == id)
    }

    pub const fn key_len(self) -> usize {
        match self {
            Aead::SivCmac256 => 32,
            Aead::GcmSiv128 => 16,
        }
    }

    /// The nonce this server uses when it seals.
    pub const fn nonce_len(self) -> usize {
        match self {
            Aead::SivCmac256 => 16,
            Aead::GcmSiv128 => 12,
        }
    }

    /// Seals `plaintext` in place, with `ad` and
    /// `nonce`, and returns the tag; [`Aead::seal`] places it.
    fn seal_detached(
        self,
        key: &[u8],
        nonce: &[u8],
        ad: &[u8],
        plaintext: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AeadError> {
        if key.len() != self.key_len() {
            return Err(AeadError);
        }
        match self {
            Aead::SivCmac256 => {
                let mut siv = Aes128Siv::new(key.into());
                let tag = siv
                    .encrypt_in_place_detached([ad, nonce], plaintext)
                    .map_err(|_| AeadError)?;
                Ok(tag.into())
            }
            Aead::GcmSiv128 => {
                if nonce.len() != 12 {
                    return Err(AeadError);
                }
                let cipher = Aes128GcmSiv::new(key.into());
                let tag = cipher
                    .encrypt_in_place_detached(nonce.into(), ad, plaintext)
                    .map_err(|_| AeadError)?;
                Ok(tag.into())
            }
        }
    }

    /// Seals the plaintext in `buf[..len]` in place: `buf` becomes the ciphertext as NTS carries
    /// it, `len + TAG_LEN` bytes (tag first for SIV-CMAC, last for GCM-SIV).
    pub fn seal(
        self,
        key: &[u8],
        nonce: &[u8],
        ad: &[u8],
        buf: &mut [u8],
        len: usize,
    ) -> Result<usize, AeadError> {
        if buf.len() < len + TAG_LEN {
            return Err(AeadError);
        }
        match self {
            Aead::SivCmac256 => {
                buf.copy_within(..len, TAG_LEN);
                let tag = self.seal_detached(key, nonce, ad, &mut buf[TAG_LEN..TAG_LEN + len])?;
                buf[..TAG_LEN].copy_from_slice(&tag);
            }
            Aead::GcmSiv128 => {
                let tag = self.seal_detached(key, nonce, ad, &mut buf[..len])?;
                buf[len..len + TAG_LEN].copy_from_slice(&tag);
            }
        }
        Ok(len + TAG_LEN)
    }

    /// Opens `ciphertext` in place; returns where the plaintext is in it.
    pub fn open(
        self,
        key: &[u8],
        nonce: &[u8],
        ad: &[u8],
        ciphertext: &mut [u8],
    ) -> Result<std::ops::Range<usize>, AeadError> {
        if key.len() != self.key_len() || ciphertext.len() < TAG_LEN {
            return Err(AeadError);
        }
        match self {
            Aead::SivCmac256 => {
                let (tag, body) = ciphertext.split_at_mut(TAG_LEN);
                let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| AeadError)?;
                let mut siv = Aes128Siv::new(key.into());
                siv.decrypt_in_place_detached([ad, nonce], body, (&tag).into())
                    .map_err(|_| AeadError)?;
                Ok(TAG_LEN..ciphertext.len())
            }
            Aead::GcmSiv128 => {
                if nonce.len() != 12 {
                    return Err(AeadError);
                }
                let at = ciphertext.len() - TAG_LEN;
                let (body, tag) = ciphertext.split_at_mut(at);
                let tag: [u8; TAG_LEN] = (&*tag).try_into().map_err(|_| AeadError)?;
                Aes128GcmSiv::new(key.into())
                    .decrypt_in_place_detached(nonce.into(), ad, body, (&tag).into())
                    .map_err(|_| AeadError)?;
                Ok(0..at)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_algorithms_seal_and_open_and_refuse_any_changed_byte() {
        for aead in Aead::ALL {
            let key: Vec<u8> = (0..aead.key_len() as u8).collect();
            let nonce: Vec<u8> = (100..100 + aead.nonce_len() as u8).collect();
            let ad = b"header and fields";
            let mut buf = [0u8; 64];
            buf[..11].copy_from_slice(b"hello, time");
            let len = aead.seal(&key, &nonce, ad, &mut buf, 11).unwrap();
            assert_eq!(len, 27);
            let sealed = buf;
            let mut open = sealed;
            let range = aead.open(&key, &nonce, ad, &mut open[..len]).unwrap();
            assert_eq!(&open[range], b"hello, time");
            for i in 0..len {
                let mut bad = sealed;
                bad[i] ^= 1;
                assert!(
                    aead.open(&key, &nonce, ad, &mut bad[..len]).is_err(),
                    "{aead:?} byte {i}"
                );
            }
            let mut bad = sealed;
            assert!(aead
                .open(&key, &nonce, b"header and fieldz", &mut bad[..len])
                .is_err());
            assert!(aead.open(&key[1..], &nonce, ad, &mut bad[..len]).is_err());
            // An empty plaintext is a tag alone.
            let mut tag_only = [0u8; TAG_LEN];
            assert_eq!(aead.seal(&key, &nonce, ad, &mut tag_only, 0), Ok(TAG_LEN));
            assert_eq!(aead.open(&key, &nonce, ad, &mut tag_only).map(|r| r.len()), Ok(0));
            assert!(aead.open(&key, &nonce, ad, &mut tag_only[..15]).is_err());
        }
        assert_eq!(Aead::from_id(15), Some(Aead::SivCmac256));
        assert_eq!(Aead::from_id(30), Some(Aead::GcmSiv128));
        assert_eq!(Aead::from_id(17), None);
    }
}

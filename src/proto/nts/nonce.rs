//! Nonces for the NTS answers (the authenticator's and each cookie's): AES-128 in counter mode
//! under a key drawn from the OS at start, one per responder, so that the per-packet path needs
//! no system call and shares nothing. SIV constructions stay safe even if a nonce repeated; the
//! nonces are unpredictable all the same.

use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;

pub struct NonceSource {
    cipher: Aes128,
    counter: u128,
}

impl NonceSource {
    /// A source keyed with `seed` (32 random bytes: the key, then the counter's start).
    pub fn new(seed: [u8; 32]) -> NonceSource {
        NonceSource {
            cipher: Aes128::new((&seed[..16]).into()),
            counter: u128::from_be_bytes(seed[16..].try_into().expect("16 bytes")),
        }
    }

    /// Fills `out` with the next bytes of the stream.
    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(16) {
            let mut block = self.counter.to_be_bytes().into();
            self.counter = self.counter.wrapping_add(1);
            self.cipher.encrypt_block(&mut block);
            chunk.copy_from_slice(&block[..chunk.len()]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_differ_and_depend_on_the_seed() {
        let mut a = NonceSource::new([1; 32]);
        let mut b = NonceSource::new([2; 32]);
        let (mut x, mut y, mut z) = ([0u8; 16], [0u8; 16], [0u8; 16]);
        a.fill(&mut x);
        a.fill(&mut y);
        b.fill(&mut z);
        assert_ne!(x, y);
        assert_ne!(x, z);
        let mut long = [0u8; 40];
        a.fill(&mut long);
        assert_ne!(long[..16], long[16..32]);
    }
}

//! Symmetric-key authentication of NTP packets (RFC 5905 MACs, AES-CMAC from RFC 8573), as
//! chrony's `keyfile` configures it:
//!
//! - [`key`]: one key, its algorithm, and the MAC it computes and checks;
//! - [`keyfile`]: the key file, parsed strictly, into a [`KeyTable`];
//! - [`respond`]: a request carrying a MAC answered in place with the same key, or refused.
//!
//! Everything a packet needs is computed without allocating: a table is built once (at start)
//! and only read by the responders and the control thread.

pub mod key;
pub mod keyfile;
pub mod respond;

pub use key::{Key, KeyType, MAX_DIGEST_LEN};
pub use keyfile::{parse_key_file, KeyFileError};
pub use respond::{has_mac, respond_mac};

/// The keys of a key file, looked up by ID without allocating.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct KeyTable {
    /// Sorted by ID, no ID twice.
    keys: Vec<Key>,
}

impl KeyTable {
    /// A table of `keys`; an ID given twice is refused (the second one is named).
    pub fn new(mut keys: Vec<Key>) -> Result<KeyTable, u32> {
        keys.sort_by_key(|k| k.id());
        if let Some(w) = keys.windows(2).find(|w| w[0].id() == w[1].id()) {
            return Err(w[0].id());
        }
        Ok(KeyTable { keys })
    }

    #[inline]
    pub fn get(&self, id: u32) -> Option<&Key> {
        self.keys
            .binary_search_by_key(&id, |k| k.id())
            .ok()
            .map(|i| &self.keys[i])
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.iter().map(|k| k.id())
    }
}

impl std::fmt::Debug for KeyTable {
    /// The IDs and types, never a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| (k.id(), k.key_type())))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_by_id_and_duplicates_refused() {
        let k = |id| Key::new(id, KeyType::Md5, b"0123456789abcdef").unwrap();
        let t = KeyTable::new(vec![k(9), k(1), k(5)]).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t.get(5).map(|k| k.id()), Some(5));
        assert!(t.get(2).is_none());
        assert_eq!(t.ids().collect::<Vec<_>>(), vec![1, 5, 9]);
        assert_eq!(KeyTable::new(vec![k(3), k(3)]).err(), Some(3));
        assert!(!format!("{t:?}").contains("0123"));
    }
}

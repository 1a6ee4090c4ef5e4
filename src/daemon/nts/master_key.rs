//! The NTS master key on disk: 64 hex digits and a newline, mode 0600. Created (from the
//! kernel's random source) when missing, so that a single server needs nothing; a fleet copies
//! one node's file to every other node so that all of them issue and accept the same cookies.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::proto::nts::MASTER_KEY_LEN;

/// Reads the key at `path`, or creates it; says which in the second value (true: created).
pub fn load_or_create(path: &Path) -> Result<([u8; MASTER_KEY_LEN], bool), String> {
    let p = path.display();
    match fs::read_to_string(path) {
        Ok(text) => parse(text.trim())
            .map(|k| (k, false))
            .map_err(|e| format!("NTS key file {p}: {e}")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut key = [0u8; MASTER_KEY_LEN];
            crate::sys::random::fill(&mut key).map_err(|e| format!("cannot draw an NTS master key: {e}"))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| format!("cannot create the NTS key file {p}: {e}"))?;
            file.write_all(format!("{}\n", hex(&key)).as_bytes())
                .and_then(|_| file.sync_all())
                .map_err(|e| format!("cannot write the NTS key file {p}: {e}"))?;
            Ok((key, true))
        }
        Err(e) => Err(format!("cannot read the NTS key file {p}: {e}")),
    }
}

/// Whether others than the owner may read the key file (a warning: it is a secret).
pub fn readable_by_others(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse(text: &str) -> Result<[u8; MASTER_KEY_LEN], String> {
    if text.len() != 2 * MASTER_KEY_LEN || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "not an NTS master key ({} hex digits expected, as strata writes it)",
            2 * MASTER_KEY_LEN
        ));
    }
    let mut key = [0u8; MASTER_KEY_LEN];
    for (i, k) in key.iter_mut().enumerate() {
        *k = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_created_once_then_read_back_and_garbage_refused() {
        let dir = std::env::temp_dir().join(format!("strata-nts-key-{}", std::process::id()));
        let path = dir.join("sub").join("nts.key");
        let (key, created) = load_or_create(&path).unwrap();
        assert!(created);
        assert!(!readable_by_others(&path));
        assert_eq!(load_or_create(&path).unwrap(), (key, false));
        fs::write(&path, "not a key\n").unwrap();
        let e = load_or_create(&path).unwrap_err();
        assert!(e.contains("not an NTS master key"), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }
}

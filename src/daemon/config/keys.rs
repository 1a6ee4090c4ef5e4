//! The symmetric key file (`key_file`), read and checked when the configuration is: its
//! syntax (`crate::proto::auth::keyfile`), its size, and who may read it.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::proto::auth::{parse_key_file, KeyTable};

/// No key file is this large; a larger one is a wrong path.
const MAX_KEY_FILE_SIZE: u64 = 1 << 20;

/// The key file as loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFileConfig {
    pub path: PathBuf,
    /// Shared, read only, by every responder and the control thread.
    pub table: Arc<KeyTable>,
    /// Worth a log line at start: short keys, a file others may read.
    pub warnings: Vec<String>,
}

/// Reads and parses the key file at `path`.
pub fn load(path: &Path) -> Result<KeyFileConfig, String> {
    let cannot = |e: &dyn std::fmt::Display| format!("cannot read the key file {}: {e}", path.display());
    let file = std::fs::File::open(path).map_err(|e| cannot(&e))?;
    let mode = file.metadata().map_err(|e| cannot(&e))?.permissions().mode();
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| cannot(&e))?;
    if bytes.len() as u64 > MAX_KEY_FILE_SIZE {
        return Err(cannot(&"larger than 1 MiB, which no key file is"));
    }
    let text = String::from_utf8(bytes).map_err(|_| cannot(&"not UTF-8 text"))?;
    let parsed = parse_key_file(&text).map_err(|e| format!("key file {}: {e}", path.display()))?;
    let mut warnings = parsed.warnings;
    if mode & 0o004 != 0 {
        warnings.insert(
            0,
            format!(
                "the key file {} is readable by every user (mode {:o}): anyone on this host can \
                 impersonate this server and its sources; chmod 600 or 640 it",
                path.display(),
                mode & 0o777
            ),
        );
    }
    Ok(KeyFileConfig {
        path: path.to_path_buf(),
        table: Arc::new(parsed.table),
        warnings: warnings
            .into_iter()
            .map(|w| {
                if w.starts_with("line ") {
                    format!("key file {}: {w}", path.display())
                } else {
                    w
                }
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str, mode: u32) -> PathBuf {
        let path = std::env::temp_dir().join(format!("strata-keys-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn loads_warns_and_names_the_file_in_errors() {
        let good = write(
            "good",
            "1 SHA1 HEX:00112233445566778899aabbccddeeff00112233\n",
            0o600,
        );
        let k = load(&good).unwrap();
        assert_eq!(k.table.ids().collect::<Vec<_>>(), vec![1]);
        assert!(k.warnings.is_empty(), "{:?}", k.warnings);

        let open = write("open", "1 MD5 short\n", 0o644);
        let k = load(&open).unwrap();
        assert!(
            k.warnings[0].contains("readable by every user"),
            "{:?}",
            k.warnings
        );
        assert!(k.warnings[1].contains("only 5 bytes"), "{:?}", k.warnings);

        let bad = write("bad", "1 MD5 abcdefghijkl\n2 XYZ abc\n", 0o600);
        let e = load(&bad).unwrap_err();
        assert!(
            e.contains(&bad.display().to_string()) && e.contains("line 2"),
            "{e}"
        );

        let e = load(Path::new("/nonexistent/strata.keys")).unwrap_err();
        assert!(e.contains("cannot read the key file"), "{e}");
        for p in [good, open, bad] {
            std::fs::remove_file(p).unwrap();
        }
    }
}

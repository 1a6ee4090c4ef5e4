//! The key file, in chrony's `keyfile` format: one key a line, `ID [TYPE] KEY`.
//!
//! - ID: a key ID, 1 to 4294967295 (0 is the crypto-NAK's);
//! - TYPE: MD5 (the default when left out), SHA1, SHA256, SHA384, SHA512, AES128 (or AES) and
//!   AES256, in any case;
//! - KEY: the key as ASCII text (`ASCII:` may prefix it), or `HEX:` and its bytes in hex.
//!   AES128 keys are 16 bytes, AES256 keys 32.
//!
//! Blank lines and lines starting with `#`, `;`, `!` or `%` are comments. Anything else that is
//! not a key is an error naming its line: a key file is security configuration, so nothing in it
//! is skipped silently.

use super::key::{Key, KeyType, MIN_SAFE_KEY_LEN};
use super::KeyTable;

/// What is wrong with the key file, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFileError {
    /// 1-based.
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// A parsed key file: its keys, and warnings worth a log line (short keys).
#[derive(Debug)]
pub struct ParsedKeys {
    pub table: KeyTable,
    pub warnings: Vec<String>,
}

/// Parses a whole key file.
pub fn parse_key_file(text: &str) -> Result<ParsedKeys, KeyFileError> {
    let mut keys: Vec<Key> = Vec::new();
    let mut lines_of: Vec<(u32, usize)> = Vec::new();
    let mut warnings = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let err = |message: String| KeyFileError { line, message };
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with(['#', ';', '!', '%']) {
            continue;
        }
        let words: Vec<&str> = trimmed.split_whitespace().collect();
        let (id, type_name, key_text) = match words.as_slice() {
            [id, key] => (*id, "MD5", *key),
            [id, t, key] => (*id, *t, *key),
            _ => {
                return Err(err(format!(
                    "expected `ID [TYPE] KEY`, found {} words",
                    words.len()
                )))
            }
        };
        let id = parse_id(id).map_err(err)?;
        let key_type = KeyType::from_name(type_name).ok_or_else(|| {
            err(format!(
                "unknown key type {type_name:?} (known: MD5, SHA1, SHA256, SHA384, SHA512, AES128, AES256)"
            ))
        })?;
        let secret = decode_key(key_text).map_err(err)?;
        if let Some(&(_, first)) = lines_of.iter().find(|(k, _)| *k == id) {
            return Err(err(format!("key {id} is already defined on line {first}")));
        }
        let key = Key::new(id, key_type, &secret).map_err(|e| err(format!("key {id}: {e}")))?;
        if key_type.required_key_len().is_none() && secret.len() < MIN_SAFE_KEY_LEN {
            warnings.push(format!(
                "line {line}: key {id} is only {} bytes long (easy to guess; use at least {MIN_SAFE_KEY_LEN})",
                secret.len()
            ));
        }
        lines_of.push((id, line));
        keys.push(key);
    }
    let table = KeyTable::new(keys).map_err(|id| KeyFileError {
        line: 0,
        message: format!("key {id} is defined twice"),
    })?;
    Ok(ParsedKeys { table, warnings })
}

fn parse_id(text: &str) -> Result<u32, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "{text:?} is not a key ID (a number from 1 to 4294967295)"
        ));
    }
    match text.parse::<u32>() {
        Ok(0) => Err("key ID 0 is reserved (it marks a crypto-NAK)".to_string()),
        Ok(id) => Ok(id),
        Err(_) => Err(format!("key ID {text} is above 4294967295")),
    }
}

fn decode_key(text: &str) -> Result<Vec<u8>, String> {
    if let Some(hex) = text.strip_prefix("HEX:") {
        if hex.is_empty() {
            return Err("the key after HEX: is empty".to_string());
        }
        // Checked as characters first: a multi-byte character must not be cut in two.
        if let Some(bad) = hex.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(format!("the key after HEX: is not hex at {bad:?}"));
        }
        if !hex.len().is_multiple_of(2) {
            return Err(format!(
                "the key after HEX: has an odd number of digits ({})",
                hex.len()
            ));
        }
        let digit = |b: u8| (b as char).to_digit(16).unwrap_or(0) as u8;
        return Ok(hex
            .as_bytes()
            .chunks_exact(2)
            .map(|pair| digit(pair[0]) << 4 | digit(pair[1]))
            .collect());
    }
    let ascii = text.strip_prefix("ASCII:").unwrap_or(text);
    if ascii.is_empty() {
        return Err("the key is empty".to_string());
    }
    if !ascii.is_ascii() {
        return Err("the key is not ASCII (write other bytes as HEX:...)".to_string());
    }
    Ok(ascii.as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_key_file_as_chrony_writes_it() {
        let text = "\
# generated by chronyc keygen
1 MD5 HEX:0123456789ABCDEF0123456789ABCDEF
  ; another comment
2 SHA1 HEX:B5C55A2D4F0E1C3A0F1A7C2D3E4F5A6B7C8D9E0F

3 AES128 HEX:2B7E151628AED2A6ABF7158809CF4F3C
4 aes HEX:2b7e151628aed2a6abf7158809cf4f3c
5 plainpassword1
6 SHA256 ASCII:anotherpassword
";
        let parsed = parse_key_file(text).unwrap();
        assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
        let t = &parsed.table;
        assert_eq!(t.ids().collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(t.get(1).unwrap().key_type(), KeyType::Md5);
        assert_eq!(t.get(2).unwrap().key_type(), KeyType::Sha1);
        assert_eq!(t.get(3).unwrap().key_type(), KeyType::Aes128);
        assert_eq!(t.get(4).unwrap().key_type(), KeyType::Aes128);
        assert_eq!(
            t.get(5).unwrap().key_type(),
            KeyType::Md5,
            "MD5 when no type is given"
        );
        // Key 5 is the ASCII text itself, key 6 the text after ASCII:.
        let reference = Key::new(5, KeyType::Md5, b"plainpassword1").unwrap();
        let mut a = [0u8; 20];
        let mut b = [0u8; 20];
        t.get(5).unwrap().digest(b"x", &mut a);
        reference.digest(b"x", &mut b);
        assert_eq!(a, b);
        let reference = Key::new(6, KeyType::Sha256, b"anotherpassword").unwrap();
        t.get(6).unwrap().digest(b"x", &mut a);
        reference.digest(b"x", &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn errors_name_the_line() {
        let e = |text: &str| parse_key_file(text).unwrap_err();
        assert_eq!(e("1 MD5 k1234567890\n\nx MD5 abc").line, 3);
        assert!(e("x MD5 abc").message.contains("not a key ID"));
        assert!(e("0 MD5 abcdefghijk").message.contains("reserved"));
        assert!(e("4294967296 MD5 abcdefghijk").message.contains("above"));
        assert!(e("1 RMD160 abcdefghijk").message.contains("unknown key type"));
        assert!(e("1 MD5 HEX:abc").message.contains("odd"));
        assert!(e("1 MD5 HEX:zz").message.contains("not hex"));
        // Found by the fuzzer: a multi-byte character after HEX: (it was sliced in two).
        assert!(e("1 MD5 HEX:a\u{fffd}bc")
            .message
            .contains("not hex at '\u{fffd}'"));
        assert!(e("1 MD5 HEX:").message.contains("empty"));
        assert!(e("1").message.contains("found 1 words"));
        assert!(e("1 MD5 a b").message.contains("found 4 words"));
        assert!(e("1 AES128 HEX:00112233").message.contains("exactly 16"));
        let dup = e("1 MD5 abcdefghijk\n2 MD5 abcdefghijk\n1 SHA1 abcdefghijk");
        assert_eq!(dup.line, 3);
        assert!(
            dup.message.contains("already defined on line 1"),
            "{}",
            dup.message
        );
        assert_eq!(
            e("1 MD5 abcdefghijk\n2 MD5 ä").to_string(),
            "line 2: the key is not ASCII (write other bytes as HEX:...)"
        );
    }

    #[test]
    fn short_keys_are_warned_about() {
        let parsed = parse_key_file("7 MD5 short").unwrap();
        assert_eq!(parsed.table.len(), 1);
        assert!(
            parsed.warnings[0].contains("key 7 is only 5 bytes"),
            "{:?}",
            parsed.warnings
        );
    }

    proptest! {
        #[test]
        fn any_text_parses_or_fails_with_a_line_in_range(text in "([ -~\n]|HEX:|\\PC){0,200}") {
            match parse_key_file(&text) {
                Ok(p) => prop_assert!(p.table.len() <= text.lines().count()),
                Err(e) => prop_assert!(e.line >= 1 && e.line <= text.lines().count()),
            }
        }
    }
}

//! Symmetric-key MACs: requests through `respond_mac`, arbitrary (the trailer parser's
//! robustness) and signed-then-changed (the MAC check); replies through a source's key check;
//! and the key file parser. Nothing may panic; a reply is never longer than its request; a reply
//! authenticated by the server verifies under the request's key; a request changed after it
//! was signed is never answered authenticated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::proto::auth::{parse_key_file, respond_mac, Key, KeyTable, KeyType};
use strata::proto::control::auth::SourceAuth;
use strata::proto::respond::{Admission, ReplyKind};
use strata::proto::state::{ServerState, UnsyncPolicy};
use strata::proto::wire::NtpTimestamp;

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, rest)) = data.split_first() else { return };
    let keys = KeyTable::new(vec![
        Key::new(1, KeyType::Md5, b"fuzz-md5-secret").unwrap(),
        Key::new(2, KeyType::Sha1, b"fuzz-sha1-secret").unwrap(),
        Key::new(3, KeyType::Aes128, &[3; 16]).unwrap(),
        Key::new(20, KeyType::Sha256, b"fuzz-sha256-secret").unwrap(),
    ])
    .unwrap();
    let mut state = ServerState::unsynchronized(-24, UnsyncPolicy::Answer);
    state.synchronized = knobs & 1 == 1;
    state.stratum = 2;

    match knobs >> 1 & 3 {
        0 => {
            // Raw bytes as a request, and as a reply to a source with key 2.
            let mut buf = rest.to_vec();
            if let Ok(reply) = respond_mac(&mut buf, NtpTimestamp(5), NtpTimestamp(6), Admission::Serve, &state, &keys) {
                assert!(reply.len <= rest.len());
            }
            let mut auth = SourceAuth::new(2, keys.get(2).cloned());
            let _ = auth.check(rest);
        }
        1 => {
            // A request signed with one of the keys (and perhaps preceded by an extension field),
            // then (position, xor) pairs.
            if rest.len() < 2 {
                return;
            }
            let id = [1u32, 2, 3, 20][rest[0] as usize % 4];
            let key = keys.get(id).unwrap();
            let mut req = vec![0u8; 48];
            req[0] = 0x20 | (rest[1] & 0x18) | 3; // a version from the fuzzer, mode 3
            req[40..].copy_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
            if rest[1] & 0x80 != 0 && req[0] & 0x38 == 0x20 {
                req.extend_from_slice(&[0x12, 0x34, 0x00, 0x20]);
                req.extend_from_slice(&[0xab; 28]);
            }
            let covered = req.len();
            req.resize(covered + 4 + key.digest_len(), 0);
            key.sign(&mut req, covered).unwrap();
            let original = req.clone();
            for pair in rest[2..].chunks_exact(3) {
                let at = u16::from_be_bytes([pair[0], pair[1]]) as usize % req.len();
                req[at] ^= pair[2];
            }
            let changed = req[..covered] != original[..covered];
            let len = req.len();
            if let Ok(reply) = respond_mac(&mut req, NtpTimestamp(5), NtpTimestamp(6), Admission::Serve, &state, &keys) {
                assert!(reply.len <= len);
                if let ReplyKind::Authenticated { .. } = reply.kind {
                    assert!(!changed, "a changed request was answered authenticated");
                    let reply_id = u32::from_be_bytes(req[48..52].try_into().unwrap());
                    let key = keys.get(reply_id).unwrap();
                    assert!(key.verify(&req[..48], &req[52..reply.len]));
                }
            }
        }
        _ => {
            // The key file parser.
            let _ = parse_key_file(&String::from_utf8_lossy(rest));
        }
    }
});

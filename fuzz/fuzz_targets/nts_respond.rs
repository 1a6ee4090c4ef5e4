//! NTS requests through `respond_nts`: arbitrary bytes (the parser's robustness), and valid
//! requests (real cookie, real authenticator) with fuzzer-chosen identifiers, placeholders and
//! byte changes (the cryptographic checks). Nothing may panic; a reply is never longer than its
//! request; a reply the server authenticated must verify with the session's keys and carry the
//! request's identifier and cookies that open; a NAK carries the identifier and nothing else.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::proto::nts::client;
use strata::proto::nts::cookie::cookie_len;
use strata::proto::nts::{is_nts, respond_nts, Aead, NtsContext, NtsKeys, NtsOutcome, Rotation, SessionKeys};
use strata::proto::respond::{Admission, ReplyKind};
use strata::proto::state::{ServerState, UnsyncPolicy};
use strata::proto::wire::NtpTimestamp;

const NOW: u64 = 1_780_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, rest)) = data.split_first() else { return };
    let keys = NtsKeys { master: [7; 32], rotation: Rotation::default(), require: false };
    let mut nts = keys.responder([9; 32]);
    let mut state = ServerState::unsynchronized(-24, UnsyncPolicy::Answer);
    state.synchronized = knobs & 1 == 1;
    state.stratum = 2;
    let aead = if knobs & 2 == 0 { Aead::SivCmac256 } else { Aead::GcmSiv128 };
    let session = SessionKeys::new(aead, &[1; 32], &[2; 32]).unwrap();

    let (request, uid) = if knobs & 4 == 0 {
        // Raw bytes.
        (rest.to_vec(), Vec::new())
    } else {
        // A valid request, then changes: the next bytes are the identifier's length (32..64),
        // the placeholders (0..3), then (position, xor) pairs.
        if rest.len() < 2 {
            return;
        }
        let uid = vec![0x5a; 32 + (rest[0] as usize % 33)];
        let placeholders = rest[1] as usize % 4;
        let mut cookie = vec![0u8; cookie_len(aead)];
        nts.keys.seal(&session, NOW, &[3; 16], &mut cookie).unwrap();
        let mut header = [0u8; 48];
        header[0] = 0x23;
        header[40..].copy_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
        let mut req = client::request(&header, &uid, &cookie, placeholders, &session, &vec![4; aead.nonce_len()]);
        for pair in rest[2..].chunks_exact(3) {
            let at = u16::from_be_bytes([pair[0], pair[1]]) as usize % req.len();
            req[at] ^= pair[2];
        }
        (req, uid)
    };
    let _ = is_nts(&request);
    let mut buf = request.clone();
    let ctx = NtsContext { keys: &mut nts.keys, nonces: &mut nts.nonces, unix_s: NOW };
    let outcome = respond_nts(
        &mut buf,
        NtpTimestamp(10 << 32),
        NtpTimestamp(11 << 32),
        Admission::Serve,
        &state,
        ctx,
    );
    match outcome {
        Ok(NtsOutcome::Answered { reply, cookies }) => {
            assert!(reply.len <= request.len());
            if let ReplyKind::Authenticated { .. } = reply.kind {
                // Only a request sealed with the session's keys can be answered: verify.
                if !uid.is_empty() {
                    let fresh = client::verify(&buf[..reply.len], &uid, &session).expect("an authenticated reply verifies");
                    assert_eq!(fresh.len(), cookies);
                    for c in fresh {
                        let mut c = client::trim_cookie(&c, aead).to_vec();
                        assert_eq!(nts.keys.open(&mut c, NOW), Ok(session));
                    }
                }
            }
        }
        Ok(NtsOutcome::Nak { reply, .. }) => {
            assert!(reply.len <= request.len());
            assert_eq!(&buf[12..16], b"NTSN");
        }
        Err(_) => {}
    }
});

//! Replies to strata's NTS client (`ClientSession::receive`, which strata runs on every packet
//! from an NTS upstream): arbitrary bytes (the parser's robustness), and genuine replies from
//! strata's own NTS server with fuzzer-chosen byte changes (the checks). Nothing may panic;
//! arbitrary bytes are never accepted; an accepted reply hands on exactly the header the server
//! sealed, and the cookie jar never holds more than eight.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::proto::nts::cookie::cookie_len;
use strata::proto::nts::session::{ClientSession, COOKIES_KEPT, UID_LEN};
use strata::proto::nts::{respond_nts, Aead, NtsContext, NtsKeys, NtsOutcome, Rotation, SessionKeys};
use strata::proto::respond::Admission;
use strata::proto::state::{ServerState, UnsyncPolicy};
use strata::proto::wire::NtpTimestamp;

const NOW: u64 = 1_780_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&knobs, rest)) = data.split_first() else { return };
    let keys = NtsKeys { master: [7; 32], rotation: Rotation::default(), require: false };
    let mut nts = keys.responder([9; 32]);
    let mut state = ServerState::unsynchronized(-24, UnsyncPolicy::Answer);
    state.synchronized = true;
    state.stratum = 2;
    let aead = if knobs & 2 == 0 { Aead::SivCmac256 } else { Aead::GcmSiv128 };
    let keys = SessionKeys::new(aead, &[1; 32], &[2; 32]).unwrap();
    let jar = 1 + (knobs as usize >> 4) % COOKIES_KEPT;
    let cookies = (0..jar)
        .map(|i| {
            let mut c = vec![0u8; cookie_len(aead)];
            nts.keys.seal(&keys, NOW, &[i as u8; 16], &mut c).unwrap();
            c
        })
        .collect();
    let mut session = ClientSession::new(keys, cookies);
    let mut header = [0u8; 48];
    header[0] = 0x23;
    header[40..].copy_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
    let request = session
        .request(&header, [0x5a; UID_LEN], &vec![4; aead.nonce_len()])
        .expect("a cookie in the jar");

    if knobs & 4 == 0 {
        // Raw bytes: nothing the fuzzer writes can carry our identifier and open with our key.
        assert!(session.receive(rest).is_err());
        return;
    }
    let mut reply = request.clone();
    let len = match respond_nts(
        &mut reply,
        NtpTimestamp(10 << 32),
        NtpTimestamp(11 << 32),
        Admission::Serve,
        &state,
        NtsContext { keys: &mut nts.keys, nonces: &mut nts.nonces, unix_s: NOW },
    ) {
        Ok(NtsOutcome::Answered { reply: r, .. }) => r.len,
        other => panic!("a valid request was not answered: {other:?}"),
    };
    reply.truncate(len);
    let genuine: [u8; 48] = reply[..48].try_into().unwrap();
    // (position, xor) pairs, then maybe a truncation.
    let mut changed = reply.clone();
    for pair in rest.chunks_exact(3) {
        let at = u16::from_be_bytes([pair[0], pair[1]]) as usize % changed.len();
        changed[at] ^= pair[2];
    }
    if knobs & 8 != 0 && rest.len() % 3 != 0 {
        changed.truncate(rest[rest.len() - 1] as usize % (changed.len() + 1));
    }
    if let Ok(h) = session.receive(&changed) {
        assert_eq!(h, genuine, "a changed reply handed on another header");
    }
    assert!(session.cookies() <= COOKIES_KEPT);
});

//! Interleaved mode under arbitrary traffic: a sequence of requests (arbitrary bytes, or a
//! request built from earlier replies' stamps, from one of a few addresses) through `respond()`
//! and the interleave step, with transmit stamps arriving or not. A reply is never longer than its
//! request, and it is interleaved only when its origin is a receive stamp the same address got
//! earlier and did not use yet, and then carries that exchange's transmit time. The bytes are also
//! read as a looped-back frame (`sent_reply`), which must not panic.
#![no_main]

use std::collections::HashMap;
use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use strata::proto::interleave::{candidate, mark_transmit, sent_reply, XleaveTable};
use strata::proto::respond::{respond, Admission};
use strata::proto::state::{ServerState, UnsyncPolicy};
use strata::proto::wire::ntp::Packet;
use strata::proto::wire::NtpTimestamp;

fuzz_target!(|data: &[u8]| {
    let _ = sent_reply(data);
    let table = XleaveTable::new(2, [0x1234, 0x5678]);
    let mut state = ServerState::unsynchronized(-24, UnsyncPolicy::Answer);
    state.synchronized = true;
    // What the table should know: (address, receive stamp) -> transmit time, unused.
    let mut model: HashMap<(IpAddr, u64), NtpTimestamp> = HashMap::new();
    // Receive stamps handed out, to build requests from.
    let mut handed: Vec<(IpAddr, NtpTimestamp)> = Vec::new();
    let mut t = 0xe98a_1b2d_0000_0000u64;
    let mut rest = data;
    while rest.len() >= 2 {
        let (op, len) = (rest[0], rest[1] as usize);
        rest = &rest[2..];
        let host = IpAddr::from([198, 19, 0, op & 3]);
        t += 0x1_0000_0000;
        let mut request = [0u8; 48];
        let body = &rest[..len.min(rest.len()).min(48)];
        request[..body.len()].copy_from_slice(body);
        rest = &rest[body.len()..];
        if op & 4 == 4 && !handed.is_empty() {
            // A request from someone's receive stamp (theirs or another's).
            let (_, rx) = handed[(op as usize >> 3) % handed.len()];
            let mut p = Packet::new_unchecked(&mut request[..]);
            p.set_origin_timestamp(rx);
        }
        let origin = Packet::new_unchecked(&request[..]).origin_timestamp();
        let cand = candidate(&request);
        let mut buf = request;
        let Ok(reply) = respond(
            &mut buf,
            NtpTimestamp(t),
            NtpTimestamp(t + 1000),
            Admission::Serve,
            &state,
        ) else {
            continue;
        };
        assert!(reply.len <= request.len());
        let f = table.finish(host, cand, &mut buf[..reply.len]);
        let expected = cand.and_then(|_| model.get(&(host, origin.0)).copied());
        if f.interleaved {
            // The table may forget (it is bounded), never invent.
            let tx = expected.expect("interleaved without a remembered exchange of this address");
            let p = Packet::new_unchecked(&buf[..]);
            assert_eq!(p.transmit_timestamp(), mark_transmit(tx));
            model.remove(&(host, origin.0));
        }
        if let Some(rx) = f.remember {
            let tx = mark_transmit(NtpTimestamp(t + 2000));
            table.save(host, rx, tx);
            model.insert((host, rx.0), tx);
            handed.push((host, rx));
            if op & 0x40 == 0x40 {
                let real = NtpTimestamp(t + 2500);
                if table.update_transmit(host, rx, real) {
                    model.insert((host, rx.0), real);
                }
            }
        }
    }
});

//! Arbitrary bytes through every parser, through `respond()` as an NTP payload and through
//! `frame::reply_in_place()` as a whole Ethernet frame: nothing may panic, a reply is never longer
//! than its request, and a dropped request is left untouched.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::proto::frame::{reply_in_place, stamp_transmit_in_frame};
use strata::proto::respond::{respond, Admission, KissCode};
use strata::proto::state::{ServerState, UnsyncPolicy};
use strata::proto::wire::extension::Trailer;
use strata::proto::wire::ntp::{Packet, Repr};
use strata::proto::wire::NtpTimestamp;

fuzz_target!(|data: &[u8]| {
    // The first byte picks the server's situation; the rest is the request.
    let Some((&knobs, request)) = data.split_first() else { return };
    let mut state = ServerState::unsynchronized(-24, UnsyncPolicy::Answer);
    state.synchronized = knobs & 1 == 1;
    if knobs & 2 == 2 {
        state.unsync_policy = UnsyncPolicy::Drop;
    }
    state.stratum = 2;
    state.reference_time = NtpTimestamp(0xe98a_1b20_0000_0000);
    let admission = match (knobs >> 2) & 3 {
        0 => Admission::Serve,
        i => Admission::Kiss(KissCode::ALL[i as usize - 1]),
    };

    let view = Packet::new_unchecked(request);
    if let Ok(repr) = Repr::parse(&view) {
        let _ = Trailer::parse(repr.version, view.trailer()).map(|t| t.fields().count());
    }

    let mut buf = request.to_vec();
    let tx = NtpTimestamp(0xe98a_1b2d_0000_1000);
    let rx = NtpTimestamp(0xe98a_1b2d_0000_0000);
    match respond(&mut buf, rx, tx, admission, &state) {
        Ok(reply) => assert!(reply.len <= request.len()),
        Err(_) => assert_eq!(buf, request),
    }

    // The same bytes as a whole frame, as the AF_XDP path sees them.
    let mut frame = request.to_vec();
    match reply_in_place(&mut frame, rx, tx, admission, &state, 123) {
        Ok(reply) => {
            assert!(reply.len <= request.len());
            stamp_transmit_in_frame(&mut frame[..reply.len], &reply, NtpTimestamp(1));
        }
        Err(_) => assert_eq!(frame, request),
    }
});

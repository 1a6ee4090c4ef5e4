//! Arbitrary bytes through every parser, through `respond()` as an NTP payload and through
//! `frame::reply_in_place()` as a whole Ethernet frame: nothing may panic, a reply is never longer
//! than its request, and a dropped request is left untouched. The same bytes as a mode-6 query
//! (`mode6::answer`): an answer is one bounded datagram, a response to the query asked.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strata::proto::frame::{reply_in_place, stamp_transmit_in_frame};
use strata::proto::mode6::{self, PeerView, Selection, SystemView, View};
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

    // As a mode-6 query (ntpq, check_ntp_peer) to a server with two sources.
    let mut out = [0u8; mode6::MAX_REPLY];
    if let Some(n) = mode6::answer(request, &mode6_view(), &mut out) {
        assert!((mode6::HEADER_LEN..=mode6::MAX_REPLY).contains(&n) && n % 4 == 0);
        assert_eq!((out[0] & 7, out[1] & 0x80, out[2..4] == request[2..4]), (6, 0x80, true));
        assert_eq!(out[1] & 0x1f, request[1] & 0x1f, "the opcode asked");
    }
});

fn mode6_view() -> View {
    let peer = |association: u16, selection| PeerView {
        association,
        address: std::net::IpAddr::from([198, 18, 0, association as u8]),
        port: 123,
        host_mode: 3,
        reach: 0xff,
        selection,
        poll: 6,
        peer_poll: 6,
        leap: 0,
        stratum: 1,
        precision: -20,
        root_delay: 0.0,
        root_dispersion: 0.0001,
        reference_id: *b"GPS\0",
        received: NtpTimestamp(0xe98a_1b20_0000_0000),
        offset: Some(0.000_1),
        delay: Some(0.000_2),
        dispersion: Some(0.001),
        jitter: None,
    };
    View {
        system: SystemView {
            leap: 0,
            stratum: 2,
            precision: -24,
            root_delay: 0.000_2,
            root_dispersion: 0.001,
            reference_id: [198, 18, 0, 1],
            reference_time: NtpTimestamp(0xe98a_1b20_0000_0000),
            clock: NtpTimestamp(0xe98a_1b2d_0000_0000),
            system_peer: 1,
            local: false,
            poll: 6,
            offset: 0.000_1,
            frequency_ppm: 1.5,
            jitter: 0.000_01,
            version: "strata fuzz",
        },
        peers: vec![peer(1, Selection::SystemPeer), peer(2, Selection::Candidate)],
    }
}

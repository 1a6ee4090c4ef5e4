//! Every rule of `respond()`, one test each, and the properties that hold for any input.

use super::*;
use crate::proto::state::test_fixtures::synced;
use crate::proto::wire::extension::ExtensionField;
use crate::proto::wire::ntp::Repr;
use proptest::prelude::*;

const T1: NtpTimestamp = NtpTimestamp(0xe98a_1b2c_1234_5678);
const T2: NtpTimestamp = NtpTimestamp(0xe98a_1b2d_0000_0000);
const T3: NtpTimestamp = NtpTimestamp(0xe98a_1b2d_0000_1000);
const REF: NtpTimestamp = NtpTimestamp(0xe98a_1b20_0000_0000);

fn request(version: u8, mode: Mode) -> Vec<u8> {
    let mut buf = vec![0u8; HEADER_LEN];
    let repr = Repr {
        leap: Leap::Unsynchronized,
        version,
        mode,
        stratum: 0,
        poll: 6,
        precision: -20,
        root_delay: NtpShort(0x1234),
        root_dispersion: NtpShort(0x5678),
        reference_id: *b"XXXX",
        reference_timestamp: NtpTimestamp(7),
        origin_timestamp: NtpTimestamp(8),
        receive_timestamp: NtpTimestamp(9),
        transmit_timestamp: T1,
    };
    repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
    buf
}

fn answer(buf: &mut [u8], state: &ServerState) -> Result<(Reply, Repr), DropReason> {
    let reply = respond(buf, T2, T3, Admission::Serve, state)?;
    Ok((
        reply,
        Repr::parse(&Packet::new_unchecked(&buf[..reply.len])).unwrap(),
    ))
}

#[test]
fn client_request_gets_a_server_reply_with_our_state() {
    let mut buf = request(4, Mode::Client);
    let (reply, r) = answer(&mut buf, &synced()).unwrap();
    assert_eq!(
        reply,
        Reply {
            len: 48,
            kind: ReplyKind::Time
        }
    );
    assert_eq!(r.leap, Leap::NoWarning);
    assert_eq!(r.version, 4);
    assert_eq!(r.mode, Mode::Server);
    assert_eq!(r.stratum, 2);
    assert_eq!(r.poll, 6, "the client's poll is echoed");
    assert_eq!(r.precision, -24);
    assert_eq!(r.root_delay, NtpShort(0x0000_0100));
    assert_eq!(r.reference_id, [198, 18, 0, 1]);
    assert_eq!(r.reference_timestamp, REF);
    assert_eq!(r.origin_timestamp, T1, "origin = the request's transmit");
    assert_eq!(r.receive_timestamp, T2);
    assert_eq!(r.transmit_timestamp, T3);
}

#[test]
fn root_dispersion_grows_15_ppm_since_the_reference_time() {
    let mut buf = request(4, Mode::Client);
    let (_, r) = answer(&mut buf, &synced()).unwrap();
    let elapsed_ns = T2.diff_nanos(REF) as u64; // 13 s
    let grown = r.root_dispersion.to_nanos() - NtpShort(0x200).to_nanos();
    let expected = elapsed_ns * 15 / 1_000_000;
    assert!(grown.abs_diff(expected) <= 20_000, "{grown} vs {expected}");

    let mut never_set = synced();
    never_set.reference_time = NtpTimestamp::ZERO;
    let mut buf = request(4, Mode::Client);
    assert_eq!(
        answer(&mut buf, &never_set).unwrap().1.root_dispersion,
        NtpShort(0x200)
    );
}

#[test]
fn every_version_from_1_to_4_is_answered_in_its_own_version() {
    for version in 1..=4 {
        let mut buf = request(version, Mode::Client);
        let (_, r) = answer(&mut buf, &synced()).unwrap();
        assert_eq!(r.version, version);
        assert_eq!(r.mode, Mode::Server);
    }
}

#[test]
fn ntpv1_mode_0_is_a_client_request_answered_in_mode_4() {
    let mut buf = request(1, Mode::Reserved);
    let (reply, r) = answer(&mut buf, &synced()).unwrap();
    assert_eq!(reply.kind, ReplyKind::Time);
    assert_eq!((r.version, r.mode), (1, Mode::Server));
}

#[test]
fn each_drop_reason() {
    let state = synced();
    let cases: Vec<(Vec<u8>, DropReason)> = vec![
        (request(4, Mode::Client)[..47].to_vec(), DropReason::TooShort),
        (vec![], DropReason::TooShort),
        (request(0, Mode::Client), DropReason::BadVersion),
        (request(5, Mode::Client), DropReason::BadVersion),
        (request(7, Mode::Client), DropReason::BadVersion),
        (request(4, Mode::Reserved), DropReason::ReservedMode),
        (request(2, Mode::Reserved), DropReason::ReservedMode),
        (request(4, Mode::SymmetricActive), DropReason::Symmetric),
        (request(4, Mode::SymmetricPassive), DropReason::Symmetric),
        (request(4, Mode::Server), DropReason::ServerMode),
        (request(4, Mode::Broadcast), DropReason::Broadcast),
        (request(2, Mode::Control), DropReason::Control),
        (request(2, Mode::Private), DropReason::Private),
        (
            [request(4, Mode::Client), vec![0; 8]].concat(),
            DropReason::MalformedExtension,
        ),
        (
            [request(4, Mode::Client), vec![0; 1]].concat(),
            DropReason::MalformedExtension,
        ),
        (
            [request(3, Mode::Client), vec![0; 32]].concat(),
            DropReason::MalformedExtension,
        ),
    ];
    for (mut bytes, reason) in cases {
        let before = bytes.clone();
        assert_eq!(respond(&mut bytes, T2, T3, Admission::Serve, &state), Err(reason));
        assert_eq!(bytes, before, "a dropped request is left untouched ({reason:?})");
    }
    let mut unsync_drop = synced();
    unsync_drop.synchronized = false;
    unsync_drop.unsync_policy = UnsyncPolicy::Drop;
    let mut buf = request(4, Mode::Client);
    assert_eq!(
        answer(&mut buf, &unsync_drop).unwrap_err(),
        DropReason::Unsynchronized
    );
}

#[test]
fn drop_reason_labels_are_distinct_and_indexed() {
    let mut labels: Vec<_> = DropReason::ALL.iter().map(|r| r.label()).collect();
    for (i, r) in DropReason::ALL.iter().enumerate() {
        assert_eq!(r.index(), i);
    }
    labels.sort();
    labels.dedup();
    assert_eq!(labels.len(), DropReason::ALL.len());
}

#[test]
fn unknown_extension_fields_are_not_echoed() {
    let mut buf = request(4, Mode::Client);
    let mut field = [0u8; 32];
    ExtensionField::emit(0x7777, &[0xab; 28], &mut field).unwrap();
    buf.extend_from_slice(&field);
    let (reply, r) = answer(&mut buf, &synced()).unwrap();
    assert_eq!(reply.len, 48);
    assert_eq!(r.origin_timestamp, T1);
}

#[test]
fn a_mac_is_accepted_and_not_echoed() {
    for mac_len in [4usize, 20, 24] {
        let mut buf = [request(4, Mode::Client), vec![0x5a; mac_len]].concat();
        assert_eq!(answer(&mut buf, &synced()).unwrap().0.len, 48, "MAC of {mac_len}");
        let mut v3 = [request(3, Mode::Client), vec![0x5a; mac_len]].concat();
        assert_eq!(
            answer(&mut v3, &synced()).unwrap().0.len,
            48,
            "v3 MAC of {mac_len}"
        );
    }
}

#[test]
fn unsynchronized_answer_is_li3_stratum16() {
    let mut state = synced();
    state.synchronized = false;
    let mut buf = request(4, Mode::Client);
    let (reply, r) = answer(&mut buf, &state).unwrap();
    assert_eq!(reply.kind, ReplyKind::Unsynchronized);
    assert_eq!(r.leap, Leap::Unsynchronized);
    assert_eq!(r.stratum, 16);
    assert_eq!(r.origin_timestamp, T1);
    assert_eq!(r.receive_timestamp, T2);
    assert_eq!(r.transmit_timestamp, T3);
}

#[test]
fn leap_warnings_are_passed_on_while_synchronized() {
    for leap in [Leap::AddSecond, Leap::DeleteSecond] {
        let mut state = synced();
        state.leap = leap;
        let mut buf = request(4, Mode::Client);
        assert_eq!(answer(&mut buf, &state).unwrap().1.leap, leap);
    }
}

#[test]
fn kiss_of_death_for_each_code() {
    for code in KissCode::ALL {
        for synchronized in [true, false] {
            let mut state = synced();
            state.synchronized = synchronized;
            let mut buf = request(4, Mode::Client);
            let reply = respond(&mut buf, T2, T3, Admission::Kiss(code), &state).unwrap();
            assert_eq!(
                reply,
                Reply {
                    len: 48,
                    kind: ReplyKind::Kiss(code)
                }
            );
            let r = Repr::parse(&Packet::new_unchecked(&buf[..])).unwrap();
            assert_eq!(r.stratum, 0);
            assert_eq!(r.leap, Leap::Unsynchronized);
            assert_eq!(r.mode, Mode::Server);
            assert_eq!(&r.reference_id, &code.code());
            assert_eq!(r.origin_timestamp, T1);
            // No time of ours leaks to a client being refused.
            assert_eq!(r.receive_timestamp, T1);
            assert_eq!(r.transmit_timestamp, T1);
            assert_eq!(r.reference_timestamp, NtpTimestamp::ZERO);
        }
    }
    assert_eq!(&KissCode::Rate.code(), b"RATE");
    assert_eq!(&KissCode::Deny.code(), b"DENY");
    assert_eq!(&KissCode::Rstr.code(), b"RSTR");
}

#[test]
fn kiss_is_refused_for_invalid_requests_too() {
    let mut buf = request(4, Mode::Private);
    let got = respond(&mut buf, T2, T3, Admission::Kiss(KissCode::Rate), &synced());
    assert_eq!(got, Err(DropReason::Private));
}

#[test]
fn stamp_transmit_rewrites_only_t3() {
    let mut buf = request(4, Mode::Client);
    answer(&mut buf, &synced()).unwrap();
    let before = buf.clone();
    stamp_transmit(&mut buf, NtpTimestamp(42));
    assert_eq!(&buf[..40], &before[..40]);
    assert_eq!(
        Packet::new_unchecked(&buf[..]).transmit_timestamp(),
        NtpTimestamp(42)
    );
}

proptest! {
    #[test]
    fn never_panics_and_never_amplifies(
        bytes in proptest::collection::vec(any::<u8>(), 0..400),
        kiss in proptest::option::of(0usize..3),
        synchronized: bool,
        drop_unsync: bool,
    ) {
        let mut state = synced();
        state.synchronized = synchronized;
        state.unsync_policy = if drop_unsync { UnsyncPolicy::Drop } else { UnsyncPolicy::Answer };
        let admission = kiss.map_or(Admission::Serve, |i| Admission::Kiss(KissCode::ALL[i]));
        let mut buf = bytes.clone();
        match respond(&mut buf, T2, T3, admission, &state) {
            Ok(reply) => {
                prop_assert!(reply.len <= bytes.len());
                let r = Repr::parse(&Packet::new_unchecked(&buf[..reply.len])).unwrap();
                prop_assert_eq!(r.mode, Mode::Server);
                prop_assert_eq!(r.origin_timestamp, Packet::new_unchecked(&bytes[..]).transmit_timestamp());
            }
            Err(_) => prop_assert_eq!(buf, bytes),
        }
    }

    #[test]
    fn any_valid_client_request_is_answered(
        version in 1u8..=4,
        header in proptest::collection::vec(any::<u8>(), HEADER_LEN),
    ) {
        let mut buf = header;
        buf[0] = (buf[0] & 0b1100_0000) | (version << 3) | Mode::Client as u8;
        let reply = respond(&mut buf, T2, T3, Admission::Serve, &synced()).unwrap();
        prop_assert_eq!(reply.len, HEADER_LEN);
    }
}

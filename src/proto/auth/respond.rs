//! A request authenticated with a symmetric key, answered in place (RFC 5905 section 7.3).
//!
//! A request whose MAC checks out with a key of the table gets the reply `respond()` writes,
//! followed by the MAC of that reply under the same key: 48 bytes, the key ID and the digest,
//! never longer than the request (which carried the same key's MAC, and perhaps extension
//! fields that are not echoed). A MAC with a key this server does not have gets a crypto-NAK
//! (RFC 5905 section 7.3, as ntpd does): the reply with a MAC of the key ID 0 alone, 52 bytes
//! for a request of at least 68, so the client learns that its key is unknown here instead of
//! timing out (counted as `crypto_nak_replies`; no larger than the time anyone gets for a plain
//! request). A digest that does not match is dropped and counted (`bad_mac`): it is a damaged
//! or forged packet, not a question. A Kiss-o'-Death goes out without a MAC (it carries no time). The MAC covers T3: the reply's kind is `Authenticated`, which the
//! pipeline never re-stamps.

use super::KeyTable;
use crate::proto::respond::{self, check_header, Admission, DropReason, Reply, ReplyKind};
use crate::proto::state::ServerState;
use crate::proto::wire::extension::{Trailer, MIN_MAC_LEN};
use crate::proto::wire::ntp::{Packet, HEADER_LEN};
use crate::proto::wire::NtpTimestamp;

/// Whether a request is long enough to carry a MAC, the ones [`respond_mac`] is for (lengths
/// only; `respond_mac` answers the others as `respond()` does).
#[inline]
pub fn has_mac(packet: &[u8]) -> bool {
    packet.len() >= HEADER_LEN + MIN_MAC_LEN
}

/// Answers the request in `packet` as `respond()` does, and authenticates the reply when the
/// request carries a MAC of a key in `keys`. `tx_time` is final: it is covered by the MAC.
#[inline]
pub fn respond_mac(
    packet: &mut [u8],
    rx_time: NtpTimestamp,
    tx_time: NtpTimestamp,
    admission: Admission,
    state: &ServerState,
    keys: &KeyTable,
) -> Result<Reply, DropReason> {
    check_header(packet)?;
    let version = Packet::new_unchecked(&packet[..HEADER_LEN]).version();
    let trailer =
        Trailer::parse(version, &packet[HEADER_LEN..]).map_err(|_| DropReason::MalformedExtension)?;
    let Some(mac) = trailer.mac.filter(|m| m.len() >= MIN_MAC_LEN) else {
        return respond::respond(packet, rx_time, tx_time, admission, state);
    };
    if matches!(admission, Admission::Kiss(_)) {
        return respond::respond(&mut packet[..HEADER_LEN], rx_time, tx_time, admission, state);
    }
    let key_id = u32::from_be_bytes([mac[0], mac[1], mac[2], mac[3]]);
    let covered = packet.len() - mac.len();
    let Some(key) = keys.get(key_id) else {
        let reply = respond::respond(&mut packet[..HEADER_LEN], rx_time, tx_time, admission, state)?;
        let synchronized = match reply.kind {
            ReplyKind::Time => true,
            ReplyKind::Unsynchronized => false,
            _ => return Ok(reply),
        };
        // Room: the request's MAC (key ID and digest) followed its header.
        packet[HEADER_LEN..HEADER_LEN + 4].fill(0);
        return Ok(Reply {
            len: HEADER_LEN + 4,
            kind: ReplyKind::CryptoNak { synchronized },
        });
    };
    if !key.verify(&packet[..covered], &mac[4..]) {
        return Err(DropReason::BadMac);
    }
    let reply = respond::respond(&mut packet[..HEADER_LEN], rx_time, tx_time, admission, state)?;
    let synchronized = match reply.kind {
        ReplyKind::Time => true,
        ReplyKind::Unsynchronized => false,
        _ => return Ok(reply),
    };
    // Room: the request carried a digest of this key's length after at least the header.
    let len = key
        .sign(packet, HEADER_LEN)
        .ok_or(DropReason::MalformedExtension)?;
    Ok(Reply {
        len,
        kind: ReplyKind::Authenticated { synchronized },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::auth::{Key, KeyType};
    use crate::proto::respond::KissCode;
    use crate::proto::state::test_fixtures::synced;
    use crate::proto::wire::extension::ExtensionField;
    use crate::proto::wire::ntp::{Leap, Mode};
    use proptest::prelude::*;

    const RX: NtpTimestamp = NtpTimestamp(0xe900_0000_0000_0001);
    const TX: NtpTimestamp = NtpTimestamp(0xe900_0000_0000_0002);

    fn table() -> KeyTable {
        KeyTable::new(vec![
            Key::new(1, KeyType::Md5, b"md5-secret-key").unwrap(),
            Key::new(2, KeyType::Sha1, b"sha1-secret-key").unwrap(),
            Key::new(3, KeyType::Aes128, &[7; 16]).unwrap(),
            // Its ID's low half reads as an extension field of 20 bytes: a MAC all the same.
            Key::new(20, KeyType::Md5, b"twenty-secret").unwrap(),
        ])
        .unwrap()
    }

    fn request(version: u8) -> Vec<u8> {
        let mut buf = vec![0u8; HEADER_LEN];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_leap_version_mode(Leap::NoWarning, version, Mode::Client);
        p.set_poll(6);
        p.set_transmit_timestamp(NtpTimestamp(0x1111_2222_3333_4444));
        buf
    }

    fn signed(version: u8, key: &Key) -> Vec<u8> {
        let mut buf = request(version);
        buf.resize(HEADER_LEN + 4 + key.digest_len(), 0);
        key.sign(&mut buf, HEADER_LEN).unwrap();
        buf
    }

    #[test]
    fn a_known_key_gets_a_reply_signed_with_it() {
        let keys = table();
        for id in [1, 2, 3, 20] {
            for version in [3, 4] {
                let key = keys.get(id).unwrap();
                let mut buf = signed(version, key);
                let len = buf.len();
                let reply = respond_mac(&mut buf, RX, TX, Admission::Serve, &synced(), &keys).unwrap();
                assert_eq!(reply.kind, ReplyKind::Authenticated { synchronized: true });
                assert_eq!(reply.len, len, "key {id}: as long as the request");
                let p = Packet::new_unchecked(&buf[..HEADER_LEN]);
                assert_eq!((p.mode(), p.version()), (Mode::Server, version));
                assert_eq!(p.origin_timestamp(), NtpTimestamp(0x1111_2222_3333_4444));
                assert_eq!(p.transmit_timestamp(), TX);
                assert_eq!(&buf[48..52], &id.to_be_bytes());
                assert!(key.verify(&buf[..48], &buf[52..len]), "key {id}");
            }
        }
    }

    #[test]
    fn extension_fields_before_the_mac_are_covered_and_not_echoed() {
        let keys = table();
        let key = keys.get(2).unwrap();
        let mut buf = request(4);
        let mut field = [0u8; 32];
        let n = ExtensionField::emit(0x2000, &[9; 24], &mut field).unwrap();
        buf.extend_from_slice(&field[..n]);
        let covered = buf.len();
        buf.resize(covered + 24, 0);
        key.sign(&mut buf, covered).unwrap();
        let request_len = buf.len();
        let reply = respond_mac(&mut buf, RX, TX, Admission::Serve, &synced(), &keys).unwrap();
        assert_eq!(reply.len, 72);
        assert!(reply.len < request_len);
        // The same request with the field changed after signing fails.
        let mut tampered = request(4);
        tampered.extend_from_slice(&field[..n]);
        tampered.resize(covered + 24, 0);
        key.sign(&mut tampered, covered).unwrap();
        tampered[60] ^= 1;
        assert_eq!(
            respond_mac(&mut tampered, RX, TX, Admission::Serve, &synced(), &keys),
            Err(DropReason::BadMac)
        );
    }

    #[test]
    fn unknown_keys_get_a_crypto_nak_and_bad_macs_are_dropped() {
        let keys = table();
        let other = Key::new(9, KeyType::Md5, b"md5-secret-key").unwrap();
        let mut buf = signed(4, &other);
        let asked = buf.len();
        let reply = respond_mac(&mut buf, RX, TX, Admission::Serve, &synced(), &keys).unwrap();
        assert_eq!(reply.kind, ReplyKind::CryptoNak { synchronized: true });
        assert_eq!(reply.len, HEADER_LEN + 4);
        assert!(reply.len < asked);
        assert_eq!(&buf[HEADER_LEN..HEADER_LEN + 4], &[0; 4], "the key ID 0 alone");
        let header = Packet::new_unchecked(&buf[..HEADER_LEN]);
        assert_eq!((header.mode(), header.receive_timestamp()), (Mode::Server, RX));
        let wrong = Key::new(1, KeyType::Md5, b"not-the-secret").unwrap();
        let mut buf = signed(4, &wrong);
        let before = buf.clone();
        assert_eq!(
            respond_mac(&mut buf, RX, TX, Admission::Serve, &synced(), &keys),
            Err(DropReason::BadMac)
        );
        assert_eq!(buf, before, "a refused request is left as it was");
        // Key 1 is MD5: a 20-byte digest under its ID is no MAC of it.
        let sha = Key::new(1, KeyType::Sha1, b"md5-secret-key").unwrap();
        let mut buf = signed(4, &sha);
        assert_eq!(
            respond_mac(&mut buf, RX, TX, Admission::Serve, &synced(), &keys),
            Err(DropReason::BadMac)
        );
    }

    #[test]
    fn plain_requests_nak_trailers_and_kisses_answer_as_respond_does() {
        let keys = table();
        let mut plain = request(4);
        let mut expected = plain.clone();
        let a = respond_mac(&mut plain, RX, TX, Admission::Serve, &synced(), &keys).unwrap();
        let b = respond::respond(&mut expected, RX, TX, Admission::Serve, &synced()).unwrap();
        assert_eq!((a, &plain), (b, &expected));

        let mut nak = request(4);
        nak.extend_from_slice(&[0; 4]);
        let r = respond_mac(&mut nak, RX, TX, Admission::Serve, &synced(), &keys).unwrap();
        assert_eq!((r.len, r.kind), (48, ReplyKind::Time));

        let mut kissed = signed(4, keys.get(1).unwrap());
        let r = respond_mac(
            &mut kissed,
            RX,
            TX,
            Admission::Kiss(KissCode::Rate),
            &synced(),
            &keys,
        )
        .unwrap();
        assert_eq!((r.len, r.kind), (48, ReplyKind::Kiss(KissCode::Rate)));

        let mut odd = request(4);
        odd.extend_from_slice(&[1; 10]);
        assert_eq!(
            respond_mac(&mut odd, RX, TX, Admission::Serve, &synced(), &keys),
            Err(DropReason::MalformedExtension)
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_never_grows(bytes in proptest::collection::vec(any::<u8>(), 0..160), mode_client in any::<bool>()) {
            let keys = table();
            let mut buf = bytes.clone();
            if mode_client && buf.len() >= 48 {
                buf[0] = (buf[0] & 0xf8) | 3;
            }
            if let Ok(reply) = respond_mac(&mut buf, RX, TX, Admission::Serve, &synced(), &keys) {
                prop_assert!(reply.len <= bytes.len());
            }
        }

        #[test]
        fn any_flipped_bit_of_a_signed_request_is_refused(id in prop::sample::select(vec![1u32, 2, 3, 20]), bit in 0usize..(48 * 8)) {
            let keys = table();
            let mut buf = signed(4, keys.get(id).unwrap());
            buf[bit / 8] ^= 1 << (bit % 8);
            let r = respond_mac(&mut buf, RX, TX, Admission::Serve, &synced(), &keys);
            // A flipped header bit either breaks the header rules or the MAC.
            prop_assert!(r.is_err(), "{:?}", r);
        }
    }
}

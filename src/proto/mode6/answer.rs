//! A mode-6 request answered from a [`View`].

use super::view::View;
use super::wire::{ErrorCode, Header, Opcode, MAX_DATA, MAX_REPLY};

/// Answers `request` into `out` and returns the reply's length, or None when the request is
/// not one to answer at all (not a readable mode-6 request: dropped).
pub fn answer(request: &[u8], view: &View, out: &mut [u8; MAX_REPLY]) -> Option<usize> {
    let (header, data) = Header::parse(request)?;
    let error = |out: &mut [u8; MAX_REPLY], code: ErrorCode| {
        Some(header.emit_reply(out, (code as u16) << 8, true, &[]))
    };
    match header.opcode {
        Opcode::ReadStatus if header.association == 0 => {
            // Association IDs and their status words, as many as fit.
            let mut list = Vec::with_capacity(view.peers.len() * 4);
            for peer in view.peers.iter().take(MAX_DATA / 4) {
                list.extend_from_slice(&peer.association.to_be_bytes());
                list.extend_from_slice(&peer.status().to_be_bytes());
            }
            Some(header.emit_reply(out, view.system.status(), false, &list))
        }
        Opcode::ReadStatus => match view.peers.iter().find(|p| p.association == header.association) {
            Some(peer) => Some(header.emit_reply(out, peer.status(), false, &[])),
            None => error(out, ErrorCode::UnknownAssociation),
        },
        Opcode::ReadVariables => {
            let (status, variables) = if header.association == 0 {
                (view.system.status(), view.system.variables())
            } else {
                match view.peers.iter().find(|p| p.association == header.association) {
                    Some(peer) => (peer.status(), peer.variables()),
                    None => return error(out, ErrorCode::UnknownAssociation),
                }
            };
            let Ok(asked) = std::str::from_utf8(data) else {
                return error(out, ErrorCode::BadFormat);
            };
            match text(asked, &variables) {
                Ok(text) => Some(header.emit_reply(out, status, false, text.as_bytes())),
                Err(code) => error(out, code),
            }
        }
        Opcode::Other(_) => error(out, ErrorCode::BadOpcode),
    }
}

/// `name=value, ...` for the names asked (comma-separated; none: all), whole variables only,
/// as many as fit in one reply. A name strata does not have is an error, as in ntpd (which
/// check_ntp_peer relies on to retry with older names).
fn text(asked: &str, variables: &[(&'static str, String)]) -> Result<String, ErrorCode> {
    let names: Vec<&str> = asked
        .split(',')
        .map(|n| n.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\0'))
        .filter(|n| !n.is_empty())
        .collect();
    let mut chosen = Vec::new();
    if names.is_empty() {
        chosen.extend(variables.iter());
    } else {
        for name in names {
            match variables.iter().find(|(n, _)| *n == name) {
                Some(v) => chosen.push(v),
                None => return Err(ErrorCode::UnknownVariable),
            }
        }
    }
    let mut text = String::new();
    for (name, value) in chosen {
        let sep = if text.is_empty() { "" } else { ", " };
        if text.len() + sep.len() + name.len() + 1 + value.len() > MAX_DATA {
            break;
        }
        text.push_str(sep);
        text.push_str(name);
        text.push('=');
        text.push_str(value);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::super::view::{PeerView, Selection, SystemView};
    use super::super::wire::HEADER_LEN;
    use super::*;
    use crate::proto::wire::NtpTimestamp;

    fn view() -> View {
        let peer = |association: u16, last: u8, selection| PeerView {
            association,
            address: format!("198.18.0.{last}").parse().unwrap(),
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
            root_dispersion: 0.001,
            reference_id: *b"GPS\0",
            received: NtpTimestamp::from_bits(0xebc1_0000_0000_0000),
            offset: Some(-0.000_125),
            delay: Some(0.000_05),
            dispersion: Some(0.002),
            jitter: Some(0.000_01),
        };
        View {
            system: SystemView {
                leap: 0,
                stratum: 2,
                precision: -25,
                root_delay: 0.000_05,
                root_dispersion: 0.003,
                reference_id: [198, 18, 0, 1],
                reference_time: NtpTimestamp::from_bits(0xebc1_0000_0000_0000),
                clock: NtpTimestamp::from_bits(0xebc1_0001_0000_0000),
                system_peer: 1,
                local: false,
                poll: 6,
                offset: 0.000_002,
                frequency_ppm: -3.5,
                jitter: 0.000_01,
                version: "strata test",
            },
            peers: vec![
                peer(1, 1, Selection::SystemPeer),
                peer(2, 2, Selection::Candidate),
            ],
        }
    }

    fn request(opcode: u8, assoc: u16, data: &[u8]) -> Vec<u8> {
        let mut v = vec![0x16, opcode, 0, 1, 0, 0];
        v.extend_from_slice(&assoc.to_be_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&(data.len() as u16).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    fn reply(req: &[u8]) -> (u8, u16, Vec<u8>) {
        let mut out = [0u8; MAX_REPLY];
        let n = answer(req, &view(), &mut out).expect("answered");
        assert!(n <= MAX_REPLY && n.is_multiple_of(4));
        let count = u16::from_be_bytes([out[10], out[11]]) as usize;
        (
            out[1],
            u16::from_be_bytes([out[4], out[5]]),
            out[HEADER_LEN..HEADER_LEN + count].to_vec(),
        )
    }

    #[test]
    fn read_status_lists_the_associations_and_the_system_peer() {
        let (op, status, data) = reply(&request(1, 0, b""));
        assert_eq!(op, 0x81);
        assert_eq!(status >> 8, 6, "clock source NTP, no leap");
        assert_eq!(data, vec![0, 1, 0x96, 0, 0, 2, 0x94, 0]);
    }

    #[test]
    fn read_variables_answers_what_check_ntp_peer_asks() {
        let (_, _, data) = reply(&request(2, 1, b"stratum,offset,jitter"));
        assert_eq!(
            String::from_utf8(data).unwrap(),
            "stratum=1, offset=-0.125000, jitter=0.010000"
        );
    }

    #[test]
    fn read_variables_without_names_gives_them_all_in_one_datagram() {
        let (_, _, data) = reply(&request(2, 0, b""));
        let text = String::from_utf8(data).unwrap();
        assert!(text.starts_with("version=\"strata test\", "), "{text}");
        assert!(
            text.contains("refid=198.18.0.1") && text.contains("offset=0.002000"),
            "{text}"
        );
        let (_, _, data) = reply(&request(2, 2, b""));
        let text = String::from_utf8(data).unwrap();
        assert!(
            text.contains("srcadr=198.18.0.2, srcport=123") && text.contains("reach=0xff"),
            "{text}"
        );
    }

    #[test]
    fn unknown_names_associations_and_opcodes_are_errors() {
        let (op, status, data) = reply(&request(2, 1, b"stratum,nonsense"));
        assert_eq!((op, status, data.len()), (0xc2, 5 << 8, 0));
        let (op, status, _) = reply(&request(2, 9, b""));
        assert_eq!((op, status), (0xc2, 4 << 8));
        let (op, status, _) = reply(&request(8, 0, b""));
        assert_eq!((op, status), (0xc8, 3 << 8));
        let (op, status, _) = reply(&request(2, 0, &[0xff, 0xfe]));
        assert_eq!((op, status), (0xc2, 2 << 8));
    }

    #[test]
    fn many_sources_still_fit_one_datagram() {
        let mut v = view();
        let template = v.peers[0].clone();
        v.peers = (1..=500)
            .map(|i| PeerView {
                association: i,
                ..template.clone()
            })
            .collect();
        let mut out = [0u8; MAX_REPLY];
        let n = answer(&request(1, 0, b""), &v, &mut out).unwrap();
        assert_eq!(n, MAX_REPLY);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_get_a_bounded_reply_or_none(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let mut out = [0u8; MAX_REPLY];
            if let Some(n) = answer(&bytes, &view(), &mut out) {
                proptest::prop_assert!((HEADER_LEN..=MAX_REPLY).contains(&n));
                proptest::prop_assert_eq!(out[0] & 7, 6);
                proptest::prop_assert!(out[1] & 0x80 != 0);
            }
        }
    }
}

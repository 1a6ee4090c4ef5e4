//! The requests the generator sends: basic client requests, and NTS-protected ones (RFC 8915: a
//! Unique Identifier, a cookie and an authenticator sealed with the C2S key of an NTS-KE session
//! each thread runs once; each reply is verified with the S2C key). Interleaved requests (RFC
//! 9769) are a later variant of [`RequestKind`]. Each variant writes its request into the
//! transport's buffer, and the matcher still finds the request from the origin timestamp of the
//! reply (an NTS request's identifier is derived from it too).

use serde::Serialize;
use strata::proto::wire::ntp::{Leap, Mode, Packet, Repr, HEADER_LEN};
use strata::proto::wire::{NtpShort, NtpTimestamp};

/// What kind of request to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestKind {
    /// An NTPv4 client request (mode 3) without extension fields.
    Basic,
    /// An NTS-protected NTPv4 request (needs --nts-ke): one cookie, the identifier and the
    /// authenticator; every reply is verified.
    Nts,
}

/// What an NTS-KE session gave a thread: the keys, and the cookie every request carries (a
/// server keeps no state per cookie, so one serves a whole run).
#[derive(Debug, Clone)]
pub struct NtsSession {
    pub keys: strata::proto::nts::SessionKeys,
    pub cookie: Vec<u8>,
}

/// The Unique Identifier of the request whose transmit timestamp is `cookie`: its 8 bytes four
/// times (unique per request, as RFC 8915 asks, and found again from the reply's origin).
#[inline]
pub fn nts_uid(cookie: NtpTimestamp) -> [u8; 32] {
    let b = cookie.0.to_be_bytes();
    let mut uid = [0u8; 32];
    for chunk in uid.chunks_mut(8) {
        chunk.copy_from_slice(&b);
    }
    uid
}

/// A prepared request: the constant bytes are built once, and only the transmit timestamp (the
/// request's unique cookie) is written per request.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    kind: RequestKind,
    bytes: [u8; HEADER_LEN],
    nts: Option<NtsSession>,
}

impl RequestTemplate {
    /// A template of `kind`; NTS requests need [`RequestTemplate::nts`] instead.
    pub fn new(kind: RequestKind) -> RequestTemplate {
        let mut bytes = [0u8; HEADER_LEN];
        match kind {
            RequestKind::Basic | RequestKind::Nts => Repr {
                leap: Leap::NoWarning,
                version: 4,
                mode: Mode::Client,
                stratum: 0,
                // 2^6 s, what a client that has settled in would send.
                poll: 6,
                precision: -20,
                root_delay: NtpShort::ZERO,
                root_dispersion: NtpShort::ZERO,
                reference_id: [0; 4],
                reference_timestamp: NtpTimestamp::ZERO,
                origin_timestamp: NtpTimestamp::ZERO,
                receive_timestamp: NtpTimestamp::ZERO,
                transmit_timestamp: NtpTimestamp::ZERO,
            }
            .emit(&mut Packet::new_unchecked(&mut bytes[..])),
        }
        RequestTemplate {
            kind,
            bytes,
            nts: None,
        }
    }

    /// NTS-protected requests with the keys and cookie of `session`.
    pub fn nts(session: NtsSession) -> RequestTemplate {
        RequestTemplate {
            kind: RequestKind::Nts,
            nts: Some(session),
            ..RequestTemplate::new(RequestKind::Nts)
        }
    }

    pub fn kind(&self) -> RequestKind {
        self.kind
    }

    /// The NTS session replies are verified with (None: basic requests).
    pub fn session(&self) -> Option<&NtsSession> {
        self.nts.as_ref()
    }

    /// Writes a request carrying `cookie` as its transmit timestamp into `buf`; returns its
    /// length.
    #[inline]
    pub fn write(&self, buf: &mut [u8], cookie: NtpTimestamp) -> usize {
        match self.kind {
            RequestKind::Basic => {
                buf[..HEADER_LEN].copy_from_slice(&self.bytes);
                Packet::new_unchecked(&mut buf[..HEADER_LEN]).set_transmit_timestamp(cookie);
                HEADER_LEN
            }
            RequestKind::Nts => {
                let Some(session) = &self.nts else {
                    return 0;
                };
                let mut header = self.bytes;
                Packet::new_unchecked(&mut header[..]).set_transmit_timestamp(cookie);
                let uid = nts_uid(cookie);
                let nonce = &uid[..session.keys.aead.nonce_len()];
                strata::proto::nts::client::write_request(
                    buf,
                    &header,
                    &uid,
                    &session.cookie,
                    0,
                    &session.keys,
                    nonce,
                )
                .unwrap_or(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_request_is_a_v4_client_request_with_the_cookie() {
        let t = RequestTemplate::new(RequestKind::Basic);
        let mut buf = [0xffu8; 100];
        let len = t.write(&mut buf, NtpTimestamp(0x0102_0304_0506_0708));
        assert_eq!(len, 48);
        let repr = Repr::parse(&Packet::new_checked(&buf[..len]).unwrap()).unwrap();
        assert_eq!(
            (repr.version, repr.mode, repr.leap),
            (4, Mode::Client, Leap::NoWarning)
        );
        assert_eq!(repr.transmit_timestamp, NtpTimestamp(0x0102_0304_0506_0708));
        assert_eq!(repr.origin_timestamp, NtpTimestamp::ZERO);
        // The request is what strata itself would answer.
        let mut reply = buf;
        let state = strata_test_support::unsynchronized();
        assert!(strata::proto::respond::respond(
            &mut reply[..len],
            NtpTimestamp(1),
            NtpTimestamp(2),
            strata::proto::respond::Admission::Serve,
            &state,
        )
        .is_ok());
    }
}

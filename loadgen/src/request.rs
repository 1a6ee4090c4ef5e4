//! The requests the generator sends. Only basic client requests exist now; interleaved requests
//! (RFC 9769, which carry the previous reply's receive timestamp per client) and NTS requests
//! (RFC 8915, with cookies and an authenticator in extension fields) are later variants of
//! [`RequestKind`]. Each variant writes its request into the transport's buffer, and the matcher
//! still finds the request from the origin timestamp of the reply.

use serde::Serialize;
use strata::proto::wire::ntp::{Leap, Mode, Packet, Repr, HEADER_LEN};
use strata::proto::wire::{NtpShort, NtpTimestamp};

/// What kind of request to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestKind {
    /// An NTPv4 client request (mode 3) without extension fields.
    Basic,
}

/// A prepared request: the constant bytes are built once, and only the transmit timestamp (the
/// request's unique cookie) is written per request.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    kind: RequestKind,
    bytes: [u8; HEADER_LEN],
}

impl RequestTemplate {
    pub fn new(kind: RequestKind) -> RequestTemplate {
        let mut bytes = [0u8; HEADER_LEN];
        match kind {
            RequestKind::Basic => Repr {
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
        RequestTemplate { kind, bytes }
    }

    pub fn kind(&self) -> RequestKind {
        self.kind
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

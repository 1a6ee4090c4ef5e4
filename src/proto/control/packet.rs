//! Requests strata sends upstream and the checks every reply must pass before it becomes a
//! measurement (RFC 5905 section 8's packet tests), on top of the wire format's `Repr`.

use crate::proto::wire::ntp::{Leap, Mode, Packet, Repr, HEADER_LEN};
use crate::proto::wire::{NtpShort, NtpTimestamp};

/// What our packets say about us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OurState {
    pub leap: Leap,
    pub stratum: u8,
    pub precision: i8,
    pub root_delay: NtpShort,
    pub root_dispersion: NtpShort,
    pub reference_id: [u8; 4],
    pub reference_time: NtpTimestamp,
}

/// Builds a client request (mode 3). Only the transmit timestamp means anything to a server; the
/// rest is zero so that a request tells an eavesdropper nothing about us.
pub fn client_request(poll: i8, transmit: NtpTimestamp) -> [u8; HEADER_LEN] {
    let repr = Repr {
        leap: Leap::NoWarning,
        version: 4,
        mode: Mode::Client,
        stratum: 0,
        poll,
        precision: 0,
        root_delay: NtpShort::ZERO,
        root_dispersion: NtpShort::ZERO,
        reference_id: [0; 4],
        reference_timestamp: NtpTimestamp::ZERO,
        origin_timestamp: NtpTimestamp::ZERO,
        receive_timestamp: NtpTimestamp::ZERO,
        transmit_timestamp: transmit,
    };
    let mut buf = [0u8; HEADER_LEN];
    repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
    buf
}

/// Builds a symmetric active packet (mode 1): our state, and the peer's last transmit timestamp
/// with the time we received it, so that the peer can measure against us too.
pub fn symmetric_packet(
    us: &OurState,
    poll: i8,
    origin: NtpTimestamp,
    receive: NtpTimestamp,
    transmit: NtpTimestamp,
) -> [u8; HEADER_LEN] {
    let repr = Repr {
        leap: us.leap,
        version: 4,
        mode: Mode::SymmetricActive,
        stratum: us.stratum,
        poll,
        precision: us.precision,
        root_delay: us.root_delay,
        root_dispersion: us.root_dispersion,
        reference_id: us.reference_id,
        reference_timestamp: us.reference_time,
        origin_timestamp: origin,
        receive_timestamp: receive,
        transmit_timestamp: transmit,
    };
    let mut buf = [0u8; HEADER_LEN];
    repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
    buf
}

/// Why a packet from a source is not used at all (it does not count as a reply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    TooShort,
    BadVersion,
    /// Not the mode this association expects.
    BadMode,
    /// The same transmit timestamp as the last packet: a duplicate or replay.
    Duplicate,
    /// Its origin timestamp is not our outstanding request: late, spoofed, or never asked for.
    Bogus,
    /// A zero transmit or receive timestamp.
    ZeroTimestamp,
    /// The source has a key and the packet is not authenticated with it.
    Unauthenticated(super::auth::AuthFailure),
}

impl Invalid {
    pub const fn label(self) -> &'static str {
        match self {
            Invalid::TooShort => "too short",
            Invalid::BadVersion => "bad version",
            Invalid::BadMode => "unexpected mode",
            Invalid::Duplicate => "duplicate",
            Invalid::Bogus => "not a reply to our request",
            Invalid::ZeroTimestamp => "zero timestamp",
            Invalid::Unauthenticated(_) => "not authenticated with the source's key",
        }
    }
}

/// Parses a reply and applies the header tests that do not depend on the source's state.
pub fn parse(bytes: &[u8], expected: &[Mode]) -> Result<Repr, Invalid> {
    let packet = Packet::new_checked(bytes).map_err(|_| Invalid::TooShort)?;
    let repr = Repr::parse(&packet).map_err(|_| Invalid::TooShort)?;
    if !(1..=4).contains(&repr.version) {
        return Err(Invalid::BadVersion);
    }
    if !expected.contains(&repr.mode) {
        return Err(Invalid::BadMode);
    }
    if repr.transmit_timestamp == NtpTimestamp::ZERO {
        return Err(Invalid::ZeroTimestamp);
    }
    Ok(repr)
}

/// Offset (true time minus the kernel clock) and delay of one exchange, in seconds, with the
/// kernel time at its middle. `t1` and `t4` are kernel nanoseconds of our send and receive;
/// `t2` and `t3` the server's receive and transmit timestamps.
pub fn measure(t1: i64, t2: NtpTimestamp, t3: NtpTimestamp, t4: i64) -> (f64, f64, i64) {
    let pivot = t1 as i128;
    let t2 = t2.to_unix_nanos(pivot);
    let t3 = t3.to_unix_nanos(pivot);
    let (t1, t4) = (t1 as i128, t4 as i128);
    let offset = ((t2 - t1) + (t3 - t4)) as f64 / 2.0 * 1e-9;
    let delay = ((t4 - t1) - (t3 - t2)) as f64 * 1e-9;
    (offset, delay, ((t1 + t4) / 2) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: i64 = 1_700_000_000_000_000_000;

    #[test]
    fn offset_and_delay_of_an_exchange() {
        // Server 5 ms ahead, 1 ms each way, 100 us in the server.
        let t1 = T;
        let t2 = NtpTimestamp::from_unix_nanos((T + 1_000_000 + 5_000_000) as i128);
        let t3 = NtpTimestamp::from_unix_nanos((T + 1_100_000 + 5_000_000) as i128);
        let t4 = T + 2_100_000;
        let (offset, delay, mid) = measure(t1, t2, t3, t4);
        assert!((offset - 5e-3).abs() < 1e-9, "{offset}");
        assert!((delay - 2e-3).abs() < 1e-9, "{delay}");
        assert_eq!(mid, T + 1_050_000);
    }

    #[test]
    fn requests_parse_back() {
        let xmt = NtpTimestamp(0xe900_0000_1234_5678);
        let req = client_request(6, xmt);
        let r = Repr::parse(&Packet::new_unchecked(&req[..])).unwrap();
        assert_eq!(
            (r.mode, r.version, r.poll, r.transmit_timestamp),
            (Mode::Client, 4, 6, xmt)
        );
        assert_eq!(r.origin_timestamp, NtpTimestamp::ZERO);
        assert_eq!(parse(&req, &[Mode::Server]), Err(Invalid::BadMode));
        assert_eq!(parse(&req[..40], &[Mode::Client]), Err(Invalid::TooShort));
        assert!(parse(&req, &[Mode::Client]).is_ok());

        let us = OurState {
            leap: Leap::NoWarning,
            stratum: 2,
            precision: -20,
            root_delay: NtpShort(7),
            root_dispersion: NtpShort(9),
            reference_id: [198, 18, 0, 1],
            reference_time: NtpTimestamp(5),
        };
        let p = symmetric_packet(&us, 4, NtpTimestamp(1), NtpTimestamp(2), xmt);
        let r = parse(&p, &[Mode::SymmetricActive, Mode::SymmetricPassive]).unwrap();
        assert_eq!(
            (r.stratum, r.reference_id, r.origin_timestamp, r.receive_timestamp),
            (2, [198, 18, 0, 1], NtpTimestamp(1), NtpTimestamp(2))
        );
        let mut zero = p;
        zero[40..48].fill(0);
        assert_eq!(
            parse(&zero, &[Mode::SymmetricActive]),
            Err(Invalid::ZeroTimestamp)
        );
    }
}

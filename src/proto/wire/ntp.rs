//! The NTP packet header (RFC 5905 section 7.3): a zero-copy view and its `Repr`.
//!
//! ```text
//!  0 LI VN Mode | 1 Stratum | 2 Poll | 3 Precision
//!  4 Root Delay (short)   8 Root Dispersion (short)   12 Reference ID
//! 16 Reference Timestamp 24 Origin Timestamp 32 Receive Timestamp 40 Transmit Timestamp
//! 48 extension fields (RFC 7822) and/or a MAC
//! ```

use super::{Error, NtpShort, NtpTimestamp, Result};

mod field {
    use crate::proto::wire::Field;
    pub const LI_VN_MODE: usize = 0;
    pub const STRATUM: usize = 1;
    pub const POLL: usize = 2;
    pub const PRECISION: usize = 3;
    pub const ROOT_DELAY: Field = 4..8;
    pub const ROOT_DISPERSION: Field = 8..12;
    pub const REFERENCE_ID: Field = 12..16;
    pub const REFERENCE_TS: Field = 16..24;
    pub const ORIGIN_TS: Field = 24..32;
    pub const RECEIVE_TS: Field = 32..40;
    pub const TRANSMIT_TS: Field = 40..48;
}

/// Length of the NTP header without extension fields or MAC.
pub const HEADER_LEN: usize = 48;

/// The leap indicator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leap {
    NoWarning = 0,
    /// The last minute of the day has 61 seconds.
    AddSecond = 1,
    /// The last minute of the day has 59 seconds.
    DeleteSecond = 2,
    /// The clock is not synchronized (also set in Kiss-o'-Death packets).
    Unsynchronized = 3,
}

impl Leap {
    pub fn from_bits(bits: u8) -> Leap {
        match bits & 3 {
            0 => Leap::NoWarning,
            1 => Leap::AddSecond,
            2 => Leap::DeleteSecond,
            _ => Leap::Unsynchronized,
        }
    }
}

/// The association mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Reserved in NTPv2+; NTPv1 had no mode field and sent zero here.
    Reserved = 0,
    SymmetricActive = 1,
    SymmetricPassive = 2,
    Client = 3,
    Server = 4,
    Broadcast = 5,
    /// NTP control messages (ntpq, mode 6).
    Control = 6,
    /// Implementation-specific (ntpdc, mode 7; the monlist amplification vector).
    Private = 7,
}

impl Mode {
    pub fn from_bits(bits: u8) -> Mode {
        match bits & 7 {
            0 => Mode::Reserved,
            1 => Mode::SymmetricActive,
            2 => Mode::SymmetricPassive,
            3 => Mode::Client,
            4 => Mode::Server,
            5 => Mode::Broadcast,
            6 => Mode::Control,
            _ => Mode::Private,
        }
    }
}

/// A read/write view over an NTP packet in a byte buffer.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking its length; accessors panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after checking that it holds at least a whole header.
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    fn bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn u32_at(&self, range: super::Field) -> u32 {
        let b = &self.bytes()[range];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    fn u64_at(&self, range: super::Field) -> u64 {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&self.bytes()[range]);
        u64::from_be_bytes(raw)
    }

    pub fn leap(&self) -> Leap {
        Leap::from_bits(self.bytes()[field::LI_VN_MODE] >> 6)
    }

    /// The version number, 0 to 7 as sent (only 1 to 4 are valid NTP).
    pub fn version(&self) -> u8 {
        (self.bytes()[field::LI_VN_MODE] >> 3) & 7
    }

    pub fn mode(&self) -> Mode {
        Mode::from_bits(self.bytes()[field::LI_VN_MODE])
    }

    pub fn stratum(&self) -> u8 {
        self.bytes()[field::STRATUM]
    }

    /// The poll interval as a signed log2 of seconds.
    pub fn poll(&self) -> i8 {
        self.bytes()[field::POLL] as i8
    }

    /// The precision as a signed log2 of seconds.
    pub fn precision(&self) -> i8 {
        self.bytes()[field::PRECISION] as i8
    }

    pub fn root_delay(&self) -> NtpShort {
        NtpShort(self.u32_at(field::ROOT_DELAY))
    }

    pub fn root_dispersion(&self) -> NtpShort {
        NtpShort(self.u32_at(field::ROOT_DISPERSION))
    }

    /// The reference ID as its four wire bytes (an IPv4 address, an MD5 prefix, an ASCII code).
    pub fn reference_id(&self) -> [u8; 4] {
        let b = &self.bytes()[field::REFERENCE_ID];
        [b[0], b[1], b[2], b[3]]
    }

    pub fn reference_timestamp(&self) -> NtpTimestamp {
        NtpTimestamp(self.u64_at(field::REFERENCE_TS))
    }

    pub fn origin_timestamp(&self) -> NtpTimestamp {
        NtpTimestamp(self.u64_at(field::ORIGIN_TS))
    }

    pub fn receive_timestamp(&self) -> NtpTimestamp {
        NtpTimestamp(self.u64_at(field::RECEIVE_TS))
    }

    pub fn transmit_timestamp(&self) -> NtpTimestamp {
        NtpTimestamp(self.u64_at(field::TRANSMIT_TS))
    }

    /// Everything after the 48-byte header: extension fields and/or a MAC.
    pub fn trailer(&self) -> &[u8] {
        &self.bytes()[HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Sets leap, version and mode at once (they share one byte).
    pub fn set_leap_version_mode(&mut self, leap: Leap, version: u8, mode: Mode) {
        self.bytes_mut()[field::LI_VN_MODE] = ((leap as u8) << 6) | ((version & 7) << 3) | mode as u8;
    }

    pub fn set_stratum(&mut self, stratum: u8) {
        self.bytes_mut()[field::STRATUM] = stratum;
    }

    pub fn set_poll(&mut self, poll: i8) {
        self.bytes_mut()[field::POLL] = poll as u8;
    }

    pub fn set_precision(&mut self, precision: i8) {
        self.bytes_mut()[field::PRECISION] = precision as u8;
    }

    pub fn set_root_delay(&mut self, value: NtpShort) {
        self.bytes_mut()[field::ROOT_DELAY].copy_from_slice(&value.0.to_be_bytes());
    }

    pub fn set_root_dispersion(&mut self, value: NtpShort) {
        self.bytes_mut()[field::ROOT_DISPERSION].copy_from_slice(&value.0.to_be_bytes());
    }

    pub fn set_reference_id(&mut self, id: [u8; 4]) {
        self.bytes_mut()[field::REFERENCE_ID].copy_from_slice(&id);
    }

    pub fn set_reference_timestamp(&mut self, ts: NtpTimestamp) {
        self.bytes_mut()[field::REFERENCE_TS].copy_from_slice(&ts.0.to_be_bytes());
    }

    pub fn set_origin_timestamp(&mut self, ts: NtpTimestamp) {
        self.bytes_mut()[field::ORIGIN_TS].copy_from_slice(&ts.0.to_be_bytes());
    }

    pub fn set_receive_timestamp(&mut self, ts: NtpTimestamp) {
        self.bytes_mut()[field::RECEIVE_TS].copy_from_slice(&ts.0.to_be_bytes());
    }

    pub fn set_transmit_timestamp(&mut self, ts: NtpTimestamp) {
        self.bytes_mut()[field::TRANSMIT_TS].copy_from_slice(&ts.0.to_be_bytes());
    }
}

/// The header as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub leap: Leap,
    pub version: u8,
    pub mode: Mode,
    pub stratum: u8,
    pub poll: i8,
    pub precision: i8,
    pub root_delay: NtpShort,
    pub root_dispersion: NtpShort,
    pub reference_id: [u8; 4],
    pub reference_timestamp: NtpTimestamp,
    pub origin_timestamp: NtpTimestamp,
    pub receive_timestamp: NtpTimestamp,
    pub transmit_timestamp: NtpTimestamp,
}

impl Repr {
    /// Reads the header. Any version and mode is accepted here; what to answer is `respond()`'s
    /// business.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            leap: packet.leap(),
            version: packet.version(),
            mode: packet.mode(),
            stratum: packet.stratum(),
            poll: packet.poll(),
            precision: packet.precision(),
            root_delay: packet.root_delay(),
            root_dispersion: packet.root_dispersion(),
            reference_id: packet.reference_id(),
            reference_timestamp: packet.reference_timestamp(),
            origin_timestamp: packet.origin_timestamp(),
            receive_timestamp: packet.receive_timestamp(),
            transmit_timestamp: packet.transmit_timestamp(),
        })
    }

    /// The length `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 48-byte header; the buffer must hold at least that many bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        packet.set_leap_version_mode(self.leap, self.version, self.mode);
        packet.set_stratum(self.stratum);
        packet.set_poll(self.poll);
        packet.set_precision(self.precision);
        packet.set_root_delay(self.root_delay);
        packet.set_root_dispersion(self.root_dispersion);
        packet.set_reference_id(self.reference_id);
        packet.set_reference_timestamp(self.reference_timestamp);
        packet.set_origin_timestamp(self.origin_timestamp);
        packet.set_receive_timestamp(self.receive_timestamp);
        packet.set_transmit_timestamp(self.transmit_timestamp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A client request as ntpdig sends it (NTPv4, mode 3), with a known transmit timestamp.
    const CLIENT_REQUEST: [u8; 48] = [
        0x23, 0x00, 0x06, 0xec, // LI 0, VN 4, mode 3; stratum 0; poll 6; precision -20
        0x00, 0x01, 0x80, 0x00, // root delay 1.5 s
        0x00, 0x00, 0x40, 0x00, // root dispersion 0.25 s
        0xc0, 0x00, 0x02, 0x01, // refid 192.0.2.1
        0, 0, 0, 0, 0, 0, 0, 1, // reference
        0, 0, 0, 0, 0, 0, 0, 2, // origin
        0, 0, 0, 0, 0, 0, 0, 3, // receive
        0xe9, 0x8a, 0x1b, 0x2c, 0x12, 0x34, 0x56, 0x78, // transmit
    ];

    #[test]
    fn every_field_reads() {
        let p = Packet::new_checked(&CLIENT_REQUEST[..]).unwrap();
        assert_eq!(p.leap(), Leap::NoWarning);
        assert_eq!(p.version(), 4);
        assert_eq!(p.mode(), Mode::Client);
        assert_eq!(p.stratum(), 0);
        assert_eq!(p.poll(), 6);
        assert_eq!(p.precision(), -20);
        assert_eq!(p.root_delay(), NtpShort(0x0001_8000));
        assert_eq!(p.root_delay().to_nanos(), 1_500_000_000);
        assert_eq!(p.root_dispersion().to_nanos(), 250_000_000);
        assert_eq!(p.reference_id(), [192, 0, 2, 1]);
        assert_eq!(p.reference_timestamp(), NtpTimestamp(1));
        assert_eq!(p.origin_timestamp(), NtpTimestamp(2));
        assert_eq!(p.receive_timestamp(), NtpTimestamp(3));
        assert_eq!(p.transmit_timestamp(), NtpTimestamp(0xe98a_1b2c_1234_5678));
        assert!(p.trailer().is_empty());
    }

    #[test]
    fn every_field_writes_where_it_belongs() {
        let mut buf = [0u8; 48];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_leap_version_mode(Leap::Unsynchronized, 3, Mode::Server);
        assert_eq!(p.bytes()[0], 0b11_011_100);
        p.set_stratum(16);
        p.set_poll(-3);
        p.set_precision(-25);
        p.set_root_delay(NtpShort(0x0102_0304));
        p.set_root_dispersion(NtpShort(0x0506_0708));
        p.set_reference_id(*b"RATE");
        p.set_reference_timestamp(NtpTimestamp(0x1111_1111_1111_1111));
        p.set_origin_timestamp(NtpTimestamp(0x2222_2222_2222_2222));
        p.set_receive_timestamp(NtpTimestamp(0x3333_3333_3333_3333));
        p.set_transmit_timestamp(NtpTimestamp(0x4444_4444_4444_4444));
        assert_eq!(buf[1], 16);
        assert_eq!(buf[2], 0xfd);
        assert_eq!(buf[3], 0xe7);
        assert_eq!(&buf[4..8], &[1, 2, 3, 4]);
        assert_eq!(&buf[8..12], &[5, 6, 7, 8]);
        assert_eq!(&buf[12..16], b"RATE");
        assert_eq!(&buf[16..24], &[0x11; 8]);
        assert_eq!(&buf[24..32], &[0x22; 8]);
        assert_eq!(&buf[32..40], &[0x33; 8]);
        assert_eq!(&buf[40..48], &[0x44; 8]);
    }

    #[test]
    fn every_leap_and_mode_value_decodes() {
        for bits in 0..4u8 {
            assert_eq!(Leap::from_bits(bits) as u8, bits);
        }
        for bits in 0..8u8 {
            assert_eq!(Mode::from_bits(bits) as u8, bits);
        }
    }

    #[test]
    fn short_buffer_is_truncated() {
        assert_eq!(
            Packet::new_checked(&CLIENT_REQUEST[..47]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&[0u8; 10][..])),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn trailer_is_what_follows_the_header() {
        let mut buf = [0u8; 68];
        buf[..48].copy_from_slice(&CLIENT_REQUEST);
        buf[48] = 0xaa;
        assert_eq!(Packet::new_checked(&buf[..]).unwrap().trailer().len(), 20);
        assert_eq!(Packet::new_checked(&buf[..]).unwrap().trailer()[0], 0xaa);
    }

    fn any_repr() -> impl Strategy<Value = Repr> {
        (
            (0u8..4, 0u8..8, 0u8..8, any::<u8>(), any::<i8>(), any::<i8>()),
            (any::<u32>(), any::<u32>(), any::<[u8; 4]>()),
            (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        )
            .prop_map(
                |((li, vn, mode, stratum, poll, precision), (rd, rdisp, refid), (r, o, rx, tx))| Repr {
                    leap: Leap::from_bits(li),
                    version: vn,
                    mode: Mode::from_bits(mode),
                    stratum,
                    poll,
                    precision,
                    root_delay: NtpShort(rd),
                    root_dispersion: NtpShort(rdisp),
                    reference_id: refid,
                    reference_timestamp: NtpTimestamp(r),
                    origin_timestamp: NtpTimestamp(o),
                    receive_timestamp: NtpTimestamp(rx),
                    transmit_timestamp: NtpTimestamp(tx),
                },
            )
    }

    proptest! {
        #[test]
        fn parse_emit_round_trip(repr in any_repr()) {
            let mut buf = [0u8; HEADER_LEN];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_unchecked(&buf[..])).unwrap(), repr);
        }

        #[test]
        fn emit_parse_round_trip(bytes in proptest::collection::vec(any::<u8>(), HEADER_LEN)) {
            let repr = Repr::parse(&Packet::new_unchecked(&bytes[..])).unwrap();
            let mut buf = [0u8; HEADER_LEN];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(&buf[..], &bytes[..]);
        }
    }
}

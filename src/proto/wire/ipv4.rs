//! The IPv4 header (RFC 791): a zero-copy view and its `Repr`.
//!
//! ```text
//!  0 Version/IHL | 1 DSCP/ECN | 2 Total Length | 4 Identification | 6 Flags/Fragment Offset
//!  8 TTL | 9 Protocol | 10 Header Checksum | 12 Source | 16 Destination | 20 options (IHL > 5)
//! ```
//!
//! Options are allowed (IHL 5 to 15) and kept as bytes: a responder echoes them unread. Fragments
//! are reported ([`Packet::is_fragment`]) rather than rejected, so that callers can count them
//! before dropping them; a server never reassembles.

use std::net::Ipv4Addr;

use super::{checksum, Error, Result};

mod field {
    use crate::proto::wire::Field;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: Field = 2..4;
    pub const IDENT: Field = 4..6;
    pub const FLG_OFF: Field = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Field = 10..12;
    pub const SRC_ADDR: Field = 12..16;
    pub const DST_ADDR: Field = 16..20;
    pub const OPTIONS: usize = 20;
}

/// Length of the header without options.
pub const HEADER_LEN: usize = field::OPTIONS;
/// Length of the header with the most options (IHL 15).
pub const MAX_HEADER_LEN: usize = 60;

const FLAG_DONT_FRAG: u16 = 0x4000;
const FLAG_MORE_FRAGS: u16 = 0x2000;
const FRAG_OFFSET_MASK: u16 = 0x1fff;

/// An IP protocol number (IPv4's Protocol, IPv6's Next Header).
///
/// A newtype with constants rather than an enum, as [`super::ethernet::EtherType`] is: every value
/// is representable and comparing one is a compare.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpProtocol(pub u8);

impl IpProtocol {
    /// IPv6 Hop-by-Hop Options.
    pub const HOP_BY_HOP: IpProtocol = IpProtocol(0);
    pub const ICMP: IpProtocol = IpProtocol(1);
    pub const TCP: IpProtocol = IpProtocol(6);
    pub const UDP: IpProtocol = IpProtocol(17);
    /// IPv6 Routing header.
    pub const IPV6_ROUTE: IpProtocol = IpProtocol(43);
    /// IPv6 Fragment header.
    pub const IPV6_FRAG: IpProtocol = IpProtocol(44);
    pub const ICMPV6: IpProtocol = IpProtocol(58);
    /// IPv6 Destination Options.
    pub const IPV6_OPTS: IpProtocol = IpProtocol(60);
}

impl std::fmt::Debug for IpProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            IpProtocol::HOP_BY_HOP => f.write_str("HopByHop"),
            IpProtocol::ICMP => f.write_str("ICMP"),
            IpProtocol::TCP => f.write_str("TCP"),
            IpProtocol::UDP => f.write_str("UDP"),
            IpProtocol::IPV6_ROUTE => f.write_str("IPv6-Route"),
            IpProtocol::IPV6_FRAG => f.write_str("IPv6-Frag"),
            IpProtocol::ICMPV6 => f.write_str("ICMPv6"),
            IpProtocol::IPV6_OPTS => f.write_str("IPv6-Opts"),
            IpProtocol(other) => write!(f, "{other}"),
        }
    }
}

impl std::fmt::Display for IpProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// A read/write view over an IPv4 packet in a byte buffer.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checking it; accessors panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a buffer after [`Packet::check_len`].
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Self::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks that the header, with its options, and the total length fit in the buffer, and
    /// that the header length and total length agree with each other. After this, every getter,
    /// [`Packet::options`] and [`Packet::payload`] are in bounds. The buffer may be longer than
    /// the total length (Ethernet pads short frames). The version is [`Repr::parse`]'s business.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let header_len = self.header_len() as usize;
        let total_len = self.total_len() as usize;
        if header_len < HEADER_LEN {
            Err(Error::Malformed)
        } else if header_len > len {
            Err(Error::Truncated)
        } else if total_len < header_len {
            Err(Error::Malformed)
        } else if total_len > len {
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

    fn u16_at(&self, range: super::Field) -> u16 {
        let b = &self.bytes()[range];
        u16::from_be_bytes([b[0], b[1]])
    }

    fn addr_at(&self, range: super::Field) -> Ipv4Addr {
        let b = &self.bytes()[range];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }

    pub fn version(&self) -> u8 {
        self.bytes()[field::VER_IHL] >> 4
    }

    /// The header length in bytes (IHL times 4): 20 to 60 in a valid packet.
    pub fn header_len(&self) -> u8 {
        (self.bytes()[field::VER_IHL] & 0x0f) * 4
    }

    /// Differentiated Services code point (RFC 2474), the upper six bits of the old TOS byte.
    pub fn dscp(&self) -> u8 {
        self.bytes()[field::DSCP_ECN] >> 2
    }

    /// Explicit Congestion Notification (RFC 3168), the lower two bits of the old TOS byte.
    pub fn ecn(&self) -> u8 {
        self.bytes()[field::DSCP_ECN] & 0x03
    }

    /// The length of header, options and payload.
    pub fn total_len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }

    pub fn ident(&self) -> u16 {
        self.u16_at(field::IDENT)
    }

    pub fn dont_frag(&self) -> bool {
        self.u16_at(field::FLG_OFF) & FLAG_DONT_FRAG != 0
    }

    pub fn more_frags(&self) -> bool {
        self.u16_at(field::FLG_OFF) & FLAG_MORE_FRAGS != 0
    }

    /// The fragment offset in bytes (the field counts 8-byte units).
    pub fn frag_offset(&self) -> u16 {
        (self.u16_at(field::FLG_OFF) & FRAG_OFFSET_MASK) << 3
    }

    /// Whether this is a piece of a larger datagram (first, middle or last): it carries only a
    /// part of the UDP datagram, which a server does not reassemble.
    pub fn is_fragment(&self) -> bool {
        self.u16_at(field::FLG_OFF) & (FLAG_MORE_FRAGS | FRAG_OFFSET_MASK) != 0
    }

    pub fn ttl(&self) -> u8 {
        self.bytes()[field::TTL]
    }

    pub fn protocol(&self) -> IpProtocol {
        IpProtocol(self.bytes()[field::PROTOCOL])
    }

    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        self.addr_at(field::SRC_ADDR)
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        self.addr_at(field::DST_ADDR)
    }

    /// Whether the header checksum verifies (the header's sum, field included, is 0xFFFF).
    pub fn verify_checksum(&self) -> bool {
        checksum::verifies(checksum::data(&self.bytes()[..self.header_len() as usize]))
    }

    /// The options: the header bytes after the first 20.
    pub fn options(&self) -> &[u8] {
        &self.bytes()[field::OPTIONS..self.header_len() as usize]
    }

    /// The payload as the total length bounds it (not the buffer: it may carry padding).
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[self.header_len() as usize..self.total_len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    fn set_u16_at(&mut self, range: super::Field, value: u16) {
        self.bytes_mut()[range].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.bytes_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets the header length in bytes; it must be a multiple of 4 from 20 to 60.
    pub fn set_header_len(&mut self, len: u8) {
        let b = &mut self.bytes_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) & 0x0f);
    }

    pub fn set_dscp(&mut self, dscp: u8) {
        let b = &mut self.bytes_mut()[field::DSCP_ECN];
        *b = (*b & 0x03) | (dscp << 2);
    }

    pub fn set_ecn(&mut self, ecn: u8) {
        let b = &mut self.bytes_mut()[field::DSCP_ECN];
        *b = (*b & 0xfc) | (ecn & 0x03);
    }

    pub fn set_total_len(&mut self, len: u16) {
        self.set_u16_at(field::LENGTH, len);
    }

    pub fn set_ident(&mut self, ident: u16) {
        self.set_u16_at(field::IDENT, ident);
    }

    fn set_flag(&mut self, flag: u16, on: bool) {
        let raw = self.u16_at(field::FLG_OFF);
        self.set_u16_at(field::FLG_OFF, if on { raw | flag } else { raw & !flag });
    }

    pub fn set_dont_frag(&mut self, on: bool) {
        self.set_flag(FLAG_DONT_FRAG, on);
    }

    pub fn set_more_frags(&mut self, on: bool) {
        self.set_flag(FLAG_MORE_FRAGS, on);
    }

    /// Sets the fragment offset in bytes; it must be a multiple of 8.
    pub fn set_frag_offset(&mut self, offset: u16) {
        let raw = self.u16_at(field::FLG_OFF);
        self.set_u16_at(field::FLG_OFF, (raw & !FRAG_OFFSET_MASK) | (offset >> 3));
    }

    pub fn set_ttl(&mut self, ttl: u8) {
        self.bytes_mut()[field::TTL] = ttl;
    }

    pub fn set_protocol(&mut self, protocol: IpProtocol) {
        self.bytes_mut()[field::PROTOCOL] = protocol.0;
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        self.set_u16_at(field::CHECKSUM, checksum);
    }

    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.bytes_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.bytes_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Exchanges source and destination, as a reply has them. The checksum does not change:
    /// the same words are summed in another order.
    pub fn swap_addrs(&mut self) {
        let (src, dst) = self.bytes_mut()[field::SRC_ADDR.start..field::DST_ADDR.end].split_at_mut(4);
        src.swap_with_slice(dst);
    }

    /// Computes the header checksum (over the header length, options included) and writes it.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let header_len = self.header_len() as usize;
        let sum = checksum::checksum(&self.bytes()[..header_len]);
        self.set_checksum(sum);
    }

    pub fn options_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len() as usize;
        &mut self.bytes_mut()[field::OPTIONS..header_len]
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len() as usize..self.total_len() as usize;
        &mut self.bytes_mut()[range]
    }
}

/// The header as plain values. Options are borrowed from the packet, unread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr<'a> {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: IpProtocol,
    pub ttl: u8,
    pub dscp: u8,
    pub ecn: u8,
    pub ident: u16,
    pub dont_frag: bool,
    pub more_frags: bool,
    /// In bytes, a multiple of 8.
    pub frag_offset: u16,
    /// A multiple of 4 bytes, at most 40.
    pub options: &'a [u8],
    pub payload_len: usize,
}

impl<'a> Repr<'a> {
    /// Reads a header: lengths as [`Packet::check_len`] checks them, version 4 (else
    /// `Malformed`), and a header checksum that verifies (else `Checksum`).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>) -> Result<Repr<'a>> {
        packet.check_len()?;
        if packet.version() != 4 {
            return Err(Error::Malformed);
        }
        if !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        let bytes: &'a [u8] = packet.buffer.as_ref();
        let header_len = packet.header_len() as usize;
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            protocol: packet.protocol(),
            ttl: packet.ttl(),
            dscp: packet.dscp(),
            ecn: packet.ecn(),
            ident: packet.ident(),
            dont_frag: packet.dont_frag(),
            more_frags: packet.more_frags(),
            frag_offset: packet.frag_offset(),
            options: &bytes[field::OPTIONS..header_len],
            payload_len: packet.total_len() as usize - header_len,
        })
    }

    /// The length `emit` writes: the header with its options.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.options.len()
    }

    /// Writes the header and options, with the total length counting `payload_len`, and fills
    /// the checksum. The buffer must hold at least [`Repr::buffer_len`] bytes.
    ///
    /// # Panics
    /// If the options are not a multiple of 4 bytes or longer than 40, or the total length
    /// exceeds 65535: such a `Repr` describes no IPv4 header.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let header_len = self.buffer_len();
        assert!(
            header_len.is_multiple_of(4) && header_len <= MAX_HEADER_LEN,
            "IPv4 options length"
        );
        let total_len = u16::try_from(header_len + self.payload_len).expect("IPv4 total length");
        packet.bytes_mut()[field::VER_IHL] = 0x40 | (header_len / 4) as u8;
        packet.bytes_mut()[field::DSCP_ECN] = (self.dscp << 2) | (self.ecn & 0x03);
        packet.set_total_len(total_len);
        packet.set_ident(self.ident);
        packet.set_u16_at(field::FLG_OFF, 0);
        packet.set_dont_frag(self.dont_frag);
        packet.set_more_frags(self.more_frags);
        packet.set_frag_offset(self.frag_offset);
        packet.set_ttl(self.ttl);
        packet.set_protocol(self.protocol);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.bytes_mut()[field::OPTIONS..header_len].copy_from_slice(self.options);
        packet.fill_checksum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A UDP datagram header from 192.0.2.1 to 198.51.100.2 with a 56-byte payload (UDP + NTP),
    /// DSCP EF, ECT(0), ident 0x1234, DF, TTL 64.
    const HEADER: [u8; 20] = [
        0x45, 0xba, 0x00, 0x4c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 192, 0, 2, 1, 198, 51, 100, 2,
    ];

    fn packet_bytes() -> Vec<u8> {
        let mut bytes = HEADER.to_vec();
        bytes.resize(0x4c, 0xaa);
        let cs = checksum::checksum(&bytes[..20]);
        bytes[10..12].copy_from_slice(&cs.to_be_bytes());
        bytes
    }

    #[test]
    fn every_field_reads() {
        let bytes = packet_bytes();
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.dscp(), 46);
        assert_eq!(p.ecn(), 2);
        assert_eq!(p.total_len(), 76);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_frag());
        assert!(!p.more_frags());
        assert_eq!(p.frag_offset(), 0);
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), IpProtocol::UDP);
        assert_eq!(p.checksum(), u16::from_be_bytes([bytes[10], bytes[11]]));
        assert!(p.verify_checksum());
        assert_eq!(p.src_addr(), Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(198, 51, 100, 2));
        assert!(p.options().is_empty());
        assert_eq!(p.payload(), &[0xaa; 56][..]);
    }

    #[test]
    fn every_field_writes_where_it_belongs() {
        let mut buf = [0u8; 28];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_version(4);
        p.set_header_len(24);
        assert_eq!(p.bytes()[0], 0x46);
        p.set_dscp(10);
        p.set_ecn(3);
        assert_eq!(p.bytes()[1], 0x2b);
        p.set_ecn(0);
        assert_eq!(p.bytes()[1], 0x28);
        p.set_total_len(28);
        p.set_ident(0xbeef);
        p.set_more_frags(true);
        p.set_frag_offset(1480);
        assert_eq!(p.u16_at(field::FLG_OFF), 0x2000 | 185);
        p.set_dont_frag(true);
        p.set_more_frags(false);
        assert_eq!(p.u16_at(field::FLG_OFF), 0x4000 | 185);
        p.set_ttl(7);
        p.set_protocol(IpProtocol::TCP);
        p.set_checksum(0xabcd);
        p.set_src_addr(Ipv4Addr::new(10, 0, 0, 1));
        p.set_dst_addr(Ipv4Addr::new(10, 0, 0, 2));
        p.options_mut().copy_from_slice(&[1, 1, 1, 0]);
        p.payload_mut().copy_from_slice(&[9, 9, 9, 9]);
        assert_eq!(
            buf,
            [
                0x46, 0x28, 0, 28, 0xbe, 0xef, 0x40, 185, 7, 6, 0xab, 0xcd, 10, 0, 0, 1, 10, 0, 0, 2, 1, 1,
                1, 0, 9, 9, 9, 9
            ]
        );
    }

    #[test]
    fn fill_checksum_makes_the_header_verify() {
        let mut bytes = packet_bytes();
        let good = u16::from_be_bytes([bytes[10], bytes[11]]);
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_checksum(0x1111);
        assert!(!p.verify_checksum());
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.checksum(), good);
    }

    #[test]
    fn swap_addrs_keeps_the_checksum_valid() {
        let mut bytes = packet_bytes();
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.swap_addrs();
        assert_eq!(p.src_addr(), Ipv4Addr::new(198, 51, 100, 2));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(192, 0, 2, 1));
        assert!(p.verify_checksum());
    }

    #[test]
    fn fragments_are_reported() {
        let mut bytes = packet_bytes();
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.set_more_frags(true);
        assert!(p.is_fragment());
        p.set_more_frags(false);
        p.set_frag_offset(8);
        assert!(p.is_fragment());
        assert_eq!(p.frag_offset(), 8);
        p.set_frag_offset(0);
        p.set_dont_frag(true);
        assert!(!p.is_fragment());
    }

    #[test]
    fn options_are_part_of_the_header() {
        let mut bytes = packet_bytes();
        bytes.splice(20..20, [0x94, 0x04, 0x00, 0x00]); // Router Alert
        bytes[0] = 0x46;
        bytes[2..4].copy_from_slice(&80u16.to_be_bytes());
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.fill_checksum();
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(p.payload().len(), 56);
        let repr = Repr::parse(&p).unwrap();
        assert_eq!(repr.options, &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(repr.payload_len, 56);
    }

    #[test]
    fn padding_after_the_total_length_is_not_payload() {
        let mut bytes = packet_bytes();
        bytes.extend_from_slice(&[0; 6]);
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.payload().len(), 56);
    }

    #[test]
    fn lengths_are_checked() {
        let bytes = packet_bytes();
        assert_eq!(Packet::new_checked(&bytes[..19]).unwrap_err(), Error::Truncated);
        // Total length beyond the buffer.
        assert_eq!(Packet::new_checked(&bytes[..75]).unwrap_err(), Error::Truncated);
        // IHL below 5.
        let mut b = bytes.clone();
        b[0] = 0x44;
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
        // IHL 15 beyond a 40-byte buffer.
        let mut b = bytes.clone();
        b[0] = 0x4f;
        assert_eq!(Packet::new_checked(&b[..40]).unwrap_err(), Error::Truncated);
        // Total length shorter than the header.
        let mut b = bytes.clone();
        b[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
    }

    #[test]
    fn parse_checks_version_and_checksum() {
        let mut bytes = packet_bytes();
        assert!(Repr::parse(&Packet::new_unchecked(&bytes[..])).is_ok());
        bytes[12] ^= 1;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&bytes[..])),
            Err(Error::Checksum)
        );
        bytes[12] ^= 1;
        bytes[0] = 0x65;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&bytes[..])),
            Err(Error::Malformed)
        );
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&bytes[..10])),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn parse_reads_every_field() {
        let bytes = packet_bytes();
        let repr = Repr::parse(&Packet::new_unchecked(&bytes[..])).unwrap();
        assert_eq!(
            repr,
            Repr {
                src_addr: Ipv4Addr::new(192, 0, 2, 1),
                dst_addr: Ipv4Addr::new(198, 51, 100, 2),
                protocol: IpProtocol::UDP,
                ttl: 64,
                dscp: 46,
                ecn: 2,
                ident: 0x1234,
                dont_frag: true,
                more_frags: false,
                frag_offset: 0,
                options: &[],
                payload_len: 56,
            }
        );
        assert_eq!(repr.buffer_len(), 20);
    }

    #[test]
    #[should_panic(expected = "IPv4 options length")]
    fn emit_refuses_unaligned_options() {
        let bytes = packet_bytes();
        let mut repr = Repr::parse(&Packet::new_unchecked(&bytes[..])).unwrap();
        repr.options = &[1, 2, 3];
        repr.emit(&mut Packet::new_unchecked(&mut [0u8; 64][..]));
    }

    #[test]
    fn protocol_names() {
        assert_eq!(IpProtocol::UDP.to_string(), "UDP");
        assert_eq!(format!("{:?}", IpProtocol::IPV6_FRAG), "IPv6-Frag");
        assert_eq!(IpProtocol(253).to_string(), "253");
    }

    fn any_repr_parts() -> impl Strategy<Value = (Repr<'static>, Vec<u8>)> {
        (
            (
                any::<[u8; 4]>(),
                any::<[u8; 4]>(),
                any::<u8>(),
                any::<u8>(),
                0u8..64,
                0u8..4,
            ),
            (any::<u16>(), any::<bool>(), any::<bool>(), 0u16..0x2000),
            (0usize..=10).prop_flat_map(|words| proptest::collection::vec(any::<u8>(), words * 4)),
            0usize..1500,
        )
            .prop_map(
                |((src, dst, proto, ttl, dscp, ecn), (ident, df, mf, off), options, payload_len)| {
                    let repr = Repr {
                        src_addr: Ipv4Addr::from(src),
                        dst_addr: Ipv4Addr::from(dst),
                        protocol: IpProtocol(proto),
                        ttl,
                        dscp,
                        ecn,
                        ident,
                        dont_frag: df,
                        more_frags: mf,
                        frag_offset: off << 3,
                        options: &[],
                        payload_len,
                    };
                    (repr, options)
                },
            )
    }

    proptest! {
        #[test]
        fn parse_emit_round_trip((repr, options) in any_repr_parts()) {
            let repr = Repr { options: &options, ..repr };
            let mut buf = vec![0u8; repr.buffer_len() + repr.payload_len];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            let packet = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(packet.verify_checksum());
            prop_assert_eq!(Repr::parse(&packet).unwrap(), repr);
        }

        #[test]
        fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..100),
                                       ihl in 0u8..16) {
            if let Some(b) = bytes.first_mut() {
                // Mostly version 4 with every IHL, so that the length checks are exercised.
                *b = if ihl % 2 == 0 { 0x40 | ihl } else { (*b & 0xf0) | ihl };
            }
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                prop_assert!(p.header_len() as usize + p.payload().len() <= bytes.len());
                let _ = (p.options(), p.verify_checksum(), p.is_fragment(), p.frag_offset());
                if let Ok(repr) = Repr::parse(&p) {
                    prop_assert_eq!(repr.buffer_len() + repr.payload_len, p.total_len() as usize);
                }
            }
        }
    }
}

//! The IPv6 fixed header (RFC 8200): a zero-copy view and its `Repr`.
//!
//! ```text
//!  0 Version (4) | Traffic Class (8) | Flow Label (20) | 4 Payload Length | 6 Next Header
//!  7 Hop Limit | 8 Source Address | 24 Destination Address | 40 payload
//! ```
//!
//! Extension headers are not walked: an NTP request worth answering has UDP right after the fixed
//! header, and the frame layer treats any other Next Header as unsupported.

use std::net::Ipv6Addr;

use super::ipv4::IpProtocol;
use super::{Error, Result};

mod field {
    use crate::proto::wire::Field;
    pub const VER_TC_FLOW: Field = 0..4;
    pub const LENGTH: Field = 4..6;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Field = 8..24;
    pub const DST_ADDR: Field = 24..40;
    pub const PAYLOAD: usize = 40;
}

/// Length of the fixed header.
pub const HEADER_LEN: usize = field::PAYLOAD;

const FLOW_LABEL_MASK: u32 = 0x000f_ffff;

/// A read/write view over an IPv6 packet in a byte buffer.
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

    /// Checks that the fixed header and the payload length fit in the buffer; after this every
    /// getter and [`Packet::payload`] are in bounds. The buffer may be longer (Ethernet padding).
    /// The version is [`Repr::parse`]'s business.
    pub fn check_len(&self) -> Result<()> {
        let len = self.buffer.as_ref().len();
        if len < HEADER_LEN || HEADER_LEN + self.payload_len() as usize > len {
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

    fn first_word(&self) -> u32 {
        let b = &self.bytes()[field::VER_TC_FLOW];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    fn addr_at(&self, range: super::Field) -> Ipv6Addr {
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&self.bytes()[range]);
        Ipv6Addr::from(octets)
    }

    pub fn version(&self) -> u8 {
        self.bytes()[field::VER_TC_FLOW.start] >> 4
    }

    /// The traffic class: DSCP in the upper six bits, ECN in the lower two (RFC 2474, 3168).
    pub fn traffic_class(&self) -> u8 {
        (self.first_word() >> 20) as u8
    }

    pub fn dscp(&self) -> u8 {
        self.traffic_class() >> 2
    }

    pub fn ecn(&self) -> u8 {
        self.traffic_class() & 0x03
    }

    /// The 20-bit flow label (RFC 6437).
    pub fn flow_label(&self) -> u32 {
        self.first_word() & FLOW_LABEL_MASK
    }

    /// The length of what follows the fixed header (extension headers and upper layer).
    pub fn payload_len(&self) -> u16 {
        let b = &self.bytes()[field::LENGTH];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn next_header(&self) -> IpProtocol {
        IpProtocol(self.bytes()[field::NXT_HDR])
    }

    pub fn hop_limit(&self) -> u8 {
        self.bytes()[field::HOP_LIMIT]
    }

    pub fn src_addr(&self) -> Ipv6Addr {
        self.addr_at(field::SRC_ADDR)
    }

    pub fn dst_addr(&self) -> Ipv6Addr {
        self.addr_at(field::DST_ADDR)
    }

    /// The payload as the payload length bounds it (not the buffer: it may carry padding).
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[field::PAYLOAD..field::PAYLOAD + self.payload_len() as usize]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    fn set_first_word(&mut self, word: u32) {
        self.bytes_mut()[field::VER_TC_FLOW].copy_from_slice(&word.to_be_bytes());
    }

    pub fn set_version(&mut self, version: u8) {
        let word = self.first_word();
        self.set_first_word((word & 0x0fff_ffff) | (u32::from(version & 0x0f) << 28));
    }

    pub fn set_traffic_class(&mut self, traffic_class: u8) {
        let word = self.first_word();
        self.set_first_word((word & 0xf00f_ffff) | (u32::from(traffic_class) << 20));
    }

    pub fn set_dscp(&mut self, dscp: u8) {
        let ecn = self.ecn();
        self.set_traffic_class((dscp << 2) | ecn);
    }

    pub fn set_ecn(&mut self, ecn: u8) {
        let tc = self.traffic_class();
        self.set_traffic_class((tc & 0xfc) | (ecn & 0x03));
    }

    /// Sets the flow label; bits above the low 20 are ignored.
    pub fn set_flow_label(&mut self, label: u32) {
        let word = self.first_word();
        self.set_first_word((word & !FLOW_LABEL_MASK) | (label & FLOW_LABEL_MASK));
    }

    pub fn set_payload_len(&mut self, len: u16) {
        self.bytes_mut()[field::LENGTH].copy_from_slice(&len.to_be_bytes());
    }

    pub fn set_next_header(&mut self, next_header: IpProtocol) {
        self.bytes_mut()[field::NXT_HDR] = next_header.0;
    }

    pub fn set_hop_limit(&mut self, hop_limit: u8) {
        self.bytes_mut()[field::HOP_LIMIT] = hop_limit;
    }

    pub fn set_src_addr(&mut self, addr: &Ipv6Addr) {
        self.bytes_mut()[field::SRC_ADDR].copy_from_slice(&addr.octets());
    }

    pub fn set_dst_addr(&mut self, addr: &Ipv6Addr) {
        self.bytes_mut()[field::DST_ADDR].copy_from_slice(&addr.octets());
    }

    /// Exchanges source and destination, as a reply has them.
    pub fn swap_addrs(&mut self) {
        let (src, dst) = self.bytes_mut()[field::SRC_ADDR.start..field::DST_ADDR.end].split_at_mut(16);
        src.swap_with_slice(dst);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = field::PAYLOAD + self.payload_len() as usize;
        &mut self.bytes_mut()[field::PAYLOAD..end]
    }
}

/// The fixed header as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    pub next_header: IpProtocol,
    pub payload_len: usize,
    pub hop_limit: u8,
    pub traffic_class: u8,
    /// 20 bits.
    pub flow_label: u32,
}

impl Repr {
    /// Reads the fixed header: lengths as [`Packet::check_len`] checks them, version 6 (else
    /// `Malformed`).
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        if packet.version() != 6 {
            return Err(Error::Malformed);
        }
        Ok(Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: packet.payload_len() as usize,
            hop_limit: packet.hop_limit(),
            traffic_class: packet.traffic_class(),
            flow_label: packet.flow_label(),
        })
    }

    /// The length `emit` writes: the fixed header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the fixed header; the buffer must hold at least [`HEADER_LEN`] bytes.
    ///
    /// # Panics
    /// If the payload length exceeds 65535 (jumbograms need a Hop-by-Hop option).
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let payload_len = u16::try_from(self.payload_len).expect("IPv6 payload length");
        packet.set_first_word(
            (6 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & FLOW_LABEL_MASK),
        );
        packet.set_payload_len(payload_len);
        packet.set_next_header(self.next_header);
        packet.set_hop_limit(self.hop_limit);
        packet.set_src_addr(&self.src_addr);
        packet.set_dst_addr(&self.dst_addr);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x5354, 0x5241, 1, 0, 0, 0, 0x10);
    const DST: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x5354, 0x5241, 0, 0, 0, 0, 1);

    fn packet_bytes() -> Vec<u8> {
        // Traffic class 0xb9 (DSCP 46, ECN 1), flow label 0xabcde, 56-byte UDP payload.
        let mut bytes = vec![0x6b, 0x9a, 0xbc, 0xde, 0x00, 0x38, 17, 63];
        bytes.extend_from_slice(&SRC.octets());
        bytes.extend_from_slice(&DST.octets());
        bytes.resize(HEADER_LEN + 56, 0x55);
        bytes
    }

    #[test]
    fn every_field_reads() {
        let bytes = packet_bytes();
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xb9);
        assert_eq!(p.dscp(), 46);
        assert_eq!(p.ecn(), 1);
        assert_eq!(p.flow_label(), 0xabcde);
        assert_eq!(p.payload_len(), 56);
        assert_eq!(p.next_header(), IpProtocol::UDP);
        assert_eq!(p.hop_limit(), 63);
        assert_eq!(p.src_addr(), SRC);
        assert_eq!(p.dst_addr(), DST);
        assert_eq!(p.payload(), &[0x55; 56][..]);
    }

    #[test]
    fn every_field_writes_where_it_belongs() {
        let mut buf = [0u8; 44];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_version(6);
        p.set_traffic_class(0xff);
        p.set_flow_label(0xfff_ffff);
        assert_eq!(&p.bytes()[0..4], &[0x6f, 0xff, 0xff, 0xff]);
        p.set_traffic_class(0x12);
        p.set_flow_label(0x34567);
        assert_eq!(&p.bytes()[0..4], &[0x61, 0x23, 0x45, 0x67]);
        p.set_ecn(3);
        assert_eq!(p.traffic_class(), 0x13);
        p.set_dscp(0x3f);
        assert_eq!(p.traffic_class(), 0xff);
        p.set_ecn(0);
        p.set_payload_len(4);
        p.set_next_header(IpProtocol::IPV6_FRAG);
        p.set_hop_limit(255);
        p.set_src_addr(&SRC);
        p.set_dst_addr(&DST);
        p.payload_mut().copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(&buf[0..8], &[0x6f, 0xc3, 0x45, 0x67, 0, 4, 44, 255]);
        assert_eq!(&buf[8..24], &SRC.octets());
        assert_eq!(&buf[24..40], &DST.octets());
        assert_eq!(&buf[40..], &[1, 2, 3, 4]);
    }

    #[test]
    fn swap_addrs_exchanges_source_and_destination() {
        let mut bytes = packet_bytes();
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.swap_addrs();
        assert_eq!(p.src_addr(), DST);
        assert_eq!(p.dst_addr(), SRC);
        assert_eq!(p.hop_limit(), 63);
    }

    #[test]
    fn lengths_are_checked() {
        let bytes = packet_bytes();
        assert_eq!(Packet::new_checked(&bytes[..39]).unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&bytes[..95]).unwrap_err(), Error::Truncated);
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0; 8]);
        assert_eq!(Packet::new_checked(&padded[..]).unwrap().payload().len(), 56);
    }

    #[test]
    fn parse_reads_every_field_and_checks_the_version() {
        let mut bytes = packet_bytes();
        let repr = Repr::parse(&Packet::new_unchecked(&bytes[..])).unwrap();
        assert_eq!(
            repr,
            Repr {
                src_addr: SRC,
                dst_addr: DST,
                next_header: IpProtocol::UDP,
                payload_len: 56,
                hop_limit: 63,
                traffic_class: 0xb9,
                flow_label: 0xabcde,
            }
        );
        assert_eq!(repr.buffer_len(), 40);
        bytes[0] = 0x4b;
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&bytes[..])),
            Err(Error::Malformed)
        );
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&bytes[..20])),
            Err(Error::Truncated)
        );
    }

    fn any_repr() -> impl Strategy<Value = Repr> {
        (
            any::<[u8; 16]>(),
            any::<[u8; 16]>(),
            any::<u8>(),
            0usize..2000,
            any::<u8>(),
            any::<u8>(),
            0u32..=FLOW_LABEL_MASK,
        )
            .prop_map(|(src, dst, nh, len, hops, tc, flow)| Repr {
                src_addr: Ipv6Addr::from(src),
                dst_addr: Ipv6Addr::from(dst),
                next_header: IpProtocol(nh),
                payload_len: len,
                hop_limit: hops,
                traffic_class: tc,
                flow_label: flow,
            })
    }

    proptest! {
        #[test]
        fn parse_emit_round_trip(repr in any_repr()) {
            let mut buf = vec![0u8; repr.buffer_len() + repr.payload_len];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap(), repr);
        }

        #[test]
        fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..120),
                                       len in 0u16..100) {
            if bytes.len() >= 6 {
                // Small payload lengths, so that both outcomes of the length check happen.
                bytes[4..6].copy_from_slice(&len.to_be_bytes());
            }
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                prop_assert!(HEADER_LEN + p.payload().len() <= bytes.len());
                let _ = (p.traffic_class(), p.flow_label(), p.src_addr(), p.dst_addr());
                if let Ok(repr) = Repr::parse(&p) {
                    prop_assert_eq!(repr.payload_len, p.payload_len() as usize);
                }
            }
        }
    }
}

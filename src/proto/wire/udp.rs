//! The UDP header (RFC 768): a zero-copy view and its `Repr`, with checksums over the IPv4 and
//! IPv6 pseudo-headers.
//!
//! ```text
//!  0 Source Port | 2 Destination Port | 4 Length | 6 Checksum | 8 payload
//! ```
//!
//! The checksum rules differ by IP version: over IPv4 a zero checksum means "none was computed"
//! and is accepted; over IPv6 the checksum is mandatory (RFC 8200 section 8.1) and zero is
//! invalid. A computed checksum of zero is sent as 0xFFFF (its other ones' complement form), so
//! that it never reads as "none".

use std::net::{Ipv4Addr, Ipv6Addr};

use super::ipv4::IpProtocol;
use super::{checksum, Error, Result};

mod field {
    use crate::proto::wire::Field;
    pub const SRC_PORT: Field = 0..2;
    pub const DST_PORT: Field = 2..4;
    pub const LENGTH: Field = 4..6;
    pub const CHECKSUM: Field = 6..8;
    pub const PAYLOAD: usize = 8;
}

/// Length of the UDP header.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A read/write view over a UDP datagram in a byte buffer.
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

    /// Checks that the header fits and that the length field covers the header and fits in the
    /// buffer; after this every getter, [`Packet::payload`] and the checksums are in bounds.
    /// The buffer may be longer than the length field (the IP payload may be padded).
    pub fn check_len(&self) -> Result<()> {
        let buffer_len = self.buffer.as_ref().len();
        if buffer_len < HEADER_LEN {
            return Err(Error::Truncated);
        }
        let len = self.len() as usize;
        if len < HEADER_LEN {
            Err(Error::Malformed)
        } else if len > buffer_len {
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

    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    /// The length of header and payload.
    #[allow(clippy::len_without_is_empty)] // A header field, not a container's size.
    pub fn len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }

    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// The payload as the length field bounds it.
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[field::PAYLOAD..self.len() as usize]
    }

    /// The sum of the pseudo-header, the header fields other than the checksum, and the payload.
    ///
    /// The header is summed field by field rather than as bytes: a responder has just written
    /// those fields with 2-byte stores, and a wide load across several pending narrow stores
    /// cannot be forwarded from the store buffer (it stalls until they reach the cache).
    fn sum_without_checksum(&self, pseudo_header: u16) -> u16 {
        checksum::combine(&[
            pseudo_header,
            self.src_port(),
            self.dst_port(),
            self.len(),
            checksum::data(self.payload()),
        ])
    }

    /// The sum with the checksum field included: 0xFFFF when the checksum verifies.
    fn sum_with(&self, pseudo_header: u16) -> u16 {
        checksum::combine(&[self.sum_without_checksum(pseudo_header), self.checksum()])
    }

    /// Whether the checksum verifies over IPv4, where zero means "not computed" and passes.
    pub fn verify_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == 0
            || checksum::verifies(self.sum_with(checksum::pseudo_header_v4(
                src,
                dst,
                IpProtocol::UDP.0,
                self.len(),
            )))
    }

    /// Whether the checksum field holds only the IPv4 pseudo-header sum: what a sender leaves
    /// when it hands the checksum to an offload (Linux's CHECKSUM_PARTIAL), and what veth
    /// delivers as it is from a local stack to XDP. Such a datagram was never corrupted on a
    /// wire; its reply gets a complete checksum.
    pub fn is_partial_checksum_v4(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        self.checksum() == checksum::pseudo_header_v4(src, dst, IpProtocol::UDP.0, self.len())
    }

    /// The same over IPv6.
    pub fn is_partial_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        self.checksum() == checksum::pseudo_header_v6(src, dst, IpProtocol::UDP.0, u32::from(self.len()))
    }

    /// Whether the checksum verifies over IPv6, where it is mandatory and zero fails.
    pub fn verify_checksum_v6(&self, src: &Ipv6Addr, dst: &Ipv6Addr) -> bool {
        self.checksum() != 0
            && checksum::verifies(self.sum_with(checksum::pseudo_header_v6(
                src,
                dst,
                IpProtocol::UDP.0,
                u32::from(self.len()),
            )))
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    fn set_u16_at(&mut self, range: super::Field, value: u16) {
        self.bytes_mut()[range].copy_from_slice(&value.to_be_bytes());
    }

    pub fn set_src_port(&mut self, port: u16) {
        self.set_u16_at(field::SRC_PORT, port);
    }

    pub fn set_dst_port(&mut self, port: u16) {
        self.set_u16_at(field::DST_PORT, port);
    }

    pub fn set_len(&mut self, len: u16) {
        self.set_u16_at(field::LENGTH, len);
    }

    pub fn set_checksum(&mut self, checksum: u16) {
        self.set_u16_at(field::CHECKSUM, checksum);
    }

    /// Exchanges source and destination ports, as a reply has them. The checksum does not
    /// change: the same words are summed in another order.
    pub fn swap_ports(&mut self) {
        let (src, dst) = self.bytes_mut()[field::SRC_PORT.start..field::DST_PORT.end].split_at_mut(2);
        src.swap_with_slice(dst);
    }

    /// Computes the checksum with the given pseudo-header sum and writes it, 0 as 0xFFFF.
    fn fill_checksum_with(&mut self, pseudo_header: u16) {
        let sum = !self.sum_without_checksum(pseudo_header);
        self.set_checksum(if sum == 0 { 0xffff } else { sum });
    }

    /// Computes the checksum over the IPv4 pseudo-header and the datagram (as the length field
    /// bounds it) and writes it.
    pub fn fill_checksum_v4(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        let len = self.len();
        self.fill_checksum_with(checksum::pseudo_header_v4(src, dst, IpProtocol::UDP.0, len));
    }

    /// Computes the checksum over the IPv6 pseudo-header and the datagram and writes it.
    pub fn fill_checksum_v6(&mut self, src: &Ipv6Addr, dst: &Ipv6Addr) {
        let len = u32::from(self.len());
        self.fill_checksum_with(checksum::pseudo_header_v6(src, dst, IpProtocol::UDP.0, len));
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = self.len() as usize;
        &mut self.bytes_mut()[field::PAYLOAD..end]
    }
}

/// The header as plain values. The checksum is not here: it depends on the IP addresses, so
/// callers verify it with [`Packet::verify_checksum_v4`] / [`Packet::verify_checksum_v6`] and
/// fill it with [`Packet::fill_checksum_v4`] / [`Packet::fill_checksum_v6`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload_len: usize,
}

impl Repr {
    /// Reads the header, with lengths as [`Packet::check_len`] checks them.
    pub fn parse<T: AsRef<[u8]>>(packet: &Packet<T>) -> Result<Repr> {
        packet.check_len()?;
        Ok(Repr {
            src_port: packet.src_port(),
            dst_port: packet.dst_port(),
            payload_len: packet.len() as usize - HEADER_LEN,
        })
    }

    /// The length `emit` writes: the header.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header with the length counting `payload_len` and a zero ("none") checksum;
    /// fill the checksum once the payload is in place.
    ///
    /// # Panics
    /// If the datagram would be longer than 65535 bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) {
        let len = u16::try_from(HEADER_LEN + self.payload_len).expect("UDP length");
        packet.set_src_port(self.src_port);
        packet.set_dst_port(self.dst_port);
        packet.set_len(len);
        packet.set_checksum(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SRC4: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 10);
    const DST4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const SRC6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x5354, 0x5241, 1, 0, 0, 0, 0x10);
    const DST6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x5354, 0x5241, 0, 0, 0, 0, 1);

    fn datagram() -> Vec<u8> {
        let mut bytes = vec![0xc3, 0x50, 0x00, 0x7b, 0x00, 0x38, 0x00, 0x00];
        bytes.extend((0..48).map(|i| i as u8));
        bytes
    }

    /// The checksum as a straightforward reference computes it: pseudo-header bytes + datagram.
    fn reference_v4(bytes: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let mut all = Vec::new();
        all.extend_from_slice(&src.octets());
        all.extend_from_slice(&dst.octets());
        all.extend_from_slice(&[0, 17]);
        all.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        all.extend_from_slice(bytes);
        all[12 + 6..12 + 8].fill(0);
        checksum::checksum(&all)
    }

    #[test]
    fn every_field_reads() {
        let bytes = datagram();
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.src_port(), 50000);
        assert_eq!(p.dst_port(), 123);
        assert_eq!(p.len(), 56);
        assert_eq!(p.checksum(), 0);
        assert_eq!(p.payload().len(), 48);
        assert_eq!(p.payload()[47], 47);
    }

    #[test]
    fn every_field_writes_where_it_belongs() {
        let mut buf = [0u8; 10];
        let mut p = Packet::new_unchecked(&mut buf[..]);
        p.set_src_port(123);
        p.set_dst_port(40000);
        p.set_len(10);
        p.set_checksum(0xbeef);
        p.payload_mut().copy_from_slice(&[7, 8]);
        assert_eq!(buf, [0x00, 0x7b, 0x9c, 0x40, 0x00, 0x0a, 0xbe, 0xef, 7, 8]);
    }

    #[test]
    fn swap_ports_exchanges_them() {
        let mut bytes = datagram();
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.swap_ports();
        assert_eq!((p.src_port(), p.dst_port()), (123, 50000));
    }

    #[test]
    fn lengths_are_checked() {
        let bytes = datagram();
        assert_eq!(Packet::new_checked(&bytes[..7]).unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&bytes[..55]).unwrap_err(), Error::Truncated);
        let mut b = bytes.clone();
        b[4..6].copy_from_slice(&7u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&b[..]).unwrap_err(), Error::Malformed);
        // A length shorter than the buffer bounds the payload.
        b[4..6].copy_from_slice(&20u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&b[..]).unwrap().payload().len(), 12);
    }

    #[test]
    fn ipv4_checksum_fills_and_verifies() {
        let mut bytes = datagram();
        let expected = reference_v4(&bytes, SRC4, DST4);
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.fill_checksum_v4(SRC4, DST4);
        assert_eq!(p.checksum(), expected);
        assert!(p.verify_checksum_v4(SRC4, DST4));
        assert!(!p.verify_checksum_v4(SRC4, Ipv4Addr::new(198, 18, 0, 2)));
        p.payload_mut()[0] ^= 0x80;
        assert!(!p.verify_checksum_v4(SRC4, DST4));
    }

    #[test]
    fn ipv4_zero_checksum_means_none() {
        let bytes = datagram();
        let p = Packet::new_unchecked(&bytes[..]);
        assert_eq!(p.checksum(), 0);
        assert!(p.verify_checksum_v4(SRC4, DST4));
    }

    #[test]
    fn ipv6_checksum_fills_and_verifies_and_zero_fails() {
        let mut bytes = datagram();
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        assert!(!p.verify_checksum_v6(&SRC6, &DST6));
        p.fill_checksum_v6(&SRC6, &DST6);
        assert_ne!(p.checksum(), 0);
        assert!(p.verify_checksum_v6(&SRC6, &DST6));
        assert!(!p.verify_checksum_v6(&DST6, &DST6));
        // Swapping the ports and the addresses keeps it valid (the sum is order-free).
        p.swap_ports();
        assert!(p.verify_checksum_v6(&DST6, &SRC6));
    }

    #[test]
    fn computed_zero_is_sent_as_ffff() {
        // Choose the payload so that the sum is 0xffff: the complement would be 0.
        let mut bytes = vec![0, 1, 0, 2, 0, 10, 0, 0, 0, 0];
        let sum = checksum::combine(&[
            checksum::pseudo_header_v4(SRC4, DST4, 17, 10),
            checksum::data(&bytes),
        ]);
        bytes[8..10].copy_from_slice(&(!sum).to_be_bytes());
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        p.fill_checksum_v4(SRC4, DST4);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum_v4(SRC4, DST4));
        let mut p = Packet::new_unchecked(&mut bytes[..]);
        // The same sum over IPv6 with a matching pseudo-header also goes out as 0xffff.
        p.set_checksum(0);
        let v6_sum = checksum::combine(&[
            checksum::pseudo_header_v6(&SRC6, &DST6, 17, 10),
            checksum::data(&p.bytes()[..8]),
        ]);
        p.payload_mut().copy_from_slice(&(!v6_sum).to_be_bytes());
        p.fill_checksum_v6(&SRC6, &DST6);
        assert_eq!(p.checksum(), 0xffff);
        assert!(p.verify_checksum_v6(&SRC6, &DST6));
    }

    #[test]
    fn parse_reads_every_field() {
        let bytes = datagram();
        let repr = Repr::parse(&Packet::new_unchecked(&bytes[..])).unwrap();
        assert_eq!(
            repr,
            Repr {
                src_port: 50000,
                dst_port: 123,
                payload_len: 48
            }
        );
        assert_eq!(repr.buffer_len(), 8);
        assert_eq!(
            Repr::parse(&Packet::new_unchecked(&bytes[..4])),
            Err(Error::Truncated)
        );
    }

    proptest! {
        #[test]
        fn parse_emit_round_trip(src_port: u16, dst_port: u16, payload_len in 0usize..1500) {
            let repr = Repr { src_port, dst_port, payload_len };
            let mut buf = vec![0u8; repr.buffer_len() + payload_len];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..]));
            prop_assert_eq!(Repr::parse(&Packet::new_checked(&buf[..]).unwrap()).unwrap(), repr);
        }

        #[test]
        fn filled_checksums_verify_and_match_the_reference(
            mut bytes in proptest::collection::vec(any::<u8>(), 8..300),
            src: [u8; 4], dst: [u8; 4], src6: [u8; 16], dst6: [u8; 16],
        ) {
            let len = bytes.len() as u16;
            let (src, dst) = (Ipv4Addr::from(src), Ipv4Addr::from(dst));
            let (src6, dst6) = (Ipv6Addr::from(src6), Ipv6Addr::from(dst6));
            let mut p = Packet::new_unchecked(&mut bytes[..]);
            p.set_len(len);
            p.fill_checksum_v4(src, dst);
            prop_assert!(p.verify_checksum_v4(src, dst));
            prop_assert_ne!(p.checksum(), 0);
            let expected = reference_v4(p.bytes(), src, dst);
            prop_assert_eq!(p.checksum(), if expected == 0 { 0xffff } else { expected });
            p.fill_checksum_v6(&src6, &dst6);
            prop_assert!(p.verify_checksum_v6(&src6, &dst6));
        }

        #[test]
        fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..80),
                                       len in 0u16..90) {
            if bytes.len() >= 6 {
                bytes[4..6].copy_from_slice(&len.to_be_bytes());
            }
            if let Ok(p) = Packet::new_checked(&bytes[..]) {
                prop_assert!(HEADER_LEN + p.payload().len() <= bytes.len());
                let _ = p.verify_checksum_v4(SRC4, DST4);
                let _ = p.verify_checksum_v6(&SRC6, &DST6);
                if let Ok(repr) = Repr::parse(&p) {
                    prop_assert_eq!(repr.payload_len + HEADER_LEN, p.len() as usize);
                }
            }
        }
    }
}

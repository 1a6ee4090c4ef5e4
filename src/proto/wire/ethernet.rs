//! Ethernet II frames with up to two VLAN tags (802.1Q C-tags, 802.1ad S-tags): a zero-copy view
//! and its `Repr`.
//!
//! ```text
//!  0 destination MAC | 6 source MAC | 12 EtherType or TPID
//!  untagged:      12 EtherType                              | 14 payload
//!  one tag:       12 TPID | 14 TCI | 16 EtherType            | 18 payload
//!  two tags:      12 TPID | 14 TCI | 16 TPID | 18 TCI | 20 EtherType | 22 payload
//! ```
//!
//! The frame check sequence is not part of the view: NICs strip it on receive and add it on
//! transmit, and AF_XDP buffers never hold it.

use super::{Error, Result};

mod field {
    use crate::proto::wire::Field;
    pub const DESTINATION: Field = 0..6;
    pub const SOURCE: Field = 6..12;
    pub const ETHERTYPE: Field = 12..14;
    pub const PAYLOAD: usize = 14;
    /// A tag is a TPID (where the EtherType would be) and a TCI; the next EtherType follows it.
    pub const TAG_LEN: usize = 4;
}

/// Length of an untagged Ethernet II header.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// The most tags [`Frame::encapsulation`] walks: an S-tag and a C-tag (Q-in-Q).
pub const MAX_TAGS: usize = 2;

/// A 48-bit MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct EthernetAddress(pub [u8; 6]);

impl EthernetAddress {
    pub const BROADCAST: EthernetAddress = EthernetAddress([0xff; 6]);

    /// Reads an address from the first six bytes of `bytes`.
    ///
    /// # Panics
    /// If `bytes` is shorter than six bytes.
    pub fn from_bytes(bytes: &[u8]) -> EthernetAddress {
        let mut addr = [0u8; 6];
        addr.copy_from_slice(&bytes[..6]);
        EthernetAddress(addr)
    }

    pub const fn as_bytes(&self) -> &[u8; 6] {
        &self.0
    }

    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// The I/G bit: group (multicast, including broadcast) rather than individual.
    pub const fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// An individual address other than all zeros: one a reply can be sent to or from.
    pub fn is_unicast(&self) -> bool {
        !self.is_multicast() && self.0 != [0; 6]
    }

    /// The U/L bit: locally administered (veth pairs and VMs get such addresses).
    pub const fn is_local(&self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl std::fmt::Display for EthernetAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// An EtherType (or a tag protocol identifier, which sits in the same place).
///
/// A newtype with constants rather than an enum: every value is representable, so reading one is
/// a load and comparing one is a compare, with no conversion on the hot path.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EtherType(pub u16);

impl EtherType {
    pub const IPV4: EtherType = EtherType(0x0800);
    pub const ARP: EtherType = EtherType(0x0806);
    /// 802.1Q customer VLAN tag (C-tag).
    pub const VLAN: EtherType = EtherType(0x8100);
    pub const IPV6: EtherType = EtherType(0x86dd);
    /// 802.1ad service VLAN tag (S-tag), the outer tag of Q-in-Q.
    pub const QINQ: EtherType = EtherType(0x88a8);

    /// Whether this value is a tag protocol identifier that [`Frame::encapsulation`] walks.
    pub const fn is_tag(self) -> bool {
        self.0 == Self::VLAN.0 || self.0 == Self::QINQ.0
    }
}

impl std::fmt::Debug for EtherType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            EtherType::IPV4 => f.write_str("IPv4"),
            EtherType::ARP => f.write_str("ARP"),
            EtherType::VLAN => f.write_str("802.1Q"),
            EtherType::IPV6 => f.write_str("IPv6"),
            EtherType::QINQ => f.write_str("802.1ad"),
            EtherType(other) => write!(f, "0x{other:04x}"),
        }
    }
}

impl std::fmt::Display for EtherType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// One VLAN tag: its TPID and its tag control information (priority, drop eligible, VLAN ID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanTag {
    /// [`EtherType::VLAN`] or [`EtherType::QINQ`].
    pub tpid: EtherType,
    /// The raw TCI: PCP (3 bits), DEI (1 bit), VID (12 bits).
    pub tci: u16,
}

impl VlanTag {
    pub const fn new(tpid: EtherType, pcp: u8, dei: bool, vid: u16) -> VlanTag {
        VlanTag {
            tpid,
            tci: ((pcp as u16 & 7) << 13) | ((dei as u16) << 12) | (vid & 0x0fff),
        }
    }

    /// The priority code point (802.1p class of service).
    pub const fn pcp(&self) -> u8 {
        (self.tci >> 13) as u8
    }

    /// The drop eligible indicator.
    pub const fn dei(&self) -> bool {
        self.tci & 0x1000 != 0
    }

    /// The VLAN ID (0: priority tag only, no VLAN).
    pub const fn vid(&self) -> u16 {
        self.tci & 0x0fff
    }
}

/// The VLAN tags of a frame, outermost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Vlan {
    #[default]
    Untagged,
    Single(VlanTag),
    /// Q-in-Q: the service (outer) tag, then the customer (inner) tag.
    Double {
        outer: VlanTag,
        inner: VlanTag,
    },
}

impl Vlan {
    /// How many bytes the tags take.
    pub const fn len(&self) -> usize {
        field::TAG_LEN
            * match self {
                Vlan::Untagged => 0,
                Vlan::Single(_) => 1,
                Vlan::Double { .. } => 2,
            }
    }

    pub const fn is_empty(&self) -> bool {
        matches!(self, Vlan::Untagged)
    }

    /// The VLAN IDs, outermost first.
    pub const fn ids(&self) -> [Option<u16>; MAX_TAGS] {
        match self {
            Vlan::Untagged => [None, None],
            Vlan::Single(tag) => [Some(tag.vid()), None],
            Vlan::Double { outer, inner } => [Some(outer.vid()), Some(inner.vid())],
        }
    }
}

/// What [`Frame::encapsulation`] finds under the tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Encapsulation {
    /// The EtherType of the payload (never a tag).
    pub ethertype: EtherType,
    /// Where the payload (the IP header) starts in the frame: 14, 18 or 22.
    pub payload_offset: usize,
    pub vlan: Vlan,
}

/// A read/write view over an Ethernet II frame in a byte buffer.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps a buffer without checking its length; accessors panic on a short buffer.
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps a buffer after checking that it holds at least an untagged header.
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        let frame = Self::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// Checks that the untagged header fits; [`Frame::encapsulation`] checks the tags.
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

    fn u16_at(&self, at: usize) -> u16 {
        let b = self.bytes();
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    pub fn dst_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.bytes()[field::DESTINATION])
    }

    pub fn src_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.bytes()[field::SOURCE])
    }

    /// The outer EtherType: the payload's type if untagged, else the first tag's TPID.
    pub fn ethertype(&self) -> EtherType {
        EtherType(self.u16_at(field::ETHERTYPE.start))
    }

    /// Everything after the outer EtherType (the first tag's TCI, if tagged).
    pub fn payload(&self) -> &[u8] {
        &self.bytes()[field::PAYLOAD..]
    }

    /// Walks up to [`MAX_TAGS`] VLAN tags and says what lies under them and where.
    ///
    /// `Truncated` if a tag or the EtherType after it runs past the buffer; `Unsupported` for a
    /// third tag, and for an S-tag inside a tag (802.1ad puts S-tags outermost only).
    pub fn encapsulation(&self) -> Result<Encapsulation> {
        self.check_len()?;
        let len = self.bytes().len();
        let mut ethertype = self.ethertype();
        let mut offset = field::PAYLOAD;
        let mut tags = [VlanTag {
            tpid: EtherType(0),
            tci: 0,
        }; MAX_TAGS];
        let mut count = 0;
        while ethertype.is_tag() {
            if count == MAX_TAGS || (count > 0 && ethertype == EtherType::QINQ) {
                return Err(Error::Unsupported);
            }
            // The TCI at `offset` and the next EtherType after it.
            if len < offset + field::TAG_LEN {
                return Err(Error::Truncated);
            }
            tags[count] = VlanTag {
                tpid: ethertype,
                tci: self.u16_at(offset),
            };
            ethertype = EtherType(self.u16_at(offset + 2));
            offset += field::TAG_LEN;
            count += 1;
        }
        let vlan = match count {
            0 => Vlan::Untagged,
            1 => Vlan::Single(tags[0]),
            _ => Vlan::Double {
                outer: tags[0],
                inner: tags[1],
            },
        };
        Ok(Encapsulation {
            ethertype,
            payload_offset: offset,
            vlan,
        })
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    fn bytes_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    pub fn set_dst_addr(&mut self, addr: EthernetAddress) {
        self.bytes_mut()[field::DESTINATION].copy_from_slice(&addr.0);
    }

    pub fn set_src_addr(&mut self, addr: EthernetAddress) {
        self.bytes_mut()[field::SOURCE].copy_from_slice(&addr.0);
    }

    /// Sets the outer EtherType (the first tag's TPID, if tagged).
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        self.bytes_mut()[field::ETHERTYPE].copy_from_slice(&ethertype.0.to_be_bytes());
    }

    /// Exchanges source and destination, as a reply to this frame has them.
    pub fn swap_addrs(&mut self) {
        let (dst, src) = self.bytes_mut()[..field::SOURCE.end].split_at_mut(field::SOURCE.start);
        dst.swap_with_slice(src);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.bytes_mut()[field::PAYLOAD..]
    }
}

/// The header as plain values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    pub src_addr: EthernetAddress,
    pub dst_addr: EthernetAddress,
    pub vlan: Vlan,
    /// The payload's EtherType (under the tags).
    pub ethertype: EtherType,
}

impl Repr {
    /// Reads the header and its tags.
    pub fn parse<T: AsRef<[u8]>>(frame: &Frame<T>) -> Result<Repr> {
        let encapsulation = frame.encapsulation()?;
        Ok(Repr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            vlan: encapsulation.vlan,
            ethertype: encapsulation.ethertype,
        })
    }

    /// The length `emit` writes: the header with its tags, where the payload starts.
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.vlan.len()
    }

    /// Writes the header and tags; the buffer must hold at least [`Repr::buffer_len`] bytes.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) {
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        let bytes = frame.bytes_mut();
        let mut at = field::ETHERTYPE.start;
        let tags = match self.vlan {
            Vlan::Untagged => [None, None],
            Vlan::Single(tag) => [Some(tag), None],
            Vlan::Double { outer, inner } => [Some(outer), Some(inner)],
        };
        for tag in tags.into_iter().flatten() {
            bytes[at..at + 2].copy_from_slice(&tag.tpid.0.to_be_bytes());
            bytes[at + 2..at + 4].copy_from_slice(&tag.tci.to_be_bytes());
            at += field::TAG_LEN;
        }
        bytes[at..at + 2].copy_from_slice(&self.ethertype.0.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DST: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
    const SRC: [u8; 6] = [0x00, 0x1b, 0x21, 0xaa, 0xbb, 0xcc];

    fn untagged() -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&DST);
        f.extend_from_slice(&SRC);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0x45, 0x00]);
        f
    }

    #[test]
    fn every_field_reads() {
        let bytes = untagged();
        let f = Frame::new_checked(&bytes[..]).unwrap();
        assert_eq!(f.dst_addr(), EthernetAddress(DST));
        assert_eq!(f.src_addr(), EthernetAddress(SRC));
        assert_eq!(f.ethertype(), EtherType::IPV4);
        assert_eq!(f.payload(), &[0x45, 0x00]);
    }

    #[test]
    fn every_field_writes_where_it_belongs() {
        let mut buf = [0u8; 16];
        let mut f = Frame::new_unchecked(&mut buf[..]);
        f.set_dst_addr(EthernetAddress(DST));
        f.set_src_addr(EthernetAddress(SRC));
        f.set_ethertype(EtherType::IPV6);
        f.payload_mut().copy_from_slice(&[0x60, 0x01]);
        assert_eq!(&buf[0..6], &DST);
        assert_eq!(&buf[6..12], &SRC);
        assert_eq!(&buf[12..14], &[0x86, 0xdd]);
        assert_eq!(&buf[14..16], &[0x60, 0x01]);
    }

    #[test]
    fn swap_addrs_exchanges_source_and_destination() {
        let mut bytes = untagged();
        let mut f = Frame::new_unchecked(&mut bytes[..]);
        f.swap_addrs();
        assert_eq!(f.dst_addr(), EthernetAddress(SRC));
        assert_eq!(f.src_addr(), EthernetAddress(DST));
        assert_eq!(f.ethertype(), EtherType::IPV4);
    }

    #[test]
    fn short_buffer_is_truncated() {
        assert_eq!(Frame::new_checked(&[0u8; 13][..]).unwrap_err(), Error::Truncated);
        assert_eq!(
            Repr::parse(&Frame::new_unchecked(&[0u8; 5][..])),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn address_classes() {
        assert!(EthernetAddress::BROADCAST.is_broadcast());
        assert!(EthernetAddress::BROADCAST.is_multicast());
        assert!(!EthernetAddress::BROADCAST.is_unicast());
        let mcast = EthernetAddress([0x01, 0x00, 0x5e, 0x00, 0x01, 0x01]);
        assert!(mcast.is_multicast() && !mcast.is_broadcast() && !mcast.is_unicast());
        assert!(EthernetAddress(SRC).is_unicast() && !EthernetAddress(SRC).is_local());
        assert!(EthernetAddress(DST).is_unicast() && EthernetAddress(DST).is_local());
        assert!(!EthernetAddress::default().is_unicast());
        assert_eq!(EthernetAddress::from_bytes(&SRC).as_bytes(), &SRC);
    }

    #[test]
    fn address_displays_as_colon_hex() {
        assert_eq!(EthernetAddress(SRC).to_string(), "00:1b:21:aa:bb:cc");
        assert_eq!(EthernetAddress::BROADCAST.to_string(), "ff:ff:ff:ff:ff:ff");
    }

    #[test]
    fn ethertype_names() {
        assert_eq!(EtherType::IPV4.to_string(), "IPv4");
        assert_eq!(format!("{:?}", EtherType::QINQ), "802.1ad");
        assert_eq!(EtherType(0x1234).to_string(), "0x1234");
        assert!(EtherType::VLAN.is_tag() && EtherType::QINQ.is_tag());
        assert!(!EtherType::IPV6.is_tag() && !EtherType::ARP.is_tag());
    }

    #[test]
    fn tci_fields() {
        let tag = VlanTag::new(EtherType::VLAN, 5, true, 100);
        assert_eq!(tag.tci, 0xb064);
        assert_eq!((tag.pcp(), tag.dei(), tag.vid()), (5, true, 100));
        let tag = VlanTag::new(EtherType::QINQ, 9, false, 0x1fff);
        assert_eq!((tag.pcp(), tag.dei(), tag.vid()), (1, false, 0x0fff));
    }

    #[test]
    fn untagged_payload_starts_at_14() {
        let bytes = untagged();
        let e = Frame::new_checked(&bytes[..]).unwrap().encapsulation().unwrap();
        assert_eq!(
            e,
            Encapsulation {
                ethertype: EtherType::IPV4,
                payload_offset: 14,
                vlan: Vlan::Untagged
            }
        );
        assert_eq!(e.vlan.ids(), [None, None]);
    }

    #[test]
    fn single_tag_is_walked() {
        let mut bytes = untagged();
        bytes.splice(12..12, [0x81, 0x00, 0x20, 0x64]);
        let e = Frame::new_checked(&bytes[..]).unwrap().encapsulation().unwrap();
        assert_eq!(e.ethertype, EtherType::IPV4);
        assert_eq!(e.payload_offset, 18);
        assert_eq!(e.vlan, Vlan::Single(VlanTag::new(EtherType::VLAN, 1, false, 100)));
        assert_eq!(e.vlan.ids(), [Some(100), None]);
        assert_eq!(e.vlan.len(), 4);
    }

    #[test]
    fn double_tag_is_walked() {
        let mut bytes = untagged();
        bytes.splice(12..12, [0x88, 0xa8, 0x00, 0x0a, 0x81, 0x00, 0x00, 0x14]);
        let e = Frame::new_checked(&bytes[..]).unwrap().encapsulation().unwrap();
        assert_eq!(e.ethertype, EtherType::IPV4);
        assert_eq!(e.payload_offset, 22);
        assert_eq!(e.vlan.ids(), [Some(10), Some(20)]);
        assert_eq!(e.vlan.len(), 8);
        // Legacy Q-in-Q with two 802.1Q tags is walked too.
        bytes[12..14].copy_from_slice(&[0x81, 0x00]);
        let e = Frame::new_checked(&bytes[..]).unwrap().encapsulation().unwrap();
        assert_eq!(e.payload_offset, 22);
    }

    #[test]
    fn third_tag_and_inner_s_tag_are_unsupported() {
        let mut bytes = untagged();
        bytes.splice(12..12, [0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2, 0x81, 0x00, 0, 3]);
        let f = Frame::new_checked(&bytes[..]).unwrap();
        assert_eq!(f.encapsulation(), Err(Error::Unsupported));
        let mut bytes = untagged();
        bytes.splice(12..12, [0x81, 0x00, 0, 1, 0x88, 0xa8, 0, 2]);
        let f = Frame::new_checked(&bytes[..]).unwrap();
        assert_eq!(f.encapsulation(), Err(Error::Unsupported));
    }

    #[test]
    fn cut_tags_are_truncated() {
        let mut bytes = untagged();
        bytes.splice(12..12, [0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2]);
        bytes.truncate(12 + 8 + 1);
        for len in 14..bytes.len() {
            let f = Frame::new_checked(&bytes[..len]).unwrap();
            assert_eq!(f.encapsulation(), Err(Error::Truncated), "{len}");
        }
        // A tag whose EtherType just fits is fine even with no payload.
        let mut bytes = untagged();
        bytes.splice(12..12, [0x81, 0x00, 0, 1]);
        let f = Frame::new_checked(&bytes[..18]).unwrap();
        assert_eq!(f.encapsulation().unwrap().payload_offset, 18);
    }

    fn any_tag(tpid: EtherType) -> impl Strategy<Value = VlanTag> {
        any::<u16>().prop_map(move |tci| VlanTag { tpid, tci })
    }

    fn any_vlan() -> impl Strategy<Value = Vlan> {
        let outer = prop_oneof![Just(EtherType::VLAN), Just(EtherType::QINQ)];
        prop_oneof![
            Just(Vlan::Untagged),
            outer.clone().prop_flat_map(any_tag).prop_map(Vlan::Single),
            (outer.prop_flat_map(any_tag), any_tag(EtherType::VLAN))
                .prop_map(|(outer, inner)| Vlan::Double { outer, inner }),
        ]
    }

    fn any_repr() -> impl Strategy<Value = Repr> {
        (any::<[u8; 6]>(), any::<[u8; 6]>(), any_vlan(), any::<u16>())
            .prop_filter("payload type is not a tag", |(_, _, _, t)| {
                !EtherType(*t).is_tag()
            })
            .prop_map(|(src, dst, vlan, ethertype)| Repr {
                src_addr: EthernetAddress(src),
                dst_addr: EthernetAddress(dst),
                vlan,
                ethertype: EtherType(ethertype),
            })
    }

    proptest! {
        #[test]
        fn parse_emit_round_trip(repr in any_repr()) {
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Frame::new_unchecked(&mut buf[..]));
            let frame = Frame::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(Repr::parse(&frame).unwrap(), repr);
            prop_assert_eq!(frame.encapsulation().unwrap().payload_offset, repr.buffer_len());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(frame) = Frame::new_checked(&bytes[..]) {
                if let Ok(e) = frame.encapsulation() {
                    prop_assert!(e.payload_offset <= bytes.len());
                    prop_assert!(!e.ethertype.is_tag());
                }
                let _ = Repr::parse(&frame);
            }
        }
    }
}

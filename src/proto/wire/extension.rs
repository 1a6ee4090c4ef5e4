//! What follows the NTP header: extension fields (RFC 7822) and an optional legacy MAC.
//!
//! An extension field is `type (16) | length (16) | value | padding`, where the length counts the
//! whole field, is a multiple of 4 and at least 16. After the last field there may be a MAC:
//! a 4-byte key ID alone (a crypto-NAK), or a key ID and a 16- or 20-byte digest. As chrony does,
//! fields are taken while they parse, and what remains must be empty or a MAC.
//! NTP versions below 4 have no extension fields: anything after their header is a MAC.

use super::{Error, Result};

mod field {
    use crate::proto::wire::Field;
    pub const TYPE: Field = 0..2;
    pub const LENGTH: Field = 2..4;
    pub const VALUE: usize = 4;
}

/// The shortest extension field RFC 7822 allows.
pub const MIN_FIELD_LEN: usize = 16;
/// A crypto-NAK: a key ID of zero and no digest.
pub const CRYPTO_NAK_LEN: usize = 4;
/// The shortest MAC: key ID and a 128-bit digest (MD5, AES-CMAC).
pub const MIN_MAC_LEN: usize = 4 + 16;
/// The longest MAC an NTPv4 packet carries: key ID and a 160-bit digest (SHA-1).
pub const MAX_MAC_LEN: usize = 4 + 20;

/// One extension field, borrowed from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtensionField<'a> {
    pub field_type: u16,
    /// The value including any padding (the format does not say where the value ends).
    pub value: &'a [u8],
}

impl<'a> ExtensionField<'a> {
    /// Parses the field at the start of `bytes`, returning it and its total length.
    pub fn parse(bytes: &'a [u8]) -> Result<(ExtensionField<'a>, usize)> {
        if bytes.len() < field::VALUE {
            return Err(Error::Truncated);
        }
        let field_type = u16::from_be_bytes([bytes[field::TYPE.start], bytes[field::TYPE.start + 1]]);
        let len = u16::from_be_bytes([bytes[field::LENGTH.start], bytes[field::LENGTH.start + 1]]) as usize;
        if len < MIN_FIELD_LEN || !len.is_multiple_of(4) {
            return Err(Error::Malformed);
        }
        if len > bytes.len() {
            return Err(Error::Truncated);
        }
        Ok((
            ExtensionField {
                field_type,
                value: &bytes[field::VALUE..len],
            },
            len,
        ))
    }

    /// The length this field takes on the wire, padded to 4 and at least [`MIN_FIELD_LEN`].
    pub fn buffer_len(value_len: usize) -> usize {
        (field::VALUE + value_len).next_multiple_of(4).max(MIN_FIELD_LEN)
    }

    /// Writes a field with `value` zero-padded, returning its length. `out` must be large enough.
    pub fn emit(field_type: u16, value: &[u8], out: &mut [u8]) -> Result<usize> {
        let len = Self::buffer_len(value.len());
        if len > u16::MAX as usize {
            return Err(Error::Malformed);
        }
        if out.len() < len {
            return Err(Error::Truncated);
        }
        out[field::TYPE].copy_from_slice(&field_type.to_be_bytes());
        out[field::LENGTH].copy_from_slice(&(len as u16).to_be_bytes());
        out[field::VALUE..field::VALUE + value.len()].copy_from_slice(value);
        out[field::VALUE + value.len()..len].fill(0);
        Ok(len)
    }
}

/// How the bytes after the header divide into extension fields and a MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer<'a> {
    /// The extension fields, back to back; iterate with [`Trailer::fields`].
    pub fields: &'a [u8],
    /// The MAC (or crypto-NAK), if any.
    pub mac: Option<&'a [u8]>,
}

impl<'a> Trailer<'a> {
    /// Splits and checks what follows the header of an NTP packet of `version`.
    pub fn parse(version: u8, trailer: &'a [u8]) -> Result<Trailer<'a>> {
        let mut parsed = 0;
        if version >= 4 {
            while parsed < trailer.len() {
                // What only a MAC fits is a MAC, as chrony reads it: the last field of a packet
                // without a MAC is at least 28 bytes (RFC 7822), and a key ID such as 20 would
                // otherwise read as the header of a 20-byte field.
                if is_mac_len(trailer.len() - parsed) {
                    break;
                }
                match ExtensionField::parse(&trailer[parsed..]) {
                    Ok((_, len)) => parsed += len,
                    Err(_) => break,
                }
            }
        }
        let (fields, rest) = trailer.split_at(parsed);
        let mac = match rest.len() {
            0 => None,
            n if is_mac_len(n) => Some(rest),
            _ => return Err(Error::Malformed),
        };
        Ok(Trailer { fields, mac })
    }

    /// The extension fields, without allocating.
    pub fn fields(&self) -> ExtensionFields<'a> {
        ExtensionFields { rest: self.fields }
    }
}

/// Whether `n` bytes are a MAC's length: a crypto-NAK, or a key ID and a 128- or 160-bit digest.
fn is_mac_len(n: usize) -> bool {
    n == CRYPTO_NAK_LEN || (MIN_MAC_LEN..=MAX_MAC_LEN).contains(&n) && n.is_multiple_of(4)
}

/// An iterator over back-to-back extension fields that [`Trailer::parse`] has checked.
#[derive(Debug, Clone)]
pub struct ExtensionFields<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for ExtensionFields<'a> {
    type Item = ExtensionField<'a>;

    fn next(&mut self) -> Option<ExtensionField<'a>> {
        let (field, len) = ExtensionField::parse(self.rest).ok()?;
        self.rest = &self.rest[len..];
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn field(field_type: u16, value: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; ExtensionField::buffer_len(value.len())];
        ExtensionField::emit(field_type, value, &mut out).unwrap();
        out
    }

    #[test]
    fn field_reads_type_length_and_value() {
        let bytes = [
            0x01, 0x04, 0x00, 0x14, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
        ];
        let (f, len) = ExtensionField::parse(&bytes).unwrap();
        assert_eq!(f.field_type, 0x0104);
        assert_eq!(len, 20);
        assert_eq!(f.value, &bytes[4..20]);
    }

    #[test]
    fn field_length_rules() {
        // shorter than 16
        assert_eq!(
            ExtensionField::parse(&[0, 1, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(Error::Malformed)
        );
        // not a multiple of 4
        assert_eq!(
            ExtensionField::parse(&[0, 1, 0, 17].repeat(5)),
            Err(Error::Malformed)
        );
        // longer than the buffer
        assert_eq!(
            ExtensionField::parse(&[0, 1, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(Error::Truncated)
        );
        assert_eq!(ExtensionField::parse(&[0, 1]), Err(Error::Truncated));
    }

    #[test]
    fn emit_pads_to_four_and_to_the_minimum() {
        assert_eq!(
            field(7, &[1]),
            vec![0, 7, 0, 16, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(field(7, &[9; 13]).len(), 20);
        let mut small = [0u8; 8];
        assert_eq!(ExtensionField::emit(7, &[1], &mut small), Err(Error::Truncated));
    }

    #[test]
    fn trailer_kinds() {
        assert_eq!(
            Trailer::parse(4, &[]).unwrap(),
            Trailer {
                fields: &[],
                mac: None
            }
        );
        let nak = [0u8; 4];
        assert_eq!(Trailer::parse(4, &nak).unwrap().mac, Some(&nak[..]));
        let md5 = [0xaau8; 20];
        assert_eq!(Trailer::parse(3, &md5).unwrap().mac, Some(&md5[..]));
        let sha1 = [0x55u8; 24];
        assert_eq!(Trailer::parse(4, &sha1).unwrap().mac, Some(&sha1[..]));

        let mut two = field(0x0104, &[1; 32]);
        two.extend(field(0x0204, &[2; 12]));
        let t = Trailer::parse(4, &two).unwrap();
        assert_eq!(t.mac, None);
        let types: Vec<u16> = t.fields().map(|f| f.field_type).collect();
        assert_eq!(types, vec![0x0104, 0x0204]);

        let mut with_mac = field(0x0104, &[1; 32]);
        with_mac.extend([0u8; 20]);
        let t = Trailer::parse(4, &with_mac).unwrap();
        assert_eq!(t.fields().count(), 1);
        assert_eq!(t.mac.unwrap().len(), 20);
    }

    #[test]
    fn a_mac_whose_key_id_looks_like_a_field_header_is_a_mac() {
        // Key ID 20 is 00 00 00 14: type 0, length 20.
        let mut mac = vec![0, 0, 0, 20];
        mac.extend([0xab; 16]);
        let t = Trailer::parse(4, &mac).unwrap();
        assert_eq!((t.fields.len(), t.mac), (0, Some(&mac[..])));
        let mut with_field = field(0x0104, &[1; 32]);
        with_field.extend(&mac);
        let t = Trailer::parse(4, &with_field).unwrap();
        assert_eq!((t.fields().count(), t.mac), (1, Some(&mac[..])));
    }

    #[test]
    fn malformed_trailers() {
        for n in [1usize, 2, 3, 5, 8, 12, 16, 28, 30] {
            assert_eq!(
                Trailer::parse(3, &vec![0u8; n]),
                Err(Error::Malformed),
                "v3 {n} bytes"
            );
        }
        // A field whose length runs past the end, and no MAC-shaped remainder.
        let bad = [0u8, 1, 0, 64, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(Trailer::parse(4, &bad), Err(Error::Malformed));
        // Extension fields in an NTPv3 packet are not fields: 32 bytes is no MAC.
        assert_eq!(Trailer::parse(3, &field(1, &[0; 28])), Err(Error::Malformed));
    }

    proptest! {
        #[test]
        fn emitted_fields_parse_back(specs in proptest::collection::vec((any::<u16>(), proptest::collection::vec(any::<u8>(), 0..64)), 0..5)) {
            // RFC 7822: without a MAC, the last field is at least 28 bytes.
            let mut specs = specs;
            if let Some(last) = specs.last_mut() {
                last.1.resize(last.1.len().max(24), 0);
            }
            let mut bytes = Vec::new();
            for (t, v) in &specs {
                bytes.extend(field(*t, v));
            }
            let trailer = Trailer::parse(4, &bytes).unwrap();
            prop_assert_eq!(trailer.mac, None);
            let parsed: Vec<_> = trailer.fields().collect();
            prop_assert_eq!(parsed.len(), specs.len());
            for (f, (t, v)) in parsed.iter().zip(&specs) {
                prop_assert_eq!(f.field_type, *t);
                prop_assert_eq!(&f.value[..v.len()], &v[..]);
                prop_assert!(f.value[v.len()..].iter().all(|b| *b == 0));
            }
        }

        #[test]
        fn trailer_parse_never_panics(version in 0u8..8, bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(t) = Trailer::parse(version, &bytes) {
                let fields_len: usize = t.fields().map(|f| f.value.len() + 4).sum();
                prop_assert_eq!(fields_len, t.fields.len());
                prop_assert_eq!(t.fields.len() + t.mac.map_or(0, |m| m.len()), bytes.len());
            }
        }
    }
}

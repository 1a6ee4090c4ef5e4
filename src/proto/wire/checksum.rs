//! The Internet checksum (RFC 1071): the ones' complement of the ones' complement sum of the data
//! as big-endian 16-bit words, as IPv4, UDP and TCP carry it.
//!
//! Ones' complement addition is addition modulo 0xFFFF, so it is commutative, associative and
//! byte-order independent (RFC 1071 section 2). That lets [`data`] add the bytes as native-endian
//! 64-bit words with end-around carry (2^16 = 1 modulo 0xFFFF, so a 64-bit word is the sum of
//! its four 16-bit words), and fold and byte-swap once at the end: this runs on every packet.
//!
//! The functions here return *sums* (folded to 16 bits, not complemented) so that pieces (a
//! pseudo-header, a header, a payload) can be added with [`combine`]; a checksum field holds the
//! complement, [`checksum`]. [`update_word`] and [`update`] change a checksum field for an edit of
//! the data without reading the rest of it (RFC 1624).

use std::net::{Ipv4Addr, Ipv6Addr};

/// Adds with the carry out of bit 63 brought around into bit 0: ones' complement addition on
/// 64-bit words, which the compiler turns into `add` + `adc`.
#[inline(always)]
const fn add_carry(acc: u64, value: u64) -> u64 {
    let (sum, carry) = acc.overflowing_add(value);
    sum + carry as u64
}

/// Folds a sum of 16-bit words (of any width) to 16 bits with end-around carries.
#[inline]
pub const fn fold(mut sum: u64) -> u16 {
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// The ones' complement sum of `bytes` as big-endian 16-bit words, the last odd byte padded with
/// a zero. The result is never 0 unless every byte is 0 (then it is 0): a nonzero sum that is
/// congruent to zero comes out as 0xFFFF, as RFC 1071's end-around carry makes it.
///
/// Packets here are 20 to a few hundred bytes, so the loop is built for short inputs: two
/// independent add-with-carry chains over 64-bit words (16 bytes per round), then at most one
/// 8-, 4-, 2- and 1-byte load for the tail, with no vector setup and no copy of the remainder.
/// Every load sits at an offset that is a multiple of its size from the start, which keeps each
/// byte in its place in its 16-bit word.
#[inline]
pub fn data(bytes: &[u8]) -> u16 {
    let (mut even, mut odd) = (0u64, 0u64);
    let mut rounds = bytes.chunks_exact(16);
    for r in &mut rounds {
        even = add_carry(
            even,
            u64::from_ne_bytes([r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7]]),
        );
        odd = add_carry(
            odd,
            u64::from_ne_bytes([r[8], r[9], r[10], r[11], r[12], r[13], r[14], r[15]]),
        );
    }
    let mut rest = rounds.remainder();
    if let [a, b, c, d, e, f, g, h, tail @ ..] = rest {
        even = add_carry(even, u64::from_ne_bytes([*a, *b, *c, *d, *e, *f, *g, *h]));
        rest = tail;
    }
    if let [a, b, c, d, tail @ ..] = rest {
        odd = add_carry(odd, u64::from(u32::from_ne_bytes([*a, *b, *c, *d])));
        rest = tail;
    }
    if let [a, b, tail @ ..] = rest {
        even = add_carry(even, u64::from(u16::from_ne_bytes([*a, *b])));
        rest = tail;
    }
    if let [a] = rest {
        odd = add_carry(odd, u64::from(u16::from_ne_bytes([*a, 0])));
    }
    // The words were read in native order; on a little-endian host the folded sum comes out
    // byte-swapped (RFC 1071 section 2(B)), and `from_be` swaps it back.
    u16::from_be(fold(add_carry(even, odd)))
}

/// Adds partial sums (from [`data`], the pseudo-header functions, or single words).
#[inline]
pub fn combine(sums: &[u16]) -> u16 {
    fold(sums.iter().map(|&s| u64::from(s)).sum())
}

/// The checksum field value for `bytes`: the complement of their sum. The bytes must hold zero
/// where the checksum field itself will go.
#[inline]
pub fn checksum(bytes: &[u8]) -> u16 {
    !data(bytes)
}

/// Whether data that includes its checksum field verifies: its sum is 0xFFFF (negative zero).
#[inline]
pub fn verifies(sum: u16) -> bool {
    sum == 0xffff
}

/// The sum of the IPv4 pseudo-header (RFC 768): source, destination, zero, protocol, and the
/// length of the transport header and payload.
#[inline]
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, length: u16) -> u16 {
    let s = src.octets();
    let d = dst.octets();
    fold(
        u64::from(u16::from_be_bytes([s[0], s[1]]))
            + u64::from(u16::from_be_bytes([s[2], s[3]]))
            + u64::from(u16::from_be_bytes([d[0], d[1]]))
            + u64::from(u16::from_be_bytes([d[2], d[3]]))
            + u64::from(protocol)
            + u64::from(length),
    )
}

/// The sum of the IPv6 pseudo-header (RFC 8200 section 8.1): source, destination, the 32-bit
/// upper-layer length, three zero bytes and the next header.
#[inline]
pub fn pseudo_header_v6(src: &Ipv6Addr, dst: &Ipv6Addr, next_header: u8, length: u32) -> u16 {
    let mut sum = u64::from(next_header) + u64::from(length >> 16) + u64::from(length & 0xffff);
    for segment in src.segments().into_iter().chain(dst.segments()) {
        sum += u64::from(segment);
    }
    fold(sum)
}

/// The new checksum field after one 16-bit word of the covered data changes from `old` to `new`:
/// RFC 1624 equation 3, `HC' = ~(~HC + ~m + m')`.
///
/// Equation 3 (unlike RFC 1141's `HC - ~m - m'`) never yields 0xFFFF for data that is not all
/// zeros, so the result is exactly what a full recomputation gives unless the data becomes all
/// zeros. Then it gives 0x0000 where the right value is 0xFFFF; no IP or UDP header is all zeros
/// (the version, the protocol and the length are not), so it cannot happen to them.
#[inline]
pub fn update_word(checksum: u16, old: u16, new: u16) -> u16 {
    !fold(u64::from(!checksum) + u64::from(!old) + u64::from(new))
}

/// The new checksum field after a 32-bit word (two 16-bit words, starting at an even offset)
/// changes from `old` to `new`; exact as [`update_word`] is, with the same one exception.
#[inline]
pub fn update_u32(checksum: u16, old: u32, new: u32) -> u16 {
    let old = u64::from(!(old >> 16) & 0xffff) + u64::from(!old & 0xffff);
    let new = u64::from(new >> 16) + u64::from(new & 0xffff);
    !fold(u64::from(!checksum) + old + new)
}

/// The new checksum field after the bytes `old` of the covered data are replaced by `new`, in
/// place: same length, starting at an even offset of the data. The sum of complemented words is
/// the complement of their sum, so this is equation 3 over the whole region at once; exact as
/// [`update_word`] is, with the same one exception.
///
/// # Panics
/// If `old` and `new` differ in length (a caller bug: the region must be edited in place).
#[inline]
pub fn update(checksum: u16, old: &[u8], new: &[u8]) -> u16 {
    assert_eq!(old.len(), new.len(), "an in-place edit keeps the length");
    !combine(&[!checksum, !data(old), data(new)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A byte-at-a-time reference: big-endian 16-bit words, end-around carry after every add.
    fn reference_sum(bytes: &[u8]) -> u16 {
        let mut sum = 0u32;
        for pair in bytes.chunks(2) {
            let word = u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
            sum += word;
            sum = (sum & 0xffff) + (sum >> 16);
        }
        sum as u16
    }

    /// RFC 1071 section 3's worked example.
    const RFC1071: [u8; 8] = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];

    #[test]
    fn rfc1071_example_sums_to_ddf2() {
        assert_eq!(data(&RFC1071), 0xddf2);
        assert_eq!(checksum(&RFC1071), 0x220d);
    }

    #[test]
    fn rfc1071_example_sums_the_same_in_any_word_order() {
        // Section 2(A): commutative and associative; the pieces may be summed separately.
        assert_eq!(combine(&[data(&RFC1071[..4]), data(&RFC1071[4..])]), 0xddf2);
        assert_eq!(combine(&[data(&RFC1071[4..]), data(&RFC1071[..4])]), 0xddf2);
    }

    #[test]
    fn odd_length_pads_the_last_byte_with_zero() {
        assert_eq!(data(&[0xab]), 0xab00);
        assert_eq!(data(&[0x01, 0x02, 0x03]), 0x0402);
        assert_eq!(data(&[0x01, 0x02, 0x03, 0x04, 0x05]), 0x0906);
        assert_eq!(data(&[0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07]), 0x100c);
    }

    #[test]
    fn a_known_ipv4_header_verifies() {
        // 45 00 00 73 00 00 40 00 40 11 b8 61 c0 a8 00 01 c0 a8 00 c7 (a classic example).
        let mut header = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00, 0x01,
            0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert!(verifies(data(&header)));
        header[10..12].fill(0);
        assert_eq!(checksum(&header), 0xb861);
    }

    #[test]
    fn empty_and_all_zero_data_sum_to_zero() {
        assert_eq!(data(&[]), 0);
        assert_eq!(data(&[0; 37]), 0);
        assert_eq!(checksum(&[0; 8]), 0xffff);
    }

    #[test]
    fn negative_zero_comes_out_as_ffff() {
        // 0x8000 + 0x7fff = 0xffff; 0xffff + 0xffff = 0x1fffe -> 0xffff: never 0 for nonzero data.
        assert_eq!(data(&[0x80, 0x00, 0x7f, 0xff]), 0xffff);
        assert_eq!(data(&[0xff, 0xff, 0xff, 0xff]), 0xffff);
        assert_eq!(checksum(&[0xff, 0xff]), 0x0000);
    }

    #[test]
    fn fold_carries_around_every_width() {
        assert_eq!(fold(0), 0);
        assert_eq!(fold(0xffff), 0xffff);
        assert_eq!(fold(0x1_0000), 1);
        assert_eq!(fold(0x1_fffe), 0xffff);
        assert_eq!(fold(u64::MAX), 0xffff);
        assert_eq!(fold(0xffff_ffff), 0xffff);
        assert_eq!(fold(0x0001_0000_0000), 1);
    }

    #[test]
    fn pseudo_header_v4_sums_its_fields() {
        let sum = pseudo_header_v4(
            Ipv4Addr::new(192, 0, 2, 1),
            Ipv4Addr::new(198, 51, 100, 2),
            17,
            56,
        );
        let mut bytes = [0u8; 12];
        bytes[..4].copy_from_slice(&[192, 0, 2, 1]);
        bytes[4..8].copy_from_slice(&[198, 51, 100, 2]);
        bytes[9] = 17;
        bytes[10..].copy_from_slice(&56u16.to_be_bytes());
        assert_eq!(sum, data(&bytes));
    }

    #[test]
    fn pseudo_header_v6_sums_its_fields() {
        let src: Ipv6Addr = "fd00:5354:5241::1".parse().unwrap();
        let dst: Ipv6Addr = "fd00:5354:5241:1::ffff:2".parse().unwrap();
        let sum = pseudo_header_v6(&src, &dst, 17, 0x0001_0038);
        let mut bytes = [0u8; 40];
        bytes[..16].copy_from_slice(&src.octets());
        bytes[16..32].copy_from_slice(&dst.octets());
        bytes[32..36].copy_from_slice(&0x0001_0038u32.to_be_bytes());
        bytes[39] = 17;
        assert_eq!(sum, data(&bytes));
    }

    #[test]
    fn update_word_from_rfc1624_section4() {
        // RFC 1624's example: HC = 0xdd2f, m = 0x5555 -> m' = 0x3285 gives HC' = 0x0000.
        assert_eq!(update_word(0xdd2f, 0x5555, 0x3285), 0x0000);
    }

    #[test]
    fn update_word_handles_the_zero_corners() {
        // Data [0x0001, 0xfffe]: sum 0xffff, checksum 0x0000.
        let mut buf = [0x00, 0x01, 0xff, 0xfe, 0x00, 0x00];
        assert_eq!(checksum(&buf), 0x0000);
        // Changing 0xfffe to 0xfffd: sum 0xfffe, checksum 0x0001.
        assert_eq!(update_word(0x0000, 0xfffe, 0xfffd), 0x0001);
        buf[3] = 0xfd;
        assert_eq!(checksum(&buf), 0x0001);
        // Back again; eq. 3 gives 0x0000 (a full recomputation's value), not 0xffff.
        assert_eq!(update_word(0x0001, 0xfffd, 0xfffe), 0x0000);
        // Data becoming all zeros is eq. 3's one blind spot: it gives 0x0000, the right value
        // is 0xffff (what a recomputation gives, and the only one that verifies).
        assert_eq!(update_word(0xfffe, 0x0001, 0x0000), 0x0000);
        assert_eq!(checksum(&[0, 0]), 0xffff);
        assert!(verifies(combine(&[data(&[0, 0]), 0xffff])));
        assert!(!verifies(combine(&[data(&[0, 0]), 0x0000])));
    }

    #[test]
    #[should_panic(expected = "in-place edit")]
    fn update_refuses_regions_of_different_length() {
        update(0, &[1, 2], &[1, 2, 3, 4]);
    }

    /// A buffer with its checksum field at `at` (even), and an edit of a region elsewhere.
    fn buffer_and_edit() -> impl Strategy<Value = (Vec<u8>, usize, usize, Vec<u8>)> {
        proptest::collection::vec(any::<u8>(), 4..300).prop_flat_map(|buf| {
            let words = buf.len() / 2;
            (Just(buf), 0..words, 0..words).prop_flat_map(|(buf, at, start)| {
                let max = buf.len() - start * 2;
                let len = 0..=max;
                (
                    Just(buf),
                    Just(at * 2),
                    Just(start * 2),
                    proptest::collection::vec(any::<u8>(), len),
                )
            })
        })
    }

    proptest! {
        #[test]
        fn fast_sum_equals_the_reference(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
            prop_assert_eq!(data(&bytes), reference_sum(&bytes));
        }

        #[test]
        fn sums_of_even_splits_combine(bytes in proptest::collection::vec(any::<u8>(), 0..600),
                                       split in 0usize..300) {
            let split = (split * 2).min(bytes.len() & !1);
            prop_assert_eq!(combine(&[data(&bytes[..split]), data(&bytes[split..])]), data(&bytes));
        }

        #[test]
        fn a_filled_checksum_verifies(mut bytes in proptest::collection::vec(any::<u8>(), 2..600),
                                      at in 0usize..300) {
            let at = (at * 2).min((bytes.len() - 2) & !1);
            bytes[at..at + 2].fill(0);
            let cs = checksum(&bytes);
            bytes[at..at + 2].copy_from_slice(&cs.to_be_bytes());
            prop_assert!(verifies(data(&bytes)));
        }

        #[test]
        fn incremental_word_update_equals_recompute(
            mut bytes in proptest::collection::vec(any::<u8>(), 4..600),
            at in 0usize..300, word in 0usize..300, new: u16,
        ) {
            let words = bytes.len() / 2;
            let at = (at % words) * 2;
            let mut word = (word % words) * 2;
            if word == at {
                word = (word + 2) % (words * 2);
            }
            bytes[at..at + 2].fill(0);
            let hc = checksum(&bytes);
            let old = u16::from_be_bytes([bytes[word], bytes[word + 1]]);
            bytes[word..word + 2].copy_from_slice(&new.to_be_bytes());
            let updated = update_word(hc, old, new);
            if bytes.iter().all(|&b| b == 0) {
                prop_assert_eq!(updated, 0x0000);
            } else {
                prop_assert_eq!(updated, checksum(&bytes));
            }
        }

        #[test]
        fn incremental_u32_update_equals_recompute(
            mut bytes in proptest::collection::vec(any::<u8>(), 8..400),
            at in 0usize..200, new: u32,
        ) {
            // The checksum field lives in the first word; the 32-bit edit in the rest.
            bytes[0..2].fill(0);
            let hc = checksum(&bytes);
            let at = 2 + (at % ((bytes.len() - 6) / 2)) * 2;
            let old = u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
            bytes[at..at + 4].copy_from_slice(&new.to_be_bytes());
            let updated = update_u32(hc, old, new);
            if bytes.iter().all(|&b| b == 0) {
                prop_assert_eq!(updated, 0x0000);
            } else {
                prop_assert_eq!(updated, checksum(&bytes));
            }
        }

        #[test]
        fn incremental_region_update_equals_recompute((mut bytes, at, start, new) in buffer_and_edit()) {
            bytes[at..at + 2].fill(0);
            let hc = checksum(&bytes);
            // The region must not cover the checksum field: zero it in both versions.
            let region = start..start + new.len();
            let mut new = new;
            if region.contains(&at) || region.contains(&(at + 1)) {
                for i in at..at + 2 {
                    if region.contains(&i) {
                        new[i - start] = 0;
                    }
                }
            }
            let old = bytes[region.clone()].to_vec();
            bytes[region].copy_from_slice(&new);
            let updated = update(hc, &old, &new);
            if bytes.iter().all(|&b| b == 0) {
                prop_assert_eq!(updated, 0x0000);
            } else {
                prop_assert_eq!(updated, checksum(&bytes));
            }
        }
    }
}

//! The mode-6 header (RFC 9327 section 2): 12 bytes, then `count` bytes of data padded to a
//! multiple of 4.
//!
//! ```text
//!  0: LI(2) VN(3) Mode(3)   1: R E M Opcode(5)   2-3: sequence
//!  4-5: status              6-7: association ID
//!  8-9: offset              10-11: count
//! ```

pub const HEADER_LEN: usize = 12;
/// The most data one reply carries (ntpd's fragment size: check_ntp_peer reads no more).
pub const MAX_DATA: usize = 468;
/// The longest reply strata sends: header, data, padding.
pub const MAX_REPLY: usize = HEADER_LEN + MAX_DATA;

const RESPONSE: u8 = 0x80;
const ERROR: u8 = 0x40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    ReadStatus,
    ReadVariables,
    Other(u8),
}

impl Opcode {
    fn from_bits(b: u8) -> Opcode {
        match b & 0x1f {
            1 => Opcode::ReadStatus,
            2 => Opcode::ReadVariables,
            other => Opcode::Other(other),
        }
    }

    fn bits(self) -> u8 {
        match self {
            Opcode::ReadStatus => 1,
            Opcode::ReadVariables => 2,
            Opcode::Other(b) => b & 0x1f,
        }
    }
}

/// The error codes of RFC 9327 section 2 that strata sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    BadFormat = 2,
    BadOpcode = 3,
    UnknownAssociation = 4,
    UnknownVariable = 5,
}

/// A request's header, checked: mode 6, a request (not a response), NTP version 1 to 4, not a
/// fragment of a longer request, and the data it announces within the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub opcode: Opcode,
    pub sequence: u16,
    pub association: u16,
    pub count: u16,
}

impl Header {
    /// The request's header and its data, or None for anything that is not a mode-6 request
    /// strata can read (dropped without an answer: an error reply to garbage would be a
    /// reflection).
    pub fn parse(bytes: &[u8]) -> Option<(Header, &[u8])> {
        let h = bytes.get(..HEADER_LEN)?;
        let version = (h[0] >> 3) & 7;
        if h[0] & 7 != 6 || !(1..=4).contains(&version) || h[1] & (RESPONSE | ERROR | 0x20) != 0 {
            return None;
        }
        let word = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        let (offset, count) = (word(8), word(10));
        if offset != 0 {
            return None;
        }
        let data = bytes.get(HEADER_LEN..HEADER_LEN + count as usize)?;
        Some((
            Header {
                version,
                opcode: Opcode::from_bits(h[1]),
                sequence: word(2),
                association: word(6),
                count,
            },
            data,
        ))
    }

    /// Writes a reply to this request into `out`: `status`, `data` (at most [`MAX_DATA`]
    /// bytes, padded with zeros to a multiple of 4), and the error bit if `error` is set.
    /// Returns the reply's length.
    pub fn emit_reply(&self, out: &mut [u8; MAX_REPLY], status: u16, error: bool, data: &[u8]) -> usize {
        let data = &data[..data.len().min(MAX_DATA)];
        out[0] = (self.version << 3) | 6;
        out[1] = RESPONSE | if error { ERROR } else { 0 } | self.opcode.bits();
        out[2..4].copy_from_slice(&self.sequence.to_be_bytes());
        out[4..6].copy_from_slice(&status.to_be_bytes());
        out[6..8].copy_from_slice(&self.association.to_be_bytes());
        out[8..10].copy_from_slice(&0u16.to_be_bytes());
        out[10..12].copy_from_slice(&(data.len() as u16).to_be_bytes());
        out[HEADER_LEN..HEADER_LEN + data.len()].copy_from_slice(data);
        let padded = data.len().div_ceil(4) * 4;
        out[HEADER_LEN + data.len()..HEADER_LEN + padded].fill(0);
        HEADER_LEN + padded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(opcode: u8, assoc: u16, data: &[u8]) -> Vec<u8> {
        let mut v = vec![0x16, opcode, 0, 7, 0, 0];
        v.extend_from_slice(&assoc.to_be_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&(data.len() as u16).to_be_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn a_request_is_read_with_its_data() {
        let r = request(2, 5, b"offset,jitter");
        let (h, data) = Header::parse(&r).unwrap();
        assert_eq!(h.opcode, Opcode::ReadVariables);
        assert_eq!((h.version, h.sequence, h.association), (2, 7, 5));
        assert_eq!(data, b"offset,jitter");
    }

    #[test]
    fn what_is_not_a_readable_request_is_refused() {
        let good = request(1, 0, b"");
        assert!(Header::parse(&good).is_some());
        assert!(Header::parse(&good[..11]).is_none(), "short");
        let mut response = good.clone();
        response[1] |= 0x80;
        assert!(Header::parse(&response).is_none(), "a response");
        let mut more = good.clone();
        more[1] |= 0x20;
        assert!(Header::parse(&more).is_none(), "a fragment");
        let mut mode3 = good.clone();
        mode3[0] = 0x23;
        assert!(Header::parse(&mode3).is_none(), "not mode 6");
        let mut v0 = good.clone();
        v0[0] = 0x06;
        assert!(Header::parse(&v0).is_none(), "version 0");
        let mut offset = good.clone();
        offset[9] = 4;
        assert!(Header::parse(&offset).is_none(), "offset");
        let mut count = good.clone();
        count[11] = 1;
        assert!(Header::parse(&count).is_none(), "count past the end");
    }

    #[test]
    fn a_reply_is_padded_and_bounded() {
        let (h, _) = Header::parse(&request(2, 0, b"")).unwrap();
        let mut out = [0xffu8; MAX_REPLY];
        let n = h.emit_reply(&mut out, 0x0615, false, b"stratum=2");
        assert_eq!(n, 12 + 12);
        assert_eq!(&out[..4], &[0x16, 0x82, 0, 7]);
        assert_eq!(u16::from_be_bytes([out[10], out[11]]), 9);
        assert_eq!(&out[21..24], &[0, 0, 0]);
        let n = h.emit_reply(&mut out, 0, false, &[b'x'; 1000]);
        assert_eq!(n, MAX_REPLY);
        let n = h.emit_reply(&mut out, 0x0500, true, b"");
        assert_eq!((n, out[1]), (12, 0xc2));
    }
}

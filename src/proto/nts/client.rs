//! The client's side of an NTS-protected exchange: the request it sends and the checks it makes
//! on the reply. strata's own tests, the load generator's NTS mode and strata as an NTS client of
//! its upstreams ([`super::session`]) use it; the server side never does.

use super::aead::{Aead, TAG_LEN};
use super::cookie::SessionKeys;
use super::packet::{AUTHENTICATOR, COOKIE_PLACEHOLDER, NTS_COOKIE, UNIQUE_IDENTIFIER};
use crate::proto::wire::extension::ExtensionField;
use crate::proto::wire::ntp::HEADER_LEN;
use std::ops::Range;

/// Writes a field into `buf` at `at`; the new end, or None without room.
fn put_field(buf: &mut [u8], at: usize, field_type: u16, value: &[u8]) -> Option<usize> {
    let len = (4 + value.len()).next_multiple_of(4).max(16);
    let out = buf.get_mut(at..at + len)?;
    out[..2].copy_from_slice(&field_type.to_be_bytes());
    out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    out[4..4 + value.len()].copy_from_slice(value);
    out[4 + value.len()..].fill(0);
    Some(at + len)
}

/// [`request`] written into `buf`, without allocating (the load generator's per-request path);
/// its length, or None when `buf` is too small or the nonce longer than 16 bytes.
pub fn write_request(
    buf: &mut [u8],
    header: &[u8; HEADER_LEN],
    uid: &[u8],
    cookie: &[u8],
    placeholders: usize,
    keys: &SessionKeys,
    nonce: &[u8],
) -> Option<usize> {
    if nonce.len() > 16 {
        return None;
    }
    buf.get_mut(..HEADER_LEN)?.copy_from_slice(header);
    let mut at = put_field(buf, HEADER_LEN, UNIQUE_IDENTIFIER, uid)?;
    at = put_field(buf, at, NTS_COOKIE, cookie)?;
    for _ in 0..placeholders {
        let len = (4 + cookie.len()).next_multiple_of(4).max(16);
        let out = buf.get_mut(at..at + len)?;
        out.fill(0);
        out[..2].copy_from_slice(&COOKIE_PLACEHOLDER.to_be_bytes());
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        at += len;
    }
    // The authenticator: lengths, the nonce padded to 4, then the tag (nothing encrypted).
    let ct_at = at + 4 + 4 + nonce.len().next_multiple_of(4);
    let end = ct_at + TAG_LEN;
    let field_len = end - at;
    let out = buf.get_mut(at..end)?;
    out.fill(0);
    out[..2].copy_from_slice(&AUTHENTICATOR.to_be_bytes());
    out[2..4].copy_from_slice(&(field_len as u16).to_be_bytes());
    out[4..6].copy_from_slice(&(nonce.len() as u16).to_be_bytes());
    out[6..8].copy_from_slice(&(TAG_LEN as u16).to_be_bytes());
    out[8..8 + nonce.len()].copy_from_slice(nonce);
    let (ad, rest) = buf.split_at_mut(at);
    let sealed = keys
        .aead
        .seal(keys.c2s(), nonce, ad, &mut rest[ct_at - at..end - at], 0)
        .ok()?;
    debug_assert_eq!(sealed, TAG_LEN);
    Some(end)
}

/// An NTS request: `header` (48 bytes), then the Unique Identifier, the cookie, `placeholders`
/// placeholders of the cookie's length, and the authenticator sealed with the C2S key and
/// `nonce` (its length is the AEAD's nonce length, at most 16).
pub fn request(
    header: &[u8; HEADER_LEN],
    uid: &[u8],
    cookie: &[u8],
    placeholders: usize,
    keys: &SessionKeys,
    nonce: &[u8],
) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let len = write_request(&mut buf, header, uid, cookie, placeholders, keys, nonce)
        .expect("4 KiB holds a request");
    buf.truncate(len);
    buf
}

/// Why a reply was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// A Kiss-o'-Death NTSN carrying the request's identifier: the server NAKed it.
    Nak,
    /// The Unique Identifier is missing or not ours.
    WrongIdentifier,
    /// No authenticator, or it does not open with the S2C key.
    NotAuthenticated,
    Malformed,
}

/// Opens the reply in `buf` (a copy the caller owns) in place: checks the identifier is `uid`
/// and the authenticator opens with the S2C key; where the decrypted fields are in `buf`.
fn open_in_place(buf: &mut [u8], uid: &[u8], keys: &SessionKeys) -> Result<Range<usize>, ReplyError> {
    if buf.len() < HEADER_LEN {
        return Err(ReplyError::Malformed);
    }
    // A NAK counts only when it carries our identifier: anyone can send an unauthenticated
    // KoD, and a forged one must not make the client throw its cookies away.
    let nak = buf[1] == 0 && &buf[12..16] == b"NTSN";
    let mut at = HEADER_LEN;
    let mut uid_ok = false;
    while at < buf.len() {
        let (f, len) = ExtensionField::parse(&buf[at..]).map_err(|_| ReplyError::Malformed)?;
        match f.field_type {
            UNIQUE_IDENTIFIER => {
                uid_ok = f.value.get(..uid.len()) == Some(uid);
                if nak {
                    return Err(if uid_ok {
                        ReplyError::Nak
                    } else {
                        ReplyError::WrongIdentifier
                    });
                }
            }
            AUTHENTICATOR => {
                if !uid_ok {
                    return Err(ReplyError::WrongIdentifier);
                }
                let v = at + 4;
                if len < 8 {
                    return Err(ReplyError::Malformed);
                }
                let nl = u16::from_be_bytes([buf[v], buf[v + 1]]) as usize;
                let cl = u16::from_be_bytes([buf[v + 2], buf[v + 3]]) as usize;
                let ct = v + 4 + nl.next_multiple_of(4);
                if ct + cl > at + len || cl < TAG_LEN || nl > 64 {
                    return Err(ReplyError::Malformed);
                }
                // The nonce is read out before the ciphertext after it is opened in place.
                let mut nonce = [0u8; 64];
                nonce[..nl].copy_from_slice(&buf[v + 4..v + 4 + nl]);
                let (ad, rest) = buf.split_at_mut(at);
                let plain = keys
                    .aead
                    .open(keys.s2c(), &nonce[..nl], ad, &mut rest[ct - at..ct - at + cl])
                    .map_err(|_| ReplyError::NotAuthenticated)?;
                return Ok(ct + plain.start..ct + plain.end);
            }
            _ => {}
        }
        at += len;
    }
    Err(if uid_ok {
        ReplyError::NotAuthenticated
    } else {
        ReplyError::WrongIdentifier
    })
}

/// Hands each fresh cookie among the decrypted fields to `each`.
fn each_cookie(plain: &[u8], mut each: impl FnMut(&[u8])) -> Result<(), ReplyError> {
    let mut p = 0;
    while p < plain.len() {
        let (c, n) = ExtensionField::parse(&plain[p..]).map_err(|_| ReplyError::Malformed)?;
        if c.field_type == NTS_COOKIE {
            each(c.value);
        }
        p += n;
    }
    Ok(())
}

/// Checks a reply against the request's `uid` and `keys`; the fresh cookies it carries.
pub fn verify(reply: &[u8], uid: &[u8], keys: &SessionKeys) -> Result<Vec<Vec<u8>>, ReplyError> {
    let mut buf = reply.to_vec();
    let plain = open_in_place(&mut buf, uid, keys)?;
    let mut found = Vec::new();
    each_cookie(&buf[plain], |c| found.push(c.to_vec()))?;
    Ok(found)
}

/// [`verify`] without allocating: the reply is copied to the stack (at most 1 KiB) to be opened;
/// the number of fresh cookies it carries.
pub fn verify_count(reply: &[u8], uid: &[u8], keys: &SessionKeys) -> Result<usize, ReplyError> {
    let mut copy = [0u8; 1024];
    let copy = copy.get_mut(..reply.len()).ok_or(ReplyError::Malformed)?;
    copy.copy_from_slice(reply);
    let plain = open_in_place(copy, uid, keys)?;
    let mut n = 0;
    each_cookie(&copy[plain], |_| n += 1)?;
    Ok(n)
}

/// The cookie as a cookie field's value carries it: with its padding, which a server reading
/// it back must accept (the cookie's own length is the AEAD's).
pub fn trim_cookie(value: &[u8], aead: Aead) -> &[u8] {
    &value[..super::cookie::cookie_len(aead).min(value.len())]
}

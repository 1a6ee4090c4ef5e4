//! The client's side of an NTS-protected exchange: the request it sends and the checks it makes
//! on the reply. strata's own tests, the load generator's NTS mode and (later) strata as an NTS
//! client of its upstreams use it; the server side never does.

use super::aead::{Aead, TAG_LEN};
use super::cookie::SessionKeys;
use super::packet::{AUTHENTICATOR, COOKIE_PLACEHOLDER, NTS_COOKIE, UNIQUE_IDENTIFIER};
use crate::proto::wire::extension::ExtensionField;
use crate::proto::wire::ntp::HEADER_LEN;

fn field(out: &mut Vec<u8>, field_type: u16, value: &[u8]) {
    let len = (4 + value.len()).next_multiple_of(4).max(16);
    out.extend_from_slice(&field_type.to_be_bytes());
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(value);
    out.resize(out.len() + len - 4 - value.len(), 0);
}

/// An NTS request: `header` (48 bytes), then the Unique Identifier, the cookie, `placeholders`
/// placeholders of the cookie's length, and the authenticator sealed with the C2S key and
/// `nonce` (its length is the AEAD's nonce length).
pub fn request(
    header: &[u8; HEADER_LEN],
    uid: &[u8],
    cookie: &[u8],
    placeholders: usize,
    keys: &SessionKeys,
    nonce: &[u8],
) -> Vec<u8> {
    let mut out = header.to_vec();
    field(&mut out, UNIQUE_IDENTIFIER, uid);
    field(&mut out, NTS_COOKIE, cookie);
    for _ in 0..placeholders {
        field(&mut out, COOKIE_PLACEHOLDER, &vec![0; cookie.len()]);
    }
    let ad_len = out.len();
    let mut value = Vec::new();
    value.extend_from_slice(&(nonce.len() as u16).to_be_bytes());
    value.extend_from_slice(&(TAG_LEN as u16).to_be_bytes());
    value.extend_from_slice(nonce);
    value.resize(4 + nonce.len().next_multiple_of(4), 0);
    let ct_at = value.len();
    value.resize(ct_at + TAG_LEN, 0);
    let sealed = keys
        .aead
        .seal(keys.c2s(), nonce, &out[..ad_len], &mut value[ct_at..], 0)
        .expect("the buffer has room for the tag");
    debug_assert_eq!(sealed, TAG_LEN);
    field(&mut out, AUTHENTICATOR, &value);
    out
}

/// Why a reply was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyError {
    /// A Kiss-o'-Death NTSN: the server NAKed the request.
    Nak,
    /// The Unique Identifier is missing or not ours.
    WrongIdentifier,
    /// No authenticator, or it does not open with the S2C key.
    NotAuthenticated,
    Malformed,
}

/// Checks a reply against the request's `uid` and `keys`; the fresh cookies it carries.
pub fn verify(reply: &[u8], uid: &[u8], keys: &SessionKeys) -> Result<Vec<Vec<u8>>, ReplyError> {
    if reply.len() < HEADER_LEN {
        return Err(ReplyError::Malformed);
    }
    if reply[1] == 0 && &reply[12..16] == b"NTSN" {
        return Err(ReplyError::Nak);
    }
    let mut at = HEADER_LEN;
    let mut uid_ok = false;
    while at < reply.len() {
        let (f, len) = ExtensionField::parse(&reply[at..]).map_err(|_| ReplyError::Malformed)?;
        match f.field_type {
            UNIQUE_IDENTIFIER => uid_ok = f.value.get(..uid.len()) == Some(uid),
            AUTHENTICATOR => {
                if !uid_ok {
                    return Err(ReplyError::WrongIdentifier);
                }
                let v = f.value;
                if v.len() < 4 {
                    return Err(ReplyError::Malformed);
                }
                let nl = u16::from_be_bytes([v[0], v[1]]) as usize;
                let cl = u16::from_be_bytes([v[2], v[3]]) as usize;
                let ct_at = 4 + nl.next_multiple_of(4);
                if ct_at + cl > v.len() || cl < TAG_LEN {
                    return Err(ReplyError::Malformed);
                }
                let mut ct = v[ct_at..ct_at + cl].to_vec();
                let plain = keys
                    .aead
                    .open(keys.s2c(), &v[4..4 + nl], &reply[..at], &mut ct)
                    .map_err(|_| ReplyError::NotAuthenticated)?;
                let plain = &ct[plain];
                let mut cookies = Vec::new();
                let mut p = 0;
                while p < plain.len() {
                    let (c, n) = ExtensionField::parse(&plain[p..]).map_err(|_| ReplyError::Malformed)?;
                    if c.field_type == NTS_COOKIE {
                        cookies.push(c.value.to_vec());
                    }
                    p += n;
                }
                return Ok(cookies);
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

/// The cookie as a cookie field's value carries it: with its padding, which a server reading
/// it back must accept (the cookie's own length is the AEAD's).
pub fn trim_cookie(value: &[u8], aead: Aead) -> &[u8] {
    &value[..super::cookie::cookie_len(aead).min(value.len())]
}

//! NTS-protected NTP requests (RFC 8915 section 5), answered in place like `respond()`: the
//! extension fields found, the cookie opened, the request authenticated with the C2S key, and
//! the reply written over the request: the header `respond()` writes, the Unique Identifier
//! echoed, and an NTS Authenticator sealed with the S2C key whose encrypted part holds fresh
//! cookies, one for the cookie and each placeholder sent, as many as fit in the request's length
//! (a reply is never longer than its request). A cookie that does not open, or a request that
//! does not authenticate, gets the NTS NAK: a Kiss-o'-Death NTSN with the Unique Identifier and
//! nothing else. Nothing allocates; the buffers are the packet's and the stack's.
//!
//! The server keeps no per-client state, so a replayed request is answered again: the client's
//! Unique Identifier check (RFC 8915 section 5.7) is what protects it against replays.

use super::aead::{Aead, TAG_LEN};
use super::cookie::{cookie_len, CookieError, CookieKeys, COOKIE_NONCE_LEN, MAX_COOKIE_LEN};
use super::nonce::NonceSource;
use crate::proto::respond::{respond, Admission, DropReason, KissCode, Reply, ReplyKind};
use crate::proto::state::ServerState;
use crate::proto::wire::extension::ExtensionField;
use crate::proto::wire::ntp::{Packet, HEADER_LEN};
use crate::proto::wire::NtpTimestamp;

pub const UNIQUE_IDENTIFIER: u16 = 0x0104;
pub const NTS_COOKIE: u16 = 0x0204;
pub const COOKIE_PLACEHOLDER: u16 = 0x0304;
pub const AUTHENTICATOR: u16 = 0x0404;

/// The shortest Unique Identifier body RFC 8915 allows.
pub const MIN_UNIQUE_ID: usize = 32;

/// Why an NTS request was not answered with the time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NtsRefusal {
    /// The cookie's key is no longer accepted: NAK.
    CookieExpired,
    /// The cookie does not open: NAK.
    CookieInvalid,
    /// The request does not authenticate with the cookie's key: NAK.
    BadAuthenticator,
    /// The NTS fields are not as RFC 8915 says (no Unique Identifier, no or two cookies, the
    /// authenticator missing or not last, lengths out of range): dropped.
    Malformed,
}

impl NtsRefusal {
    pub const ALL: [NtsRefusal; 4] = [
        NtsRefusal::CookieExpired,
        NtsRefusal::CookieInvalid,
        NtsRefusal::BadAuthenticator,
        NtsRefusal::Malformed,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            NtsRefusal::CookieExpired => "cookie_expired",
            NtsRefusal::CookieInvalid => "cookie_invalid",
            NtsRefusal::BadAuthenticator => "bad_authenticator",
            NtsRefusal::Malformed => "malformed",
        }
    }
}

/// Where the NTS fields of a request are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    /// The whole Unique Identifier field.
    uid: (usize, usize),
    /// The cookie's body (the field's value, padding excluded: its length says which AEAD).
    cookie: (usize, usize),
    placeholders: usize,
    /// The whole authenticator field.
    auth: (usize, usize),
}

/// Whether the request in `packet` carries NTS (a Unique Identifier or a cookie): the caller
/// sends those here and the rest to `respond()`.
pub fn is_nts(packet: &[u8]) -> bool {
    let mut at = HEADER_LEN;
    if packet.len() <= HEADER_LEN || Packet::new_unchecked(packet).version() != 4 {
        return false;
    }
    while let Ok((field, len)) = ExtensionField::parse(&packet[at..]) {
        if matches!(field.field_type, UNIQUE_IDENTIFIER | NTS_COOKIE) {
            return true;
        }
        at += len;
    }
    false
}

fn find_fields(packet: &[u8]) -> Result<Fields, NtsRefusal> {
    let (mut uid, mut cookie, mut auth, mut placeholders) = (None, None, None, 0);
    let mut at = HEADER_LEN;
    while at < packet.len() {
        let (field, len) = ExtensionField::parse(&packet[at..]).map_err(|_| NtsRefusal::Malformed)?;
        if auth.is_some() {
            // Fields after the authenticator are not authenticated: not accepted.
            return Err(NtsRefusal::Malformed);
        }
        match field.field_type {
            UNIQUE_IDENTIFIER if uid.is_none() && field.value.len() >= MIN_UNIQUE_ID => {
                uid = Some((at, at + len))
            }
            NTS_COOKIE if cookie.is_none() => {
                // A cookie of ours is a multiple of 4 long: the whole value, no padding.
                let body = Aead::ALL
                    .into_iter()
                    .map(cookie_len)
                    .find(|&n| n == field.value.len())
                    .ok_or(NtsRefusal::Malformed)?;
                cookie = Some((at + 4, at + 4 + body));
            }
            COOKIE_PLACEHOLDER => placeholders += 1,
            AUTHENTICATOR => auth = Some((at, at + len)),
            UNIQUE_IDENTIFIER | NTS_COOKIE => return Err(NtsRefusal::Malformed),
            _ => {}
        }
        at += len;
    }
    match (uid, cookie, auth) {
        (Some(uid), Some(cookie), Some(auth)) => Ok(Fields {
            uid,
            cookie,
            placeholders,
            auth,
        }),
        _ => Err(NtsRefusal::Malformed),
    }
}

/// A part of a buffer: start and end offsets.
type Span = (usize, usize);

/// The nonce and ciphertext of an authenticator field's value: `nonce length (16) |
/// ciphertext length (16) | nonce, padded | ciphertext, padded`.
fn authenticator(value: &[u8]) -> Result<(Span, Span), NtsRefusal> {
    if value.len() < 4 {
        return Err(NtsRefusal::Malformed);
    }
    let nonce_len = u16::from_be_bytes([value[0], value[1]]) as usize;
    let ct_len = u16::from_be_bytes([value[2], value[3]]) as usize;
    let nonce = (4, 4 + nonce_len);
    let ct_at = 4 + nonce_len.next_multiple_of(4);
    let ct = (ct_at, ct_at + ct_len);
    if nonce_len == 0 || ct_len < TAG_LEN || ct.1 > value.len() {
        return Err(NtsRefusal::Malformed);
    }
    Ok((nonce, ct))
}

/// Everything an NTS answer needs besides the request: the cookie keys, a source of nonces,
/// and the time in Unix seconds (which cookie key epoch is current).
pub struct NtsContext<'a> {
    pub keys: &'a mut CookieKeys,
    pub nonces: &'a mut NonceSource,
    pub unix_s: u64,
}

/// What [`respond_nts`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NtsOutcome {
    /// An authenticated reply (or a KoD from admission) of this length, `cookies` fresh cookies
    /// in it.
    Answered { reply: Reply, cookies: usize },
    /// A NAK, for this reason.
    Nak { reply: Reply, why: NtsRefusal },
}

/// Answers the NTS request in `packet` in place (see the module). `tx_time` is final: it is
/// authenticated, so the caller must not re-stamp it.
pub fn respond_nts(
    packet: &mut [u8],
    rx_time: NtpTimestamp,
    tx_time: NtpTimestamp,
    admission: Admission,
    state: &ServerState,
    ctx: NtsContext<'_>,
) -> Result<NtsOutcome, DropReason> {
    // The header's own rules first (version, mode): the same drops as any request.
    crate::proto::respond::check_header(packet)?;
    let fields = find_fields(packet).map_err(|_| DropReason::MalformedExtension)?;
    let (nonce, ct) = {
        let value = &packet[fields.auth.0 + 4..fields.auth.1];
        let (n, c) = authenticator(value).map_err(|_| DropReason::MalformedExtension)?;
        let base = fields.auth.0 + 4;
        ((base + n.0, base + n.1), (base + c.0, base + c.1))
    };

    let keys = {
        let mut cookie = [0u8; MAX_COOKIE_LEN];
        let len = fields.cookie.1 - fields.cookie.0;
        cookie[..len].copy_from_slice(&packet[fields.cookie.0..fields.cookie.1]);
        match ctx.keys.open(&mut cookie[..len], ctx.unix_s) {
            Ok(keys) => keys,
            Err(e) => {
                let why = match e {
                    CookieError::Expired => NtsRefusal::CookieExpired,
                    CookieError::Invalid => NtsRefusal::CookieInvalid,
                };
                return nak(packet, rx_time, state, fields, why);
            }
        }
    };
    {
        // The associated data is everything before the authenticator; the ciphertext is
        // opened in place (the request is not needed once it is authenticated).
        let (ad, rest) = packet.split_at_mut(fields.auth.0);
        let off = fields.auth.0;
        let nonce_bytes = &rest[nonce.0 - off..nonce.1 - off];
        let mut n = [0u8; 64];
        let nl = nonce_bytes.len().min(64);
        n[..nl].copy_from_slice(&nonce_bytes[..nl]);
        if nonce_bytes.len() > 64
            || keys
                .aead
                .open(keys.c2s(), &n[..nl], ad, &mut rest[ct.0 - off..ct.1 - off])
                .is_err()
        {
            return nak(packet, rx_time, state, fields, NtsRefusal::BadAuthenticator);
        }
    }

    let request_len = packet.len();
    let reply = respond(&mut packet[..HEADER_LEN], rx_time, tx_time, admission, state)?;
    let uid_len = fields.uid.1 - fields.uid.0;
    packet.copy_within(fields.uid.0..fields.uid.1, HEADER_LEN);
    let auth_at = HEADER_LEN + uid_len;
    if let ReplyKind::Kiss(_) = reply.kind {
        // Admission's KoD, to an authenticated request: the identifier lets the client match it.
        return Ok(NtsOutcome::Answered {
            reply: Reply {
                len: auth_at,
                kind: reply.kind,
            },
            cookies: 0,
        });
    }

    // The authenticator: its header, the nonce, then the fresh cookies sealed with S2C.
    let aead = keys.aead;
    let nonce_len = aead.nonce_len();
    let cookie_field = (4 + cookie_len(aead)).next_multiple_of(4);
    let fixed = 4 + 4 + nonce_len.next_multiple_of(4) + TAG_LEN;
    let room = request_len.saturating_sub(auth_at + fixed);
    let cookies = (1 + fields.placeholders).min(room / cookie_field);
    let plain_len = cookies * cookie_field;
    let ct_at = auth_at + 8 + nonce_len.next_multiple_of(4);
    let auth_len = 8 + nonce_len.next_multiple_of(4) + plain_len + TAG_LEN;
    if auth_at + auth_len > request_len {
        return Err(DropReason::MalformedExtension);
    }
    let field_len = auth_len as u16;
    packet[auth_at..auth_at + 2].copy_from_slice(&AUTHENTICATOR.to_be_bytes());
    packet[auth_at + 2..auth_at + 4].copy_from_slice(&field_len.to_be_bytes());
    packet[auth_at + 4..auth_at + 6].copy_from_slice(&(nonce_len as u16).to_be_bytes());
    packet[auth_at + 6..auth_at + 8].copy_from_slice(&((plain_len + TAG_LEN) as u16).to_be_bytes());
    let mut nonce_bytes = [0u8; 16];
    ctx.nonces.fill(&mut nonce_bytes);
    packet[auth_at + 8..ct_at].fill(0);
    packet[auth_at + 8..auth_at + 8 + nonce_len].copy_from_slice(&nonce_bytes[..nonce_len]);
    // The plaintext where the ciphertext goes (SIV-CMAC's seal moves it behind its IV).
    let mut at = ct_at;
    for _ in 0..cookies {
        packet[at..at + cookie_field].fill(0);
        packet[at..at + 2].copy_from_slice(&NTS_COOKIE.to_be_bytes());
        packet[at + 2..at + 4].copy_from_slice(&(cookie_field as u16).to_be_bytes());
        let mut cookie_nonce = [0u8; COOKIE_NONCE_LEN];
        ctx.nonces.fill(&mut cookie_nonce);
        ctx.keys
            .seal(
                &keys,
                ctx.unix_s,
                &cookie_nonce,
                &mut packet[at + 4..at + cookie_field],
            )
            .map_err(|_| DropReason::MalformedExtension)?;
        at += cookie_field;
    }
    let (ad, rest) = packet.split_at_mut(auth_at);
    let sealed = aead
        .seal(
            keys.s2c(),
            &nonce_bytes[..nonce_len],
            ad,
            &mut rest[ct_at - auth_at..],
            plain_len,
        )
        .map_err(|_| DropReason::MalformedExtension)?;
    debug_assert_eq!(sealed, plain_len + TAG_LEN);
    Ok(NtsOutcome::Answered {
        reply: Reply {
            len: auth_at + auth_len,
            kind: ReplyKind::Authenticated {
                synchronized: reply.kind == ReplyKind::Time,
            },
        },
        cookies,
    })
}

/// The NTS NAK: a KoD NTSN with the Unique Identifier, nothing authenticated.
fn nak(
    packet: &mut [u8],
    rx_time: NtpTimestamp,
    state: &ServerState,
    fields: Fields,
    why: NtsRefusal,
) -> Result<NtsOutcome, DropReason> {
    let reply = respond(
        &mut packet[..HEADER_LEN],
        rx_time,
        rx_time,
        Admission::Kiss(KissCode::Ntsn),
        state,
    )?;
    packet.copy_within(fields.uid.0..fields.uid.1, HEADER_LEN);
    Ok(NtsOutcome::Nak {
        reply: Reply {
            len: HEADER_LEN + fields.uid.1 - fields.uid.0,
            kind: reply.kind,
        },
        why,
    })
}

#[cfg(test)]
mod tests {
    use super::super::client;
    use super::super::cookie::{Rotation, SessionKeys};
    use super::*;
    use crate::proto::state::test_fixtures::synced;
    use crate::proto::wire::ntp::{Leap, Mode};

    const NOW: u64 = 1_780_000_000;

    fn header() -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        let mut p = Packet::new_unchecked(&mut h[..]);
        p.set_leap_version_mode(Leap::NoWarning, 4, Mode::Client);
        p.set_transmit_timestamp(NtpTimestamp(0x1122_3344_5566_7788));
        h
    }

    struct Setup {
        server_keys: CookieKeys,
        nonces: NonceSource,
        session: SessionKeys,
        cookie: Vec<u8>,
        uid: [u8; 32],
    }

    fn setup(aead: Aead) -> Setup {
        let mut server_keys = CookieKeys::new([42; 32], Rotation::default());
        let session = SessionKeys::new(aead, &[3; 32], &[4; 32]).unwrap();
        let mut cookie = vec![0u8; cookie_len(aead)];
        server_keys.seal(&session, NOW, &[5; 16], &mut cookie).unwrap();
        Setup {
            server_keys,
            nonces: NonceSource::new([6; 32]),
            session,
            cookie,
            uid: [0xab; 32],
        }
    }

    fn answer(s: &mut Setup, packet: &mut [u8]) -> Result<NtsOutcome, DropReason> {
        respond_nts(
            packet,
            NtpTimestamp(10 << 32),
            NtpTimestamp(11 << 32),
            Admission::Serve,
            &synced(),
            NtsContext {
                keys: &mut s.server_keys,
                nonces: &mut s.nonces,
                unix_s: NOW,
            },
        )
    }

    #[test]
    fn an_nts_request_gets_an_authenticated_reply_with_fresh_cookies_no_longer_than_it() {
        for aead in Aead::ALL {
            for placeholders in 0..3 {
                let mut s = setup(aead);
                let nonce = vec![9u8; aead.nonce_len()];
                let request = client::request(&header(), &s.uid, &s.cookie, placeholders, &s.session, &nonce);
                assert!(is_nts(&request));
                let mut packet = request.clone();
                let outcome = answer(&mut s, &mut packet).unwrap();
                let NtsOutcome::Answered { reply, cookies } = outcome else {
                    panic!("{outcome:?}");
                };
                assert_eq!(reply.kind, ReplyKind::Authenticated { synchronized: true });
                assert_eq!(cookies, 1 + placeholders);
                assert!(reply.len <= request.len(), "{} > {}", reply.len, request.len());
                let reply_bytes = &packet[..reply.len];
                let p = Packet::new_unchecked(reply_bytes);
                assert_eq!(p.mode(), Mode::Server);
                assert_eq!(p.origin_timestamp(), NtpTimestamp(0x1122_3344_5566_7788));
                assert_eq!(p.transmit_timestamp(), NtpTimestamp(11 << 32));
                let fresh = client::verify(reply_bytes, &s.uid, &s.session).unwrap();
                assert_eq!(fresh.len(), 1 + placeholders);
                assert_eq!(
                    client::verify_count(reply_bytes, &s.uid, &s.session),
                    Ok(1 + placeholders)
                );
                for c in fresh {
                    let mut c = client::trim_cookie(&c, aead).to_vec();
                    assert_eq!(s.server_keys.open(&mut c, NOW), Ok(s.session));
                }
                // Another client's identifier does not match.
                assert_eq!(
                    client::verify(reply_bytes, &[0xcd; 32], &s.session),
                    Err(client::ReplyError::WrongIdentifier)
                );
            }
        }
    }

    #[test]
    fn every_changed_byte_is_naked_dropped_or_outside_what_is_authenticated() {
        let mut s = setup(Aead::SivCmac256);
        let request = client::request(&header(), &s.uid, &s.cookie, 1, &s.session, &[9; 16]);
        let (mut naks, mut drops) = (0, 0);
        for i in 0..request.len() {
            let mut packet = request.clone();
            packet[i] ^= 0x01;
            match answer(&mut s, &mut packet) {
                Ok(NtsOutcome::Nak { reply, .. }) => {
                    naks += 1;
                    assert!(reply.len <= request.len());
                    assert_eq!(&packet[12..16], b"NTSN");
                    // The NAK echoes the identifier as received: a changed byte in it makes
                    // the NAK someone else's to the client.
                    let uid_field = HEADER_LEN + 4..HEADER_LEN + 4 + s.uid.len();
                    let expected = if uid_field.contains(&i) {
                        client::ReplyError::WrongIdentifier
                    } else {
                        client::ReplyError::Nak
                    };
                    assert_eq!(
                        client::verify(&packet[..reply.len], &s.uid, &s.session),
                        Err(expected),
                        "byte {i}"
                    );
                }
                Err(_) => drops += 1,
                Ok(NtsOutcome::Answered { reply, .. }) => {
                    // Only the header's fields the server does not read (poll, precision... the
                    // client's own timestamps but T1) change nothing it checks; they are in the
                    // authenticated data, so that cannot be: every answer here is a failure.
                    panic!("byte {i} changed and still answered as {reply:?}");
                }
            }
        }
        assert!(naks > 100 && drops > 0, "{naks} NAKs, {drops} drops");
    }

    #[test]
    fn expired_and_foreign_cookies_are_naked_and_broken_fields_dropped() {
        let mut s = setup(Aead::GcmSiv128);
        let nonce = [9u8; 12];
        let request = client::request(&header(), &s.uid, &s.cookie, 0, &s.session, &nonce);
        // Eight days later the cookie's key is past its grace.
        let mut packet = request.clone();
        let outcome = respond_nts(
            &mut packet,
            NtpTimestamp(10 << 32),
            NtpTimestamp(11 << 32),
            Admission::Serve,
            &synced(),
            NtsContext {
                keys: &mut s.server_keys,
                nonces: &mut s.nonces,
                unix_s: NOW + 8 * 86_400,
            },
        );
        assert!(
            matches!(
                outcome,
                Ok(NtsOutcome::Nak {
                    why: NtsRefusal::CookieExpired,
                    ..
                })
            ),
            "{outcome:?}"
        );
        // A server with another master key.
        let mut stranger = setup(Aead::GcmSiv128);
        stranger.server_keys = CookieKeys::new([1; 32], Rotation::default());
        let mut packet = request.clone();
        assert!(matches!(
            answer(&mut stranger, &mut packet),
            Ok(NtsOutcome::Nak {
                why: NtsRefusal::CookieInvalid,
                ..
            })
        ));
        // No authenticator; two cookies; a short identifier: dropped.
        let cut = request.len() - (4 + 4 + 12 + 16);
        assert_eq!(
            answer(&mut s, &mut request[..cut].to_vec()),
            Err(DropReason::MalformedExtension)
        );
        let mut two = header().to_vec();
        client_field(&mut two, UNIQUE_IDENTIFIER, &s.uid);
        client_field(&mut two, NTS_COOKIE, &s.cookie);
        client_field(&mut two, NTS_COOKIE, &s.cookie);
        two.extend_from_slice(&request[cut..]);
        assert_eq!(answer(&mut s, &mut two), Err(DropReason::MalformedExtension));
        let short_uid = client::request(&header(), &[1; 16], &s.cookie, 0, &s.session, &nonce);
        assert_eq!(
            answer(&mut s, &mut short_uid.clone()),
            Err(DropReason::MalformedExtension)
        );
        // Admission's KoD to an NTS request: the identifier, nothing else.
        let mut packet = request.clone();
        let outcome = respond_nts(
            &mut packet,
            NtpTimestamp(10 << 32),
            NtpTimestamp(11 << 32),
            Admission::Kiss(KissCode::Rate),
            &synced(),
            NtsContext {
                keys: &mut s.server_keys,
                nonces: &mut s.nonces,
                unix_s: NOW,
            },
        );
        let Ok(NtsOutcome::Answered { reply, cookies: 0 }) = outcome else {
            panic!("{outcome:?}");
        };
        assert_eq!(reply.len, HEADER_LEN + 36);
        assert_eq!(&packet[12..16], b"RATE");
    }

    fn client_field(out: &mut Vec<u8>, t: u16, value: &[u8]) {
        let len = (4 + value.len()).next_multiple_of(4);
        out.extend_from_slice(&t.to_be_bytes());
        out.extend_from_slice(&(len as u16).to_be_bytes());
        out.extend_from_slice(value);
        out.resize(out.len() + len - 4 - value.len(), 0);
    }
}

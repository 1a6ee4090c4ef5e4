//! One NTS association as a client keeps it (RFC 8915 section 5.7): the session keys from
//! NTS-KE, the cookie jar, and the Unique Identifier of the request in flight. Each request
//! spends one cookie and asks, with placeholders, for as many fresh ones as bring the jar back
//! to [`COOKIES_KEPT`]; a reply is used only when it carries that identifier and opens with the
//! S2C key. When the jar is empty, or the server NAKs repeatedly (its cookie keys moved on),
//! the association needs a new NTS-KE session. The randomness (identifiers, nonces) comes from
//! the caller: this module does no I/O.

use std::collections::VecDeque;

use super::client::{self, ReplyError};
use super::cookie::SessionKeys;
use super::packet::MIN_UNIQUE_ID;
use crate::proto::wire::ntp::HEADER_LEN;

/// Cookies a client keeps: the eight one NTS-KE session gives (RFC 8915 section 4).
pub const COOKIES_KEPT: usize = 8;
/// NAKs in a row after which the cookies are thought stale and NTS-KE is run again.
pub const NAKS_BEFORE_REKEY: u32 = 2;
/// The Unique Identifier's length: the least RFC 8915 allows, 32 random bytes.
pub const UID_LEN: usize = MIN_UNIQUE_ID;

/// Why a packet from an NTS source was rejected (each is counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// No request is in flight (a duplicate, or a reply to an older request).
    NotExpected,
    /// The Unique Identifier is missing or not our request's.
    WrongIdentifier,
    /// No authenticator, or it did not open with the S2C key (forged or damaged).
    NotAuthenticated,
    /// The extension fields cannot be read.
    Malformed,
    /// A Kiss-o'-Death NTSN for our request: the server could not open our cookie.
    Nak,
}

impl Rejected {
    pub const fn label(self) -> &'static str {
        match self {
            Rejected::NotExpected => "no request in flight",
            Rejected::WrongIdentifier => "wrong unique identifier",
            Rejected::NotAuthenticated => "not authenticated",
            Rejected::Malformed => "malformed",
            Rejected::Nak => "NTS NAK",
        }
    }
}

/// What an NTS association did, for the status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCounters {
    pub authenticated: u64,
    /// Replies rejected, NAKs excluded.
    pub rejected: u64,
    pub naks: u64,
}

/// One association's NTS state.
#[derive(Debug, Clone)]
pub struct ClientSession {
    keys: SessionKeys,
    cookies: VecDeque<Vec<u8>>,
    /// The identifier of the request in flight; a reply consumes it, so a replayed copy is not
    /// accepted twice.
    outstanding: Option<[u8; UID_LEN]>,
    naks_in_a_row: u32,
    counters: SessionCounters,
}

impl ClientSession {
    /// A session from NTS-KE: its keys and the cookies it gave (at most [`COOKIES_KEPT`] kept).
    pub fn new(keys: SessionKeys, cookies: Vec<Vec<u8>>) -> ClientSession {
        let mut jar: VecDeque<Vec<u8>> = cookies.into_iter().filter(|c| !c.is_empty()).collect();
        jar.truncate(COOKIES_KEPT);
        ClientSession {
            keys,
            cookies: jar,
            outstanding: None,
            naks_in_a_row: 0,
            counters: SessionCounters::default(),
        }
    }

    /// The AEAD NTS-KE chose (its nonce length is the one [`ClientSession::request`] takes).
    pub fn aead(&self) -> super::Aead {
        self.keys.aead
    }

    pub fn cookies(&self) -> usize {
        self.cookies.len()
    }

    pub fn counters(&self) -> SessionCounters {
        self.counters
    }

    /// Whether a new NTS-KE session is needed: no cookie left, or the server keeps NAKing.
    pub fn needs_key_exchange(&self) -> bool {
        self.cookies.is_empty() || self.naks_in_a_row >= NAKS_BEFORE_REKEY
    }

    /// The NTS request carrying `header`: the oldest cookie spent, placeholders for the rest of
    /// the jar, the authenticator sealed with `nonce` (`aead.nonce_len()` random bytes). None
    /// when no cookie is left. `uid` (random) becomes the identifier a reply must carry.
    pub fn request(
        &mut self,
        header: &[u8; HEADER_LEN],
        uid: [u8; UID_LEN],
        nonce: &[u8],
    ) -> Option<Vec<u8>> {
        let held = self.cookies.len();
        let cookie = self.cookies.pop_front()?;
        let placeholders = COOKIES_KEPT.saturating_sub(held);
        let mut buf = vec![0u8; HEADER_LEN + 64 + (placeholders + 1) * (cookie.len() + 8) + 64];
        let Some(len) =
            client::write_request(&mut buf, header, &uid, &cookie, placeholders, &self.keys, nonce)
        else {
            // Only a nonce longer than any AEAD's: nothing to send, the cookie is kept.
            self.cookies.push_front(cookie);
            return None;
        };
        buf.truncate(len);
        self.outstanding = Some(uid);
        Some(buf)
    }

    /// Checks a reply: Ok with its NTP header (authenticated as associated data) when it answers
    /// the request in flight and opens with the S2C key; its fresh cookies go into the jar.
    pub fn receive(&mut self, reply: &[u8]) -> Result<[u8; HEADER_LEN], Rejected> {
        let result = self.check(reply);
        match result {
            Ok(_) => self.counters.authenticated += 1,
            Err(Rejected::Nak) => self.counters.naks += 1,
            Err(_) => self.counters.rejected += 1,
        }
        result
    }

    fn check(&mut self, reply: &[u8]) -> Result<[u8; HEADER_LEN], Rejected> {
        let uid = self.outstanding.ok_or(Rejected::NotExpected)?;
        match client::verify(reply, &uid, &self.keys) {
            Ok(fresh) => {
                self.outstanding = None;
                self.naks_in_a_row = 0;
                for cookie in fresh.into_iter().filter(|c| !c.is_empty()) {
                    if self.cookies.len() < COOKIES_KEPT {
                        self.cookies.push_back(cookie);
                    }
                }
                let mut header = [0u8; HEADER_LEN];
                header.copy_from_slice(&reply[..HEADER_LEN]);
                Ok(header)
            }
            Err(ReplyError::Nak) => {
                self.outstanding = None;
                self.naks_in_a_row += 1;
                Err(Rejected::Nak)
            }
            Err(ReplyError::WrongIdentifier) => Err(Rejected::WrongIdentifier),
            Err(ReplyError::NotAuthenticated) => Err(Rejected::NotAuthenticated),
            Err(ReplyError::Malformed) => Err(Rejected::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::nts::aead::Aead;
    use crate::proto::nts::cookie::{cookie_len, CookieKeys, Rotation};
    use crate::proto::nts::nonce::NonceSource;
    use crate::proto::nts::packet::{respond_nts, NtsContext, NtsOutcome};
    use crate::proto::respond::Admission;
    use crate::proto::state::test_fixtures::synced;
    use crate::proto::wire::NtpTimestamp;

    const NOW: u64 = 1_780_000_000;

    struct Server {
        keys: CookieKeys,
        nonces: NonceSource,
    }

    fn server() -> Server {
        Server {
            keys: CookieKeys::new([7; 32], Rotation::default()),
            nonces: NonceSource::new([9; 32]),
        }
    }

    fn session(srv: &mut Server, aead: Aead, n: usize) -> ClientSession {
        let keys = SessionKeys::new(aead, &[1; 32], &[2; 32]).unwrap();
        let cookies = (0..n)
            .map(|i| {
                let mut c = vec![0u8; cookie_len(aead)];
                srv.keys.seal(&keys, NOW, &[i as u8; 16], &mut c).unwrap();
                c
            })
            .collect();
        ClientSession::new(keys, cookies)
    }

    fn header(xmt: u64) -> [u8; HEADER_LEN] {
        crate::proto::control::packet::client_request(6, NtpTimestamp(xmt))
    }

    /// The answer strata's own NTS server gives to `request` (a reply or a NAK).
    fn answer(srv: &mut Server, request: &[u8]) -> Vec<u8> {
        let mut packet = request.to_vec();
        let outcome = respond_nts(
            &mut packet,
            NtpTimestamp(10 << 32),
            NtpTimestamp(11 << 32),
            Admission::Serve,
            &synced(),
            NtsContext {
                keys: &mut srv.keys,
                nonces: &mut srv.nonces,
                unix_s: NOW,
            },
        );
        let len = match outcome {
            Ok(NtsOutcome::Answered { reply, .. }) | Ok(NtsOutcome::Nak { reply, .. }) => reply.len,
            Err(e) => panic!("no answer: {e:?}"),
        };
        packet.truncate(len);
        packet
    }

    #[test]
    fn cookies_are_spent_and_refilled_to_eight() {
        for aead in Aead::ALL {
            let mut srv = server();
            let mut s = session(&mut srv, aead, 3);
            assert_eq!(s.cookies(), 3);
            let req = s
                .request(&header(5), [3; UID_LEN], &[4; 16][..aead.nonce_len()])
                .unwrap();
            assert_eq!(s.cookies(), 2);
            let reply = answer(&mut srv, &req);
            let h = s.receive(&reply).unwrap();
            assert_eq!(h[..], reply[..HEADER_LEN]);
            // One for the cookie spent, one per placeholder: the jar is full again.
            assert_eq!(s.cookies(), COOKIES_KEPT, "{aead:?}");
            // A full jar asks for one cookie only, and stays full.
            let req = s
                .request(&header(6), [5; UID_LEN], &[6; 16][..aead.nonce_len()])
                .unwrap();
            s.receive(&answer(&mut srv, &req)).unwrap();
            assert_eq!(s.cookies(), COOKIES_KEPT);
            assert_eq!(s.counters().authenticated, 2);
        }
    }

    #[test]
    fn a_reply_is_accepted_once_and_only_for_its_request() {
        let mut srv = server();
        let mut s = session(&mut srv, Aead::SivCmac256, 8);
        let req = s.request(&header(5), [3; UID_LEN], &[4; 16]).unwrap();
        let reply = answer(&mut srv, &req);
        assert!(s.receive(&reply).is_ok());
        assert_eq!(s.receive(&reply), Err(Rejected::NotExpected));
        // A reply to an earlier request no longer matches the one in flight.
        let first = s.request(&header(6), [6; UID_LEN], &[4; 16]).unwrap();
        let late = answer(&mut srv, &first);
        let _second = s.request(&header(7), [7; UID_LEN], &[4; 16]).unwrap();
        assert_eq!(s.receive(&late), Err(Rejected::WrongIdentifier));
        assert_eq!(s.counters().rejected, 2);
    }

    #[test]
    fn every_flipped_bit_of_a_reply_is_rejected() {
        let mut srv = server();
        let mut s = session(&mut srv, Aead::GcmSiv128, 8);
        let req = s.request(&header(5), [3; UID_LEN], &[4; 12]).unwrap();
        let reply = answer(&mut srv, &req);
        for i in 0..reply.len() * 8 {
            let mut bad = reply.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let mut probe = s.clone();
            assert!(probe.receive(&bad).is_err(), "bit {i} flipped was accepted");
        }
        assert!(s.receive(&reply).is_ok());
    }

    proptest::proptest! {
        /// Arbitrary bytes are never accepted, nor a genuine reply with arbitrary changes
        /// unless it still hands on exactly the header the server sealed; nothing panics.
        #[test]
        fn changed_or_arbitrary_replies_are_rejected(
            raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            changes in proptest::collection::vec((0usize..1024, 1u8..=255), 1..6),
            cut in proptest::option::of(0usize..1024),
            gcm: bool,
        ) {
            let aead = if gcm { Aead::GcmSiv128 } else { Aead::SivCmac256 };
            let mut srv = server();
            let mut s = session(&mut srv, aead, 4);
            let req = s.request(&header(5), [3; UID_LEN], &[4; 16][..aead.nonce_len()]).unwrap();
            proptest::prop_assert!(s.clone().receive(&raw).is_err());
            let reply = answer(&mut srv, &req);
            let mut changed = reply.clone();
            for (at, xor) in changes {
                let at = at % changed.len();
                changed[at] ^= xor;
            }
            if let Some(cut) = cut {
                changed.truncate(cut % (changed.len() + 1));
            }
            if let Ok(h) = s.receive(&changed) {
                proptest::prop_assert_eq!(&h[..], &reply[..HEADER_LEN]);
            }
            proptest::prop_assert!(s.cookies() <= COOKIES_KEPT);
        }
    }

    #[test]
    fn an_empty_jar_or_naks_in_a_row_ask_for_nts_ke() {
        let mut srv = server();
        let mut s = session(&mut srv, Aead::SivCmac256, 1);
        assert!(!s.needs_key_exchange());
        let req = s.request(&header(5), [3; UID_LEN], &[4; 16]).unwrap();
        assert!(s.needs_key_exchange());
        assert!(s.request(&header(6), [3; UID_LEN], &[4; 16]).is_none());
        // The reply refills the jar.
        s.receive(&answer(&mut srv, &req)).unwrap();
        assert!(!s.needs_key_exchange());

        // A server with other cookie keys NAKs; twice in a row means NTS-KE again.
        let mut other = Server {
            keys: CookieKeys::new([8; 32], Rotation::default()),
            nonces: NonceSource::new([9; 32]),
        };
        for n in 1..=NAKS_BEFORE_REKEY {
            let req = s
                .request(&header(7 + n as u64), [n as u8; UID_LEN], &[4; 16])
                .unwrap();
            assert_eq!(s.receive(&answer(&mut other, &req)), Err(Rejected::Nak));
        }
        assert!(s.needs_key_exchange());
        assert_eq!(s.counters().naks, NAKS_BEFORE_REKEY as u64);
    }
}

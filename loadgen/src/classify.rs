//! What a reply says, judged on its own bytes: valid time, a Kiss-o'-Death, or invalid with a
//! reason. Matching it to its request (origin timestamp, flow) is the matcher's part; reading
//! the header is strata's (`strata::proto::wire::ntp`).

use strata::proto::respond::KissCode;
use strata::proto::wire::ntp::{Leap, Mode, Packet};
use strata::proto::wire::NtpTimestamp;

/// Why a reply is not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Invalid {
    /// Shorter than an NTP header.
    Malformed,
    /// Not from the target's address and port.
    WrongSource,
    /// The origin timestamp names no request of this run (corrupted, or another client's).
    UnknownOrigin,
    /// The origin names a request that was sent from another flow (address/port).
    WrongClient,
    /// Not mode 4 (server).
    BadMode,
    /// Another version than the request's.
    BadVersion,
    /// Stratum 0 without a kiss code (four ASCII letters or digits) in the reference ID.
    Stratum0NotKiss,
    /// Leap indicator 3 or stratum above 15: the server says it has no time to give.
    Unsynchronized,
    /// A zero receive or transmit timestamp.
    ZeroTimestamp,
    /// The transmit timestamp is before the receive timestamp.
    ReversedTimestamps,
    /// An NTS request's reply that does not verify (its identifier or authenticator).
    NotAuthenticated,
}

impl Invalid {
    pub const COUNT: usize = 11;
    pub const ALL: [Invalid; Invalid::COUNT] = [
        Invalid::Malformed,
        Invalid::WrongSource,
        Invalid::UnknownOrigin,
        Invalid::WrongClient,
        Invalid::BadMode,
        Invalid::BadVersion,
        Invalid::Stratum0NotKiss,
        Invalid::Unsynchronized,
        Invalid::ZeroTimestamp,
        Invalid::ReversedTimestamps,
        Invalid::NotAuthenticated,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            Invalid::Malformed => "malformed",
            Invalid::WrongSource => "wrong_source",
            Invalid::UnknownOrigin => "unknown_origin",
            Invalid::WrongClient => "wrong_client",
            Invalid::BadMode => "bad_mode",
            Invalid::BadVersion => "bad_version",
            Invalid::Stratum0NotKiss => "stratum0_not_kiss",
            Invalid::Unsynchronized => "unsynchronized",
            Invalid::ZeroTimestamp => "zero_timestamp",
            Invalid::ReversedTimestamps => "reversed_timestamps",
            Invalid::NotAuthenticated => "not_authenticated",
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }
}

/// The kiss codes counted apart; any other code counts as "other".
pub const KISS_KINDS: usize = KissCode::ALL.len() + 1;

/// The label of a kiss-code slot, as `[RATE, DENY, RSTR, NTSN, other]`.
pub fn kiss_label(index: usize) -> &'static str {
    match KissCode::ALL.get(index) {
        Some(KissCode::Rate) => "RATE",
        Some(KissCode::Deny) => "DENY",
        Some(KissCode::Rstr) => "RSTR",
        Some(KissCode::Ntsn) => "NTSN",
        None => "other",
    }
}

fn kiss_index(code: [u8; 4]) -> usize {
    KissCode::ALL
        .iter()
        .position(|k| k.code() == code)
        .unwrap_or(KissCode::ALL.len())
}

/// What a matched reply says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The server's time: T2 (its receive) and T3 (its transmit).
    Valid {
        t2: NtpTimestamp,
        t3: NtpTimestamp,
    },
    /// A Kiss-o'-Death; the slot of its code (see [`kiss_label`]).
    Kiss(usize),
    Invalid(Invalid),
}

/// The origin timestamp of a reply, which names the request it answers.
#[inline]
pub fn origin(payload: &[u8]) -> Result<NtpTimestamp, Invalid> {
    Packet::new_checked(payload)
        .map(|p| p.origin_timestamp())
        .map_err(|_| Invalid::Malformed)
}

/// Judges a reply (at least a header long) to a request of NTP version `version`.
#[inline]
pub fn judge(payload: &[u8], version: u8) -> Verdict {
    let Ok(p) = Packet::new_checked(payload) else {
        return Verdict::Invalid(Invalid::Malformed);
    };
    if p.mode() != Mode::Server {
        return Verdict::Invalid(Invalid::BadMode);
    }
    if p.version() != version {
        return Verdict::Invalid(Invalid::BadVersion);
    }
    if p.stratum() == 0 {
        // RFC 5905 7.4: stratum 0 is a kiss, its code four ASCII characters in the refid.
        let code = p.reference_id();
        return if code.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) {
            Verdict::Kiss(kiss_index(code))
        } else {
            Verdict::Invalid(Invalid::Stratum0NotKiss)
        };
    }
    if p.leap() == Leap::Unsynchronized || p.stratum() > 15 {
        return Verdict::Invalid(Invalid::Unsynchronized);
    }
    let (t2, t3) = (p.receive_timestamp(), p.transmit_timestamp());
    if t2 == NtpTimestamp::ZERO || t3 == NtpTimestamp::ZERO {
        return Verdict::Invalid(Invalid::ZeroTimestamp);
    }
    if t3.diff_nanos(t2) < 0 {
        return Verdict::Invalid(Invalid::ReversedTimestamps);
    }
    Verdict::Valid { t2, t3 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{RequestKind, RequestTemplate};
    use strata::proto::respond::{respond, Admission};
    use strata::proto::state::ServerState;
    use strata_test_support::{synced, unsynchronized};

    /// A reply from strata's own respond() to a request carrying `cookie`.
    fn reply(admission: Admission, state: &ServerState) -> [u8; 48] {
        let mut buf = [0u8; 48];
        RequestTemplate::new(RequestKind::Basic).write(&mut buf, NtpTimestamp(0xabcd));
        let t = NtpTimestamp(0xe000_0000_0000_0000);
        respond(&mut buf, t, t.add_nanos(1_000), admission, state).unwrap();
        buf
    }

    #[test]
    fn a_served_reply_is_valid_and_names_its_request() {
        let r = reply(Admission::Serve, &synced());
        assert_eq!(origin(&r), Ok(NtpTimestamp(0xabcd)));
        match judge(&r, 4) {
            Verdict::Valid { t2, t3 } => assert!((999..=1_000).contains(&t3.diff_nanos(t2))),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn kisses_are_recognised_with_their_code() {
        for (i, code) in KissCode::ALL.into_iter().enumerate() {
            let r = reply(Admission::Kiss(code), &synced());
            assert_eq!(judge(&r, 4), Verdict::Kiss(i));
            assert_eq!(kiss_label(i).as_bytes(), &code.code());
        }
        let mut r = reply(Admission::Kiss(KissCode::Rate), &synced());
        r[12..16].copy_from_slice(b"NKE9");
        assert_eq!(judge(&r, 4), Verdict::Kiss(KissCode::ALL.len()));
        assert_eq!(kiss_label(KissCode::ALL.len()), "other");
    }

    #[test]
    fn every_flaw_has_its_reason() {
        let good = reply(Admission::Serve, &synced());
        assert_eq!(origin(&good[..47]), Err(Invalid::Malformed));
        assert_eq!(judge(&good[..47], 4), Verdict::Invalid(Invalid::Malformed));
        type Flaw = fn(&mut [u8; 48]);
        let cases: [(Flaw, Invalid); 6] = [
            (|r| r[0] = (r[0] & !7) | 3, Invalid::BadMode),
            (|r| r[0] = (r[0] & !0x38) | (3 << 3), Invalid::BadVersion),
            (
                |r| {
                    r[1] = 0;
                    r[12..16].copy_from_slice(&[127, 0, 0, 1]);
                },
                Invalid::Stratum0NotKiss,
            ),
            (|r| r[1] = 16, Invalid::Unsynchronized),
            (|r| r[32..40].fill(0), Invalid::ZeroTimestamp),
            (
                |r| {
                    let t2: [u8; 8] = r[32..40].try_into().unwrap();
                    r[40..48].copy_from_slice(&t2);
                    r[40] -= 1;
                },
                Invalid::ReversedTimestamps,
            ),
        ];
        for (flaw, reason) in cases {
            let mut r = good;
            flaw(&mut r);
            assert_eq!(judge(&r, 4), Verdict::Invalid(reason), "{reason:?}");
        }
        let unsync = reply(Admission::Serve, &unsynchronized());
        assert_eq!(judge(&unsync, 4), Verdict::Invalid(Invalid::Unsynchronized));
    }

    #[test]
    fn labels_are_distinct_and_indices_dense() {
        for (i, r) in Invalid::ALL.into_iter().enumerate() {
            assert_eq!(r.index(), i);
            assert_eq!(Invalid::ALL.iter().filter(|o| o.label() == r.label()).count(), 1);
        }
    }
}

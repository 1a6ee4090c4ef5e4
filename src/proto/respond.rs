//! THE pure function: a request in a buffer becomes its reply in the same buffer, or a drop with a
//! reason. No I/O, no allocation, no locks; every path (AF_XDP, sockets, tests, fuzzing) calls it.
//!
//! The reply is written in place over the request, so a responder needs no second buffer and a
//! reply can never be longer than its request (no amplification). It reads no clock: the caller
//! gives T2 and T3. Callers that send in batches give a provisional T3 and re-stamp it with
//! [`stamp_transmit`] just before the batch goes out (see `crate::sys::pipeline`).

use crate::proto::state::{ServerState, UnsyncPolicy};
use crate::proto::wire::extension::Trailer;
use crate::proto::wire::ntp::{Leap, Mode, Packet, HEADER_LEN};
use crate::proto::wire::{NtpShort, NtpTimestamp};

/// Whether the caller's admission checks (ACL, rate limiter) let this request be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Serve,
    /// Answer with a Kiss-o'-Death carrying this code instead of the time.
    Kiss(KissCode),
}

/// The Kiss-o'-Death codes a server sends (RFC 5905 section 7.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KissCode {
    /// Rate exceeded: the client must back off.
    Rate,
    /// Access denied by policy.
    Deny,
    /// Access restricted (for example by the ACL for that address).
    Rstr,
    /// NTS negative acknowledgment: the cookie or the authentication failed (RFC 8915 5.7).
    Ntsn,
}

impl KissCode {
    pub const ALL: [KissCode; 4] = [KissCode::Rate, KissCode::Deny, KissCode::Rstr, KissCode::Ntsn];

    pub const fn code(self) -> [u8; 4] {
        match self {
            KissCode::Rate => *b"RATE",
            KissCode::Deny => *b"DENY",
            KissCode::Rstr => *b"RSTR",
            KissCode::Ntsn => *b"NTSN",
        }
    }
}

/// Why a request got no reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than the 48-byte header.
    TooShort,
    /// Version 0 or above 4.
    BadVersion,
    /// Mode 0 from an NTPv2+ sender (NTPv1 mode 0 is a client request).
    ReservedMode,
    /// Modes 1 and 2: symmetric associations belong to the control thread.
    Symmetric,
    /// Mode 4: a server's reply is not a request.
    ServerMode,
    /// Mode 5: broadcast.
    Broadcast,
    /// Mode 6: NTP control messages (ntpq); not served, they amplify.
    Control,
    /// Mode 7: private (ntpdc, monlist); never served.
    Private,
    /// Extension fields or MAC that do not parse.
    MalformedExtension,
    /// Not synchronized and configured to stay silent.
    Unsynchronized,
    /// The access list denies the client (admission; `respond()` itself never says this).
    Denied,
    /// Over the client's rate limit (admission; `respond()` itself never says this).
    RateLimited,
    /// Over the server's total cap (admission; `respond()` itself never says this).
    OverQuota,
    /// Not NTS-protected, and the server answers only NTS (`require_nts`; the pipeline says
    /// this, `respond()` never does).
    NtsRequired,
    /// A MAC that does not match the packet under its key (`respond_mac` says this).
    BadMac,
}

impl DropReason {
    pub const ALL: [DropReason; 15] = [
        DropReason::TooShort,
        DropReason::BadVersion,
        DropReason::ReservedMode,
        DropReason::Symmetric,
        DropReason::ServerMode,
        DropReason::Broadcast,
        DropReason::Control,
        DropReason::Private,
        DropReason::MalformedExtension,
        DropReason::Unsynchronized,
        DropReason::Denied,
        DropReason::RateLimited,
        DropReason::OverQuota,
        DropReason::NtsRequired,
        DropReason::BadMac,
    ];

    /// A stable, low-cardinality label for logs and metrics.
    pub const fn label(self) -> &'static str {
        match self {
            DropReason::TooShort => "too_short",
            DropReason::BadVersion => "bad_version",
            DropReason::ReservedMode => "reserved_mode",
            DropReason::Symmetric => "symmetric_mode",
            DropReason::ServerMode => "server_mode",
            DropReason::Broadcast => "broadcast_mode",
            DropReason::Control => "control_mode",
            DropReason::Private => "private_mode",
            DropReason::MalformedExtension => "malformed_extension",
            DropReason::Unsynchronized => "unsynchronized",
            DropReason::Denied => "denied",
            DropReason::RateLimited => "rate_limited",
            DropReason::OverQuota => "over_quota",
            DropReason::NtsRequired => "nts_required",
            DropReason::BadMac => "bad_mac",
        }
    }

    /// Position in [`DropReason::ALL`], for counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// What kind of reply was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    /// The time, from a synchronized server.
    Time,
    /// The time marked unsynchronized (LI=3, stratum 16).
    Unsynchronized,
    /// The time authenticated with NTS (from a synchronized server, or marked unsynchronized):
    /// its T3 is sealed in and must not be re-stamped.
    Authenticated {
        synchronized: bool,
    },
    /// The time in interleaved mode (`crate::proto::interleave`): its transmit stamp is the
    /// previous reply's, final, and must not be re-stamped.
    Interleaved {
        synchronized: bool,
    },
    /// The time with a crypto-NAK (RFC 5905 section 7.3, `crate::proto::auth`): the request's
    /// MAC named a key this server does not have. Unauthenticated: re-stamping is harmless,
    /// but it is counted on its own.
    CryptoNak {
        synchronized: bool,
    },
    Kiss(KissCode),
}

impl ReplyKind {
    /// Whether T3 may be written again just before sending: not in a KoD (it carries no time
    /// of ours) nor in an authenticated reply (it would break the seal).
    pub fn restampable(self) -> bool {
        matches!(
            self,
            ReplyKind::Time | ReplyKind::Unsynchronized | ReplyKind::CryptoNak { .. }
        )
    }
}

/// A reply now occupying the first `len` bytes of the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub len: usize,
    pub kind: ReplyKind,
}

/// RFC 5905's PHI: a clock's dispersion grows 15 µs per second since it was last set.
const DISPERSION_PPM: i64 = 15;

/// Answers the NTP request in `packet` (the whole UDP payload), writing the reply over it.
///
/// `rx_time` is T2, the request's receive time, and `tx_time` the transmit time T3 to write; a
/// caller that sends later re-stamps T3 with [`stamp_transmit`].
#[inline]
pub fn respond(
    packet: &mut [u8],
    rx_time: NtpTimestamp,
    tx_time: NtpTimestamp,
    admission: Admission,
    state: &ServerState,
) -> Result<Reply, DropReason> {
    let request = check_request(packet)?;

    let kind = match admission {
        Admission::Kiss(code) => ReplyKind::Kiss(code),
        Admission::Serve if state.synchronized => ReplyKind::Time,
        Admission::Serve => match state.unsync_policy {
            UnsyncPolicy::Answer => ReplyKind::Unsynchronized,
            UnsyncPolicy::Drop => return Err(DropReason::Unsynchronized),
        },
    };

    let mut reply = Packet::new_unchecked(&mut packet[..HEADER_LEN]);
    reply.set_origin_timestamp(request.transmit);
    reply.set_poll(request.poll);
    match kind {
        ReplyKind::Kiss(code) => {
            // A kiss tells the client nothing about our clock: every timestamp is its own.
            reply.set_leap_version_mode(Leap::Unsynchronized, request.version, Mode::Server);
            reply.set_stratum(0);
            reply.set_precision(state.precision);
            reply.set_root_delay(NtpShort::ZERO);
            reply.set_root_dispersion(NtpShort::ZERO);
            reply.set_reference_id(code.code());
            reply.set_reference_timestamp(NtpTimestamp::ZERO);
            reply.set_receive_timestamp(request.transmit);
            reply.set_transmit_timestamp(request.transmit);
        }
        ReplyKind::Time
        | ReplyKind::Unsynchronized
        | ReplyKind::Authenticated { .. }
        | ReplyKind::Interleaved { .. }
        | ReplyKind::CryptoNak { .. } => {
            let synchronized = kind == ReplyKind::Time;
            let (leap, stratum) = if synchronized {
                (state.leap, state.stratum)
            } else {
                (Leap::Unsynchronized, 16)
            };
            reply.set_leap_version_mode(leap, request.version, Mode::Server);
            reply.set_stratum(stratum);
            reply.set_precision(state.precision);
            reply.set_root_delay(state.root_delay);
            reply.set_root_dispersion(dispersion_at(state, rx_time));
            reply.set_reference_id(state.reference_id);
            reply.set_reference_timestamp(state.reference_time);
            reply.set_receive_timestamp(rx_time);
            reply.set_transmit_timestamp(tx_time);
        }
    }
    Ok(Reply {
        len: HEADER_LEN,
        kind,
    })
}

/// Re-stamps T3 in a reply that `respond()` wrote, for callers that read the clock once more just
/// before sending. Kiss-o'-Death replies must not be re-stamped (they carry no time of ours).
#[inline]
pub fn stamp_transmit(reply: &mut [u8], transmit: NtpTimestamp) {
    Packet::new_unchecked(&mut reply[..HEADER_LEN]).set_transmit_timestamp(transmit);
}

/// The fields of a request that survive until the reply is written.
struct Request {
    version: u8,
    poll: i8,
    transmit: NtpTimestamp,
}

/// The header's rules alone (length, version, mode), for a caller that checks the extension
/// fields itself (NTS).
pub(crate) fn check_header(packet: &[u8]) -> Result<(), DropReason> {
    check_request(&packet[..packet.len().min(HEADER_LEN)]).map(|_| ())
}

/// Applies every rule that decides whether a request is answered at all.
#[inline]
fn check_request(packet: &[u8]) -> Result<Request, DropReason> {
    // Mode 6 messages are shorter than an NTP header (12 bytes and their data): known by their
    // mode alone, so that they reach the control thread instead of counting as too short.
    if packet.first().is_some_and(|b| b & 7 == Mode::Control as u8) {
        return Err(DropReason::Control);
    }
    let request = Packet::new_checked(packet).map_err(|_| DropReason::TooShort)?;
    let version = request.version();
    if !(1..=4).contains(&version) {
        return Err(DropReason::BadVersion);
    }
    match request.mode() {
        Mode::Client => {}
        // NTPv1 had no mode field; its client requests carry zero there (chrony answers them).
        Mode::Reserved if version == 1 => {}
        Mode::Reserved => return Err(DropReason::ReservedMode),
        Mode::SymmetricActive | Mode::SymmetricPassive => return Err(DropReason::Symmetric),
        Mode::Server => return Err(DropReason::ServerMode),
        Mode::Broadcast => return Err(DropReason::Broadcast),
        Mode::Control => return Err(DropReason::Control),
        Mode::Private => return Err(DropReason::Private),
    }
    if packet.len() > HEADER_LEN {
        // Checked so that garbage is never answered; no field is echoed (none is known yet).
        Trailer::parse(version, request.trailer()).map_err(|_| DropReason::MalformedExtension)?;
    }
    Ok(Request {
        version,
        poll: request.poll(),
        transmit: request.transmit_timestamp(),
    })
}

/// Root dispersion grown by PHI over the time since the reference time.
#[inline]
fn dispersion_at(state: &ServerState, now: NtpTimestamp) -> NtpShort {
    if state.reference_time == NtpTimestamp::ZERO {
        return state.root_dispersion;
    }
    let elapsed = now.diff_nanos(state.reference_time).max(0);
    let growth = NtpShort::from_nanos((elapsed / 1_000_000 * DISPERSION_PPM) as u64);
    state.root_dispersion.saturating_add(growth)
}

#[cfg(test)]
mod tests;

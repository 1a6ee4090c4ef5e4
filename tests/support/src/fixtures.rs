//! The server states the tests answer with.
//!
//! strata's unit tests keep their own copy of [`synced`] (`strata::proto::state::test_fixtures`,
//! `#[cfg(test)]`), since they cannot use this crate; the two are equal.

use strata::proto::state::{ServerState, UnsyncPolicy};
use strata::proto::wire::ntp::Leap;
use strata::proto::wire::{NtpShort, NtpTimestamp};

/// The reference time of [`synced`].
pub const REFERENCE_TIME: NtpTimestamp = NtpTimestamp(0xe98a_1b20_0000_0000);

/// A synchronized stratum-2 server (reference ID 198.18.0.1, precision -24, root delay and
/// dispersion 1/256 and 1/128 s) that answers while unsynchronized.
pub fn synced() -> ServerState {
    ServerState {
        synchronized: true,
        leap: Leap::NoWarning,
        stratum: 2,
        precision: -24,
        root_delay: NtpShort(0x0000_0100),
        root_dispersion: NtpShort(0x0000_0200),
        reference_id: [198, 18, 0, 1],
        reference_time: REFERENCE_TIME,
        unsync_policy: UnsyncPolicy::Answer,
    }
}

/// A server that has never been synchronized (LI 3, stratum 16) and answers all the same.
pub fn unsynchronized() -> ServerState {
    ServerState::unsynchronized(-24, UnsyncPolicy::Answer)
}

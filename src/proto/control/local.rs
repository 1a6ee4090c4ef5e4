//! The local reference: serving the system clock as it is, at a configured stratum, like chrony's
//! `local stratum N`. Until upstream discipline exists this is the only synchronized state.
//!
//! Everything here is pure: the state follows from the configuration, the measured precision and
//! the time "now", so it is tested without threads or clocks.

use crate::proto::clock::ClockParams;
use crate::proto::state::{Published, ServerState, UnsyncPolicy};
use crate::proto::wire::ntp::Leap;
use crate::proto::wire::{NtpShort, NtpTimestamp};

/// The reference ID of the local clock: ASCII "LOCL", as chrony sends for its local reference.
pub const LOCAL_REFID: [u8; 4] = *b"LOCL";

/// What the control thread serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlConfig {
    /// Serve the local clock at this stratum (1..=15); `None`: unsynchronized.
    pub local_stratum: Option<u8>,
    /// What responders do with requests while unsynchronized.
    pub unsync_policy: UnsyncPolicy,
}

/// The root dispersion of the local clock at its reference time: its read precision, the
/// smallest error it can claim (RFC 5905 starts a primary server's dispersion there). The reply
/// adds 15 ppm of the time since the reference time, which the control thread refreshes every
/// second, so clients see a value within one 2^-16 s unit or two of this.
pub fn local_root_dispersion(precision: i8) -> NtpShort {
    // 2^precision seconds is 2^(precision + 16) units of the 16.16 format; round up to one unit.
    let shift = (precision as i32 + 16).clamp(0, 31);
    NtpShort(1 << shift)
}

/// The server state for `config` at `now`.
pub fn server_state(config: &ControlConfig, precision: i8, now: NtpTimestamp) -> ServerState {
    match config.local_stratum {
        Some(stratum) => ServerState {
            synchronized: true,
            leap: Leap::NoWarning,
            stratum,
            precision,
            root_delay: NtpShort::ZERO,
            root_dispersion: local_root_dispersion(precision),
            reference_id: LOCAL_REFID,
            reference_time: now,
            unsync_policy: config.unsync_policy,
        },
        None => ServerState::unsynchronized(precision, config.unsync_policy),
    }
}

/// The whole snapshot the control thread publishes: the state at `now`, and clock parameters that
/// serve the kernel's clock uncorrected, converted with the kernel's TAI − UTC offset.
pub fn snapshot(config: &ControlConfig, precision: i8, tai_minus_utc: i32, now: NtpTimestamp) -> Published {
    Published {
        server: server_state(config, precision, now),
        clock: ClockParams::identity(tai_minus_utc),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: NtpTimestamp = NtpTimestamp(0xE900_0000_8000_0000);

    #[test]
    fn local_stratum_serves_synchronized_time() {
        let config = ControlConfig {
            local_stratum: Some(2),
            unsync_policy: UnsyncPolicy::Drop,
        };
        let s = server_state(&config, -24, NOW);
        assert!(s.synchronized);
        assert_eq!(s.leap, Leap::NoWarning);
        assert_eq!(s.stratum, 2);
        assert_eq!(s.precision, -24);
        assert_eq!(&s.reference_id, b"LOCL");
        assert_eq!(s.reference_time, NOW);
        assert_eq!(s.root_delay, NtpShort::ZERO);
        // 2^-24 s is 60 ns: one unit of the 16.16 format (15.3 µs).
        assert_eq!(s.root_dispersion, NtpShort(1));
        assert_eq!(s.unsync_policy, UnsyncPolicy::Drop);
    }

    #[test]
    fn without_local_stratum_the_server_is_unsynchronized() {
        for policy in [UnsyncPolicy::Answer, UnsyncPolicy::Drop] {
            let config = ControlConfig {
                local_stratum: None,
                unsync_policy: policy,
            };
            let s = server_state(&config, -20, NOW);
            assert_eq!(s, ServerState::unsynchronized(-20, policy));
            assert!(!s.synchronized);
            assert_eq!(s.stratum, 16);
        }
    }

    #[test]
    fn root_dispersion_follows_precision() {
        assert_eq!(local_root_dispersion(-30), NtpShort(1));
        assert_eq!(local_root_dispersion(-16), NtpShort(1));
        assert_eq!(local_root_dispersion(-10), NtpShort(64));
        assert_eq!(local_root_dispersion(0), NtpShort(1 << 16));
    }

    #[test]
    fn snapshot_carries_the_tai_offset_and_no_correction() {
        let config = ControlConfig {
            local_stratum: Some(1),
            unsync_policy: UnsyncPolicy::Answer,
        };
        let p = snapshot(&config, -20, 37, NOW);
        assert_eq!(p.clock, ClockParams::identity(37));
        assert_eq!(p.server.reference_time, NOW);
    }
}

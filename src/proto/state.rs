//! What the control thread publishes and every responder reads: the server's state (stratum,
//! refid, root delay and dispersion, leap) and the clock parameters, as one snapshot so that a
//! reply never mixes two generations.

use crate::proto::clock::seqlock::{self, SeqLockReader, SeqLockWriter, Words};
use crate::proto::clock::{ClockParams, LeapScale};
use crate::proto::wire::ntp::Leap;
use crate::proto::wire::{NtpShort, NtpTimestamp};

/// What to do with a client request while the server is not synchronized.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnsyncPolicy {
    /// Answer with LI=3 and stratum 16, as RFC 5905 says an unsynchronized server does.
    #[default]
    Answer,
    /// Send nothing (counted as a drop), so that clients move on to another server at once.
    Drop,
}

/// The server's state as replies carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerState {
    pub synchronized: bool,
    /// The leap second announced to clients (meaningful only while synchronized).
    pub leap: Leap,
    pub stratum: u8,
    pub precision: i8,
    pub root_delay: NtpShort,
    /// Root dispersion as of `reference_time`; replies add 15 ppm of the time elapsed since.
    pub root_dispersion: NtpShort,
    pub reference_id: [u8; 4],
    /// When the clock was last set or corrected (zero: never).
    pub reference_time: NtpTimestamp,
    pub unsync_policy: UnsyncPolicy,
}

impl ServerState {
    /// The state of a server that has never been synchronized.
    pub fn unsynchronized(precision: i8, unsync_policy: UnsyncPolicy) -> Self {
        ServerState {
            synchronized: false,
            leap: Leap::Unsynchronized,
            stratum: 16,
            precision,
            root_delay: NtpShort::ZERO,
            root_dispersion: NtpShort::ZERO,
            reference_id: [0; 4],
            reference_time: NtpTimestamp::ZERO,
            unsync_policy,
        }
    }
}

/// The snapshot published through the seqlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub server: ServerState,
    pub clock: ClockParams,
}

impl Words for Published {
    const WORDS: usize = 12;

    fn encode(&self, w: &mut [u64]) {
        let s = &self.server;
        w[0] = s.synchronized as u64
            | (s.leap as u64) << 8
            | (s.stratum as u64) << 16
            | (s.precision as u8 as u64) << 24
            | (matches!(s.unsync_policy, UnsyncPolicy::Drop) as u64) << 32;
        w[1] = (s.root_delay.0 as u64) << 32 | s.root_dispersion.0 as u64;
        w[2] = u32::from_be_bytes(s.reference_id) as u64;
        w[3] = s.reference_time.0;
        w[4] = self.clock.tai_minus_utc as u32 as u64;
        w[5] = self.clock.base_ns as u64;
        w[6] = self.clock.offset_ns as u64;
        w[7] = self.clock.frequency_q48 as u64;
        let leap = &self.clock.leap;
        w[8] = leap.at.0;
        w[9] = leap.smear_start.0;
        w[10] = leap.smear_len_s as u64 | (leap.past_s as u32 as u64) << 32;
        w[11] = leap.delta as u8 as u64 | (leap.kernel_steps_realtime as u64) << 8;
    }

    fn decode(w: &[u64]) -> Self {
        Published {
            server: ServerState {
                synchronized: w[0] & 1 == 1,
                leap: Leap::from_bits((w[0] >> 8) as u8),
                stratum: (w[0] >> 16) as u8,
                precision: (w[0] >> 24) as u8 as i8,
                unsync_policy: if (w[0] >> 32) & 1 == 1 {
                    UnsyncPolicy::Drop
                } else {
                    UnsyncPolicy::Answer
                },
                root_delay: NtpShort((w[1] >> 32) as u32),
                root_dispersion: NtpShort(w[1] as u32),
                reference_id: (w[2] as u32).to_be_bytes(),
                reference_time: NtpTimestamp(w[3]),
            },
            clock: ClockParams {
                tai_minus_utc: w[4] as u32 as i32,
                base_ns: w[5] as i64,
                offset_ns: w[6] as i64,
                frequency_q48: w[7] as i64,
                leap: LeapScale {
                    past_s: (w[10] >> 32) as u32 as i32,
                    delta: w[11] as u8 as i8,
                    at: NtpTimestamp(w[8]),
                    smear_start: NtpTimestamp(w[9]),
                    smear_len_s: w[10] as u32,
                    kernel_steps_realtime: (w[11] >> 8) & 1 == 1,
                },
            },
        }
    }
}

/// Another place a published snapshot must reach, in a form of its own: the XDP program's state
/// map (`crate::sys::fastpath::state_map`). The control thread calls it after every
/// publication, and once with the current snapshot when it is added.
pub trait StateMirror: Send {
    fn mirror(&mut self, published: &Published);
}

/// The control thread's handle for publishing snapshots.
pub type StateWriter = SeqLockWriter<Published>;
/// A responder's handle for reading them; clone one per responder.
pub type StateReader = SeqLockReader<Published>;

/// Makes the published snapshot, starting at `initial`.
pub fn publish(initial: Published) -> (StateWriter, StateReader) {
    seqlock::seqlock(initial)
}

/// The synchronized state strata's unit tests answer with. The integration tests, benches and
/// loadgen's tests take theirs from `strata-test-support` (tests/support/, `synced()`), which the
/// unit tests cannot use: it depends on strata, so a unit test would get its `ServerState` from a
/// second copy of this crate, a different type. This copy stays here, equal to that one.
#[cfg(test)]
pub(crate) mod test_fixtures {
    use super::*;

    /// A synchronized stratum-2 server (reference ID 198.18.0.1) that answers while
    /// unsynchronized.
    pub(crate) fn synced() -> ServerState {
        ServerState {
            synchronized: true,
            leap: Leap::NoWarning,
            stratum: 2,
            precision: -24,
            root_delay: NtpShort(0x0000_0100),
            root_dispersion: NtpShort(0x0000_0200),
            reference_id: [198, 18, 0, 1],
            reference_time: NtpTimestamp(0xe98a_1b20_0000_0000),
            unsync_policy: UnsyncPolicy::Answer,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn snapshot_words_round_trip(
            sync: bool, leap in 0u8..4, stratum: u8, precision: i8, drop: bool,
            rd: u32, rdisp: u32, refid: [u8; 4], reftime: u64,
            tai: i32, base: i64, offset: i64, freq: i64,
            past: i32, delta: i8, at: u64, smear_start: u64, smear_len: u32, kernel: bool,
        ) {
            let p = Published {
                server: ServerState {
                    synchronized: sync,
                    leap: Leap::from_bits(leap),
                    stratum,
                    precision,
                    root_delay: NtpShort(rd),
                    root_dispersion: NtpShort(rdisp),
                    reference_id: refid,
                    reference_time: NtpTimestamp(reftime),
                    unsync_policy: if drop { UnsyncPolicy::Drop } else { UnsyncPolicy::Answer },
                },
                clock: ClockParams {
                    tai_minus_utc: tai, base_ns: base, offset_ns: offset, frequency_q48: freq,
                    leap: LeapScale {
                        past_s: past, delta, at: NtpTimestamp(at),
                        smear_start: NtpTimestamp(smear_start), smear_len_s: smear_len,
                        kernel_steps_realtime: kernel,
                    },
                },
            };
            let mut w = [0u64; Published::WORDS];
            p.encode(&mut w);
            prop_assert_eq!(Published::decode(&w), p);
        }
    }
}

//! The XDP program's state map, written by the control thread: what the program needs to answer
//! a plain request itself (the server state and the TAI -> NTP line), published with a sequence
//! lock through a shared mapping of the map (`BPF_F_MMAPABLE`), so that the program never
//! combines two publications (a torn read) and user space writes without a syscall.
//!
//! Why not `bpf_map_update_elem`: the kernel copies an array map's value with a plain memcpy,
//! in no promised order and without telling readers, so a reader could see half of each. Here
//! the writer marks the entry odd, writes, and marks it even again; the program keeps a copy only
//! if it saw the same even mark before and after (and after two failures hands the request to
//! AF_XDP instead: see `read_state` in `xdp-prog/strata_answer.h`).

use std::io;
use std::os::fd::BorrowedFd;

use super::abi::{XdpState, STATE_LEN, STATE_SYNCED, STATE_UNSYNC_DROP, STATE_VALID};
use super::mapped::MappedEntry;
use crate::proto::clock::LinearNtp;
use crate::proto::state::{Published, StateMirror, UnsyncPolicy};
use crate::sys::clock::read_clock_ns;

/// The map's one entry, as 11 words; word 0 is the sequence.
const WORDS: usize = STATE_LEN / 8;

/// The state entry as the program reads it, for `published` with the line anchored at the
/// CLOCK_TAI reading `tai_now_ns`. The sequence is left 0 (the writer owns it).
pub fn encode(published: &Published, tai_now_ns: u64) -> XdpState {
    let s = &published.server;
    let line = LinearNtp::new(&published.clock, tai_now_ns);
    let mut flags = STATE_VALID;
    if s.synchronized {
        flags |= STATE_SYNCED;
    }
    if s.unsync_policy == UnsyncPolicy::Drop {
        flags |= STATE_UNSYNC_DROP;
    }
    XdpState {
        seq: 0,
        tai_anchor_ns: line.tai_anchor_ns,
        ntp_anchor: line.ntp_anchor,
        rate_int: line.rate_int,
        rate_frac: line.rate_frac,
        reference_time: s.reference_time.0,
        root_delay: s.root_delay.0,
        root_dispersion: s.root_dispersion.0,
        refid: s.reference_id,
        flags,
        leap: s.leap as u8,
        stratum: s.stratum,
        precision: s.precision,
        leap_at: line.leap.at.0,
        smear_start: line.leap.smear_start.0,
        smear_len_s: line.leap.smear_len_s,
        leap_delta: line.leap.delta,
        reserved: [0; 3],
    }
}

/// The entry as the 8 native-endian words it occupies in memory.
fn words(state: &XdpState) -> [u64; WORDS] {
    let tail = u32::from_ne_bytes(state.refid) as u64
        | (u32::from_ne_bytes([state.flags, state.leap, state.stratum, state.precision as u8]) as u64) << 32;
    let leap_word = state.smear_len_s as u64 | (state.leap_delta as u8 as u64) << 32;
    let leap_word = if cfg!(target_endian = "little") {
        leap_word
    } else {
        (state.smear_len_s as u64) << 32 | (state.leap_delta as u8 as u64) << 24
    };
    // On a big-endian host the two u32s of a word swap places; the layout test pins both.
    let (pair, tail) = if cfg!(target_endian = "little") {
        (
            state.root_delay as u64 | (state.root_dispersion as u64) << 32,
            tail,
        )
    } else {
        (
            (state.root_delay as u64) << 32 | state.root_dispersion as u64,
            tail.rotate_left(32),
        )
    };
    [
        state.seq,
        state.tai_anchor_ns,
        state.ntp_anchor,
        state.rate_int,
        state.rate_frac,
        state.reference_time,
        pair,
        tail,
        state.leap_at,
        state.smear_start,
        leap_word,
    ]
}

/// A writable mapping of one interface's state map.
pub struct StateMap {
    entry: MappedEntry,
    interface: String,
}

impl StateMap {
    /// Maps the state map `map` (an array of one `struct strata_state`, BPF_F_MMAPABLE). The
    /// mapping outlives the descriptor and keeps the map alive.
    pub fn map(map: BorrowedFd<'_>, interface: &str) -> io::Result<StateMap> {
        Ok(StateMap {
            entry: MappedEntry::map(map, WORDS, &format!("the XDP state map of {interface}"))?,
            interface: interface.to_string(),
        })
    }

    /// Writes `state` under the sequence lock.
    pub fn write(&mut self, state: &XdpState) {
        self.entry.write(&words(state)[1..]);
    }

    /// What the map holds now (for tests and the log).
    pub fn read(&self) -> [u64; WORDS] {
        let words = self.entry.read();
        std::array::from_fn(|i| words[i])
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }
}

impl StateMirror for StateMap {
    fn mirror(&mut self, published: &Published) {
        let tai_now = read_clock_ns(libc::CLOCK_TAI);
        self.write(&encode(published, tai_now as u64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::clock::ClockParams;
    use crate::proto::state::test_fixtures::synced;

    #[test]
    fn words_lay_out_the_struct_as_c_does() {
        let state = XdpState {
            seq: 1,
            tai_anchor_ns: 2,
            ntp_anchor: 3,
            rate_int: 4,
            rate_frac: 5,
            reference_time: 6,
            root_delay: 0x0708,
            root_dispersion: 0x090a,
            refid: [1, 2, 3, 4],
            flags: 5,
            leap: 6,
            stratum: 7,
            precision: -8,
            leap_at: 9,
            smear_start: 10,
            smear_len_s: 11,
            leap_delta: -1,
            reserved: [0; 3],
        };
        let w = words(&state);
        let mut bytes = [0u8; STATE_LEN];
        for (i, word) in w.iter().enumerate() {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&word.to_ne_bytes());
        }
        // SAFETY: XdpState is repr(C) plain integers with no padding (the abi layout test), and
        // `bytes` is exactly its size; read_unaligned needs no alignment.
        let back: XdpState = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        assert_eq!(back, state);
    }

    #[test]
    fn encode_sets_flags_and_line() {
        let published = Published {
            server: synced(),
            clock: ClockParams::identity(37),
        };
        let s = encode(&published, 1_800_000_000_000_000_000);
        assert_eq!(s.flags, STATE_VALID | STATE_SYNCED);
        assert_eq!(s.stratum, 2);
        assert_eq!(s.refid, [198, 18, 0, 1]);
        assert_eq!(s.rate_int, 4);
        let mut unsync = published;
        unsync.server.synchronized = false;
        unsync.server.unsync_policy = UnsyncPolicy::Drop;
        assert_eq!(encode(&unsync, 0).flags, STATE_VALID | STATE_UNSYNC_DROP);
    }
}

//! Pairs replies with requests.
//!
//! Every request's transmit timestamp is a cookie unique within the run: a per-run nonce, the
//! worker's index and the worker's sequence number. The server copies it into the reply's origin
//! timestamp, so the reply names its request without a search: the sequence number indexes a
//! ring of in-flight entries that keeps the send time and the flow. The cookie is not the send
//! time (servers only echo it); the send time is kept here, in nanoseconds, which is finer than
//! the 32.32 format anyway.

use strata::proto::wire::NtpTimestamp;

const SEQ_BITS: u32 = 40;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// Builds the cookie of request `seq` of `worker` in the run with `nonce`.
#[inline]
pub fn cookie(nonce: u16, worker: u8, seq: u64) -> NtpTimestamp {
    NtpTimestamp((nonce as u64) << 48 | (worker as u64) << SEQ_BITS | (seq & SEQ_MASK))
}

/// Splits a cookie into (nonce, worker, sequence number).
#[inline]
pub fn decode(ts: NtpTimestamp) -> (u16, u8, u64) {
    ((ts.0 >> 48) as u16, (ts.0 >> SEQ_BITS) as u8, ts.0 & SEQ_MASK)
}

#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    seq: u64,
    sent_ns: i64,
    flow: u32,
    answered: bool,
}

/// How a reply relates to the requests in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// The first reply to request `seq`, in time. Its send time is `sent_ns` (CLOCK_REALTIME).
    First { seq: u64, sent_ns: i64 },
    /// A reply to a request we sent, but after the timeout (or so long after that its entry was
    /// reused).
    Late,
    /// Another reply to a request already answered.
    Duplicate,
    /// The origin is no request of this worker in this run.
    Unknown,
    /// The origin is a request sent from another flow than the one the reply came to.
    WrongClient,
}

/// The in-flight requests of one worker.
pub struct Matcher {
    nonce: u16,
    worker: u8,
    entries: Box<[Entry]>,
    mask: u64,
    next_seq: u64,
    timeout_ns: i64,
}

impl Matcher {
    /// Tracks up to `capacity` (rounded up to a power of two) requests in flight; a reply more
    /// than `timeout_ns` after its request is late.
    pub fn new(nonce: u16, worker: u8, capacity: usize, timeout_ns: i64) -> Matcher {
        let capacity = capacity.next_power_of_two().max(2);
        Matcher {
            nonce,
            worker,
            entries: vec![Entry::default(); capacity].into_boxed_slice(),
            mask: capacity as u64 - 1,
            next_seq: 0,
            timeout_ns,
        }
    }

    pub fn capacity(&self) -> usize {
        self.entries.len()
    }

    /// The sequence number the next request will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The cookie for the `i`-th request of the batch about to be sent.
    #[inline]
    pub fn cookie(&self, i: usize) -> NtpTimestamp {
        cookie(self.nonce, self.worker, self.next_seq + i as u64)
    }

    /// Records that the first `n` requests of the batch went out from `flow` at `sent_ns`.
    #[inline]
    pub fn commit(&mut self, n: usize, flow: usize, sent_ns: i64) {
        for _ in 0..n {
            let seq = self.next_seq;
            self.entries[(seq & self.mask) as usize] = Entry {
                seq,
                sent_ns,
                flow: flow as u32,
                answered: false,
            };
            self.next_seq += 1;
        }
    }

    /// Finds the request a reply with `origin`, received on `flow` at `rx_ns`, answers, and marks
    /// it answered.
    #[inline]
    pub fn lookup(&mut self, origin: NtpTimestamp, flow: usize, rx_ns: i64) -> Match {
        let (nonce, worker, seq) = decode(origin);
        if nonce != self.nonce || worker != self.worker || seq >= self.next_seq {
            return Match::Unknown;
        }
        if seq + (self.entries.len() as u64) < self.next_seq {
            // Its entry has been reused: it was sent so long ago that it can only be late.
            return Match::Late;
        }
        let entry = &mut self.entries[(seq & self.mask) as usize];
        debug_assert_eq!(entry.seq, seq);
        if entry.flow as usize != flow {
            return Match::WrongClient;
        }
        if entry.answered {
            return Match::Duplicate;
        }
        entry.answered = true;
        if rx_ns - entry.sent_ns > self.timeout_ns {
            Match::Late
        } else {
            Match::First {
                seq,
                sent_ns: entry.sent_ns,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_round_trip_and_differ() {
        let c = cookie(0xbeef, 3, 12345);
        assert_eq!(decode(c), (0xbeef, 3, 12345));
        assert_ne!(cookie(0xbeef, 3, 1), cookie(0xbeef, 4, 1));
        assert_ne!(cookie(0xbeef, 3, 1), cookie(0xbeee, 3, 1));
    }

    #[test]
    fn first_duplicate_late_unknown_and_wrong_client() {
        let mut m = Matcher::new(7, 1, 8, 1_000);
        let c0 = m.cookie(0);
        let c1 = m.cookie(1);
        let c2 = m.cookie(2);
        m.commit(2, 0, 100);
        m.commit(1, 1, 200);
        assert_eq!(m.lookup(c0, 0, 150), Match::First { seq: 0, sent_ns: 100 });
        assert_eq!(m.lookup(c0, 0, 160), Match::Duplicate);
        assert_eq!(m.lookup(c1, 1, 160), Match::WrongClient, "sent from flow 0");
        assert_eq!(m.lookup(c1, 0, 5_000), Match::Late);
        assert_eq!(
            m.lookup(c1, 0, 5_001),
            Match::Duplicate,
            "a late reply still counts once"
        );
        assert_eq!(m.lookup(c2, 1, 300), Match::First { seq: 2, sent_ns: 200 });
        // Not yet sent, another worker, another run, garbage.
        assert_eq!(m.lookup(m.cookie(0), 0, 300), Match::Unknown);
        assert_eq!(m.lookup(cookie(7, 2, 0), 0, 300), Match::Unknown);
        assert_eq!(m.lookup(cookie(8, 1, 0), 0, 300), Match::Unknown);
        assert_eq!(m.lookup(NtpTimestamp(u64::MAX), 0, 300), Match::Unknown);
    }

    #[test]
    fn a_reused_entry_makes_an_old_reply_late() {
        let mut m = Matcher::new(1, 0, 4, i64::MAX);
        let old = m.cookie(0);
        m.commit(4, 0, 0);
        assert_eq!(m.lookup(old, 0, 1), Match::First { seq: 0, sent_ns: 0 });
        m.commit(1, 0, 0);
        assert_eq!(m.lookup(old, 0, 2), Match::Late);
        assert_eq!(m.capacity(), 4);
    }
}

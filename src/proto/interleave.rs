//! Interleaved mode, the server's side (RFC 9769; chrony's `xleave`): a client that asks for it
//! gets, in each reply, the real transmit time of the previous reply (taken by the kernel or the
//! NIC after the packet left) instead of a transmit time read before sending.
//!
//! How a request is recognised, as chrony does it (ntp_core.c): every reply of ours has the
//! lowest bit of its receive timestamp set and of its transmit timestamp cleared ([`mark`]). An
//! interleaved client copies our previous receive timestamp into its origin field; a basic client
//! copies our transmit timestamp (or sends zero or random bits). So a request is a *candidate*
//! when it is NTPv4, its origin has the lowest bit set, and its receive and transmit fields
//! differ ([`candidate`]). Only candidates are remembered; the reply to a candidate is
//! interleaved when the table holds, for that very client (address and port), the exchange whose
//! receive stamp equals the request's origin, with a transmit stamp, not used before. Otherwise it
//! is a basic reply, and the exchange is remembered for the next request. A new client's third
//! reply is the first that can be interleaved.
//!
//! The interleaved reply ([`make_interleaved`]) keeps the basic reply's receive stamp (this
//! request's T2) and sets origin = the request's receive field (the client's own receive time of
//! our previous reply, which it matches against) and transmit = the real transmit time of the
//! previous reply. Its length is the basic reply's: never longer than the request.
//!
//! The [`XleaveTable`] is bounded and allocated once: 2^n buckets of two slots, the bucket chosen
//! by a keyed hash of (address, port) with a secret drawn at start (as the rate limiter's table,
//! `admission::limiter`), so that a flood of spoofed sources cannot aim at a real client's bucket.
//! Each slot keeps the whole address and port, so two clients never share state, even in one
//! bucket. A full bucket forgets its older exchange: under a flood, clients are forgotten and
//! answered in basic mode, never answered with another client's stamps. A stamp pair is used
//! once (as chrony's `CLG_DisableNtpTimestamps`): a replayed request gets a basic reply.

use std::net::{IpAddr, SocketAddr};

use crate::proto::admission::limiter::client_hash;
use crate::proto::wire::ntp::{Packet, HEADER_LEN};
use crate::proto::wire::NtpTimestamp;

/// The largest delay accepted between the transmit time read before sending and the kernel's or
/// NIC's stamp of the same packet (chrony's MAX_TX_DELAY): a later stamp belongs to something
/// else.
pub const MAX_TX_DELAY_NS: i64 = 1_000_000_000;

/// What an interleaved reply needs from a candidate request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The request's origin field: our receive stamp of the previous exchange, if interleaved.
    pub origin: NtpTimestamp,
    /// The request's receive field: the client's receive time of our previous reply.
    pub receive: NtpTimestamp,
}

/// Whether `request` (a whole NTP message) may be an interleaved request; read before the reply
/// is written over it.
#[inline]
pub fn candidate(request: &[u8]) -> Option<Candidate> {
    let p = Packet::new_checked(request).ok()?;
    let origin = p.origin_timestamp();
    let receive = p.receive_timestamp();
    (p.version() == 4 && origin.0 & 1 == 1 && receive != p.transmit_timestamp())
        .then_some(Candidate { origin, receive })
}

/// Marks a reply as chrony does: receive stamp lowest bit set, transmit stamp lowest bit
/// cleared (2^-32 s each, below any clock's precision), so that a request's origin says which
/// one the client copied. Returns the marked receive stamp, the one to remember.
#[inline]
pub fn mark(reply: &mut [u8]) -> NtpTimestamp {
    let mut p = Packet::new_unchecked(&mut reply[..HEADER_LEN]);
    let receive = NtpTimestamp(p.receive_timestamp().0 | 1);
    p.set_receive_timestamp(receive);
    let transmit = p.transmit_timestamp();
    p.set_transmit_timestamp(mark_transmit(transmit));
    receive
}

/// A transmit stamp as a marked reply carries it.
#[inline]
pub fn mark_transmit(t: NtpTimestamp) -> NtpTimestamp {
    NtpTimestamp(t.0 & !1)
}

/// Turns a basic reply (written and [`mark`]ed) into the interleaved reply to `request`, whose
/// previous reply left at `previous_transmit`.
#[inline]
pub fn make_interleaved(reply: &mut [u8], request: Candidate, previous_transmit: NtpTimestamp) {
    let mut p = Packet::new_unchecked(&mut reply[..HEADER_LEN]);
    p.set_origin_timestamp(request.receive);
    p.set_transmit_timestamp(mark_transmit(previous_transmit));
}

/// What [`XleaveTable::finish`] did to a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    /// The reply is interleaved: its transmit stamp is final (do not re-stamp it).
    pub interleaved: bool,
    /// The receive stamp to remember with the reply's transmit time.
    pub remember: Option<NtpTimestamp>,
}

/// One remembered exchange.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Slot {
    /// The client's address (IPv4 as IPv4-mapped IPv6); with `port` 0 and `receive` 0, empty.
    addr: u128,
    port: u16,
    /// Used by an interleaved reply already.
    spent: bool,
    /// Our receive stamp of the client's request (marked), what its next origin must be.
    receive: NtpTimestamp,
    /// The transmit time of our reply: the one read before sending, replaced by the kernel's or
    /// the NIC's stamp when it arrives. Zero: not known.
    transmit: NtpTimestamp,
}

impl Slot {
    fn is(&self, addr: u128, port: u16) -> bool {
        self.receive != NtpTimestamp::ZERO && self.addr == addr && self.port == port
    }
}

/// The bounded table of the last exchange of each interleaved client. One per responder thread:
/// no lock, no allocation after [`XleaveTable::new`].
pub struct XleaveTable {
    buckets: Box<[[Slot; 2]]>,
    mask: u64,
    secret: [u64; 2],
}

/// The table's size by default: 2^14 buckets of two slots, 32 768 clients, about 1.5 MiB.
pub const DEFAULT_BUCKETS_LOG2: u8 = 14;

fn client_id(client: SocketAddr) -> (u128, u16) {
    let ip = match client.ip() {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(v6, |v4| v4.to_ipv6_mapped()),
    };
    (u128::from(ip), client.port())
}

impl XleaveTable {
    /// A table of 2^buckets_log2 buckets (at most 2^24), keyed with `secret`.
    pub fn new(buckets_log2: u8, secret: [u64; 2]) -> XleaveTable {
        let log2 = buckets_log2.min(24);
        XleaveTable {
            buckets: vec![[Slot::default(); 2]; 1 << log2].into_boxed_slice(),
            mask: (1u64 << log2) - 1,
            secret,
        }
    }

    /// How many exchanges the table can hold.
    pub fn capacity(&self) -> usize {
        self.buckets.len() * 2
    }

    fn bucket(&self, addr: u128, port: u16) -> usize {
        let h = client_hash(((addr >> 64) as u64, addr as u64), self.secret);
        (client_hash((h, u64::from(port)), self.secret) & self.mask) as usize
    }

    /// The previous reply's transmit stamp for an interleaved request from `client`, if the
    /// table has that client's exchange whose receive stamp is `origin`, with a transmit stamp,
    /// unused; it is used up. None: answer in basic mode.
    pub fn take(&mut self, client: SocketAddr, origin: NtpTimestamp) -> Option<NtpTimestamp> {
        let (addr, port) = client_id(client);
        let b = self.bucket(addr, port);
        let slot = self.buckets[b]
            .iter_mut()
            .find(|s| s.is(addr, port) && s.receive == origin)?;
        if slot.spent || slot.transmit == NtpTimestamp::ZERO {
            return None;
        }
        slot.spent = true;
        Some(slot.transmit)
    }

    /// Remembers the exchange just answered: our receive stamp (marked) and the transmit time
    /// written into the reply. It replaces the client's previous exchange, or else the bucket's
    /// older one.
    pub fn save(&mut self, client: SocketAddr, receive: NtpTimestamp, transmit: NtpTimestamp) {
        let (addr, port) = client_id(client);
        let b = self.bucket(addr, port);
        let bucket = &mut self.buckets[b];
        let index = match bucket.iter().position(|s| s.is(addr, port)) {
            Some(i) => i,
            // An empty slot, else the older exchange.
            None if bucket[0].receive == NtpTimestamp::ZERO => 0,
            None if bucket[1].receive == NtpTimestamp::ZERO => 1,
            None => usize::from(bucket[1].receive.diff_nanos(bucket[0].receive) < 0),
        };
        bucket[index] = Slot {
            addr,
            port,
            spent: false,
            receive,
            transmit,
        };
    }

    /// Finishes the basic reply just written (over `candidate`'s request, if it was one) for
    /// `client`: marks it, and makes it interleaved when the table has the client's previous
    /// exchange. Returns whether it is interleaved, and the receive stamp to [`save`] with the
    /// reply's transmit time once it is known (for candidates only).
    ///
    /// [`save`]: XleaveTable::save
    pub fn finish(&mut self, client: SocketAddr, candidate: Option<Candidate>, reply: &mut [u8]) -> Finished {
        let receive = mark(reply);
        let Some(request) = candidate else {
            return Finished {
                interleaved: false,
                remember: None,
            };
        };
        let previous = self.take(client, request.origin);
        if let Some(transmit) = previous {
            make_interleaved(reply, request, transmit);
        }
        Finished {
            interleaved: previous.is_some(),
            remember: Some(receive),
        }
    }

    /// The kernel's or NIC's stamp of the reply to `client`'s exchange with receive stamp
    /// `receive` arrived: it replaces the transmit time read before sending, if the exchange is
    /// still there, unused, and the stamp is no earlier than that time and at most
    /// [`MAX_TX_DELAY_NS`] later. Returns whether it was taken.
    pub fn update_transmit(
        &mut self,
        client: SocketAddr,
        receive: NtpTimestamp,
        transmit: NtpTimestamp,
    ) -> bool {
        let (addr, port) = client_id(client);
        let b = self.bucket(addr, port);
        let Some(slot) = self.buckets[b]
            .iter_mut()
            .find(|s| s.is(addr, port) && s.receive == receive && !s.spent)
        else {
            return false;
        };
        let delay = transmit.diff_nanos(slot.transmit);
        if slot.transmit != NtpTimestamp::ZERO && !(0..=MAX_TX_DELAY_NS).contains(&delay) {
            return false;
        }
        slot.transmit = transmit;
        true
    }
}

#[cfg(test)]
mod tests;

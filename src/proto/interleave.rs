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
//! interleaved when the table holds, for that client's address, the exchange whose receive stamp
//! equals the request's origin, with a transmit stamp, not used before. Otherwise it is a basic
//! reply, and the exchange is remembered for the next request. A new client's third reply is the
//! first that can be interleaved.
//!
//! The interleaved reply ([`make_interleaved`]) keeps the basic reply's receive stamp (this
//! request's T2) and sets origin = the request's receive field (the client's own receive time of
//! our previous reply, which it matches against) and transmit = the real transmit time of the
//! previous reply. Its length is the basic reply's: never longer than the request.
//!
//! The [`XleaveTable`] is bounded and allocated once: 2^n buckets of two slots, the bucket chosen
//! by a keyed hash of (address, receive stamp) with a secret drawn at start (as the rate
//! limiter's table, `admission::limiter`), so that a flood of spoofed sources cannot aim at a
//! real client's bucket. Each slot keeps the whole address, so two addresses never share state,
//! even in one bucket. A full bucket forgets its older exchange: under a flood, clients are
//! forgotten and answered in basic mode, never answered with another address's stamps. A stamp
//! pair is used once (as chrony's `CLG_DisableNtpTimestamps`): a replayed request gets a basic
//! reply.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{fence, AtomicU64, Ordering};

use crate::proto::admission::limiter::client_hash;
use crate::proto::wire::ipv4::{self, IpProtocol};
use crate::proto::wire::ntp::{Packet, HEADER_LEN};
use crate::proto::wire::NtpTimestamp;
use crate::proto::wire::{ethernet, ipv6, udp};

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

/// Which exchange a transmit stamp belongs to: the client (the frame's destination) and our
/// receive stamp in the reply. `frame` is what the kernel hands back with a transmit stamp on a
/// socket's error queue: the reply as it went to the driver, Ethernet header (with up to two
/// VLAN tags) first. Reading the reply itself, rather than counting sends (SOF_TIMESTAMPING_OPT_ID),
/// cannot attribute a stamp to the wrong reply when a send fails halfway.
pub fn sent_reply(frame: &[u8]) -> Option<(SocketAddr, NtpTimestamp)> {
    let mut offset = ethernet::HEADER_LEN - 2;
    let mut ethertype = u16::from_be_bytes(frame.get(offset..offset + 2)?.try_into().ok()?);
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        offset += 4;
        ethertype = u16::from_be_bytes(frame.get(offset..offset + 2)?.try_into().ok()?);
    }
    let l3 = frame.get(offset + 2..)?;
    let (ip, l4) = match ethertype {
        0x0800 => {
            let p = ipv4::Packet::new_checked(l3).ok()?;
            if p.version() != 4 || p.protocol() != IpProtocol::UDP || p.is_fragment() {
                return None;
            }
            (IpAddr::V4(p.dst_addr()), l3.get(usize::from(p.header_len())..)?)
        }
        0x86dd => {
            let p = ipv6::Packet::new_checked(l3).ok()?;
            if p.version() != 6 || p.next_header() != IpProtocol::UDP {
                return None;
            }
            (IpAddr::V6(p.dst_addr()), l3.get(ipv6::HEADER_LEN..)?)
        }
        _ => return None,
    };
    let udp = udp::Packet::new_checked(l4).ok()?;
    let ntp = Packet::new_checked(udp.payload()).ok()?;
    Some((SocketAddr::new(ip, udp.dst_port()), ntp.receive_timestamp()))
}

/// One remembered exchange, under its own sequence lock: an even `seq` is a settled slot, an
/// odd one a slot being written. Writers take it with a compare-and-swap and never wait (a
/// writer that finds it taken gives up: that exchange is forgotten, its client answered in basic
/// mode next time); readers retry nothing either (a slot being written is not there).
#[derive(Default)]
struct Slot {
    seq: AtomicU64,
    addr_hi: AtomicU64,
    addr_lo: AtomicU64,
    /// Our receive stamp (marked) of the client's request; 0: empty, or used up.
    receive: AtomicU64,
    /// The transmit time of our reply: the one read before sending, replaced by the kernel's or
    /// the NIC's stamp when it arrives.
    transmit: AtomicU64,
}

/// What a slot held, read consistently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    addr: u128,
    receive: NtpTimestamp,
    transmit: NtpTimestamp,
}

impl Slot {
    fn read(&self) -> Option<Held> {
        let before = self.seq.load(Ordering::Acquire);
        if before & 1 == 1 {
            return None;
        }
        let held = Held {
            addr: (u128::from(self.addr_hi.load(Ordering::Relaxed)) << 64)
                | u128::from(self.addr_lo.load(Ordering::Relaxed)),
            receive: NtpTimestamp(self.receive.load(Ordering::Relaxed)),
            transmit: NtpTimestamp(self.transmit.load(Ordering::Relaxed)),
        };
        fence(Ordering::Acquire);
        (self.seq.load(Ordering::Relaxed) == before).then_some(held)
    }

    /// Rewrites the slot with `change` (given what it holds) if nobody else is writing it and
    /// `change` says so; returns whether it did.
    fn write(&self, change: impl FnOnce(Held) -> Option<Held>) -> bool {
        let before = self.seq.load(Ordering::Relaxed);
        if before & 1 == 1
            || self
                .seq
                .compare_exchange(
                    before,
                    before.wrapping_add(1),
                    Ordering::Acquire,
                    Ordering::Relaxed,
                )
                .is_err()
        {
            return false;
        }
        fence(Ordering::Release);
        let held = Held {
            addr: (u128::from(self.addr_hi.load(Ordering::Relaxed)) << 64)
                | u128::from(self.addr_lo.load(Ordering::Relaxed)),
            receive: NtpTimestamp(self.receive.load(Ordering::Relaxed)),
            transmit: NtpTimestamp(self.transmit.load(Ordering::Relaxed)),
        };
        let new = change(held);
        if let Some(new) = new {
            self.addr_hi.store((new.addr >> 64) as u64, Ordering::Relaxed);
            self.addr_lo.store(new.addr as u64, Ordering::Relaxed);
            self.receive.store(new.receive.0, Ordering::Relaxed);
            self.transmit.store(new.transmit.0, Ordering::Relaxed);
        }
        self.seq.store(before.wrapping_add(2), Ordering::Release);
        new.is_some()
    }
}

/// The bounded table of the last exchanges of interleaved clients, shared by every responder
/// thread of a path (a client's requests may reach any of them: chronyd sends each request
/// from a new source port, so SO_REUSEPORT spreads them). No lock and no allocation after
/// [`XleaveTable::new`].
///
/// An exchange is keyed by the client's address and our receive stamp in it (unique per
/// request), not by the client's port: NTP clients (chronyd) change port with every request.
/// So two clients behind one address each keep their own exchanges, and a client that changes
/// port keeps its state. What the address alone cannot tell apart, as with chrony's table: a
/// host that sends another host's origin from the same address (it would have to see that
/// host's replies) gets that exchange's transmit time once, and the other host a basic reply.
pub struct XleaveTable {
    buckets: Box<[[Slot; 2]]>,
    mask: u64,
    secret: [u64; 2],
}

/// The table's size by default: 2^15 buckets of two slots, 65 536 exchanges, 2.5 MiB.
pub const DEFAULT_BUCKETS_LOG2: u8 = 15;

/// The client's address as one number (IPv4 as IPv4-mapped IPv6: a client on a dual-stack
/// socket is the same client either way).
fn client_addr(client: IpAddr) -> u128 {
    let v6 = match client {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(v6, |v4| v4.to_ipv6_mapped()),
    };
    u128::from(v6)
}

impl XleaveTable {
    /// A table of 2^buckets_log2 buckets (at most 2^24), keyed with `secret`.
    pub fn new(buckets_log2: u8, secret: [u64; 2]) -> XleaveTable {
        let log2 = buckets_log2.min(24);
        XleaveTable {
            buckets: (0..1usize << log2).map(|_| Default::default()).collect(),
            mask: (1u64 << log2) - 1,
            secret,
        }
    }

    /// How many exchanges the table can hold.
    pub fn capacity(&self) -> usize {
        self.buckets.len() * 2
    }

    fn bucket(&self, addr: u128, receive: NtpTimestamp) -> &[Slot; 2] {
        let h = client_hash(((addr >> 64) as u64, addr as u64), self.secret);
        let b = client_hash((h, receive.0), self.secret) & self.mask;
        &self.buckets[b as usize]
    }

    /// The previous reply's transmit stamp for an interleaved request from `client` whose
    /// origin is `origin`, if the table has that exchange of that address, with a transmit
    /// stamp; it is used up. None: answer in basic mode.
    pub fn take(&self, client: IpAddr, origin: NtpTimestamp) -> Option<NtpTimestamp> {
        let addr = client_addr(client);
        if origin == NtpTimestamp::ZERO {
            return None;
        }
        let mut taken = None;
        for slot in self.bucket(addr, origin) {
            let mine = |h: &Held| h.addr == addr && h.receive == origin && h.transmit != NtpTimestamp::ZERO;
            if !slot.read().is_some_and(|h| mine(&h)) {
                continue;
            }
            slot.write(|h| {
                mine(&h).then(|| {
                    taken = Some(h.transmit);
                    Held {
                        receive: NtpTimestamp::ZERO,
                        ..h
                    }
                })
            });
            break;
        }
        taken
    }

    /// Remembers the exchange just answered: our receive stamp (marked) and the transmit time
    /// written into the reply. It takes an empty slot of its bucket, else the older exchange.
    pub fn save(&self, client: IpAddr, receive: NtpTimestamp, transmit: NtpTimestamp) {
        let addr = client_addr(client);
        let bucket = self.bucket(addr, receive);
        let age = |slot: &Slot| slot.read().map(|h| h.receive);
        let index = match (age(&bucket[0]), age(&bucket[1])) {
            (Some(NtpTimestamp::ZERO), _) => 0,
            (_, Some(NtpTimestamp::ZERO)) => 1,
            (Some(a), Some(b)) => usize::from(b.diff_nanos(a) < 0),
            // One is being written by another thread: take the other.
            (None, _) => 1,
            (_, None) => 0,
        };
        bucket[index].write(|_| {
            Some(Held {
                addr,
                receive,
                transmit,
            })
        });
    }

    /// The kernel's or NIC's stamp of the reply to `client`'s exchange with receive stamp
    /// `receive` arrived: it replaces the transmit time read before sending, if the exchange is
    /// still there, unused, and the stamp is no earlier than that time and at most
    /// [`MAX_TX_DELAY_NS`] later. Returns whether it was taken.
    pub fn update_transmit(&self, client: IpAddr, receive: NtpTimestamp, transmit: NtpTimestamp) -> bool {
        let addr = client_addr(client);
        if receive == NtpTimestamp::ZERO {
            return false;
        }
        self.bucket(addr, receive).iter().any(|slot| {
            slot.write(|h| {
                let delay = transmit.diff_nanos(h.transmit);
                (h.addr == addr && h.receive == receive && (0..=MAX_TX_DELAY_NS).contains(&delay))
                    .then_some(Held { transmit, ..h })
            })
        })
    }

    /// Finishes the basic reply just written (over `candidate`'s request, if it was one) for
    /// `client`: marks it, and makes it interleaved when the table has the client's previous
    /// exchange. Returns whether it is interleaved, and the receive stamp to [`save`] with the
    /// reply's transmit time once it is known (for candidates only).
    ///
    /// [`save`]: XleaveTable::save
    pub fn finish(&self, client: IpAddr, candidate: Option<Candidate>, reply: &mut [u8]) -> Finished {
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
}

#[cfg(test)]
mod tests;

//! The per-batch pipeline every user-space tier shares: the published state read once per
//! batch, each request's receive stamp, admission, the answer written in place, the hand-off of
//! symmetric packets to the control thread, the counters, and one transmit time (T3) per batch
//! read as late as possible. A path (socket, AF_XDP) owns only its receive and send loop; what
//! differs between them, a UDP payload or a whole Ethernet frame on CLOCK_REALTIME or
//! CLOCK_TAI, is a [`Carrier`].
//!
//! Per batch, a path calls [`Pipeline::begin`], then [`Pipeline::answer`] for each request,
//! then [`Pipeline::transmit_time`] right before its send call, [`Pipeline::stamp`] for each
//! reply, and [`Pipeline::sent`] for each reply the kernel took. No call allocates, locks or
//! blocks (the hand-off is a `try_send`).
//!
//! Interleaved mode ([`xleave`]) is the pipeline's too: with a table, every time reply is marked,
//! a request from an interleaving client gets the real transmit time of its previous reply, and
//! [`Pipeline::exchange`] says which replies of the batch need their real transmit time
//! ([`Pipeline::remember`], then [`Pipeline::transmitted`] once the path knows it).

pub mod phc_lines;
mod xleave;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::proto::interleave::{self, Candidate, XleaveTable};
use crate::proto::metrics::TxTimestampSource;
pub use xleave::Exchange;

use crate::proto::admission::{Admitter, Verdict};
use crate::proto::auth::{has_mac, respond_mac, KeyTable};
use crate::proto::clock::phc::{ntp_from_phc, HardwareUnused, PhcLineReader};
use crate::proto::frame::{self, FrameDrop, FrameReply};
use crate::proto::metrics::record::Record;
use crate::proto::metrics::RxTimestampSource;
use crate::proto::nts::{is_nts, respond_nts, NtsContext, NtsOutcome, NtsRefusal, NtsResponder};
use crate::proto::respond::{self, Admission, DropReason, Reply, ReplyKind};
use crate::proto::state::{Published, ServerState, StateReader};
use crate::proto::wire::{ntp, NtpTimestamp};
use crate::sys::clock::read::read_clock_ns;
use crate::sys::handoff::SymmetricSender;

use phc_lines::PhcLines;

const SECOND: i64 = 1_000_000_000;

/// The largest batch a responder takes per receive call.
pub const MAX_BATCH_SIZE: usize = 1024;

/// What a path answers: a UDP payload or a whole frame, and the clock its stamps are on.
pub trait Carrier {
    /// Where the reply is in the buffer, and what it is.
    type Reply: Copy;
    /// The clock of the path's receive stamps, and so of T3.
    const CLOCK: libc::clockid_t;

    /// Answers the request in `buf` in place, with `rx_time` as T2 and a provisional T3.
    fn answer(
        &self,
        buf: &mut [u8],
        rx_time: NtpTimestamp,
        admission: Admission,
        state: &ServerState,
    ) -> Result<Self::Reply, FrameDrop>;

    /// Answers the request in `buf` in place with `answer`, which writes the NTP reply over the
    /// request's NTP bytes (NTS, instead of `respond()`).
    fn answer_with(
        &self,
        buf: &mut [u8],
        answer: impl FnOnce(&mut [u8]) -> Result<Reply, DropReason>,
    ) -> Result<Self::Reply, FrameDrop>;

    fn len(reply: &Self::Reply) -> usize;
    fn kind(reply: &Self::Reply) -> ReplyKind;

    /// Writes T3 into the reply (checksums kept right) and returns the reply's T2.
    fn stamp(buf: &mut [u8], reply: &Self::Reply, t3: NtpTimestamp) -> NtpTimestamp;

    /// The sender and the NTP bytes of a request the answer dropped, when the path can tell
    /// (`from` is the address the receive call gave, if any).
    fn sender<'a>(&self, buf: &'a [u8], from: Option<SocketAddr>) -> Option<(SocketAddr, &'a [u8])>;

    /// The client a reply goes to, when the path can tell (`from` as in [`Carrier::sender`]).
    fn client(buf: &[u8], reply: &Self::Reply, from: Option<SocketAddr>) -> Option<IpAddr>;

    /// Rewrites the reply's 48-byte NTP header with `edit`, its checksums kept right.
    fn edit_ntp<T>(buf: &mut [u8], reply: &Self::Reply, edit: impl FnOnce(&mut [u8]) -> T) -> T;

    fn set_kind(reply: &mut Self::Reply, kind: ReplyKind);
}

/// The socket path: each buffer is a UDP payload; stamps are on CLOCK_REALTIME.
#[derive(Debug, Clone, Copy, Default)]
pub struct Datagrams;

impl Carrier for Datagrams {
    type Reply = Reply;
    const CLOCK: libc::clockid_t = libc::CLOCK_REALTIME;

    #[inline]
    fn answer(
        &self,
        buf: &mut [u8],
        rx_time: NtpTimestamp,
        admission: Admission,
        state: &ServerState,
    ) -> Result<Reply, FrameDrop> {
        respond::respond(buf, rx_time, rx_time, admission, state).map_err(FrameDrop::Ntp)
    }

    #[inline]
    fn answer_with(
        &self,
        buf: &mut [u8],
        answer: impl FnOnce(&mut [u8]) -> Result<Reply, DropReason>,
    ) -> Result<Reply, FrameDrop> {
        answer(buf).map_err(FrameDrop::Ntp)
    }

    #[inline]
    fn len(reply: &Reply) -> usize {
        reply.len
    }

    #[inline]
    fn kind(reply: &Reply) -> ReplyKind {
        reply.kind
    }

    #[inline]
    fn stamp(buf: &mut [u8], _reply: &Reply, t3: NtpTimestamp) -> NtpTimestamp {
        respond::stamp_transmit(buf, t3);
        ntp::Packet::new_unchecked(&*buf).receive_timestamp()
    }

    #[inline]
    fn sender<'a>(&self, buf: &'a [u8], from: Option<SocketAddr>) -> Option<(SocketAddr, &'a [u8])> {
        from.map(|f| (f, buf))
    }

    #[inline]
    fn client(_buf: &[u8], _reply: &Reply, from: Option<SocketAddr>) -> Option<IpAddr> {
        from.map(|f| f.ip())
    }

    #[inline]
    fn edit_ntp<T>(buf: &mut [u8], _reply: &Reply, edit: impl FnOnce(&mut [u8]) -> T) -> T {
        edit(&mut buf[..ntp::HEADER_LEN])
    }

    #[inline]
    fn set_kind(reply: &mut Reply, kind: ReplyKind) {
        reply.kind = kind;
    }
}

/// The AF_XDP path: each buffer is an Ethernet frame to `ntp_port`; stamps are on CLOCK_TAI.
#[derive(Debug, Clone, Copy)]
pub struct Frames {
    pub ntp_port: u16,
}

impl Carrier for Frames {
    type Reply = FrameReply;
    const CLOCK: libc::clockid_t = libc::CLOCK_TAI;

    #[inline]
    fn answer(
        &self,
        buf: &mut [u8],
        rx_time: NtpTimestamp,
        admission: Admission,
        state: &ServerState,
    ) -> Result<FrameReply, FrameDrop> {
        frame::reply_in_place(buf, rx_time, rx_time, admission, state, self.ntp_port)
    }

    #[inline]
    fn answer_with(
        &self,
        buf: &mut [u8],
        answer: impl FnOnce(&mut [u8]) -> Result<Reply, DropReason>,
    ) -> Result<FrameReply, FrameDrop> {
        frame::reply_in_place_with(buf, self.ntp_port, answer)
    }

    #[inline]
    fn len(reply: &FrameReply) -> usize {
        reply.len
    }

    #[inline]
    fn kind(reply: &FrameReply) -> ReplyKind {
        reply.kind
    }

    #[inline]
    fn stamp(buf: &mut [u8], reply: &FrameReply, t3: NtpTimestamp) -> NtpTimestamp {
        frame::stamp_transmit_in_frame(buf, reply, t3);
        ntp::Packet::new_unchecked(&buf[reply.ntp_offset..]).receive_timestamp()
    }

    #[inline]
    fn sender<'a>(&self, buf: &'a [u8], _from: Option<SocketAddr>) -> Option<(SocketAddr, &'a [u8])> {
        frame::request_source(buf, self.ntp_port)
    }

    /// The reply frame's destination, read as the frame the kernel hands back with a transmit
    /// stamp is (no checksum to verify: the frame is ours).
    #[inline]
    fn client(buf: &[u8], reply: &FrameReply, _from: Option<SocketAddr>) -> Option<IpAddr> {
        interleave::sent_reply(&buf[..reply.len]).map(|(client, _)| client.ip())
    }

    #[inline]
    fn edit_ntp<T>(buf: &mut [u8], reply: &FrameReply, edit: impl FnOnce(&mut [u8]) -> T) -> T {
        frame::edit_ntp_in_frame(buf, reply, edit)
    }

    #[inline]
    fn set_kind(reply: &mut FrameReply, kind: ReplyKind) {
        reply.kind = kind;
    }
}

/// A request's receive time as the path found it: nanoseconds on the carrier's clock and where
/// that stamp came from, and the NIC's hardware stamp (its PHC's time), if one came. The
/// pipeline uses the hardware stamp when its interface's PHC mapping allows
/// ([`Pipeline::with_phc`], [`Pipeline::with_phc_by_interface`]), else the software stamp,
/// counting why. `ifindex` is the interface the request came in on, where the path serves
/// several through one socket (None: the path's own interface, or not known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxStamp {
    pub ns: i64,
    pub source: RxTimestampSource,
    pub hardware_ns: Option<i64>,
    pub ifindex: Option<u32>,
}

/// One responder's pipeline: its carrier, its counters and its hand-off.
pub struct Pipeline<C: Carrier, R: Record> {
    carrier: C,
    counters: R,
    symmetric: Option<SymmetricSender>,
    /// The snapshot the current batch is answered with.
    published: Published,
    /// Admission by this path itself (the socket path); None where the XDP program admits.
    admitter: Option<std::sync::Arc<Admitter>>,
    /// CLOCK_MONOTONIC at the start of the batch, the limiter's clock.
    batch_monotonic_ns: u64,
    /// xorshift32 state: the draws that pick the requests sampled for `strata clients`.
    draw: std::cell::Cell<u32>,
    /// NTS, when the server has it: NTS requests are answered by `respond_nts`.
    nts: Option<NtsResponder>,
    /// Only NTS requests are answered (`require_nts`); the rest are dropped.
    require_nts: bool,
    /// The symmetric keys, when the server has a key file: requests with a MAC are answered by
    /// `respond_mac`. Read only, shared by every responder.
    keys: Option<std::sync::Arc<KeyTable>>,
    /// The PHC-to-TAI lines of this path's interfaces that have a PHC, and the copies the
    /// current batch is answered with.
    phc: PhcLines,
    /// Interleaved mode (None: off, every reply is basic and unmarked).
    xleave: Option<xleave::Interleaving>,
}

impl<C: Carrier, R: Record> Pipeline<C, R> {
    pub fn new(carrier: C, counters: R, symmetric: Option<SymmetricSender>) -> Self {
        Pipeline {
            carrier,
            counters,
            symmetric,
            // Replaced by the first batch's read.
            published: Published {
                server: ServerState::unsynchronized(0, crate::proto::state::UnsyncPolicy::Drop),
                clock: crate::proto::clock::ClockParams::identity(0),
            },
            admitter: None,
            batch_monotonic_ns: 0,
            // Any odd seed: which requests are sampled needs no secret, only no pattern.
            draw: std::cell::Cell::new(0x9e37_79b9),
            nts: None,
            require_nts: false,
            keys: None,
            phc: PhcLines::none(),
            xleave: None,
        }
    }

    /// Hardware receive stamps are mapped to T2 by `phc`, the line the control thread publishes
    /// for this path's interface (None: they are counted as unused, `no_mapping`).
    pub fn with_phc(mut self, phc: Option<PhcLineReader>) -> Self {
        self.phc = phc.map_or_else(PhcLines::none, PhcLines::single);
        self
    }

    /// Hardware receive stamps are mapped to T2 by the line of the interface each request came
    /// in on (`RxStamp::ifindex`), for a path that serves several interfaces through one socket;
    /// requests from an interface not in `lines` are counted as unused, `no_mapping`.
    pub fn with_phc_by_interface(mut self, lines: Vec<(u32, PhcLineReader)>) -> Self {
        self.phc = PhcLines::by_interface(lines);
        self
    }

    /// Interleaved mode with `table` (shared by the path's threads), for batches of up to
    /// `batch_size` replies. None: off.
    pub fn with_interleave(mut self, table: Option<Arc<XleaveTable>>, batch_size: usize) -> Self {
        self.xleave = table.map(|t| xleave::Interleaving::new(t, batch_size));
        self
    }

    /// Whether interleaved mode is on (replies need their client).
    pub fn interleaves(&self) -> bool {
        self.xleave.is_some()
    }

    /// This path answers requests carrying a MAC with `keys` (None: they get a plain,
    /// unauthenticated answer, which a client with a key ignores).
    pub fn with_keys(mut self, keys: Option<std::sync::Arc<KeyTable>>) -> Self {
        self.keys = keys.filter(|k| !k.is_empty());
        self
    }

    /// This path admits requests itself with `admitter` (the socket path: no XDP program
    /// admits for it).
    pub fn with_admitter(mut self, admitter: Option<std::sync::Arc<Admitter>>) -> Self {
        self.admitter = admitter;
        self
    }

    /// This path answers NTS requests with `nts` (None: they get a plain, unauthenticated
    /// answer, which an NTS client ignores).
    /// With `require` set in it, only NTS requests are answered: the others are dropped
    /// (`nts_required`).
    pub fn with_nts(mut self, nts: Option<NtsResponder>) -> Self {
        self.require_nts = nts.as_ref().is_some_and(|n| n.require);
        self.nts = nts;
        self
    }

    /// Whether requests need their sender for admission.
    pub fn admits(&self) -> bool {
        self.admitter.is_some()
    }

    /// The admission of a request from `from` (the access list and rate limiter of this path;
    /// Serve without an admitter or a sender).
    #[inline]
    pub fn admit(&self, from: Option<SocketAddr>) -> Result<Admission, DropReason> {
        let (Some(admitter), Some(from)) = (&self.admitter, from) else {
            return Ok(Admission::Serve);
        };
        // An IPv4 client on a dual-stack socket arrives IPv4-mapped: it is judged as IPv4.
        let ip = match from.ip() {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(from.ip(), std::net::IpAddr::V4),
            ip => ip,
        };
        let mut x = self.draw.get();
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.draw.set(x);
        match admitter.admit_sampled(ip, self.batch_monotonic_ns, x) {
            Verdict::Answer(admission) => Ok(admission),
            Verdict::DropDenied => Err(DropReason::Denied),
            Verdict::DropLimited => Err(DropReason::RateLimited),
            Verdict::DropQuota => Err(DropReason::OverQuota),
        }
    }

    /// The counters, for what only the path knows (truncated datagrams, I/O errors).
    pub fn counters(&mut self) -> &mut R {
        &mut self.counters
    }

    /// The counters back, once the pipeline is done with.
    pub fn into_counters(self) -> R {
        self.counters
    }

    /// Whether symmetric packets are handed over (so the path should look up senders).
    pub fn hands_off(&self) -> bool {
        self.symmetric.is_some()
    }

    /// The carrier's clock now, in nanoseconds (a fallback T2 for requests without a stamp).
    #[inline]
    pub fn clock_ns(&self) -> i64 {
        read_clock_ns(C::CLOCK)
    }

    /// A batch of `received` requests begins: the published state is read once for all of them.
    #[inline]
    pub fn begin(&mut self, state: &StateReader, received: usize) {
        self.published = state.read();
        self.phc.refresh();
        if let Some(x) = &mut self.xleave {
            x.begin();
        }
        if self.admitter.is_some() {
            self.batch_monotonic_ns = read_clock_ns(libc::CLOCK_MONOTONIC) as u64;
        }
        self.counters.batch(received);
    }

    /// Answers the request of `len` bytes in `buf` (counted as received), stamped `stamp`,
    /// as `admission` says (a drop reason: counted and not answered). Returns the reply to send;
    /// a dropped request is counted, left as it was, and, if it is a symmetric packet, handed to
    /// the control thread with `from` (or the frame's sender).
    #[inline]
    pub fn answer(
        &mut self,
        buf: &mut [u8],
        stamp: RxStamp,
        from: Option<SocketAddr>,
        admission: Result<Admission, DropReason>,
    ) -> Option<C::Reply> {
        self.counters.received(buf.len());
        let admission = match admission {
            Ok(admission) => admission,
            Err(reason) => {
                self.counters.dropped_frame(FrameDrop::Ntp(reason));
                return None;
            }
        };
        let (rx_time, source, hardware_unused) = self.receive_time(&stamp);
        let state = &self.published.server;
        let mut refused = None;
        let require_nts = self.require_nts;
        let keys = self.keys.as_deref();
        let interleaving = self.xleave.is_some();
        // The request's interleaved-mode fields, read before the reply is written over them.
        let mut candidate: Option<Candidate> = None;
        let result = if self.nts.is_none() && keys.is_none() && !interleaving {
            self.carrier.answer(buf, rx_time, admission, state)
        } else {
            let clock = &self.published.clock;
            let nts = self.nts.as_mut();
            let answer_ntp = |ntp: &mut [u8]| -> Result<Reply, DropReason> {
                let nts = nts.filter(|_| is_nts(ntp));
                if nts.is_none() && require_nts {
                    return Err(DropReason::NtsRequired);
                }
                let keys = keys.filter(|_| has_mac(ntp));
                if nts.is_none() && keys.is_none() {
                    return respond::respond(ntp, rx_time, rx_time, admission, state);
                }
                // T3 is sealed into the reply: read now, as late as the answer allows.
                let now_ns = read_clock_ns(C::CLOCK);
                let (tx_time, unix_ns) = if C::CLOCK == libc::CLOCK_TAI {
                    (
                        clock.ntp_from_tai(now_ns),
                        now_ns - clock.tai_minus_utc as i64 * SECOND,
                    )
                } else {
                    (clock.ntp_from_realtime(now_ns), now_ns)
                };
                let Some(nts) = nts else {
                    let keys = keys.expect("a key table when not NTS");
                    return respond_mac(ntp, rx_time, tx_time, admission, state, keys);
                };
                let ctx = NtsContext {
                    keys: &mut nts.keys,
                    nonces: &mut nts.nonces,
                    unix_s: (unix_ns / SECOND).max(0) as u64,
                };
                match respond_nts(ntp, rx_time, tx_time, admission, state, ctx) {
                    Ok(NtsOutcome::Answered { reply, .. }) => Ok(reply),
                    Ok(NtsOutcome::Nak { reply, why }) => {
                        refused = Some(why);
                        Ok(reply)
                    }
                    Err(e) => {
                        refused = Some(NtsRefusal::Malformed);
                        Err(e)
                    }
                }
            };
            self.carrier.answer_with(buf, |ntp| {
                if interleaving {
                    candidate = interleave::candidate(ntp);
                }
                let reply = answer_ntp(ntp)?;
                // Every time reply is marked (inside the answer: a frame's checksum is computed
                // after it); a KoD carries no time of ours, an authenticated reply is sealed.
                if interleaving && matches!(reply.kind, ReplyKind::Time | ReplyKind::Unsynchronized) {
                    interleave::mark(ntp);
                } else {
                    candidate = None;
                }
                Ok(reply)
            })
        };
        if let Some(why) = refused {
            self.counters.nts_refused(why);
        }
        match result {
            Ok(mut reply) => {
                if let Some(why) = hardware_unused {
                    self.counters.hardware_stamp_unused(why);
                }
                self.counters.rx_timestamp(source);
                if let Some(x) = &mut self.xleave {
                    let exchange = candidate.and_then(|request| {
                        let client = C::client(buf, &reply, from)?;
                        let synchronized = C::kind(&reply) == ReplyKind::Time;
                        let finished =
                            C::edit_ntp(buf, &reply, |ntp| x.table.finish(client, Some(request), ntp));
                        if finished.interleaved {
                            C::set_kind(&mut reply, ReplyKind::Interleaved { synchronized });
                        }
                        finished.remember.map(|receive| (client, receive))
                    });
                    x.push(exchange);
                }
                Some(reply)
            }
            Err(reason) => {
                match (reason, &self.symmetric) {
                    (FrameDrop::Ntp(respond::DropReason::Symmetric), Some(tx)) => {
                        if let Some((from, ntp)) = self.carrier.sender(buf, from) {
                            // The control thread takes receive times on CLOCK_REALTIME.
                            let realtime_ns = if C::CLOCK == libc::CLOCK_TAI {
                                stamp.ns - self.published.clock.tai_minus_utc as i64 * SECOND
                            } else {
                                stamp.ns
                            };
                            tx.offer(from, realtime_ns, ntp);
                        }
                    }
                    // Mode 6 (ntpq, check_ntp_peer): answered by the control thread, for
                    // loopback and the `monitor` prefixes only (the hand-off checks).
                    (FrameDrop::Ntp(respond::DropReason::Control), Some(tx)) => {
                        if let Some((from, ntp)) = self.carrier.sender(buf, from) {
                            tx.offer_query(from, ntp);
                        }
                    }
                    _ => {}
                }
                self.counters.dropped_frame(reason);
                None
            }
        }
    }

    /// T3 for the whole batch: one clock read, to be made right before the send call. Marked
    /// (lowest bit cleared) in interleaved mode, as every reply's transmit stamp is there.
    #[inline]
    pub fn transmit_time(&self) -> NtpTimestamp {
        let t3 = self.ntp_time(self.clock_ns());
        if self.xleave.is_some() {
            interleave::mark_transmit(t3)
        } else {
            t3
        }
    }

    /// The exchange of the batch's `k`-th reply, if it is a reply to an interleaving client
    /// whose real transmit time is wanted (always None with interleaved mode off).
    #[inline]
    pub fn exchange(&self, k: usize) -> Option<Exchange> {
        self.xleave.as_ref().and_then(|x| x.exchange(k))
    }

    /// Remembers `exchange`, whose reply carries the transmit time `t3`, until its client's
    /// next request; [`Pipeline::transmitted`] replaces `t3` with the real transmit time.
    #[inline]
    pub fn remember(&self, exchange: Exchange, t3: NtpTimestamp) {
        if let Some(x) = &self.xleave {
            x.table.save(exchange.0, exchange.1, t3);
        }
    }

    /// The reply of `exchange` left at `ns` (the carrier's clock), as `source` says: counted, and
    /// kept as its transmit time if the exchange is still remembered and `ns` plausible
    /// (`XleaveTable::update_transmit`). Returns whether it was kept.
    #[inline]
    pub fn transmitted(&mut self, exchange: Exchange, ns: i64, source: TxTimestampSource) -> bool {
        self.counters.tx_timestamp(source);
        let t = self.ntp_time(ns);
        self.xleave
            .as_ref()
            .is_some_and(|x| x.table.update_transmit(exchange.0, exchange.1, t))
    }

    /// T2 of a request and where it came from: its hardware stamp through the PHC line when
    /// there is one and the line is usable ([`ntp_from_phc`], the one conversion of a NIC stamp),
    /// else its software stamp, with why the hardware stamp was not used.
    #[inline]
    pub fn receive_time(&self, stamp: &RxStamp) -> (NtpTimestamp, RxTimestampSource, Option<HardwareUnused>) {
        let mut unused = None;
        if let Some(phc_ns) = stamp.hardware_ns {
            let clock = &self.published.clock;
            // The software stamp is the frame's arrival to within microseconds: the line's age
            // is judged against it, with no clock read.
            let now_tai = if C::CLOCK == libc::CLOCK_TAI {
                stamp.ns
            } else {
                stamp.ns.wrapping_add(clock.tai_minus_utc as i64 * SECOND)
            };
            match ntp_from_phc(self.phc.line(stamp.ifindex), clock, phc_ns, now_tai) {
                Ok(t2) => return (t2, RxTimestampSource::KernelHardware, None),
                Err(why) => unused = Some(why),
            }
        }
        (self.ntp_time(stamp.ns), stamp.source, unused)
    }

    /// Nanoseconds on the carrier's clock as served NTP time.
    #[inline]
    pub fn ntp_time(&self, ns: i64) -> NtpTimestamp {
        let clock = &self.published.clock;
        if C::CLOCK == libc::CLOCK_TAI {
            clock.ntp_from_tai(ns)
        } else {
            clock.ntp_from_realtime(ns)
        }
    }

    /// Writes T3 into a reply and records its response time (T3 − T2). Kiss-o'-Death replies
    /// carry no time of ours and NTS replies have theirs sealed in: both are left alone.
    #[inline]
    pub fn stamp(&mut self, buf: &mut [u8], reply: &C::Reply, t3: NtpTimestamp) {
        if !C::kind(reply).restampable() {
            return;
        }
        let t2 = C::stamp(buf, reply, t3);
        self.counters.response_time(t3.diff_nanos(t2));
    }

    /// The kernel took this reply.
    #[inline]
    pub fn sent(&mut self, reply: &C::Reply) {
        self.counters.replied(C::kind(reply), C::len(reply));
    }

    /// The kernel refused (or had no room for) a reply.
    #[inline]
    pub fn send_failed(&mut self) {
        self.counters.send_error();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::clock::phc::PhcLine;
    use crate::proto::clock::ClockParams;
    use crate::proto::metrics::counters;
    use crate::proto::state::{self, test_fixtures::synced};
    use crate::proto::wire::ntp::{Leap, Mode};
    use std::sync::Arc;

    fn published() -> Published {
        Published {
            server: synced(),
            clock: ClockParams::identity(37),
        }
    }

    fn request(mode: Mode) -> [u8; 48] {
        let mut buf = [0u8; 48];
        let mut p = ntp::Packet::new_unchecked(&mut buf[..]);
        p.set_leap_version_mode(Leap::NoWarning, 4, mode);
        p.set_transmit_timestamp(NtpTimestamp(0x1234));
        buf
    }

    #[test]
    fn a_batch_is_answered_stamped_counted_and_symmetric_packets_handed_over() {
        let (_writer, reader_state) = state::publish(published());
        let (writer, reader) = counters();
        let (tx, rx) = crate::sys::handoff::channel(&[]);
        let mut p = Pipeline::new(Datagrams, writer, Some(tx));
        p.begin(&reader_state, 3);
        let realtime = 1_700_000_000 * SECOND;
        let stamp = RxStamp {
            ns: realtime,
            source: RxTimestampSource::KernelSoftware,
            hardware_ns: Some(5_000_000_000),
            ifindex: None,
        };
        let mut client = request(Mode::Client);
        let reply = p
            .answer(&mut client, stamp, None, Ok(Admission::Serve))
            .expect("answered");
        let mut peer = request(Mode::SymmetricActive);
        let from: SocketAddr = "198.18.0.9:123".parse().unwrap();
        assert!(p
            .answer(&mut peer, stamp, Some(from), Ok(Admission::Serve))
            .is_none());
        let mut private = request(Mode::Private);
        assert!(p
            .answer(&mut private, stamp, None, Ok(Admission::Serve))
            .is_none());

        // T2 is the stamp on the carrier's clock; T3 is what stamp() writes.
        let t2 = published().clock.ntp_from_realtime(realtime);
        let packet = ntp::Packet::new_unchecked(&client[..]);
        assert_eq!(packet.receive_timestamp(), t2);
        let t3 = NtpTimestamp(t2.0 + (1 << 22));
        p.stamp(&mut client, &reply, t3);
        p.sent(&reply);
        assert_eq!(ntp::Packet::new_unchecked(&client[..]).transmit_timestamp(), t3);

        let handed = rx
            .packets
            .try_recv()
            .expect("the symmetric packet was handed over");
        assert_eq!((handed.from, handed.received_ns), (from, realtime));
        let s = reader.snapshot();
        assert_eq!(
            (s.requests, s.replies_time, s.hardware_stamps_unused_total()),
            (3, 1, 1)
        );
        // The socket path has no PHC line: the hardware stamp is unused for want of one.
        assert_eq!(s.hardware_stamps_unused[HardwareUnused::NoMapping.index()], 1);
        assert_eq!(s.dropped(), 2);
        assert_eq!(s.response_count(), 1);
    }

    /// A simulated PHC followed by the tracker, its line published: the pipeline turns a
    /// hardware stamp into the served time of the instant the NIC stamped, within the
    /// simulated read jitter; without a usable line it serves the software stamp and counts why.
    #[test]
    fn a_hardware_stamp_becomes_t2_through_the_published_phc_line() {
        use crate::proto::clock::seqlock::seqlock;
        use crate::sys::ptp::sim::{SharedPhc, SimConfig, SimulatedPhc};
        use crate::sys::ptp::tracker::PhcTracker;

        let tai_minus_utc = published().clock.tai_minus_utc;
        let sim = SharedPhc::new(SimConfig::default());
        let (line_writer, line_reader) = seqlock(PhcLine::NONE);
        let mut tracker = PhcTracker::new(Box::new(sim.clone()), line_writer);
        let (_writer, state) = state::publish(published());
        let (writer, reader) = counters();
        let mut p = Pipeline::new(Datagrams, writer, None).with_phc(Some(line_reader));

        // The NIC stamped a frame 30 µs before the kernel's software stamp.
        let answer = |p: &mut Pipeline<Datagrams, _>, sim: &SimulatedPhc| {
            p.begin(&state, 1);
            let nic_ns = sim.now_ns() - 30_000;
            let stamp = RxStamp {
                ns: sim.now_ns(),
                source: RxTimestampSource::KernelSoftware,
                hardware_ns: Some(sim.phc_at(nic_ns)),
                ifindex: None,
            };
            let mut buf = request(Mode::Client);
            p.answer(&mut buf, stamp, None, Ok(Admission::Serve))
                .expect("answered");
            let t2 = ntp::Packet::new_unchecked(&buf[..]).receive_timestamp();
            (
                t2,
                published().clock.ntp_from_realtime(nic_ns),
                published().clock.ntp_from_realtime(sim.now_ns()),
            )
        };

        // Before the tracker has enough samples: the software stamp, counted as too few.
        tracker.poll(tai_minus_utc);
        let (t2, _, software) = answer(&mut p, &sim.lock());
        assert_eq!(t2, software);
        assert_eq!(
            reader.snapshot().hardware_stamps_unused[HardwareUnused::TooFewSamples.index()],
            1
        );

        for _ in 0..20 {
            sim.lock().advance(250_000_000);
            tracker.poll(tai_minus_utc);
        }
        let (t2, truth, _) = answer(&mut p, &sim.lock());
        // 20 ns of simulated read jitter; an NTP timestamp's unit is 0.23 ns.
        assert!(
            t2.diff_nanos(truth).abs() <= 25,
            "{} ns off",
            t2.diff_nanos(truth)
        );
        let s = reader.snapshot();
        assert_eq!(s.rx_timestamp_count(RxTimestampSource::KernelHardware), 1);
        assert_eq!(s.rx_timestamp_count(RxTimestampSource::KernelSoftware), 1);

        // The device stops answering: past the line's age, the software stamp again, as stale.
        sim.lock().fail(Some(std::io::ErrorKind::NotFound));
        for _ in 0..50 {
            sim.lock().advance(250_000_000);
            tracker.poll(tai_minus_utc);
        }
        let (t2, _, software) = answer(&mut p, &sim.lock());
        assert_eq!(t2, software);
        let s = reader.snapshot();
        assert_eq!(s.hardware_stamps_unused[HardwareUnused::Stale.index()], 1);
        assert_eq!(s.hardware_stamps_unused_total(), 2);
    }

    /// The socket path serves every interface through one socket: a datagram from interface A
    /// maps through A's line, one from interface B (no PHC) or of unknown origin is counted
    /// `no_mapping` and served its software stamp.
    #[test]
    fn each_datagram_maps_through_the_line_of_its_interface() {
        use crate::proto::clock::seqlock::seqlock;
        use crate::sys::ptp::sim::{SharedPhc, SimConfig};
        use crate::sys::ptp::tracker::PhcTracker;
        const A: u32 = 4;
        const B: u32 = 5;

        let tai_minus_utc = published().clock.tai_minus_utc;
        let sim = SharedPhc::new(SimConfig::default());
        let (line_writer, line_reader) = seqlock(PhcLine::NONE);
        let mut tracker = PhcTracker::new(Box::new(sim.clone()), line_writer);
        for _ in 0..20 {
            sim.lock().advance(250_000_000);
            tracker.poll(tai_minus_utc);
        }
        let (_writer, state) = state::publish(published());
        let (writer, reader) = counters();
        let mut p = Pipeline::new(Datagrams, writer, None).with_phc_by_interface(vec![(A, line_reader)]);

        let mut answer = |ifindex: Option<u32>| {
            let sim = sim.lock();
            p.begin(&state, 1);
            let nic_ns = sim.now_ns() - 30_000;
            let stamp = RxStamp {
                ns: sim.now_ns(),
                source: RxTimestampSource::KernelSoftware,
                hardware_ns: Some(sim.phc_at(nic_ns)),
                ifindex,
            };
            let mut buf = request(Mode::Client);
            p.answer(&mut buf, stamp, None, Ok(Admission::Serve))
                .expect("answered");
            let t2 = ntp::Packet::new_unchecked(&buf[..]).receive_timestamp();
            (
                t2.diff_nanos(published().clock.ntp_from_realtime(nic_ns)),
                t2 == published().clock.ntp_from_realtime(sim.now_ns()),
            )
        };

        let (off, software) = answer(Some(A));
        assert!(off.abs() <= 25, "{off} ns off");
        assert!(!software);
        let (_, software) = answer(Some(B));
        assert!(software);
        let (_, software) = answer(None);
        assert!(software);
        let s = reader.snapshot();
        assert_eq!(s.rx_timestamp_count(RxTimestampSource::KernelHardware), 1);
        assert_eq!(s.rx_timestamp_count(RxTimestampSource::KernelSoftware), 2);
        assert_eq!(s.hardware_stamps_unused[HardwareUnused::NoMapping.index()], 2);
        assert_eq!(s.hardware_stamps_unused_total(), 2);
    }

    /// The AF_XDP carrier's stamps are on CLOCK_TAI: the same line, the same served time.
    #[test]
    fn frames_map_hardware_stamps_like_datagrams() {
        use crate::proto::clock::phc::{CrossStamp, PhcMapping};
        use crate::proto::clock::seqlock::seqlock;
        let tai = published().clock.tai_minus_utc as i64 * SECOND;
        let realtime = 1_800_000_000 * SECOND;
        // A PHC 5 µs ahead of CLOCK_TAI, precisely read.
        let mut m = PhcMapping::new(1_000.0);
        for i in 0..5 {
            let sys = realtime + tai + i * SECOND / 4;
            m.add(CrossStamp::precise(sys + 5_000, sys));
        }
        let line = PhcLine::of(&m, realtime + tai + SECOND);
        let (_w, state) = state::publish(published());
        let (_lw, lines) = seqlock(line);
        let mut frames: Pipeline<Frames, _> = Pipeline::new(
            Frames { ntp_port: 123 },
            crate::proto::metrics::record::NoRecord,
            None,
        )
        .with_phc(Some(lines.clone()));
        let mut datagrams =
            Pipeline::new(Datagrams, crate::proto::metrics::record::NoRecord, None).with_phc(Some(lines));
        frames.begin(&state, 1);
        datagrams.begin(&state, 1);
        let phc = realtime + tai + 2 * SECOND + 5_000;
        let on_tai = RxStamp {
            ns: realtime + tai + 2 * SECOND + 40_000,
            source: RxTimestampSource::Xdp,
            hardware_ns: Some(phc),
            ifindex: None,
        };
        let on_realtime = RxStamp {
            ns: realtime + 2 * SECOND + 40_000,
            source: RxTimestampSource::KernelSoftware,
            hardware_ns: Some(phc),
            ifindex: None,
        };
        let want = published().clock.ntp_from_realtime(realtime + 2 * SECOND);
        assert_eq!(
            frames.receive_time(&on_tai),
            (want, RxTimestampSource::KernelHardware, None)
        );
        assert_eq!(
            datagrams.receive_time(&on_realtime),
            (want, RxTimestampSource::KernelHardware, None)
        );
    }

    /// An untagged IPv4 Ethernet frame from 198.19.1.2:50123 to port 123 around `ntp`.
    fn frame_around(ntp: &[u8]) -> Vec<u8> {
        use crate::proto::wire::ethernet::{self, EtherType, EthernetAddress, Vlan};
        use crate::proto::wire::{ipv4, udp};
        let (src, dst) = (
            std::net::Ipv4Addr::new(198, 19, 1, 2),
            std::net::Ipv4Addr::new(198, 18, 0, 1),
        );
        let eth = ethernet::Repr {
            src_addr: EthernetAddress([2, 0, 0, 0, 0, 0x10]),
            dst_addr: EthernetAddress([2, 0, 0, 0, 0, 1]),
            vlan: Vlan::Untagged,
            ethertype: EtherType::IPV4,
        };
        let udp_len = udp::HEADER_LEN + ntp.len();
        let (l3, l4) = (eth.buffer_len(), eth.buffer_len() + ipv4::HEADER_LEN);
        let mut frame = vec![0u8; l4 + udp_len];
        eth.emit(&mut ethernet::Frame::new_unchecked(&mut frame[..]));
        let mut datagram = udp::Packet::new_unchecked(&mut frame[l4..]);
        udp::Repr {
            src_port: 50123,
            dst_port: 123,
            payload_len: ntp.len(),
        }
        .emit(&mut datagram);
        datagram.payload_mut().copy_from_slice(ntp);
        datagram.fill_checksum_v4(src, dst);
        ipv4::Repr {
            src_addr: src,
            dst_addr: dst,
            protocol: ipv4::IpProtocol::UDP,
            ttl: 64,
            dscp: 0,
            ecn: 0,
            ident: 1,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            options: &[],
            payload_len: udp_len,
        }
        .emit(&mut ipv4::Packet::new_unchecked(&mut frame[l3..]));
        frame
    }

    /// Three requests of one interleaving client (chronyd's `xleave`) through a pipeline on
    /// `carrier`, each wrapped by `wrap`, its reply's NTP header at `ntp_at`: every reply is
    /// marked; the first (origin zero) is basic and not remembered; the second (origin = our
    /// marked receive stamp) is basic and remembered; the third is interleaved, with origin = the
    /// request's receive field and transmit = the real transmit time of the second reply.
    /// Replies are never longer than requests, and `check` sees every reply.
    fn three_exchanges<C: Carrier>(
        carrier: C,
        from: Option<SocketAddr>,
        wrap: impl Fn(&[u8]) -> Vec<u8>,
        ntp_at: impl Fn(&C::Reply) -> usize,
        check: impl Fn(&[u8], &C::Reply),
    ) {
        use crate::proto::interleave::XleaveTable;
        let (_writer, reader_state) = state::publish(published());
        let (writer, reader) = counters();
        let table = Arc::new(XleaveTable::new(4, [7, 9]));
        let mut p = Pipeline::new(carrier, writer, None).with_interleave(Some(table), 4);
        assert!(p.interleaves());
        let mut request = request(Mode::Client);
        let mut sent_ns = Vec::new();
        let mut replies = Vec::new();
        for i in 0..3u64 {
            p.begin(&reader_state, 1);
            let mut buf = wrap(&request);
            let len = buf.len();
            let stamp = RxStamp {
                ns: p.clock_ns(),
                source: RxTimestampSource::KernelSoftware,
                hardware_ns: None,
                ifindex: None,
            };
            let reply = p
                .answer(&mut buf, stamp, from, Ok(Admission::Serve))
                .expect("answered");
            assert!(C::len(&reply) <= len);
            let t3 = p.transmit_time();
            p.stamp(&mut buf, &reply, t3);
            p.sent(&reply);
            check(&buf, &reply);
            let at = ntp_at(&reply);
            let packet = ntp::Packet::new_unchecked(&buf[at..at + ntp::HEADER_LEN]);
            assert_eq!(packet.receive_timestamp().0 & 1, 1, "marked");
            assert_eq!(packet.transmit_timestamp().0 & 1, 0, "marked");
            if let Some(exchange) = p.exchange(0) {
                p.remember(exchange, t3);
                // The real transmit time, a little after T3.
                let ns = p.clock_ns() + 1_000;
                assert!(p.transmitted(exchange, ns, TxTimestampSource::AfXdpKick));
                sent_ns.push((i, ns));
            }
            replies.push((
                C::kind(&reply),
                packet.origin_timestamp(),
                packet.transmit_timestamp(),
            ));
            // The client's next request, as chronyd builds it in interleaved mode: origin = our
            // receive stamp, receive = when it got our reply, transmit = its own clock.
            let mut next = ntp::Packet::new_unchecked(&mut request[..]);
            next.set_origin_timestamp(packet.receive_timestamp());
            next.set_receive_timestamp(NtpTimestamp(0xe000_0000_0000_1000 + (i << 20)));
            next.set_transmit_timestamp(NtpTimestamp(0xe000_0000_0000_2000 + (i << 20)));
        }
        assert_eq!(replies[0].0, ReplyKind::Time);
        assert_eq!(replies[1].0, ReplyKind::Time);
        assert_eq!(replies[2].0, ReplyKind::Interleaved { synchronized: true });
        assert_eq!(replies[2].1, NtpTimestamp(0xe000_0000_0000_1000 + (1 << 20)));
        // Only the second exchange was remembered (the first request was no candidate); the
        // third reply carries its real transmit time.
        assert_eq!(sent_ns.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1, 2]);
        let second = interleave::mark_transmit(p.ntp_time(sent_ns[0].1));
        assert_eq!(replies[2].2, second);
        let s = reader.snapshot();
        assert_eq!(s.replies_interleaved, 1);
        assert_eq!(s.tx_timestamp_count(TxTimestampSource::AfXdpKick), 2);
    }

    #[test]
    fn interleaved_mode_is_the_same_on_both_carriers() {
        let from: SocketAddr = "198.19.1.2:50123".parse().unwrap();
        three_exchanges(Datagrams, Some(from), |ntp| ntp.to_vec(), |_| 0, |_, _| {});
        three_exchanges(
            Frames { ntp_port: 123 },
            None,
            frame_around,
            |reply: &FrameReply| reply.ntp_offset,
            |buf, reply| {
                // The frame's checksums hold after the marks and the interleaved fields.
                let frame = &buf[..reply.len];
                let ip = crate::proto::wire::ipv4::Packet::new_checked(&frame[14..]).unwrap();
                assert!(ip.verify_checksum());
                let datagram = crate::proto::wire::udp::Packet::new_checked(&frame[34..]).unwrap();
                assert!(datagram.verify_checksum_v4(ip.src_addr(), ip.dst_addr()));
            },
        );
    }

    /// With interleaved mode off nothing is marked and no exchange is kept.
    #[test]
    fn without_interleaved_mode_replies_are_untouched() {
        let (_writer, reader_state) = state::publish(published());
        let mut p = Pipeline::new(Datagrams, crate::proto::metrics::record::NoRecord, None);
        assert!(!p.interleaves());
        p.begin(&reader_state, 1);
        let mut req = request(Mode::Client);
        ntp::Packet::new_unchecked(&mut req[..]).set_origin_timestamp(NtpTimestamp(3));
        let stamp = RxStamp {
            ns: 1_700_000_000 * SECOND,
            source: RxTimestampSource::KernelSoftware,
            hardware_ns: None,
            ifindex: None,
        };
        p.answer(&mut req, stamp, None, Ok(Admission::Serve)).unwrap();
        let t2 = published().clock.ntp_from_realtime(stamp.ns);
        assert_eq!(ntp::Packet::new_unchecked(&req[..]).receive_timestamp(), t2);
        assert_eq!(p.exchange(0), None);
    }

    #[test]
    fn frames_convert_tai_stamps_and_hand_off_in_realtime() {
        let p: Pipeline<Frames, _> = Pipeline::new(
            Frames { ntp_port: 123 },
            crate::proto::metrics::record::NoRecord,
            None,
        );
        assert_eq!(<Frames as Carrier>::CLOCK, libc::CLOCK_TAI);
        assert!(!p.hands_off());
    }
}

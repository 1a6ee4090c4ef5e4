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

use std::net::SocketAddr;

use crate::proto::admission::{Admitter, Verdict};
use crate::proto::auth::{has_mac, respond_mac, KeyTable};
use crate::proto::frame::{self, FrameDrop, FrameReply};
use crate::proto::metrics::record::Record;
use crate::proto::metrics::RxTimestampSource;
use crate::proto::nts::{is_nts, respond_nts, NtsContext, NtsOutcome, NtsRefusal, NtsResponder};
use crate::proto::respond::{self, Admission, DropReason, Reply, ReplyKind};
use crate::proto::state::{Published, ServerState, StateReader};
use crate::proto::wire::{ntp, NtpTimestamp};
use crate::sys::clock::read::read_clock_ns;
use crate::sys::handoff::SymmetricSender;

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
}

/// A request's receive time as the path found it: nanoseconds on the carrier's clock, where
/// the stamp came from, and whether a hardware stamp was there but could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxStamp {
    pub ns: i64,
    pub source: RxTimestampSource,
    pub hardware_unused: bool,
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
        }
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
        let rx_time = self.ntp_time(stamp.ns);
        let state = &self.published.server;
        let mut refused = None;
        let require_nts = self.require_nts;
        let keys = self.keys.as_deref();
        let result = if self.nts.is_none() && keys.is_none() {
            self.carrier.answer(buf, rx_time, admission, state)
        } else {
            let clock = &self.published.clock;
            let nts = self.nts.as_mut();
            self.carrier.answer_with(buf, |ntp| {
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
            })
        };
        if let Some(why) = refused {
            self.counters.nts_refused(why);
        }
        match result {
            Ok(reply) => {
                if stamp.hardware_unused {
                    self.counters.hardware_stamp_unused();
                }
                self.counters.rx_timestamp(stamp.source);
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

    /// T3 for the whole batch: one clock read, to be made right before the send call.
    #[inline]
    pub fn transmit_time(&self) -> NtpTimestamp {
        self.ntp_time(self.clock_ns())
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
    use crate::proto::clock::ClockParams;
    use crate::proto::metrics::counters;
    use crate::proto::state::{self, test_fixtures::synced};
    use crate::proto::wire::ntp::{Leap, Mode};

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
            hardware_unused: true,
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
        assert_eq!((s.requests, s.replies_time, s.hardware_stamps_unused), (3, 1, 1));
        assert_eq!(s.dropped(), 2);
        assert_eq!(s.response_count(), 1);
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

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
use crate::proto::clock::phc::{ntp_from_phc, HardwareUnused, PhcLine, PhcLineReader};
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

/// A request's receive time as the path found it: nanoseconds on the carrier's clock and where
/// that stamp came from, and the NIC's hardware stamp (its PHC's time), if one came. The
/// pipeline uses the hardware stamp when its interface's PHC mapping allows
/// ([`Pipeline::with_phc`]), else the software stamp, counting why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RxStamp {
    pub ns: i64,
    pub source: RxTimestampSource,
    pub hardware_ns: Option<i64>,
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
    /// The PHC-to-TAI line of this path's interface, when it has a PHC.
    phc: Option<PhcLineReader>,
    /// The line the current batch is answered with.
    phc_line: PhcLine,
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
            phc: None,
            phc_line: PhcLine::NONE,
        }
    }

    /// Hardware receive stamps are mapped to T2 by `phc`, the line the control thread publishes
    /// for this path's interface (None: they are counted as unused, `no_mapping`).
    pub fn with_phc(mut self, phc: Option<PhcLineReader>) -> Self {
        self.phc = phc;
        self
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
        if let Some(phc) = &self.phc {
            self.phc_line = phc.read();
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
                if let Some(why) = hardware_unused {
                    self.counters.hardware_stamp_unused(why);
                }
                self.counters.rx_timestamp(source);
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
            match ntp_from_phc(&self.phc_line, clock, phc_ns, now_tai) {
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
            hardware_ns: Some(5_000_000_000),
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
        };
        let on_realtime = RxStamp {
            ns: realtime + 2 * SECOND + 40_000,
            source: RxTimestampSource::KernelSoftware,
            hardware_ns: Some(phc),
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

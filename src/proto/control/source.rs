//! One upstream association: when to poll it, what its replies say, and how much to trust it.
//! Pure: every call takes the kernel time "now" in nanoseconds and returns what happened; the
//! engine turns that into packets, events and clock updates.

use std::net::SocketAddr;

use super::auth::{AuthStatus, MacTrailer, SourceAuth};
use super::filter::{ClockFilter, FilterOutput, Sample, PHI};
use super::packet::{self, Invalid};
use super::regress::{Estimate, Point, Regression};
use super::select::Candidate;
use super::spec::{SourceOptions, POLL_RANGE};
use crate::proto::clock::LeapScale;
use crate::proto::respond::KissCode;
use crate::proto::wire::ntp::{Leap, Mode, Repr};
use crate::proto::wire::{NtpShort, NtpTimestamp};

const SECOND: i64 = 1_000_000_000;
/// Requests in an initial burst, and the spacing between them.
pub const BURST_PACKETS: u8 = 8;
pub const BURST_SPACING: i64 = 2 * SECOND;
/// The root distance never counts as smaller than this (RFC 5905's MINDISP).
const MIN_DISTANCE: f64 = 0.005;
/// Poll adaptation: a sample within this many jitters of the prediction is "as expected".
const POLL_GATE: f64 = 4.0;
/// Expected samples in a row before the poll interval doubles; unexpected ones halve it sooner.
const POLL_UP_SCORE: i32 = 8;
const POLL_DOWN_SCORE: i32 = -4;

/// What the engine knows that a source needs to judge a packet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Context {
    /// The best frequency estimate of the kernel clock (s/s), and whether it was measured.
    pub freq_hint: f64,
    pub freq_known: bool,
    /// Our precision (log2 s).
    pub precision: i8,
    pub max_distance: f64,
    /// The leap second of the served time: upstream timestamps are moved onto the uniform
    /// scale the kernel clock is measured on.
    pub leap: LeapScale,
    /// Too close to a leap second to measure: a valid reply counts for reachability and its
    /// header is kept, but it gives no sample.
    pub hold: bool,
}

/// How the association talks to the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Association {
    /// We send mode 3 requests, it answers with mode 4.
    Client,
    /// Both sides send mode 1 on their own polls (symmetric active), each packet answering the
    /// other's last one.
    Symmetric,
    /// A reference clock read by a driver (`super::refclock`): nothing is sent, each poll takes
    /// the samples read since the last one.
    Refclock,
}

/// Why a source cannot be a candidate for selection right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unfit {
    /// Configured with `noselect`.
    NoSelect,
    /// No valid reply in the last eight polls.
    Unreachable,
    /// Reachable, but no usable measurement yet.
    NoData,
    /// It sent DENY or RSTR: we stopped asking.
    Denied(KissCode),
    /// Its reference ID is our own address: it is synchronized to us.
    Loop,
    /// It says it is not synchronized (leap 3 or stratum 0/16).
    Unsynchronized,
    /// Its root distance is above the maximum.
    TooFar,
    /// Its stratum is 15: ours would be 16, which means unsynchronized.
    StratumTooHigh,
    /// Its last sample was outside the time constraints (the engine judges that).
    OutsideConstraint,
}

impl Unfit {
    pub const fn label(self) -> &'static str {
        match self {
            Unfit::NoSelect => "noselect",
            Unfit::Unreachable => "unreachable",
            Unfit::NoData => "no measurement yet",
            Unfit::Denied(KissCode::Deny) => "denied access (KoD DENY)",
            Unfit::Denied(_) => "restricted access (KoD RSTR)",
            Unfit::Loop => "synchronized to us (timing loop)",
            Unfit::Unsynchronized => "not synchronized itself",
            Unfit::TooFar => "root distance above the maximum",
            Unfit::StratumTooHigh => "stratum 15, one short of unsynchronized",
            Unfit::OutsideConstraint => "outside the time constraints",
        }
    }
}

/// What a packet from the source did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Ignored: not a valid reply (it does not count for reachability).
    Invalid(Invalid),
    /// A Kiss-o'-Death. RATE: the poll interval is now `poll`. DENY/RSTR: the source is dropped.
    /// Another code: ignored, as RFC 5905 says unknown kisses are.
    Kiss {
        code: [u8; 4],
        known: Option<KissCode>,
        poll: i8,
    },
    /// A valid reply that cannot be used for time (`Unfit::Loop`, `Unsynchronized`, `TooFar`).
    Unusable(Unfit),
    /// A valid, usable reply that gives no sample: it came too close to a leap second.
    Held,
    /// A measurement. `estimate` is set when the filter handed it (or an older, better sample)
    /// on to the regression.
    Measured {
        sample: Sample,
        output: Option<FilterOutput>,
        estimate: Option<Estimate>,
    },
}

/// What the last valid header from the source said about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upstream {
    pub leap: Leap,
    pub stratum: u8,
    pub precision: i8,
    pub root_delay: NtpShort,
    pub root_dispersion: NtpShort,
    pub reference_id: [u8; 4],
}

/// One association.
#[derive(Debug, Clone)]
pub struct Source {
    pub addr: SocketAddr,
    pub association: Association,
    pub options: SourceOptions,
    /// Our own address as this source sees it, as a reference ID: a source whose reference ID is
    /// this is synchronized to us.
    own_refid: Option<[u8; 4]>,
    reach: u8,
    poll: i8,
    /// Lowest poll a RATE kiss left us.
    poll_floor: i8,
    poll_score: i32,
    next_poll: i64,
    burst_left: u8,
    /// Our last transmit timestamp (as sent) and the kernel time it stands for.
    outstanding: Option<(NtpTimestamp, i64)>,
    /// Symmetric mode: the transmit before `outstanding`, while unanswered. Peers that poll at
    /// the same interval can send within a flight time of each other, and then each packet
    /// answers the other's previous one (its origin is that one's transmit timestamp): a
    /// complete, authentic exchange all the same, which RFC 5905's check (origin = our last
    /// transmit only) would throw away round after round for as long as the two stay in step.
    crossed: Option<(NtpTimestamp, i64)>,
    /// The transmit timestamp of the last packet accepted from it (duplicate detection).
    last_transmit: NtpTimestamp,
    /// Symmetric mode: the peer's last transmit timestamp and when we received it (as our
    /// timestamps say), sent back in our next packet.
    peer_transmit: NtpTimestamp,
    peer_received: NtpTimestamp,
    denied: Option<KissCode>,
    /// Set by the last valid reply when it could not be used.
    unusable: Option<Unfit>,
    upstream: Option<Upstream>,
    filter: ClockFilter,
    regression: Regression,
    last_output: Option<FilterOutput>,
    /// Its key (`key N`): our packets carry its MAC, and its packets must.
    auth: Option<SourceAuth>,
}

impl Source {
    /// A new association, first polled at `now` (plus `phase`, to spread sources apart).
    pub fn new(
        addr: SocketAddr,
        association: Association,
        options: SourceOptions,
        own_refid: Option<[u8; 4]>,
        now: i64,
    ) -> Source {
        let minpoll = options.minpoll.clamp(*POLL_RANGE.start(), *POLL_RANGE.end());
        Source {
            addr,
            association,
            options,
            own_refid,
            reach: 0,
            poll: minpoll,
            poll_floor: minpoll,
            poll_score: 0,
            next_poll: now,
            burst_left: 0,
            outstanding: None,
            crossed: None,
            last_transmit: NtpTimestamp::ZERO,
            peer_transmit: NtpTimestamp::ZERO,
            peer_received: NtpTimestamp::ZERO,
            denied: None,
            unusable: None,
            upstream: None,
            filter: ClockFilter::new(),
            regression: Regression::new(),
            last_output: None,
            auth: None,
        }
    }

    /// Authenticates every packet to and from this source with `auth`.
    pub fn with_auth(mut self, auth: SourceAuth) -> Source {
        self.auth = Some(auth);
        self
    }

    /// Its authentication state, when it has a key.
    pub fn auth_status(&self) -> Option<AuthStatus> {
        self.auth.as_ref().map(|a| a.status())
    }

    /// The MAC our `header` to it carries, when it has a key.
    pub fn sign(&self, header: &[u8; 48]) -> Option<MacTrailer> {
        self.auth.as_ref().and_then(|a| a.sign(header))
    }

    pub fn reach(&self) -> u8 {
        self.reach
    }

    pub fn poll(&self) -> i8 {
        self.poll
    }

    pub fn upstream(&self) -> Option<&Upstream> {
        self.upstream.as_ref()
    }

    pub fn estimate(&self) -> Option<&Estimate> {
        self.regression.estimate()
    }

    pub fn denied(&self) -> Option<KissCode> {
        self.denied
    }

    pub fn next_poll(&self) -> i64 {
        if self.denied.is_some() {
            i64::MAX
        } else {
            self.next_poll
        }
    }

    pub fn is_due(&self, now: i64) -> bool {
        self.denied.is_none() && now >= self.next_poll
    }

    fn poll_interval(&self) -> i64 {
        SECOND << self.poll.clamp(0, 17)
    }

    /// Records that a packet with transmit timestamp `wire` (our clock's reading of kernel time
    /// `now`) goes out now, and schedules the next one. Returns true when the source just became
    /// unreachable (eight polls without a reply).
    pub fn transmitted(&mut self, wire: NtpTimestamp, now: i64) -> bool {
        self.crossed = match self.association {
            Association::Symmetric => self.outstanding,
            Association::Client | Association::Refclock => None,
        };
        self.outstanding = Some((wire, now));
        let mut lost = false;
        if self.burst_left > 0 {
            // Burst packets after the first do not count as polls of their own.
            self.burst_left -= 1;
        } else {
            let was = self.reach;
            self.reach <<= 1;
            lost = was != 0 && self.reach == 0;
            if self.reach == 0 && self.options.iburst && self.association == Association::Client {
                self.burst_left = BURST_PACKETS - 1;
            }
        }
        self.next_poll = now
            + if self.burst_left > 0 {
                BURST_SPACING
            } else {
                self.poll_interval()
            };
        lost
    }

    /// The request to send when polling in client mode.
    pub fn client_request(&self, transmit: NtpTimestamp) -> [u8; 48] {
        packet::client_request(self.poll, transmit)
    }

    /// The packet to send when polling in symmetric mode.
    pub fn symmetric_packet(&self, us: &packet::OurState, transmit: NtpTimestamp) -> [u8; 48] {
        packet::symmetric_packet(us, self.poll, self.peer_transmit, self.peer_received, transmit)
    }

    /// Takes a packet from the source received at kernel time `now` (stamped `received` on our
    /// clock, for symmetric replies).
    pub fn receive(&mut self, bytes: &[u8], now: i64, received: NtpTimestamp, ctx: &Context) -> Outcome {
        if let Some(auth) = self.auth.as_mut() {
            // Before anything else: an unauthenticated packet must not even move the state a
            // symmetric peer keeps for its next packet.
            if let Err(why) = auth.check(bytes) {
                return Outcome::Invalid(Invalid::Unauthenticated(why));
            }
        }
        let modes: &[Mode] = match self.association {
            Association::Client => &[Mode::Server],
            Association::Symmetric => &[Mode::SymmetricActive, Mode::SymmetricPassive],
            // A reference clock answers through its driver, never with a packet.
            Association::Refclock => return Outcome::Invalid(Invalid::BadMode),
        };
        let repr = match packet::parse(bytes, modes) {
            Ok(r) => r,
            Err(e) => return Outcome::Invalid(e),
        };
        if repr.transmit_timestamp == self.last_transmit {
            return Outcome::Invalid(Invalid::Duplicate);
        }
        if self.association == Association::Symmetric {
            // Whatever else it is, the peer's packet is what our next one answers.
            self.peer_transmit = repr.transmit_timestamp;
            self.peer_received = received;
        }
        let answers =
            |sent: Option<(NtpTimestamp, i64)>| sent.filter(|(wire, _)| repr.origin_timestamp == *wire);
        let (t1, crossed) = match (answers(self.outstanding), answers(self.crossed)) {
            (Some((_, t1)), _) => (t1, false),
            (None, Some((_, t1))) => (t1, true),
            (None, None) => return Outcome::Invalid(Invalid::Bogus),
        };
        if repr.receive_timestamp == NtpTimestamp::ZERO {
            return Outcome::Invalid(Invalid::ZeroTimestamp);
        }
        // From here on the packet is an authentic answer to our request. Each transmit is
        // answered once; an answer to our last one leaves nothing older to answer.
        if !crossed {
            self.outstanding = None;
        }
        self.crossed = None;
        self.last_transmit = repr.transmit_timestamp;

        if repr.stratum == 0 && repr.leap == Leap::Unsynchronized {
            return self.kiss(&repr, now);
        }
        self.reach |= 1;
        self.upstream = Some(Upstream {
            leap: repr.leap,
            stratum: repr.stratum,
            precision: repr.precision,
            root_delay: repr.root_delay,
            root_dispersion: repr.root_dispersion,
            reference_id: repr.reference_id,
        });
        if self.own_refid == Some(repr.reference_id) && repr.stratum > 1 {
            return self.unusable(Unfit::Loop);
        }
        if repr.leap == Leap::Unsynchronized || repr.stratum == 0 || repr.stratum >= 16 {
            return self.unusable(Unfit::Unsynchronized);
        }
        if repr.stratum >= 15 {
            return self.unusable(Unfit::StratumTooHigh);
        }
        if repr.root_delay.to_seconds_f64() / 2.0 + repr.root_dispersion.to_seconds_f64() > ctx.max_distance {
            return self.unusable(Unfit::TooFar);
        }
        self.unusable = None;
        if ctx.hold {
            return Outcome::Held;
        }

        let (offset, delay, mid) = packet::measure(
            t1,
            ctx.leap.uniform_from_utc(repr.receive_timestamp),
            ctx.leap.uniform_from_utc(repr.transmit_timestamp),
            now,
        );
        let ours = 2f64.powi(ctx.precision as i32);
        let theirs = 2f64.powi(repr.precision.clamp(-60, 10) as i32);
        let delay = delay.max(ours);
        let sample = Sample {
            time: mid,
            offset,
            delay,
            dispersion: ours + theirs + PHI * delay,
        };
        self.take_sample(sample, now, ctx)
    }

    /// A reference clock's sample of one poll (see `super::refclock`), taken at kernel time
    /// `now`: the reference counts as reached, `upstream` is what it says of itself (stratum 0,
    /// its refid and leap warning), and the sample goes through the same filter and regression
    /// as a network source's.
    pub fn reference_sample(
        &mut self,
        sample: Sample,
        upstream: Upstream,
        now: i64,
        ctx: &Context,
    ) -> Outcome {
        self.reach |= 1;
        self.upstream = Some(upstream);
        self.unusable = None;
        if ctx.hold {
            return Outcome::Held;
        }
        let ours = 2f64.powi(ctx.precision as i32);
        let sample = Sample {
            delay: sample.delay.max(ours),
            dispersion: sample.dispersion + ours,
            ..sample
        };
        self.take_sample(sample, now, ctx)
    }

    /// A measurement into the filter, the regression and the poll adaptation.
    fn take_sample(&mut self, sample: Sample, now: i64, ctx: &Context) -> Outcome {
        let Sample {
            time: mid,
            offset,
            delay,
            ..
        } = sample;
        let ours = 2f64.powi(ctx.precision as i32);
        let jumped = self.regression.is_jump(&Point {
            time: mid,
            offset,
            delay,
        });
        if jumped {
            // True time does not jump: the source did. Start its filter and line afresh from
            // this sample, so that it is judged (and shown) at the offset it now has.
            self.filter.clear();
            self.regression.clear();
        }
        let predicted = self.regression.estimate().map(|e| e.offset_at(mid));
        let poll_secs = self.poll_interval() as f64 * 1e-9;
        let fitted = self
            .regression
            .estimate()
            .filter(|e| e.points >= 3)
            .map(|e| e.frequency);
        let output = self.filter.add(
            sample,
            now,
            fitted.or(ctx.freq_known.then_some(ctx.freq_hint)),
            poll_secs,
            ours,
        );
        let estimate = output.map(|o| {
            self.last_output = Some(o);
            let point = Point {
                time: o.sample.time,
                offset: o.sample.offset,
                delay: o.sample.delay,
            };
            self.regression.add(point, ctx.freq_hint)
        });
        if let (Some(predicted), Some(e)) = (predicted, self.regression.estimate()) {
            self.adapt_poll(
                (offset - predicted).abs(),
                self.filter.jitter().max(e.residual_sd),
            );
        }
        Outcome::Measured {
            sample,
            output,
            estimate,
        }
    }

    fn unusable(&mut self, why: Unfit) -> Outcome {
        self.unusable = Some(why);
        Outcome::Unusable(why)
    }

    fn kiss(&mut self, repr: &Repr, now: i64) -> Outcome {
        let code = repr.reference_id;
        let known = KissCode::ALL.into_iter().find(|k| k.code() == code);
        match known {
            Some(KissCode::Rate) => {
                // Slow down: at least the server's poll, one step above ours, no burst.
                self.poll = (self.poll.max(repr.poll) + 1).clamp(*POLL_RANGE.start(), *POLL_RANGE.end());
                self.poll_floor = self.poll;
                self.burst_left = 0;
                self.next_poll = now + self.poll_interval();
            }
            Some(k) => {
                self.denied = Some(k);
                self.reach = 0;
            }
            None => {}
        }
        Outcome::Kiss {
            code,
            known,
            poll: self.poll,
        }
    }

    /// Lengthens the poll interval while samples land where the line predicts them, shortens it
    /// when they do not (RFC 5905's poll adjustment, per source).
    fn adapt_poll(&mut self, error: f64, jitter: f64) {
        let maxpoll = self.options.maxpoll.max(self.poll_floor);
        let minpoll = self.options.minpoll.max(self.poll_floor);
        if error <= POLL_GATE * jitter {
            self.poll_score += 1;
            if self.poll_score >= POLL_UP_SCORE {
                self.poll_score = 0;
                self.poll = (self.poll + 1).min(maxpoll);
            }
        } else {
            self.poll_score -= 2;
            if self.poll_score <= POLL_DOWN_SCORE {
                self.poll_score = 0;
                self.poll = (self.poll - 1).max(minpoll);
            }
        }
    }

    /// The kernel clock was stepped and/or its frequency changed (see `Regression::clock_changed`).
    pub fn clock_changed(&mut self, at: i64, step: f64, dfreq: f64, hint: f64) {
        self.regression.clock_changed(at, step, dfreq, hint);
        // The filter's stages are single measurements against the old clock: start it afresh.
        self.filter.clear();
        self.outstanding = None;
    }

    /// Whether the source could take part in selection now, and as what.
    pub fn candidate(&self, index: usize, now: i64, max_distance: f64) -> Result<Candidate, Unfit> {
        if let Some(k) = self.denied {
            return Err(Unfit::Denied(k));
        }
        if self.reach == 0 {
            return Err(if self.upstream.is_some() {
                Unfit::Unreachable
            } else {
                Unfit::NoData
            });
        }
        if let Some(why) = self.unusable {
            return Err(why);
        }
        let (Some(up), Some(out), Some(est)) = (self.upstream, self.last_output, self.regression.estimate())
        else {
            return Err(Unfit::NoData);
        };
        let age = ((now - out.sample.time) as f64 * 1e-9).max(0.0);
        // Once a line is fitted, its residuals are the honest jitter: the filter's own compares
        // samples across the whole window, drift and all.
        let jitter = if est.points >= 3 {
            est.residual_sd
        } else {
            out.jitter
        };
        let distance = (up.root_delay.to_seconds_f64() + out.sample.delay).max(MIN_DISTANCE) / 2.0
            + up.root_dispersion.to_seconds_f64()
            + out.dispersion
            + PHI * age
            + jitter;
        if distance > max_distance {
            return Err(Unfit::TooFar);
        }
        if self.options.noselect {
            return Err(Unfit::NoSelect);
        }
        Ok(Candidate {
            index,
            offset: est.offset_at(now),
            frequency: est.frequency,
            frequency_known: est.points >= 3,
            root_distance: distance,
            jitter,
            stratum: up.stratum,
            prefer: self.options.prefer,
        })
    }

    /// The measurement the filter last handed on (for the published root delay and dispersion).
    pub fn last_output(&self) -> Option<&FilterOutput> {
        self.last_output.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: i64 = 1_000_000;
    /// 2026-12-03 on the kernel's clock; both peers' clocks agree.
    const START: i64 = 1_796_266_740 * SECOND;

    fn ctx() -> Context {
        Context {
            freq_hint: 0.0,
            freq_known: false,
            precision: -20,
            max_distance: 1.0,
            leap: LeapScale::default(),
            hold: false,
        }
    }

    fn us(stratum: u8) -> packet::OurState {
        packet::OurState {
            leap: Leap::NoWarning,
            stratum,
            precision: -20,
            root_delay: NtpShort::ZERO,
            root_dispersion: NtpShort::ZERO,
            reference_id: *b"LOCL",
            reference_time: NtpTimestamp::ZERO,
        }
    }

    fn wire(t: i64) -> NtpTimestamp {
        NtpTimestamp::from_unix_nanos(t as i128)
    }

    fn peer(ip: &str) -> Source {
        let options = SourceOptions {
            minpoll: 0,
            maxpoll: 0,
            ..SourceOptions::default()
        };
        Source::new(
            format!("{ip}:123").parse().unwrap(),
            Association::Symmetric,
            options,
            None,
            START,
        )
    }

    /// `from` sends at `t`; returns the packet.
    fn send(from: &mut Source, t: i64) -> [u8; 48] {
        let p = from.symmetric_packet(&us(1), wire(t));
        from.transmitted(wire(t), t);
        p
    }

    fn measured(o: &Outcome) -> bool {
        matches!(o, Outcome::Measured { .. })
    }

    #[test]
    fn peers_polling_in_step_measure_each_other_although_their_packets_cross() {
        // Both send within 10 µs every second; a packet takes 50 µs: every packet crosses the
        // other side's packet in flight, so it answers that side's previous transmit.
        let mut a = peer("198.18.0.10");
        let mut b = peer("198.18.0.9");
        let (mut a_measured, mut b_measured) = (0, 0);
        for round in 0..6 {
            let t = START + round * SECOND;
            let pa = send(&mut a, t);
            let pb = send(&mut b, t + MS / 100);
            let at_b = t + MS / 20;
            let at_a = t + MS / 100 + MS / 20;
            b_measured += measured(&b.receive(&pa, at_b, wire(at_b), &ctx())) as u32;
            a_measured += measured(&a.receive(&pb, at_a, wire(at_a), &ctx())) as u32;
        }
        // The first round has nothing to answer; every later one is a measurement.
        assert_eq!((a_measured, b_measured), (5, 5));
        assert_eq!(a.reach() & 0b11111, 0b11111);
    }

    #[test]
    fn each_transmit_is_answered_once_and_nothing_older_than_the_one_before() {
        let mut a = peer("198.18.0.10");
        let mut b = peer("198.18.0.9");
        // A sends; B hears it, then B sends twice without A sending again.
        let pa1 = send(&mut a, START);
        assert!(!measured(&b.receive(&pa1, START + MS, wire(START + MS), &ctx())));
        let pb1 = send(&mut b, START + 2 * MS);
        let replayed = pb1;
        assert!(measured(&a.receive(
            &pb1,
            START + 3 * MS,
            wire(START + 3 * MS),
            &ctx()
        )));
        // The same packet again: a duplicate, not a second measurement.
        assert!(matches!(
            a.receive(&replayed, START + 4 * MS, wire(START + 4 * MS), &ctx()),
            Outcome::Invalid(_)
        ));
        // A sends twice more; a packet answering A's first transmit (now two back) is bogus.
        send(&mut a, START + SECOND);
        send(&mut a, START + 2 * SECOND);
        let stale = packet::symmetric_packet(
            &us(1),
            0,
            wire(START),
            wire(START + MS),
            wire(START + 2 * SECOND + MS),
        );
        assert_eq!(
            a.receive(
                &stale,
                START + 2 * SECOND + 2 * MS,
                wire(START + 2 * SECOND + 2 * MS),
                &ctx()
            ),
            Outcome::Invalid(Invalid::Bogus)
        );
    }

    #[test]
    fn a_client_accepts_only_the_answer_to_its_last_request() {
        let mut s = Source::new(
            "198.18.0.1:123".parse().unwrap(),
            Association::Client,
            SourceOptions::default(),
            None,
            START,
        );
        s.transmitted(wire(START), START);
        s.transmitted(wire(START + SECOND), START + SECOND);
        // A server's answer to the first request, late.
        let mut reply = [0u8; 48];
        let repr = crate::proto::wire::ntp::Repr {
            leap: Leap::NoWarning,
            version: 4,
            mode: crate::proto::wire::ntp::Mode::Server,
            stratum: 1,
            poll: 0,
            precision: -20,
            root_delay: NtpShort::ZERO,
            root_dispersion: NtpShort::ZERO,
            reference_id: *b"GPS\0",
            reference_timestamp: wire(START),
            origin_timestamp: wire(START),
            receive_timestamp: wire(START + MS),
            transmit_timestamp: wire(START + MS),
        };
        repr.emit(&mut crate::proto::wire::ntp::Packet::new_unchecked(
            &mut reply[..],
        ));
        let now = START + SECOND + MS;
        assert_eq!(
            s.receive(&reply, now, wire(now), &ctx()),
            Outcome::Invalid(Invalid::Bogus)
        );
    }
}

//! One worker thread: paces its share of each step's requests, sends them through its transport,
//! matches and classifies every reply, and hands the step's statistics to the main thread.
//!
//! The loop neither allocates nor locks: requests are written into the transport's buffers,
//! replies are judged in place, and the statistics are plain counters and fixed-size histograms.

use std::io;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

use strata::sys::clock::read::read_clock_ns;

use crate::classify::{self, Invalid, Verdict};
use crate::matcher::{Match, Matcher};
use crate::pacing::{Gaps, Pacer, Rng};
use crate::progress::Live;
use crate::request::RequestTemplate;
use crate::stats::StepStats;
use crate::transport::{Reply, Transport};

/// After every request of a step is answered, replies are still read this long, so that a
/// duplicate sent right behind the first copy is counted in the step it belongs to.
const DUPLICATE_GRACE_NS: i64 = 20_000_000;
/// How long to wait before retrying a send the kernel refused (full queue).
const SEND_RETRY_NS: i64 = 20_000;
/// The NTP version of the requests, which replies must carry too.
const VERSION: u8 = 4;

/// What the main thread tells a worker.
#[derive(Debug, Clone)]
pub enum Command {
    Step(StepOrder),
    Quit,
}

/// One step, as one worker runs it.
#[derive(Debug, Clone, Copy)]
pub struct StepOrder {
    pub index: usize,
    /// When the step starts, CLOCK_MONOTONIC ns (the same instant for every worker).
    pub start_ns: i64,
    pub duration_ns: i64,
    /// This worker's share of the rate, requests/s.
    pub rate: f64,
    /// This worker's share of the step's count.
    pub limit: u64,
    /// Shifts this worker's schedule so that the workers' requests interleave evenly.
    pub phase_ns: i64,
}

/// What a worker tells the main thread.
pub enum Event {
    /// A step is done (or failed).
    StepDone {
        worker: usize,
        step: usize,
        result: Result<Box<StepStats>, String>,
    },
}

/// The settings every worker shares.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub index: usize,
    pub nonce: u16,
    pub core: Option<usize>,
    pub poisson: bool,
    pub timeout_ns: i64,
    /// Most requests in flight the matcher must track.
    pub in_flight: usize,
    pub template: RequestTemplate,
}

/// A worker's state between steps.
pub struct Worker<T: Transport> {
    settings: WorkerSettings,
    transport: T,
    matcher: Matcher,
    stats: StepStats,
    rng: Rng,
    live: Arc<Live>,
}

impl<T: Transport> Worker<T> {
    pub fn new(settings: WorkerSettings, transport: T, live: Arc<Live>) -> Worker<T> {
        let matcher = Matcher::new(
            settings.nonce,
            settings.index as u8,
            settings.in_flight,
            settings.timeout_ns,
        );
        let seed = read_clock_ns(libc::CLOCK_MONOTONIC) as u64 ^ ((settings.index as u64) << 56);
        Worker {
            settings,
            transport,
            matcher,
            stats: StepStats::default(),
            rng: Rng::new(seed),
            live,
        }
    }

    /// Serves commands until told to quit (or the main thread is gone).
    pub fn serve(mut self, commands: Receiver<Command>, events: Sender<Event>) {
        while let Ok(Command::Step(order)) = commands.recv() {
            let result = self
                .run_step(&order)
                .map(|()| Box::new(self.stats.clone()))
                .map_err(|e| format!("worker {}: {e}", self.settings.index));
            let event = Event::StepDone {
                worker: self.settings.index,
                step: order.index,
                result,
            };
            if events.send(event).is_err() {
                break;
            }
        }
    }

    /// Runs one step: send on schedule until the step ends, then keep receiving until every
    /// request is answered (plus a short grace for duplicates) or the timeout has passed.
    pub fn run_step(&mut self, order: &StepOrder) -> io::Result<()> {
        self.stats.reset();
        self.live.publish(0, 0);
        let gaps = if self.settings.poisson {
            Gaps::Exponential(Rng::new(self.rng.next_u64()))
        } else {
            Gaps::Constant
        };
        let start_ns = order.start_ns + order.phase_ns;
        let mut pacer = Pacer::new(start_ns, order.duration_ns, order.rate, order.limit, gaps);
        let first_seq = self.matcher.next_seq();
        let flows = self.transport.flows();
        let batch = self.transport.batch_capacity();
        let timeout_ns = self.settings.timeout_ns;

        let mut owed = 0usize;
        let mut flow = 0usize;
        let mut last_send_ns = start_ns;
        let mut sending = true;
        let mut drain_end_ns = i64::MAX;
        let mut grace_end_ns = i64::MAX;
        loop {
            let now = read_clock_ns(libc::CLOCK_MONOTONIC);
            if sending {
                owed += pacer.release(now, batch - owed);
                if owed > 0 {
                    let sent = self.send_batch(flow, owed)?;
                    if sent > 0 {
                        owed -= sent;
                        last_send_ns = read_clock_ns(libc::CLOCK_MONOTONIC);
                        flow = (flow + 1) % flows;
                    }
                }
                if (pacer.exhausted() && owed == 0) || now >= pacer.end_ns() {
                    sending = false;
                    drain_end_ns = last_send_ns.max(now) + timeout_ns;
                }
            }
            if !sending {
                if self.stats.answered >= self.stats.sent && grace_end_ns == i64::MAX {
                    grace_end_ns = now + DUPLICATE_GRACE_NS.min(timeout_ns);
                }
                if now >= drain_end_ns.min(grace_end_ns) {
                    break;
                }
            }
            let wait_ns = if !sending {
                drain_end_ns.min(grace_end_ns) - now
            } else if owed > 0 {
                SEND_RETRY_NS
            } else {
                pacer.next_due_ns() - now
            };
            self.receive(wait_ns.max(0), first_seq)?;
        }
        self.stats.achieved_rate = achieved_rate(self.stats.sent, start_ns, last_send_ns, order);
        self.live.publish(self.stats.sent, self.stats.received);
        Ok(())
    }

    /// Sends up to `count` requests from `flow`; returns how many went out.
    fn send_batch(&mut self, flow: usize, count: usize) -> io::Result<usize> {
        let Worker {
            transport,
            matcher,
            settings,
            ..
        } = self;
        let template = &settings.template;
        let sent_ns = read_clock_ns(libc::CLOCK_REALTIME);
        let sent = transport.send(flow, count, &mut |i, buf| template.write(buf, matcher.cookie(i)))?;
        matcher.commit(sent, flow, sent_ns);
        self.stats.sent += sent as u64;
        self.live.publish(self.stats.sent, self.stats.received);
        Ok(sent)
    }

    /// Waits up to `wait_ns` for replies and accounts for each.
    fn receive(&mut self, wait_ns: i64, first_seq: u64) -> io::Result<()> {
        let Worker {
            transport,
            matcher,
            stats,
            settings,
            ..
        } = self;
        let nts = settings_nts(settings);
        let n = transport.receive(wait_ns, &mut |reply| {
            account(matcher, stats, first_seq, nts, reply)
        })?;
        if n > 0 {
            self.live.publish(self.stats.sent, self.stats.received);
        }
        Ok(())
    }
}

/// The NTS keys replies are verified with, for NTS runs.
fn settings_nts(settings: &WorkerSettings) -> Option<&strata::proto::nts::SessionKeys> {
    settings.template.session().map(|s| &s.keys)
}

/// Classifies one reply into the step's statistics; an NTS reply is verified first (its
/// identifier and authenticator), a NAK counted as a KoD NTSN.
#[inline]
fn account(
    matcher: &mut Matcher,
    stats: &mut StepStats,
    first_seq: u64,
    nts: Option<&strata::proto::nts::SessionKeys>,
    reply: Reply<'_>,
) {
    stats.received += 1;
    if !reply.from_target {
        stats.invalid[Invalid::WrongSource.index()] += 1;
        return;
    }
    let origin = match classify::origin(reply.payload) {
        Ok(origin) => origin,
        Err(reason) => {
            stats.invalid[reason.index()] += 1;
            return;
        }
    };
    let sent_ns = match matcher.lookup(origin, reply.flow, reply.rx_ns) {
        Match::First { seq, sent_ns } if seq >= first_seq => sent_ns,
        // An earlier step's request: its step drained for the whole timeout, so this is late.
        Match::First { .. } | Match::Late => {
            stats.late += 1;
            return;
        }
        Match::Duplicate => {
            stats.duplicate += 1;
            return;
        }
        Match::Unknown => {
            stats.invalid[Invalid::UnknownOrigin.index()] += 1;
            return;
        }
        Match::WrongClient => {
            stats.invalid[Invalid::WrongClient.index()] += 1;
            return;
        }
    };
    stats.answered += 1;
    if let Some(keys) = nts {
        use strata::proto::nts::client::{verify_count, ReplyError};
        match verify_count(reply.payload, &crate::request::nts_uid(origin), keys) {
            Ok(_) => {}
            // The NAK: judged below as the KoD it is.
            Err(ReplyError::Nak) => {}
            Err(_) => {
                stats.invalid[Invalid::NotAuthenticated.index()] += 1;
                return;
            }
        }
    }
    match classify::judge(reply.payload, VERSION) {
        Verdict::Valid { t2, t3 } => {
            // The server's timestamps, unfolded around our receive time (NTP eras).
            let pivot = reply.rx_ns as i128;
            let t2 = t2.to_unix_nanos(pivot) as i64;
            let t3 = t3.to_unix_nanos(pivot) as i64;
            stats.record_valid(sent_ns, t2, t3, reply.rx_ns);
        }
        Verdict::Kiss(slot) => stats.kod[slot] += 1,
        Verdict::Invalid(reason) => stats.invalid[reason.index()] += 1,
    }
}

/// Requests per second from the step's start to the last send: with every request on time this
/// is the offered rate, and a generator that falls behind shows it here.
fn achieved_rate(sent: u64, start_ns: i64, last_send_ns: i64, order: &StepOrder) -> f64 {
    let elapsed = (last_send_ns - start_ns) as f64 / 1e9;
    if sent > 1 && elapsed > 0.0 {
        (sent - 1) as f64 / elapsed
    } else {
        sent as f64 * 1e9 / order.duration_ns as f64
    }
}

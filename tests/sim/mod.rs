//! The control core against simulated upstreams, in virtual time: no sleeping, no sockets, a
//! seeded random generator, so every run is the same. The local kernel clock runs with a
//! frequency error and starts off by a set amount; upstreams answer through `respond()` (the
//! same function strata serves with) over a network with configurable delays and loss, and
//! their clocks can be offset, jump at set times, or drift. The error of the served time against
//! true time is sampled every 8 s.
//!
//! Delay jitter: each one-way delay is a fixed base plus an exponentially distributed excess
//! whose mean (and standard deviation) is the stated jitter, unless a test says otherwise.
#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::net::SocketAddr;

use strata::proto::clock::ClockParams;
use strata::proto::control::engine::{Engine, EngineConfig, SourceId, DEFAULT_MAX_DISTANCE};
use strata::proto::control::events::Event;
use strata::proto::control::guard::StepLimits;
use strata::proto::control::leapplan::LeapSettings;
use strata::proto::control::source::Association;
use strata::proto::control::spec::SourceOptions;
use strata::proto::respond::{respond, Admission, KissCode};
use strata::proto::state::{ServerState, UnsyncPolicy};
use strata::proto::wire::ntp::{Leap, Packet};
use strata::proto::wire::{NtpShort, NtpTimestamp};

pub const S: i64 = 1_000_000_000;
pub const MS: i64 = 1_000_000;
pub const US: i64 = 1_000;
/// True time at the start of every run (Unix nanoseconds, late 2023).
pub const TRUE0: i64 = 1_700_000_000 * S;

/// splitmix64: tiny, seeded, good enough for delays.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in (0, 1].
    pub fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }
    pub fn exp(&mut self, mean: f64) -> f64 {
        -mean * self.uniform().ln()
    }
}

#[derive(Clone, Copy)]
pub enum Jitter {
    /// Exponential excess with this mean (ns).
    Exp(f64),
    /// Pareto excess (heavy tail): scale (ns) and shape; shape 1.5 has a finite mean and an
    /// infinite variance.
    Pareto(f64, f64),
}

impl Jitter {
    pub fn draw(self, rng: &mut Rng) -> i64 {
        match self {
            Jitter::Exp(mean) => rng.exp(mean) as i64,
            Jitter::Pareto(scale, shape) => (scale * (rng.uniform().powf(-1.0 / shape) - 1.0)) as i64,
        }
    }
}

#[derive(Clone, Copy)]
pub struct Path {
    pub base: i64,
    pub jitter: Jitter,
}

#[derive(Clone, Copy, PartialEq)]
pub enum Behaviour {
    Serve,
    Kiss(KissCode),
}

#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    /// The upstream's clock minus true time, from the start...
    pub offset: i64,
    /// ...changed to the second figure from true time (since start) the first on...
    pub jumps: Vec<(i64, i64)>,
    /// ...and drifting by this much per second of true time (s/s).
    pub drift: f64,
    pub behaviour: Behaviour,
    pub out: Path,
    pub back: Path,
    pub loss: f64,
    /// True time (since start) from which it never answers again.
    pub vanish_at: Option<i64>,
    pub stratum: u8,
    pub reference_id: [u8; 4],
    pub requests: Vec<i64>,
    /// A leap second it performs as the kernel does: the uniform-scale Unix second at which it
    /// steps back (+1, inserted: 00:00:00 read before the leap) or forward (-1, deleted:
    /// 23:59:59), announcing it from the start of that UTC day.
    pub leap: Option<(i64, i8)>,
}

impl Upstream {
    /// Its clock minus true time at true time `t` since start.
    pub fn offset_at(&self, t: i64) -> i64 {
        let base = self
            .jumps
            .iter()
            .rfind(|(at, _)| *at <= t)
            .map_or(self.offset, |&(_, o)| o);
        base + (self.drift * t as f64) as i64
    }

    /// How far its UTC is behind its uniform clock at uniform Unix ns `uniform` (ns).
    pub fn leap_shift(&self, uniform: i64) -> i64 {
        match self.leap {
            Some((step, delta)) if uniform >= step * S => delta as i64 * S,
            _ => 0,
        }
    }

    /// The leap indicator it sends at uniform Unix ns `uniform`.
    pub fn announces(&self, uniform: i64) -> Leap {
        match self.leap {
            Some((step, delta)) => {
                let midnight = step - (delta as i64).min(0);
                if uniform >= (midnight - 86_400) * S && uniform < step * S {
                    if delta > 0 {
                        Leap::AddSecond
                    } else {
                        Leap::DeleteSecond
                    }
                } else {
                    Leap::NoWarning
                }
            }
            None => Leap::NoWarning,
        }
    }

    pub fn new(ip: &str, jitter_ns: f64) -> Upstream {
        let path = Path {
            base: 500 * US,
            jitter: Jitter::Exp(jitter_ns),
        };
        Upstream {
            addr: SocketAddr::new(ip.parse().unwrap(), 123),
            offset: 0,
            jumps: Vec::new(),
            drift: 0.0,
            behaviour: Behaviour::Serve,
            out: path,
            back: path,
            loss: 0.0,
            vanish_at: None,
            stratum: 1,
            reference_id: *b"GPS\0",
            requests: Vec::new(),
            leap: None,
        }
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub enum Arrival {
    AtServer { upstream: usize, packet: [u8; 48] },
    AtClient { source: usize, packet: [u8; 48] },
}

pub struct Sim {
    /// True time at the start (Unix ns, uniform scale).
    pub true0: i64,
    /// Kernel clock: `TRUE0 + start_error + t * (1 + skew)` at true time `TRUE0 + t`.
    pub skew: f64,
    pub start_error: i64,
    pub engine: Engine,
    pub upstreams: Vec<Upstream>,
    pub by_source: BTreeMap<SourceId, usize>,
    pub queue: BinaryHeap<Reverse<(i64, u64, Arrival)>>,
    pub seq: u64,
    pub rng: Rng,
    pub t: i64,
    /// (true time since start, served minus true in ns), every 8 s.
    pub errors: Vec<(i64, i64)>,
    /// (true time since start, whether replies carry synchronized time), every 8 s.
    pub synced: Vec<(i64, bool)>,
    pub next_sample: i64,
    pub events: Vec<(i64, Event)>,
}

pub struct Setup {
    pub seed: u64,
    pub skew_ppm: f64,
    pub start_error: i64,
    pub poll: i8,
    pub local_stratum: Option<u8>,
    pub minsources: usize,
    pub limits: StepLimits,
    pub leap: LeapSettings,
    /// True time at the start (Unix nanoseconds on the uniform scale: no leap seconds).
    pub true0: i64,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            seed: 1,
            skew_ppm: 50.0,
            start_error: 300 * MS,
            poll: 6,
            local_stratum: None,
            minsources: 1,
            limits: StepLimits::default(),
            leap: LeapSettings::default(),
            true0: TRUE0,
        }
    }
}

pub fn engine_config(setup: &Setup) -> EngineConfig {
    EngineConfig {
        local_stratum: setup.local_stratum,
        unsync_policy: UnsyncPolicy::Answer,
        max_distance: DEFAULT_MAX_DISTANCE,
        minsources: setup.minsources,
        step_threshold: 0.128,
        limits: setup.limits,
        precision: -24,
        tai_minus_utc: 0,
        leap: setup.leap,
    }
}

impl Sim {
    pub fn new(setup: Setup, upstreams: Vec<Upstream>) -> Sim {
        let kernel0 = setup.true0 + setup.start_error;
        let mut engine = Engine::new(engine_config(&setup), ClockParams::identity(0), kernel0);
        let mut by_source = BTreeMap::new();
        let options = SourceOptions {
            iburst: true,
            minpoll: setup.poll,
            maxpoll: setup.poll,
            ..Default::default()
        };
        for (i, u) in upstreams.iter().enumerate() {
            let id = engine.add_source(
                u.addr,
                Association::Client,
                options,
                Some("192.0.2.99".parse().unwrap()),
                kernel0,
            );
            by_source.insert(id, i);
        }
        Sim {
            true0: setup.true0,
            skew: setup.skew_ppm * 1e-6,
            start_error: setup.start_error,
            engine,
            upstreams,
            by_source,
            queue: BinaryHeap::new(),
            seq: 0,
            rng: Rng(setup.seed),
            t: 0,
            errors: Vec::new(),
            synced: Vec::new(),
            next_sample: 0,
            events: Vec::new(),
        }
    }

    pub fn kernel(&self, t: i64) -> i64 {
        self.true0 + self.start_error + t + (t as f64 * self.skew) as i64
    }

    /// True time (since start) at which the kernel clock reads `kernel`.
    pub fn true_at(&self, kernel: i64) -> i64 {
        let mut t = ((kernel - self.true0 - self.start_error) as f64 / (1.0 + self.skew)) as i64;
        // Round up so that kernel(t) >= kernel: the engine must never be called early.
        while self.kernel(t) < kernel {
            t += 1;
        }
        t
    }

    pub fn served_error(&self, t: i64) -> i64 {
        self.engine.published().clock.corrected_utc_ns(self.kernel(t)) - (self.true0 + t)
    }

    pub fn push(&mut self, at: i64, arrival: Arrival) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, arrival)));
    }

    pub fn collect_events(&mut self) {
        let t = self.t;
        for e in self.engine.take_events() {
            if !e.is_record() {
                self.events.push((t, e));
            }
        }
    }

    pub fn run_until(&mut self, end: i64) {
        loop {
            let wake = self.engine.next_wakeup();
            let wake_t = if wake == i64::MAX {
                i64::MAX
            } else {
                self.true_at(wake)
            };
            let arrival_t = self.queue.peek().map_or(i64::MAX, |Reverse((t, _, _))| *t);
            let t = wake_t.min(arrival_t).min(self.next_sample);
            if t > end {
                self.t = end;
                return;
            }
            self.t = t.max(self.t);
            if t == self.next_sample {
                let e = self.served_error(t);
                self.errors.push((t, e));
                self.synced.push((t, self.engine.published().server.synchronized));
                self.next_sample += 8 * S;
                continue;
            }
            if t == arrival_t {
                let Reverse((_, _, arrival)) = self.queue.pop().unwrap();
                self.deliver(arrival);
            } else {
                let now = self.kernel(self.t);
                self.engine.tick(now);
                for tx in self.engine.transmit(now) {
                    let u = self.by_source[&tx.source];
                    self.send(u, tx.packet);
                }
            }
            self.collect_events();
        }
    }

    pub fn send(&mut self, u: usize, packet: [u8; 48]) {
        let t = self.t;
        self.upstreams[u].requests.push(t);
        let up = &self.upstreams[u];
        if up.vanish_at.is_some_and(|v| t >= v) || self.rng.uniform() < up.loss {
            return;
        }
        let at = t + up.out.base + up.out.jitter.draw(&mut self.rng);
        self.push(at, Arrival::AtServer { upstream: u, packet });
    }

    pub fn deliver(&mut self, arrival: Arrival) {
        match arrival {
            Arrival::AtServer { upstream, mut packet } => {
                let up = &self.upstreams[upstream];
                let true0 = self.true0;
                let server_now = |t: i64| {
                    let uniform = true0 + t + up.offset_at(t);
                    NtpTimestamp::from_unix_nanos((uniform - up.leap_shift(uniform)) as i128)
                };
                let rx = server_now(self.t);
                let departs = self.t + 20 * US;
                let state = ServerState {
                    synchronized: true,
                    leap: up.announces(true0 + self.t + up.offset_at(self.t)),
                    stratum: up.stratum,
                    precision: -24,
                    root_delay: NtpShort::ZERO,
                    root_dispersion: NtpShort::from_nanos(10 * US as u64),
                    reference_id: up.reference_id,
                    reference_time: server_now(self.t - 16 * S),
                    unsync_policy: UnsyncPolicy::Answer,
                };
                let admission = match up.behaviour {
                    Behaviour::Serve => Admission::Serve,
                    Behaviour::Kiss(code) => Admission::Kiss(code),
                };
                if respond(&mut packet, rx, server_now(departs), admission, &state).is_err() {
                    return;
                }
                if self.rng.uniform() < up.loss {
                    return;
                }
                let at = departs + up.back.base + up.back.jitter.draw(&mut self.rng);
                let source = upstream;
                self.push(at, Arrival::AtClient { source, packet });
            }
            Arrival::AtClient { source, packet } => {
                let id = *self.by_source.iter().find(|(_, &u)| u == source).unwrap().0;
                let now = self.kernel(self.t);
                self.engine.receive(id, &packet, now);
            }
        }
    }

    /// Served-time errors (ns) sampled in `[from, to)`.
    pub fn errors_between(&self, from: i64, to: i64) -> Vec<i64> {
        self.errors
            .iter()
            .filter(|(t, _)| (from..to).contains(t))
            .map(|&(_, e)| e)
            .collect()
    }
}

pub fn rms(v: &[i64]) -> f64 {
    (v.iter().map(|&e| (e as f64).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
}

pub fn max_abs(v: &[i64]) -> i64 {
    v.iter().map(|e| e.abs()).max().unwrap()
}

pub fn three(jitter_ns: f64) -> Vec<Upstream> {
    ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
        .iter()
        .map(|ip| Upstream::new(ip, jitter_ns))
        .collect()
}

/// A reply's root dispersion and leap/stratum as a client would see it at true time `t`.
pub fn client_view(sim: &Sim, t: i64) -> (f64, u8, u8) {
    let published = sim.engine.published();
    let mut req = [0u8; 48];
    req[0] = 0x23;
    let rx = published.clock.ntp_from_realtime(sim.kernel(t));
    respond(&mut req, rx, rx, Admission::Serve, &published.server).unwrap();
    let p = Packet::new_unchecked(&req[..]);
    (p.root_dispersion().to_seconds_f64(), p.leap() as u8, p.stratum())
}

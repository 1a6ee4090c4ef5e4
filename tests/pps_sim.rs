//! A PPS refclock in the control engine, in virtual time, read through the daemon's driver from
//! a simulated `/dev/pps` device (`strata::sys::pps::SimulatedPps`, behind the same interface as
//! the kernel device). The kernel clock is `KERNEL_BEHIND` behind true time; a pulse comes at
//! each true second; a coarse GPS reading (SHM-like, `noselect`) comes 120 ms later with a
//! 20 ms bias and ±5 ms of serial jitter, as gpsd's NMEA time does. With `lock GPS` the edges are
//! numbered by those readings; without a lock, by the served clock once it is synchronized to
//! another source (here a network upstream).

mod sim;

use strata::daemon::control::refclock::Refclock;
use strata::daemon::observe::board::{ControlStatus, SourceMode};
use strata::proto::clock::ClockParams;
use strata::proto::control::engine::{Engine, SourceId, SyncState};
use strata::proto::control::pps::PulseRefusal;
use strata::proto::control::refclock::{parse_refclock, RefSample};
use strata::proto::control::source::{Association, Unfit};
use strata::proto::control::spec::SourceOptions;
use strata::proto::wire::ntp::{Leap, Mode, Packet, Repr};
use strata::proto::wire::{NtpShort, NtpTimestamp};
use strata::sys::pps::SimulatedPps;

const S: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;
/// Kernel time at the start (Unix nanoseconds, December 2026).
const START: i64 = 1_796_266_740 * S;
/// True time minus the kernel clock (ns): the offset every numbered edge must show.
const KERNEL_BEHIND: i64 = 3_456_789;
/// The GPS readings' bias (ns): numbering must not depend on it.
const GPS_BIAS: i64 = 20 * MS;

struct World {
    engine: Engine,
    gps: SourceId,
    pps: SourceId,
    pps_driver: Refclock,
    device: SimulatedPps,
    /// A network upstream keeping true time, if any.
    upstream: Option<SourceId>,
    /// Kernel time now.
    now: i64,
    pulsing: bool,
    gps_delivering: bool,
    /// Every this many pulses, a glitch 0.3 s after the true edge (0: none).
    glitch_every: i64,
    seconds: i64,
}

fn wire(t: i64) -> NtpTimestamp {
    NtpTimestamp::from_unix_nanos(t as i128)
}

impl World {
    fn new(pps: &str, with_upstream: bool) -> World {
        let config = sim::engine_config(&sim::Setup::default());
        let mut engine = Engine::new(config, ClockParams::identity(0), START);
        let gps_spec = parse_refclock("shm:0 refid GPS noselect").unwrap();
        let pps_spec = parse_refclock(pps).unwrap();
        let gps = engine.add_refclock(&gps_spec, 0, START);
        let pps = engine.add_refclock(&pps_spec, 1, START);
        let upstream = with_upstream.then(|| {
            let options = SourceOptions {
                iburst: true,
                minpoll: 4,
                maxpoll: 4,
                ..SourceOptions::default()
            };
            engine.add_source(
                "198.18.0.1:123".parse().unwrap(),
                Association::Client,
                options,
                None,
                START,
            )
        });
        let device = SimulatedPps::new();
        let pps_driver = Refclock::with_pps_device(&pps_spec, Box::new(device.clone()));
        World {
            engine,
            gps,
            pps,
            pps_driver,
            device,
            upstream,
            now: START,
            pulsing: true,
            gps_delivering: true,
            glitch_every: 0,
            seconds: 0,
        }
    }

    /// A stratum-1 upstream keeping true time over a 1 ms symmetric path.
    fn reply(request: &[u8; 48], arrives_true: i64) -> [u8; 48] {
        let req = Repr::parse(&Packet::new_checked(&request[..]).unwrap()).unwrap();
        let repr = Repr {
            leap: Leap::NoWarning,
            version: 4,
            mode: Mode::Server,
            stratum: 1,
            poll: req.poll,
            precision: -20,
            root_delay: NtpShort::ZERO,
            root_dispersion: NtpShort::from_seconds_f64(0.000_1),
            reference_id: *b"GPS\0",
            reference_timestamp: wire(arrives_true - S),
            origin_timestamp: req.transmit_timestamp,
            receive_timestamp: wire(arrives_true),
            transmit_timestamp: wire(arrives_true + 10_000),
        };
        let mut out = [0u8; 48];
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        out
    }

    /// The serial jitter of the n-th GPS reading: a fixed pseudo-random walk within ±5 ms.
    fn jitter(n: i64) -> i64 {
        ((n * 7_919) % 11 - 5) * MS
    }

    /// Runs `seconds` of virtual time; each second: the true edge (and maybe a glitch) on the
    /// device, the GPS reading of that second 120 ms later, the driver read and the engine run.
    fn run(&mut self, seconds: i64) {
        for _ in 0..seconds {
            self.seconds += 1;
            // The kernel time at which true time is a whole second.
            let edge = START + self.seconds * S - KERNEL_BEHIND;
            if self.pulsing {
                self.device.pulse(edge);
                if let Some(e) = self.pps_driver.read_edge() {
                    let _ = self.engine.refclock_pulse(self.pps, e.time, e.missed);
                }
                if self.glitch_every > 0 && self.seconds % self.glitch_every == 0 {
                    self.device.pulse(edge + 300 * MS);
                    if let Some(e) = self.pps_driver.read_edge() {
                        let _ = self.engine.refclock_pulse(self.pps, e.time, e.missed);
                    }
                }
            }
            self.now = edge + 120 * MS;
            if self.gps_delivering {
                let reading = RefSample {
                    time: self.now,
                    offset: (KERNEL_BEHIND + GPS_BIAS + World::jitter(self.seconds)) as f64 * 1e-9,
                    leap: Leap::NoWarning,
                };
                self.engine.refclock_reading(self.gps, reading);
            }
            let now = self.now;
            self.engine.tick(now);
            for tx in self.engine.transmit(now) {
                assert_eq!(Some(tx.source), self.upstream, "only the upstream transmits");
                let reply = World::reply(&tx.packet, now + KERNEL_BEHIND + MS);
                self.engine.receive(tx.source, &reply, now + 2 * MS + 10_000);
            }
            self.engine.take_events();
        }
    }

    fn system_peer(&self) -> Option<SourceId> {
        match self.engine.sync_state() {
            SyncState::Synchronized { system_peer } => Some(system_peer),
            _ => None,
        }
    }

    fn status(&self, id: SourceId) -> strata::proto::control::engine::SourceStatus {
        self.engine
            .sources(self.now)
            .into_iter()
            .find(|s| s.id == id)
            .unwrap()
    }

    /// The PPS's offset from the kernel clock (ns) as the engine estimates it: its offset from
    /// served time plus served time's correction of the kernel clock.
    fn pps_offset_from_kernel_ns(&self) -> f64 {
        let from_served = self.status(self.pps).offset.expect("estimated");
        let correction = self.engine.served_time(self.now).diff_nanos(wire(self.now));
        from_served * 1e9 + correction as f64
    }

    /// Served time minus true time now (ns).
    fn served_error_ns(&self) -> i64 {
        self.engine
            .served_time(self.now)
            .diff_nanos(wire(self.now + KERNEL_BEHIND))
    }
}

#[test]
fn a_pps_locked_to_gps_serves_stratum_1_at_the_edges_offset() {
    let mut w = World::new("pps:/dev/pps0 lock GPS refid PPS poll 4 prefer", false);
    w.glitch_every = 7;
    w.run(600);
    assert_eq!(w.system_peer(), Some(w.pps));
    let server = w.engine.published().server;
    assert!(server.synchronized);
    assert_eq!(server.stratum, 1);
    assert_eq!(server.reference_id, *b"PPS\0");
    let status = w.status(w.pps);
    assert_eq!(status.addr, "127.127.22.0:0".parse().unwrap());
    assert_eq!(status.reach, 0xff);
    // The edges' offset to the nanosecond, whatever the GPS readings' bias and jitter; the
    // glitches (one in seven edges, 0.3 s late) are outside the median.
    let offset = w.pps_offset_from_kernel_ns();
    assert!((offset - KERNEL_BEHIND as f64).abs() < 2.0, "{offset} ns");
    assert!(w.served_error_ns().abs() < 1_000, "{} ns", w.served_error_ns());
    let counts = w.engine.refclock_pulses(w.pps).unwrap();
    assert_eq!(counts.missed, 0);
    assert!(counts.numbered >= 600, "{counts:?}");
    // The GPS (noselect) is a source but not a candidate.
    assert_eq!(w.status(w.gps).unfit, Some(Unfit::NoSelect));
}

#[test]
fn a_pps_without_readings_of_its_lock_makes_no_samples_and_counts_why() {
    let mut w = World::new("pps:/dev/pps0 lock GPS poll 4", false);
    w.gps_delivering = false;
    w.run(200);
    assert_eq!(w.system_peer(), None);
    let counts = w.engine.refclock_pulses(w.pps).unwrap();
    assert_eq!(counts.refused(PulseRefusal::NoLockReading), 200);
    assert_eq!(counts.numbered, 0);
    assert_eq!(w.status(w.pps).reach, 0, "no sample, no answered poll");
    assert_eq!(w.status(w.pps).offset, None);
    // What `strata status` shows under the source.
    let board = ControlStatus::from_engine(&w.engine, w.now);
    let listed = board
        .sources
        .iter()
        .find(|s| s.name == "127.127.22.0 (PPS)")
        .expect("the PPS is listed");
    assert_eq!(listed.mode, SourceMode::Refclock);
    assert_eq!(
        listed.pulses.as_ref().unwrap().describe(),
        "PPS edges: 0 numbered, 0 missed, dropped: no_lock_reading 200"
    );
    // GPS readings come, then stop: the edges are numbered, then refused as the lock ages.
    w.gps_delivering = true;
    w.run(300);
    assert_eq!(w.system_peer(), Some(w.pps));
    w.gps_delivering = false;
    w.run(10);
    let counts = w.engine.refclock_pulses(w.pps).unwrap();
    assert_eq!(counts.refused(PulseRefusal::LockTooOld), 8, "{counts:?}");
}

#[test]
fn missed_edges_are_counted_and_a_stopped_pps_ages_out_into_holdover() {
    let mut w = World::new("pps:/dev/pps0 lock GPS poll 4", false);
    w.run(300);
    assert_eq!(w.system_peer(), Some(w.pps));
    // Two edges between two reads: one missed; an edge read twice is read once.
    w.device.pulse(w.now + S - KERNEL_BEHIND);
    w.run(1);
    assert_eq!(w.engine.refclock_pulses(w.pps).unwrap().missed, 1);
    assert_eq!(
        w.pps_driver.read_edge(),
        None,
        "the same edge again is not a new one"
    );
    // The pulses stop: eight polls without a sample make it unreachable; the served time
    // goes on in holdover.
    w.pulsing = false;
    w.run(10 * 16);
    let status = w.status(w.pps);
    assert_eq!(status.reach, 0);
    assert_eq!(status.unfit, Some(Unfit::Unreachable));
    assert_eq!(w.engine.sync_state(), SyncState::Holdover);
    // Holdover carries the served time on without a jump (the simulated kernel clock has no
    // frequency error, so this checks the hand-over, not a drift).
    assert!(w.served_error_ns().abs() < 1_000, "{} ns", w.served_error_ns());
}

#[test]
fn without_a_lock_the_served_clock_numbers_the_edges_once_synchronized() {
    let mut w = World::new("pps:/dev/pps0 poll 4 prefer", true);
    w.gps_delivering = false;
    // Before the first synchronization to the upstream, edges cannot be numbered.
    w.run(3);
    let counts = w.engine.refclock_pulses(w.pps).unwrap();
    assert!(counts.refused(PulseRefusal::NotSynchronized) >= 1, "{counts:?}");
    w.run(900);
    assert_eq!(w.system_peer(), Some(w.pps), "the preferred PPS, once numbered");
    assert_eq!(w.engine.published().server.stratum, 1);
    let offset = w.pps_offset_from_kernel_ns();
    assert!((offset - KERNEL_BEHIND as f64).abs() < 2.0, "{offset} ns");
}

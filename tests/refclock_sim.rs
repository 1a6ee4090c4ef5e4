//! Reference clocks in the control engine, in virtual time: a refclock beside two network
//! upstreams goes through the same selection (a falseticker refclock is rejected, `prefer` is
//! honoured), serves stratum 1 with its refid when selected, and ages out like an unreachable
//! source when its readings stop. The upstreams answer with replies built from their own clock
//! (true time plus a set offset) over a 1 ms symmetric path; the kernel clock keeps true time.

mod sim;

use strata::proto::clock::ClockParams;
use strata::proto::control::engine::{Engine, SourceId, SyncState};
use strata::proto::control::events::Event;
use strata::proto::control::refclock::{parse_refclock, RefSample};
use strata::proto::control::source::{Association, Unfit};
use strata::proto::control::spec::SourceOptions;
use strata::proto::wire::ntp::{Leap, Mode, Packet, Repr};
use strata::proto::wire::{NtpShort, NtpTimestamp};

const S: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;
/// True time at the start (Unix nanoseconds, December 2026).
const START: i64 = 1_796_266_740 * S;
/// One-way network delay to both upstreams.
const ONE_WAY: i64 = MS;

struct World {
    engine: Engine,
    /// Each network upstream: its id and its clock's offset from true time (ns).
    upstreams: Vec<(SourceId, i64)>,
    refclock: SourceId,
    /// The reference's offset from true time (ns), and whether it still delivers readings.
    refclock_offset: i64,
    delivering: bool,
    now: i64,
    events: Vec<Event>,
}

fn wire(t: i64) -> NtpTimestamp {
    NtpTimestamp::from_unix_nanos(t as i128)
}

impl World {
    /// Two upstreams at `offsets` (ns; `prefer` on the first if `prefer_upstream`) and a
    /// refclock configured as `refclock`.
    fn new(offsets: [i64; 2], prefer_upstream: bool, refclock: &str, refclock_offset: i64) -> World {
        let config = sim::engine_config(&sim::Setup::default());
        let mut engine = Engine::new(config, ClockParams::identity(0), START);
        let upstreams = offsets
            .iter()
            .enumerate()
            .map(|(i, &offset)| {
                let options = SourceOptions {
                    iburst: true,
                    minpoll: 4,
                    maxpoll: 4,
                    prefer: prefer_upstream && i == 0,
                    ..SourceOptions::default()
                };
                let addr = format!("198.18.0.{}:123", i + 1).parse().unwrap();
                (
                    engine.add_source(addr, Association::Client, options, None, START),
                    offset,
                )
            })
            .collect();
        let spec = parse_refclock(refclock).unwrap();
        let refclock = engine.add_refclock(&spec, 0, START);
        World {
            engine,
            upstreams,
            refclock,
            refclock_offset,
            delivering: true,
            now: START,
            events: Vec::new(),
        }
    }

    /// The reply of upstream `offset` to `request`, as a stratum-1 server with that clock sends.
    fn reply(request: &[u8; 48], arrives: i64, offset: i64) -> [u8; 48] {
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
            reference_timestamp: wire(arrives + offset - S),
            origin_timestamp: req.transmit_timestamp,
            receive_timestamp: wire(arrives + offset),
            transmit_timestamp: wire(arrives + offset + 10_000),
        };
        let mut out = [0u8; 48];
        repr.emit(&mut Packet::new_unchecked(&mut out[..]));
        out
    }

    /// Runs `seconds` of virtual time in 1 s steps: one refclock reading per second (while
    /// delivering), the engine's polls answered after the round trip.
    fn run(&mut self, seconds: i64) {
        for _ in 0..seconds {
            self.now += S;
            let now = self.now;
            if self.delivering {
                let reading = RefSample {
                    time: now - MS,
                    offset: self.refclock_offset as f64 * 1e-9,
                    leap: Leap::NoWarning,
                };
                self.engine.refclock_reading(self.refclock, reading);
            }
            self.engine.tick(now);
            for tx in self.engine.transmit(now) {
                let offset = self
                    .upstreams
                    .iter()
                    .find(|(id, _)| *id == tx.source)
                    .map(|&(_, o)| o)
                    .expect("only network sources transmit");
                let reply = World::reply(&tx.packet, now + ONE_WAY, offset);
                self.engine.receive(tx.source, &reply, now + 2 * ONE_WAY + 10_000);
            }
            self.events.extend(self.engine.take_events());
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
}

#[test]
fn a_selected_refclock_makes_stratum_1_with_its_refid() {
    let mut w = World::new([300_000, -300_000], false, "shm:0 refid GPS poll 4 prefer", 0);
    w.run(600);
    assert_eq!(w.system_peer(), Some(w.refclock), "events: {:?}", w.events);
    let server = w.engine.published().server;
    assert!(server.synchronized);
    assert_eq!(server.stratum, 1);
    assert_eq!(server.reference_id, *b"GPS\0");
    let status = w.status(w.refclock);
    assert_eq!(status.addr, "127.127.28.0:0".parse().unwrap());
    assert_eq!(status.stratum, Some(0));
    assert_eq!(status.reach, 0xff);
    assert!(status.offset.unwrap().abs() < 1e-4, "{:?}", status.offset);
}

#[test]
fn a_falseticker_refclock_is_rejected_even_when_preferred() {
    // The two upstreams agree within 0.6 ms; the reference is 80 ms off (a wrong cable
    // offset, a receiver without a fix): the intersection leaves it out.
    let mut w = World::new([300_000, -300_000], false, "shm:0 refid GPS prefer", 80 * MS);
    w.run(900);
    let peer = w.system_peer().expect("synchronized to the upstreams");
    assert_ne!(peer, w.refclock);
    assert!(w.status(w.refclock).falseticker);
    assert!(w
        .events
        .iter()
        .any(|e| matches!(e, Event::Falseticker { addr } if *addr == w.status(w.refclock).addr)));
    let server = w.engine.published().server;
    assert_eq!(server.stratum, 2, "the upstreams' stratum plus one");
    assert_ne!(server.reference_id, *b"GPS\0");
    // Served time follows the upstreams (their mean is true time), not the reference.
    let error = w.engine.served_time(w.now).diff_nanos(wire(w.now));
    assert!(error.abs() < 2 * MS, "{error} ns");
}

#[test]
fn prefer_decides_between_agreeing_sources() {
    // Everyone agrees within 0.2 ms. A preferred network upstream wins over the refclock...
    let mut w = World::new([100_000, -100_000], true, "shm:0 refid GPS", 0);
    w.run(600);
    assert_eq!(w.system_peer(), Some(w.upstreams[0].0));
    assert_eq!(w.engine.published().server.stratum, 2);
    // ...and a preferred refclock over the upstreams.
    let mut w = World::new([100_000, -100_000], false, "shm:0 refid PPS prefer", 0);
    w.run(600);
    assert_eq!(w.system_peer(), Some(w.refclock));
    assert_eq!(w.engine.published().server.reference_id, *b"PPS\0");
}

#[test]
fn a_refclock_that_stops_ages_out_like_an_unreachable_source() {
    let mut w = World::new([300_000, -300_000], false, "shm:0 refid GPS poll 4 prefer", 0);
    w.run(600);
    assert_eq!(w.system_peer(), Some(w.refclock));
    w.delivering = false;
    // The readings taken before it stopped count at the next poll; the poll after that has
    // none: the reach register shifts, a zero comes in.
    w.run(32);
    assert_eq!(w.status(w.refclock).reach, 0xfe);
    // Eight polls (poll 4: 16 s each) without readings: unreachable, and selection moves on.
    w.run(8 * 16);
    let status = w.status(w.refclock);
    assert_eq!(status.reach, 0);
    assert_eq!(status.unfit, Some(Unfit::Unreachable));
    let addr = status.addr;
    assert!(w
        .events
        .iter()
        .any(|e| matches!(e, Event::Unreachable { addr: a } if *a == addr)));
    let peer = w.system_peer().expect("still synchronized, to an upstream");
    assert_ne!(peer, w.refclock);
    assert_eq!(w.engine.published().server.stratum, 2);
    // Readings again: it comes back and, preferred, is selected again.
    w.delivering = true;
    w.run(8 * 16);
    assert_eq!(w.system_peer(), Some(w.refclock));
    assert_eq!(w.engine.published().server.stratum, 1);
}

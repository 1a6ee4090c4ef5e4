//! The RTC upkeep of the control thread (`rtc_sync`) in virtual time, with a simulated RTC
//! (`strata::sys::rtc::SimulatedRtc`: whole seconds, a drifting oscillator, a second that
//! starts as a write lands 10 ms after the call) behind the same interface as /dev/rtc0. The
//! engine synchronizes to a refclock keeping true time; the loop turns every 100 ms or at the
//! upkeep's wakeup, as the control thread's does.

mod sim;

use strata::daemon::control::rtc::RtcUpkeep;
use strata::daemon::observe::rtc_status::RtcState;
use strata::proto::clock::ClockParams;
use strata::proto::control::engine::{Engine, SyncState};
use strata::proto::control::refclock::{parse_refclock, RefSample};
use strata::proto::control::rtc::{CHECK_INTERVAL, MAX_ERROR};
use strata::proto::wire::ntp::Leap;
use strata::sys::rtc::SimulatedRtc;

const S: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;
const START: i64 = 1_796_266_740 * S;
/// The loop's longest wait (the control thread's MAX_WAIT).
const TURN: i64 = 100 * MS;

struct World {
    engine: Engine,
    upkeep: RtcUpkeep,
    rtc: SimulatedRtc,
    now: i64,
    /// The largest |RTC − true time| seen after the first set (ns).
    worst_after_set: i64,
}

impl World {
    fn new(rtc_offset: i64, drift_ppm: f64, kernel_keeps: bool) -> World {
        let config = sim::engine_config(&sim::Setup::default());
        let mut engine = Engine::new(config, ClockParams::identity(0), START);
        engine.add_refclock(&parse_refclock("shm:0 refid GPS poll 4").unwrap(), 0, START);
        let rtc = SimulatedRtc::new(START, rtc_offset, drift_ppm, 10 * MS);
        let upkeep = RtcUpkeep::with_device(
            "/dev/rtc0",
            Some(Box::new(rtc.clone())),
            Box::new(move || kernel_keeps),
            START,
        );
        World {
            engine,
            upkeep,
            rtc,
            now: START,
            worst_after_set: 0,
        }
    }

    /// Runs until `until` (ns after the start): a reading of true time each second, the engine
    /// and the upkeep at each turn.
    fn run_until(&mut self, until: i64) {
        let refclock = self.engine.source_ids()[0];
        while self.now < START + until {
            let next_second = (self.now / S + 1) * S;
            let wake = self
                .upkeep
                .next_wakeup(&self.engine, self.now)
                .unwrap_or(i64::MAX)
                .min(self.engine.next_wakeup())
                .clamp(self.now + 1, self.now + TURN)
                .min(next_second);
            self.now = wake;
            self.rtc.advance_to(self.now);
            if self.now % S == 0 {
                let reading = RefSample {
                    time: self.now,
                    offset: 0.0,
                    leap: Leap::NoWarning,
                };
                self.engine.refclock_reading(refclock, reading);
            }
            self.engine.tick(self.now);
            self.engine.transmit(self.now);
            self.upkeep.turn(&self.engine, self.now);
            if !self.rtc.sets().is_empty() {
                self.worst_after_set = self.worst_after_set.max(self.rtc.error_ns().abs());
            }
        }
    }
}

#[test]
fn a_drifting_rtc_is_set_at_the_second_and_kept_within_the_bound() {
    let mut w = World::new(-2_300 * MS, 50.0, false);
    // The refclock's first poll is 16 s in: not synchronized before.
    w.run_until(15 * S);
    assert!(w.rtc.sets().is_empty(), "not before synchronization");
    assert_eq!(w.upkeep.status().state, RtcState::Waiting);
    w.run_until(10 * 60 * S);
    assert!(matches!(w.engine.sync_state(), SyncState::Synchronized { .. }));
    let sets = w.rtc.sets();
    assert_eq!(sets.len(), 1, "{sets:?}");
    // Written 10 ms before the second it names, as the kernel writes it: it starts on time.
    let (called, second) = sets[0];
    assert_eq!(called, second * S - 10 * MS);
    assert!(w.rtc.error_ns().abs() < 50 * MS, "{} ns", w.rtc.error_ns());
    let status = w.upkeep.status();
    assert_eq!(status.state, RtcState::Strata);
    assert_eq!(status.sets, 1);
    let (offset, within) = (status.offset.unwrap(), status.offset_uncertainty.unwrap());
    assert!(
        offset.abs() <= within + 1e-9 && within <= 0.05,
        "read back: {offset} ± {within}"
    );
    // Four hours at 50 ppm (33 ms per 11 minutes): set again whenever off by more than the
    // bound, never further off than the bound and one interval's drift.
    w.run_until(4 * 3600 * S);
    let sets = w.rtc.sets().len();
    assert!((3..=8).contains(&sets), "{sets} sets");
    let bound = (MAX_ERROR * 1e9) as i64 + (CHECK_INTERVAL as f64 * 50e-6) as i64 + 50 * MS;
    assert!(
        w.worst_after_set <= bound,
        "{} ns > {bound} ns",
        w.worst_after_set
    );
    assert_eq!(w.upkeep.status().sets, sets as u64);
}

#[test]
fn while_the_kernel_writes_the_rtc_strata_only_compares() {
    let mut w = World::new(1_500 * MS, 0.0, true);
    w.run_until(3 * 3600 * S);
    assert!(w.rtc.sets().is_empty());
    let status = w.upkeep.status();
    assert_eq!(status.state, RtcState::Kernel);
    assert!((status.offset.unwrap() - 1.5).abs() <= status.offset_uncertainty.unwrap() + 1e-9);
    assert!(
        status.describe().contains("kernel's 11-minute mode"),
        "{}",
        status.describe()
    );
}

#[test]
fn an_rtc_that_lost_its_time_is_set_once_synchronized() {
    let mut w = World::new(0, 0.0, false);
    w.rtc.invalidate();
    w.run_until(10 * 60 * S);
    let sets = w.rtc.sets();
    assert_eq!(sets.len(), 1, "{sets:?}");
    assert_eq!(sets[0].0, sets[0].1 * S - 10 * MS);
    assert_eq!(w.rtc.error_ns(), 0);
    let status = w.upkeep.status();
    assert_eq!(status.state, RtcState::Strata);
    assert_eq!(
        status.problem, None,
        "the failed read is over once the RTC is set"
    );
    assert!(
        status.offset.unwrap().abs() <= status.offset_uncertainty.unwrap() + 1e-9,
        "read back after the set"
    );
}

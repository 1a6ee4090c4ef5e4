//! A `phc:` reference clock in the control engine, in virtual time: a simulated PHC that keeps
//! TAI (as ptp4l sets a NIC's clock from a PTP grandmaster) read by the daemon's driver
//! (`strata::daemon::control::refclock`, through the same `CrossStampSource` layer the real
//! /dev/ptpN is read by), TAI − UTC taken off from the leap list (tests/data/leap-seconds.list),
//! each reading handed to the engine as the control thread hands them. Selected, it serves
//! stratum 1 with its refid, at the PHC's offset; without TAI − UTC it gives no reading at all
//! rather than one 37 s off.

mod sim;

use strata::daemon::control::refclock::Refclock;
use strata::proto::clock::ClockParams;
use strata::proto::control::engine::{Engine, SourceId, SyncState};
use strata::proto::control::refclock::parse_refclock;
use strata::proto::leap::LeapList;
use strata::proto::wire::timestamp::UNIX_EPOCH_NTP_SECONDS;
use strata::proto::wire::NtpTimestamp;
use strata::sys::ptp::sim::{SharedPhc, SimConfig};
use strata::sys::ptp::Method;

const S: i64 = 1_000_000_000;
/// True time at the start (Unix nanoseconds, December 2026): TAI − UTC is 37 s.
const START: i64 = 1_796_266_740 * S;
/// How far ahead of true TAI the PHC is (a PTP path asymmetry, say).
const PHC_ERROR_NS: i64 = 200_000;

struct World {
    engine: Engine,
    id: SourceId,
    refclock: Refclock,
    phc: SharedPhc,
    leap: Option<LeapList>,
    now: i64,
}

impl World {
    fn new(refclock: &str, leap: Option<LeapList>) -> World {
        let config = sim::engine_config(&sim::Setup::default());
        let mut engine = Engine::new(config, ClockParams::identity(0), START);
        let spec = parse_refclock(refclock).unwrap();
        let id = engine.add_refclock(&spec, 0, START);
        // The kernel clock keeps true UTC; the PHC true TAI plus its error, drifting 0.5 ppm.
        let phc = SharedPhc::new(SimConfig {
            offset_ns: 37 * S + PHC_ERROR_NS,
            ppm: 0.5,
            method: Method::Extended,
            start_ns: START,
            ..SimConfig::default()
        });
        let refclock = Refclock::with_phc_source(&spec, Box::new(phc.clone()));
        World {
            engine,
            id,
            refclock,
            phc,
            leap,
            now: START,
        }
    }

    /// `seconds` of virtual time: each second the control thread's turn, TAI − UTC from the
    /// leap list at the kernel's time, the refclock read, its readings to the engine.
    fn run(&mut self, seconds: i64) {
        let mut readings = Vec::new();
        for _ in 0..seconds {
            self.now += S;
            let behind = self.now - self.phc.lock().now_ns();
            self.phc.lock().advance(behind);
            let ntp_s = (self.now.div_euclid(S) + UNIX_EPOCH_NTP_SECONDS) as u64;
            let tai = self.leap.as_ref().and_then(|l| l.tai_minus_utc_at(ntp_s));
            self.refclock.set_tai_minus_utc(tai);
            readings.clear();
            self.refclock.read(&mut readings);
            for r in &readings {
                self.engine.refclock_reading(self.id, *r);
            }
            self.engine.tick(self.now);
            // Refclock polls happen here too; no network source is configured to transmit.
            assert!(self.engine.transmit(self.now).is_empty());
        }
    }

    fn offset(&self) -> Option<f64> {
        self.engine
            .sources(self.now)
            .into_iter()
            .find(|s| s.id == self.id)
            .and_then(|s| s.offset)
    }
}

fn leap_list() -> LeapList {
    let path = strata_test_support::workspace_root().join("tests/data/leap-seconds.list");
    LeapList::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_phc_on_tai_is_a_stratum_1_reference_at_its_offset() {
    let mut w = World::new("phc:/dev/ptp0 tai refid PTP poll 4 prefer", Some(leap_list()));
    w.run(300);
    assert!(matches!(w.engine.sync_state(), SyncState::Synchronized { system_peer } if system_peer == w.id));
    let server = w.engine.published().server;
    assert_eq!((server.stratum, server.reference_id), (1, *b"PTP\0"));
    let status = w
        .engine
        .sources(w.now)
        .into_iter()
        .find(|s| s.id == w.id)
        .unwrap();
    assert_eq!(status.addr, "127.127.47.0:0".parse().unwrap());
    // The served time follows the PHC: its error (and drift, 0.5 ppm since the start) ahead
    // of true UTC, not 37 s; and the engine's own offset to it is down to the noise.
    let served = w
        .engine
        .served_time(w.now)
        .diff_nanos(NtpTimestamp::from_unix_nanos(w.now as i128));
    let drift = (w.now - START) / 2_000_000;
    assert!(
        (served - PHC_ERROR_NS - drift).abs() < 10_000,
        "served {served} ns ahead"
    );
    assert!(w.offset().unwrap().abs() < 1e-5, "{:?}", w.offset());
    assert_eq!(w.refclock.refused, 0);
}

#[test]
fn a_phc_on_tai_without_tai_minus_utc_gives_no_reading() {
    let mut w = World::new("phc:/dev/ptp0 tai refid PTP poll 4 prefer", None);
    w.run(100);
    assert_eq!(w.refclock.refused, 100);
    assert_eq!(w.offset(), None);
    assert!(!matches!(w.engine.sync_state(), SyncState::Synchronized { .. }));
}

//! Leap seconds through the control core, in virtual time (the simulation of `control_sim`):
//! the real inserted second of 2016-12-31, a synthetic deleted one, the smear, the operator's
//! override, and the 2036 NTP era rollover. The kernel clock runs on a uniform scale, as a
//! kernel nobody leaps does; the upstreams perform the leap as the kernel does (23:59:59 twice,
//! or skipped) and announce it from the start of the last day.
//!
//! The convention checked (the kernel's and chronyd's): an inserted second is served as
//! 23:59:59 repeated (the served time steps back one second at 00:00:00 as read before the
//! leap); a deleted second is 23:59:59 skipped (23:59:58.999... is followed by 00:00:00).
mod sim;

use sim::*;
use strata::proto::control::engine::SyncState;
use strata::proto::control::events::Event;
use strata::proto::control::leapplan::{
    days_from_civil, LeapHandling, LeapMode, LeapSettings, LeapSource, DAY,
};
use strata::proto::leap::{Entry, LeapList};
use strata::proto::wire::ntp::Leap;
use strata::proto::wire::timestamp::UNIX_EPOCH_NTP_SECONDS;
use strata::proto::wire::NtpTimestamp;

/// 2017-01-01T00:00:00Z in Unix seconds: the end of the day with the last inserted second.
const NEW_YEAR_2017: i64 = 1_483_228_800;

/// A list (as it verified) with the leaps of 2015 and 2017, and maybe more, expiring `expires`.
fn list(expires: i64, more: &[(i64, i32)]) -> LeapList {
    let ntp = |unix: i64| (unix + UNIX_EPOCH_NTP_SECONDS) as u64;
    let mut entries = vec![
        Entry {
            start: 3_644_697_600,
            tai_minus_utc: 36,
        },
        Entry {
            start: ntp(NEW_YEAR_2017),
            tai_minus_utc: 37,
        },
    ];
    entries.extend(more.iter().map(|&(at, tai)| Entry {
        start: ntp(at),
        tai_minus_utc: tai,
    }));
    LeapList {
        updated: ntp(NEW_YEAR_2017 - 200 * DAY),
        expires: ntp(expires),
        entries,
    }
}

/// Three upstreams that perform (and announce) the leap that steps at uniform second `step`.
fn leaping(step: i64, delta: i8) -> Vec<Upstream> {
    three(10_000.0)
        .into_iter()
        .map(|u| Upstream {
            leap: Some((step, delta)),
            ..u
        })
        .collect()
}

/// A simulation that starts `before` seconds ahead of uniform Unix second `midnight`.
fn sim_before(midnight: i64, before: i64, leap: LeapSettings, upstreams: Vec<Upstream>) -> Sim {
    let setup = Setup {
        true0: (midnight - before) * S,
        leap,
        minsources: 2,
        skew_ppm: 20.0,
        ..Setup::default()
    };
    Sim::new(setup, upstreams)
}

/// Simulated time (since start) of uniform Unix nanosecond `unix_ns`.
fn t_of(sim: &Sim, unix_ns: i64) -> i64 {
    unix_ns - sim.true0
}

/// The time served (Unix ns, in the era near now) and the leap indicator replies carry, at
/// uniform Unix nanosecond `unix_ns`; runs the simulation up to then.
fn served_at(sim: &mut Sim, unix_ns: i64) -> (i64, Leap) {
    let t = t_of(sim, unix_ns);
    sim.run_until(t);
    let p = sim.engine.published();
    let served = p
        .clock
        .ntp_from_realtime(sim.kernel(t))
        .to_unix_nanos(unix_ns as i128) as i64;
    let (_, leap, _) = client_view(sim, t);
    (served, Leap::from_bits(leap))
}

fn steps_and_falsetickers(sim: &Sim, after: i64) -> Vec<String> {
    sim.events
        .iter()
        .filter(|(t, e)| {
            *t >= after
                && matches!(
                    e,
                    Event::Step { .. }
                        | Event::Falseticker { .. }
                        | Event::Holdover { .. }
                        | Event::Unsynchronized { .. }
                        | Event::CorrectionRefused { .. }
                )
        })
        .map(|(t, e)| format!("{t}: {e}"))
        .collect()
}

/// The served time around a leap, quarter second by quarter second: within 1 ms of what the
/// convention gives (the simulation's own synchronization error is microseconds).
fn check_sequence(sim: &mut Sim, midnight: i64, delta: i8, announced: Leap) {
    let step = midnight + (delta as i64).min(0);
    for q in -12..=12 {
        let uniform = step * S + q * S / 4;
        let (served, leap) = served_at(sim, uniform);
        let expected = if uniform >= step * S {
            uniform - delta as i64 * S
        } else {
            uniform
        };
        // At the very instant, the served clock (a few ns from true time) may be either side.
        let close = (served - expected).abs() < MS || (q == 0 && (served - uniform).abs() < MS);
        assert!(
            close,
            "{q}/4 s from the step: served {served}, expected {expected}"
        );
        let li = if uniform < step * S {
            announced
        } else {
            Leap::NoWarning
        };
        // The tick that clears the warning comes a microsecond after the step.
        if q != 0 {
            assert_eq!(leap, li, "{q}/4 s from the step");
        }
    }
}

#[test]
fn the_inserted_second_of_2016_from_the_list() {
    let midnight = NEW_YEAR_2017;
    let mut sim = sim_before(midnight, 26 * 3600, LeapSettings::default(), leaping(midnight, 1));
    sim.engine
        .set_leap_list(Some(list(NEW_YEAR_2017 + 178 * DAY, &[])), sim.kernel(0));
    let scheduled = sim.engine.leap_status(sim.kernel(0)).scheduled.unwrap();
    assert_eq!(
        (scheduled.midnight, scheduled.delta, scheduled.source),
        (midnight, 1, LeapSource::List)
    );

    // Synchronized, no warning yet on 2016-12-30; the warning for the whole last day.
    let (_, leap) = served_at(&mut sim, (midnight - DAY - 1) * S);
    assert!(matches!(sim.engine.sync_state(), SyncState::Synchronized { .. }));
    assert_eq!(leap, Leap::NoWarning);
    let (_, leap) = served_at(&mut sim, (midnight - DAY) * S + MS);
    assert_eq!(leap, Leap::AddSecond);
    let (_, leap) = served_at(&mut sim, (midnight - 3600) * S);
    assert_eq!(leap, Leap::AddSecond);
    let synced_at = sim.t;

    // 23:59:57 ... 23:59:59, 23:59:59 again, 00:00:00 ... 00:00:02.
    check_sequence(&mut sim, midnight, 1, Leap::AddSecond);
    // Two hours on: never stepped, never slewed a second, never lost a source.
    sim.run_until(t_of(&sim, (midnight + 7200) * S));
    assert_eq!(steps_and_falsetickers(&sim, synced_at), Vec::<String>::new());
    let after = sim.errors_between(t_of(&sim, (midnight - 600) * S), sim.t);
    assert!(
        max_abs(&after) < 200 * US,
        "uniform-scale error {} ns",
        max_abs(&after)
    );
    assert!(sim.synced.iter().rev().take(800).all(|&(_, s)| s));
    let status = sim.engine.leap_status(sim.kernel(sim.t));
    assert_eq!((status.applied_s, status.scheduled), (1, None));
    assert!(sim
        .events
        .iter()
        .any(|(_, e)| matches!(e, Event::LeapDone { delta: 1 })));
    let (served, leap) = served_at(&mut sim, (midnight + 7201) * S);
    assert!((served - (midnight + 7200) * S).abs() < MS);
    assert_eq!(leap, Leap::NoWarning);
}

#[test]
fn served_seconds_across_the_inserted_second() {
    // The whole-second sequence a client reading at each half second sees.
    let midnight = NEW_YEAR_2017;
    let mut sim = sim_before(midnight, 3 * 3600, LeapSettings::default(), leaping(midnight, 1));
    sim.engine
        .set_leap_list(Some(list(NEW_YEAR_2017 + 178 * DAY, &[])), sim.kernel(0));
    let mut got = Vec::new();
    for half in -4..6 {
        let (served, _) = served_at(&mut sim, midnight * S + half * S / 2 + S / 4);
        got.push(served.div_euclid(S) - midnight);
    }
    // -2 -> 23:59:58, -1 -> 23:59:59, 0 -> 23:59:59 again, then 00:00:00, 00:00:01.
    assert_eq!(got, vec![-2, -2, -1, -1, -1, -1, 0, 0, 1, 1]);
}

#[test]
fn a_deleted_second_synthetic() {
    // A negative leap at the end of June 2030, in a list valid until 2030-12-28.
    let midnight = days_from_civil(2030, 7, 1) * DAY;
    let expires = days_from_civil(2030, 12, 28) * DAY;
    let mut sim = sim_before(
        midnight,
        26 * 3600,
        LeapSettings::default(),
        leaping(midnight - 1, -1),
    );
    sim.engine
        .set_leap_list(Some(list(expires, &[(midnight, 36)])), sim.kernel(0));
    let (_, leap) = served_at(&mut sim, (midnight - DAY - 10) * S);
    assert_eq!(leap, Leap::NoWarning);
    let (_, leap) = served_at(&mut sim, (midnight - DAY + 10) * S);
    assert_eq!(leap, Leap::DeleteSecond);
    let synced_at = sim.t;
    check_sequence(&mut sim, midnight, -1, Leap::DeleteSecond);
    let mut got = Vec::new();
    for half in -4..4 {
        let (served, _) = served_at(&mut sim, (midnight - 1) * S + half * S / 2 + S / 4);
        got.push(served.div_euclid(S) - midnight);
    }
    // 23:59:57, 23:59:58, then 00:00:00: 23:59:59 never comes.
    assert_eq!(got, vec![-3, -3, -2, -2, 0, 0, 1, 1]);
    sim.run_until(t_of(&sim, (midnight + 7200) * S));
    assert_eq!(steps_and_falsetickers(&sim, synced_at), Vec::<String>::new());
    let after = sim.errors_between(t_of(&sim, (midnight - 600) * S), sim.t);
    assert!(
        max_abs(&after) < 200 * US,
        "uniform-scale error {} ns",
        max_abs(&after)
    );
    assert_eq!(sim.engine.leap_status(sim.kernel(sim.t)).applied_s, -1);
}

#[test]
fn without_a_list_the_upstreams_majority_decides() {
    let midnight = NEW_YEAR_2017;
    // All three announce and leap: strata follows, announcing once it has heard them.
    let mut sim = sim_before(midnight, 26 * 3600, LeapSettings::default(), leaping(midnight, 1));
    let (_, leap) = served_at(&mut sim, (midnight - 3600) * S);
    assert_eq!(leap, Leap::AddSecond);
    let s = sim.engine.leap_status(sim.kernel(sim.t)).scheduled.unwrap();
    assert_eq!((s.midnight, s.source), (midnight, LeapSource::Upstreams));
    let synced_at = sim.t;
    check_sequence(&mut sim, midnight, 1, Leap::AddSecond);
    sim.run_until(t_of(&sim, (midnight + 3600) * S));
    assert_eq!(steps_and_falsetickers(&sim, synced_at), Vec::<String>::new());

    // One of three announcing (and leaping) is a minority: no leap, and it becomes the odd one.
    let mut ups = three(10_000.0);
    ups[2].leap = Some((midnight, 1));
    let mut sim = sim_before(midnight, 26 * 3600, LeapSettings::default(), ups);
    let (_, leap) = served_at(&mut sim, (midnight - 3600) * S);
    assert_eq!(leap, Leap::NoWarning);
    assert_eq!(sim.engine.leap_status(sim.kernel(sim.t)).scheduled, None);
    let (served, _) = served_at(&mut sim, (midnight + 1800) * S);
    assert!((served - (midnight + 1800) * S).abs() < MS, "no leap served");
}

#[test]
fn the_override_beats_the_list_and_the_upstreams() {
    let midnight = NEW_YEAR_2017;
    // `none`: a correct list and leaping upstreams, yet no warning and no leap of our own.
    let none = LeapSettings {
        mode: LeapMode::None,
        ..LeapSettings::default()
    };
    let mut sim = sim_before(midnight, 3 * 3600, none, leaping(midnight, 1));
    sim.engine
        .set_leap_list(Some(list(NEW_YEAR_2017 + 178 * DAY, &[])), sim.kernel(0));
    let (_, leap) = served_at(&mut sim, (midnight - 60) * S);
    assert_eq!(leap, Leap::NoWarning);
    let (served, _) = served_at(&mut sim, midnight * S + S / 2);
    assert!((served - (midnight * S + S / 2)).abs() < MS, "no step of our own");

    // `insert` with an expired list and silent upstreams: the second is inserted all the same,
    // once: a month later there is none.
    let insert = LeapSettings {
        mode: LeapMode::Insert,
        ..LeapSettings::default()
    };
    let mut sim = sim_before(
        midnight,
        3 * 3600,
        insert,
        leaping(midnight, 1)
            .into_iter()
            .map(|u| Upstream { leap: None, ..u })
            .collect(),
    );
    sim.engine
        .set_leap_list(Some(list(NEW_YEAR_2017 - 100 * DAY, &[])), sim.kernel(0));
    let (_, leap) = served_at(&mut sim, (midnight - 60) * S);
    assert_eq!(leap, Leap::AddSecond);
    let (served, leap) = served_at(&mut sim, midnight * S + S / 2);
    assert_eq!(served, served.max((midnight - 1) * S));
    assert!((served - (midnight * S - S / 2)).abs() < MS);
    assert_eq!(leap, Leap::NoWarning);
    sim.run_until(t_of(&sim, (midnight + 600) * S));
    let status = sim.engine.leap_status(sim.kernel(sim.t));
    assert_eq!((status.applied_s, status.scheduled), (1, None));
}

#[test]
fn a_smear_follows_its_formula_within_a_microsecond() {
    let midnight = NEW_YEAR_2017;
    let window: i64 = 86_400;
    let smear = LeapSettings {
        mode: LeapMode::Auto,
        handling: LeapHandling::Smear {
            window_s: window as u32,
        },
    };
    let mut sim = sim_before(midnight, 14 * 3600, smear, leaping(midnight, 1));
    sim.engine
        .set_leap_list(Some(list(NEW_YEAR_2017 + 178 * DAY, &[])), sim.kernel(0));
    let noon = midnight - window / 2;
    // Sampled every 17 minutes from before the window to after it, and at its edges.
    let mut points: Vec<i64> = (0..120).map(|i| (noon - 3600) * S + i * 1020 * S).collect();
    points.extend([
        noon * S,
        noon * S + 1,
        (noon + window + 1) * S - 1,
        (noon + window + 1) * S,
        midnight * S - 1,
        midnight * S,
    ]);
    points.sort();
    let mut seen_smearing = false;
    for uniform in points {
        let t = t_of(&sim, uniform);
        sim.run_until(t);
        let p = sim.engine.published();
        let kernel = sim.kernel(t);
        // UTC on the engine's own (unsmeared) scale, so that only the smear is measured: the
        // time before the pending leap, less the leap once it is past.
        let u = p.clock.pre_leap_from_realtime(kernel);
        let served = p.clock.ntp_from_realtime(kernel);
        let u_ns = u.to_unix_nanos(uniform as i128) as i64;
        // (Once the leap is folded into the past, `u` is UTC already.)
        let pending = p.clock.leap.delta != 0;
        let utc_ns = if pending && u_ns >= midnight * S {
            u_ns - S
        } else {
            u_ns
        };
        let offset = served.to_unix_nanos(uniform as i128) as i64 - utc_ns;
        // The formula: the clock lags linearly from noon to noon, one second over the window
        // plus the inserted second; UTC's own step at midnight shows as +1 s.
        let progress = ((u_ns - noon * S) as f64 / ((window + 1) * S) as f64).clamp(0.0, 1.0);
        let expected = if pending {
            -progress * 1e9 + if u_ns >= midnight * S { 1e9 } else { 0.0 }
        } else if u_ns >= midnight * S {
            0.0 // folded: the smear is done
        } else {
            -progress * 1e9
        };
        assert!(
            (offset as f64 - expected).abs() < 1_000.0,
            "at {} s from noon: offset {offset} ns, formula {expected}",
            u_ns / S - noon
        );
        if u_ns < noon * S || u_ns >= (noon + window + 1) * S {
            assert!(offset.abs() < 1_000, "outside the window: {offset}");
        }
        let status = sim.engine.leap_status(kernel);
        seen_smearing |= status.smearing;
        assert_eq!(
            status.announced,
            Leap::NoWarning,
            "a smearing server never announces"
        );
        let (_, li, _) = client_view(&sim, t);
        assert_eq!(li, 0);
    }
    assert!(seen_smearing);
    assert_eq!(
        steps_and_falsetickers(&sim, sim.t - 3600 * S),
        Vec::<String>::new()
    );
}

#[test]
fn serving_across_the_2036_era_rollover() {
    // NTP era 0 ends at 2036-02-07T06:28:16Z (Unix 2085978496).
    let rollover = 2_085_978_496i64;
    let mut sim = sim_before(rollover, 3600, LeapSettings::default(), three(10_000.0));
    sim.run_until(t_of(&sim, (rollover - 60) * S));
    assert!(matches!(sim.engine.sync_state(), SyncState::Synchronized { .. }));
    let synced_at = sim.t;
    for s in [-2i64, -1, 0, 1, 2, 600, 3600] {
        let uniform = (rollover + s) * S + S / 3;
        let t = t_of(&sim, uniform);
        sim.run_until(t);
        let served = sim.engine.published().clock.ntp_from_realtime(sim.kernel(t));
        assert_eq!(served.seconds() as i64, s.rem_euclid(1 << 32), "{s}");
        assert!((served.to_unix_nanos(uniform as i128) as i64 - uniform).abs() < MS);
    }
    assert_eq!(steps_and_falsetickers(&sim, synced_at), Vec::<String>::new());
    assert!(sim.synced.iter().rev().take(400).all(|&(_, s)| s));
    let after = sim.errors_between(t_of(&sim, rollover * S), sim.t);
    assert!(max_abs(&after) < 200 * US, "{}", max_abs(&after));
}

#[test]
fn with_the_kernel_armed_its_own_step_is_taken_not_served_twice() {
    // `--discipline-system`: the kernel, armed, steps CLOCK_REALTIME back at midnight and its
    // TAI offset up; CLOCK_TAI runs on. Readings of either clock must serve UTC throughout, and
    // once told, the engine takes the kernel's step as a clock change, not an offset.
    let midnight = NEW_YEAR_2017;
    let mut sim = sim_before(midnight, 3 * 3600, LeapSettings::default(), leaping(midnight, 1));
    sim.engine
        .set_leap_list(Some(list(NEW_YEAR_2017 + 178 * DAY, &[])), sim.kernel(0));
    sim.run_until(t_of(&sim, (midnight - 60) * S));
    assert_eq!(sim.engine.pending_step(), Some(1));
    sim.engine.set_kernel_leap(true);
    let tai_offset = sim.engine.published().clock.tai_minus_utc;
    // Half a second into the inserted second, as the kernel's clocks read it.
    let t = t_of(&sim, midnight * S + S / 2);
    sim.run_until(t);
    let uniform_kernel = sim.kernel(t);
    let realtime = uniform_kernel - S; // stepped back by the kernel
    let tai = uniform_kernel + tai_offset as i64 * S; // never stepped
    let expected = midnight * S - S / 2; // 23:59:59.5, the second time
    let utc = |n: NtpTimestamp| n.to_unix_nanos(expected as i128) as i64;
    let p = sim.engine.published().clock;
    assert!((utc(p.ntp_from_realtime(realtime)) - expected).abs() < MS);
    assert!((utc(p.ntp_from_tai(tai)) - expected).abs() < MS);
    // The shell sees the kernel's offset move and tells the engine.
    sim.engine.kernel_leapt(realtime);
    let p = sim.engine.published().clock;
    assert_eq!(p.tai_minus_utc, tai_offset + 1);
    assert_eq!((p.leap.past_s, p.leap.delta), (1, 0));
    assert!((utc(p.ntp_from_realtime(realtime)) - expected).abs() < MS);
    assert!((utc(p.ntp_from_tai(tai)) - expected).abs() < MS);
    // A second later, both clocks on: 00:00:00.5.
    let later = expected + 2 * S;
    let utc = |n: NtpTimestamp| n.to_unix_nanos(later as i128) as i64;
    assert!((utc(p.ntp_from_realtime(realtime + 2 * S)) - later).abs() < MS);
    assert!((utc(p.ntp_from_tai(tai + 2 * S)) - later).abs() < MS);
    assert_eq!(sim.engine.pending_step(), None);
    assert!(sim
        .engine
        .take_events()
        .iter()
        .any(|e| matches!(e, Event::LeapDone { delta: 1 })));
}

#[test]
fn polling_every_two_seconds_the_sources_stay_reachable_across_the_leap() {
    // No sample is taken within 10 s of the leap, but the replies still count: with polls
    // every 2 s, ten of them fall in that window, more than the eight that make a source
    // unreachable. Nothing is lost, nothing holds over, no leap is scheduled again after it.
    let midnight = NEW_YEAR_2017;
    let setup = Setup {
        true0: (midnight - 3 * 3600) * S,
        minsources: 2,
        skew_ppm: 20.0,
        poll: 1,
        ..Setup::default()
    };
    let mut sim = Sim::new(setup, leaping(midnight, 1));
    let (_, leap) = served_at(&mut sim, (midnight - 600) * S);
    assert_eq!(leap, Leap::AddSecond);
    let synced_at = sim.t;
    check_sequence(&mut sim, midnight, 1, Leap::AddSecond);
    sim.run_until(t_of(&sim, (midnight + 600) * S));
    assert_eq!(steps_and_falsetickers(&sim, synced_at), Vec::<String>::new());
    let unreachable: Vec<_> = sim
        .events
        .iter()
        .filter(|(t, e)| *t >= synced_at && matches!(e, Event::Unreachable { .. }))
        .collect();
    assert!(unreachable.is_empty(), "{unreachable:?}");
    let status = sim.engine.leap_status(sim.kernel(sim.t));
    assert_eq!((status.applied_s, status.scheduled), (1, None));
}

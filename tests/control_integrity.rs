//! Never serve wrong time as good: the step and panic limits, agreement before trust and a
//! stable state under misbehaving upstreams, in the deterministic simulation of `tests/sim`.
//!
//! "Served error" is the served time minus true time; the upstreams that behave keep true time.

mod sim;

use sim::*;
use strata::proto::control::engine::SyncState;
use strata::proto::control::events::Event;
use strata::proto::control::guard::{Phase, StepLimits};

const H: i64 = 3600 * S;

fn sim_with(setup: Setup, upstreams: Vec<Upstream>) -> Sim {
    Sim::new(setup, upstreams)
}

fn refusals(sim: &Sim) -> Vec<(i64, Phase, f64)> {
    sim.events
        .iter()
        .filter_map(|(t, e)| match e {
            Event::CorrectionRefused { refusal } => Some((*t, refusal.phase, refusal.error)),
            _ => None,
        })
        .collect()
}

/// The state changes in the event log after true time `from`: (time, what).
fn state_events(sim: &Sim, from: i64) -> Vec<(i64, String)> {
    sim.events
        .iter()
        .filter(|(t, _)| *t >= from)
        .filter(|(_, e)| {
            matches!(
                e,
                Event::Synchronized { .. }
                    | Event::Holdover { .. }
                    | Event::Unsynchronized { .. }
                    | Event::Local { .. }
            )
        })
        .map(|(t, e)| (*t, e.to_string()))
        .collect()
}

/// The served time is the kernel clock's, uncorrected.
fn assert_untouched(sim: &Sim) {
    let kernel = sim.kernel(sim.t);
    assert_eq!(sim.engine.published().clock.corrected_utc_ns(kernel), kernel);
}

fn ever_synchronized(sim: &Sim) -> bool {
    sim.synced.iter().any(|&(_, s)| s)
}

#[test]
fn one_upstream_an_hour_off_at_start_is_never_served_as_synchronized() {
    for offset in [3600 * S, -3600 * S] {
        let mut ups = three(100e3)[..1].to_vec();
        ups[0].offset = offset;
        let mut sim = sim_with(
            Setup {
                seed: 101,
                ..Default::default()
            },
            ups.clone(),
        );
        sim.run_until(2 * H);
        assert!(
            !ever_synchronized(&sim),
            "offset {offset}: served as synchronized"
        );
        assert_eq!(sim.engine.sync_state(), SyncState::Unsynchronized);
        let r = refusals(&sim);
        assert_eq!(r.len(), 1, "refusal logged once: {r:?}");
        assert_eq!(r[0].1, Phase::Startup);
        assert!((r[0].2 - offset as f64 * 1e-9).abs() < 1.0, "{r:?}");
        // The clock model was not touched: it serves the kernel clock as it is.
        assert_untouched(&sim);
        let status = strata_status(&sim);
        assert!(status.refused.as_deref().unwrap().contains("--allow-step"));
        assert!(status.refusals > 1);
        assert_eq!(status.steps, 0);

        // With the local clock as the fallback: still never the hour, the local stratum instead.
        let mut sim = sim_with(
            Setup {
                seed: 102,
                local_stratum: Some(10),
                ..Default::default()
            },
            ups.clone(),
        );
        sim.run_until(2 * H);
        assert_eq!(sim.engine.sync_state(), SyncState::Local);
        assert_eq!(sim.engine.published().server.stratum, 10);
        assert_untouched(&sim);
        assert_eq!(refusals(&sim).len(), 1);

        // The operator's one-time override: the hour is taken, by a step, and served.
        let mut sim = sim_with(
            Setup {
                seed: 103,
                limits: StepLimits {
                    allow_once: true,
                    ..StepLimits::default()
                },
                ..Default::default()
            },
            ups,
        );
        sim.run_until(H);
        assert!(matches!(sim.engine.sync_state(), SyncState::Synchronized { .. }));
        let e = sim.served_error(sim.t);
        assert!((e - offset).abs() < MS, "served {e} ns off, the source {offset}");
        assert!(sim
            .events
            .iter()
            .any(|(_, e)| matches!(e, Event::Overridden { .. })));
        assert!(refusals(&sim).is_empty());
    }
}

#[test]
fn a_start_up_step_within_the_limits_is_taken() {
    let mut ups = three(100e3)[..1].to_vec();
    ups[0].offset = 500 * S;
    let mut sim = sim_with(
        Setup {
            seed: 104,
            ..Default::default()
        },
        ups,
    );
    sim.run_until(H);
    assert!(matches!(sim.engine.sync_state(), SyncState::Synchronized { .. }));
    assert!((sim.served_error(sim.t) - 500 * S).abs() < MS);
    assert_eq!(strata_status(&sim).steps, 1);
}

/// One source of `n` jumps by `jump` at 1 h; the run goes on to 4 h.
fn jump_scenario(n: usize, jump: i64, seed: u64) -> Sim {
    let mut ups = three(100e3)[..n].to_vec();
    ups[0].jumps = vec![(H, jump)];
    let mut sim = sim_with(
        Setup {
            seed,
            // The default (2) where there are two sources to agree; one source needs 1.
            minsources: n.min(2),
            ..Default::default()
        },
        ups,
    );
    sim.run_until(H);
    assert!(
        matches!(sim.engine.sync_state(), SyncState::Synchronized { .. }),
        "synchronized before the jump"
    );
    sim.run_until(4 * H);
    sim
}

#[test]
fn a_good_upstream_that_jumps_is_never_followed() {
    for jump in [3600 * S, -30 * S] {
        for n in 1..=3 {
            let sim = jump_scenario(n, jump, 110 + n as u64);
            let label = format!("{n} source(s), jump {:+} s", jump / S);
            // The served time stays true throughout.
            let worst = max_abs(&sim.errors_between(600 * S, 4 * H));
            println!(
                "{label}: max |served error| from 10 min on {:.1} us",
                worst as f64 / 1e3
            );
            assert!(worst < MS, "{label}: served error {worst} ns");
            // One state change for the event at most: holdover when the jumped source was all
            // there was to agree (one source; or two with no majority), none with three.
            let changes = state_events(&sim, H);
            println!("{label}: state changes after the jump: {changes:?}");
            match n {
                3 => {
                    assert!(changes.is_empty(), "{label}: {changes:?}");
                    assert!(sim.events.iter().any(|(_, e)| *e
                        == Event::Falseticker {
                            addr: sim.upstreams[0].addr
                        }));
                }
                _ => {
                    assert_eq!(changes.len(), 1, "{label}: {changes:?}");
                    assert!(changes[0].1.starts_with("holdover"), "{label}: {changes:?}");
                    assert_eq!(sim.engine.sync_state(), SyncState::Holdover);
                }
            }
            if n == 1 {
                let r = refusals(&sim);
                assert_eq!(r.len(), 1, "{label}: refused once: {r:?}");
                assert_eq!(r[0].1, Phase::Later);
            }
            // The status shows the offsets measured: the jump for the jumped source, about zero
            // for the others.
            let status = sim.engine.sources(sim.kernel(sim.t));
            for s in &status {
                let offset = s.offset.expect("measured");
                let truth = if s.addr == sim.upstreams[0].addr {
                    jump as f64 * 1e-9
                } else {
                    0.0
                };
                assert!(
                    (offset - truth).abs() < 1e-3,
                    "{label}: {} shows {offset} s, truth {truth} s",
                    s.addr
                );
            }
        }
    }
}

#[test]
fn a_jump_and_back_changes_the_state_once_each_way() {
    let mut ups = three(100e3)[..1].to_vec();
    ups[0].jumps = vec![(H, 30 * S), (2 * H, 0)];
    let mut sim = sim_with(
        Setup {
            seed: 120,
            ..Default::default()
        },
        ups,
    );
    sim.run_until(4 * H);
    let changes = state_events(&sim, H);
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(changes[0].1.starts_with("holdover") && changes[1].1.starts_with("synchronized"));
    assert!(max_abs(&sim.errors_between(600 * S, 4 * H)) < MS);
    assert!(strata_status(&sim).refused.is_none(), "the refusal ended");
}

#[test]
fn a_slowly_drifting_falseticker_is_rejected() {
    let mut ups = three(100e3);
    // 50 ms over an hour, from the start.
    ups[1].drift = 0.05 / 3600.0;
    let mut sim = sim_with(
        Setup {
            seed: 130,
            minsources: 2,
            ..Default::default()
        },
        ups,
    );
    sim.run_until(2 * H);
    let drifter = sim.upstreams[1].addr;
    assert!(sim
        .events
        .iter()
        .any(|(_, e)| *e == Event::Falseticker { addr: drifter }));
    let status = sim.engine.sources(sim.kernel(sim.t));
    assert!(status.iter().find(|s| s.addr == drifter).unwrap().falseticker);
    assert!(matches!(sim.engine.sync_state(), SyncState::Synchronized { .. }));
    let worst = max_abs(&sim.errors_between(600 * S, 2 * H));
    println!(
        "drifting falseticker (50 ms/h): max |served error| from 10 min on {:.1} us",
        worst as f64 / 1e3
    );
    assert!(worst < 2 * MS, "{worst} ns");
}

#[test]
fn default_agreement_needs_two_sources() {
    let mut sim = sim_with(
        Setup {
            seed: 140,
            minsources: strata::proto::control::settings::DEFAULT_MINSOURCES,
            ..Default::default()
        },
        three(100e3)[..1].to_vec(),
    );
    sim.run_until(H);
    assert!(!ever_synchronized(&sim));
    let status = strata_status(&sim);
    assert!(status.too_few_sources().unwrap().contains("minsources is 2"));
    let mut sim = sim_with(
        Setup {
            seed: 141,
            minsources: strata::proto::control::settings::DEFAULT_MINSOURCES,
            ..Default::default()
        },
        three(100e3)[..2].to_vec(),
    );
    sim.run_until(H);
    assert!(matches!(sim.engine.sync_state(), SyncState::Synchronized { .. }));
}

fn strata_status(sim: &Sim) -> strata::daemon::observe::board::IntegrityStatus {
    strata::daemon::observe::board::ControlStatus::from_engine(&sim.engine, sim.kernel(sim.t)).integrity
}

//! Time constraints in the control engine, in the simulation's virtual time (tests/sim): a
//! constraint taken at the true time keeps a source an hour off from being used even when it is
//! the only one and the step limits would let it through, and lets a right source synchronize.

mod sim;

use sim::*;
use strata::proto::control::constraint::{Constraint, Constraints};
use strata::proto::control::events::Event;
use strata::proto::control::guard::StepLimits;
use strata::proto::control::source::Unfit;

/// One upstream `offset` ns off, start-up limits wide enough for a step of hours, and (with
/// `constrained`) a constraint fetched at the start in a 100 ms round trip whose Date is right.
fn run(offset: i64, constrained: bool) -> Sim {
    let mut up = Upstream::new("198.18.0.1", 100e3);
    up.offset = offset;
    let mut sim = Sim::new(
        Setup {
            seed: 5,
            limits: StepLimits {
                startup_forward: 1e6,
                startup_backward: 1e6,
                ..StepLimits::default()
            },
            ..Default::default()
        },
        vec![up],
    );
    if constrained {
        let date_s = (sim.true0 / S) as i64;
        let (sent, received) = (sim.kernel(0) - 50 * MS, sim.kernel(0) + 50 * MS);
        sim.engine
            .set_constraints(Constraints::new(vec![Constraint::new(date_s, sent, received)]));
    }
    sim.run_until(600 * S);
    sim
}

fn synchronized(sim: &Sim) -> bool {
    sim.events
        .iter()
        .any(|(_, e)| matches!(e, Event::Synchronized { .. }))
}

#[test]
fn an_upstream_an_hour_off_is_rejected_by_the_constraint_even_alone() {
    let sim = run(3600 * S, true);
    assert!(!synchronized(&sim), "{:?}", sim.events);
    assert!(!sim.events.iter().any(|(_, e)| matches!(e, Event::Step { .. })));
    let addr = sim.upstreams[0].addr;
    assert!(sim.events.iter().any(|(_, e)| *e
        == Event::Unusable {
            addr,
            why: Unfit::OutsideConstraint
        }));
    let status = sim.engine.sources(sim.kernel(sim.t));
    assert_eq!(status[0].unfit, Some(Unfit::OutsideConstraint));
    // Every measurement was rejected, and counted.
    assert!(
        sim.engine.constraint_rejections() >= 8,
        "{}",
        sim.engine.constraint_rejections()
    );

    // Without the constraint, the same upstream steps the clock by the hour: the constraint
    // was what stopped it.
    let free = run(3600 * S, false);
    assert!(synchronized(&free));
    assert!(free
        .events
        .iter()
        .any(|(_, e)| matches!(e, Event::Step { seconds } if (seconds - 3600.0).abs() < 1.0)));
}

#[test]
fn a_right_upstream_synchronizes_within_the_constraint() {
    let sim = run(0, true);
    assert!(synchronized(&sim), "{:?}", sim.events);
    assert_eq!(sim.engine.constraint_rejections(), 0);
    let errors = sim.errors_between(300 * S, 600 * S);
    assert!(max_abs(&errors) < 5 * MS, "{}", max_abs(&errors));
}

#[test]
fn the_first_synchronization_waits_for_the_constraints() {
    let mut sim = Sim::new(Setup::default(), vec![Upstream::new("198.18.0.1", 100e3)]);
    sim.engine.await_constraints();
    sim.run_until(60 * S);
    assert!(!synchronized(&sim), "{:?}", sim.events);
    // The fetch ended with nothing reachable: strata works as it would without constraints.
    sim.engine.set_constraints(Constraints::default());
    sim.run_until(200 * S);
    assert!(synchronized(&sim), "{:?}", sim.events);
}

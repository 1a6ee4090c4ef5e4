//! Detection: a responder that corrupts origins, answers twice or drops requests is reported as
//! exactly that many invalid, duplicate and lost replies.

mod common;

use std::time::Duration;

use common::{f, loadgen, only_step, u, Fault, Responder};

/// 1000 requests at 1000/s from 4 flows, with a short timeout so that lost requests end the
/// step quickly.
fn run_against(responder: &Responder) -> serde_json::Value {
    let target = responder.addr.to_string();
    let args = [
        "--target",
        &target,
        "--rate",
        "1000",
        "--step-seconds",
        "1",
        "--count",
        "1000",
        "--flows",
        "4",
        "--timeout",
        "0.5",
        "--json",
        "--quiet",
    ];
    let report = loadgen(&args, Duration::from_secs(30)).json();
    only_step(&report).clone()
}

#[test]
fn corrupted_origins_are_invalid_and_their_requests_lost() {
    let responder = Responder::start(Fault::CorruptOriginEvery(5));
    let step = run_against(&responder);
    let corrupted = responder.count(|c| &c.corrupted);
    assert_eq!(responder.count(|c| &c.requests), 1000, "{step}");
    assert_eq!(corrupted, 200);
    assert_eq!(u(&step, "sent"), 1000);
    assert_eq!(u(&step, "received"), 1000);
    assert_eq!(u(&step, "invalid"), corrupted, "{step}");
    assert_eq!(u(&step["invalid_reasons"], "unknown_origin"), corrupted);
    assert_eq!(f(&step, "invalid_fraction"), 0.2);
    // A reply that names no request answers none: those requests are lost.
    assert_eq!(u(&step, "lost"), corrupted);
    assert_eq!(u(&step, "valid"), 1000 - corrupted);
    assert_eq!(u(&step, "duplicate"), 0);
}

#[test]
fn second_answers_are_duplicates() {
    let responder = Responder::start(Fault::AnswerTwice);
    let step = run_against(&responder);
    assert_eq!(responder.count(|c| &c.replies), 2000);
    assert_eq!(u(&step, "sent"), 1000);
    assert_eq!(u(&step, "valid"), 1000, "{step}");
    assert_eq!(u(&step, "duplicate"), 1000, "{step}");
    assert_eq!(u(&step, "invalid"), 0);
    assert_eq!(u(&step, "lost"), 0);
}

#[test]
fn every_tenth_request_dropped_is_ten_percent_lost() {
    let responder = Responder::start(Fault::DropEvery(10));
    let step = run_against(&responder);
    assert_eq!(responder.count(|c| &c.requests), 1000);
    assert_eq!(responder.count(|c| &c.dropped), 100);
    assert_eq!(u(&step, "lost"), 100, "{step}");
    assert_eq!(f(&step, "lost_fraction"), 0.1);
    assert_eq!(u(&step, "valid"), 900);
    assert_eq!(u(&step, "invalid"), 0);
    assert_eq!(u(&step, "duplicate"), 0);
    assert_eq!(u(&step, "late"), 0);
}

#[test]
fn a_correct_responder_gives_clean_figures() {
    let responder = Responder::start(Fault::None);
    let step = run_against(&responder);
    assert_eq!(
        (u(&step, "sent"), u(&step, "valid"), u(&step, "lost")),
        (1000, 1000, 0),
        "{step}"
    );
    let latency = &step["latency_ns"];
    let response = &step["response_time_ns"];
    // Loopback through a thread: well under 100 ms, and the server's own part is smaller.
    assert!(u(latency, "p50") > 0 && u(latency, "p50") < 100_000_000, "{step}");
    assert!(u(response, "p50") <= u(latency, "p50"), "{step}");
    // Same clock on both sides: the offset is within the round trip.
    let offset = step["offset_ns"]["p50"].as_i64().unwrap();
    assert!(offset.unsigned_abs() <= u(latency, "max"), "{step}");
}

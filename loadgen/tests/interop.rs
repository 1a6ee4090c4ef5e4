//! Socket mode against real servers on loopback: chronyd (from the Debian package, a server no
//! one here wrote) and strata's own socket path. Both must give valid replies only, with a
//! plausible response time.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{loadgen, only_step, u};
use strata_test_support::{available, free_udp_port, Chronyd, Server, CHRONYD};

/// 2000 requests at 1000/s from 8 flows; returns the step.
fn load(port: u16) -> serde_json::Value {
    let target = format!("127.0.0.1:{port}");
    let args = [
        "--target",
        &target,
        "--rate",
        "1000",
        "--step-seconds",
        "2",
        "--json",
        "--quiet",
    ];
    let report = loadgen(&args, Duration::from_secs(30)).json();
    only_step(&report).clone()
}

fn assert_clean(step: &serde_json::Value, server: &str) {
    eprintln!("{server}: {step}");
    assert_eq!(u(step, "sent"), 2000, "{server}: {step}");
    assert_eq!(u(step, "invalid"), 0, "{server}: {step}");
    assert_eq!(u(step, "kod"), 0, "{server}: {step}");
    assert_eq!(u(step, "duplicate"), 0, "{server}: {step}");
    // Loopback at a low rate: nothing should be lost, but allow a stray drop on a busy machine.
    assert!(u(step, "valid") >= 1990, "{server}: {step}");
    // A server answers in its own code path in well under 10 ms, and not in 0 ns.
    let response = &step["response_time_ns"];
    assert!(
        u(response, "p50") > 0 && u(response, "p50") < 10_000_000,
        "{server}: {step}"
    );
    assert!(u(&step["latency_ns"], "p50") < 50_000_000, "{server}: {step}");
    // Both serve this machine's clock: the offset is small.
    let offset = step["offset_ns"]["p50"].as_i64().unwrap();
    assert!(offset.abs() < 10_000_000, "{server}: offset {offset} ns");
}

#[test]
#[ignore = "needs chronyd (make test runs it)"]
fn chronyd_on_loopback_gives_only_valid_replies() {
    if !available("chronyd (/usr/sbin/chronyd)", Path::new(CHRONYD).exists()) {
        return;
    }
    let port = free_udp_port();
    let mut chronyd = Chronyd::start(None, "127.0.0.1", port, None);
    chronyd.wait_answering(SocketAddr::from(([127, 0, 0, 1], port)));
    let step = load(port);
    drop(chronyd);
    assert_clean(&step, "chronyd");
}

#[test]
fn strata_serve_on_loopback_gives_only_valid_replies() {
    let port = free_udp_port();
    let listen = format!("127.0.0.1:{port}");
    let server = Server::start(
        None,
        // A load from one address is what the rate limiter stops: off for a load test.
        &[
            "--mode",
            "socket",
            "--listen",
            &listen,
            "--local-stratum",
            "1",
            "--rate-limit",
            "off",
        ],
        Some(SocketAddr::from(([127, 0, 0, 1], port))),
    );
    let step = load(port);
    let log = server.log();
    drop(server);
    assert_clean(&step, &format!("strata serve (log: {log})"));
}

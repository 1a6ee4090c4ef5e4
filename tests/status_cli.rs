//! `strata status [--json]` against a running server: the JSON parses and agrees with
//! `/metrics` on the counters and the state; the human view has its parts; a missing or stale
//! control socket, or one another server holds, gets a clear message and a non-zero exit.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};

use strata_test_support::*;

fn status(control: &Path, json: bool) -> Output {
    let mut cmd = Command::new(strata_bin());
    cmd.args(["status", "--control"]).arg(control);
    if json {
        cmd.arg("--json");
    }
    cmd.output().expect("run strata status")
}

fn server(control: &Path) -> (Server, SocketAddr, SocketAddr) {
    let ntp: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let listen = ntp.to_string();
    let control = control.to_str().unwrap();
    let mut server = Server::start(
        None,
        &[
            "--listen",
            &listen,
            "--local-stratum",
            "2",
            "--cores",
            "0",
            "--metrics",
            "127.0.0.1:0",
            "--control",
            control,
            // Exact counts from one client: no rate limit in the way.
            "--rate-limit",
            "off",
        ],
        Some(ntp),
    );
    server.wait_for_log("control socket at");
    let metrics = metrics_addr(&server.log());
    (server, ntp, metrics)
}

#[test]
fn status_json_agrees_with_metrics() {
    let control = control_path("status");
    let _cleanup = RemoveOnDrop(control.clone());
    let (server, ntp, metrics) = server(&control);
    assert_eq!(exchange(ntp, "127.0.0.1:0", 25), 25);
    send_unanswered(ntp, "127.0.0.1:0", &client_request(0x27, 48)); // mode 7: private

    // Nothing is sent between the two reads, so the counters must agree exactly.
    let out = status(&control, true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    let m = parse(&scrape(metrics));

    let total = &json["total"];
    let u = |v: &serde_json::Value| v.as_u64().unwrap_or_else(|| panic!("not a count: {v}")) as f64;
    assert_eq!(u(&total["requests"]), m.sum("strata_requests_total", &[]));
    assert_eq!(u(&total["replies"]), m.sum("strata_replies_total", &[]));
    assert_eq!(
        u(&total["replies_time"]),
        m.sum("strata_replies_total", &[("kind", "time")])
    );
    assert_eq!(u(&total["dropped"]), m.sum("strata_requests_dropped_total", &[]));
    assert_eq!(
        u(&total["drops"]["private_mode"]),
        m.sum("strata_requests_dropped_total", &[("reason", "private_mode")])
    );
    assert_eq!(u(&total["drops"]["private_mode"]), 1.0);
    assert_eq!(u(&total["bytes_in"]), m.sum("strata_received_bytes_total", &[]));
    assert_eq!(u(&total["bytes_out"]), m.sum("strata_sent_bytes_total", &[]));
    assert_eq!(
        u(&total["response_time"]["count"]),
        m.sum("strata_response_time_seconds_count", &[])
    );
    // Per responder, with its core.
    let responders = json["responders"].as_array().unwrap();
    assert_eq!(responders.len(), 1);
    let r = &responders[0];
    assert_eq!(r["path"], "socket");
    assert_eq!(r["core"], 0);
    assert_eq!(
        u(&r["counters"]["requests"]),
        m.sum(
            "strata_requests_total",
            &[("path", "socket"), ("queue", "0"), ("core", "0")]
        )
    );
    assert!(u(&r["counters"]["requests"]) >= 26.0);

    // The state.
    let s = &json["server"];
    assert_eq!(s["sync"], "local");
    assert_eq!(s["synchronized"], true);
    assert_eq!(s["refid"], "LOCL");
    assert_eq!(s["stratum"].as_f64().unwrap(), m.get("strata_server_stratum"));
    assert_eq!(s["stratum"], 2);
    assert_eq!(s["leap"].as_f64().unwrap(), m.get("strata_server_leap_indicator"));
    assert_eq!(
        s["root_delay"].as_f64().unwrap(),
        m.get("strata_server_root_delay_seconds")
    );
    assert_eq!(
        s["root_dispersion"].as_f64().unwrap(),
        m.get("strata_server_root_dispersion_seconds")
    );
    assert_eq!(
        s["frequency_ppm"].as_f64().unwrap(),
        m.get("strata_clock_frequency_ppm")
    );
    assert_eq!(
        s["offset"].as_f64().unwrap(),
        m.get("strata_clock_offset_seconds")
    );
    assert_eq!(json["sources"].as_array().unwrap().len(), 0);
    assert_eq!(json["build"]["version"], env!("CARGO_PKG_VERSION"));

    // The human view.
    let out = status(&control, false);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for part in [
        "State           : local",
        "Reference ID    : LOCL",
        "Stratum         : 2",
        "Leap status     : normal",
        "(no upstream sources)",
        "socket 0",
        "Drops           : private_mode 1",
        "Rx timestamps   : kernel_software",
    ] {
        assert!(text.contains(part), "no {part:?} in:\n{text}");
    }

    // The socket is removed on a clean stop; then status says there is no server.
    let (exit, log) = server.stop();
    assert!(exit.success(), "{log}");
    assert!(!control.exists(), "the control socket outlived the server");
    let out = status(&control, true);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("strata status: no control socket at "), "{err}");
}

#[test]
fn missing_and_stale_sockets_get_a_clear_message() {
    let control = control_path("stale");
    let _cleanup = RemoveOnDrop(control.clone());
    let out = status(&control, false);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no control socket at"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty());

    // What a killed server leaves: a socket file nobody listens on.
    drop(std::os::unix::net::UnixListener::bind(&control).unwrap());
    let out = status(&control, true);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is stale"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // A server started on it replaces the stale file.
    let (server, _, _) = server(&control);
    let out = status(&control, true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A second server asked for the same socket refuses to start, and says why.
    let ntp = format!("127.0.0.1:{}", free_udp_port());
    let second = Command::new(strata_bin())
        .args([
            "serve",
            "--listen",
            &ntp,
            "--cores",
            "0",
            "--metrics",
            "off",
            "--control",
        ])
        .arg(&control)
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("is in use: another strata server answers on it"),
        "{err}"
    );
    // ... and leaves the first one's socket alone.
    assert!(status(&control, true).status.success());
    drop(server);
}

/// `strata status --check` exit codes: 0 healthy, 1 serving but not in an accepted state or
/// over a limit, 2 not serving.
#[test]
fn status_check_exit_codes() {
    let control = control_path("check");
    let _cleanup = RemoveOnDrop(control.clone());
    let (_server, _ntp, _metrics) = server(&control);
    let check = |extra: &[&str]| {
        let out = Command::new(strata_bin())
            .args(["status", "--check", "--control"])
            .arg(&control)
            .args(extra)
            .output()
            .expect("run strata status --check");
        let line = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
        (out.status.code(), line)
    };
    // --local-stratum 2: the local reference, accepted by default.
    let (rc, line) = check(&[]);
    assert_eq!(rc, Some(0), "{line}");
    assert!(
        line.starts_with("healthy: local, stratum 2, refid LOCL"),
        "{line}"
    );
    let (rc, line) = check(&["--accept", "synchronized,holdover"]);
    assert_eq!(rc, Some(1), "{line}");
    assert!(line.contains("state local is not accepted"), "{line}");
    let (rc, line) = check(&["--max-stratum", "1"]);
    assert_eq!(rc, Some(1), "{line}");
    let (rc, _) = check(&["--max-root-distance", "10"]);
    assert_eq!(rc, Some(0));
    // A bad value is a usage error (2, as clap's), as is --accept unsynchronized.
    let (rc, line) = check(&["--accept", "unsynchronized"]);
    assert_eq!(rc, Some(2), "{line}");
    // A server whose only upstream never answers stays unsynchronized (LI 3): unhealthy.
    let control2 = control_path("check-unsync");
    let _cleanup2 = RemoveOnDrop(control2.clone());
    let ntp2 = format!("127.0.0.1:{}", free_udp_port());
    let silent = format!("127.0.0.1:{} minpoll 0 maxpoll 0", free_udp_port());
    let mut unsync = Server::start(
        None,
        &[
            "--listen",
            &ntp2,
            "--upstream",
            &silent,
            "--cores",
            "0",
            "--metrics",
            "off",
            "--control",
            control2.to_str().unwrap(),
        ],
        None,
    );
    unsync.wait_for_log("control socket at");
    let out = Command::new(strata_bin())
        .args(["status", "--check", "--control"])
        .arg(&control2)
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{line}");
    assert!(line.contains("replies are marked unsynchronized"), "{line}");
    // No server: down.
    let out = Command::new(strata_bin())
        .args(["status", "--check", "--control", "/nonexistent/strata.sock"])
        .output()
        .unwrap();
    let (rc, line) = (out.status.code(), String::from_utf8_lossy(&out.stderr));
    assert_eq!(rc, Some(2), "{line}");
    assert!(line.contains("down: no control socket"), "{line}");
}

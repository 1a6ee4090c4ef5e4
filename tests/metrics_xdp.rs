//! `GET /metrics` of an XDP-path server in a netns lab of this test's own: the body (with the
//! XDP program's per-CPU counters and the AF_XDP sockets' XDP_STATISTICS) is clean under
//! `promtool check metrics`; N requests from the client namespace raise the responders' and the
//! program's counters by exactly N; a malformed one raises its drop reason by one; and
//! `strata status --json` agrees with the scrape.

use std::net::SocketAddr;
use std::process::Command;

use strata_test_support::*;

const SERVER: &str = "198.18.0.2:123";
const XDP: (&str, &str) = ("path", "xdp");

#[test]
#[ignore = "needs root, network namespaces, XDP, python3 and promtool (make test runs it)"]
fn xdp_scrape_is_clean_and_counts_exactly() {
    if !Lab::available() {
        return;
    }
    let lab = Lab::up();
    let control = control_path("xdp");
    let _cleanup = RemoveOnDrop(control.clone());
    let control_arg = control.to_str().unwrap().to_string();
    let mut server = Server::start(
        Some(&lab.ns("srv")),
        &[
            "--iface",
            "srv0",
            "--mode",
            "xdp",
            "--local-stratum",
            "1",
            "--cores",
            "1",
            // The responders' series are the point here: every request goes to AF_XDP.
            "--xdp-answer",
            "off",
            "--rate-limit",
            "off",
            "--metrics",
            "127.0.0.1:0",
            "--control",
            &control_arg,
        ],
        None,
    );
    server.wait_for_log("through XDP");
    server.wait_for_log("control socket at");
    let metrics = metrics_addr(&server.log());
    let srv = lab.ns("srv");
    let cli = lab.ns("cli");
    let scrape_in = |ns: &str| {
        let ns = ns.to_string();
        run_in(&ns, move || scrape(metrics))
    };
    let ntp: SocketAddr = SERVER.parse().unwrap();

    // One exchange first, so that ARP is done before the counting starts.
    assert_eq!(run_in(&cli, move || exchange(ntp, "0.0.0.0:0", 1)), 1);
    let before = parse(&scrape_in(&srv));
    const N: usize = 30;
    assert_eq!(run_in(&cli, move || exchange(ntp, "0.0.0.0:0", N)), N);
    let after = parse(&scrape_in(&srv));
    let delta = |name: &str, with: &[(&str, &str)]| after.sum(name, with) - before.sum(name, with);
    let n = N as f64;
    assert_eq!(delta("strata_requests_total", &[XDP]), n);
    assert_eq!(delta("strata_replies_total", &[XDP, ("kind", "time")]), n);
    assert_eq!(
        delta("strata_receive_timestamps_total", &[XDP, ("source", "xdp")]),
        n
    );
    assert_eq!(delta("strata_response_time_seconds_count", &[XDP]), n);
    assert_eq!(delta("strata_xdp_redirected_total", &[("interface", "srv0")]), n);
    assert!(delta("strata_xdp_seen_total", &[("interface", "srv0")]) >= n);
    // Whole frames on this path: 14 Ethernet + 20 IPv4 + 8 UDP + 48 NTP.
    assert_eq!(delta("strata_received_bytes_total", &[XDP]), 90.0 * n);
    assert_eq!(delta("strata_sent_bytes_total", &[XDP]), 90.0 * n);
    for field in [
        "rx_dropped",
        "rx_invalid_descs",
        "tx_invalid_descs",
        "rx_ring_full",
        "rx_fill_ring_empty_descs",
        "tx_ring_empty_descs",
    ] {
        let name = format!("strata_xsk_{field}_total");
        assert!(after.has(&name), "no {name}");
    }
    // Nothing was lost or malformed between the kernel and the responders.
    for field in [
        "rx_dropped",
        "rx_invalid_descs",
        "tx_invalid_descs",
        "rx_ring_full",
    ] {
        let name = format!("strata_xsk_{field}_total");
        assert_eq!(after.sum(&name, &[("interface", "srv0")]), 0.0, "{name}");
    }

    // A control-mode request: redirected, then dropped by respond().
    run_in(&cli, move || {
        send_unanswered(ntp, "0.0.0.0:0", &client_request(0x26, 48))
    });
    let dropped = parse(&scrape_in(&srv));
    let step = |name: &str, with: &[(&str, &str)]| dropped.sum(name, with) - after.sum(name, with);
    assert_eq!(
        step(
            "strata_requests_dropped_total",
            &[XDP, ("reason", "control_mode")]
        ),
        1.0
    );
    assert_eq!(step("strata_requests_dropped_total", &[XDP]), 1.0);
    assert_eq!(step("strata_xdp_redirected_total", &[]), 1.0);
    assert_eq!(step("strata_replies_total", &[]), 0.0);

    let body = scrape_in(&srv);
    if promtool_clean(&body) {
        eprintln!("promtool check metrics: clean");
    }

    // status --json (the control socket is a file: reachable from outside the namespace).
    let out = Command::new(strata_bin())
        .args(["status", "--json", "--control", &control_arg])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let m = parse(&scrape_in(&srv));
    assert_eq!(
        json["total"]["requests"].as_f64().unwrap(),
        m.sum("strata_requests_total", &[])
    );
    assert_eq!(
        json["total"]["replies"].as_f64().unwrap(),
        m.sum("strata_replies_total", &[])
    );
    let programs = json["xdp_programs"].as_array().unwrap();
    assert_eq!(programs.len(), 1);
    assert_eq!(programs[0]["interface"], "srv0");
    let redirected: f64 = programs[0]["cpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|cpu| cpu["redirected"].as_f64().unwrap())
        .sum();
    assert_eq!(redirected, m.sum("strata_xdp_redirected_total", &[]));
    assert_eq!(
        json["xsk_sockets"].as_array().unwrap().len(),
        2,
        "srv0 has two queues"
    );
    assert_eq!(json["responders"].as_array().unwrap().len(), 2);

    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(!control.exists());
}

/// With the answer tier on (the default), plain requests are counted as the XDP program's own
/// answers and never reach the responders' series; a request with a MAC goes to a responder.
#[test]
#[ignore = "needs root, network namespaces and XDP (make test runs it)"]
fn xdp_answers_are_counted_as_the_programs_own() {
    if !Lab::available() {
        return;
    }
    let lab = Lab::up();
    let mut server = Server::start(
        Some(&lab.ns("srv")),
        &[
            "--iface",
            "srv0",
            "--mode",
            "xdp",
            "--local-stratum",
            "1",
            "--cores",
            "1",
            "--rate-limit",
            "off",
            "--metrics",
            "127.0.0.1:0",
            "--control",
            "off",
        ],
        None,
    );
    server.wait_for_log("through XDP");
    let metrics = metrics_addr(&server.log());
    let srv = lab.ns("srv");
    let cli = lab.ns("cli");
    let scrape_srv = || {
        let ns = srv.clone();
        parse(&run_in(&ns, move || scrape(metrics)))
    };
    let ntp: SocketAddr = SERVER.parse().unwrap();
    assert_eq!(run_in(&cli, move || exchange(ntp, "0.0.0.0:0", 1)), 1);
    let before = scrape_srv();
    const N: usize = 25;
    assert_eq!(run_in(&cli, move || exchange(ntp, "0.0.0.0:0", N)), N);
    run_in(&cli, move || {
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        sock.set_read_timeout(Some(std::time::Duration::from_secs(3)))
            .unwrap();
        sock.send_to(&client_request(0x23, 68), ntp).unwrap();
        let mut buf = [0u8; 128];
        assert_eq!(sock.recv(&mut buf).expect("a reply to the MAC request"), 48);
    });
    let after = scrape_srv();
    let delta = |name: &str, with: &[(&str, &str)]| after.sum(name, with) - before.sum(name, with);
    let srv0 = [("interface", "srv0")];
    assert_eq!(delta("strata_xdp_answered_total", &srv0), N as f64);
    assert_eq!(delta("strata_xdp_answered_unsync_total", &srv0), 0.0);
    assert_eq!(delta("strata_xdp_redirected_total", &srv0), 1.0);
    assert_eq!(delta("strata_requests_total", &[XDP]), 1.0);
    assert_eq!(delta("strata_replies_total", &[XDP]), 1.0);
    assert!(after.has("strata_xdp_state_torn_total"));
    assert_eq!(
        after.sum("strata_xdp_dropped_total", &[("reason", "unsynchronized")]),
        0.0
    );
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

//! `GET /metrics` of a socket-path server on loopback: the counters move by exactly what was
//! sent, a malformed request raises its drop reason by one, hostile HTTP clients cannot stop the
//! endpoint (or the responders), and the body is clean under `promtool check metrics` (that
//! test needs promtool: ignored under a plain `cargo test`, run by `make test`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use strata_test_support::*;

/// A local-stratum server on a free loopback port, with metrics on a free port.
fn server() -> (Server, SocketAddr, SocketAddr) {
    let port = free_udp_port();
    let ntp: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let listen = ntp.to_string();
    let mut server = Server::start(
        None,
        &[
            "--listen",
            &listen,
            "--local-stratum",
            "1",
            "--cores",
            "0",
            "--metrics",
            "127.0.0.1:0",
            "--control",
            "off",
            // Exact counts from one client: no rate limit in the way.
            "--rate-limit",
            "off",
        ],
        Some(ntp),
    );
    server.wait_for_log("metrics on http://");
    let metrics = metrics_addr(&server.log());
    (server, ntp, metrics)
}

const SOCKET: (&str, &str) = ("path", "socket");

#[test]
fn scrape_counts_exactly() {
    let (server, ntp, metrics) = server();
    let before = parse(&scrape(metrics));

    const N: usize = 40;
    assert_eq!(exchange(ntp, "127.0.0.1:0", N), N, "every request answered");
    let n = N as f64;
    // A responder counts a batch right after its send call: the client can have its reply (and
    // scrape) a moment before that under load. Exact once the counts arrive, within a bound.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let after = loop {
        let after = parse(&scrape(metrics));
        let sent = after.sum("strata_sent_bytes_total", &[SOCKET])
            - before.sum("strata_sent_bytes_total", &[SOCKET]);
        if sent >= 48.0 * n || std::time::Instant::now() > deadline {
            break after;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let delta = |name: &str, with: &[(&str, &str)]| after.sum(name, with) - before.sum(name, with);
    assert_eq!(delta("strata_requests_total", &[SOCKET]), n);
    assert_eq!(delta("strata_replies_total", &[SOCKET, ("kind", "time")]), n);
    assert_eq!(delta("strata_replies_total", &[SOCKET]), n);
    assert_eq!(delta("strata_received_bytes_total", &[SOCKET]), 48.0 * n);
    assert_eq!(delta("strata_sent_bytes_total", &[SOCKET]), 48.0 * n);
    assert_eq!(delta("strata_requests_dropped_total", &[SOCKET]), 0.0);
    assert_eq!(
        delta(
            "strata_receive_timestamps_total",
            &[("source", "kernel_software")]
        ),
        n
    );
    assert_eq!(delta("strata_response_time_seconds_count", &[SOCKET]), n);
    assert_eq!(
        delta("strata_response_time_seconds_bucket", &[SOCKET, ("le", "+Inf")]),
        n
    );
    assert_eq!(delta("strata_receive_batch_size_sum", &[SOCKET]), n);
    assert!(delta("strata_response_time_seconds_sum", &[SOCKET]) > 0.0);

    // A mode 6 (control) request and one too short to be NTP: one drop each, no reply.
    send_unanswered(ntp, "127.0.0.1:0", &client_request(0x26, 48));
    send_unanswered(ntp, "127.0.0.1:0", &client_request(0x23, 20));
    let dropped = parse(&scrape(metrics));
    let step = |name: &str, with: &[(&str, &str)]| dropped.sum(name, with) - after.sum(name, with);
    assert_eq!(
        step("strata_requests_dropped_total", &[("reason", "control_mode")]),
        1.0
    );
    assert_eq!(
        step("strata_requests_dropped_total", &[("reason", "too_short")]),
        1.0
    );
    assert_eq!(step("strata_requests_dropped_total", &[]), 2.0);
    assert_eq!(step("strata_requests_total", &[]), 2.0);
    assert_eq!(step("strata_replies_total", &[]), 0.0);

    // The server state.
    assert_eq!(dropped.get("strata_server_synchronized"), 1.0);
    assert_eq!(dropped.get("strata_server_stratum"), 1.0);
    assert_eq!(dropped.get("strata_server_leap_indicator"), 0.0);
    assert_eq!(
        dropped.sum("strata_server_sync_state", &[("state", "local")]),
        1.0
    );
    assert!(dropped.get("strata_server_update_age_seconds") < 5.0);
    assert_eq!(
        dropped.sum("strata_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        1.0
    );
    let started = dropped.get("strata_process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(started <= now && started > now - 120.0, "start time {started}");
    // No XDP family on the socket path.
    assert!(!dropped.has("strata_xdp_seen_total"));

    let body = scrape(metrics);
    for name in parse(&body).names() {
        assert!(name.starts_with("strata_"), "{name}");
    }

    // OpenMetrics for the clients that ask for it.
    let om = http_raw(
        metrics,
        b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;q=0.5\r\n\r\n",
    );
    assert!(om.contains("Content-Type: application/openmetrics-text"), "{om}");
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(om.contains("# TYPE strata_requests counter\n"), "{om}");
    drop(server);
}

#[test]
#[ignore = "needs promtool, Debian package prometheus (make test runs it)"]
fn scrape_is_promtool_clean() {
    if !available("promtool (Debian package prometheus)", have_command("promtool")) {
        return;
    }
    let (server, ntp, metrics) = server();
    // Replies, drops of two reasons and response times: every family has samples.
    assert_eq!(exchange(ntp, "127.0.0.1:0", 10), 10, "every request answered");
    send_unanswered(ntp, "127.0.0.1:0", &client_request(0x26, 48));
    send_unanswered(ntp, "127.0.0.1:0", &client_request(0x23, 20));
    assert!(promtool_clean(&scrape(metrics)), "promtool went missing");
    drop(server);
}

/// Reads whatever a connection gets until it is closed, or None if nothing came in time.
fn response_within(stream: &mut TcpStream, timeout: Duration) -> Option<String> {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut out = Vec::new();
    match stream.read_to_end(&mut out) {
        Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
        Err(_) if !out.is_empty() => Some(String::from_utf8_lossy(&out).into_owned()),
        Err(_) => None,
    }
}

#[test]
fn hostile_http_clients_do_not_stall_the_endpoint() {
    let (server, ntp, metrics) = server();

    // More silent connections than the endpoint keeps open, and one that starts a request and
    // never finishes it.
    let mut silent: Vec<TcpStream> = (0..24).map(|_| TcpStream::connect(metrics).unwrap()).collect();
    let mut slow = TcpStream::connect(metrics).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: slow\r\n")
        .unwrap();

    // Unknown paths and methods get 404.
    for request in [
        &b"GET / HTTP/1.1\r\n\r\n"[..],
        b"GET /metrics/../etc HTTP/1.1\r\n\r\n",
        b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    ] {
        let response = http_raw(metrics, request);
        assert!(response.starts_with("HTTP/1.1 404 Not Found\r\n"), "{response}");
    }

    // An oversized request gets 431, not a reset, and nothing larger is buffered.
    let mut big = TcpStream::connect(metrics).unwrap();
    let mut request = b"GET /metrics HTTP/1.1\r\nX-Pad: ".to_vec();
    request.resize(64 * 1024, b'a');
    // The server may answer and shut its side before everything is written: that is fine.
    let _ = big.write_all(&request);
    let response = response_within(&mut big, Duration::from_secs(5)).expect("an answer to the big request");
    assert!(
        response.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{response}"
    );

    // While all of that is pending, scrapes keep working and the responders keep counting.
    let mut last = parse(&scrape(metrics)).sum("strata_requests_total", &[]);
    for _ in 0..5 {
        let started = Instant::now();
        assert_eq!(exchange(ntp, "127.0.0.1:0", 10), 10);
        let body = scrape(metrics);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "a scrape took {:?}",
            started.elapsed()
        );
        let now = parse(&body).sum("strata_requests_total", &[]);
        assert_eq!(now - last, 10.0);
        last = now;
    }

    // The silent connections are closed by the endpoint in time (pushed out or timed out),
    // without an answer.
    let deadline = Instant::now() + Duration::from_secs(8);
    for s in &mut silent {
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(10));
        let got = response_within(s, left).expect("a silent connection must be closed by the server");
        assert!(got.is_empty(), "a silent client got {got:?}");
    }
    let got = response_within(&mut slow, Duration::from_secs(8)).expect("the slow client is dropped");
    assert!(got.is_empty(), "{got}");
    // And it still answers.
    scrape(metrics);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

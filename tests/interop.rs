//! Real NTP clients from Debian accept strata's answers: chronyd as a one-shot client on
//! loopback, and ntpdig (which only speaks to port 123) inside a namespace this test makes.

use std::process::Command;
use std::time::{Duration, Instant};

use strata_test_support::*;

#[test]
#[ignore = "needs chronyd (make test runs it)"]
fn chronyd_accepts_strata_as_a_stratum_1_server() {
    if !available("chronyd (Debian package chrony)", have_command("chronyd")) {
        return;
    }
    let port = free_udp_port();
    let listen = format!("127.0.0.1:{port}");
    let server = Server::start(
        None,
        &["--listen", &listen, "--local-stratum", "1"],
        Some(listen.parse().unwrap()),
    );

    // chronyd drops privileges before it writes logs, so the log directory must be open to it.
    let logdir = std::env::temp_dir().join(format!("strata-chronyd-{}", std::process::id()));
    std::fs::create_dir_all(&logdir).unwrap();
    Command::new("chmod").arg("777").arg(&logdir).status().unwrap();
    let out = Command::new("chronyd")
        .args(["-Q", "-t", "8", "-f", "/dev/null"])
        .arg(format!("server 127.0.0.1 port {port} iburst maxsamples 4"))
        .arg(format!("logdir {}", logdir.display()))
        .arg("log measurements")
        .output()
        .expect("run chronyd");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let log = std::fs::read_to_string(logdir.join("measurements.log")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&logdir);
    let (status, server_log) = server.stop();
    assert!(status.success(), "strata exited with {status}: {server_log}");

    // "System clock wrong by 0.000064 seconds (ignored)"
    let offset: f64 = text
        .split("System clock wrong by ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("chronyd did not accept the server:\n{text}"));
    assert!(
        offset.abs() < 1e-3,
        "offset {offset} s is not under 1 ms:\n{text}"
    );

    // Measurement lines: date time IP L St 123 567 ABCD LP RP Score Offset ... Refid MTxRx
    let samples: Vec<Vec<&str>> = log
        .lines()
        .filter(|l| l.starts_with("20"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert!(
        !samples.is_empty(),
        "chronyd logged no measurement:\n{log}\n{text}"
    );
    for s in &samples {
        assert_eq!(s[3], "N", "leap must be 'no leap' (N): {s:?}");
        assert_eq!(s[4], "1", "stratum must be 1: {s:?}");
        assert_eq!(s[5..8].concat(), "1111111111", "every packet test passed: {s:?}");
        assert_eq!(s[16], "4C4F434C", "refid must be LOCL: {s:?}");
    }
}

/// ntpdig -j: {"time":...,"offset":0.000506,"precision":...,"stratum":1,"leap":"no-leap",...}
fn ntpdig_until_answered(ns: &Netns, addr: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = ns.exec("ntpdig", &["-j", "-t", "1", addr]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.success() {
            return serde_json::from_str(stdout.trim())
                .unwrap_or_else(|e| panic!("ntpdig printed no JSON ({e}): {stdout}"));
        }
        assert!(
            Instant::now() < deadline,
            "ntpdig got no answer from {addr}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
#[ignore = "needs root, a network namespace and ntpdig (make test runs it)"]
fn ntpdig_accepts_strata_over_ipv4_and_ipv6() {
    if !Netns::available() || !available("ntpdig (Debian package ntpsec-ntpdig)", have_command("ntpdig")) {
        return;
    }
    let ns = Netns::new("ntpdig");
    let server = Server::start(
        Some(&ns.name),
        &[
            "--listen",
            "127.0.0.1:123",
            "--listen",
            "[::1]:123",
            "--local-stratum",
            "1",
        ],
        None,
    );
    for addr in ["127.0.0.1", "::1"] {
        let answer = ntpdig_until_answered(&ns, addr);
        assert_eq!(answer["stratum"], 1, "{answer}");
        assert_eq!(answer["leap"], "no-leap", "{answer}");
        let offset = answer["offset"].as_f64().expect("offset is a number");
        // Server and client read one clock, so the offset is only the exchange's asymmetry:
        // well under 1 ms on an idle machine, a few ms when the scheduler is busy (CI runs lab
        // tests side by side). A wrong time (the TAI offset, a leap, a step) is far beyond it.
        assert!(
            offset.abs() < 10e-3,
            "offset {offset} s is not under 10 ms: {answer}"
        );
    }
    let (status, log) = server.stop();
    assert!(status.success(), "strata exited with {status}: {log}");
}

#[test]
fn unsynchronized_server_answers_li3_stratum16() {
    let port = free_udp_port();
    let listen = format!("127.0.0.1:{port}");
    let server = Server::start(None, &["--listen", &listen], Some(listen.parse().unwrap()));
    let reply = ntp_query(listen.parse().unwrap(), Duration::from_secs(2)).expect("a reply");
    assert_eq!(reply.len(), 48);
    assert_eq!(reply[0] >> 6, 3, "LI=3");
    assert_eq!(reply[0] & 7, 4, "mode 4");
    assert_eq!(reply[1], 16, "stratum 16");
    assert_eq!(
        &reply[24..32],
        &0x0123_4567_89ab_cdefu64.to_be_bytes(),
        "origin = our transmit"
    );
    drop(server);
}

#[test]
fn unsynchronized_drop_policy_sends_nothing() {
    let port = free_udp_port();
    let listen = format!("127.0.0.1:{port}");
    let mut server = Server::start(None, &["--listen", &listen, "--unsynchronized", "drop"], None);
    // It never answers, so wait for its word that it listens rather than probing.
    server.wait_for_log("listening on");
    for _ in 0..3 {
        assert!(ntp_query(listen.parse().unwrap(), Duration::from_millis(300)).is_none());
    }
    let (status, log) = server.stop();
    assert!(status.success(), "strata exited with {status}: {log}");
    // The silence is the policy at work, not a lost packet: the exit totals count each one.
    let total = log
        .lines()
        .find(|l| l.contains("total:"))
        .unwrap_or_else(|| panic!("no totals: {log}"));
    assert!(total.contains("unsynchronized 3"), "{total}");
}

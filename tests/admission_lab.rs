//! The rate limiter end to end on the XDP path, in a lab of bench/lab: a flood from one address,
//! sent by strata-loadgen's fastest mode (live frames), gets what its rate, burst and leak allow,
//! while 1000 other clients at a normal rate, in the same run, lose nothing; and a spray over
//! a /16 (the first 1024 addresses of 198.19.0.0/16, the most flows the generator has) churning a
//! small table limits none of those clients either.
//!
//! The normal clients are UDP sockets of this test in the client namespace, one per address of
//! 198.19.128.0/22 (the lab routes 198.19.0.0/16 there). The generator's own receive program
//! passes replies to addresses that are not its flows on to the kernel, so their replies reach
//! them. strata's counts come from its exit log ("xdp program on srv0: ...").

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use strata_test_support::*;

const SERVER: &str = "198.18.0.2";
const CLIENTS: u32 = 1000;
/// Each normal client sends one request every 2 s, 5 in all.
const ROUNDS: u32 = 5;
const ROUND: Duration = Duration::from_secs(2);
/// The flood: 10 s from one address.
const FLOOD_SECONDS: f64 = 10.0;

/// 1000 clients, each sending `ROUNDS` requests `ROUND` apart; the replies each got, checked:
/// server mode, stratum 1, never a KoD.
fn normal_clients() -> Vec<u32> {
    let server: SocketAddr = format!("{SERVER}:123").parse().unwrap();
    let sockets: Vec<UdpSocket> = (0..CLIENTS)
        .map(|i| {
            let addr = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 19, 128, 0)) + i + 1);
            let s = UdpSocket::bind((addr, 0)).expect("bind a client address");
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let mut replies = vec![0u32; CLIENTS as usize];
    let mut buf = [0u8; 128];
    let mut drain = |replies: &mut Vec<u32>| {
        for (i, s) in sockets.iter().enumerate() {
            while let Ok(n) = s.recv(&mut buf) {
                assert_eq!(n, 48);
                assert_eq!(buf[0] & 7, 4, "server mode");
                assert_eq!(buf[1], 1, "stratum 1, not a KoD (client {i})");
                replies[i] += 1;
            }
        }
    };
    let start = Instant::now();
    for round in 0..ROUNDS {
        for (i, s) in sockets.iter().enumerate() {
            // Spread over the round: 2 ms apart.
            let due = start + ROUND * round + ROUND * i as u32 / CLIENTS;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            s.send_to(&client_request(0x23, 48), server).unwrap();
        }
        drain(&mut replies);
    }
    std::thread::sleep(Duration::from_secs(1));
    drain(&mut replies);
    replies
}

/// The flood or spray: strata-loadgen in live mode from `src_net` with `flows` flows at
/// `rate` for `FLOOD_SECONDS`, on CPU 0. Returns its JSON report.
fn generator(lab: &Lab, mac: &str, rate: &str, src_net: &str, flows: &str) -> std::process::Output {
    let loadgen = workspace_bins("strata-loadgen", &["strata-loadgen"]).remove(0);
    Command::new("ip")
        .args(["netns", "exec", &lab.ns("cli"), "timeout", "60"])
        .arg(loadgen)
        .args([
            "--transport",
            "live",
            "--iface",
            "cli0",
            "--dst-mac",
            mac,
            "--target",
            SERVER,
            "--cores",
            "0",
            "--rate",
            rate,
            "--step-seconds",
            &FLOOD_SECONDS.to_string(),
            "--src-net",
            src_net,
            "--flows",
            flows,
            "--timeout",
            "0.5",
            "--json",
            "--quiet",
        ])
        .output()
        .expect("run strata-loadgen")
}

/// Runs the normal clients and a generator at once against strata started with `limits`;
/// returns the replies of each client, strata's exit log, and `strata clients --json` as it was
/// at the end of the run.
fn run(
    limits: &[&str],
    rate: &str,
    src_net: &str,
    flows: &str,
) -> Option<(Vec<u32>, String, serde_json::Value)> {
    if !Lab::available() {
        return None;
    }
    // The lab runs the server's NAPI thread at real-time priority (bench/lab), so that the lab
    // itself (srv0's 256-frame ring, emptied only when that thread runs) loses none of the
    // normal clients' requests under the flood: a loss here is strata's doing.
    let lab = Lab::up();
    let control = control_path("admission-lab");
    let _cleanup = RemoveOnDrop(control.clone());
    let mut args = vec![
        "--iface",
        "srv0",
        "--mode",
        "xdp",
        "--local-stratum",
        "1",
        "--cores",
        "1",
        "--metrics",
        "off",
        "--control",
        control.to_str().unwrap(),
    ];
    args.extend_from_slice(limits);
    let mut server = Server::start(Some(&lab.ns("srv")), &args, None);
    server.wait_for_log("through XDP");
    let mac = lab.exec("srv", "cat", &["/sys/class/net/srv0/address"]);
    let mac = String::from_utf8_lossy(&mac.stdout).trim().to_string();
    let clients = {
        let cli = lab.ns("cli");
        std::thread::spawn(move || run_in(&cli, normal_clients))
    };
    let out = generator(&lab, &mac, rate, src_net, flows);
    let replies = clients.join().expect("the normal clients");
    // The client watch drains the program's samples four times a second.
    std::thread::sleep(Duration::from_millis(600));
    let listed = std::process::Command::new(strata_bin())
        .args(["clients", "--json", "-n", "5", "--control"])
        .arg(&control)
        .output()
        .expect("run strata clients");
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("strata clients --json");
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(
        !out.stdout.is_empty(),
        "strata-loadgen reported nothing: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some((replies, log, listed))
}

fn program_line(log: &str) -> &str {
    log_line(log, "xdp program on srv0:")
}

#[test]
#[ignore = "needs root, network namespaces and XDP (make test runs it)"]
fn a_flood_from_one_address_gets_its_limit_and_normal_clients_lose_nothing() {
    // 100 requests/s after a burst of 50, and 1 in 8 of the rest.
    const INTERVAL: f64 = 0.01;
    const BURST: f64 = 50.0;
    const LEAK: f64 = 8.0;
    let limits = [
        "--rate-limit-interval",
        "0.01",
        "--rate-limit-burst",
        "50",
        "--rate-limit-leak",
        "3",
    ];
    let Some((replies, log, listed)) = run(&limits, "200k", "198.19.200.0/24", "1") else {
        return;
    };
    let lost: Vec<(usize, u32)> = replies
        .iter()
        .enumerate()
        .filter(|(_, n)| **n != ROUNDS)
        .map(|(i, n)| (i, *n))
        .collect();
    assert!(
        lost.is_empty(),
        "normal clients lost replies (client, replies): {lost:?}"
    );
    let line = program_line(&log);
    let answered = log_field(line, "answered");
    let limited = log_field(line, "drop_limited");
    let leaked = log_field(line, "leaked");
    let normal = (CLIENTS * ROUNDS) as u64;
    // What reached strata from the flood, and what its limits allow of it.
    let flood_answered = answered - normal;
    let arrived = flood_answered + limited;
    let within = BURST + FLOOD_SECONDS / INTERVAL;
    let allowed = within + (arrived as f64 - within) / LEAK;
    let error = (flood_answered as f64 - allowed) / allowed;
    eprintln!(
        "flood: {arrived} arrived, {flood_answered} answered ({leaked} leaked), {limited} dropped; \
         allowed {allowed:.0}: {:+.3}%",
        error * 100.0
    );
    assert!(arrived > 1_000_000, "the flood did not arrive:\n{line}");
    assert!(
        error.abs() < 0.01,
        "answered {flood_answered}, allowed {allowed:.0}:\n{line}"
    );
    // The leak is exact: 1 in 8 of what was over the limit.
    let over = limited + leaked;
    assert!(leaked.abs_diff(over / 8) <= 1, "{leaked} leaked of {over}");
    // `strata clients` lists the flooder first, its requests estimated from 1 in 16 sampled
    // by the program, most of them limited.
    let top = &listed["clients"][0];
    let requests = top["requests"].as_u64().unwrap_or(0) as f64;
    eprintln!("strata clients: {top}");
    assert!(
        top["client"].as_str().unwrap_or("").starts_with("198.19.200."),
        "{listed}"
    );
    assert!(
        (requests - arrived as f64).abs() < 0.05 * arrived as f64,
        "estimated {requests}, arrived {arrived}: {listed}"
    );
    assert!(
        top["limited"].as_u64().unwrap_or(0) as f64 > 0.8 * requests,
        "{listed}"
    );
}

#[test]
#[ignore = "needs root, network namespaces and XDP (make test runs it)"]
fn a_spray_over_a_slash_16_limits_no_normal_client() {
    // A table of 1024 clients, far fewer than the spray's and the normal clients' together: it
    // churns all the time. The spray's sources each send far over the limit.
    let limits = ["--rate-limit-clients", "1024", "--rate-limit-interval", "1"];
    let Some((replies, log, _)) = run(&limits, "300k", "198.19.0.0/16", "1024") else {
        return;
    };
    let lost: Vec<(usize, u32)> = replies
        .iter()
        .enumerate()
        .filter(|(_, n)| **n != ROUNDS)
        .map(|(i, n)| (i, *n))
        .collect();
    let line = program_line(&log);
    assert!(
        log_field(line, "drop_limited") > 100_000,
        "the spray was not limited:\n{line}"
    );
    assert!(
        lost.is_empty(),
        "normal clients lost replies (client, replies): {lost:?}\n{line}"
    );
}

/// One request from `bind` to `server`; the reply, or None after a second.
fn ask(bind: SocketAddr, server: SocketAddr) -> Option<Vec<u8>> {
    let s = UdpSocket::bind(bind).expect("bind the client address");
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    s.send_to(&client_request(0x23, 48), server).unwrap();
    let mut buf = [0u8; 128];
    let n = s.recv(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

/// What a reply is: "time", a KoD code, or "nothing".
fn kind(reply: Option<Vec<u8>>) -> String {
    match reply {
        None => "nothing".into(),
        Some(r) if r.len() == 48 && r[1] == 0 => String::from_utf8_lossy(&r[12..16]).into_owned(),
        Some(r) if r.len() == 48 && r[1] == 1 && r[0] & 7 == 4 => "time".into(),
        Some(r) => format!("bad reply {r:02x?}"),
    }
}

/// The access list on the XDP path, both tiers (the KoD written by the XDP program, or by an
/// AF_XDP responder from the program's decision), IPv4 and IPv6: a denied prefix gets its KoD,
/// a more specific allow inside it gets the time, and so does everyone else.
#[test]
#[ignore = "needs root, network namespaces and XDP (make test runs it)"]
fn the_access_list_on_the_xdp_path() {
    if !Lab::available() {
        return;
    }
    let lab = Lab::up();
    for tier in ["on", "off"] {
        let args = [
            "--iface",
            "srv0",
            "--mode",
            "xdp",
            "--local-stratum",
            "1",
            "--cores",
            "1",
            "--metrics",
            "off",
            "--control",
            "off",
            "--xdp-answer",
            tier,
            "--deny",
            "198.19.0.0/16",
            "--allow",
            "198.19.5.0/24",
            "--deny",
            "fd00:5354:5241:8000::/49",
            "--allow",
            "fd00:5354:5241:8001::/64",
            "--deny-action",
            "kiss-rstr",
        ];
        let mut server = Server::start(Some(&lab.ns("srv")), &args, None);
        server.wait_for_log("through XDP");
        let got = lab.run_in("cli", || {
            let v4: SocketAddr = format!("{SERVER}:123").parse().unwrap();
            let v6: SocketAddr = "[fd00:5354:5241:1::2]:123".parse().unwrap();
            [
                ("198.19.1.1:0", v4),
                ("198.19.5.5:0", v4),
                ("198.18.0.1:0", v4),
                ("[fd00:5354:5241:8000::5]:0", v6),
                ("[fd00:5354:5241:8001::5]:0", v6),
                ("[fd00:5354:5241:1::1]:0", v6),
            ]
            .map(|(from, to)| kind(ask(from.parse().unwrap(), to)))
        });
        let (status, log) = server.stop();
        assert!(status.success(), "{log}");
        assert_eq!(
            got,
            ["RSTR", "time", "time", "RSTR", "time", "time"].map(String::from),
            "--xdp-answer {tier}:\n{log}"
        );
        let line = program_line(&log);
        assert_eq!(log_field(line, "kod_rstr"), 2, "{line}");
    }
}

/// The access list is replaced on SIGHUP in the running XDP program: a prefix denied at start
/// gets the time after the file no longer denies it, and an address newly denied gets its KoD,
/// without a restart.
#[test]
#[ignore = "needs root, network namespaces and XDP (make test runs it)"]
fn the_access_list_is_replaced_on_sighup_on_the_xdp_path() {
    if !Lab::available() {
        return;
    }
    let lab = Lab::up();
    let dir = TempDir::new("acl-reload");
    let file = dir.0.join("strata.toml");
    std::fs::write(&file, "deny = [\"198.19.0.0/16\"]\ndeny_action = \"kiss-rstr\"\n").unwrap();
    let args = [
        "--config",
        file.to_str().unwrap(),
        "--iface",
        "srv0",
        "--mode",
        "xdp",
        "--local-stratum",
        "1",
        "--cores",
        "1",
        "--metrics",
        "off",
        "--control",
        "off",
    ];
    let mut server = Server::start(Some(&lab.ns("srv")), &args, None);
    server.wait_for_log("through XDP");
    let probe = |lab: &Lab| {
        lab.run_in("cli", || {
            let v4: SocketAddr = format!("{SERVER}:123").parse().unwrap();
            ["198.19.1.1:0", "198.18.0.1:0"].map(|from| kind(ask(from.parse().unwrap(), v4)))
        })
    };
    assert_eq!(probe(&lab), ["RSTR", "time"].map(String::from));
    std::fs::write(&file, "deny = [\"198.18.0.1\"]\ndeny_action = \"kiss-deny\"\n").unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    server.wait_for_log("reload (SIGHUP): applied access list: 1 -> 1 rule(s)");
    assert_eq!(probe(&lab), ["time", "DENY"].map(String::from));
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

/// The rate limits change on SIGHUP without a restart, on both paths (the XDP program's
/// admission map; the socket path's admitter): a burst of six from one address gets two times,
/// then KoD RATE and nothing in turn (one a minute after a burst of 2, no leak, a KoD every
/// other time); after the file says burst 16, a burst of six gets six times.
/// The limits of that test, less the burst: one answer a minute, no leak, a KoD every other
/// request over.
const RATE: &str = "rate_limit_interval = 60\nrate_limit_leak = 0\nrate_limit_kod = 1\n";

#[test]
#[ignore = "needs root, network namespaces and XDP (make test runs it)"]
fn the_rate_limits_change_on_sighup_on_both_paths() {
    if !Lab::available() {
        return;
    }
    let lab = Lab::up();
    let dir = TempDir::new("rate-reload");
    let file = dir.0.join("strata.toml");
    let path_args: [&[&str]; 2] = [
        &["--iface", "srv0", "--mode", "xdp"],
        &["--listen", "198.18.0.2:123", "--mode", "socket"],
    ];
    for (round, path) in path_args.iter().enumerate() {
        std::fs::write(&file, format!("{RATE}rate_limit_burst = 2\n")).unwrap();
        let mut args = vec![
            "--config",
            file.to_str().unwrap(),
            "--local-stratum",
            "1",
            "--cores",
            "1",
            "--metrics",
            "off",
            "--control",
            "off",
        ];
        args.extend_from_slice(path);
        let mut server = Server::start(Some(&lab.ns("srv")), &args, None);
        if round == 0 {
            server.wait_for_log("through XDP");
        } else {
            server.wait_for_log("socket path");
        }
        let burst = |lab: &Lab, from: &'static str| {
            lab.run_in("cli", move || {
                let to: SocketAddr = format!("{SERVER}:123").parse().unwrap();
                (0..6)
                    .map(|_| kind(ask(from.parse().unwrap(), to)))
                    .collect::<Vec<_>>()
            })
        };
        let before = burst(&lab, "198.19.2.1:0");
        assert_eq!(before[..2], ["time", "time"], "{path:?}");
        let over = &before[2..];
        assert!(
            over.iter().all(|k| k == "RATE" || k == "nothing"),
            "{path:?}: {before:?}"
        );
        assert_eq!(
            over.iter().filter(|k| *k == "RATE").count(),
            2,
            "{path:?}: {before:?}"
        );
        std::fs::write(&file, format!("{RATE}rate_limit_burst = 16\n")).unwrap();
        let hup = Command::new("kill")
            .args(["-HUP", &server.pid().to_string()])
            .status()
            .unwrap();
        assert!(hup.success());
        server.wait_for_log("reload (SIGHUP): applied rate limits: one per 60 s after 2");
        let after = burst(&lab, "198.19.2.2:0");
        assert_eq!(after, ["time"; 6].map(String::from), "{path:?}");
        let (status, log) = server.stop();
        assert!(status.success(), "{log}");
        assert!(!log.contains("applied only at the next restart"), "{log}");
    }
}

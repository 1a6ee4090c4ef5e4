//! The tools operators already monitor NTP servers with, against strata's mode-6 answers
//! (`proto::mode6`, answered by the control thread): `ntpq -c rv` and `ntpq -p` (Debian's
//! ntpsec, extracted into a cache by `make ntpq` since it conflicts with chrony), and
//! `check_ntp_peer` and `check_ntp_time` from Debian's monitoring-plugins.
//!
//! In a lab of this test's own (tests/support `Lab`: cli 198.18.0.1, srv 198.18.0.2 and .65,
//! up 198.18.0.66): chronyd (local stratum 1) upstream, strata in srv synchronized to it with
//! `--monitor 198.18.0.1/32`. On the socket path and on the XDP path:
//!
//! - in srv, over loopback: `ntpq -c rv` says stratum 2 and refid 198.18.0.66, `ntpq -p` lists
//!   chronyd as the system peer (`*`) at stratum 1, `check_ntp_peer` is OK and reports the
//!   peer's stratum, `check_ntp_time` is OK (also from cli: on the XDP path the XDP program
//!   answers it, over loopback the control thread's socket does, with `respond()`);
//! - from cli's monitoring address, over the network: `ntpq -p` works too;
//! - from a client address outside `monitor` (198.19.0.7, routed to cli): no mode-6 reply at
//!   all, while a plain time request from it is answered;
//! - every reply is at most 480 bytes (a 12-byte header and 468 of data), whatever was asked.

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use strata_test_support::*;

const UPSTREAM: &str = "198.18.0.66";
const SERVER: &str = "198.18.0.2";
const MONITOR: &str = "198.18.0.1";
const OUTSIDER: &str = "198.19.0.7";
const MAX_REPLY: usize = 480;

fn ntpq() -> PathBuf {
    match std::env::var_os("STRATA_NTPQ") {
        Some(p) => PathBuf::from(p),
        None => {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache/strata-ntpq/usr/bin/ntpq")
        }
    }
}

const PLUGINS: &str = "/usr/lib/nagios/plugins";

fn tools_available() -> bool {
    Lab::available()
        && available("chronyd (chrony)", have_command("chronyd"))
        && available("ntpq (make ntpq)", ntpq().exists())
        && available(
            "python3-ntp (ntpq's library)",
            std::path::Path::new("/usr/lib/python3/dist-packages/ntp").exists(),
        )
        && available(
            "check_ntp_peer (monitoring-plugins-basic)",
            std::path::Path::new(PLUGINS).join("check_ntp_peer").exists(),
        )
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `ntpq ARGS` in namespace `side` (Debian's python3, where python3-ntp is).
fn run_ntpq(lab: &Lab, side: &str, args: &[&str]) -> String {
    let ntpq = ntpq();
    let all: Vec<&str> = [&[ntpq.to_str().unwrap()][..], args].concat();
    text(&lab.exec(side, "/usr/bin/python3", &all))
}

/// Sends `query` from `source` to SERVER:123 in namespace `side` and returns the reply's length,
/// or None when nothing came within a second.
fn mode6_reply_len(lab: &Lab, side: &str, source: &str, query: &[u8]) -> Option<usize> {
    let hex: String = query.iter().map(|b| format!("{b:02x}")).collect();
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('{source}',0))\n\
         s.settimeout(1)\ns.sendto(bytes.fromhex('{hex}'),('{SERVER}',123))\n\
         try:\n  print(len(s.recv(4096)))\nexcept socket.timeout:\n  print('none')\n"
    );
    let out = lab.exec(side, "/usr/bin/python3", &["-c", &script]);
    let said = text(&out);
    said.trim().parse().ok()
}

/// A READSTAT, and READVARs of the system and of association 1, without and with names.
fn queries() -> Vec<Vec<u8>> {
    let header = |op: u8, assoc: u16, data: &[u8]| {
        let mut v = vec![0x16, op, 0, 1, 0, 0];
        v.extend_from_slice(&assoc.to_be_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&(data.len() as u16).to_be_bytes());
        v.extend_from_slice(data);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    };
    vec![
        header(1, 0, b""),
        header(2, 0, b""),
        header(2, 1, b""),
        header(2, 1, b"stratum,offset,jitter"),
    ]
}

fn wait_until(what: &str, secs: u64, mut f: impl FnMut() -> Option<String>) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(ok) = f() {
            return ok;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn check(lab: &Lab, server: &Server) {
    // ntpq over loopback, once strata has selected chronyd.
    let peers = wait_until("ntpq -p shows chronyd as the system peer", 40, || {
        let said = run_ntpq(lab, "srv", &["-n", "-p", "127.0.0.1"]);
        said.lines()
            .any(|l| l.starts_with('*') && l.contains(UPSTREAM))
            .then_some(said)
    });
    let line = peers.lines().find(|l| l.starts_with('*')).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    // remote refid st t when poll reach delay offset jitter
    assert_eq!(fields[2], "1", "chronyd's stratum: {peers}");
    let rv = run_ntpq(lab, "srv", &["-c", "rv", "127.0.0.1"]);
    assert!(
        rv.contains("stratum=2") && rv.contains(&format!("refid={UPSTREAM}")),
        "{rv}\n{}",
        server.log()
    );
    assert!(
        rv.contains("sync_ntp"),
        "the system status word names NTP as the source: {rv}"
    );

    // check_ntp_peer: the sync peer's offset, jitter and stratum; check_ntp_time: a time query.
    let peer = lab.exec(
        "srv",
        &format!("{PLUGINS}/check_ntp_peer"),
        &[
            "-H",
            "127.0.0.1",
            "-w",
            "0.5",
            "-c",
            "1",
            "-j",
            "100",
            "-k",
            "200",
            "-W",
            "3",
            "-C",
            "5",
        ],
    );
    let said = text(&peer);
    assert_eq!(peer.status.code(), Some(0), "check_ntp_peer: {said}");
    assert!(said.starts_with("NTP OK") && said.contains("stratum=1"), "{said}");
    for (side, host) in [("srv", "127.0.0.1"), ("cli", SERVER)] {
        let time = lab.exec(
            side,
            &format!("{PLUGINS}/check_ntp_time"),
            &["-H", host, "-w", "0.5", "-c", "1"],
        );
        let said = text(&time);
        assert_eq!(time.status.code(), Some(0), "check_ntp_time -H {host}: {said}");
        assert!(said.starts_with("NTP OK"), "{said}");
    }

    // From the monitoring address over the network.
    let remote = run_ntpq(lab, "cli", &["-n", "-p", SERVER]);
    assert!(
        remote.lines().any(|l| l.starts_with('*') && l.contains(UPSTREAM)),
        "{remote}"
    );

    // Replies stay within one datagram of 480 bytes; outsiders get none at all.
    for q in queries() {
        let len = mode6_reply_len(lab, "cli", MONITOR, &q).expect("a reply to the monitor");
        assert!((12..=MAX_REPLY).contains(&len), "{len} bytes for {q:02x?}");
        assert_eq!(
            mode6_reply_len(lab, "cli", OUTSIDER, &q),
            None,
            "an outsider was answered"
        );
    }
    let mut client = [0u8; 48];
    client[0] = 0x23;
    assert_eq!(
        mode6_reply_len(lab, "cli", OUTSIDER, &client),
        Some(48),
        "time is for everyone"
    );
}

fn lab_with_upstream() -> Option<(Lab, Chronyd)> {
    if !tools_available() {
        return None;
    }
    let lab = Lab::up();
    let chronyd = Chronyd::start(Some(&lab.ns("up")), UPSTREAM, 123, None);
    Some((lab, chronyd))
}

fn common<'a>() -> Vec<&'a str> {
    vec![
        "--upstream",
        "198.18.0.66 iburst minpoll 0 maxpoll 1",
        "--minsources",
        "1",
        "--monitor",
        "198.18.0.1/32",
        "--metrics",
        "off",
        "--control",
        "off",
        "--cores",
        "0",
    ]
}

#[test]
#[ignore = "needs root, network namespaces, chronyd, ntpq and monitoring-plugins (make test runs it)"]
fn ntpq_and_the_monitoring_plugins_read_the_socket_path() {
    let Some((lab, _chronyd)) = lab_with_upstream() else {
        return;
    };
    let mut args = vec!["--listen", "0.0.0.0:123", "--listen", "[::]:123"];
    args.extend(common());
    let server = Server::start(Some(&lab.ns("srv")), &args, None);
    check(&lab, &server);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

#[test]
#[ignore = "needs root, network namespaces, XDP, chronyd, ntpq and monitoring-plugins (make test runs it)"]
fn ntpq_and_the_monitoring_plugins_read_the_xdp_path() {
    let Some((lab, _chronyd)) = lab_with_upstream() else {
        return;
    };
    let mut args = vec!["--iface", "srv0", "--mode", "xdp"];
    args.extend(common());
    let mut server = Server::start(Some(&lab.ns("srv")), &args, None);
    server.wait_for_log("through XDP");
    check(&lab, &server);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

//! strata as an NTS client of its upstreams (`server HOST nts`), in network namespaces this test
//! makes (`strata-t<pid>-...`, removed on every exit path), joined by a veth pair with addresses
//! from 198.18.0.0/24, the NTS-KE servers' certificates signed by a test CA that strata is told
//! to trust (`--nts-trusted-certs`):
//!
//! - chronyd (Debian's) as the NTS server (`ntsserverkey`/`ntsservercert`): strata runs NTS-KE,
//!   polls with cookies, synchronizes, and `strata status` shows the source's NTS state;
//! - strata's own NTS server, its NTS-KE naming another NTP port (the NTPv4 port record) where a
//!   small UDP relay of this test flips a bit in every third reply: strata synchronizes on the
//!   others, rejects the tampered ones and counts them;
//! - an NTS-KE server whose certificate the test CA did not sign: the source is never used and
//!   the status says why.
//!
//! `#[ignore]`d under a plain `cargo test` (root, namespaces, chronyd); `make test` runs them.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_test_support::*;

const UPSTREAM: &str = "198.18.0.1";

/// The two namespaces: the upstream at 198.18.0.1, strata at 198.18.0.2.
fn lab() -> Option<(Netns, Netns)> {
    if !Netns::available() {
        return None;
    }
    let up = Netns::new("ntsup");
    let srv = Netns::new("ntssrv");
    up.veth("up0", "198.18.0.1/30", &srv, "srv1", "198.18.0.2/30");
    Some((up, srv))
}

/// strata in `ns` polling `upstream` (a source spec) with NTS, trusting `ca`.
fn strata_client(ns: &Netns, upstream: &str, ca: &Path, control: &Path) -> Server {
    let mut server = Server::start(
        Some(&ns.name),
        &[
            "--listen",
            "198.18.0.2:123",
            "--cores",
            "0",
            "--metrics",
            "off",
            "--control",
            control.to_str().unwrap(),
            "--log-level",
            "info",
            "--upstream",
            upstream,
            "--minsources",
            "1",
            "--nts-trusted-certs",
            ca.to_str().unwrap(),
        ],
        None,
    );
    server.wait_for_log("control socket at");
    server
}

#[test]
#[ignore = "needs root, network namespaces and chronyd (make test runs it)"]
fn strata_synchronizes_to_chronyd_over_nts() {
    if !available("chronyd (Debian package chrony)", have_command("chronyd")) {
        return;
    }
    let Some((up, srv)) = lab() else { return };
    let dir = TempDir::new("nts-src-chronyd");
    let (ca, cert, key) = certificates_for(&dir.0, &[UPSTREAM]);
    let chronyd = Chronyd::start_with(
        Some(&up.name),
        UPSTREAM,
        123,
        None,
        &format!(
            "ntsserverkey {}\nntsservercert {}\n",
            key.display(),
            cert.display()
        ),
    );
    let control = control_path("nts-src-chronyd");
    let _cleanup = RemoveOnDrop(control.clone());
    let server = strata_client(&srv, "198.18.0.1 nts iburst minpoll 0 maxpoll 1", &ca, &control);
    let log = wait_log(&server, "synchronized to 198.18.0.1 stratum 2", 60);
    assert!(log.contains("with NTS (8 cookies from 198.18.0.1:4460)"), "{log}");
    // The status is published every second: wait for one after a few more exchanges, each
    // spending a cookie and getting one back from chronyd.
    let authenticated = |r: &serde_json::Value| -> u64 {
        r["sources"][0]["auth"]
            .as_str()
            .unwrap_or_default()
            .split(", ")
            .find_map(|p| p.strip_suffix(" authenticated"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut report = status_json(&control);
    while (report["sources"][0]["state"] != "selected" || authenticated(&report) < 5)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
        report = status_json(&control);
    }
    assert!(authenticated(&report) >= 5, "{report}");
    let source = &report["sources"][0];
    let auth = source["auth"]
        .as_str()
        .unwrap_or_else(|| panic!("no auth state: {report}"));
    assert!(auth.starts_with("NTS: 8 cookies"), "the jar is kept full: {auth}");
    assert!(auth.contains("0 rejected"), "{auth}");
    assert_eq!(source["state"], "selected", "{source}");
    let (status, log) = server.stop();
    assert!(status.success(), "{log}\n{}", chronyd.log());
    println!("chronyd as NTS server: strata synchronized; status says {auth:?}");
}

/// A UDP relay in the upstream's namespace: from `front` (what NTS-KE names) to `back` (the NTP
/// server), flipping one bit of every third reply inside its authenticated part. Ends when
/// `stop` is set (or after two minutes); returns (replies relayed, replies tampered).
fn tampering_relay(
    ns: &Netns,
    front: SocketAddr,
    back: SocketAddr,
    stop: Arc<AtomicBool>,
    tampered: Arc<AtomicU64>,
) {
    let name = ns.name.clone();
    std::thread::spawn(move || {
        run_in(&name, move || {
            let front_socket = UdpSocket::bind(front).unwrap();
            let back_socket = UdpSocket::bind(SocketAddr::new(front.ip(), 0)).unwrap();
            back_socket.connect(back).unwrap();
            front_socket.set_nonblocking(true).unwrap();
            back_socket.set_nonblocking(true).unwrap();
            let until = Instant::now() + Duration::from_secs(120);
            let (mut client, mut replies) = (None, 0u64);
            let mut buf = [0u8; 2048];
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                let mut idle = true;
                if let Ok((n, from)) = front_socket.recv_from(&mut buf) {
                    client = Some(from);
                    let _ = back_socket.send(&buf[..n]);
                    idle = false;
                }
                if let (Ok(n), Some(to)) = (back_socket.recv(&mut buf), client) {
                    replies += 1;
                    if replies % 3 == 0 && n > 48 {
                        // The receive timestamp: in the header, which the authenticator covers.
                        buf[35] ^= 0x01;
                        tampered.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = front_socket.send_to(&buf[..n], to);
                    idle = false;
                }
                if idle {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        })
    });
}

#[test]
#[ignore = "needs root and network namespaces (make test runs it)"]
fn strata_synchronizes_to_strata_over_nts_and_rejects_tampered_replies() {
    let Some((up, srv)) = lab() else { return };
    let dir = TempDir::new("nts-src-strata");
    let (ca, cert, key) = certificates_for(&dir.0, &[UPSTREAM]);
    // The upstream serves NTP on 123, and its NTS-KE names port 1123: the relay's.
    let mut upstream = Server::start(
        Some(&up.name),
        &[
            "--listen",
            "198.18.0.1:123",
            "--local-stratum",
            "1",
            "--cores",
            "0",
            "--metrics",
            "off",
            "--control",
            "off",
            "--nts-certificate",
            cert.to_str().unwrap(),
            "--nts-private-key",
            key.to_str().unwrap(),
            "--nts-ke-listen",
            "198.18.0.1:4460",
            "--nts-key-file",
            dir.0.join("nts.key").to_str().unwrap(),
            "--nts-ntp-port",
            "1123",
        ],
        None,
    );
    upstream.wait_for_log("NTS-KE on");
    let stop = Arc::new(AtomicBool::new(false));
    let tampered = Arc::new(AtomicU64::new(0));
    tampering_relay(
        &up,
        "198.18.0.1:1123".parse().unwrap(),
        "198.18.0.1:123".parse().unwrap(),
        stop.clone(),
        tampered.clone(),
    );
    let control = control_path("nts-src-strata");
    let _cleanup = RemoveOnDrop(control.clone());
    let server = strata_client(&srv, "198.18.0.1 nts iburst minpoll 0 maxpoll 0", &ca, &control);
    let log = wait_log(&server, "synchronized to 198.18.0.1 stratum 2", 60);
    assert!(
        log.contains("polling 198.18.0.1:1123"),
        "the NTPv4 port record is followed:\n{log}"
    );
    // Enough polls for a few tampered replies.
    let deadline = Instant::now() + Duration::from_secs(30);
    while tampered.load(Ordering::Relaxed) < 3 {
        assert!(
            Instant::now() < deadline,
            "the relay tampered with nothing:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    let report = status_json(&control);
    stop.store(true, Ordering::Relaxed);
    let auth = report["sources"][0]["auth"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let rejected: u64 = auth
        .split(", ")
        .find_map(|p| p.strip_suffix(" rejected"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no rejected count in {auth:?}: {report}"));
    let flipped = tampered.load(Ordering::Relaxed);
    assert!(
        rejected >= 3 && rejected <= flipped,
        "{rejected} rejected, {flipped} tampered: {auth}"
    );
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(log.contains("rejected: not authenticated"), "{log}");
    // Nothing tampered reached the engine: every sample it took is within a few ms.
    assert_eq!(report["sources"][0]["state"], "selected", "{report}");
    let offset = report["sources"][0]["offset"].as_f64().unwrap();
    assert!(offset.abs() < 0.01, "offset {offset}");
    let (_, up_log) = upstream.stop();
    assert!(up_log.contains("NTS-authenticated"), "{up_log}");
    println!("strata as NTS server, {flipped} replies tampered: {auth:?}");
}

#[test]
#[ignore = "needs root and network namespaces (make test runs it)"]
fn a_certificate_not_trusted_is_never_used_and_the_status_says_why() {
    let Some((up, srv)) = lab() else { return };
    let dir = TempDir::new("nts-src-untrusted");
    let other = TempDir::new("nts-src-other-ca");
    let (_, cert, key) = certificates_for(&dir.0, &[UPSTREAM]);
    // A CA that signed nothing the upstream has.
    let (other_ca, _, _) = certificates_for(&other.0, &[UPSTREAM]);
    let mut upstream = Server::start(
        Some(&up.name),
        &[
            "--listen",
            "198.18.0.1:123",
            "--local-stratum",
            "1",
            "--cores",
            "0",
            "--metrics",
            "off",
            "--control",
            "off",
            "--nts-certificate",
            cert.to_str().unwrap(),
            "--nts-private-key",
            key.to_str().unwrap(),
            "--nts-ke-listen",
            "198.18.0.1:4460",
            "--nts-key-file",
            dir.0.join("nts.key").to_str().unwrap(),
        ],
        None,
    );
    upstream.wait_for_log("NTS-KE on");
    let control = control_path("nts-src-untrusted");
    let _cleanup = RemoveOnDrop(control.clone());
    let server = strata_client(
        &srv,
        "198.18.0.1 nts iburst minpoll 0 maxpoll 0",
        &other_ca,
        &control,
    );
    let log = wait_log(&server, "NTS-KE failed: certificate not trusted", 30);
    let report = status_json(&control);
    let row = &report["sources"][0];
    assert_eq!(row["name"], "198.18.0.1:4460", "{report}");
    assert!(
        row["reason"]
            .as_str()
            .unwrap_or_default()
            .starts_with("NTS-KE failed: certificate not trusted"),
        "{report}"
    );
    assert!(!log.contains("synchronized to"), "{log}");
    assert_eq!(report["server"]["stratum"], 16, "{report}");
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    drop(upstream);
}

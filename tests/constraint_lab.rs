//! Time constraints against real servers, in network namespaces this test makes (removed on
//! every exit path): an HTTPS server of the test (rustls, certificate from a test CA that strata
//! trusts through `--nts-trusted-certs`) whose Date is right, and chronyd as the only NTP
//! upstream:
//!
//! - chronyd on the true time: strata synchronizes within the constraint;
//! - chronyd an hour ahead (libfaketime), start-up step limits wide enough to let an hour
//!   through: strata rejects it because of the constraint, counts and shows it, and never steps;
//! - no constraint reachable: strata says so and synchronizes as before.
//!
//! `#[ignore]`d under a plain `cargo test` (root, namespaces, chronyd, faketime); `make test`
//! runs them.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use strata_test_support::*;

const HTTPS: &str = "198.18.0.1:8443";

fn lab(extra: &[(&str, &str)]) -> Option<(Netns, Netns)> {
    if !Netns::available() || !extra.iter().all(|(what, cmd)| available(what, have_command(cmd))) {
        return None;
    }
    let up = Netns::new("cup");
    let srv = Netns::new("csrv");
    up.veth("up0", "198.18.0.1/30", &srv, "srv1", "198.18.0.2/30");
    Some((up, srv))
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` of Unix seconds `t`.
fn http_date(t: i64) -> String {
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[days.rem_euclid(7) as usize],
        MONTHS[(m - 1) as usize],
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// An HTTPS server in `ns` answering every GET with an empty 200 and the Date of this machine's
/// clock, until `stop` (or two minutes); the number of requests answered.
fn https_date_server(ns: &Netns, cert: &Path, key: &Path, stop: Arc<AtomicBool>) -> Arc<AtomicU64> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap(),
    );
    let served = Arc::new(AtomicU64::new(0));
    let count = served.clone();
    let name = ns.name.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        run_in(&name, move || {
            let listener = TcpListener::bind(HTTPS).unwrap();
            listener.set_nonblocking(true).unwrap();
            ready_tx.send(()).unwrap();
            let until = Instant::now() + Duration::from_secs(120);
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                let Ok((mut tcp, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                tcp.set_nonblocking(false).unwrap();
                tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut conn = rustls::ServerConnection::new(config.clone()).unwrap();
                let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                    match stream.read(&mut buf) {
                        Ok(n) if n > 0 => request.extend_from_slice(&buf[..n]),
                        _ => break,
                    }
                }
                if !request.starts_with(b"GET ") {
                    continue;
                }
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
                let response = format!(
                    "HTTP/1.1 200 OK\r\nDate: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    http_date(now)
                );
                if stream.write_all(response.as_bytes()).is_ok() {
                    count.fetch_add(1, Ordering::Relaxed);
                }
                stream.conn.send_close_notify();
                let _ = stream.flush();
            }
        })
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("the HTTPS server started");
    served
}

/// strata in `ns` with chronyd at 198.18.0.1 as its only source, the constraint `url`, and
/// start-up step limits of two hours each way.
fn strata(ns: &Netns, url: &str, ca: &Path, control: &Path) -> Server {
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
            "198.18.0.1 iburst minpoll 0 maxpoll 1",
            "--minsources",
            "1",
            "--max-startup-step-forward",
            "7200",
            "--max-startup-step-backward",
            "7200",
            "--constraint",
            url,
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
fn a_right_constraint_lets_strata_synchronize() {
    let Some((up, srv)) = lab(&[("chronyd (chrony)", "chronyd")]) else {
        return;
    };
    let dir = TempDir::new("constraint-right");
    let (ca, cert, key) = certificates_for(&dir.0, &["198.18.0.1"]);
    let stop = Arc::new(AtomicBool::new(false));
    let served = https_date_server(&up, &cert, &key, stop.clone());
    let _chronyd = Chronyd::start(Some(&up.name), "198.18.0.1", 123, None);
    let control = control_path("constraint-right");
    let _cleanup = RemoveOnDrop(control.clone());
    let server = strata(&srv, &format!("https://{HTTPS}/"), &ca, &control);
    let log = wait_log(&server, "synchronized to 198.18.0.1 stratum 2", 60);
    assert!(
        log.contains("time constraints: 1 of 1 fetched, 1 in force"),
        "{log}"
    );
    assert!(served.load(Ordering::Relaxed) >= 1);
    std::thread::sleep(Duration::from_secs(2));
    let report = status_json(&control);
    let integrity = &report["server"]["integrity"];
    assert_eq!(integrity["constraints"], "1 of 1 in force", "{report}");
    assert_eq!(integrity["constraint_rejections"], 0, "{report}");
    stop.store(true, Ordering::Relaxed);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

#[test]
#[ignore = "needs root, network namespaces, chronyd and faketime (make test runs it)"]
fn an_upstream_an_hour_off_is_rejected_by_the_constraint_even_alone() {
    let Some((up, srv)) = lab(&[
        ("chronyd (chrony)", "chronyd"),
        ("faketime (faketime)", "faketime"),
    ]) else {
        return;
    };
    let dir = TempDir::new("constraint-off");
    let (ca, cert, key) = certificates_for(&dir.0, &["198.18.0.1"]);
    let stop = Arc::new(AtomicBool::new(false));
    let _served = https_date_server(&up, &cert, &key, stop.clone());
    let chronyd = Chronyd::start(Some(&up.name), "198.18.0.1", 123, Some("+3600s"));
    let control = control_path("constraint-off");
    let _cleanup = RemoveOnDrop(control.clone());
    let server = strata(&srv, &format!("https://{HTTPS}/"), &ca, &control);
    let log = wait_log(
        &server,
        "source 198.18.0.1:123 is not usable: outside the time constraints",
        60,
    );
    assert!(log.contains("time constraints: 1 of 1 fetched"), "{log}");
    // More polls: every one is rejected, nothing is ever stepped or selected.
    std::thread::sleep(Duration::from_secs(10));
    let report = status_json(&control);
    stop.store(true, Ordering::Relaxed);
    let source = &report["sources"][0];
    assert_eq!(source["reason"], "outside the time constraints", "{report}");
    assert_eq!(report["server"]["stratum"], 16, "{report}");
    let rejected = report["server"]["integrity"]["constraint_rejections"]
        .as_u64()
        .unwrap();
    assert!(rejected >= 3, "{report}");
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    assert!(
        !log.contains("synchronized to") && !log.contains("clock stepped"),
        "{log}"
    );
    // The upstream was serving, an hour ahead: the constraint alone kept it out.
    let answer = ntp_query_in(&up, "198.18.0.1:123");
    assert!(answer.is_some(), "{}", chronyd.log());
    println!("chronyd an hour ahead: {rejected} samples rejected by the constraint");
}

/// Whether `addr` answers an NTP request from inside `ns`.
fn ntp_query_in(ns: &Netns, addr: &str) -> Option<Vec<u8>> {
    let addr: SocketAddr = addr.parse().unwrap();
    ns.run_in(move || ntp_query(addr, Duration::from_secs(2)))
}

#[test]
#[ignore = "needs root, network namespaces and chronyd (make test runs it)"]
fn with_no_constraint_reachable_strata_says_so_and_works_as_before() {
    let Some((up, srv)) = lab(&[("chronyd (chrony)", "chronyd")]) else {
        return;
    };
    let dir = TempDir::new("constraint-none");
    let (ca, _, _) = certificates_for(&dir.0, &["198.18.0.1"]);
    let _chronyd = Chronyd::start(Some(&up.name), "198.18.0.1", 123, None);
    let control = control_path("constraint-none");
    let _cleanup = RemoveOnDrop(control.clone());
    // Nothing listens there: the connection is refused at once.
    let server = strata(&srv, &format!("https://{HTTPS}/"), &ca, &control);
    let log = wait_log(&server, "synchronized to 198.18.0.1 stratum 2", 60);
    assert!(
        log.contains("no time constraint reachable (1 configured)"),
        "{log}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let report = status_json(&control);
    let said = report["server"]["integrity"]["constraints"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(said.starts_with("none of 1 reachable"), "{report}");
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

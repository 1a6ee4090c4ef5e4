//! NTS (RFC 8915) end to end on loopback: strata's NTS-KE server hands out cookies and keys,
//! NTS-protected requests get authenticated replies with fresh cookies, a tampered request gets
//! the NTS NAK, a second server sharing the master key accepts the first one's cookies, and
//! chronyd (Debian's, a client nobody here wrote) synchronizes to strata over NTS and says so.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use strata::daemon::nts::ke_client;
use strata::proto::nts::client as nts_client;
use strata::proto::nts::Aead;
use strata_test_support::*;

/// A test CA and a server certificate for 127.0.0.1 and localhost, as PEM files in `dir`:
/// (CA, certificate, key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    certificates_for(dir, &["127.0.0.1"])
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct NtsServer {
    server: Server,
    ntp: SocketAddr,
    ke: SocketAddr,
}

fn serve(dir: &Path, cert: &Path, key: &Path, key_file: &Path) -> NtsServer {
    serve_with(dir, cert, key, key_file, &[])
}

fn serve_with(dir: &Path, cert: &Path, key: &Path, key_file: &Path, extra: &[&str]) -> NtsServer {
    let port = free_udp_port();
    let ke_port = free_tcp_port();
    let listen = format!("127.0.0.1:{port}");
    let ke = format!("127.0.0.1:{ke_port}");
    let port_text = port.to_string();
    let mut args = vec![
        "--listen",
        &listen,
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
        &ke,
        "--nts-key-file",
        key_file.to_str().unwrap(),
        "--nts-ntp-port",
        &port_text,
    ];
    args.extend_from_slice(extra);
    // With require_nts the start-up probe (a plain request) gets nothing: no probe then.
    let probe = (!extra.contains(&"--require-nts")).then(|| listen.parse().unwrap());
    let mut server = Server::start(None, &args, probe);
    server.wait_for_log("NTS-KE on");
    server.wait_for_log("listening on");
    let _ = dir;
    NtsServer {
        server,
        ntp: listen.parse().unwrap(),
        ke: ke.parse().unwrap(),
    }
}

fn header() -> [u8; 48] {
    let mut h = [0u8; 48];
    h[0] = 0x23;
    h[40..48].copy_from_slice(&0x1234_5678_9abc_def0u64.to_be_bytes());
    h
}

fn exchange(to: SocketAddr, request: &[u8]) -> Option<Vec<u8>> {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    s.send_to(request, to).unwrap();
    let mut buf = [0u8; 2048];
    s.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

#[test]
fn nts_ke_cookies_authenticated_replies_naks_and_a_second_node_sharing_the_key() {
    let dir = TempDir::new("nts");
    let (ca, cert, key) = certificates(&dir.0);
    let key_file = dir.0.join("nts.key");
    let a = serve(&dir.0, &cert, &key, &key_file);
    let config = ke_client::client_config(Some(&std::fs::read(&ca).unwrap())).unwrap();

    for aead in Aead::ALL {
        let est =
            ke_client::establish(config.clone(), a.ke, "127.0.0.1", &[aead], Duration::from_secs(5)).unwrap();
        assert_eq!(est.keys.aead, aead);
        assert_eq!(est.response.cookies.len(), 8);
        assert_eq!(est.response.port, Some(a.ntp.port()));
        let uid = [0x5a; 32];
        let nonce = vec![7u8; aead.nonce_len()];
        // One cookie and two placeholders: three fresh cookies back, no longer than the request.
        let request = nts_client::request(&header(), &uid, &est.response.cookies[0], 2, &est.keys, &nonce);
        let reply = exchange(a.ntp, &request).expect("an answer");
        assert!(
            reply.len() <= request.len(),
            "{} > {}",
            reply.len(),
            request.len()
        );
        let fresh = nts_client::verify(&reply, &uid, &est.keys).unwrap();
        assert_eq!(fresh.len(), 3);
        assert_eq!(reply[1], 1, "stratum 1");
        // A fresh cookie works too.
        let again = nts_client::request(
            &header(),
            &uid,
            nts_client::trim_cookie(&fresh[0], aead),
            0,
            &est.keys,
            &nonce,
        );
        assert!(nts_client::verify(&exchange(a.ntp, &again).unwrap(), &uid, &est.keys).is_ok());
        // A bit flipped in the cookie, in the header (authenticated data), in the tag: NAK.
        for at in [48 + 36 + 4 + 30, 20, request.len() - 3] {
            let mut bad = request.clone();
            bad[at] ^= 0x04;
            let reply = exchange(a.ntp, &bad).expect("a NAK");
            assert_eq!(
                nts_client::verify(&reply, &uid, &est.keys),
                Err(nts_client::ReplyError::Nak),
                "byte {at}"
            );
            assert!(reply.len() <= bad.len());
        }
        // Truncated: nothing.
        assert_eq!(exchange(a.ntp, &request[..request.len() - 8]), None);
    }

    // A second node with the same master key accepts the first one's cookies.
    let b = serve(&dir.0, &cert, &key, &key_file);
    let est = ke_client::establish(
        config.clone(),
        a.ke,
        "127.0.0.1",
        &[Aead::SivCmac256],
        Duration::from_secs(5),
    )
    .unwrap();
    let request = nts_client::request(
        &header(),
        &[1; 32],
        &est.response.cookies[0],
        0,
        &est.keys,
        &[3; 16],
    );
    assert!(nts_client::verify(&exchange(b.ntp, &request).unwrap(), &[1; 32], &est.keys).is_ok());
    // A node with another key NAKs them.
    let c = serve(&dir.0, &cert, &key, &dir.0.join("other.key"));
    assert_eq!(
        nts_client::verify(&exchange(c.ntp, &request).unwrap(), &[1; 32], &est.keys),
        Err(nts_client::ReplyError::Nak)
    );
    // require_nts: a plain request gets nothing, an NTS one its answer.
    let d = serve_with(&dir.0, &cert, &key, &key_file, &["--require-nts", "on"]);
    assert_eq!(exchange(d.ntp, &header()), None);
    assert!(nts_client::verify(&exchange(d.ntp, &request).unwrap(), &[1; 32], &est.keys).is_ok());
    let (status, log) = d.server.stop();
    assert!(status.success(), "{log}");
    assert!(
        log.contains("nts_required 1") || log.contains("1 nts_required"),
        "{log}"
    );
    // A client that does not trust the CA gets no session.
    let untrusting = ke_client::client_config(Some(b"")).unwrap();
    assert!(ke_client::establish(
        untrusting,
        a.ke,
        "127.0.0.1",
        &[Aead::SivCmac256],
        Duration::from_secs(5)
    )
    .is_err());

    let (status, log) = a.server.stop();
    assert!(status.success(), "{log}");
    let line = log_line(&log, "replies (");
    assert!(line.contains("NTSN"), "the NAKs are counted as kiss NTSN: {line}");
    drop((b, c));
}

/// chronyd's own view of the source: `chronyc -N authdata` and `sources`, through its command
/// socket in `dir`.
fn chronyc(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("chronyc")
        .arg("-h")
        .arg(dir.join("chronyd.sock"))
        .args(["-n", "-c"])
        .args(args)
        .output()
        .expect("run chronyc");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs chronyd and chronyc (make test runs it)"]
fn chronyd_synchronizes_to_strata_over_nts() {
    if !available("chronyd (Debian package chrony)", have_command("chronyd")) {
        return;
    }
    let dir = TempDir::new("nts-chronyd");
    // chronyd refuses a command socket in a directory others may enter.
    std::fs::set_permissions(&dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let (ca, cert, key) = certificates(&dir.0);
    let a = serve(&dir.0, &cert, &key, &dir.0.join("nts.key"));
    let conf = dir.0.join("chrony.conf");
    std::fs::write(
        &conf,
        format!(
            "server 127.0.0.1 port {} nts ntsport {} iburst minpoll 0 maxpoll 0\n\
             ntstrustedcerts {}\nbindcmdaddress {}\ncmdport 0\npidfile {}\nntsdumpdir {}\n\
             driftfile {}\n",
            a.ntp.port(),
            a.ke.port(),
            ca.display(),
            dir.0.join("chronyd.sock").display(),
            dir.0.join("chronyd.pid").display(),
            dir.0.display(),
            dir.0.join("drift").display(),
        ),
    )
    .unwrap();
    // -x: never touch the system clock; -u root: no privilege drop, so that the test's files
    // stay readable; -d: in the foreground, logging to stderr.
    let mut chronyd = std::process::Command::new("chronyd")
        .args(["-x", "-u", "root", "-d", "-f"])
        .arg(&conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start chronyd");
    let started = Instant::now();
    let (mut authdata, mut sources) = (String::new(), String::new());
    while started.elapsed() < Duration::from_secs(40) {
        std::thread::sleep(Duration::from_secs(1));
        authdata = chronyc(&dir.0, &["authdata"]);
        sources = chronyc(&dir.0, &["sources"]);
        if sources.lines().any(|l| l.starts_with("^,*")) {
            break;
        }
    }
    let _ = chronyd.kill();
    let output = chronyd.wait_with_output().unwrap();
    let chronyd_log = String::from_utf8_lossy(&output.stderr);
    let (status, log) = a.server.stop();
    assert!(status.success(), "{log}");
    // sources -c: "^,*,127.0.0.1,1,0,..." : selected (*), stratum 1.
    let selected = sources.lines().find(|l| l.starts_with("^,*")).unwrap_or_else(|| {
        panic!("chronyd did not select strata:\n{sources}\n{authdata}\n{chronyd_log}\n{log}")
    });
    assert_eq!(selected.split(',').nth(3), Some("1"), "{selected}");
    // authdata -c: "127.0.0.1,NTS,1,15,256,..." : the mode is NTS, the AEAD 15 (or 30).
    let auth = authdata
        .lines()
        .find(|l| l.starts_with("127.0.0.1"))
        .unwrap_or("");
    let fields: Vec<&str> = auth.split(',').collect();
    assert_eq!(fields.get(1), Some(&"NTS"), "chronyc authdata: {authdata}");
    let line = log_line(&log, "replies (");
    assert!(!line.contains(" 0 replies"), "{line}");
    assert!(log.contains("authenticated") || line.contains("replies"), "{log}");
}

/// NTS through the XDP path: the XDP program passes NTS requests (longer than 48 bytes) up to
/// the AF_XDP responder, which answers them with the same pipeline; NTS-KE is served by the
/// kernel's TCP in the same namespace. A client in the lab's client namespace gets keys,
/// cookies and authenticated replies.
#[test]
#[ignore = "needs root, network namespaces and XDP (make test runs it)"]
fn nts_on_the_xdp_path() {
    if !Lab::available() {
        return;
    }
    let dir = TempDir::new("nts-xdp");
    let (ca, cert, key) = certificates_for(&dir.0, &["198.18.0.2"]);
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
            "--metrics",
            "off",
            "--control",
            "off",
            "--rate-limit",
            "off",
            "--nts-certificate",
            cert.to_str().unwrap(),
            "--nts-private-key",
            key.to_str().unwrap(),
            "--nts-ke-listen",
            "198.18.0.2:4460",
            "--nts-key-file",
            dir.0.join("nts.key").to_str().unwrap(),
        ],
        None,
    );
    server.wait_for_log("through XDP");
    let ca_pem = std::fs::read(&ca).unwrap();
    let results = lab.run_in("cli", move || {
        let config = ke_client::client_config(Some(&ca_pem)).unwrap();
        let est = ke_client::establish(
            config,
            "198.18.0.2:4460".parse().unwrap(),
            "198.18.0.2",
            &[Aead::SivCmac256],
            Duration::from_secs(5),
        )
        .unwrap();
        let to: SocketAddr = "198.18.0.2:123".parse().unwrap();
        let s = UdpSocket::bind("198.18.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut verdicts = Vec::new();
        for i in 0..20u8 {
            let uid = [i; 32];
            let request = nts_client::request(
                &header(),
                &uid,
                &est.response.cookies[i as usize % 8],
                1,
                &est.keys,
                &[i; 16],
            );
            s.send_to(&request, to).unwrap();
            let mut buf = [0u8; 2048];
            verdicts.push(match s.recv(&mut buf) {
                Ok(n) => nts_client::verify(&buf[..n], &uid, &est.keys)
                    .map(|c| c.len())
                    .map_err(|e| format!("{e:?}")),
                Err(e) => Err(e.to_string()),
            });
        }
        verdicts
    });
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    for (i, v) in results.iter().enumerate() {
        assert_eq!(v, &Ok(2), "request {i}: {v:?}\n{log}");
    }
    let program = log_line(&log, "xdp program on srv0:");
    assert!(log_field(program, "redirected") >= 20, "{program}");
    assert!(log.contains("20 NTS-authenticated"), "{log}");
}

/// ntpd-rs's binaries: `STRATA_NTPD_RS` (its ntp-daemon), else the copy `make` installs.
fn ntpd_rs() -> Option<(PathBuf, PathBuf)> {
    let daemon = std::env::var_os("STRATA_NTPD_RS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/strata-bench/ntpd-rs-1.9.0/bin/ntp-daemon")
        });
    let ctl = daemon.with_file_name("ntp-ctl");
    (daemon.exists() && ctl.exists()).then_some((daemon, ctl))
}

/// ntpd-rs (the ntpd crate, a client nobody here wrote) follows strata as an NTS source: it runs
/// NTS-KE, gets cookies and measures the offset through NTS, and says so in its own metrics
/// (`ntp_source_nts_cookies_available`, `ntp_source_offset`). It is told to need two agreeing
/// sources and given one, so that it never touches this machine's clock.
#[test]
#[ignore = "needs ntpd-rs (make test installs it)"]
fn ntpd_rs_follows_strata_over_nts() {
    let Some((daemon, ctl)) = ntpd_rs() else {
        assert!(
            available(
                "ntpd-rs (make test installs it into ~/.cache/strata-bench)",
                false
            ),
            "unreachable"
        );
        return;
    };
    let dir = TempDir::new("nts-ntpd-rs");
    let (ca, cert, key) = certificates(&dir.0);
    let a = serve(&dir.0, &cert, &key, &dir.0.join("nts.key"));
    let conf = dir.0.join("ntp.toml");
    std::fs::write(
        &conf,
        format!(
            "[observability]\nlog-level = \"info\"\nobservation-path = \"{}\"\n\n\
             [source-defaults]\npoll-interval-limits = {{ min = 0, max = 1 }}\ninitial-poll-interval = 0\n\n\
             [[source]]\nmode = \"nts\"\naddress = \"127.0.0.1:{}\"\ncertificate-authority = \"{}\"\n\n\
             [synchronization]\nminimum-agreeing-sources = 2\n",
            dir.0.join("observe.sock").display(),
            a.ke.port(),
            ca.display()
        ),
    )
    .unwrap();
    let mut ntpd = Command::new(&daemon)
        .arg("-c")
        .arg(&conf)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start ntp-daemon");
    let started = Instant::now();
    let mut metrics = String::new();
    let value = |metrics: &str, name: &str| -> Option<f64> {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    };
    while started.elapsed() < Duration::from_secs(40) {
        std::thread::sleep(Duration::from_secs(1));
        let out = Command::new(&ctl)
            .arg("-c")
            .arg(&conf)
            .args(["-f", "prometheus", "status"])
            .output()
            .expect("run ntp-ctl");
        metrics = String::from_utf8_lossy(&out.stdout).into_owned();
        if value(&metrics, "ntp_source_offset").is_some()
            && value(&metrics, "ntp_source_nts_cookies_available").unwrap_or(0.0) > 0.0
        {
            break;
        }
    }
    let _ = ntpd.kill();
    let output = ntpd.wait_with_output().unwrap();
    let (status, log) = a.server.stop();
    assert!(status.success(), "{log}");
    let context = format!(
        "{metrics}\n{}{}\n{log}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let offset = value(&metrics, "ntp_source_offset")
        .unwrap_or_else(|| panic!("ntpd-rs measured nothing:\n{context}"));
    assert!(offset.abs() < 0.01, "offset {offset}:\n{context}");
    assert!(
        value(&metrics, "ntp_source_nts_cookies_available").unwrap_or(0.0) > 0.0,
        "{context}"
    );
    assert!(
        log.contains("NTS-authenticated"),
        "strata answered no NTS request:\n{log}"
    );
}

/// strata-loadgen's NTS mode against strata: each thread runs NTS-KE once, then every request
/// is NTS-protected and every reply verified (identifier and authenticator): none is refused.
#[test]
fn the_load_generator_speaks_nts() {
    let dir = TempDir::new("nts-loadgen");
    let (ca, cert, key) = certificates(&dir.0);
    let a = serve_with(
        &dir.0,
        &cert,
        &key,
        &dir.0.join("nts.key"),
        &["--rate-limit", "off"],
    );
    let loadgen = workspace_bins("strata-loadgen", &["strata-loadgen"]).remove(0);
    let out = Command::new(loadgen)
        .args([
            "--target",
            &a.ntp.to_string(),
            "--request",
            "nts",
            "--nts-ke",
            &a.ke.to_string(),
        ])
        .arg("--nts-ca")
        .arg(&ca)
        .args([
            "--rate",
            "2000",
            "--step-seconds",
            "1",
            "--threads",
            "2",
            "--json",
        ])
        .output()
        .expect("run strata-loadgen");
    let (status, log) = a.server.stop();
    assert!(status.success(), "{log}");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let step = &report["steps"][0];
    assert_eq!(step["sent"], 2000, "{step}");
    assert!(step["valid"].as_u64().unwrap() >= 1990, "{step}");
    let invalid = &step["invalid"];
    assert_eq!(invalid["not_authenticated"].as_u64().unwrap_or(0), 0, "{step}");
    assert!(log.contains("NTS-authenticated"), "{log}");
}

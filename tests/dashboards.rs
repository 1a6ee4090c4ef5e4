//! The Grafana dashboard (deploy/grafana/strata.json) and the Prometheus alert rules
//! (deploy/prometheus/strata-alerts.yml) checked against real data: `promtool check rules` and
//! `promtool test rules` (each alert firing and resolving, strata-alerts.test.yml), then a netns
//! lab of this test's own with
//!
//! - an upstream strata in the `up` namespace on the socket path, NTS on, local stratum 1;
//! - the server under test in `srv` on the XDP path (XDP answer tier and AF_XDP responders),
//!   NTS on, synchronized to that upstream (`--minsources 1`);
//! - a real Prometheus server (Debian's) in `srv`, scraping both every second with the rule
//!   file loaded;
//! - traffic from `cli`: plain requests (answered in XDP), requests with a MAC (AF_XDP), a
//!   burst over the rate limit, and an NTS-KE session with an authenticated NTS request.
//!
//! Then every panel's every query (`$__rate_interval` as 10s, `$instance` and `$job` as `.*`)
//! goes through Prometheus's HTTP API and must succeed and return at least one series; the
//! dashboard's variable queries must find their label; every alert rule must have evaluated
//! without error (its health in /api/v1/rules) and its expression must evaluate through
//! /api/v1/query; and the alerts a healthy lab must not raise (down, unsynchronized, XDP
//! program missing) have empty expressions.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use strata::daemon::nts::ke_client;
use strata::proto::nts::client as nts_client;
use strata::proto::nts::Aead;
use strata_test_support::*;

const SERVER: &str = "198.18.0.2";
const UPSTREAM: &str = "198.18.0.66";
/// Prometheus's own port, in the `srv` namespace (fresh, so nothing else holds it).
const PROMETHEUS: &str = "127.0.0.1:19090";
/// A target of job "strata" where nothing listens: StrataDown's expression must find it.
const DEAD: &str = "127.0.0.1:9";
/// A job that scrapes the socket-path upstream as if it were meant to run XDP: the
/// XDP-program-missing alert's expression must find it (and not the real XDP server).
const FALLBACK: &str = "strata-fallback";

fn deploy(path: &str) -> PathBuf {
    workspace_root().join("deploy").join(path)
}

/// `promtool ARGS` must succeed; its output.
fn promtool(args: &[&str], dir: &Path) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}: {}\n{said}", out.status);
    said
}

/// A test CA and a certificate for `ip`: (CA PEM, certificate path, key path).
fn certificates(dir: &Path, ip: &str) -> (Vec<u8>, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "strata test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress(ip.parse().unwrap()));
    params
        .distinguished_name
        .push(DnType::CommonName, "strata test server");
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let paths = (dir.join(format!("{ip}.pem")), dir.join(format!("{ip}.key")));
    std::fs::write(&paths.0, cert.pem()).unwrap();
    std::fs::write(&paths.1, key.serialize_pem()).unwrap();
    (ca.pem().into_bytes(), paths.0, paths.1)
}

/// The NTS flags for a server on `ip` (NTS-KE on port 4460, NTP on 123).
fn nts_args(dir: &Path, ip: &str) -> (Vec<String>, Vec<u8>) {
    let (ca, cert, key) = certificates(dir, ip);
    let args = [
        "--nts-certificate",
        cert.to_str().unwrap(),
        "--nts-private-key",
        key.to_str().unwrap(),
        "--nts-ke-listen",
        &format!("{ip}:4460"),
        "--nts-key-file",
        dir.join(format!("{ip}.nts-key")).to_str().unwrap(),
        "--nts-ntp-port",
        "123",
    ]
    .map(String::from)
    .to_vec();
    (args, ca)
}

/// A Prometheus server, killed when dropped (its storage goes with the test's TempDir).
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `GET path` from Prometheus (HTTP/1.0: no chunking, closed after the response); the status
/// line (or why there is none) and the body parsed as JSON (Null when it is not JSON).
fn prom_get(path: &str) -> (String, Value) {
    let addr: SocketAddr = PROMETHEUS.parse().unwrap();
    let mut s = match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
        Ok(s) => s,
        // Not listening yet: the caller's query fails, and the wait goes on.
        Err(e) => return (format!("connect to Prometheus: {e}"), Value::Null),
    };
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: prometheus\r\n\r\n").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read Prometheus's response");
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// An instant query: Ok(result array) or Err(what went wrong).
fn query(expr: &str) -> Result<Vec<Value>, String> {
    let (status, json) = prom_get(&format!("/api/v1/query?query={}", percent_encode(expr)));
    if json["status"] != "success" {
        return Err(format!("{status}: {json}"));
    }
    Ok(json["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// Every query of every panel (rows' nested panels too): (panel title, expression).
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &[Value], out: &mut Vec<(String, String)>) {
        for p in panels {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().expect("a Prometheus target has an expr");
                out.push((p["title"].as_str().unwrap_or("?").to_string(), expr.to_string()));
            }
            if let Some(nested) = p["panels"].as_array() {
                walk(nested, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dashboard["panels"].as_array().expect("panels"), &mut out);
    out
}

/// A panel query as Grafana would send it over a short range.
fn instantiate(expr: &str) -> String {
    expr.replace("$__rate_interval", "10s")
        .replace("$__interval", "5s")
        .replace("$__range", "1m")
        .replace("$instance", ".*")
        .replace("$job", ".*")
}

/// Sends `n` plain requests from `from` in `ns` without waiting for replies (a burst over the rate limit).
fn burst(ns: &str, to: SocketAddr, from: &'static str, n: usize) {
    run_in(ns, move || {
        let sock = std::net::UdpSocket::bind(from).unwrap();
        for _ in 0..n {
            sock.send_to(&client_request(0x23, 48), to).unwrap();
        }
        std::thread::sleep(Duration::from_millis(200));
    });
}

/// One NTS-KE session with `ke`, then an NTS-protected request to `ntp`: its reply verified.
fn nts_exchange(ns: &str, ca: Vec<u8>, ke: SocketAddr, ntp: SocketAddr) {
    run_in(ns, move || {
        let config = ke_client::client_config(Some(&ca)).unwrap();
        let est = ke_client::establish(
            config,
            ke,
            &ke.ip().to_string(),
            &[Aead::SivCmac256],
            Duration::from_secs(5),
        )
        .expect("an NTS-KE session");
        let mut header = [0u8; 48];
        header[0] = 0x23;
        header[40..48].copy_from_slice(&0x1234_5678_9abc_def0u64.to_be_bytes());
        let uid = [0x5a; 32];
        let request = nts_client::request(&header, &uid, &est.response.cookies[0], 0, &est.keys, &[7u8; 16]);
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        sock.send_to(&request, ntp).unwrap();
        let mut buf = [0u8; 2048];
        let n = sock.recv(&mut buf).expect("an NTS reply");
        nts_client::verify(&buf[..n], &uid, &est.keys).expect("an authenticated NTS reply");
    });
}

#[test]
#[ignore = "needs root, network namespaces, XDP and prometheus + promtool (Debian package prometheus); make test runs it"]
fn dashboard_and_alerts_work_on_real_data() {
    let started = Instant::now();
    if !available(
        "promtool and prometheus (Debian package prometheus)",
        have_command("promtool") && have_command("prometheus"),
    ) {
        return;
    }
    // The rule file, and its unit tests: each alert firing and resolving.
    let rules_dir = deploy("prometheus");
    let said = promtool(&["check", "rules", "strata-alerts.yml"], &rules_dir);
    assert!(said.contains("SUCCESS"), "{said}");
    let said = promtool(&["test", "rules", "strata-alerts.test.yml"], &rules_dir);
    assert!(said.contains("SUCCESS"), "{said}");
    let rules_text = std::fs::read_to_string(rules_dir.join("strata-alerts.yml")).unwrap();
    let alert_names: Vec<&str> = rules_text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    let tests_text = std::fs::read_to_string(rules_dir.join("strata-alerts.test.yml")).unwrap();
    for name in &alert_names {
        assert!(
            tests_text.contains(&format!("alertname: {name}")),
            "strata-alerts.test.yml has no test of {name}"
        );
    }
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/strata.json")).unwrap())
            .expect("the dashboard is JSON");
    let queries = panel_queries(&dashboard);
    assert!(queries.len() > 20, "{} queries", queries.len());
    // One data source, chosen by the variable (provisioned or imported alike).
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating variables");
    assert!(
        variables
            .iter()
            .any(|v| v["name"] == "DS_PROMETHEUS" && v["type"] == "datasource" && v["query"] == "prometheus"),
        "no DS_PROMETHEUS data source variable"
    );
    for p in dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] != "row")
    {
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "panel {}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "panel {}", p["title"]);
        }
    }

    if !Lab::available() {
        return;
    }
    let lab = Lab::up();
    let dir = TempDir::new("dash");

    // The upstream: socket path, NTS, metrics on its lab address (Prometheus in srv reaches it).
    let (up_nts, _) = nts_args(&dir.0, UPSTREAM);
    let up_listen = format!("{UPSTREAM}:123");
    let up_metrics = format!("{UPSTREAM}:0");
    let mut args: Vec<&str> = vec![
        "--listen",
        &up_listen,
        "--local-stratum",
        "1",
        "--cores",
        "0",
        "--metrics",
        &up_metrics,
        "--control",
        "off",
    ];
    args.extend(up_nts.iter().map(String::as_str));
    let mut upstream = Server::start(Some(&lab.ns("up")), &args, None);
    upstream.wait_for_log("listening on");
    upstream.wait_for_log("metrics on http://");
    let up_metrics = metrics_addr(&upstream.log());

    // The server under test: XDP path, NTS, synchronized to the upstream.
    let (srv_nts, ca) = nts_args(&dir.0, SERVER);
    let source = format!("{UPSTREAM}:123 iburst minpoll 0 maxpoll 2");
    let mut args: Vec<&str> = vec![
        "--iface",
        "srv0",
        "--mode",
        "xdp",
        "--upstream",
        &source,
        "--minsources",
        "1",
        "--cores",
        "1",
        "--metrics",
        "127.0.0.1:0",
        "--control",
        "off",
    ];
    args.extend(srv_nts.iter().map(String::as_str));
    let mut server = Server::start(Some(&lab.ns("srv")), &args, None);
    server.wait_for_log("through XDP");
    server.wait_for_log("metrics on http://");
    let srv_metrics = metrics_addr(&server.log());

    // Prometheus in srv, every second, with the rules.
    let config = dir.0.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: strata\n    static_configs:\n\
             \x20     - targets: ['{srv_metrics}']\n        labels:\n          strata_path: xdp\n\
             \x20     - targets: ['{up_metrics}', '{DEAD}']\n\
             \x20 - job_name: {FALLBACK}\n    static_configs:\n\
             \x20     - targets: ['{up_metrics}']\n        labels:\n          strata_path: xdp\n",
            rules = rules_dir.join("strata-alerts.yml").display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.0.join("prometheus.log")).unwrap();
    let _prometheus = Prometheus(
        Command::new("ip")
            .args(["netns", "exec", &lab.ns("srv"), "prometheus"])
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.0.join("tsdb").display()))
            .arg(format!("--web.listen-address={PROMETHEUS}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );
    let prometheus_log = || std::fs::read_to_string(dir.0.join("prometheus.log")).unwrap_or_default();
    let srv = lab.ns("srv");
    let in_srv = move |f: Box<dyn FnOnce() -> Result<Vec<Value>, String> + Send>| run_in(&srv, f);

    let cli = lab.ns("cli");
    let ntp: SocketAddr = format!("{SERVER}:123").parse().unwrap();
    // Until Prometheus has scraped the three live targets a few times and the source is selected.
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let ready = in_srv(Box::new(|| {
            let both_up = query("count(up == 1) == 3")?;
            let scrapes = query("min(count_over_time(up[1m])) >= 5")?;
            let selected = query(r#"strata_source_state{state="selected"} == 1"#)?;
            let offset = query("strata_source_offset_seconds")?;
            Ok(
                if [both_up, scrapes, selected, offset].iter().all(|r| !r.is_empty()) {
                    vec![Value::Bool(true)]
                } else {
                    vec![]
                },
            )
        }));
        if matches!(ready, Ok(ref r) if !r.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never had both targets up a few times with the source selected ({ready:?});\n\
             prometheus: {}\nserver: {}",
            prometheus_log(),
            server.log()
        );
        // Keep traffic flowing, so that rates are not all zero (from a simulated client of its
        // own, so that the client below stays under its rate limit).
        run_in(&cli, move || exchange(ntp, "198.19.0.10:0", 1));
        std::thread::sleep(Duration::from_millis(500));
    }

    // Traffic of every kind, now that Prometheus has samples from before it (a counter's
    // increase starts at its first sample).
    assert_eq!(run_in(&cli, move || exchange(ntp, "0.0.0.0:0", 5)), 5);
    // A MAC: not for the XDP answer tier, answered by an AF_XDP responder.
    run_in(&cli, move || {
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        for _ in 0..3 {
            sock.send_to(&client_request(0x23, 68), ntp).unwrap();
            let mut buf = [0u8; 128];
            sock.recv(&mut buf).expect("a reply to the MAC request");
        }
    });
    nts_exchange(&cli, ca, format!("{SERVER}:4460").parse().unwrap(), ntp);
    // Over the default limit (a burst of 16) from another client: some rate limited.
    burst(&cli, ntp, "198.19.0.20:0", 60);

    // Three more scrapes and rule evaluations.
    std::thread::sleep(Duration::from_secs(3));

    // Every panel query: no error, some series.
    let instantiated: Vec<(String, String)> = queries
        .iter()
        .map(|(title, expr)| (title.clone(), instantiate(expr)))
        .collect();
    let failures = run_in(&lab.ns("srv"), move || {
        let mut failures = Vec::new();
        for (title, expr) in &instantiated {
            match query(expr) {
                Err(e) => failures.push(format!("panel {title:?}: {expr}\n  error: {e}")),
                Ok(r) if r.is_empty() => failures.push(format!("panel {title:?}: {expr}\n  no series")),
                Ok(_) => {}
            }
        }
        failures
    });
    assert!(
        failures.is_empty(),
        "dashboard queries that fail:\n{}",
        failures.join("\n")
    );

    // The variables' queries (Grafana's label_values(METRIC, LABEL)) find their label.
    let variables = dashboard["templating"]["list"].as_array().unwrap().clone();
    let var_failures = run_in(&lab.ns("srv"), move || {
        let mut failures = Vec::new();
        for v in variables.iter().filter(|v| v["type"] == "query") {
            let q = v["definition"].as_str().unwrap();
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|s| s.strip_suffix(')'))
                .unwrap_or_else(|| panic!("variable query {q}"));
            let (metric, label) = inner.rsplit_once(',').unwrap();
            let (metric, label) = (instantiate(metric.trim()), label.trim().to_string());
            match query(&format!("count by ({label}) ({metric})")) {
                Ok(r) if r.iter().any(|s| s["metric"][&label].is_string()) => {}
                other => failures.push(format!("variable {q}: {other:?}")),
            }
        }
        failures
    });
    assert!(var_failures.is_empty(), "{var_failures:?}");

    // Every alert rule: loaded, evaluated without error, its expression evaluates.
    let names: Vec<String> = alert_names.iter().map(|s| s.to_string()).collect();
    let (rule_failures, results) = run_in(&lab.ns("srv"), move || {
        let (_, rules) = prom_get("/api/v1/rules");
        let mut failures = Vec::new();
        let mut results = std::collections::BTreeMap::new();
        for group in rules["data"]["groups"].as_array().expect("rule groups") {
            for rule in group["rules"].as_array().unwrap() {
                let name = rule["name"].as_str().unwrap().to_string();
                let expr = rule["query"].as_str().unwrap();
                if rule["health"] != "ok" {
                    failures.push(format!("{name}: health {} {}", rule["health"], rule["lastError"]));
                }
                match query(expr) {
                    Err(e) => failures.push(format!("{name}: {expr}\n  error: {e}")),
                    Ok(r) => {
                        results.insert(name, r);
                    }
                }
            }
        }
        for name in &names {
            if !results.contains_key(name) {
                failures.push(format!(
                    "{name}: not loaded by Prometheus (or its expression failed)"
                ));
            }
        }
        (failures, results)
    });
    assert!(
        rule_failures.is_empty(),
        "alert rules:\n{}",
        rule_failures.join("\n")
    );
    // What the lab is, the alerts' expressions see: synchronized servers with fresh NTS keys,
    // an XDP program seeing traffic, kernel counters read; and one dead target, one socket-path
    // server labelled as XDP, a client over its rate limit.
    let label_of = |name: &str, label: &str| -> Vec<String> {
        results[name]
            .iter()
            .map(|s| s["metric"][label].as_str().unwrap_or("").to_string())
            .collect()
    };
    for name in [
        "StrataUnsynchronized",
        "StrataExporterReadErrors",
        "StrataOffsetHigh",
        "StrataCorrectionRefused",
        "StrataXdpIdle",
        "StrataNtsCookieKeyStale",
    ] {
        assert!(results[name].is_empty(), "{name}: {:?}", results[name]);
    }
    assert_eq!(label_of("StrataDown", "instance"), [DEAD]);
    assert_eq!(label_of("StrataXdpProgramMissing", "job"), [FALLBACK]);
    assert!(
        label_of("StrataRateLimiting", "instance").contains(&srv_metrics.to_string()),
        "the burst was rate limited: {:?}",
        results["StrataRateLimiting"]
    );
    let firing: Vec<&String> = results
        .iter()
        .filter(|(_, r)| !r.is_empty())
        .map(|(n, _)| n)
        .collect();

    // The panels show the traffic that was sent, not only zeros.
    let spot = [
        "sum(increase(strata_xdp_answered_total[1m])) > 0",
        r#"sum(increase(strata_replies_total{path="xdp"}[1m])) > 0"#,
        r#"sum(increase(strata_replies_total{path="socket"}[1m])) > 0"#,
        r#"sum(increase(strata_nts_ke_sessions_total{outcome="ok"}[1m])) > 0"#,
        "sum(increase(strata_nts_authenticated_replies_total[1m])) > 0",
        r#"sum(increase(strata_xdp_dropped_total{reason="rate_limited"}[1m])) > 0"#,
        "sum(increase(strata_response_time_seconds_count[1m])) > 0",
        "strata_source_reach > 0",
    ];
    let empty = run_in(&lab.ns("srv"), move || {
        spot.iter()
            .filter(|q| !matches!(query(q), Ok(r) if !r.is_empty()))
            .map(|q| q.to_string())
            .collect::<Vec<_>>()
    });
    assert!(empty.is_empty(), "no data where traffic was sent: {empty:?}");
    eprintln!(
        "{} panel queries and {} alert rules checked against real data in {:.1} s; alert expressions \
         not empty here: {firing:?}",
        queries.len(),
        alert_names.len(),
        started.elapsed().as_secs_f64()
    );
    drop(_prometheus);
    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
    drop(upstream);
}

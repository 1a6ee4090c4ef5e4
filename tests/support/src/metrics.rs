//! What the metrics and status tests share: scraping `/metrics` over plain HTTP, reading the
//! Prometheus text back, `promtool check metrics`, and NTP exchanges to count.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::avail::{available, have_command};
use crate::frames::client_request;
use crate::process::temp_path;

/// Where the server says it serves metrics ("metrics on http://ADDR/metrics" in its log).
pub fn metrics_addr(log: &str) -> SocketAddr {
    let at = log
        .find("metrics on http://")
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"));
    let rest = &log[at + "metrics on http://".len()..];
    rest[..rest.find("/metrics").unwrap()].parse().unwrap()
}

/// A control socket path of this test process's own (see [`temp_path`]).
pub fn control_path(tag: &str) -> PathBuf {
    temp_path(tag, "sock")
}

/// Sends `request` as is and returns the whole response (the server closes after it).
pub fn http_raw(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("connect to /metrics");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("read the response");
    String::from_utf8(out).unwrap()
}

/// `GET /metrics`: the body of a 200 response.
pub fn scrape(addr: SocketAddr) -> String {
    let response = http_raw(addr, b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

/// One sample's labels and value.
pub type Sample = (BTreeMap<String, String>, f64);

/// Samples of a text-format body: `name` -> its samples.
pub struct Metrics(BTreeMap<String, Vec<Sample>>);

pub fn parse(body: &str) -> Metrics {
    let mut out: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for line in body.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let mut labels = BTreeMap::new();
                for pair in rest.trim_end_matches('}').split("\",").filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap();
                    labels.insert(k.to_string(), v.trim_matches('"').to_string());
                }
                (name.to_string(), labels)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        out.entry(name).or_default().push((labels, value));
    }
    Metrics(out)
}

impl Metrics {
    /// The sum of `name`'s samples whose labels include every pair of `with`.
    pub fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.0
            .get(name)
            .map(|samples| {
                samples
                    .iter()
                    .filter(|(labels, _)| {
                        with.iter()
                            .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
                    })
                    .map(|(_, v)| v)
                    .sum()
            })
            .unwrap_or(0.0)
    }

    /// The value of a metric without labels (or the sum of its samples).
    pub fn get(&self, name: &str) -> f64 {
        assert!(self.0.contains_key(name), "no {name}");
        self.sum(name, &[])
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn names(&self) -> Vec<&String> {
        self.0.keys().collect()
    }
}

/// Runs `promtool check metrics` on `body` and asserts it finds nothing at all (no error, no
/// lint warning). Returns false when promtool is missing and the check may be skipped.
pub fn promtool_clean(body: &str) -> bool {
    if !available("promtool (Debian package prometheus)", have_command("promtool")) {
        return false;
    }
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {}\n{said}\nbody:\n{body}",
        out.status
    );
    true
}

/// Sends `n` client requests from `bind`, one at a time, each waiting for its reply; returns
/// how many replies came.
pub fn exchange(server: SocketAddr, bind: &str, n: usize) -> usize {
    let sock = std::net::UdpSocket::bind(bind).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut got = 0;
    let mut buf = [0u8; 512];
    for _ in 0..n {
        sock.send_to(&client_request(0x23, 48), server).unwrap();
        if let Ok((len, _)) = sock.recv_from(&mut buf) {
            assert_eq!(len, 48);
            got += 1;
        }
    }
    got
}

/// Sends datagrams that get no answer (a malformed request), and waits a little for the
/// server to have counted them.
pub fn send_unanswered(server: SocketAddr, bind: &str, payload: &[u8]) {
    let sock = std::net::UdpSocket::bind(bind).unwrap();
    sock.send_to(payload, server).unwrap();
    std::thread::sleep(Duration::from_millis(200));
}

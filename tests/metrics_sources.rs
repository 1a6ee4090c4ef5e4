//! Per-upstream metrics: a strata server on loopback synchronized to another one (a local
//! reference) exports the source's offset, delay, jitter, stratum, reach, poll interval and
//! selection state, and `strata status --json` shows the same source; the scrape is clean under
//! `promtool check metrics` (that test needs promtool: ignored under a plain `cargo test`, run by
//! `make test`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use strata_test_support::*;

/// A local-stratum strata upstream and a server synchronized to it, its source selected.
struct Synced {
    _upstream: Server,
    server: Server,
    metrics: SocketAddr,
    control: PathBuf,
    _cleanup: RemoveOnDrop,
    /// The upstream's address, as the source is named.
    source: String,
    /// The first scrape that showed the source selected.
    selected: Metrics,
}

fn synced(tag: &str) -> Synced {
    let up: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let up_listen = up.to_string();
    let upstream_server = Server::start(
        None,
        &[
            "--listen",
            &up_listen,
            "--local-stratum",
            "1",
            "--cores",
            "0",
            "--metrics",
            "off",
            "--control",
            "off",
        ],
        Some(up),
    );

    let ntp: SocketAddr = format!("127.0.0.1:{}", free_udp_port()).parse().unwrap();
    let listen = ntp.to_string();
    let control = control_path(tag);
    let cleanup = RemoveOnDrop(control.clone());
    let upstream = format!("{up} iburst minpoll 0 maxpoll 2");
    let mut server = Server::start(
        None,
        &[
            "--listen",
            &listen,
            "--upstream",
            &upstream,
            "--minsources",
            "1",
            "--cores",
            "1",
            "--metrics",
            "127.0.0.1:0",
            "--control",
            control.to_str().unwrap(),
        ],
        Some(ntp),
    );
    server.wait_for_log("metrics on http://");
    let metrics = metrics_addr(&server.log());
    let source = up.to_string();
    let selected_state = [("source", source.as_str()), ("state", "selected")];

    let deadline = Instant::now() + Duration::from_secs(60);
    let selected = loop {
        let m = parse(&scrape(metrics));
        if m.sum("strata_source_state", &selected_state) == 1.0 {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "the source was never selected:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    Synced {
        _upstream: upstream_server,
        server,
        metrics,
        control,
        _cleanup: cleanup,
        source,
        selected,
    }
}

#[test]
fn an_upstream_source_is_exported() {
    let synced = synced("sources");
    let (control, source, m) = (&synced.control, &synced.source, &synced.selected);
    let this = [("source", source.as_str())];
    assert_eq!(m.get("strata_server_synchronized"), 1.0);
    assert_eq!(m.get("strata_server_stratum"), 2.0);
    assert_eq!(
        m.sum("strata_server_sync_state", &[("state", "synchronized")]),
        1.0
    );
    assert_eq!(m.sum("strata_source_stratum", &this), 1.0);
    assert!(m.sum("strata_source_reach", &this) > 0.0);
    // Both ends read the same kernel clock: the offset is tiny, the delay positive.
    assert!(m.sum("strata_source_offset_seconds", &this).abs() < 0.01);
    let delay = m.sum("strata_source_delay_seconds", &this);
    assert!(delay > 0.0 && delay < 0.01, "delay {delay}");
    assert!(m.has("strata_source_jitter_seconds"));
    let poll = m.sum("strata_source_poll_interval_seconds", &this);
    assert!((1.0..=4.0).contains(&poll), "poll {poll}");
    for state in ["candidate", "falseticker", "unused"] {
        assert_eq!(m.sum("strata_source_state", &[this[0], ("state", state)]), 0.0);
    }

    let out = Command::new(strata_bin())
        .args(["status", "--json", "--control"])
        .arg(control)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sources = json["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0]["name"], source.as_str());
    assert_eq!(sources[0]["state"], "selected");
    assert_eq!(sources[0]["stratum"], 1);
    assert_eq!(json["server"]["sync"], "synchronized");
    assert_eq!(json["server"]["refid"], "127.0.0.1");

    let out = Command::new(strata_bin())
        .args(["status", "--control"])
        .arg(control)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(&format!("^* {source}")), "{text}");
}

#[test]
#[ignore = "needs promtool, Debian package prometheus (make test runs it)"]
fn an_upstream_source_scrape_is_promtool_clean() {
    if !available("promtool (Debian package prometheus)", have_command("promtool")) {
        return;
    }
    let synced = synced("promtool");
    assert!(promtool_clean(&scrape(synced.metrics)), "promtool went missing");
    drop(synced.server);
}

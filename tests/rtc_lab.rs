//! `rtc_sync` and the PPS driver against the devices this machine has, in a network namespace
//! this test makes (removed on every exit path by strata-test-support's `Netns`):
//!
//! - strata starts with `--rtc-sync` whether or not /dev/rtc0 exists; without one (a VM like
//!   the one these tests were written on) it logs a warning and `strata status` (text and
//!   `--json`) says "no RTC (/dev/rtc0 missing)"; with one, the status names the device.
//! - a `pps:` refclock whose device is missing stops the start with an error naming it, as an
//!   SHM unit that cannot be attached does.
//!
//! `#[ignore]`d under a plain `cargo test` (root, namespaces); `make test` runs them.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use strata_test_support::*;

fn start(ns: &Netns, control: &Path, extra: &[&str]) -> Server {
    let mut args = vec![
        "--listen",
        "0.0.0.0:123",
        "--cores",
        "0",
        "--metrics",
        "off",
        "--control",
        control.to_str().unwrap(),
        "--log-level",
        "info",
        "--local-stratum",
        "10",
    ];
    args.extend_from_slice(extra);
    Server::start(Some(&ns.name), &args, None)
}

#[test]
#[ignore = "needs root and network namespaces (make test runs it)"]
fn strata_starts_with_rtc_sync_and_says_whether_there_is_an_rtc() {
    let ns = Netns::new("rtc");
    let control = control_path("rtc");
    let _remove = RemoveOnDrop(control.clone());
    let mut server = start(&ns, &control, &["--rtc-sync"]);
    let has_rtc = Path::new("/dev/rtc0").exists();
    if !has_rtc {
        server.wait_for_log("rtc_sync is on, but there is no RTC to keep (/dev/rtc0 missing)");
    }
    // The status board is refreshed once a second.
    let deadline = Instant::now() + Duration::from_secs(10);
    let rtc = loop {
        if !control.exists() {
            assert!(Instant::now() < deadline, "no control socket: {}", server.log());
            std::thread::sleep(Duration::from_millis(100));
            continue;
        }
        let status = status_json(&control);
        let rtc = status["server"]["rtc"].clone();
        if rtc["state"] != "off" {
            break rtc;
        }
        assert!(Instant::now() < deadline, "no RTC status: {status}");
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(rtc["device"], "/dev/rtc0", "{rtc}");
    let text = Command::new(strata_bin())
        .args(["status", "--control"])
        .arg(&control)
        .output()
        .expect("run strata status");
    let text = String::from_utf8_lossy(&text.stdout).to_string();
    if has_rtc {
        // Served from its local clock only: never synchronized, so never compared.
        assert_eq!(rtc["state"], "waiting", "{rtc}");
        assert!(text.contains("RTC             : /dev/rtc0: waiting"), "{text}");
    } else {
        assert_eq!(rtc["state"], "missing", "{rtc}");
        assert!(
            text.contains("RTC             : no RTC (/dev/rtc0 missing); rtc_sync does nothing"),
            "{text}"
        );
    }
    println!("rtc_sync on this machine: {rtc}");
    let (exit, log) = server.stop();
    assert!(exit.success(), "{log}");
}

#[test]
#[ignore = "needs root and network namespaces (make test runs it)"]
fn a_missing_pps_device_stops_the_start_and_names_it() {
    let ns = Netns::new("pps");
    let control = control_path("pps");
    let _remove = RemoveOnDrop(control.clone());
    let server = start(
        &ns,
        &control,
        &[
            "--refclock",
            "pps:/dev/pps-strata-missing lock GPS",
            "--refclock",
            "sock:/run/strata-test-gps.sock refid GPS",
        ],
    );
    let log = wait_log(&server, "refclock pps:/dev/pps-strata-missing", 20);
    let (exit, log2) = server.stop();
    assert!(
        !exit.success(),
        "strata must not run without its PPS device: {log2}"
    );
    assert!(log.contains("No such file or directory"), "{log}");
    let _ = std::fs::remove_file("/run/strata-test-gps.sock");
}

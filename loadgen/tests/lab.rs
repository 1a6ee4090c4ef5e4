//! `bench/lab` as the generator and real clients use it (a lab under a prefix of this test's
//! own, torn down on every exit path): srv0's NAPI threads exist and are pinned to the server's
//! CPU; a reply sent with XDP_TX from srv0 (strata-loadgen-sink --echo) reaches ntpdig's socket
//! in cli (which needs the lab's XDP_PASS program on cli0); the live mode runs there, taking that
//! program off cli0 for the run and putting it back.
//!
//! Needs root, `ip`, `ethtool`, `clang` and ntpdig; `#[ignore]`d under a plain `cargo test`,
//! run by `make test` (SKIPPED without them unless STRATA_REQUIRE_INTEROP=1).

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{only_step, u, LOADGEN};
use strata_test_support::{available, have_command, Lab};

const SINK: &str = env!("CARGO_BIN_EXE_strata-loadgen-sink");

fn xdp_prog(lab: &Lab) -> Option<String> {
    let links = lab.ip("cli", &["link", "show", "dev", "cli0"]);
    links
        .split_whitespace()
        .skip_while(|w| *w != "prog/xdp")
        .nth(2)
        .map(str::to_string)
}

#[test]
#[ignore = "needs root, network namespaces, XDP, ethtool, clang and ntpdig (make test runs it)"]
fn the_lab_pins_the_server_napi_and_delivers_xdp_tx_replies_to_sockets() {
    if !Lab::available()
        || !available("ethtool", have_command("ethtool"))
        || !available("clang", have_command("clang"))
        || !available("ntpdig (Debian package ntpsec-ntpdig)", have_command("ntpdig"))
    {
        return;
    }
    let lab = Lab::up();

    // napi/srv0-N threads, on CPU 1 (the default server CPU), as `status` reports them.
    let status = Command::new(strata_test_support::workspace_root().join("bench/lab"))
        .arg("status")
        .env("STRATA_LAB_PREFIX", &lab.prefix)
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&status.stdout).into_owned();
    let napi: Vec<&str> = status.lines().filter(|l| l.contains("napi/srv0-")).collect();
    assert!(!napi.is_empty(), "{status}");
    assert!(napi.iter().all(|l| l.ends_with("on CPU 1")), "{status}");
    let pass = xdp_prog(&lab).expect("an XDP program on cli0");

    // The XDP_TX echo on srv0, and a real client's request from cli.
    let mut sink = Command::new("ip")
        .args(["netns", "exec", &lab.ns("srv"), SINK, "srv0", "30", "--echo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let ntpdig = lab.exec("cli", "timeout", &["10", "ntpdig", "-j", "198.18.0.2"]);
    let answer = String::from_utf8_lossy(&ntpdig.stdout).into_owned();
    assert!(
        ntpdig.status.success(),
        "ntpdig: {answer} {}",
        String::from_utf8_lossy(&ntpdig.stderr)
    );
    assert!(answer.contains("\"stratum\":1"), "{answer}");

    // The live mode in the lab: every request answered, the lab's program back on cli0 after.
    let mac = lab.exec("srv", "cat", &["/sys/class/net/srv0/address"]);
    let mac = String::from_utf8_lossy(&mac.stdout).trim().to_string();
    let run = lab.exec(
        "cli",
        "timeout",
        &[
            "30",
            LOADGEN,
            "--transport",
            "live",
            "--iface",
            "cli0",
            "--dst-mac",
            &mac,
            "--target",
            "198.18.0.2",
            "--rate",
            "100k",
            "--step-seconds",
            "0.2",
            "--timeout",
            "0.2",
            "--json",
            "--quiet",
        ],
    );
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let report: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    let step = only_step(&report);
    assert!(u(step, "sent") > 0 && u(step, "invalid") == 0, "{step}");
    // Most, not all: this lab's NAPI thread is not at real-time priority, and a build on the
    // server's CPU can hold it up long enough for veth's ring to overflow.
    assert!(u(step, "valid") * 2 >= u(step, "sent"), "{step}");
    assert_eq!(
        xdp_prog(&lab).as_deref(),
        Some(pass.as_str()),
        "the lab's program is back"
    );

    // SAFETY: kill with our own child's pid, not yet waited for.
    unsafe { libc::kill(sink.id() as i32, libc::SIGTERM) };
    let mut out = String::new();
    sink.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let _ = sink.wait();
    assert!(out.starts_with("echoed "), "{out}");
}

//! The smoke run of bench/nts-compare: one short NTS step, one CPU step and one short NTS-KE run
//! per server (strata on the XDP path, on the socket path, chronyd's NTS server), in a lab of its
//! own (strata-ntsPID-*, removed by the script on every exit path). It checks that every server
//! answered NTS-protected requests that verified, completed NTS-KE sessions, and that the JSON
//! has every field; not the figures: those are for a full run on a quiet machine.
//!
//! Needs root, python3, openssl, `ip` and chronyd, so it is `#[ignore]`d under a plain
//! `cargo test`; `make test` runs it (`-- --include-ignored`). Run so without them, it says
//! SKIPPED and passes, unless STRATA_REQUIRE_INTEROP=1 (as `make test` sets), which fails it.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use strata_test_support::*;

fn field<'a>(v: &'a Value, path: &str) -> &'a Value {
    let mut cur = v;
    for key in path.split('.') {
        cur = cur
            .get(key)
            .unwrap_or_else(|| panic!("`{path}` is missing (at `{key}`) in {v}"));
    }
    cur
}

fn number(v: &Value, path: &str) -> f64 {
    field(v, path)
        .as_f64()
        .unwrap_or_else(|| panic!("`{path}` is not a number: {v}"))
}

#[test]
#[ignore = "needs root, network namespaces, XDP, python3, openssl and chronyd (make test runs it)"]
fn smoke_run_answers_nts_and_nts_ke_on_every_server_and_writes_every_field() {
    if !Lab::available()
        || !available("chronyd", Path::new(CHRONYD).exists())
        || !available("openssl (Debian package openssl)", have_command("openssl"))
    {
        return;
    }
    // The load generators' binaries, beside strata's (built for this test's profile).
    let bins = workspace_bins("strata-loadgen", &["strata-loadgen", "strata-loadgen-ke"]);
    let out_dir = std::env::temp_dir().join(format!("strata-nts-compare-test-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("smoke.json");
    let run = Command::new("timeout")
        .arg("150")
        .arg(workspace_root().join("bench/nts-compare"))
        // A low rate: this may be a debug build, beside other tests.
        .args(["--smoke", "--smoke-rate", "300", "--out"])
        .arg(&out)
        .env("STRATA_BIN", strata_bin())
        .env("STRATA_LOADGEN_BIN", &bins[0])
        .env("STRATA_LOADGEN_KE_BIN", &bins[1])
        .output()
        .expect("run bench/nts-compare");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert!(run.status.success(), "bench/nts-compare --smoke failed");

    let report: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&out_dir);
    assert_eq!(field(&report, "kind"), "smoke");
    assert_eq!(number(&report, "schema"), 1.0);
    for f in [
        "date",
        "finished",
        "machine.kernel",
        "versions.strata",
        "versions.chronyd",
    ] {
        assert!(field(&report, f).is_string(), "{f}");
    }
    for f in [
        "settings.cpu_rate",
        "settings.ke_concurrency",
        "settings.ke_sources",
        "settings.loss_threshold",
    ] {
        number(&report, f);
    }
    let servers = field(&report, "servers").as_array().unwrap();
    for name in ["strata-af-xdp", "strata-socket", "chronyd"] {
        let s = servers
            .iter()
            .find(|s| s["name"] == name)
            .unwrap_or_else(|| panic!("{name} is missing"));
        assert!(s["skipped"].is_null(), "{name} skipped: {s}");
        assert!(s["error"].is_null(), "{name} failed: {s}");
        let steps = field(s, "rate.steps").as_array().unwrap();
        assert!(!steps.is_empty(), "{name}");
        for step in steps.iter().chain([field(s, "cpu")]) {
            let answered = number(step, "answered");
            assert!(answered > 0.0, "{name}: no NTS answer: {step}");
            // Every answer was an authenticated reply the generator verified.
            assert_eq!(number(step, "valid"), answered, "{name}: {step}");
            assert_eq!(number(step, "kod"), 0.0, "{name}: NAKs: {step}");
            for k in [
                "offered_rate",
                "achieved_rate",
                "sent",
                "lost_fraction",
                "server_cpu_ns_per_answer",
            ] {
                number(step, k);
            }
            assert!(number(step, "server_tasks_ns_per_answer") > 0.0, "{name}: {step}");
            assert!(number(step, "response_time_ns.p99") >= number(step, "response_time_ns.p50"));
        }
        assert!(number(s, "rate.highest_rate_below_loss") > 0.0, "{name}: {s}");
        assert!(field(s, "rate.limited_by").is_string());
        // strata's NTS-KE server is the same on both paths: measured on the socket path.
        if name != "strata-af-xdp" {
            let ke = field(s, "ke");
            assert!(number(ke, "sessions_ok") > 0.0, "{name}: no NTS-KE session: {ke}");
            assert_eq!(number(ke, "sessions_failed"), 0.0, "{name}: {ke}");
            assert_eq!(
                number(ke, "cookies"),
                8.0 * number(ke, "sessions_ok"),
                "{name}: {ke}"
            );
            for k in [
                "rate",
                "server_tasks_ns_per_session",
                "one_core_rate_at_that_cost",
                "session_us.p99",
            ] {
                assert!(number(ke, k) > 0.0, "{name}: {k}: {ke}");
            }
        }
    }
    let summary = field(&report, "summary");
    let target = field(summary, "nts_rate_vs_chronyd");
    assert!(number(target, "value") > 0.0, "{target}");
    assert!(
        target["met"].is_boolean() && target["target"].is_string(),
        "{target}"
    );
    for k in [
        "ke_rate_vs_chronyd",
        "af_xdp_nts_cpu_per_answer_vs_chronyd",
        "socket_nts_rate_vs_chronyd",
    ] {
        assert!(number(summary, &format!("{k}.value")) > 0.0, "{k}");
    }
    assert!(!field(&report, "table").as_array().unwrap().is_empty());
    assert!(
        stdout.contains("strata-af-xdp") && stdout.contains("chronyd") && stdout.contains("KE/s"),
        "{stdout}"
    );
}

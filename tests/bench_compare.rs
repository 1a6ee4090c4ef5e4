//! The smoke run of bench/compare: one short step per server (live generator, then each latency
//! generator), in a lab of its own (strata-cmpPID-*, removed by the script on every exit path).
//! It checks that every server answered and that the JSON has every field, not the figures:
//! those are for a full run on a quiet machine.
//!
//! Needs root, python3, `ip` and chronyd, so it is `#[ignore]`d under a plain `cargo test`;
//! `make test` runs it (`-- --include-ignored`). Run so without them, it says SKIPPED and passes,
//! unless STRATA_REQUIRE_INTEROP=1 (as `make test` sets), which fails it. ntpd-rs joins when
//! `make bench` has installed it.

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

fn check_percentiles(v: &Value, what: &str) {
    for k in ["min", "p50", "p99", "p999", "max", "mean"] {
        let x = number(v, k);
        assert!(x >= 0.0, "{what}.{k} = {x}");
    }
    assert!(number(v, "p50") <= number(v, "p99"), "{what}: {v}");
}

#[test]
#[ignore = "needs root, network namespaces, XDP, python3 and chronyd (make test runs it)"]
fn smoke_run_answers_on_every_server_and_writes_every_field() {
    if !Lab::available() || !available("chronyd", Path::new(CHRONYD).exists()) {
        return;
    }
    // The load generator's binaries, beside strata's: cargo builds another package's binaries
    // for that package's tests only, so they may be missing or older than the source.
    let bins = workspace_bins("strata-loadgen", &["strata-loadgen", "strata-loadgen-sink"]);
    let (loadgen, sink) = (&bins[0], &bins[1]);
    let out_dir = std::env::temp_dir().join(format!("strata-compare-test-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let out = out_dir.join("smoke.json");
    let script = workspace_root().join("bench/compare");
    let run = Command::new("timeout")
        .arg("150")
        .arg(&script)
        .args(["--smoke", "--out"])
        .arg(&out)
        .env("STRATA_BIN", strata_bin())
        .env("STRATA_LOADGEN_BIN", loadgen)
        .env("STRATA_SINK_BIN", sink)
        .output()
        .expect("run bench/compare");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    eprintln!("{stdout}\n{stderr}");
    assert!(run.status.success(), "bench/compare --smoke failed");

    let report: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&out_dir);
    assert_eq!(field(&report, "kind"), "smoke");
    assert_eq!(number(&report, "schema"), 2.0);
    for f in [
        "date",
        "finished",
        "machine.kernel",
        "machine.cpu_model",
        "machine.os",
        "versions.strata",
    ] {
        assert!(field(&report, f).is_string(), "{f}");
    }
    for f in [
        "machine.cpus",
        "settings.fixed_rate",
        "settings.loss_threshold",
        "generator.cpu.busy_ns",
        "generator.cpu.foreign_ns",
        "generator.cpu.ns_per_request",
        "generator.cpu.server_cpu_ns_per_request",
        "generator.max_send.achieved_rate",
    ] {
        number(&report, f);
    }
    assert!(number(&report, "generator.max_send.sent") > 0.0);
    assert_eq!(field(&report, "settings.rate_generator"), "live");

    let servers = field(&report, "servers").as_array().unwrap();
    let by_name = |name: &str| servers.iter().find(|s| s["name"] == name);
    let ntpd_rs_installed = by_name("ntpd-rs").is_some_and(|s| s["skipped"].is_null());
    let mut expected = vec![
        "strata-xdp-answer",
        "strata-af-xdp",
        "strata-socket",
        "chronyd",
        "echo",
    ];
    if ntpd_rs_installed {
        expected.push("ntpd-rs");
    } else {
        let s = by_name("ntpd-rs").expect("ntpd-rs is listed, as skipped");
        assert!(s["skipped"].as_str().unwrap().contains("make bench"), "{s}");
    }
    for name in expected {
        let s = by_name(name).unwrap_or_else(|| panic!("{name} is missing"));
        assert!(s["skipped"].is_null(), "{name} skipped: {s}");
        assert!(s["error"].is_null(), "{name} failed: {s}");
        assert!(field(s, "version").is_string(), "{name}");
        let r = field(s, "rate");
        assert_eq!(field(r, "generator"), "live", "{name}");
        let steps = field(r, "steps").as_array().unwrap();
        assert!(!steps.is_empty(), "{name}");
        for step in steps {
            for k in [
                "offered_rate",
                "achieved_rate",
                "sent",
                "answered",
                "valid",
                "lost_fraction",
            ] {
                number(step, k);
            }
            assert!(number(step, "answered") > 0.0, "{name}: no answer: {step}");
            field(step, "cpu_busy_share");
        }
        assert!(number(r, "highest_rate_below_loss") > 0.0, "{name}: {r}");
        assert!(field(r, "limited_by").is_string(), "{name}");
        for generator in ["live", "af_xdp"] {
            let what = format!("{name} at 80% ({generator})");
            let at = field(s, &format!("at_80.{generator}"));
            assert!(number(at, "answered") > 0.0, "{what}: {at}");
            number(at, "rate");
            number(at, "lost_fraction");
            check_percentiles(field(at, "round_trip_ns"), &format!("{what} round trip"));
        }
        // The live generator measures no response time; the AF_XDP one does.
        check_percentiles(
            field(s, "at_80.af_xdp.response_time_ns"),
            &format!("{name} response time"),
        );
        let cpu = field(s, "cpu");
        assert!(number(cpu, "answered") > 0.0, "{name}: {cpu}");
        for k in [
            "busy_ns",
            "foreign_ns",
            "server_cpu_busy_ns",
            "server_cpu_ns_per_answer",
            "server_cpu_split_ns_per_answer.softirq",
            "generator_ns",
            "machine_ns_per_answer",
            "rate",
            "sent",
        ] {
            number(cpu, k);
        }
        assert!(field(cpu, "sustained").is_boolean());
    }
    let summary = field(&report, "summary");
    for name in [
        "xdp_answer_rate_vs_echo",
        "xdp_answer_rate_vs_chronyd",
        "af_xdp_rate_mpps",
        "xdp_answer_cpu_per_answer_vs_chronyd",
    ] {
        let t = field(summary, name);
        assert!(t["target"].is_string(), "{name}: {t}");
        assert!(t.get("value").is_some() && t.get("met").is_some(), "{name}: {t}");
    }
    assert!(number(summary, "xdp_answer_rate_vs_chronyd.value") > 0.0);
    assert!(field(summary, "missed").is_object());
    assert!(!field(&report, "table").as_array().unwrap().is_empty());
    // What the table shows is printed too.
    assert!(
        stdout.contains("strata-xdp-answer") && stdout.contains("chronyd") && stdout.contains("echo"),
        "{stdout}"
    );
}

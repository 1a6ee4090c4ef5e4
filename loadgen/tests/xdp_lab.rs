//! AF_XDP mode in a pair of namespaces made by this test (strata-t<pid>-lgx-*, removed on every
//! exit path): the generator on one end of a veth pair, chronyd (a server no one here wrote) on the
//! other, serving 198.18.0.2 and routing the simulated clients (198.19.0.0/16) back over the
//! veth. Every request at a low rate must be answered, validly.
//!
//! Needs root, `ip` and chronyd, so it is `#[ignore]`d under a plain `cargo test`; `make test`
//! runs it (`-- --include-ignored`). Run so without them, it says SKIPPED and passes, unless
//! STRATA_REQUIRE_INTEROP=1 (as `make test` sets), which fails it.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{u, LOADGEN};
use strata_test_support::{available, run_ok, Chronyd, Netns, CHRONYD};

/// Two namespaces joined by a veth pair, deleted (with their processes) when dropped.
struct Lab {
    cli: Netns,
    srv: Netns,
}

impl Lab {
    fn new() -> Lab {
        let lab = Lab {
            cli: Netns::new("lgx-cli"),
            srv: Netns::new("lgx-srv"),
        };
        lab.cli
            .veth("lgx-c", "198.18.0.1/24", &lab.srv, "lgx-s", "198.18.0.2/24");
        run_ok(
            "ip",
            &[
                "-n",
                &lab.srv.name,
                "route",
                "add",
                "198.19.0.0/16",
                "via",
                "198.18.0.1",
            ],
        );
        lab
    }

    fn srv_mac(&self) -> String {
        let out = self.srv.exec("cat", &["/sys/class/net/lgx-s/address"]);
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

#[test]
#[ignore = "needs root, network namespaces, AF_XDP and chronyd (make test runs it)"]
fn af_xdp_mode_against_chronyd_in_a_namespace_answers_everything() {
    if !Netns::available() || !available("chronyd", Path::new(CHRONYD).exists()) {
        return;
    }
    let lab = Lab::new();
    let chronyd = Chronyd::start(Some(&lab.srv.name), "198.18.0.2", 123, None);
    // chronyd is up once it has bound its port (its log says so before it serves).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = lab.srv.exec("ss", &["-uln"]);
        if String::from_utf8_lossy(&out.stdout).contains("198.18.0.2:123") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "chronyd did not bind: {}",
            chronyd.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let mac = lab.srv_mac();
    let args = [
        "netns",
        "exec",
        &lab.cli.name,
        "timeout",
        "60",
        LOADGEN,
        "--iface",
        "lgx-c",
        "--dst-mac",
        &mac,
        "--target",
        "198.18.0.2",
        "--rate",
        "200",
        "--step-seconds",
        "2",
        "--flows",
        "64",
        "--json",
        "--quiet",
    ];
    let out = Command::new("ip").args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "loadgen failed: {stderr}\nchronyd: {}",
        chronyd.log()
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("{report}");
    assert_eq!(report["transport"], "af_xdp");
    let step = &report["steps"][0];
    assert_eq!(u(step, "sent"), 400, "{step}");
    assert_eq!(u(step, "valid"), 400, "{step}");
    assert_eq!(
        (u(step, "lost"), u(step, "invalid"), u(step, "duplicate")),
        (0, 0, 0),
        "{step}"
    );
    assert!(u(&step["response_time_ns"], "p50") < 10_000_000, "{step}");
    drop(chronyd);
    drop(lab);
}

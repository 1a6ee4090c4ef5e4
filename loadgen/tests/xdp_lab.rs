//! AF_XDP mode in a pair of namespaces made by this test (strata-lgx-*, removed on every exit
//! path): the generator on one end of a veth pair, chronyd (a server no one here wrote) on the
//! other, serving 198.18.0.2 and routing the simulated clients (198.19.0.0/16) back over the
//! veth. Every request at a low rate must be answered, validly.
//!
//! Needs root, `ip` and chronyd, so it is `#[ignore]`d under a plain `cargo test`; `make test`
//! runs it (`-- --include-ignored`). Run so without them, it says SKIPPED and passes, unless
//! STRATA_REQUIRE_INTEROP=1 (as `make test` sets), which fails it.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{available, is_root, u, ChildGuard, TempDir, LOADGEN};

/// Two namespaces joined by a veth pair, deleted (with their processes) when dropped.
struct Lab {
    cli: String,
    srv: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Lab {
    fn new() -> Lab {
        let tag = std::process::id();
        let lab = Lab {
            cli: format!("strata-lgx{tag}-cli"),
            srv: format!("strata-lgx{tag}-srv"),
        };
        ip(&["netns", "add", &lab.cli]);
        // From here on, Drop cleans up whatever was made.
        ip(&["netns", "add", &lab.srv]);
        ip(&[
            "link", "add", "lgx-c", "netns", &lab.cli, "type", "veth", "peer", "name", "lgx-s", "netns",
            &lab.srv,
        ]);
        for (ns, dev, addr) in [
            (&lab.cli, "lgx-c", "198.18.0.1/24"),
            (&lab.srv, "lgx-s", "198.18.0.2/24"),
        ] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
        ip(&[
            "-n",
            &lab.srv,
            "route",
            "add",
            "198.19.0.0/16",
            "via",
            "198.18.0.1",
        ]);
        lab
    }

    fn srv_mac(&self) -> String {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.srv, "cat", "/sys/class/net/lgx-s/address"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in [&self.cli, &self.srv] {
            if let Ok(o) = Command::new("ip").args(["netns", "pids", ns]).output() {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            }
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

#[test]
#[ignore = "needs root, network namespaces, AF_XDP and chronyd (make test runs it)"]
fn af_xdp_mode_against_chronyd_in_a_namespace_answers_everything() {
    if !available("root (for namespaces and AF_XDP)", is_root())
        || !available("chronyd", Path::new(common::CHRONYD).exists())
    {
        return;
    }
    let lab = Lab::new();
    let dir = TempDir::new("xdp");
    let conf = dir.0.join("chrony.conf");
    std::fs::write(
        &conf,
        format!(
            "local stratum 1\nallow all\nbindaddress 198.18.0.2\nport 123\ncmdport 0\npidfile {}\n",
            dir.0.join("chronyd.pid").display()
        ),
    )
    .unwrap();
    let log = dir.0.join("chronyd.log");
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.srv,
            common::CHRONYD,
            "-d",
            "-x",
            "-u",
            "root",
            "-f",
        ])
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let chronyd = ChildGuard { child, log };
    // chronyd is up once it has bound its port (its log says so before it serves).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("ip")
            .args(["netns", "exec", &lab.srv, "ss", "-uln"])
            .output()
            .unwrap();
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
        &lab.cli,
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

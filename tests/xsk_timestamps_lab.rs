//! The AF_XDP tier's transmit timestamps against the real kernel, in labs made by `bench/lab`
//! (namespaces `strata-t<pid>-lab-<n>-cli|srv|up`, removed on every exit path by [`Lab`]'s Drop):
//! what the kernel's netdev netlink family says the veth driver can do (`xsk-features`), and
//! what strata makes of it in its log, `strata status` and /metrics.

use std::process::Command;

use strata::sys::fastpath::xsk_features;
use strata_test_support::*;

const READY: &str = "through XDP";

/// The kernel release as (major, minor).
fn kernel_version() -> (u32, u32) {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let mut next = || parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (next(), next())
}

fn serve(lab: &Lab, args: &[&str]) -> Server {
    let all = [
        &[
            "--iface",
            "srv0",
            "--mode",
            "xdp",
            "--local-stratum",
            "1",
            "--rate-limit",
            "off",
        ][..],
        args,
    ]
    .concat();
    let mut server = Server::start(Some(&lab.ns("srv")), &all, None);
    server.wait_for_log(READY);
    server
}

/// The netlink query itself, inside the server namespace: the kernel answers for srv0 with its
/// own index; the driver is the one `ethtool -i` names; a kernel with xsk-features (6.8+)
/// reports them; and the flag strata reads is what the raw value says. strata then says the
/// same in its log, `strata status` (text and JSON) and /metrics.
#[test]
#[ignore = "needs root and network namespaces (make test runs it)"]
fn the_kernel_says_whether_veth_stamps_af_xdp_transmissions_and_strata_reports_it() {
    if !Lab::available() {
        return;
    }
    let lab = Lab::up();
    let ifindex: u32 = lab
        .exec("srv", "cat", &["/sys/class/net/srv0/ifindex"])
        .stdout
        .iter()
        .map(|&b| b as char)
        .collect::<String>()
        .trim()
        .parse()
        .unwrap();
    let (features, driver) = lab.run_in("srv", move || {
        (
            xsk_features::dev_features(ifindex),
            xsk_features::driver_name("srv0"),
        )
    });
    let features = features.expect("the kernel answers the netdev family for srv0");
    assert_eq!(features.ifindex, ifindex);
    let driver = driver.expect("the driver's name");
    if have_command("ethtool") {
        let out = lab.exec("srv", "ethtool", &["-i", "srv0"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("driver: {driver}\n")), "{text}");
    }
    assert!(
        features.xdp_features.is_some(),
        "every kernel with the family reports xdp-features"
    );
    if kernel_version() >= (6, 8) {
        let raw = features.xsk_features.expect("Linux 6.8+ reports xsk-features");
        assert_eq!(features.tx_timestamp(), Some(raw & 1 == 1));
    }
    eprintln!("srv0 ({driver}): {features:?}");
    let supported = features.tx_timestamp() == Some(true);

    let control = RemoveOnDrop(control_path("xsk-tx"));
    let server = serve(&lab, &["--control", control.arg()]);
    let log = server.log();
    let line = log_line(&log, "srv0: AF_XDP transmit timestamps");
    if supported {
        assert!(line.contains("supported by the driver"), "{line}");
    } else {
        assert!(
            line.contains(&format!(
                "not supported by the driver ({driver}): AF_XDP replies carry software transmit stamps"
            )) || line.contains("unknown"),
            "{line}"
        );
    }
    let json = status_json(&control.0);
    let x = &json["xsk_tx"][0];
    assert_eq!(x["interface"], "srv0");
    assert_eq!(x["driver"], driver.as_str());
    assert_eq!(x["supported"], supported);
    let text = Command::new(strata_bin())
        .args(["status", "--control"])
        .arg(&control.0)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("AF_XDP Tx stamps: srv0: AF_XDP transmit timestamps"),
        "{text}"
    );
    let metrics = lab.run_in("srv", || {
        metrics::parse(&scrape("127.0.0.1:9123".parse().unwrap()))
    });
    assert_eq!(
        metrics.sum(
            "strata_xsk_tx_timestamps_supported",
            &[("interface", "srv0"), ("driver", driver.as_str())]
        ),
        f64::from(u8::from(supported))
    );
    let (status, log) = server.stop();
    assert!(status.success(), "strata exited with {status}: {log}");
}

//! The AF_XDP tier's transmit timestamps against the real kernel, in labs made by `bench/lab`
//! (namespaces `strata-t<pid>-lab-<n>-cli|srv|up`, removed on every exit path by [`Lab`]'s Drop):
//! what the kernel's netdev netlink family says the veth driver can do (`xsk-features`), and
//! what strata makes of it in its log, `strata status` and /metrics.

use std::process::Command;

use strata::sys::fastpath::xsk_features;
use strata_test_support::metrics::Metrics;
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

/// chronyd's samples, one client per entry of `options` (its server line's options), all at
/// once, against strata serving srv0 with `args`, and strata's /metrics at the end; strata is
/// stopped and must exit cleanly.
fn samples_from(lab: &Lab, args: &[&str], options: &[&str]) -> (Vec<Vec<ChronySample>>, Metrics) {
    const RUN_SECONDS: &str = "10";
    let server = serve(lab, args);
    let exec = |cmd: &str, args: &[&str]| lab.exec("cli", cmd, args);
    // The clients run side by side, so that they see the same load on a shared machine.
    let samples = std::thread::scope(|scope| {
        let runs: Vec<_> = options
            .iter()
            .map(|o| scope.spawn(move || chronyd_client_samples(exec, SERVER, o, RUN_SECONDS)))
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("a chronyd run"))
            .collect()
    });
    let metrics = lab.run_in("srv", || {
        metrics::parse(&scrape("127.0.0.1:9123".parse().unwrap()))
    });
    let (status, log) = server.stop();
    assert!(status.success(), "strata exited with {status}: {log}");
    (samples, metrics)
}

const SERVER: &str = "198.18.0.2";

/// How many of the samples after a new client's first two (always basic) are interleaved, and
/// those samples; at least 90 % must be (a few basic ones allowed: a lost exchange).
fn interleaved_after_start(samples: &[ChronySample]) -> Vec<&ChronySample> {
    let later: Vec<&ChronySample> = samples.iter().skip(2).collect();
    let modes: Vec<&str> = later.iter().map(|s| s.mode.as_str()).collect();
    let interleaved: Vec<&ChronySample> = later.iter().copied().filter(|s| s.mode == "4I").collect();
    assert!(
        interleaved.len() * 10 >= later.len() * 9,
        "only {} of {} samples interleaved: {modes:?}",
        interleaved.len(),
        later.len()
    );
    interleaved
}

/// Interleaved mode on the AF_XDP tier, against chronyd with `xleave` in the client namespace.
/// First with every request going to the AF_XDP responders (`--xdp-answer off`): chronyd's own
/// measurements log says the samples are interleaved (`4I`), and their offsets are compared with
/// basic mode's (`4B`) on the same tier; both clocks are this host's, the true offset is zero.
/// Then as by default, the XDP program answering plain requests itself: it passes the
/// interleaved ones up, and chronyd still gets interleaved replies.
#[test]
#[ignore = "needs root, network namespaces, XDP and chronyd (make test runs it)"]
fn chronyd_with_xleave_gets_interleaved_replies_from_the_af_xdp_tier() {
    if !Lab::available() || !available("chronyd (Debian package chrony)", have_command(CHRONYD)) {
        return;
    }
    let lab = Lab::up();
    let (runs, metrics) = samples_from(&lab, &["--xdp-answer", "off"], &["", "xleave"]);
    let (basic, interleaved) = (&runs[0], &runs[1]);
    assert!(basic.iter().all(|s| s.mode == "4B"), "{basic:?}");
    let interleaved_only = interleaved_after_start(interleaved);
    let basic_all: Vec<&ChronySample> = basic.iter().skip(2).collect();
    let (m_i, m_b) = (
        median_abs_offset(&interleaved_only),
        median_abs_offset(&basic_all),
    );
    eprintln!(
        "AF_XDP tier (--xdp-answer off), median |offset|: interleaved {:.3} µs ({} samples), basic {:.3} µs \
         ({} samples)",
        m_i * 1e6,
        interleaved_only.len(),
        m_b * 1e6,
        basic_all.len()
    );
    // Over veth on a shared machine both modes' offsets spread over several µs around zero, and
    // their medians differ from run to run by more than between the modes: the kick time is
    // later than basic mode's T3 only by the batch's stamping. In ten runs the interleaved
    // median was 1.2-11.7 µs against basic's 1.8-11.9 µs, lower in seven; in CI (loaded) once
    // 12.7 against 5.7. A comparison of the two is noise here, so the figures are printed, not
    // compared. What is checked is what a wrong transmit stamp would break: a stamp from another
    // exchange (a reply of the previous poll, a wrong slot) is off by about the poll interval
    // (62.5 ms here: chronyd polls 16 times a second); one taken after the client's next
    // request by milliseconds. 100 µs is far above the noise and far below either.
    for (mode, m) in [("interleaved", m_i), ("basic", m_b)] {
        assert!(
            m < 100e-6,
            "{mode} median |offset| {m} s: a transmit stamp of another exchange?"
        );
    }
    // The responders' counters say so; only replies to the interleaving client took a stamp,
    // each right before its kick; no reply was longer than its request.
    assert!(metrics.sum("strata_interleaved_replies_total", &[]) >= interleaved_only.len() as f64);
    let kick = metrics.sum("strata_transmit_timestamps_total", &[("source", "af_xdp_kick")]);
    assert!(kick >= interleaved_only.len() as f64, "{kick} af_xdp_kick stamps");
    assert_eq!(
        metrics.sum("strata_transmit_timestamps_total", &[]),
        kick,
        "no other source here"
    );
    let replies = metrics.sum("strata_replies_total", &[]);
    assert!(
        kick <= replies - basic.len() as f64,
        "{kick} stamps for {replies} replies"
    );
    assert!(metrics.sum("strata_sent_bytes_total", &[]) <= metrics.sum("strata_received_bytes_total", &[]));

    // As by default: the program answers basic requests and passes interleaved ones up.
    let (runs, metrics) = samples_from(&lab, &[], &["xleave"]);
    let interleaved_only = interleaved_after_start(&runs[0]);
    eprintln!(
        "default (XDP program answering basic requests), median |offset| interleaved: {:.3} µs ({} samples)",
        median_abs_offset(&interleaved_only) * 1e6,
        interleaved_only.len()
    );
    assert!(metrics.sum("strata_interleaved_replies_total", &[]) >= interleaved_only.len() as f64);
}

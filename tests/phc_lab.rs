//! The PHC side of hardware timestamps where no PHC exists (this is what a veth or a machine
//! without a PTP-capable NIC gives): `strata phc` fails clearly, naming the device or interface,
//! and never panics; a veth's ETHTOOL_GET_TS_INFO reports no PHC; a server on a veth says so per
//! interface in `strata status` (text and JSON) and /metrics, and serves the XDP-time stamp; the
//! socket path asks each veth it serves for hardware stamping, says once that it has none, lists
//! the veths in `strata status`, and serves the kernel's software stamps.
//! Everything above the ioctls is tested against the simulated PHC in the unit tests
//! (`sys::ptp::tracker`, `sys::pipeline`); the ioctls themselves need a NIC with a PHC.

use std::process::Command;

use strata_test_support::*;

fn strata(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(strata_bin())
        .args(args)
        .output()
        .expect("run strata");
    (
        out.status.code().expect("exited, not killed"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn strata_phc_without_a_device_is_a_clear_error() {
    let (code, out, err) = strata(&["phc", "/dev/ptp-strata-test-none", "-n", "1"]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(
        err,
        "strata phc: cannot open /dev/ptp-strata-test-none: No such file or directory (os error 2)\n"
    );
    // A file that is no PTP clock.
    let (code, _, err) = strata(&["phc", "/dev/null"]);
    assert_eq!(code, 1);
    assert!(err.contains("PTP_CLOCK_GETCAPS on /dev/null"), "{err}");
    // Loopback has no PHC; an interface that does not exist is named too.
    let (code, _, err) = strata(&["phc", "--iface", "lo"]);
    assert_eq!(
        (code, err.as_str()),
        (1, "strata phc: lo has no PHC (its driver reports none)\n")
    );
    let (code, _, err) = strata(&["phc", "--iface", "strata-none0"]);
    assert_eq!(code, 1);
    assert!(
        err.starts_with("strata phc: strata-none0: ETHTOOL_GET_TS_INFO"),
        "{err}"
    );
    // Bad counts are flag errors.
    let (code, _, err) = strata(&["phc", "-n", "0"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
#[ignore = "needs root, network namespaces and XDP (make test runs it)"]
fn a_veth_has_no_phc_and_the_server_says_so() {
    if !Lab::available() {
        return;
    }
    let lab = Lab::up();
    let srv = lab.ns("srv");
    // The ioctl itself, inside the namespace.
    let index = run_in(&srv, || {
        strata::sys::fastpath::hwstamp::phc_index("srv0").map_err(|e| e.to_string())
    });
    assert_eq!(index, Ok(None));
    let out = lab.exec("srv", strata_bin().to_str().unwrap(), &["phc", "--iface", "srv0"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "strata phc: srv0 has no PHC (its driver reports none)\n"
    );

    let control = control_path("phc");
    let _cleanup = RemoveOnDrop(control.clone());
    let control_arg = control.to_str().unwrap().to_string();
    let mut server = Server::start(
        Some(&srv),
        &[
            "--iface",
            "srv0",
            "--mode",
            "xdp",
            "--local-stratum",
            "1",
            "--cores",
            "1",
            "--xdp-answer",
            "off",
            "--metrics",
            "127.0.0.1:0",
            "--control",
            &control_arg,
        ],
        None,
    );
    server.wait_for_log("through XDP");
    let log = wait_log(&server, "control socket at", 10);
    assert!(
        log.contains("srv0: no PHC (the driver reports none); receive stamps are the XDP program's"),
        "{log}"
    );
    // veth has the receive-stamp kfunc: the device-bound program (PHC line included) is the one
    // the verifier took.
    assert!(log.contains("driver mode, device-bound"), "{log}");

    let json = status_json(&control);
    let phc = json["phc"].as_array().expect("a phc list");
    assert_eq!(phc.len(), 1, "{json}");
    assert_eq!(phc[0]["interface"], "srv0");
    assert_eq!(phc[0]["device"], serde_json::Value::Null);
    assert_eq!(phc[0]["usable"], false);
    assert_eq!(phc[0]["reason"], "no PHC (the driver reports none)");
    let (code, text, err) = strata(&["status", "--control", &control_arg]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains("  srv0: no PHC (the driver reports none); receive stamps are software"),
        "{text}"
    );
    let metrics = metrics_addr(&server.log());
    let body = run_in(&srv, move || scrape(metrics));
    assert_eq!(
        parse(&body).sum("strata_phc_usable", &[("interface", "srv0"), ("device", "none")]),
        0.0
    );
    assert!(parse(&body).has("strata_phc_usable"), "{body}");

    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

/// The socket path serves every interface through one wildcard socket: at start it asks each
/// served interface for hardware receive stamping and follows its PHC. A veth has neither: that
/// is said once per interface, `strata status` lists the socket path's interfaces (not loopback),
/// and the server answers with the kernel's software stamps, no hardware stamp unused.
#[test]
#[ignore = "needs root and network namespaces (make test runs it)"]
fn the_socket_path_asks_its_veths_for_hardware_stamps_and_keeps_software_ones() {
    if !Lab::available() {
        return;
    }
    let lab = Lab::up();
    let srv = lab.ns("srv");
    let control = control_path("phc-socket");
    let _cleanup = RemoveOnDrop(control.clone());
    let control_arg = control.to_str().unwrap().to_string();
    let server = Server::start(
        Some(&srv),
        &[
            "--listen",
            "0.0.0.0:1123",
            "--mode",
            "socket",
            "--local-stratum",
            "1",
            "--cores",
            "1",
            "--metrics",
            "127.0.0.1:0",
            "--control",
            &control_arg,
        ],
        None,
    );
    let log = wait_log(&server, "control socket at", 10);
    for veth in ["srv0", "srv1"] {
        let said = format!(
            "{veth}: no hardware stamps (the driver reports no hardware receive stamping); its receive stamps are software"
        );
        assert_eq!(log.matches(&said).count(), 1, "{log}");
    }
    assert!(!log.contains("lo: no hardware stamps"), "{log}");

    let answered = lab.run_in("cli", || {
        exchange("198.18.0.2:1123".parse().unwrap(), "198.18.0.1:0", 5)
    });
    assert_eq!(answered, 5);

    let json = status_json(&control);
    let phc = json["phc"].as_array().expect("a phc list");
    let mut interfaces: Vec<&str> = phc.iter().map(|p| p["interface"].as_str().unwrap()).collect();
    interfaces.sort();
    assert_eq!(interfaces, ["srv0", "srv1"], "{json}");
    for p in phc {
        assert_eq!(p["device"], serde_json::Value::Null);
        assert_eq!(p["usable"], false);
        assert_eq!(p["reason"], "no PHC (the driver reports none)");
    }
    let (code, text, err) = strata(&["status", "--control", &control_arg]);
    assert_eq!(code, 0, "{err}");
    assert!(
        text.contains("  srv0: no PHC (the driver reports none); receive stamps are software"),
        "{text}"
    );

    let metrics = metrics_addr(&server.log());
    let body = run_in(&srv, move || scrape(metrics));
    let m = parse(&body);
    assert!(
        m.sum(
            "strata_receive_timestamps_total",
            &[("source", "kernel_software")]
        ) >= 5.0,
        "{body}"
    );
    assert_eq!(
        m.sum(
            "strata_receive_timestamps_total",
            &[("source", "kernel_hardware")]
        ),
        0.0
    );
    assert_eq!(
        m.sum("strata_hardware_timestamps_unused_total", &[]),
        0.0,
        "{body}"
    );
    assert_eq!(
        m.sum("strata_phc_usable", &[("interface", "srv1"), ("device", "none")]),
        0.0
    );
    assert!(m.has("strata_phc_usable"), "{body}");

    let (status, log) = server.stop();
    assert!(status.success(), "{log}");
}

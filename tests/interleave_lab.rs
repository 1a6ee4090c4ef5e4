//! Interleaved mode against the real thing: chronyd as a client with `xleave`, in a namespace
//! of its own, strata in another (socket path, software transmit stamps, which veth gives),
//! joined by a veth pair. chronyd's own measurements log says which mode each sample was
//! (`4I` interleaved, `4B` basic) and what offset it measured; both clocks are this host's
//! clock, so the true offset is zero and a smaller measured offset is a better one.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use strata_test_support::*;

const SERVER: &str = "198.18.0.1";
/// How long chronyd samples, polling 16 times a second (minpoll -4).
const RUN_SECONDS: &str = "6";

#[test]
#[ignore = "needs root, network namespaces and chronyd (make test runs it)"]
fn chronyd_with_xleave_gets_interleaved_replies_and_measures_no_worse() {
    if !Netns::available() || !available("chronyd (Debian package chrony)", have_command(CHRONYD)) {
        return;
    }
    let srv = Netns::new("xl-srv");
    let cli = Netns::new("xl-cli");
    srv.veth("xl0", &format!("{SERVER}/24"), &cli, "xl1", "198.18.0.2/24");
    let listen = format!("{SERVER}:123");
    // chronyd polls 16 times a second here: far over the default rate limit.
    let control = RemoveOnDrop(control_path("xleave"));
    let server = Server::start(
        Some(&srv.name),
        &[
            "--listen",
            &listen,
            "--local-stratum",
            "1",
            "--rate-limit",
            "off",
            "--control",
            control.arg(),
        ],
        None,
    );
    let addr: SocketAddr = listen.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let answered = move || {
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
        sock.set_read_timeout(Some(Duration::from_millis(200))).ok()?;
        sock.send_to(&client_request(0x23, 48), addr).ok()?;
        sock.recv_from(&mut [0u8; 512]).ok()
    };
    while cli.run_in(answered).is_none() {
        assert!(
            Instant::now() < deadline,
            "strata did not answer: {}",
            server.log()
        );
    }

    let exec = |cmd: &str, args: &[&str]| cli.exec(cmd, args);
    let basic = chronyd_client_samples(exec, SERVER, "", RUN_SECONDS);
    let interleaved = chronyd_client_samples(exec, SERVER, "xleave", RUN_SECONDS);

    assert!(basic.iter().all(|s| s.mode == "4B"), "{basic:?}");
    // The first two replies to a new client are basic (nothing to interleave yet); the rest
    // are interleaved, a few basic ones allowed (a sample whose stamp was not there yet).
    let later: Vec<&ChronySample> = interleaved.iter().skip(2).collect();
    let modes: Vec<&str> = later.iter().map(|s| s.mode.as_str()).collect();
    let n_interleaved = modes.iter().filter(|m| **m == "4I").count();
    assert!(
        n_interleaved * 10 >= later.len() * 9,
        "only {n_interleaved} of {} samples interleaved: {modes:?}",
        later.len()
    );

    // Offsets: the median of the absolute offsets, interleaved against basic. The true offset is
    // zero; interleaved mode removes the time between our reading T3 and the packet leaving,
    // so it should measure less. 1 µs of slack for the noise of a shared machine.
    let interleaved_only: Vec<&ChronySample> = later.into_iter().filter(|s| s.mode == "4I").collect();
    let basic_all: Vec<&ChronySample> = basic.iter().skip(2).collect();
    let (m_i, m_b) = (
        median_abs_offset(&interleaved_only),
        median_abs_offset(&basic_all),
    );
    eprintln!(
        "median |offset|: interleaved {:.3} µs ({} samples), basic {:.3} µs ({} samples)",
        m_i * 1e6,
        interleaved_only.len(),
        m_b * 1e6,
        basic_all.len()
    );
    assert!(
        m_i <= m_b + 1e-6,
        "interleaved {m_i} s is worse than basic {m_b} s"
    );

    // The server's counters say so too, and no reply was longer than its request.
    let metrics = srv.run_in(|| metrics::parse(&scrape("127.0.0.1:9123".parse().unwrap())));
    assert!(metrics.sum("strata_interleaved_replies_total", &[]) >= n_interleaved as f64);
    let software = metrics.sum(
        "strata_transmit_timestamps_total",
        &[("source", "kernel_software")],
    );
    assert!(software > 0.0);
    // Only replies to interleaving clients ask for a stamp: none of the basic run's did.
    let stamps = metrics.sum("strata_transmit_timestamps_total", &[]);
    let replies = metrics.sum("strata_replies_total", &[]);
    assert!(
        stamps <= replies - basic.len() as f64,
        "{stamps} transmit stamps for {replies} replies"
    );
    assert!(metrics.sum("strata_sent_bytes_total", &[]) <= metrics.sum("strata_received_bytes_total", &[]));
    let (status, log) = server.stop();
    assert!(status.success(), "strata exited with {status}: {log}");
}

//! A leap second through running servers: a fake upstream (in this test, answering with
//! `respond()` from a clock it fakes: half a minute before 2027-01-01T00:00:00Z when the test
//! starts) announces an inserted (or deleted) second and performs it as the kernel does
//! (23:59:59 twice, or skipped).
//! Two strata servers synchronize to it, one answering in its XDP program (`--iface`), one on
//! the socket path (`--listen`); a client queries both every quarter second across the leap.
//!
//! Each reply must carry the upstream's time (within 20 ms: a lab on a shared VM) with the leap
//! applied, LI=1 before the leap and 0 after it, and strata must stay synchronized without a
//! step, a slew of the second or a refused correction.
//!
//! The lab of `bench/lab` (namespaces of this test's own, removed on every exit path): the
//! upstream at 198.18.0.66, both servers on 198.18.0.2 (ports 123 and 1123), the client at
//! 198.18.0.1. `#[ignore]`d under a plain `cargo test` (root, namespaces, XDP); `make test`
//! runs it.

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use strata::proto::control::leapplan::{days_from_civil, DAY};
use strata::proto::respond::{respond, Admission};
use strata::proto::state::{ServerState, UnsyncPolicy};
use strata::proto::wire::ntp::Leap;
use strata::proto::wire::{NtpShort, NtpTimestamp};
use strata::sys::clock::read_clock_ns;
use strata_test_support::*;

const S: i64 = 1_000_000_000;
const MS: i64 = 1_000_000;

/// The fake clock: this machine's CLOCK_REALTIME plus `offset`, on a uniform scale; its UTC
/// steps back one second at `midnight` (Unix ns on that scale; `delta` +1), or forward a
/// second before it (-1), announced from the day's start.
#[derive(Clone, Copy)]
struct FakeClock {
    offset: i64,
    midnight: i64,
    delta: i8,
}

impl FakeClock {
    fn uniform_at(&self, realtime: i64) -> i64 {
        realtime + self.offset
    }

    /// The uniform instant of the step.
    fn step(&self) -> i64 {
        self.midnight + (self.delta as i64).min(0) * S
    }

    /// UTC (Unix ns) at uniform time `u`.
    fn utc(&self, u: i64) -> i64 {
        if u >= self.step() {
            u - self.delta as i64 * S
        } else {
            u
        }
    }

    fn leap(&self, u: i64) -> Leap {
        if u >= self.midnight - DAY * S && u < self.step() {
            if self.delta > 0 {
                Leap::AddSecond
            } else {
                Leap::DeleteSecond
            }
        } else {
            Leap::NoWarning
        }
    }
}

/// Answers every request on `socket` from the fake clock until `stop`.
fn fake_upstream(socket: UdpSocket, clock: FakeClock, stop: Arc<AtomicBool>) {
    socket.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let mut buf = [0u8; 512];
    while !stop.load(Ordering::Relaxed) {
        let Ok((n, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let u = clock.uniform_at(read_clock_ns(libc::CLOCK_REALTIME));
        let now = NtpTimestamp::from_unix_nanos(clock.utc(u) as i128);
        let state = ServerState {
            synchronized: true,
            leap: clock.leap(u),
            stratum: 1,
            precision: -20,
            root_delay: NtpShort::ZERO,
            root_dispersion: NtpShort::from_nanos(100_000),
            reference_id: *b"FAKE",
            reference_time: now.add_nanos(-S),
            unsync_policy: UnsyncPolicy::Answer,
        };
        if let Ok(reply) = respond(&mut buf[..n], now, now, Admission::Serve, &state) {
            let _ = socket.send_to(&buf[..reply.len], from);
        }
    }
}

/// One client exchange: (send time, receive time) on this machine's CLOCK_REALTIME, the
/// reply's transmit timestamp and leap indicator.
fn query(socket: &UdpSocket, server: SocketAddr) -> Option<(i64, i64, NtpTimestamp, u8)> {
    let mut req = [0u8; 48];
    req[0] = 0x23;
    let sent = read_clock_ns(libc::CLOCK_REALTIME);
    req[40..48].copy_from_slice(&(sent as u64).to_be_bytes());
    socket.send_to(&req, server).ok()?;
    let mut buf = [0u8; 128];
    loop {
        let (n, _) = socket.recv_from(&mut buf).ok()?;
        let received = read_clock_ns(libc::CLOCK_REALTIME);
        if n >= 48 && buf[24..32] == req[40..48] {
            let t3 = NtpTimestamp(u64::from_be_bytes(buf[40..48].try_into().unwrap()));
            return Some((sent, received, t3, buf[0] >> 6));
        }
    }
}

fn strata_args<'a>(path: &[&'a str], cores: &'a str) -> Vec<&'a str> {
    let mut v = path.to_vec();
    v.extend_from_slice(&[
        "--cores",
        cores,
        "--metrics",
        "off",
        "--control",
        "off",
        "--log-level",
        "info",
        "--upstream",
        "198.18.0.66 iburst minpoll 0 maxpoll 2",
        "--minsources",
        "1",
        // The fake upstream is weeks ahead of this machine: the first step must be taken.
        "--allow-step",
        // Its warning decides (this machine's list expired; a current one has no 2027 leap).
        "--leap-seconds-list",
        "off",
        // Four queries a second from one client: not what the limiter is here for.
        "--rate-limit",
        "off",
    ]);
    v
}

#[test]
#[ignore = "needs root, network namespaces and XDP (make test runs it)"]
fn an_upstream_s_inserted_second_served_by_both_paths() {
    through_the_servers(1);
}

#[test]
#[ignore = "needs root, network namespaces and XDP (make test runs it)"]
fn an_upstream_s_deleted_second_served_by_both_paths() {
    through_the_servers(-1);
}

fn through_the_servers(delta: i8) {
    if !Lab::available() {
        return;
    }
    let what = if delta > 0 { "inserted" } else { "deleted" };
    let lab = Lab::up();
    // The upstream's clock reads 2026-12-31T23:59:30Z now; the leap is half a minute on.
    let midnight = days_from_civil(2027, 1, 1) * DAY * S;
    let clock = FakeClock {
        offset: midnight - 30 * S - read_clock_ns(libc::CLOCK_REALTIME),
        midnight,
        delta,
    };
    let step = clock.step();
    let stop = Arc::new(AtomicBool::new(false));
    let socket = lab.run_in("up", || UdpSocket::bind("198.18.0.66:123").unwrap());
    let upstream = {
        let stop = stop.clone();
        std::thread::spawn(move || fake_upstream(socket, clock, stop))
    };

    // Both in the server's namespace: the XDP program answers port 123 on srv0 and passes the
    // socket server's port 1123 to the kernel.
    let xdp_server = Server::start(
        Some(&lab.ns("srv")),
        &strata_args(&["--iface", "srv0"], "1"),
        None,
    );
    let sock_server = Server::start(
        Some(&lab.ns("srv")),
        &strata_args(&["--listen", "198.18.0.2:1123"], "0"),
        None,
    );
    for s in [&xdp_server, &sock_server] {
        wait_log(s, "synchronized to 198.18.0.66 stratum 2", 30);
        wait_log(
            s,
            &format!("leap second scheduled: {what} at the end of 2026-12-31 UTC (source: upstreams)"),
            10,
        );
    }

    let client = lab.run_in("cli", || UdpSocket::bind("198.18.0.1:0").unwrap());
    client.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let servers: [(&str, SocketAddr); 2] = [
        ("xdp", "198.18.0.2:123".parse().unwrap()),
        ("socket", "198.18.0.2:1123".parse().unwrap()),
    ];
    let mut checked = [[0usize; 2]; 2];
    let mut worst = [0i64; 2];
    // From now until 12 s after the leap (strata folds it in 10 s after), every quarter second.
    while clock.uniform_at(read_clock_ns(libc::CLOCK_REALTIME)) < step + 12 * S {
        for (i, (name, addr)) in servers.iter().enumerate() {
            let Some((sent, received, t3, li)) = query(&client, *addr) else {
                continue;
            };
            let (u0, u1) = (clock.uniform_at(sent), clock.uniform_at(received));
            // Too close to the step to say which side the server read its clock on.
            if (u0 - 50 * MS..u1 + 50 * MS).contains(&step) {
                continue;
            }
            let served = t3.to_unix_nanos(midnight as i128) as i64;
            let (lo, hi) = (clock.utc(u0), clock.utc(u1));
            let error = if served < lo {
                served - lo
            } else if served > hi {
                served - hi
            } else {
                0
            };
            assert!(
                error.abs() < 20 * MS,
                "{name}: served {served}, upstream time between {lo} and {hi} ({} ms from the leap)",
                (u0 - step) / MS
            );
            worst[i] = worst[i].max(error.abs());
            let expected_li = if u1 < step { clock.leap(u1) as u8 } else { 0 };
            // The tick that clears the warning comes just after the step.
            if u0 > step + 200 * MS || u1 < step {
                assert_eq!(
                    li,
                    expected_li,
                    "{name}: LI {li} at {} ms from the leap",
                    (u0 - step) / MS
                );
            }
            checked[i][(u0 >= step) as usize] += 1;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    stop.store(true, Ordering::Relaxed);
    upstream.join().unwrap();

    for (i, s) in [xdp_server, sock_server].into_iter().enumerate() {
        let (status, log) = s.stop();
        assert!(status.success(), "{log}");
        assert!(checked[i][0] > 20 && checked[i][1] > 10, "{:?} {log}", checked[i]);
        for bad in [
            "clock stepped",
            "refused",
            "holdover:",
            "] unsynchronized:",
            "falseticker",
        ] {
            let after_sync = log.split("synchronized to 198.18.0.66").nth(1).unwrap_or("");
            assert!(!after_sync.contains(bad), "{}: {bad:?} in:\n{log}", servers[i].0);
        }
        assert!(log.contains(&format!("leap second {what}")), "{log}");
        println!(
            "{what} second, {}: {} replies before the leap, {} after, worst {:.3} ms from the upstream",
            servers[i].0,
            checked[i][0],
            checked[i][1],
            worst[i] as f64 / 1e6
        );
    }
}

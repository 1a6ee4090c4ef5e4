//! Anycast scale-out on BIRD: two strata nodes announce one address over BGP to a router running
//! BIRD with ECMP, each only while `strata status --check` passes (deploy/bird/bird.conf and
//! deploy/bird/strata-anycast-health, as shipped, with shorter timers). In namespaces this test
//! makes (`strata-t<pid>-...`, removed on every exit path), joined by veth pairs in 198.18.0.0/24:
//!
//! ```text
//!   node A (strata, stratum 2 from an upstream strata on its loopback, BIRD, watcher) --+
//!                                                                                       router (BIRD, ECMP) -- client
//!   node B (strata --local-stratum 3, BIRD, watcher) -----------------------------------+
//! ```
//!
//! The anycast address 198.18.123.123 is on both nodes' loopback; clients use eight source
//! addresses in 198.19.1.0/24 and a new port per query, and the router hashes flows by port
//! (`fib_multipath_hash_policy=1`). The test shows:
//!
//! 1. both nodes announced: the router's route has two next hops, and clients get replies from
//!    both (told apart by stratum: A 2, B 3);
//! 2. A's upstream killed: A goes into holdover (sources lost: 8 polls unanswered, about 17 s
//!    at `maxpoll 0`; its replies stay marked synchronized), its check fails (exit 1), and
//!    its route is withdrawn within the watcher's interval plus the BGP update; every reply a
//!    client got meanwhile (clients poll throughout) was synchronized (LI != 3, stratum < 16);
//! 3. the upstream back: A synchronizes again and its route comes back;
//! 4. B's strata stopped (not serving: check exit 2): B withdrawn, clients served by A alone.
//!
//! `#[ignore]`d (root, namespaces, bird2); `make test` runs it. Without them it says SKIPPED,
//! unless STRATA_REQUIRE_INTEROP=1.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_test_support::*;

const ANYCAST: &str = "198.18.123.123";
/// The watcher's settings in this test (the shipped defaults are 1 and 3).
const INTERVAL_S: f64 = 1.0;
const RISE: u32 = 2;
/// What BGP and the router's kernel route may add to the watcher's interval.
const BGP_SLACK: Duration = Duration::from_secs(2);
const CLIENT_SOURCES: u8 = 8;

/// A child process (in a namespace), stopped with SIGTERM then SIGKILL when dropped.
struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(ns: &Netns, argv: &[&str], env: &[(&str, &str)], log: &Path) -> Proc {
        let log = std::fs::File::create(log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .args(argv)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        Proc { child }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SAFETY: kill with our own child's pid and a standard signal.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stops the clients' thread however the test ends.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// BIRD in `ns` with its own configuration, control socket and pid file in `dir`.
fn bird(ns: &Netns, dir: &Path, name: &str, conf: &str) -> (Proc, PathBuf) {
    let conf_path = dir.join(format!("{name}.conf"));
    std::fs::write(&conf_path, conf).unwrap();
    let check = Command::new("bird")
        .args(["-p", "-c"])
        .arg(&conf_path)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{name}.conf does not parse: {}{}",
        String::from_utf8_lossy(&check.stderr),
        String::from_utf8_lossy(&check.stdout)
    );
    let sock = dir.join(format!("{name}.ctl"));
    let pid = dir.join(format!("{name}.pid"));
    let p = Proc::spawn(
        ns,
        &[
            "bird",
            "-f",
            "-c",
            conf_path.to_str().unwrap(),
            "-s",
            sock.to_str().unwrap(),
            "-P",
            pid.to_str().unwrap(),
        ],
        &[],
        &dir.join(format!("{name}.log")),
    );
    (p, sock)
}

/// deploy/bird/bird.conf for a node: its addresses, and timers short enough for a test.
fn node_conf(node_addr: &str, router_addr: &str) -> String {
    let shipped = std::fs::read_to_string(workspace_root().join("deploy/bird/bird.conf")).unwrap();
    let conf = shipped
        .replace("192.0.2.123", ANYCAST)
        .replace("198.51.100.11", node_addr)
        .replace("198.51.100.1 ", &format!("{router_addr} "))
        .replace("hold time 9;", "hold time 3;")
        .replace("keepalive time 3;", "keepalive time 1;")
        .replace(
            "connect retry time 5;",
            "connect retry time 1;\n    connect delay time 1;\n    error wait time 1, 2;",
        );
    assert!(
        conf.contains(&format!("neighbor {router_addr} as 65000")),
        "{conf}"
    );
    assert!(conf.contains("connect delay time 1"), "{conf}");
    conf
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

fn router_conf() -> String {
    let mut conf = String::from(
        "router id 198.18.0.1;\nprotocol device {}\n\
         protocol kernel { ipv4 { import none; export all; }; merge paths on; }\n",
    );
    for (name, local, neighbor) in [
        ("node_a", "198.18.0.1", "198.18.0.2"),
        ("node_b", "198.18.0.5", "198.18.0.6"),
    ] {
        conf.push_str(&format!(
            "protocol bgp {name} {{\n  local {local} as 65000;\n  neighbor {neighbor} as 65123;\n  \
             hold time 3;\n  keepalive time 1;\n  connect delay time 1;\n  connect retry time 1;\n  \
             error wait time 1, 2;\n  ipv4 {{ import all; export none; }};\n}}\n"
        ));
    }
    conf
}

/// The next hops of the router's route to the anycast address.
fn next_hops(router: &Netns) -> Vec<String> {
    let out = router.exec("ip", &["-4", "route", "show", &format!("{ANYCAST}/32")]);
    let text = String::from_utf8_lossy(&out.stdout);
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut hops: Vec<String> = words
        .windows(2)
        .filter(|w| w[0] == "via")
        .map(|w| w[1].to_string())
        .collect();
    hops.sort();
    hops
}

/// Waits up to `secs` until the router's next hops are `want`; the time it took.
fn wait_hops(router: &Netns, want: &[&str], secs: u64, what: &str, logs: &dyn Fn() -> String) -> Duration {
    let start = Instant::now();
    loop {
        if next_hops(router) == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "{what}: next hops {:?}, not {want:?}, after {secs} s\n{}",
            next_hops(router),
            logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `strata status --check` on a node's control socket: its exit code and line.
fn check(control: &Path) -> (i32, String) {
    let out = Command::new(strata_bin())
        .args(["status", "--check", "--control"])
        .arg(control)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text.trim().to_string())
}

/// Polls `--check` until it exits with `code`; the time it took.
fn wait_check(control: &Path, code: i32, secs: u64, logs: &dyn Fn() -> String) -> Duration {
    let start = Instant::now();
    loop {
        let (rc, line) = check(control);
        if rc == code {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "check never exited {code} in {secs} s (last {rc}: {line})\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One client query: when, from where, and the reply's (leap, stratum), None for no reply.
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: Instant,
    reply: Option<(u8, u8)>,
}

fn query(src: Ipv4Addr) -> Option<(u8, u8)> {
    let sock = UdpSocket::bind(SocketAddr::from((src, 0))).ok()?;
    sock.set_read_timeout(Some(Duration::from_millis(250))).ok()?;
    let server: SocketAddr = format!("{ANYCAST}:123").parse().unwrap();
    sock.send_to(&client_request(0x23, 48), server).ok()?;
    let mut buf = [0u8; 512];
    let (n, from) = sock.recv_from(&mut buf).ok()?;
    if n < 48 || from != server || buf[0] & 7 != 4 {
        return None;
    }
    Some((buf[0] >> 6, buf[1]))
}

/// Clients in namespace `ns` querying the anycast address in turn from each source address
/// (a new port each time) until `stop`; every query recorded.
fn clients(
    ns: String,
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        run_in(&ns, move || {
            let mut i = 0u8;
            while !stop.load(Ordering::Relaxed) {
                let src = Ipv4Addr::new(198, 19, 1, 1 + i % CLIENT_SOURCES);
                let reply = query(src);
                samples.lock().unwrap().push(Sample {
                    at: Instant::now(),
                    reply,
                });
                i = i.wrapping_add(1);
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    })
}

/// Strata by stratum among the replies since `from`: (from A, from B, unanswered, bad).
fn tally(samples: &Mutex<Vec<Sample>>, from: Instant) -> (usize, usize, usize, usize) {
    let s = samples.lock().unwrap();
    let mut t = (0, 0, 0, 0);
    for x in s.iter().filter(|x| x.at >= from) {
        match x.reply {
            Some((li, st)) if li == 3 || st == 0 || st >= 16 => t.3 += 1,
            Some((_, 2)) => t.0 += 1,
            Some((_, 3)) => t.1 += 1,
            Some(_) => t.3 += 1,
            None => t.2 += 1,
        }
    }
    t
}

#[test]
#[ignore = "needs root, network namespaces and bird2 (make test runs it)"]
fn anycast_nodes_are_withdrawn_when_unhealthy_and_return() {
    if !Netns::available()
        || !available(
            "bird and birdc (bird2)",
            have_command("bird") && have_command("birdc"),
        )
    {
        return;
    }
    let started = Instant::now();
    let dir = TempDir::new("anycast");
    let d = dir.0.clone();
    let router = Netns::new("rt");
    let a = Netns::new("na");
    let b = Netns::new("nb");
    let cli = Netns::new("cl");
    router.veth("va", "198.18.0.1/30", &a, "veth0", "198.18.0.2/30");
    router.veth("vb", "198.18.0.5/30", &b, "veth0", "198.18.0.6/30");
    router.veth("vc", "198.18.0.9/30", &cli, "veth0", "198.18.0.10/30");
    for sysctl in ["net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1"] {
        assert!(
            router.exec("sysctl", &["-qw", sysctl]).status.success(),
            "{sysctl}"
        );
    }
    run_ok(
        "ip",
        &[
            "-n",
            &router.name,
            "route",
            "add",
            "198.19.0.0/16",
            "via",
            "198.18.0.10",
        ],
    );
    for (node, gw) in [(&a, "198.18.0.1"), (&b, "198.18.0.5")] {
        run_ok(
            "ip",
            &[
                "-n",
                &node.name,
                "addr",
                "add",
                &format!("{ANYCAST}/32"),
                "dev",
                "lo",
            ],
        );
        run_ok("ip", &["-n", &node.name, "route", "add", "default", "via", gw]);
    }
    for i in 1..=CLIENT_SOURCES {
        run_ok(
            "ip",
            &[
                "-n",
                &cli.name,
                "addr",
                "add",
                &format!("198.19.1.{i}/32"),
                "dev",
                "veth0",
            ],
        );
    }
    run_ok(
        "ip",
        &["-n", &cli.name, "route", "add", "default", "via", "198.18.0.9"],
    );

    // strata: A follows an upstream strata on its own loopback; B serves its local clock.
    let control_a = d.join("a.sock");
    let control_b = d.join("b.sock");
    let listen = format!("{ANYCAST}:123");
    let node_args = |control: &Path, extra: &[&str]| -> Vec<String> {
        let mut v: Vec<String> = [
            "--listen",
            &listen,
            "--mode",
            "socket",
            "--cores",
            "0",
            "--metrics",
            "off",
            "--rate-limit",
            "off",
            "--log-level",
            "info",
            "--control",
            control.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let upstream_args = [
        "--listen",
        "127.0.0.1:1123",
        "--local-stratum",
        "1",
        "--cores",
        "0",
        "--metrics",
        "off",
        "--control",
        "off",
    ];
    let mut upstream = Some(Server::start(Some(&a.name), &upstream_args, None));
    let args_a = node_args(
        &control_a,
        &[
            "--upstream",
            "127.0.0.1:1123 iburst minpoll 0 maxpoll 0",
            "--minsources",
            "1",
        ],
    );
    let args_b = node_args(&control_b, &["--local-stratum", "3"]);
    let strata_a = Server::start(Some(&a.name), &strs(&args_a), None);
    let mut strata_b = Some(Server::start(Some(&b.name), &strs(&args_b), None));

    // BIRD: the router, and each node with the shipped configuration and watcher.
    let (_bird_r, _) = bird(&router, &d, "router", &router_conf());
    let (_bird_a, sock_a) = bird(&a, &d, "node-a", &node_conf("198.18.0.2", "198.18.0.1"));
    let (_bird_b, sock_b) = bird(&b, &d, "node-b", &node_conf("198.18.0.6", "198.18.0.5"));
    let watcher = workspace_root().join("deploy/bird/strata-anycast-health");
    let interval = INTERVAL_S.to_string();
    let rise = RISE.to_string();
    let watch = |ns: &Netns, control: &Path, sock: &Path, name: &str| {
        let check = format!("--control {}", control.display());
        Proc::spawn(
            ns,
            &["sh", watcher.to_str().unwrap()],
            &[
                ("STRATA", strata_bin().to_str().unwrap()),
                ("STRATA_CHECK", &check),
                ("BIRD_SOCKET", sock.to_str().unwrap()),
                ("INTERVAL", &interval),
                ("RISE", &rise),
            ],
            &d.join(format!("{name}.log")),
        )
    };
    let _watch_a = watch(&a, &control_a, &sock_a, "watch-a");
    let _watch_b = watch(&b, &control_b, &sock_b, "watch-b");
    let logs = {
        let d = d.clone();
        move || {
            ["watch-a", "watch-b", "router", "node-a", "node-b"]
                .iter()
                .map(|n| {
                    format!(
                        "--- {n}.log:\n{}",
                        std::fs::read_to_string(d.join(format!("{n}.log"))).unwrap_or_default()
                    )
                })
                .collect::<String>()
        }
    };

    // 1. Both announced once A is synchronized: two next hops, clients served by both.
    wait_check(&control_a, 0, 40, &logs);
    let both = ["198.18.0.2", "198.18.0.6"];
    wait_hops(&router, &both, 20, "both announced", &logs);
    let up_at = started.elapsed();
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_clients = StopOnDrop(stop.clone());
    let samples = Arc::new(Mutex::new(Vec::new()));
    let client_thread = clients(cli.name.clone(), stop.clone(), samples.clone());
    let t1 = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let (from_a, from_b, lost, bad) = tally(&samples, t1);
    assert!(
        from_a > 0 && from_b > 0,
        "served by both: A {from_a}, B {from_b}, lost {lost}"
    );
    assert_eq!(bad, 0);
    println!("both announced {up_at:?} after start; 2 s of clients: A {from_a}, B {from_b}, lost {lost}");

    // 2. A's upstream gone: holdover, check fails, route withdrawn; clients never see LI 3.
    let t2 = Instant::now();
    drop(upstream.take());
    let to_unhealthy = wait_check(&control_a, 1, 30, &logs);
    let (_, line_a) = check(&control_a);
    let withdraw_a = wait_hops(&router, &["198.18.0.6"], 10, "A withdrawn", &logs);
    assert!(
        withdraw_a < Duration::from_secs_f64(INTERVAL_S) + BGP_SLACK,
        "A withdrawn {withdraw_a:?} after its check failed"
    );
    std::thread::sleep(Duration::from_secs(1));
    let t2b = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let (a2, b2, lost2, bad2) = tally(&samples, t2b);
    assert_eq!(
        (a2, bad2),
        (0, 0),
        "only B serves once A is withdrawn (B {b2}, lost {lost2})"
    );
    assert!(b2 > 0);
    let (a_tr, b_tr, lost_tr, bad_tr) = tally(&samples, t2);
    assert_eq!(bad_tr, 0, "an unsynchronized reply during the transition");
    println!(
        "A's upstream killed: A unhealthy after {to_unhealthy:?} ({line_a}), withdrawn {withdraw_a:?} \
         later; during the transition A {a_tr}, B {b_tr}, lost {lost_tr}, unsynchronized 0"
    );

    // 3. The upstream back: A synchronized again, announced again.
    let t3 = Instant::now();
    upstream = Some(Server::start(Some(&a.name), &upstream_args, None));
    let to_healthy = wait_check(&control_a, 0, 30, &logs);
    let back_a = wait_hops(&router, &both, 10, "A back", &logs);
    assert!(
        back_a < Duration::from_secs_f64(INTERVAL_S * RISE as f64) + BGP_SLACK,
        "A back {back_a:?} after its check passed"
    );
    let t3b = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let (a3, b3, lost3, bad3) = tally(&samples, t3b);
    assert!(
        a3 > 0 && b3 > 0 && bad3 == 0,
        "both again: A {a3}, B {b3}, lost {lost3}"
    );
    println!(
        "upstream back: A healthy after {to_healthy:?}, announced {back_a:?} later ({:?} in all)",
        t3.elapsed()
    );

    // 4. B's strata stopped: check exit 2, withdrawn; A alone serves.
    let t4 = Instant::now();
    let (status, log_b) = strata_b.take().unwrap().stop();
    assert!(status.success(), "{log_b}");
    let (rc, line_b) = check(&control_b);
    assert_eq!(rc, 2, "{line_b}");
    wait_hops(&router, &["198.18.0.2"], 10, "B withdrawn", &logs);
    // From the SIGTERM: strata's shutdown, then the watcher's next round and the BGP update.
    let withdraw_b = t4.elapsed();
    assert!(
        withdraw_b < Duration::from_secs_f64(INTERVAL_S) + BGP_SLACK,
        "B withdrawn {withdraw_b:?} after it was told to stop"
    );
    std::thread::sleep(Duration::from_secs(1));
    let t4b = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    client_thread.join().unwrap();
    let (a4, b4, lost4, bad4) = tally(&samples, t4b);
    assert_eq!((b4, lost4, bad4), (0, 0, 0), "A alone, all answered ({a4})");
    let (a_t4, _, lost_t4, _) = tally(&samples, t4);
    let (_, _, _, bad_all) = tally(&samples, t1);
    assert_eq!(bad_all, 0);
    let total = samples.lock().unwrap().len();
    println!(
        "B stopped ({line_b}): withdrawn {withdraw_b:?} after its SIGTERM; queries meanwhile unanswered: {lost_t4} \
         of {}; {total} queries in all, none unsynchronized; test took {:?}",
        a_t4 + lost_t4,
        started.elapsed()
    );
    for name in ["watch-a", "watch-b"] {
        let log = std::fs::read_to_string(d.join(format!("{name}.log"))).unwrap_or_default();
        println!("{name}:\n{log}");
    }
    drop(upstream);
    drop(strata_a);
}

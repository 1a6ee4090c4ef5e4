//! strata as a service: the control socket's permissions whatever the umask, the switch to
//! `user` (every thread's uid and capabilities in /proc), the XDP path under the unit's
//! capability bounding set with no new privileges, SIGHUP reloading without killing, SIGUSR1
//! and SIGTERM shutting down cleanly, sd_notify's READY/STATUS/WATCHDOG/STOPPING on a test
//! notify socket, JSON logs, the unit itself (`systemd-analyze verify`, and `security` under 3.0),
//! and its system call filter against every call strata makes under strace.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use strata_test_support::*;

const UNIT: &str = include_str!("../deploy/strata.service");
/// nobody and nogroup on Debian.
const NOBODY: u32 = 65534;

/// `strata serve ARGS` with its stderr in a file, under `umask`, optionally inside a namespace
/// and behind a command (setpriv); killed when dropped.
struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    fn start(dir: &Path, umask: &str, prefix: &[&str], args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let log = dir.join("stderr.log");
        let mut script = format!("umask {umask}; exec");
        for word in prefix
            .iter()
            .copied()
            .chain([strata_bin().to_str().unwrap(), "serve"])
            .chain(args.iter().copied())
        {
            script.push_str(&format!(" '{word}'"));
        }
        let child = Command::new("sh")
            .args(["-c", &script])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("start strata serve");
        Daemon { child, log }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_for_log(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !self.log().contains(text) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "strata serve exited ({status}) before logging {text:?}:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "no {text:?} in the log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill with our own child's pid and a standard signal.
        unsafe { libc::kill(self.pid(), signal) };
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends `signal` and waits for the exit.
    fn stop_with(mut self, signal: i32) -> (ExitStatus, String) {
        self.signal(signal);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "no exit within 10 s of signal {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory others may traverse (the switched server must reach its socket's
/// directory inside it, as it reaches /run/strata).
fn scratch(tag: &str) -> TempDir {
    let dir = TempDir::new(tag);
    fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

fn socket_args(control: &Path) -> Vec<String> {
    vec![
        "--listen".into(),
        format!("127.0.0.1:{}", free_udp_port()),
        "--local-stratum".into(),
        "2".into(),
        "--cores".into(),
        "0".into(),
        "--metrics".into(),
        "off".into(),
        "--control".into(),
        control.to_str().unwrap().into(),
    ]
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn the_control_socket_ignores_the_umask_and_goes_away_at_exit() {
    let dir = scratch("umask");
    // A directory strata makes, and one it is given empty and wide open (as RuntimeDirectory=
    // under a careless mode would be).
    let given = dir.0.join("given");
    fs::create_dir(&given).unwrap();
    fs::set_permissions(&given, fs::Permissions::from_mode(0o777)).unwrap();
    for control in [dir.0.join("made/control.sock"), given.join("control.sock")] {
        let mut d = Daemon::start(&dir.0, "000", &[], &strs(&socket_args(&control)), &[]);
        d.wait_for_log("control socket at");
        assert_eq!(mode(&control), 0o660, "{}", control.display());
        assert_eq!(mode(control.parent().unwrap()), 0o750);
        let (status, log) = d.stop_with(libc::SIGTERM);
        assert!(status.success(), "{status}: {log}");
        assert!(!control.exists(), "the socket was left behind:\n{log}");
        assert!(log.contains("total: "), "no final counters:\n{log}");
    }
}

#[test]
fn sighup_reloads_what_it_can_and_sigusr1_stops_cleanly() {
    let dir = scratch("sighup");
    let control = dir.0.join("run/control.sock");
    let config = dir.0.join("strata.toml");
    let port = free_udp_port();
    let write = |extra: &str| {
        fs::write(
            &config,
            format!(
                "listen = [\"127.0.0.1:{port}\"]\ncores = [0]\nmetrics = \"off\"\ncontrol = {:?}\n{extra}\n",
                control.to_str().unwrap()
            ),
        )
        .unwrap()
    };
    write("local_stratum = 2\nlog_level = \"info\"");
    let mut d = Daemon::start(&dir.0, "022", &[], &["--config", config.to_str().unwrap()], &[]);
    d.wait_for_log("control socket at");

    d.signal(libc::SIGHUP);
    d.wait_for_log("reload (SIGHUP): the configuration is unchanged");

    write("local_stratum = 3\nlog_level = \"debug\"\ndeny = [\"192.0.2.0/24\"]");
    d.signal(libc::SIGHUP);
    // The access list and the log level apply at once; the stratum waits for a restart.
    d.wait_for_log(
        "reload (SIGHUP): applied access list: 0 -> 1 rule(s), deny_action Drop -> Drop, log_level: INFO -> DEBUG",
    );
    d.wait_for_log("applied only at the next restart: local_stratum\n");

    write("local_stratum = 99");
    d.signal(libc::SIGHUP);
    d.wait_for_log("the configuration has an error, nothing changed");
    assert!(d.log().contains("config key `local_stratum`"), "{}", d.log());
    assert!(d.alive(), "SIGHUP ended the process:\n{}", d.log());
    // Still serving, as the first configuration said.
    let reply = ntp_query(
        format!("127.0.0.1:{port}").parse().unwrap(),
        Duration::from_secs(1),
    )
    .expect("a reply");
    assert_eq!(reply[1], 2, "stratum");

    let (status, log) = d.stop_with(libc::SIGUSR1);
    assert!(status.success(), "{status}: {log}");
    assert!(!control.exists(), "the socket was left behind:\n{log}");
    assert!(log.contains("shutting down") && log.contains("total: "), "{log}");
}

#[test]
#[ignore = "needs root (make test runs it)"]
fn sighup_reloads_the_nts_certificate_as_the_switched_user() {
    if !available("root", is_root()) {
        return;
    }
    let dir = scratch("nts-reload");
    let cert = dir.0.join("server.pem");
    let key = dir.0.join("server.key");
    let key_pair = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    fs::write(&cert, params.self_signed(&key_pair).unwrap().pem()).unwrap();
    fs::write(&key, key_pair.serialize_pem()).unwrap();
    // As an operator would give them: the key to root and the service's group, not to others.
    for path in [&cert, &key] {
        std::os::unix::fs::chown(path, Some(0), Some(NOBODY)).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(0o640)).unwrap();
    }
    let control = dir.0.join("run/control.sock");
    let ke = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut args = socket_args(&control);
    let key_file = dir.0.join("nts.key");
    let nts = [
        "--user",
        "nobody",
        "--nts-certificate",
        cert.to_str().unwrap(),
        "--nts-private-key",
        key.to_str().unwrap(),
        "--nts-key-file",
        key_file.to_str().unwrap(),
    ];
    args.extend(nts.iter().map(|a| a.to_string()));
    args.extend(["--nts-ke-listen".to_string(), ke.to_string()]);
    let mut d = Daemon::start(&dir.0, "022", &[], &strs(&args), &[]);
    d.wait_for_log("running as user nobody");
    d.signal(libc::SIGHUP);
    d.wait_for_log("the NTS certificate and key are read again");
    d.wait_for_log("NTS-KE: certificate reloaded");
    assert!(d.alive(), "{}", d.log());
    let (status, log) = d.stop_with(libc::SIGTERM);
    assert!(status.success(), "{log}");
}

#[test]
fn systemd_hears_ready_status_watchdog_and_stopping() {
    let dir = scratch("notify");
    let notify = dir.0.join("notify.sock");
    let listener = UnixDatagram::bind(&notify).unwrap();
    listener.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let control = dir.0.join("run/control.sock");
    let d = Daemon::start(
        &dir.0,
        "022",
        &[],
        &strs(&socket_args(&control)),
        &[
            ("NOTIFY_SOCKET", notify.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
    );
    let log = d.log.clone();
    let mut buf = [0u8; 4096];
    let mut next = || {
        let len = listener.recv(&mut buf).unwrap_or_else(|e| {
            panic!(
                "no notification: {e}:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            )
        });
        String::from_utf8(buf[..len].to_vec()).unwrap()
    };
    let ready = next();
    assert!(
        ready.starts_with("READY=1\nSTATUS=serving; synchronized, stratum 2, reference LOCL"),
        "{ready}"
    );
    let started = Instant::now();
    let ping = next();
    assert_eq!(ping, "WATCHDOG=1");
    let ping = next();
    assert_eq!(ping, "WATCHDOG=1");
    // Two pings at half the interval (0.2 s), the first one right after READY.
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let (status, log) = d.stop_with(libc::SIGTERM);
    assert!(status.success(), "{log}");
    let stopping = loop {
        let m = next();
        if m != "WATCHDOG=1" {
            break m;
        }
    };
    assert_eq!(stopping, "STOPPING=1\nSTATUS=shutting down");
}

#[test]
fn json_logs_are_one_object_per_line_with_the_event_fields() {
    let dir = scratch("json");
    let control = dir.0.join("run/control.sock");
    let mut args = socket_args(&control);
    args.extend(["--log-format".into(), "json".into()]);
    let mut d = Daemon::start(&dir.0, "022", &[], &strs(&args), &[]);
    d.wait_for_log("\"event\":\"sync_state\"");
    let (status, log) = d.stop_with(libc::SIGTERM);
    assert!(status.success(), "{log}");
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let local = lines
        .iter()
        .find(|l| l["event"] == "sync_state")
        .expect("a sync_state event");
    assert_eq!(local["state"], "local");
    assert_eq!(local["stratum"], 2);
    assert_eq!(local["level"], "info");
    assert!(local["time"].as_str().unwrap().ends_with('Z'));
    assert!(lines
        .iter()
        .any(|l| l["message"].as_str().unwrap().starts_with("total: ")));
}

#[test]
fn an_unknown_user_is_a_configuration_error() {
    let out = Command::new(strata_bin())
        .args([
            "serve",
            "--user",
            "strata-no-such-user",
            "--metrics",
            "off",
            "--control",
            "off",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("user `strata-no-such-user`: no user"), "{stderr}");
}

/// Every thread of `pid` as /proc says: (name, uid line, gid line, CapPrm, CapEff).
fn threads(pid: i32) -> Vec<(String, String, String, String, String)> {
    let mut out = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let status = fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}:")))
                .unwrap()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        };
        out.push((
            field("Name"),
            field("Uid"),
            field("Gid"),
            field("CapPrm"),
            field("CapEff"),
        ));
    }
    out
}

fn assert_unprivileged(pid: i32, log: &str) {
    let all = threads(pid);
    assert!(all.len() >= 4, "{all:?}");
    let nobody = format!("{NOBODY} {NOBODY} {NOBODY} {NOBODY}");
    for (name, uid, gid, prm, eff) in &all {
        assert_eq!(uid, &nobody, "thread {name}: {all:?}\n{log}");
        assert_eq!(gid, &nobody, "thread {name}: {all:?}");
        assert_eq!(
            prm, "0000000000000000",
            "thread {name} keeps capabilities: {all:?}"
        );
        assert_eq!(
            eff, "0000000000000000",
            "thread {name} keeps capabilities: {all:?}"
        );
    }
}

#[test]
#[ignore = "needs root (make test runs it)"]
fn the_socket_path_switches_to_the_user_with_no_capability() {
    if !available("root", is_root()) {
        return;
    }
    let dir = scratch("user");
    let control = dir.0.join("run/control.sock");
    let mut args = socket_args(&control);
    args.extend(["--user".into(), "nobody".into()]);
    let mut d = Daemon::start(&dir.0, "000", &[], &strs(&args), &[]);
    d.wait_for_log("running as user nobody");
    assert_unprivileged(d.pid(), &d.log());
    let meta = fs::symlink_metadata(&control).unwrap();
    assert_eq!((meta.uid(), meta.gid(), mode(&control)), (NOBODY, NOBODY, 0o660));
    let dir_meta = fs::metadata(control.parent().unwrap()).unwrap();
    assert_eq!((dir_meta.uid(), dir_meta.gid()), (NOBODY, NOBODY));
    let status = Command::new(strata_bin())
        .args(["status", "--control", control.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let (status, log) = d.stop_with(libc::SIGTERM);
    assert!(status.success(), "{status}: {log}");
    assert!(
        !control.exists(),
        "the unprivileged server could not remove its socket:\n{log}"
    );
}

/// The unit's CapabilityBoundingSet, as setpriv(1) takes it (`-all,+net_admin,...`).
fn unit_bounding_set() -> String {
    let caps = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .expect("the unit sets CapabilityBoundingSet");
    let mut out = "-all".to_string();
    for cap in caps.split_whitespace() {
        out.push_str(&format!(",+{}", cap.trim_start_matches("CAP_").to_lowercase()));
    }
    out
}

#[test]
#[ignore = "needs root, network namespaces, XDP and setpriv (make test runs it)"]
fn the_xdp_path_needs_each_of_its_capabilities() {
    if !Lab::available() || !available("setpriv", have_command("setpriv")) {
        return;
    }
    let lab = Lab::up();
    let srv = lab.ns("srv");
    for cap in ["net_admin", "bpf", "perfmon", "net_raw"] {
        let dir = scratch("xdp-less");
        // The unit's set, less one; the memory limit out of the way (ipc_lock).
        let bounding = format!("{},+ipc_lock,-{cap}", unit_bounding_set());
        let prefix = [
            "ip",
            "netns",
            "exec",
            &srv,
            "setpriv",
            "--bounding-set",
            &bounding,
            "--no-new-privs",
            "--",
        ];
        let args = [
            "--iface",
            "srv0",
            "--mode",
            "xdp",
            "--local-stratum",
            "1",
            "--cores",
            "1",
            "--metrics",
            "off",
            "--control",
            "off",
            "--user",
            "nobody",
        ];
        let mut d = Daemon::start(&dir.0, "022", &prefix, &args, &[]);
        let status = d.child.wait().unwrap();
        let log = d.log();
        assert_eq!(
            status.code(),
            Some(1),
            "started without CAP_{}:\n{log}",
            cap.to_uppercase()
        );
        assert!(!log.contains("running as user"), "{log}");
    }
}

/// The unit's LimitMEMLOCK=, as prlimit(1) takes it.
fn unit_memlock() -> String {
    let limit = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("LimitMEMLOCK="))
        .expect("the unit sets LimitMEMLOCK (the UMEM is pinned memory)");
    let limit = if limit == "infinity" { "unlimited" } else { limit };
    format!("{limit}:{limit}")
}

#[test]
fn every_capability_of_the_unit_says_why() {
    let caps = UNIT
        .lines()
        .find_map(|l| l.strip_prefix("CapabilityBoundingSet="))
        .unwrap();
    for cap in caps.split_whitespace() {
        assert!(
            UNIT.lines()
                .any(|l| l.starts_with("#") && l.contains(cap) && l.len() > cap.len() + 12),
            "{cap} has no comment saying why"
        );
    }
    assert!(
        !caps.contains("CAP_SYS_TIME"),
        "CAP_SYS_TIME only with discipline_system"
    );
}

#[test]
#[ignore = "needs root, network namespaces, XDP and setpriv (make test runs it)"]
fn the_xdp_path_runs_under_the_unit_s_capabilities_then_as_nobody() {
    if !Lab::available() || !available("setpriv", have_command("setpriv")) {
        return;
    }
    let lab = Lab::up();
    let dir = scratch("xdp-caps");
    let control = dir.0.join("run/control.sock");
    let srv = lab.ns("srv");
    let mut bounding = unit_bounding_set();
    let memlock = format!("--memlock={}", unit_memlock());
    // The unit's LimitMEMLOCK= is what lets the UMEM be pinned without CAP_IPC_LOCK; systemd
    // (PID 1) sets it. A sandbox without CAP_SYS_RESOURCE (as the one this was written in)
    // cannot raise the limit: there the test stands CAP_IPC_LOCK in for it, and says so.
    let can_raise = Command::new("prlimit")
        .args([memlock.as_str(), "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !can_raise {
        eprintln!("NOTE: cannot raise RLIMIT_MEMLOCK here (no CAP_SYS_RESOURCE): CAP_IPC_LOCK stands in for LimitMEMLOCK=");
        bounding.push_str(",+ipc_lock");
    }
    let mut prefix: Vec<&str> = vec!["ip", "netns", "exec", &srv];
    if can_raise {
        prefix.extend(["prlimit", memlock.as_str()]);
    }
    prefix.extend([
        "setpriv",
        "--bounding-set",
        bounding.as_str(),
        "--no-new-privs",
        "--",
    ]);
    // Every request to the AF_XDP responders: they are what must keep working after the switch.
    let args = [
        "--iface",
        "srv0",
        "--mode",
        "xdp",
        "--xdp-answer",
        "off",
        "--local-stratum",
        "1",
        "--cores",
        "1",
        "--rate-limit",
        "off",
        "--metrics",
        "off",
        "--user",
        "nobody",
        "--control",
        control.to_str().unwrap(),
    ];
    let mut d = Daemon::start(&dir.0, "022", &prefix, &args, &[]);
    d.wait_for_log("running as user nobody");
    assert!(d.log().contains("through XDP"), "{}", d.log());
    assert_unprivileged(d.pid(), &d.log());
    let server: std::net::SocketAddr = "198.18.0.2:123".parse().unwrap();
    let reply = lab.run_in("cli", move || {
        // From the client's own address (ntp_query sends from loopback).
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        sock.send_to(&client_request(0x23, 48), server).unwrap();
        let mut buf = [0u8; 512];
        sock.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
    });
    let reply = reply.unwrap_or_else(|| panic!("no reply through AF_XDP after the switch:\n{}", d.log()));
    assert_eq!(reply[1], 1, "stratum");
    let (status, log) = d.stop_with(libc::SIGTERM);
    assert!(status.success(), "{status}: {log}");
    assert!(log.contains("total: 1 requests"), "{log}");
    // One line per event, with its fields.
    assert!(log.contains("event=xdp_attach iface=srv0 attach="), "{log}");
    assert!(log.contains("event=xdp_detach iface=srv0"), "{log}");
    // The program's counters are still readable by the unprivileged process (map descriptor).
    assert!(log.contains("xdp program on srv0: seen "), "{log}");
    assert!(!log.contains("cannot read its counters"), "{log}");
    // The unprivileged process detached its program: the bpf_link went with its descriptor.
    let link = lab.ip("srv", &["link", "show", "srv0"]);
    assert!(!link.contains("xdp"), "the XDP program is still attached: {link}");
}

/// The system calls a `SystemCallFilter=` group holds, its nested groups expanded.
fn syscall_group(group: &str, out: &mut std::collections::BTreeSet<String>) {
    let list = Command::new("systemd-analyze")
        .args(["syscall-filter", group])
        .output()
        .unwrap();
    assert!(list.status.success(), "systemd-analyze syscall-filter {group}");
    for line in String::from_utf8_lossy(&list.stdout).lines().skip(1) {
        let entry = line.trim();
        if entry.is_empty() || entry.starts_with('#') {
            continue;
        }
        if entry.starts_with('@') {
            syscall_group(entry, out);
        } else {
            out.insert(entry.to_string());
        }
    }
}

/// What the unit's SystemCallFilter= lines allow: the first one's list, less the `~` ones.
fn unit_allowed_syscalls() -> std::collections::BTreeSet<String> {
    let mut allowed = std::collections::BTreeSet::new();
    let mut denied = std::collections::BTreeSet::new();
    for line in UNIT.lines().filter_map(|l| l.strip_prefix("SystemCallFilter=")) {
        let (set, list) = match line.strip_prefix('~') {
            Some(rest) => (&mut denied, rest),
            None => (&mut allowed, line),
        };
        for entry in list.split_whitespace() {
            if entry.starts_with('@') {
                syscall_group(entry, set);
            } else {
                set.insert(entry.to_string());
            }
        }
    }
    // ProtectClock= refuses the clock calls on top of the list.
    if UNIT.lines().any(|l| l == "ProtectClock=yes") {
        syscall_group("@clock", &mut denied);
    }
    allowed.retain(|s| !denied.contains(s));
    allowed
}

/// The /proc files outside the process's own (`/proc/self`, `/proc/thread-self`, `/proc/PID`)
/// that an strace log shows opened: what ProcSubset=pid hides.
fn proc_outside_pid(trace: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in trace.match_indices("\"/proc/") {
        let path: String = trace[i + 1..].chars().take_while(|&c| c != '"').collect();
        let first = path.trim_start_matches("/proc/").split('/').next().unwrap_or("");
        let own = first == "self" || first == "thread-self" || first.chars().all(|c| c.is_ascii_digit());
        // aya looks for Ubuntu's kernel version file and falls back to uname(2): a file that
        // is missing on Debian and under ProcSubset=pid alike.
        let own = own || path == "/proc/version_signature";
        // glibc's malloc asks whether to shrink a thread arena's heap with mmap or madvise;
        // without the file it takes madvise, which is as good.
        let own = own || path == "/proc/sys/vm/overcommit_memory";
        if !own && !out.contains(&path) {
            out.push(path);
        }
    }
    out
}

#[test]
#[ignore = "needs root, network namespaces, XDP, strace and systemd-analyze (make test runs it)"]
fn the_unit_s_system_call_filter_allows_every_call_strata_makes() {
    if !Lab::available()
        || !available("strace", have_command("strace"))
        || !available("systemd-analyze", have_command("systemd-analyze"))
    {
        return;
    }
    let allowed = unit_allowed_syscalls();
    assert!(
        allowed.contains("bpf") && allowed.contains("sched_setaffinity"),
        "{allowed:?}"
    );
    let lab = Lab::up();
    let dir = scratch("syscalls");
    let control = dir.0.join("run/control.sock");
    let counts = dir.0.join("strace.txt");
    let srv = lab.ns("srv");
    let prefix = [
        "ip",
        "netns",
        "exec",
        &srv,
        "strace",
        "-f",
        "-C",
        "-o",
        counts.to_str().unwrap(),
        "--",
    ];
    // Both tiers and the whole life: start, the switch of user, serving, status, reload, stop.
    let args = [
        "--iface",
        "srv0",
        "--mode",
        "xdp",
        "--xdp-answer",
        "off",
        "--local-stratum",
        "1",
        "--cores",
        "1",
        "--metrics",
        "127.0.0.1:0",
        "--user",
        "nobody",
        "--control",
        control.to_str().unwrap(),
    ];
    let mut d = Daemon::start(&dir.0, "022", &prefix, &args, &[]);
    d.wait_for_log("running as user nobody");
    let server: std::net::SocketAddr = "198.18.0.2:123".parse().unwrap();
    lab.run_in("cli", move || {
        let sock = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        sock.send_to(&client_request(0x23, 48), server).unwrap();
        let mut buf = [0u8; 512];
        sock.recv(&mut buf).expect("a reply");
    });
    let status = Command::new(strata_bin())
        .args(["status", "--control", control.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(status.status.success());
    stop_traced(&mut d);
    check_trace(&counts, &allowed, &["bpf", "setresuid"]);
}

/// Checks an `strace -f -C` log against the unit: every system call allowed, no /proc file
/// outside ProcSubset=pid; and that the calls `expected` are there (the trace saw the run).
fn check_trace(path: &Path, allowed: &std::collections::BTreeSet<String>, expected: &[&str]) {
    let trace = fs::read_to_string(path).unwrap();
    let outside = proc_outside_pid(&trace);
    assert!(
        outside.is_empty(),
        "/proc files ProcSubset=pid hides: {outside:?}"
    );
    // The summary table closes the trace.
    let table = &trace[trace.rfind("% time").expect("strace's summary")..];
    let used: Vec<&str> = table
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .filter(|name| {
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .filter(|name| *name != "total" && *name != "syscall")
        .collect();
    for call in expected {
        assert!(used.contains(call), "no {call} in\n{table}");
    }
    let outside: Vec<&&str> = used.iter().filter(|name| !allowed.contains(**name)).collect();
    assert!(
        outside.is_empty(),
        "system calls the unit refuses: {outside:?}\n{table}"
    );
}

/// Stops the strata that strace runs (strace's child: signalled, not strace).
fn stop_traced(d: &mut Daemon) {
    let children = fs::read_to_string(format!("/proc/{0}/task/{0}/children", d.pid())).unwrap();
    let strata: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    // SAFETY: kill with a standard signal to the strata process this test started.
    unsafe { libc::kill(strata, libc::SIGHUP) };
    d.wait_for_log("reload (SIGHUP)");
    // SAFETY: as above.
    unsafe { libc::kill(strata, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.alive() {
        assert!(Instant::now() < deadline, "strata did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
#[ignore = "needs root, strace and systemd-analyze (make test runs it)"]
fn the_socket_path_with_nts_makes_no_call_the_unit_refuses() {
    if !available("root", is_root())
        || !available("strace", have_command("strace"))
        || !available("systemd-analyze", have_command("systemd-analyze"))
    {
        return;
    }
    let allowed = unit_allowed_syscalls();
    let dir = scratch("syscalls-socket");
    let cert = dir.0.join("server.pem");
    let key = dir.0.join("server.key");
    let key_pair = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    fs::write(&cert, params.self_signed(&key_pair).unwrap().pem()).unwrap();
    fs::write(&key, key_pair.serialize_pem()).unwrap();
    let control = dir.0.join("run/control.sock");
    let counts = dir.0.join("strace.txt");
    let key_file = dir.0.join("nts.key");
    let ke = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let mut args = socket_args(&control);
    let listen = args[1].clone();
    for a in [
        "--user",
        "nobody",
        "--nts-certificate",
        cert.to_str().unwrap(),
        "--nts-private-key",
        key.to_str().unwrap(),
        "--nts-key-file",
        key_file.to_str().unwrap(),
        "--nts-ke-listen",
        &ke,
    ] {
        args.push(a.to_string());
    }
    // /metrics too, on a port of its own.
    let at = args.iter().position(|a| a == "--metrics").unwrap();
    args[at + 1] = "127.0.0.1:0".into();
    let prefix = ["strace", "-f", "-C", "-o", counts.to_str().unwrap(), "--"];
    let mut d = Daemon::start(&dir.0, "022", &prefix, &strs(&args), &[]);
    d.wait_for_log("running as user nobody");
    let reply = ntp_query(listen.parse().unwrap(), Duration::from_secs(2));
    assert!(reply.is_some(), "{}", d.log());
    let log = d.log();
    let metrics = log
        .split("metrics on http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .expect("the metrics address in the log");
    {
        use std::io::{Read, Write};
        let mut http = std::net::TcpStream::connect(metrics).unwrap();
        http.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut body = String::new();
        http.read_to_string(&mut body).unwrap();
        assert!(body.contains("strata_"), "{body}");
    }
    // A TLS client that hangs up at once: the NTS-KE thread's accept and handshake path.
    drop(std::net::TcpStream::connect(&ke).unwrap());
    let status = Command::new(strata_bin())
        .args(["status", "--control", control.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(status.status.success());
    stop_traced(&mut d);
    check_trace(&counts, &allowed, &["recvmmsg", "setresuid", "accept4"]);
}

#[test]
fn the_unit_verifies_and_scores_under_3() {
    if !available("systemd-analyze", have_command("systemd-analyze")) {
        return;
    }
    let dir = scratch("unit");
    // As installed, but with this build's binary and no man page (not installed here).
    let unit = UNIT
        .replace("/usr/sbin/strata", strata_bin().to_str().unwrap())
        .replace("man:strata(8) ", "");
    let path = dir.0.join("strata.service");
    fs::write(&path, unit).unwrap();
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        verify.status.success() && verify.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=yes"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&security.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for strata.service: ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "no exposure level in:\n{text}{}",
                String::from_utf8_lossy(&security.stderr)
            )
        });
    eprintln!("systemd-analyze security: exposure {score}");
    assert!(score < 3.0, "exposure {score}:\n{text}");
}

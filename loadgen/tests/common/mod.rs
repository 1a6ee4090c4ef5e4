//! Shared pieces of the loadgen tests: the binary run with a time bound and its JSON read back, a
//! test-only NTP responder with configurable faults, chronyd and `strata serve` as child
//! processes that are killed on every exit path.
#![allow(dead_code)]

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use strata::proto::clock::{Clock, ClockParams};
use strata::proto::respond::{respond, Admission};
use strata::proto::state::{ServerState, UnsyncPolicy};
use strata::proto::wire::ntp::Leap;
use strata::proto::wire::NtpShort;
use strata::sys::clock::read::{kernel_tai_offset, read_clock_ns};
use strata::sys::clock::SystemClock;

pub const LOADGEN: &str = env!("CARGO_BIN_EXE_strata-loadgen");

/// Whether a missing peer fails the test (set by `make test` and CI) or skips it.
pub fn interop_required() -> bool {
    std::env::var_os("STRATA_REQUIRE_INTEROP").is_some_and(|v| v == "1")
}

/// Returns false (and prints a SKIPPED line) when `what` is missing and the test may be skipped;
/// panics when interop tests are required.
pub fn available(what: &str, ok: bool) -> bool {
    if !ok {
        assert!(
            !interop_required(),
            "{what} is required (STRATA_REQUIRE_INTEROP=1) but missing"
        );
        eprintln!("SKIPPED: {what} is not available here");
    }
    ok
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A UDP port on loopback that no one uses right now.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What one loadgen run printed.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The JSON object on stdout; panics with the run's output if there is none.
    pub fn json(&self) -> Value {
        assert!(
            self.status.success(),
            "loadgen failed ({}): {}",
            self.status,
            self.stderr
        );
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

/// Runs strata-loadgen with `args`, killing it if it runs longer than `limit`.
pub fn loadgen(args: &[&str], limit: Duration) -> Run {
    let mut child = Command::new(LOADGEN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start strata-loadgen");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("strata-loadgen {args:?} ran longer than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// The one step of a single-rate run.
pub fn only_step(report: &Value) -> &Value {
    let steps = report["steps"].as_array().expect("steps array");
    assert_eq!(steps.len(), 1, "{report}");
    &steps[0]
}

pub fn u(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a count in {v}"))
}

pub fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

/// Sends one NTPv4 client request and returns the reply, if one comes within `timeout`.
pub fn ntp_query(server: SocketAddr, timeout: Duration) -> Option<Vec<u8>> {
    let sock = UdpSocket::bind("127.0.0.1:0").ok()?;
    sock.set_read_timeout(Some(timeout)).ok()?;
    let mut req = [0u8; 48];
    req[0] = 0x23; // LI 0, VN 4, mode 3
    req[40..48].copy_from_slice(&0x0123_4567_89ab_cdefu64.to_be_bytes());
    sock.send_to(&req, server).ok()?;
    let mut buf = [0u8; 512];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

/// What the test responder does to the requests it gets.
#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Answers every request correctly.
    None,
    /// Corrupts the origin timestamp of every n-th reply.
    CorruptOriginEvery(u64),
    /// Answers every request twice.
    AnswerTwice,
    /// Drops every n-th request.
    DropEvery(u64),
    /// Answers only the first n requests (a sink that still proves it is there).
    AnswerFirst(u64),
}

/// What the test responder did, counted as it did it.
#[derive(Debug, Default)]
pub struct Counts {
    pub requests: AtomicU64,
    pub replies: AtomicU64,
    pub corrupted: AtomicU64,
    pub dropped: AtomicU64,
}

/// A test-only NTP server on loopback: a thread answering with strata's respond(), with a fault.
pub struct Responder {
    pub addr: SocketAddr,
    pub counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Responder {
    pub fn start(fault: Fault) -> Responder {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let addr = socket.local_addr().unwrap();
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (counts.clone(), stop.clone());
        let handle = std::thread::spawn(move || serve(socket, fault, &c, &s));
        Responder {
            addr,
            counts,
            stop,
            handle: Some(handle),
        }
    }

    pub fn count(&self, which: fn(&Counts) -> &AtomicU64) -> u64 {
        which(&self.counts).load(Ordering::SeqCst)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve(socket: UdpSocket, fault: Fault, counts: &Counts, stop: &AtomicBool) {
    let params = ClockParams::identity(kernel_tai_offset());
    let clock = SystemClock::realtime(params);
    let state = ServerState {
        synchronized: true,
        leap: Leap::NoWarning,
        stratum: 1,
        precision: -20,
        root_delay: NtpShort::ZERO,
        root_dispersion: NtpShort(1),
        reference_id: *b"TEST",
        reference_time: clock
            .params
            .ntp_from_realtime(read_clock_ns(libc::CLOCK_REALTIME)),
        unsync_policy: UnsyncPolicy::Answer,
    };
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::SeqCst) {
        let Ok((len, from)) = socket.recv_from(&mut buf) else {
            continue;
        };
        let rx = params.ntp_from_realtime(read_clock_ns(libc::CLOCK_REALTIME));
        let n = counts.requests.fetch_add(1, Ordering::SeqCst) + 1;
        let Ok(reply) = respond(&mut buf[..len], rx, clock.now(), Admission::Serve, &state) else {
            continue;
        };
        let copies = match fault {
            Fault::None => 1,
            Fault::CorruptOriginEvery(k) if n.is_multiple_of(k) => {
                // Flip bits of the origin timestamp, as a broken server would.
                buf[24..32].iter_mut().for_each(|b| *b ^= 0x5a);
                counts.corrupted.fetch_add(1, Ordering::SeqCst);
                1
            }
            Fault::CorruptOriginEvery(_) => 1,
            Fault::AnswerTwice => 2,
            Fault::DropEvery(k) if n.is_multiple_of(k) => {
                counts.dropped.fetch_add(1, Ordering::SeqCst);
                0
            }
            Fault::DropEvery(_) => 1,
            Fault::AnswerFirst(k) => u64::from(n <= k),
        };
        for _ in 0..copies {
            if socket.send_to(&buf[..reply.len], from).is_ok() {
                counts.replies.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// A child process killed (and reaped) when dropped, with its output collected in a file.
pub struct ChildGuard {
    pub child: Child,
    pub log: PathBuf,
}

impl ChildGuard {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until `addr` answers an NTP query, or panics with the log.
    pub fn wait_answering(&mut self, addr: SocketAddr, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while ntp_query(addr, Duration::from_millis(200)).is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{what} exited early ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{what} did not answer on {addr} in 10 s: {}",
                self.log()
            );
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "strata-loadgen-{tag}-{}-{}",
            std::process::id(),
            read_clock_ns(libc::CLOCK_MONOTONIC)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub const CHRONYD: &str = "/usr/sbin/chronyd";

/// Starts chronyd in the foreground serving its local clock at stratum 1 on 127.0.0.1:`port`,
/// without touching the system clock (-x), and waits until it answers.
pub fn start_chronyd(dir: &Path, port: u16) -> ChildGuard {
    let conf = dir.join("chrony.conf");
    std::fs::write(
        &conf,
        format!(
            "local stratum 1\nallow 127.0.0.1\nbindaddress 127.0.0.1\nport {port}\ncmdport 0\n\
             pidfile {}\n",
            dir.join("chronyd.pid").display()
        ),
    )
    .unwrap();
    let log = dir.join("chronyd.log");
    let mut cmd = Command::new(CHRONYD);
    cmd.args(["-d", "-x", "-f"]).arg(&conf);
    if is_root() {
        // Stay root: the scratch files belong to root, and the default user could not read them.
        cmd.args(["-u", "root"]);
    }
    let file = std::fs::File::create(&log).unwrap();
    let child = cmd
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("start chronyd");
    let mut guard = ChildGuard { child, log };
    guard.wait_answering(SocketAddr::from(([127, 0, 0, 1], port)), "chronyd");
    guard
}

/// The `strata` binary of this workspace, built (a no-op when fresh) with the cargo that runs
/// these tests, into the same target directory and profile.
///
/// Cargo only gives a package's own binaries to its integration tests (CARGO_BIN_EXE_*), and
/// `strata` belongs to the root package. The test executable sits in target/<profile>/deps/, so
/// the binary is target/<profile>/strata; building it first makes sure it is not stale.
pub fn strata_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let target_dir = profile_dir.parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "-p",
        "strata",
        "--bin",
        "strata",
        "--manifest-path",
    ])
    .arg(&manifest)
    .env("CARGO_TARGET_DIR", target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build -p strata");
    assert!(status.success(), "cargo build -p strata failed");
    let bin = profile_dir.join("strata");
    assert!(bin.exists(), "{} is missing after the build", bin.display());
    bin
}

/// Starts `strata serve --listen 127.0.0.1:PORT --local-stratum 1` and waits until it answers.
pub fn start_strata(dir: &Path, port: u16) -> ChildGuard {
    let log = dir.join("strata.log");
    let file = std::fs::File::create(&log).unwrap();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(strata_binary())
        .args([
            "serve",
            "--mode",
            "socket",
            "--listen",
            &listen,
            "--local-stratum",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(file)
        .spawn()
        .expect("start strata serve");
    let mut guard = ChildGuard { child, log };
    guard.wait_answering(SocketAddr::from(([127, 0, 0, 1], port)), "strata serve");
    guard
}

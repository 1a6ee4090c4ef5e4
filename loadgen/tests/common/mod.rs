//! Shared pieces of the loadgen tests: the binary run with a time bound and its JSON read back,
//! and a test-only NTP responder with configurable faults. What strata's tests share too (the
//! lab, strata and chronyd as child processes, availability) is in strata-test-support.
#![allow(dead_code)]

use std::io::Read;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;
use strata::proto::clock::{Clock, ClockParams};
use strata::proto::respond::{respond, Admission};
use strata::proto::state::ServerState;
use strata::sys::clock::read::{kernel_tai_offset, read_clock_ns};
use strata::sys::clock::SystemClock;
use strata_test_support::synced;

pub const LOADGEN: &str = env!("CARGO_BIN_EXE_strata-loadgen");

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
    // Synchronized just now: the replies' root dispersion stays small.
    let state = ServerState {
        reference_time: params.ntp_from_realtime(read_clock_ns(libc::CLOCK_REALTIME)),
        ..synced()
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

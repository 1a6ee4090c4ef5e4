//! Shared pieces of the integration tests: the strata binary as a child process, network
//! namespaces that are removed on every exit path, and real peers that may be missing.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const STRATA: &str = env!("CARGO_BIN_EXE_strata");

/// Whether a missing peer or privilege fails the test (set by `make test` and CI) or skips it.
pub fn interop_required() -> bool {
    std::env::var_os("STRATA_REQUIRE_INTEROP").is_some_and(|v| v == "1")
}

/// Returns false (and says why) when `what` is missing and the test may be skipped; panics when
/// interop tests are required.
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

pub fn have_command(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A port no one else on loopback is using right now.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends one NTPv4 client request and returns the reply, if one comes within `timeout`.
pub fn ntp_query(server: SocketAddr, timeout: Duration) -> Option<Vec<u8>> {
    let bind = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let sock = UdpSocket::bind(bind).ok()?;
    sock.set_read_timeout(Some(timeout)).ok()?;
    let mut req = [0u8; 48];
    req[0] = 0x23; // LI 0, VN 4, mode 3
    req[40..48].copy_from_slice(&0x0123_4567_89ab_cdefu64.to_be_bytes());
    sock.send_to(&req, server).ok()?;
    let mut buf = [0u8; 512];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

/// A `strata serve` child process, killed when dropped. Its log is collected as it runs.
pub struct Server {
    child: Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    log_reader: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    /// Starts `strata serve ARGS` (optionally inside a namespace) and waits until `probe` answers.
    pub fn start(netns: Option<&str>, args: &[&str], probe: Option<SocketAddr>) -> Server {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, STRATA]);
                c
            }
            None => Command::new(STRATA),
        };
        cmd.arg("serve")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start strata serve");
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        let log_reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut server = Server {
            child,
            log,
            log_reader: Some(log_reader),
        };
        if let Some(addr) = probe {
            let deadline = Instant::now() + Duration::from_secs(10);
            while ntp_query(addr, Duration::from_millis(200)).is_none() {
                if let Ok(Some(status)) = server.child.try_wait() {
                    panic!("strata serve exited early ({status}): {}", server.log());
                }
                assert!(
                    Instant::now() < deadline,
                    "strata serve did not answer on {addr} within 10 s"
                );
            }
        }
        server
    }

    /// The server's process id (inside a namespace too: `ip netns exec` execs it in place).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log contains `text` (for servers that cannot be probed with a query).
    pub fn wait_for_log(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log().contains(text) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("strata serve exited early ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "strata never logged {text:?}: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server with SIGTERM and returns its exit status and stderr.
    pub fn stop(mut self) -> (std::process::ExitStatus, String) {
        // SAFETY: kill with a valid pid of our own child and a standard signal.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                if let Some(reader) = self.log_reader.take() {
                    let _ = reader.join();
                }
                return (status, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "strata serve did not stop within 10 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A network namespace with loopback up, deleted (with everything in it) when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Netns {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "strata-t{}-{}-{}",
            std::process::id(),
            tag,
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        run_ok("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        run_ok("ip", &["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace and returns its output.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, cmd])
            .args(args)
            .output()
            .expect("ip netns exec")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes still in the namespace keep it alive; kill them first.
        let _ = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            });
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

pub fn run_ok(cmd: &str, args: &[&str]) -> Output {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

//! The programs the tests run: the workspace's binaries, `strata serve` ([`Server`]) and
//! chronyd ([`Chronyd`]) as child processes killed on every exit path, an NTP query, and
//! scratch files and directories removed when dropped.

use std::ffi::OsString;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::avail::is_root;
use crate::frames::client_request;

/// Binaries of a package of this workspace, built (a no-op when they are fresh) by the cargo
/// that runs the tests, into the same target directory and profile; their paths, in order.
///
/// Cargo only gives a package's own binaries to its tests (`CARGO_BIN_EXE_*`), and builds no
/// other package's for them. A test executable sits in `target/<profile>/deps/`, so the
/// binaries are `target/<profile>/NAME`; building them first makes sure they are not stale.
pub fn workspace_bins(package: &str, bins: &[&str]) -> Vec<PathBuf> {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let target_dir = profile_dir.parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--quiet", "-p", package]);
    for bin in bins {
        cmd.args(["--bin", bin]);
    }
    cmd.arg("--manifest-path")
        .arg(crate::workspace_root().join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", target_dir);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo build");
    assert!(status.success(), "cargo build -p {package} {bins:?} failed");
    bins.iter()
        .map(|bin| {
            let path = profile_dir.join(bin);
            assert!(path.exists(), "{} is missing after the build", path.display());
            path
        })
        .collect()
}

/// The `strata` binary. strata's own tests get it from cargo (`CARGO_BIN_EXE_strata`, set at run
/// time too); any other package's tests (loadgen's) build it with [`workspace_bins`], once per
/// test process.
pub fn strata_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| match std::env::var_os("CARGO_BIN_EXE_strata") {
        Some(path) => PathBuf::from(path),
        None => workspace_bins("strata", &["strata"]).remove(0),
    })
}

/// A port no one else on loopback is using right now.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends one NTPv4 client request ([`client_request`]: mode 3, transmit
/// [`QUERY_TRANSMIT`](crate::frames::QUERY_TRANSMIT)) from loopback and returns the reply, if one
/// comes within `timeout`.
pub fn ntp_query(server: SocketAddr, timeout: Duration) -> Option<Vec<u8>> {
    let bind = if server.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let sock = UdpSocket::bind(bind).ok()?;
    sock.set_read_timeout(Some(timeout)).ok()?;
    sock.send_to(&client_request(0x23, 48), server).ok()?;
    let mut buf = [0u8; 512];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

/// A `strata serve` child process, killed when dropped. Its log is collected as it runs.
pub struct Server {
    child: Child,
    log: Arc<Mutex<String>>,
    log_reader: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts `strata serve ARGS` (optionally inside a namespace) and waits until `probe` answers.
    pub fn start(netns: Option<&str>, args: &[&str], probe: Option<SocketAddr>) -> Server {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(strata_bin());
                c
            }
            None => Command::new(strata_bin()),
        };
        cmd.arg("serve")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start strata serve");
        let log = Arc::new(Mutex::new(String::new()));
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

    /// Waits until the log contains `text` (for servers that cannot be probed with a query), 30 s
    /// at most: a generous bound, as CI runs a test binary's lab tests side by side on two cores
    /// (a synchronization seen in 5 s alone took over 10 there once).
    pub fn wait_for_log(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
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

/// Where Debian's chrony package puts chronyd.
pub const CHRONYD: &str = "/usr/sbin/chronyd";

/// chronyd in the foreground serving its local clock at stratum 1, without touching the system
/// clock (`-x`); killed (and its scratch directory, with its configuration and log, removed)
/// when dropped.
pub struct Chronyd {
    child: Child,
    dir: TempDir,
}

impl Chronyd {
    /// Starts chronyd on `bind`:`port`, answering anyone, inside namespace `netns` (None: this
    /// one), its clock `offset` from the true time when given (libfaketime's syntax: "+10s").
    /// It does not wait for chronyd to serve (see [`Chronyd::wait_answering`]).
    pub fn start(netns: Option<&str>, bind: &str, port: u16, offset: Option<&str>) -> Chronyd {
        Chronyd::start_configured(
            netns,
            &format!("local stratum 1\nallow\nbindaddress {bind}\nport {port}\n"),
            &[],
            offset,
        )
    }

    /// [`Chronyd::start`] with more configuration lines (`extra`, e.g. its NTS server's).
    pub fn start_with(
        netns: Option<&str>,
        bind: &str,
        port: u16,
        offset: Option<&str>,
        extra: &str,
    ) -> Chronyd {
        Chronyd::start_configured(
            netns,
            &format!("local stratum 1\nallow\nbindaddress {bind}\nport {port}\n{extra}"),
            &[],
            offset,
        )
    }

    /// Starts chronyd with the directives `config` (each `{dir}` in it replaced by its scratch
    /// directory, where `files`, name and text, are written first, readable by their owner
    /// only: a `keyfile`, say), besides its own pidfile, driftfile and no command port.
    pub fn start_configured(
        netns: Option<&str>,
        config: &str,
        files: &[(&str, &str)],
        offset: Option<&str>,
    ) -> Chronyd {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("chronyd");
        for (name, text) in files {
            let path = dir.0.join(name);
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let conf = dir.0.join("chrony.conf");
        std::fs::write(
            &conf,
            format!(
                "{}\ncmdport 0\npidfile {1}/chronyd.pid\ndriftfile {1}/drift\nntsdumpdir {1}\n",
                config.replace("{dir}", &dir.0.display().to_string()),
                dir.0.display()
            ),
        )
        .unwrap();
        let mut argv: Vec<OsString> = Vec::new();
        if let Some(offset) = offset {
            argv.extend(["faketime", "-f", offset].map(OsString::from));
        }
        argv.extend([CHRONYD, "-d", "-x"].map(OsString::from));
        if is_root() {
            // Stay root: the scratch files belong to root, and the default user could not read them.
            argv.extend(["-u", "root"].map(OsString::from));
        }
        argv.extend([OsString::from("-f"), conf.into_os_string()]);
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).args(&argv);
                c
            }
            None => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
        };
        let log = std::fs::File::create(dir.0.join("chronyd.log")).unwrap();
        let child = cmd
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start chronyd");
        Chronyd { child, dir }
    }

    /// Its scratch directory (its configuration, log, and any `logdir` pointed at `{dir}`).
    pub fn dir(&self) -> &Path {
        &self.dir.0
    }

    /// What chronyd has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("chronyd.log")).unwrap_or_default()
    }

    /// Waits until `addr` answers an NTP query from this namespace, or panics with the log.
    pub fn wait_answering(&mut self, addr: SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while ntp_query(addr, Duration::from_millis(200)).is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("chronyd exited early ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "chronyd did not answer on {addr} in 10 s: {}",
                self.log()
            );
        }
    }
}

impl Drop for Chronyd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A path in the temporary directory unique to this call: `strata-t<pid>-<tag>-<n>.<ext>`.
pub fn temp_path(tag: &str, ext: &str) -> PathBuf {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    std::env::temp_dir().join(format!(
        "strata-t{}-{tag}-{}.{ext}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Removes a file (a scratch file, a control socket a killed server left) when the test ends,
/// however it ends.
pub struct RemoveOnDrop(pub PathBuf);

impl RemoveOnDrop {
    /// The path as a command-line argument.
    pub fn arg(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A scratch directory (`strata-t<pid>-<tag>-<n>.d` in the temporary directory) removed, with
/// what is in it, when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let dir = temp_path(tag, "d");
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Waits up to `secs` for `text` in the server's log; the log when it is there.
pub fn wait_log(server: &Server, text: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let log = server.log();
        if log.contains(text) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {text:?} within {secs} s in:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `strata status --json` through the control socket `control`, which must answer.
pub fn status_json(control: &std::path::Path) -> serde_json::Value {
    let out = Command::new(strata_bin())
        .args(["status", "--json", "--control"])
        .arg(control)
        .output()
        .expect("run strata status");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("status --json is JSON")
}

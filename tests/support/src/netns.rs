//! Network namespaces for the tests, each removed (with the processes in it) when its owner is
//! dropped, which covers every way a test ends: [`Netns`], one namespace, and [`Lab`], the
//! three namespaces of `bench/lab`. Their names start with `strata-t<pid>-` and carry a
//! sequence number, so that tests running in parallel, in one process or several, never meet
//! each other or the lab an engineer is using.

use std::os::fd::AsRawFd;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::avail::{available, have_command, is_root};

/// The next unique name part of this test process: `strata-t<pid>-<tag>-<n>`.
fn unique(tag: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "strata-t{}-{tag}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs a command that must succeed and returns its output.
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

/// Runs `f` on a thread that lives in the network namespace `ns` (setns moves only the calling
/// thread), so that its sockets are that namespace's.
pub fn run_in<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: a valid namespace descriptor; CLONE_NEWNET moves only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("the namespace thread panicked")
}

/// Runs `cmd ARGS` inside namespace `ns` and returns its output.
fn exec_in(ns: &str, cmd: &str, args: &[&str]) -> Output {
    Command::new("ip")
        .args(["netns", "exec", ns, cmd])
        .args(args)
        .output()
        .expect("ip netns exec")
}

/// A network namespace with loopback up, deleted (with everything in it) when dropped.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Whether namespaces can be made here: root and `ip` (see [`available`]).
    pub fn available() -> bool {
        available("root (for network namespaces)", is_root())
            && available("ip (Debian package iproute2)", have_command("ip"))
    }

    /// A new namespace, `strata-t<pid>-<tag>-<n>`.
    pub fn new(tag: &str) -> Netns {
        let name = unique(tag);
        run_ok("ip", &["netns", "add", &name]);
        // From here on, Drop removes it.
        let ns = Netns { name };
        run_ok("ip", &["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace and returns its output.
    pub fn exec(&self, cmd: &str, args: &[&str]) -> Output {
        exec_in(&self.name, cmd, args)
    }

    /// Runs `f` on a thread inside the namespace (see [`run_in`]).
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        run_in(&self.name, f)
    }

    /// A veth pair made straight in the two namespaces (so that the device names only need to
    /// be unique in each): `dev` here with address `addr` (CIDR), `peer_dev` in `peer` with
    /// `peer_addr`, both up. It goes with the namespaces.
    pub fn veth(&self, dev: &str, addr: &str, peer: &Netns, peer_dev: &str, peer_addr: &str) {
        run_ok(
            "ip",
            &[
                "link", "add", dev, "netns", &self.name, "type", "veth", "peer", "name", peer_dev, "netns",
                &peer.name,
            ],
        );
        for (ns, dev, addr) in [(self, dev, addr), (peer, peer_dev, peer_addr)] {
            run_ok("ip", &["-n", &ns.name, "addr", "add", addr, "dev", dev]);
            run_ok("ip", &["-n", &ns.name, "link", "set", dev, "up"]);
        }
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Processes still in the namespace keep it alive; kill them first.
        if let Ok(o) = Command::new("ip").args(["netns", "pids", &self.name]).output() {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// The netns lab of `bench/lab` (namespaces PREFIX-cli, PREFIX-srv, PREFIX-up joined by veth
/// pairs with two queues each; addresses in the script's header) under a prefix of this test's
/// own (`STRATA_LAB_PREFIX=strata-t<pid>-lab-<n>`), torn down (`bench/lab down`) when dropped.
pub struct Lab {
    pub prefix: String,
}

impl Lab {
    /// Whether the lab can be made here: root and `ip` (see [`available`]).
    pub fn available() -> bool {
        available("root (for network namespaces and XDP)", is_root())
            && available("ip (Debian package iproute2)", have_command("ip"))
    }

    /// Brings a new lab up; panics (after removing what was made) when `bench/lab up` fails.
    pub fn up() -> Lab {
        // From here on, Drop runs `bench/lab down` (the script also cleans up a failed `up`).
        let lab = Lab {
            prefix: unique("lab"),
        };
        let out = lab.script("up");
        assert!(
            out.status.success(),
            "bench/lab up failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    fn script(&self, action: &str) -> Output {
        Command::new(crate::workspace_root().join("bench/lab"))
            .arg(action)
            .env("STRATA_LAB_PREFIX", &self.prefix)
            .output()
            .expect("run bench/lab")
    }

    /// The name of namespace `side` (`cli`, `srv` or `up`).
    pub fn ns(&self, side: &str) -> String {
        format!("{}-{side}", self.prefix)
    }

    /// `ip -n NS ARGS` in namespace `side`, which must succeed; its stdout.
    pub fn ip(&self, side: &str, args: &[&str]) -> String {
        let ns = self.ns(side);
        let out = run_ok("ip", &[&["-n", ns.as_str()], args].concat());
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a command in namespace `side` and returns its output.
    pub fn exec(&self, side: &str, cmd: &str, args: &[&str]) -> Output {
        exec_in(&self.ns(side), cmd, args)
    }

    /// Runs `f` on a thread inside namespace `side` (see [`run_in`]).
    pub fn run_in<T: Send + 'static>(&self, side: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        run_in(&self.ns(side), f)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.script("down");
    }
}

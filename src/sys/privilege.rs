//! Giving up root once set up: `strata serve`, started as root (or with the unit's bounding set),
//! loads and attaches the XDP program and binds its sockets, then switches every thread to the
//! configured user with no capability left.
//!
//! Why nothing is needed afterwards: the AF_XDP rings, the UMEM and the UDP sockets are used
//! through descriptors already open; the XDP program is attached through a bpf_link, which the
//! kernel detaches when its descriptor closes (no CAP_NET_ADMIN at exit); map reads and the state
//! map's writes go through descriptors and a mapping that the process holds (since Linux 6.5 the
//! bpf(2) commands on an open map need no capability). The control thread's upstream sockets
//! need none. Only `discipline_system` needs one later: CAP_SYS_TIME for adjtimex, kept by the
//! control thread alone ([`keep_in_this_thread`]).
//!
//! Linux keeps credentials per thread; glibc's setgroups/setresgid/setresuid change them in
//! every thread of the process (its "setxid" broadcast), and the kernel clears the permitted and
//! effective capabilities of each thread that goes from uid 0 to another, unless that thread set
//! PR_SET_KEEPCAPS. So one call from the main thread drops everything everywhere, and a thread
//! that must keep a capability opts in beforehand.

use std::cell::Cell;
use std::ffi::CString;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

/// A user to run as, looked up in the user database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    /// The user's primary group: the process's group, and the control socket's.
    pub gid: u32,
}

/// Looks `name` up (getpwnam_r: /etc/passwd, or whatever NSS says).
pub fn lookup_user(name: &str) -> io::Result<RunAs> {
    let c_name = CString::new(name).map_err(|_| io::Error::other(format!("{name:?} is not a user name")))?;
    let mut buf = vec![0u8; 4096];
    loop {
        // SAFETY: passwd is plain data, valid when zeroed; getpwnam_r writes it and the strings it
        // points to into `buf`, whose length it is given; `result` is set to null or to `pwd`.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: as above; every pointer is valid for the call.
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if result.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no user {name:?} on this machine (the Debian package creates `strata`)"),
            ));
        }
        return Ok(RunAs {
            name: name.to_string(),
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        });
    }
}

/// A capability a thread may keep after the switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// adjtimex and clock_settime on CLOCK_REALTIME (`discipline_system`).
    SysTime,
}

impl Capability {
    /// Its bit in a capability mask.
    pub fn bit(self) -> u64 {
        match self {
            // linux/capability.h: CAP_SYS_TIME is 25.
            Capability::SysTime => 1 << 25,
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Capability::SysTime => "CAP_SYS_TIME",
        })
    }
}

/// Set once every thread runs as the new user.
static SWITCHED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// What this thread asked to keep, until it has trimmed its capabilities to that.
    static KEEP: Cell<Option<Capability>> = const { Cell::new(None) };
}

/// Asks that this thread keep `cap` across [`switch_user`]: call it in the thread, before the
/// switch. The thread then calls [`settle_this_thread`] now and then (its loop), which, once the
/// switch happened, trims its capabilities to `cap` alone.
pub fn keep_in_this_thread(cap: Capability) -> io::Result<()> {
    // SAFETY: PR_SET_KEEPCAPS takes an integer argument and changes only this thread's flag.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    KEEP.with(|k| k.set(Some(cap)));
    Ok(())
}

/// After the switch, trims this thread's capabilities to the one it kept (permitted and
/// effective), and turns PR_SET_KEEPCAPS off again. Cheap when there is nothing to do.
pub fn settle_this_thread() -> io::Result<()> {
    let Some(cap) = KEEP.with(Cell::get) else {
        return Ok(());
    };
    if !SWITCHED.load(Ordering::Acquire) {
        return Ok(());
    }
    KEEP.with(|k| k.set(None));
    set_this_thread(cap.bit(), cap.bit())?;
    // SAFETY: as in keep_in_this_thread.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The kernel's capability header and data (linux/capability.h, version 3: two 32-bit words).
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

/// Sets this thread's permitted and effective sets (inheritable emptied).
fn set_this_thread(permitted: u64, effective: u64) -> io::Result<()> {
    let header = CapHeader {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: effective as u32,
            permitted: permitted as u32,
            inheritable: 0,
        },
        CapData {
            effective: (effective >> 32) as u32,
            permitted: (permitted >> 32) as u32,
            inheritable: 0,
        },
    ];
    // SAFETY: capset reads one header and two data words (version 3), both valid for the call;
    // pid 0 is the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Switches every thread of the process to `user` and its primary group (supplementary groups:
/// that group alone). Threads that did not ask to keep a capability lose them all.
pub fn switch_user(user: &RunAs) -> io::Result<()> {
    let context = |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{what}: {e}"));
    let groups = [user.gid as libc::gid_t];
    // SAFETY: setgroups reads `groups.len()` gids from a valid array; glibc applies it (as the
    // two calls below) to every thread of the process.
    if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } != 0 {
        return Err(context("setgroups", io::Error::last_os_error()));
    }
    let gid = user.gid as libc::gid_t;
    // SAFETY: integer arguments only.
    if unsafe { libc::setresgid(gid, gid, gid) } != 0 {
        return Err(context("setresgid", io::Error::last_os_error()));
    }
    let uid = user.uid as libc::uid_t;
    // SAFETY: integer arguments only.
    if unsafe { libc::setresuid(uid, uid, uid) } != 0 {
        return Err(context("setresuid", io::Error::last_os_error()));
    }
    SWITCHED.store(true, Ordering::Release);
    Ok(())
}

/// One thread's identity as /proc says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThreadCredentials {
    pub tid: u32,
    pub name: String,
    /// Real, effective, saved and file-system uid.
    pub uids: [u32; 4],
    pub gids: [u32; 4],
    pub permitted: u64,
    pub effective: u64,
}

/// Every thread's credentials, from /proc/self/task/*/status: the check that the switch reached
/// them all.
pub fn thread_credentials() -> io::Result<Vec<ThreadCredentials>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc/self/task")? {
        let entry = entry?;
        let Ok(text) = std::fs::read_to_string(entry.path().join("status")) else {
            continue; // the thread ended meanwhile
        };
        if let Some(creds) = parse_status(&text) {
            out.push(creds);
        }
    }
    out.sort_by_key(|c| c.tid);
    Ok(out)
}

/// Reads the fields of a /proc/PID/status that [`ThreadCredentials`] holds.
pub fn parse_status(text: &str) -> Option<ThreadCredentials> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
            .map(str::trim)
    };
    let ids = |name: &str| -> Option<[u32; 4]> {
        let v: Vec<u32> = field(name)?
            .split_whitespace()
            .map(|n| n.parse().ok())
            .collect::<Option<_>>()?;
        v.try_into().ok()
    };
    let caps = |name: &str| u64::from_str_radix(field(name)?, 16).ok();
    Some(ThreadCredentials {
        tid: field("Pid")?.parse().ok()?,
        name: field("Name")?.to_string(),
        uids: ids("Uid")?,
        gids: ids("Gid")?,
        permitted: caps("CapPrm")?,
        effective: caps("CapEff")?,
    })
}

/// The names of the capabilities in a mask, as capabilities(7) spells them.
pub fn capability_names(mask: u64) -> Vec<String> {
    const NAMES: [&str; 41] = [
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    (0..64)
        .filter(|bit| mask & (1 << bit) != 0)
        .map(|bit| match NAMES.get(bit) {
            Some(name) => format!("CAP_{name}"),
            None => format!("capability {bit}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_and_a_missing_user_is_named() {
        let root = lookup_user("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        let e = lookup_user("strata-no-such-user").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(e.to_string().contains("no user \"strata-no-such-user\""), "{e}");
    }

    #[test]
    fn a_status_file_is_read() {
        let text = "Name:\tstrata-control\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t10\nPid:\t12\n\
                    Uid:\t105\t105\t105\t105\nGid:\t110\t110\t110\t110\nCapInh:\t0000000000000000\n\
                    CapPrm:\t0000000002000000\nCapEff:\t0000000002000000\n";
        let c = parse_status(text).unwrap();
        assert_eq!(c.tid, 12);
        assert_eq!(c.name, "strata-control");
        assert_eq!(c.uids, [105; 4]);
        assert_eq!(c.gids, [110; 4]);
        assert_eq!(capability_names(c.permitted), vec!["CAP_SYS_TIME"]);
        assert_eq!(c.effective, Capability::SysTime.bit());
        // This process's own threads are all there.
        let mine = thread_credentials().unwrap();
        assert!(mine.iter().any(|c| c.tid == std::process::id()), "{mine:?}");
    }
}

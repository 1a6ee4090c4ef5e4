//! The control socket: a Unix stream socket on which `strata serve` answers `strata status`.
//!
//! The protocol is one JSON [`Report`] per connection: the server writes it as soon as it
//! accepts, then closes; the client reads to the end. The server never reads from the client,
//! so a client that says nothing costs nothing, and a report (a few kilobytes) fits in the
//! socket's send buffer, so one that never reads cannot hold the thread either (the write also
//! has a timeout).

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::report::Report;

/// How long the server waits for a client to take its report.
const WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the client waits for the report.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A report larger than this is not one (the client stops reading).
const MAX_REPORT_BYTES: u64 = 16 * 1024 * 1024;
/// How often the accept loop looks at the shutdown flag.
const TICK: Duration = Duration::from_millis(100);

/// The running control socket. Removes its file when joined.
pub struct ControlSocket {
    path: PathBuf,
    thread: JoinHandle<()>,
}

impl ControlSocket {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the thread (after the shutdown flag was set) and removes the socket file.
    pub fn join(self) -> thread::Result<()> {
        let result = self.thread.join();
        match fs::remove_file(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => log::warn!(
                "cannot remove the control socket {}: {e} (the next start replaces it)",
                self.path.display()
            ),
            _ => {}
        }
        result
    }
}

/// Makes the report a client gets.
pub type Reporter = dyn Fn() -> Report + Send + Sync;

/// The socket's mode: its owner and group may connect (`strata status`), nobody else.
pub const SOCKET_MODE: u32 = 0o660;
/// The mode of a directory strata makes (or is given empty) for the socket.
pub const DIR_MODE: u32 = 0o750;

/// Who gets the socket: None leaves it to the process's own user and group; Some((uid, gid))
/// gives the socket, and the directory strata made or was given empty for it, to the user
/// strata will switch to, so that it can remove them at exit, and to that user's group, whose
/// members may then run `strata status`.
pub type Owner = Option<(u32, u32)>;

/// Creates the socket at `path` and starts answering on it, mode [`SOCKET_MODE`] whatever the
/// umask, in a directory that it creates (or that is empty, as systemd's RuntimeDirectory=
/// makes it) with mode [`DIR_MODE`]. A directory that holds other files is left as it is.
///
/// A socket file left behind by a server that is gone (nothing accepts on it) is replaced; one
/// that a running server answers on is not, nor is a file that is not a socket.
pub fn start(
    path: &Path,
    report: Arc<Reporter>,
    shutdown: Arc<AtomicBool>,
    owner: Owner,
) -> io::Result<ControlSocket> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    let own_dir = match dir {
        Some(dir) => prepare_dir(dir, path, owner.is_some())?,
        None => false,
    };
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "{} is in use: another strata server answers on it",
                        path.display()
                    ),
                ));
            }
            fs::remove_file(path)?;
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot bind {}: {e}", path.display())))?;
    // bind() made it with the umask's mode; until the chmod only the directory guards it, which
    // is why the directory is set up first.
    set_access(path, SOCKET_MODE, owner)?;
    // The directory changes hands last: under the unit's capabilities, root has no
    // CAP_DAC_OVERRIDE and could not have made the socket in a directory it no longer owns.
    if let (true, Some(dir)) = (own_dir, dir) {
        set_access(dir, DIR_MODE, owner)?;
    }
    listener.set_nonblocking(true)?;
    let thread = thread::Builder::new()
        .name("strata-status".into())
        .spawn(move || serve(listener, &*report, &shutdown))?;
    Ok(ControlSocket {
        path: path.to_path_buf(),
        thread,
    })
}

/// Creates the socket's directory with [`DIR_MODE`], or sets that mode on an existing one that
/// holds nothing but, at most, this socket's stale file; true for such a directory, which is
/// then strata's to give to the owner.
fn prepare_dir(dir: &Path, socket: &Path, switching: bool) -> io::Result<bool> {
    let ours = match fs::read_dir(dir) {
        Ok(entries) => {
            let mut others = entries.filter_map(Result::ok).filter(|e| e.path() != socket);
            others.next().is_none()
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)
                .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display())))?;
            true
        }
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("cannot read {}: {e}", dir.display()),
            ))
        }
    };
    if ours {
        set_access(dir, DIR_MODE, None)?;
    } else if switching {
        {
            log::warn!(
                "the control socket's directory {} holds other files: strata leaves its owner and \
                 mode alone, and may not be able to remove the socket at exit once it runs as \
                 `user`; give the socket a directory of its own (the default /run/strata)",
                dir.display()
            );
        }
    }
    Ok(ours)
}

/// chmod, then chown if an owner is given: explicit, whatever the umask.
fn set_access(path: &Path, mode: u32, owner: Owner) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let failed =
        |what: &str, e: io::Error| io::Error::new(e.kind(), format!("cannot {what} {}: {e}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| failed("chmod", e))?;
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| failed("chown", e))?;
    }
    Ok(())
}

fn serve(listener: UnixListener, report: &Reporter, shutdown: &AtomicBool) {
    while !shutdown.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => answer(stream, report),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(TICK),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::warn!("control socket: accept failed: {e}");
                thread::sleep(TICK);
            }
        }
    }
}

fn answer(mut stream: UnixStream, report: &Reporter) {
    if stream.set_nonblocking(false).is_err() || stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err() {
        return;
    }
    let mut json = match serde_json::to_vec(&report()) {
        Ok(json) => json,
        Err(e) => {
            log::warn!("control socket: cannot encode the report: {e}");
            return;
        }
    };
    json.push(b'\n');
    // A client that went away is its own business.
    let _ = stream.write_all(&json);
}

/// Why `strata status` got no report, worded for the person who ran it.
#[derive(Debug)]
pub struct StatusError(pub String);

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Connects to the control socket at `path` and reads the report: (raw JSON, parsed).
pub fn request(path: &Path) -> Result<(String, Report), StatusError> {
    let p = path.display();
    let stream = UnixStream::connect(path).map_err(|e| {
        StatusError(match e.kind() {
            io::ErrorKind::NotFound => {
                format!("no control socket at {p}: is `strata serve` running? (it listens on --control PATH)")
            }
            io::ErrorKind::ConnectionRefused => format!(
                "the control socket {p} is stale: no server is answering on it (strata serve is not \
                 running, or ended without removing it)"
            ),
            io::ErrorKind::PermissionDenied => {
                format!("permission denied on the control socket {p}: run as a user that may open it")
            }
            _ => format!("cannot connect to the control socket {p}: {e}"),
        })
    })?;
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .map_err(|e| StatusError(format!("control socket {p}: {e}")))?;
    let mut json = String::new();
    stream
        .take(MAX_REPORT_BYTES)
        .read_to_string(&mut json)
        .map_err(|e| StatusError(format!("reading from the control socket {p} failed: {e}")))?;
    if json.trim().is_empty() {
        return Err(StatusError(format!(
            "the server on {p} closed the connection without a report"
        )));
    }
    let report = serde_json::from_str(&json).map_err(|e| {
        StatusError(format!(
            "the server on {p} sent a report this strata cannot read ({e}): is it another version?"
        ))
    })?;
    Ok((json, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_stale_and_foreign_sockets_get_clear_errors() {
        let dir = std::env::temp_dir().join(format!("strata-control-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("control.sock");
        let _ = fs::remove_file(&path);

        let e = request(&path).unwrap_err().to_string();
        assert!(e.starts_with("no control socket at "), "{e}");

        // A socket file with nobody listening: what a killed server leaves.
        drop(UnixListener::bind(&path).unwrap());
        let e = request(&path).unwrap_err().to_string();
        assert!(e.contains("is stale"), "{e}");

        // A server replaces the stale file; a second one refuses the live socket.
        let shutdown = Arc::new(AtomicBool::new(false));
        let (observed, _writer) = crate::daemon::observe::report::test_observed();
        let reporter: Arc<Reporter> = Arc::new(move || observed.report());
        let server = start(&path, reporter.clone(), shutdown.clone(), None).unwrap();
        let e = start(&path, reporter.clone(), shutdown.clone(), None)
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
        let (json, report) = request(&path).unwrap();
        assert!(json.ends_with("}\n"));
        assert_eq!(report.responders.len(), 1);
        shutdown.store(true, Ordering::Relaxed);
        server.join().unwrap();
        assert!(!path.exists());

        fs::write(&path, "not a socket").unwrap();
        let e = start(&path, reporter, Arc::new(AtomicBool::new(true)), None)
            .err()
            .unwrap();
        assert!(e.to_string().contains("is not a socket"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}

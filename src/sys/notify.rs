//! The systemd notification protocol (sd_notify(3)), spoken directly: one datagram of
//! `KEY=VALUE` lines to the Unix socket named by $NOTIFY_SOCKET (a path, or an abstract name
//! when it starts with `@`). Without $NOTIFY_SOCKET (not started by systemd with Type=notify)
//! every call does nothing.

use std::io;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where notifications go, if anywhere.
#[derive(Debug)]
pub struct Notifier {
    target: Option<(UnixDatagram, Target)>,
    watchdog: Option<Duration>,
}

#[derive(Debug, Clone)]
enum Target {
    Path(std::path::PathBuf),
    Abstract(Vec<u8>),
}

impl Notifier {
    /// From the environment systemd gives the service: $NOTIFY_SOCKET, and $WATCHDOG_USEC with
    /// $WATCHDOG_PID (the watchdog is this process's only when the pid is its own or unset).
    pub fn from_env() -> io::Result<Notifier> {
        let socket = std::env::var_os("NOTIFY_SOCKET");
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|usec| usec.parse::<u64>().ok())
            .filter(|&usec| usec > 0)
            .filter(|_| {
                std::env::var("WATCHDOG_PID")
                    .ok()
                    .and_then(|pid| pid.parse::<u32>().ok())
                    .is_none_or(|pid| pid == std::process::id())
            })
            .map(Duration::from_micros);
        let target = match socket {
            None => None,
            Some(name) => {
                use std::os::unix::ffi::OsStrExt;
                let bytes = name.as_bytes();
                let target = match bytes.strip_prefix(b"@") {
                    Some(rest) => Target::Abstract(rest.to_vec()),
                    None if bytes.starts_with(b"/") => Target::Path(name.clone().into()),
                    None => {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidInput,
                            format!("NOTIFY_SOCKET={name:?} is neither a path nor an abstract name"),
                        ))
                    }
                };
                Some((UnixDatagram::unbound()?, target))
            }
        };
        Ok(Notifier { target, watchdog })
    }

    /// One that sends nothing.
    pub fn disabled() -> Notifier {
        Notifier {
            target: None,
            watchdog: None,
        }
    }

    /// Whether systemd listens.
    pub fn enabled(&self) -> bool {
        self.target.is_some()
    }

    /// The watchdog interval systemd expects pings within, if it does.
    pub fn watchdog(&self) -> Option<Duration> {
        self.watchdog.filter(|_| self.enabled())
    }

    /// Sends the lines (each `KEY=VALUE`, without newlines in the value).
    pub fn notify(&self, lines: &[&str]) -> io::Result<()> {
        let Some((socket, target)) = &self.target else {
            return Ok(());
        };
        let message = lines.join("\n");
        match target {
            Target::Path(path) => socket.send_to(message.as_bytes(), path)?,
            Target::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
                socket.send_to_addr(message.as_bytes(), &addr)?
            }
        };
        Ok(())
    }

    /// READY=1 with a status line.
    pub fn ready(&self, status: &str) -> io::Result<()> {
        self.notify(&["READY=1", &format!("STATUS={}", one_line(status))])
    }

    /// A STATUS= line.
    pub fn status(&self, status: &str) -> io::Result<()> {
        self.notify(&[&format!("STATUS={}", one_line(status))])
    }

    /// WATCHDOG=1.
    pub fn watchdog_ping(&self) -> io::Result<()> {
        self.notify(&["WATCHDOG=1"])
    }

    /// STOPPING=1 with a status line.
    pub fn stopping(&self, status: &str) -> io::Result<()> {
        self.notify(&["STOPPING=1", &format!("STATUS={}", one_line(status))])
    }

    /// RELOADING=1 (the reload is over with the next READY=1).
    pub fn reloading(&self) -> io::Result<()> {
        self.notify(&["RELOADING=1"])
    }
}

/// A value without line breaks: each line of the message is a field.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_socket(target: Target) -> Notifier {
        Notifier {
            target: Some((UnixDatagram::unbound().unwrap(), target)),
            watchdog: Some(Duration::from_secs(10)),
        }
    }

    #[test]
    fn messages_reach_a_path_and_an_abstract_socket() {
        let dir = std::env::temp_dir().join(format!("strata-notify-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        let n = with_socket(Target::Path(path.clone()));
        n.ready("serving\nsynchronized").unwrap();
        let mut buf = [0u8; 256];
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving synchronized");
        std::fs::remove_dir_all(&dir).unwrap();

        use std::os::linux::net::SocketAddrExt;
        let name = format!("strata-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        let n = with_socket(Target::Abstract(name.into_bytes()));
        n.watchdog_ping().unwrap();
        let len = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"WATCHDOG=1");
        assert_eq!(n.watchdog(), Some(Duration::from_secs(10)));
    }

    #[test]
    fn without_a_socket_nothing_is_sent() {
        let n = Notifier {
            target: None,
            watchdog: Some(Duration::from_secs(1)),
        };
        assert!(!n.enabled());
        assert_eq!(n.watchdog(), None);
        n.ready("x").unwrap();
    }
}

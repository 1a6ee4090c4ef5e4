//! `GET /metrics` over HTTP/1.1, on one small thread of its own (no async runtime: one scrape
//! every few seconds does not need one).
//!
//! The thread multiplexes the listener and every connection with poll(), all non-blocking, so
//! that no client can hold it up:
//! - a request (line and headers) larger than [`MAX_REQUEST_BYTES`] gets 431 and is closed;
//! - a client that does not finish its request within [`REQUEST_TIMEOUT`], or does not take
//!   the response within [`RESPONSE_TIMEOUT`], is dropped;
//! - at most [`MAX_CONNECTIONS`] are open; a new one pushes out the oldest;
//! - anything but `GET /metrics` gets 404.
//!
//! Every response closes its connection (`Connection: close`). After the response the thread
//! keeps reading for up to [`LINGER`] and discards what comes, so that a client still sending
//! (an oversized request) gets the response instead of a reset.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::text::{CONTENT_TYPE_OPENMETRICS, CONTENT_TYPE_TEXT};

pub const MAX_CONNECTIONS: usize = 16;
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
pub const LINGER: Duration = Duration::from_secs(1);
/// The longest the thread sleeps in poll() before it looks at the shutdown flag and the
/// deadlines again.
const TICK: Duration = Duration::from_millis(100);

/// Which text format the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The classic text format 0.0.4 (the default).
    Text,
    /// OpenMetrics, for clients whose Accept header asks for it.
    OpenMetrics,
}

/// Makes the body of a scrape.
pub type Render = dyn Fn(Format) -> String + Send + Sync;

/// The running endpoint.
pub struct MetricsEndpoint {
    addr: SocketAddr,
    thread: JoinHandle<()>,
}

impl MetricsEndpoint {
    /// The address it listens on (with the port the kernel chose, if port 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Waits for the thread (after the shutdown flag was set).
    pub fn join(self) -> thread::Result<()> {
        self.thread.join()
    }
}

/// Binds `addr` and starts the thread.
pub fn start(
    addr: SocketAddr,
    render: Arc<Render>,
    shutdown: Arc<AtomicBool>,
) -> io::Result<MetricsEndpoint> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let thread = thread::Builder::new()
        .name("strata-metrics".into())
        .spawn(move || serve(listener, &*render, &shutdown))?;
    Ok(MetricsEndpoint { addr, thread })
}

enum Phase {
    /// Reading the request line and headers.
    Reading(Vec<u8>),
    /// Sending the response.
    Writing { out: Vec<u8>, sent: usize },
    /// Response sent and our side shut: discarding whatever the client still sends.
    Draining,
}

struct Conn {
    stream: TcpStream,
    accepted: Instant,
    deadline: Instant,
    phase: Phase,
}

/// What a connection needs next.
#[derive(PartialEq, Eq)]
enum Next {
    Continue,
    Close,
}

fn serve(listener: TcpListener, render: &Render, shutdown: &AtomicBool) {
    let mut conns: Vec<Conn> = Vec::new();
    let mut fds: Vec<libc::pollfd> = Vec::with_capacity(MAX_CONNECTIONS + 1);
    let mut accept_paused_until: Option<Instant> = None;
    let mut reported_accept_error = false;
    while !shutdown.load(Ordering::Relaxed) {
        let now = Instant::now();
        conns.retain(|c| now < c.deadline);
        let accepting = accept_paused_until.is_none_or(|t| now >= t);
        fds.clear();
        fds.push(libc::pollfd {
            fd: listener.as_raw_fd(),
            events: if accepting { libc::POLLIN } else { 0 },
            revents: 0,
        });
        for c in &conns {
            let events = match c.phase {
                Phase::Writing { .. } => libc::POLLOUT,
                Phase::Reading(_) | Phase::Draining => libc::POLLIN,
            };
            fds.push(libc::pollfd {
                fd: c.stream.as_raw_fd(),
                events,
                revents: 0,
            });
        }
        // SAFETY: `fds` is a live array of `fds.len()` pollfd structs; poll writes only revents.
        let rc = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                TICK.as_millis() as i32,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                log::warn!("metrics endpoint: poll failed: {e}");
                thread::sleep(TICK);
            }
            continue;
        }
        // In reverse, so that swap_remove only moves connections already handled.
        for i in (0..conns.len()).rev() {
            if fds[i + 1].revents != 0 && progress(&mut conns[i], render) == Next::Close {
                conns.swap_remove(i);
            }
        }
        if fds[0].revents & libc::POLLIN != 0 {
            accept_paused_until = None;
            if let Err(e) = accept_all(&listener, &mut conns, render) {
                // Out of descriptors, most likely: the pending connection stays in the backlog
                // and would wake poll() at once, so stop accepting for a tick.
                accept_paused_until = Some(Instant::now() + TICK);
                if !reported_accept_error {
                    reported_accept_error = true;
                    log::warn!("metrics endpoint: accept failed: {e} (further errors are not logged)");
                }
            }
        }
    }
}

fn accept_all(listener: &TcpListener, conns: &mut Vec<Conn>, render: &Render) -> io::Result<()> {
    // At most a table's worth per round, so that a flood of connections cannot keep the thread
    // from serving the ones it has.
    for _ in 0..MAX_CONNECTIONS {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if stream.set_nonblocking(true).is_err() {
            continue;
        }
        // Small responses go out at once rather than wait for Nagle.
        let _ = stream.set_nodelay(true);
        if conns.len() >= MAX_CONNECTIONS {
            // The oldest one has had the longest to send its request: it goes.
            if let Some(oldest) = (0..conns.len()).min_by_key(|&i| conns[i].accepted) {
                conns.swap_remove(oldest);
            }
        }
        let now = Instant::now();
        let mut conn = Conn {
            stream,
            accepted: now,
            deadline: now + REQUEST_TIMEOUT,
            phase: Phase::Reading(Vec::new()),
        };
        // The request is usually there already.
        if progress(&mut conn, render) == Next::Continue {
            conns.push(conn);
        }
    }
    Ok(())
}

/// Moves a connection forward as far as it goes without blocking.
fn progress(conn: &mut Conn, render: &Render) -> Next {
    if let Phase::Reading(buf) = &mut conn.phase {
        let mut chunk = [0u8; 2048];
        loop {
            match conn.stream.read(&mut chunk) {
                Ok(0) => return Next::Close,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = header_end(buf) {
                        let out = response(&buf[..end], render);
                        conn.phase = Phase::Writing { out, sent: 0 };
                        break;
                    }
                    if buf.len() > MAX_REQUEST_BYTES {
                        let out = plain(431, "Request Header Fields Too Large", "request too large\n");
                        conn.phase = Phase::Writing { out, sent: 0 };
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Next::Close,
            }
        }
        conn.deadline = Instant::now() + RESPONSE_TIMEOUT;
    }
    if let Phase::Writing { out, sent } = &mut conn.phase {
        while *sent < out.len() {
            match conn.stream.write(&out[*sent..]) {
                Ok(0) => return Next::Close,
                Ok(n) => *sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return Next::Close,
            }
        }
        if conn.stream.shutdown(Shutdown::Write).is_err() {
            return Next::Close;
        }
        conn.phase = Phase::Draining;
        conn.deadline = Instant::now() + LINGER;
    }
    // Draining: read and discard until the client closes (or the deadline ends it).
    let mut chunk = [0u8; 2048];
    loop {
        match conn.stream.read(&mut chunk) {
            Ok(0) => return Next::Close,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Next::Continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Next::Close,
        }
    }
}

/// Where the request's headers end (the index just past the blank line), if they do.
fn header_end(buf: &[u8]) -> Option<usize> {
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn plain(status: u16, reason: &str, body: &str) -> Vec<u8> {
    http_response(status, reason, "text/plain; charset=utf-8", body)
}

fn http_response(status: u16, reason: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The response to a complete request head.
fn response(head: &[u8], render: &Render) -> Vec<u8> {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.lines();
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let (method, target, version) = (request_line.next(), request_line.next(), request_line.next());
    let (Some(method), Some(target), Some(version)) = (method, target, version) else {
        return plain(400, "Bad Request", "bad request\n");
    };
    if !version.starts_with("HTTP/1.") || request_line.next().is_some() {
        return plain(400, "Bad Request", "bad request\n");
    }
    let path = target.split('?').next().unwrap_or("");
    if method != "GET" || path != "/metrics" {
        return plain(404, "Not Found", "not found: this endpoint serves GET /metrics\n");
    }
    let openmetrics = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("accept") && value.contains("application/openmetrics-text")
        })
    });
    let (format, content_type) = if openmetrics {
        (Format::OpenMetrics, CONTENT_TYPE_OPENMETRICS)
    } else {
        (Format::Text, CONTENT_TYPE_TEXT)
    };
    http_response(200, "OK", content_type, &render(format))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(format: Format) -> String {
        match format {
            Format::Text => "text body\n".into(),
            Format::OpenMetrics => "om body\n# EOF\n".into(),
        }
    }

    fn answer(request: &str) -> String {
        String::from_utf8(response(request.as_bytes(), &render)).unwrap()
    }

    #[test]
    fn routes_and_negotiation() {
        let ok = answer("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains("Content-Type: text/plain; version=0.0.4"), "{ok}");
        assert!(ok.ends_with("\r\n\r\ntext body\n"), "{ok}");
        assert!(ok.contains("Content-Length: 10\r\n"), "{ok}");
        let om =
            answer("GET /metrics?x=1 HTTP/1.1\r\nACCEPT: application/openmetrics-text;version=1.0.0\r\n\r\n");
        assert!(om.contains("application/openmetrics-text"), "{om}");
        assert!(om.ends_with("om body\n# EOF\n"), "{om}");
        for bad in [
            "GET / HTTP/1.1\r\n\r\n",
            "GET /metricsx HTTP/1.1\r\n\r\n",
            "POST /metrics HTTP/1.1\r\n\r\n",
            "HEAD /metrics HTTP/1.1\r\n\r\n",
        ] {
            assert!(answer(bad).starts_with("HTTP/1.1 404 Not Found"), "{bad}");
        }
        assert!(answer("GET\r\n\r\n").starts_with("HTTP/1.1 400"));
        assert!(answer("GET /metrics SPDY/3\r\n\r\n").starts_with("HTTP/1.1 400"));
    }

    #[test]
    fn header_ends() {
        assert_eq!(header_end(b"GET / HTTP/1.1\r\n\r\n"), Some(18));
        assert_eq!(header_end(b"GET / HTTP/1.0\n\n"), Some(16));
        assert_eq!(header_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }
}

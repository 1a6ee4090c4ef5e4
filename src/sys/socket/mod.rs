//! The portable server path: ordinary UDP sockets, one responder thread per configured core.
//!
//! Each thread is pinned to its core and has its own SO_REUSEPORT socket for every listen address,
//! so the kernel spreads clients over the threads and no socket is shared. A thread receives with
//! recvmmsg in batches, takes the kernel's receive timestamp of each datagram (SO_TIMESTAMPING),
//! answers it in place with `respond()`, re-stamps the transmit times and sends the whole batch
//! back with one sendmmsg, from the address each request was sent to (IP_PKTINFO).
//!
//! - [`bind`]: creating and binding the sockets;
//! - [`mmsg`]: the batch buffers and the control messages;
//! - [`responder`]: the loop of one thread;
//! - [`reply`]: the sockets the control thread answers mode-6 queries through;
//! - [`phc`]: the served interfaces' hardware stamping and PHCs.

pub mod bind;
pub mod mmsg;
pub mod phc;
pub mod reply;
pub mod responder;
pub mod txstamp;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::proto::admission::Admitter;
use crate::proto::interleave::XleaveTable;
use crate::proto::metrics::{CounterSnapshot, ResponderCounters};
use crate::proto::nts::NtsKeys;
use crate::proto::state::StateReader;
use crate::sys::handoff::SymmetricSender;

use crate::sys::pool::{check_responders, ResponderPool};

use bind::{bind_error, bind_reuseport, check_not_in_use, ServerSocket};
use responder::Responder;

/// What the socket path needs from the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketConfig {
    /// Addresses to serve on. Port 0 picks a free port, the same one for every thread
    /// ([`SocketServer::local_addrs`] says which).
    pub listen: Vec<SocketAddr>,
    /// One responder thread per entry, pinned to that CPU.
    pub cores: Vec<usize>,
    /// Datagrams per receive call.
    pub batch_size: usize,
    /// Transmit stamps and interleaved mode (`crate::proto::interleave`).
    pub interleaved: bool,
    /// Symmetric keys: requests with a MAC of one are answered authenticated (None: as plain).
    pub keys: Option<Arc<crate::proto::auth::KeyTable>>,
}

/// The running responder threads.
pub struct SocketServer {
    local_addrs: Vec<SocketAddr>,
    pool: ResponderPool,
    /// Duplicates of one thread's sockets, for the control thread's mode-6 replies.
    replies: Vec<reply::ReplySocket>,
    /// The served interfaces' PHCs, until the control side takes them
    /// ([`SocketServer::take_phc_watches`]).
    phc: Vec<crate::sys::ptp::tracker::PhcWatch>,
}

/// How the threads ended.
#[derive(Debug)]
pub struct Stopped {
    /// Each responder's counters, as they were at the end.
    pub responders: Vec<ResponderCounters>,
    /// Threads that failed or panicked, with what happened.
    pub failures: Vec<String>,
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// Binds every socket of every thread, then starts the threads.
///
/// Nothing serves until every bind succeeded: a bind error returns here (naming the address and
/// the OS error, "cannot bind 127.0.0.1:123: Address already in use") with no thread started.
/// The threads stop when `shutdown` is set; if a thread cannot be started, `shutdown` is set, the
/// started ones are joined and the error returned.
pub fn run(config: &SocketConfig, state: StateReader, shutdown: Arc<AtomicBool>) -> io::Result<SocketServer> {
    run_with(config, state, shutdown, None, None, None)
}

/// [`run`], with symmetric packets (modes 1 and 2) handed to the control thread's peers,
/// requests admitted by `admitter` (access list, rate limiter), shared by every thread, and NTS
/// requests answered with `nts`.
pub fn run_with(
    config: &SocketConfig,
    state: StateReader,
    shutdown: Arc<AtomicBool>,
    symmetric: Option<SymmetricSender>,
    admitter: Option<Arc<Admitter>>,
    nts: Option<NtsKeys>,
) -> io::Result<SocketServer> {
    if config.listen.is_empty() {
        return Err(invalid("no listen address".into()));
    }
    check_responders(&config.cores, config.batch_size)?;

    for &addr in &config.listen {
        if addr.port() != 0 {
            check_not_in_use(addr).map_err(|e| bind_error(addr, e))?;
        }
    }
    let mut local_addrs = config.listen.clone();
    let mut sockets: Vec<Vec<ServerSocket>> = Vec::with_capacity(config.cores.len());
    for _ in &config.cores {
        let mut own = Vec::with_capacity(local_addrs.len());
        for addr in local_addrs.iter_mut() {
            let socket = bind_reuseport(*addr).map_err(|e| bind_error(*addr, e))?;
            // The first socket of a port-0 address fixes the port for the other threads.
            *addr = socket.local_addr();
            own.push(socket);
        }
        sockets.push(own);
    }

    // Interleaved mode: one table for every thread (a client's requests reach any of them).
    let seed = crate::sys::random::seed();
    let word = |i: usize| u64::from_ne_bytes(seed[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let xleave = config.interleaved.then(|| {
        Arc::new(XleaveTable::new(
            crate::proto::interleave::DEFAULT_BUCKETS_LOG2,
            [word(0), word(1)],
        ))
    });
    // The control thread's mode-6 replies leave from the first thread's sockets.
    let replies = sockets
        .first()
        .map(|own| {
            own.iter()
                .map(reply::ReplySocket::duplicate)
                .collect::<io::Result<Vec<_>>>()
        })
        .transpose()?
        .unwrap_or_default();
    // Hardware receive stamps: each served interface's, through its PHC's line. Without the
    // interface list every stamp is software (counted `no_mapping` if one comes).
    let phcs = match phc::served_interfaces(&local_addrs) {
        Ok(interfaces) => phc::watch(&interfaces),
        Err(e) => {
            log::warn!("hardware receive stamps stay unused: cannot list the served interfaces: {e}");
            phc::watch(&[])
        }
    };
    let mut pool = ResponderPool::new("socket", shutdown);
    for (index, (&core, own)) in config.cores.iter().zip(sockets).enumerate() {
        let state = state.clone();
        let symmetric = symmetric.clone();
        let admitter = admitter.clone();
        let xleave = xleave.clone();
        let keys = config.keys.clone();
        let lines = phcs.lines.clone();
        let nts = nts.as_ref().map(|k| k.responder(crate::sys::random::seed()));
        let stop = pool.shutdown();
        let batch_size = config.batch_size;
        let name = format!("socket responder {index} (core {core})");
        pool.spawn(index, core, name, move |name, counters| {
            Responder::new(name, own, batch_size, state, counters, stop, symmetric)
                .with_admitter(admitter)
                .with_nts(nts)
                .with_interleave(xleave)
                .with_keys(keys)
                .with_phc_by_interface(lines)
                .run()
        })?;
    }
    Ok(SocketServer {
        local_addrs,
        pool,
        replies,
        phc: phcs.watches,
    })
}

impl SocketServer {
    /// The addresses served, with the ports the kernel chose for any port 0.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// The sockets mode-6 replies are to leave from (once; then empty).
    pub fn take_reply_sockets(&mut self) -> Vec<reply::ReplySocket> {
        std::mem::take(&mut self.replies)
    }

    /// The served interfaces' PHCs, for the PHC thread (once; then empty).
    pub fn take_phc_watches(&mut self) -> Vec<crate::sys::ptp::tracker::PhcWatch> {
        std::mem::take(&mut self.phc)
    }

    /// The counters of each responder thread.
    pub fn responders(&self) -> &[ResponderCounters] {
        self.pool.responders()
    }

    /// The counters of all threads together.
    pub fn total(&self) -> CounterSnapshot {
        self.pool.total()
    }

    /// Whether some thread has ended (before shutdown, that is a failure).
    pub fn any_finished(&self) -> bool {
        self.pool.any_finished()
    }

    /// Waits for every thread to end (after `shutdown` was set).
    pub fn join(self) -> Stopped {
        let (responders, failures) = self.pool.join();
        Stopped { responders, failures }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::control::local::{snapshot, ControlConfig};
    use crate::proto::respond::DropReason;
    use crate::proto::state::{publish, StateWriter, UnsyncPolicy};
    use crate::proto::wire::ntp::{Leap, Mode, Packet, Repr};
    use crate::proto::wire::{NtpShort, NtpTimestamp};
    use crate::sys::clock::read::{kernel_tai_offset, read_clock_ns};
    use std::net::UdpSocket;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

    /// The CPUs this process may run on.
    fn allowed_cores() -> Vec<usize> {
        core_affinity::get_core_ids()
            .expect("the process's CPU affinity")
            .into_iter()
            .map(|c| c.id)
            .collect()
    }
    /// The test servers' batch size: at most this many datagrams per recvmmsg call.
    const BATCH: usize = 16;

    struct TestServer {
        server: Option<SocketServer>,
        shutdown: Arc<AtomicBool>,
        _writer: StateWriter,
    }

    impl TestServer {
        fn start(
            listen: &[&str],
            cores: Vec<usize>,
            stratum: Option<u8>,
            policy: UnsyncPolicy,
        ) -> TestServer {
            let listen = listen.iter().map(|s| s.parse().unwrap()).collect();
            Self::start_at(listen, cores, stratum, policy).unwrap()
        }

        fn start_at(
            listen: Vec<SocketAddr>,
            cores: Vec<usize>,
            stratum: Option<u8>,
            policy: UnsyncPolicy,
        ) -> io::Result<TestServer> {
            let tai = kernel_tai_offset();
            let now = crate::proto::wire::NtpTimestamp::from_unix_nanos(
                read_clock_ns(libc::CLOCK_REALTIME) as i128
            );
            let config = ControlConfig {
                local_stratum: stratum,
                unsync_policy: policy,
            };
            let (writer, reader) = publish(snapshot(&config, -20, tai, now));
            let shutdown = Arc::new(AtomicBool::new(false));
            let config = SocketConfig {
                listen,
                cores,
                batch_size: BATCH,
                interleaved: true,
                keys: None,
            };
            let server = run(&config, reader, shutdown.clone())?;
            Ok(TestServer {
                server: Some(server),
                shutdown,
                _writer: writer,
            })
        }

        fn addr(&self, i: usize) -> SocketAddr {
            self.server.as_ref().unwrap().local_addrs()[i]
        }

        fn total(&self) -> CounterSnapshot {
            self.server.as_ref().unwrap().total()
        }

        /// Waits until the counters satisfy `done` (a reply is counted just after the kernel took
        /// it, so a client may hold the reply before the count moves).
        fn wait_until(&self, what: &str, done: impl Fn(&CounterSnapshot) -> bool) -> CounterSnapshot {
            let deadline = Instant::now() + CLIENT_TIMEOUT;
            loop {
                let total = self.total();
                if done(&total) {
                    return total;
                }
                assert!(Instant::now() < deadline, "counters never showed {what}: {total}");
                std::thread::sleep(Duration::from_millis(5));
            }
        }

        fn stop(mut self) -> (Duration, Stopped) {
            let start = Instant::now();
            self.shutdown.store(true, Ordering::Relaxed);
            let stopped = self.server.take().unwrap().join();
            (start.elapsed(), stopped)
        }
    }

    impl Drop for TestServer {
        fn drop(&mut self) {
            self.shutdown.store(true, Ordering::Relaxed);
            if let Some(server) = self.server.take() {
                server.join();
            }
        }
    }

    fn request(version: u8, mode: Mode, transmit: NtpTimestamp) -> [u8; 48] {
        let mut buf = [0u8; 48];
        Repr {
            leap: Leap::NoWarning,
            version,
            mode,
            stratum: 0,
            poll: 6,
            precision: -20,
            root_delay: NtpShort::ZERO,
            root_dispersion: NtpShort::ZERO,
            reference_id: [0; 4],
            reference_timestamp: NtpTimestamp::ZERO,
            origin_timestamp: NtpTimestamp::ZERO,
            receive_timestamp: NtpTimestamp::ZERO,
            transmit_timestamp: transmit,
        }
        .emit(&mut Packet::new_unchecked(&mut buf[..]));
        buf
    }

    fn client_for(server: SocketAddr) -> UdpSocket {
        let local = if server.is_ipv4() {
            "127.0.0.1:0"
        } else {
            "[::1]:0"
        };
        let client = UdpSocket::bind(local).unwrap();
        client.set_read_timeout(Some(CLIENT_TIMEOUT)).unwrap();
        client
    }

    fn realtime() -> i128 {
        read_clock_ns(libc::CLOCK_REALTIME) as i128
    }

    /// Sends one client request and checks the reply against the time around the exchange.
    fn exchange(server: SocketAddr, to: SocketAddr, expect_stratum: u8) -> Repr {
        let client = client_for(server);
        let transmit = NtpTimestamp(0x1234_5678_9abc_def0);
        let before = realtime();
        client.send_to(&request(4, Mode::Client, transmit), to).unwrap();
        let mut buf = [0u8; 128];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        let after = realtime();
        assert_eq!(
            from, to,
            "the reply must come from the address the request went to"
        );
        assert_eq!(n, 48);
        let reply = Repr::parse(&Packet::new_checked(&buf[..n]).unwrap()).unwrap();
        assert_eq!(reply.mode, Mode::Server);
        assert_eq!(reply.version, 4);
        assert_eq!(reply.stratum, expect_stratum);
        assert_eq!(reply.origin_timestamp, transmit);
        let t2 = reply.receive_timestamp.to_unix_nanos(before);
        let t3 = reply.transmit_timestamp.to_unix_nanos(before);
        // Timestamps truncate to 2^-32 s, so allow a nanosecond below the bracket.
        assert!(
            t2 >= before - 1 && t2 <= after,
            "T2 {t2} outside [{before}, {after}]"
        );
        assert!(t3 >= t2, "T3 {t3} before T2 {t2}");
        assert!(t3 <= after, "T3 {t3} after the reply arrived at {after}");
        reply
    }

    #[test]
    fn answers_a_client_on_ipv4() {
        let server = TestServer::start(&["127.0.0.1:0"], vec![0], Some(3), UnsyncPolicy::Answer);
        let addr = server.addr(0);
        let reply = exchange(addr, addr, 3);
        assert_eq!(reply.leap, Leap::NoWarning);
        assert_eq!(&reply.reference_id, b"LOCL");
        assert_eq!(reply.precision, -20);
        let total = server.wait_until("the reply", |s| s.replies() >= 1);
        assert_eq!(total.replies_time, 1);
        assert_eq!(total.bytes_in, 48);
        assert_eq!(total.bytes_out, 48);
        assert_eq!(
            total.rx_timestamp_count(crate::proto::metrics::RxTimestampSource::KernelSoftware),
            1
        );
        assert_eq!(total.dropped(), 0);
    }

    #[test]
    fn answers_a_client_on_ipv6() {
        let server = TestServer::start(&["[::1]:0"], vec![0], Some(2), UnsyncPolicy::Answer);
        let addr = server.addr(0);
        exchange(addr, addr, 2);
    }

    #[test]
    fn wildcard_sockets_answer_from_the_destination_address() {
        let server = TestServer::start(&["0.0.0.0:0", "[::]:0"], vec![0], Some(1), UnsyncPolicy::Answer);
        let v4 = server.addr(0);
        let v6 = server.addr(1);
        // 127.0.0.2 is local too; without IP_PKTINFO the reply would come from 127.0.0.1.
        exchange(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            SocketAddr::from(([127, 0, 0, 2], v4.port())),
            1,
        );
        exchange(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            SocketAddr::from(([127, 0, 0, 1], v4.port())),
            1,
        );
        exchange(v6, SocketAddr::new("::1".parse().unwrap(), v6.port()), 1);
    }

    #[test]
    fn ipv4_and_ipv6_wildcards_share_a_port() {
        // Find a port free on both families, then serve both wildcards on it.
        for _ in 0..20 {
            let probe = UdpSocket::bind("[::]:0").unwrap();
            let port = probe.local_addr().unwrap().port();
            drop(probe);
            let listen = vec![
                SocketAddr::from(([0, 0, 0, 0], port)),
                SocketAddr::new("::".parse().unwrap(), port),
            ];
            match TestServer::start_at(listen, vec![0], Some(1), UnsyncPolicy::Answer) {
                Ok(server) => {
                    assert_eq!(server.addr(0).port(), server.addr(1).port());
                    exchange(
                        SocketAddr::from(([127, 0, 0, 1], 0)),
                        SocketAddr::from(([127, 0, 0, 1], port)),
                        1,
                    );
                    exchange(server.addr(1), SocketAddr::new("::1".parse().unwrap(), port), 1);
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => panic!("{e}"),
            }
        }
        panic!("no free port found");
    }

    #[test]
    fn refused_requests_get_no_reply_and_are_counted() {
        let server = TestServer::start(&["127.0.0.1:0"], vec![0], Some(1), UnsyncPolicy::Answer);
        let addr = server.addr(0);
        let client = client_for(addr);
        let t = NtpTimestamp(1);
        client.send_to(&request(4, Mode::Control, t), addr).unwrap();
        client.send_to(&request(2, Mode::Private, t), addr).unwrap();
        client.send_to(&request(0, Mode::Client, t), addr).unwrap();
        client.send_to(&request(4, Mode::Client, t)[..20], addr).unwrap();
        client.send_to(&[0x23; 3000], addr).unwrap();
        let mut with_bad_trailer = request(4, Mode::Client, t).to_vec();
        with_bad_trailer.extend_from_slice(&[0xff; 7]);
        client.send_to(&with_bad_trailer, addr).unwrap();
        let total = server.wait_until("six drops", |s| s.dropped() >= 6);
        assert_eq!(total.drop_count(DropReason::Control), 1);
        assert_eq!(total.drop_count(DropReason::Private), 1);
        assert_eq!(total.drop_count(DropReason::BadVersion), 1);
        assert_eq!(total.drop_count(DropReason::TooShort), 1);
        assert_eq!(total.drop_count(DropReason::MalformedExtension), 1);
        assert_eq!(total.truncated, 1);
        assert_eq!(total.replies(), 0);
        assert_eq!(total.bytes_out, 0);
        // And nothing came back.
        client.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let mut buf = [0u8; 64];
        let e = client.recv_from(&mut buf).unwrap_err();
        assert!(
            matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut),
            "{e}"
        );
    }

    #[test]
    fn unsynchronized_server_answers_or_drops_by_policy() {
        let answering = TestServer::start(&["127.0.0.1:0"], vec![0], None, UnsyncPolicy::Answer);
        let addr = answering.addr(0);
        let reply = exchange(addr, addr, 16);
        assert_eq!(reply.leap, Leap::Unsynchronized);
        assert_eq!(
            answering
                .wait_until("the reply", |s| s.replies() >= 1)
                .replies_unsynchronized,
            1
        );

        let silent = TestServer::start(&["127.0.0.1:0"], vec![0], None, UnsyncPolicy::Drop);
        let addr = silent.addr(0);
        let client = client_for(addr);
        client
            .send_to(&request(4, Mode::Client, NtpTimestamp(5)), addr)
            .unwrap();
        let total = silent.wait_until("the drop", |s| s.dropped() >= 1);
        assert_eq!(total.drop_count(DropReason::Unsynchronized), 1);
        client.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        assert!(client.recv_from(&mut [0u8; 64]).is_err());
    }

    #[test]
    fn reuseport_threads_share_the_clients() {
        let allowed = allowed_cores();
        let cores = if allowed.len() >= 2 {
            allowed[..2].to_vec()
        } else {
            vec![allowed[0]; 2]
        };
        let server = TestServer::start(&["127.0.0.1:0"], cores, Some(1), UnsyncPolicy::Answer);
        let addr = server.addr(0);
        assert_eq!(server.server.as_ref().unwrap().responders().len(), 2);
        // 64 clients on 64 source ports: the kernel's hash spreads them over both sockets.
        let clients: Vec<UdpSocket> = (0..64).map(|_| client_for(addr)).collect();
        for (i, c) in clients.iter().enumerate() {
            c.send_to(&request(4, Mode::Client, NtpTimestamp(i as u64 + 1)), addr)
                .unwrap();
        }
        for (i, c) in clients.iter().enumerate() {
            let mut buf = [0u8; 64];
            let (n, _) = c.recv_from(&mut buf).unwrap();
            let reply = Repr::parse(&Packet::new_checked(&buf[..n]).unwrap()).unwrap();
            assert_eq!(reply.origin_timestamp, NtpTimestamp(i as u64 + 1));
        }
        server.wait_until("64 replies", |s| s.replies() >= 64);
        let per_thread: Vec<u64> = server
            .server
            .as_ref()
            .unwrap()
            .responders()
            .iter()
            .map(|r| r.snapshot().replies_time)
            .collect();
        assert_eq!(per_thread.iter().sum::<u64>(), 64);
        assert!(
            per_thread.iter().all(|&n| n > 0),
            "one thread got every client: {per_thread:?}"
        );
    }

    #[test]
    fn a_flooded_socket_does_not_starve_the_other() {
        let server = TestServer::start(
            &["127.0.0.1:0", "[::1]:0"],
            vec![0],
            Some(1),
            UnsyncPolicy::Answer,
        );
        let v4 = server.addr(0);
        let v6 = server.addr(1);
        let stop = Arc::new(AtomicBool::new(false));
        let flood = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let c = UdpSocket::bind("127.0.0.1:0").unwrap();
                c.set_nonblocking(true).unwrap();
                let req = request(4, Mode::Client, NtpTimestamp(9));
                let mut sink = [0u8; 64];
                let (mut sent, mut answered) = (0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..64 {
                        if c.send_to(&req, v4).is_ok() {
                            sent += 1;
                        }
                    }
                    while c.recv_from(&mut sink).is_ok() {
                        answered += 1;
                    }
                }
                (sent, answered)
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        const EXCHANGES: u64 = 5;
        for _ in 0..EXCHANGES {
            exchange(v6, v6, 1);
        }
        stop.store(true, Ordering::Relaxed);
        let (flood_sent, flood_answered) = flood.join().unwrap();
        // The flooded socket was served as well, not only the other one.
        assert!(flood_answered > 0, "the flood ({flood_sent} sent) got no reply");
        // Once the flood's backlog is worked off, every request that reached the server was
        // answered (or its reply counted as failed), and none was dropped.
        let total = server.wait_until("every request answered", |s| {
            s.requests == s.replies() + s.send_errors
        });
        assert_eq!(total.dropped(), 0, "{total}");
        assert_eq!(total.replies_time, total.replies(), "{total}");
        // The server counted every request whose reply a client got, and none that the test did
        // not send (the kernel may drop some of the flood before the server sees them).
        assert!(
            total.requests >= EXCHANGES + flood_answered,
            "{} requests counted, but {EXCHANGES} exchanges and {flood_answered} flood replies",
            total.requests
        );
        assert!(
            total.requests <= EXCHANGES + flood_sent,
            "{} requests counted, only {} sent",
            total.requests,
            EXCHANGES + flood_sent
        );
        assert_eq!(total.bytes_in, 48 * total.requests, "{total}");
        assert_eq!(total.batched_requests, total.requests, "{total}");
    }

    #[test]
    fn a_burst_is_answered_in_batches() {
        let server = TestServer::start(&["127.0.0.1:0"], vec![0], Some(1), UnsyncPolicy::Answer);
        let addr = server.addr(0);
        let client = client_for(addr);
        for i in 0..200u64 {
            client
                .send_to(&request(4, Mode::Client, NtpTimestamp(i + 1)), addr)
                .unwrap();
        }
        let mut seen = [false; 200];
        let mut buf = [0u8; 64];
        for _ in 0..200 {
            let (n, _) = client.recv_from(&mut buf).unwrap();
            let reply = Repr::parse(&Packet::new_checked(&buf[..n]).unwrap()).unwrap();
            seen[reply.origin_timestamp.0 as usize - 1] = true;
        }
        assert!(seen.iter().all(|&s| s));
        let total = server.wait_until("200 replies", |s| s.replies() >= 200);
        assert_eq!(total.requests, 200, "{total}");
        assert_eq!(total.replies_time, 200, "{total}");
        assert_eq!(total.replies(), 200, "{total}");
        assert_eq!((total.bytes_in, total.bytes_out), (200 * 48, 200 * 48));
        // Each request was in exactly one receive call, and a call takes 1 to BATCH datagrams.
        assert_eq!(total.batched_requests, 200, "{total}");
        let fewest = 200u64.div_ceil(BATCH as u64);
        assert!(
            (fewest..=200).contains(&total.batches),
            "{} receive calls for 200 requests in batches of at most {BATCH}",
            total.batches
        );
        assert_eq!(total.batch_sizes.iter().sum::<u64>(), total.batches, "{total}");
        let above = crate::proto::metrics::histogram::batch_bucket(BATCH) + 1;
        assert!(
            total.batch_sizes[above..].iter().all(|&n| n == 0),
            "a batch larger than {BATCH}: {:?}",
            total.batch_sizes
        );
    }

    #[test]
    fn shutdown_stops_every_thread_within_a_second() {
        let allowed = allowed_cores();
        let cores = vec![allowed[0], *allowed.last().unwrap()];
        // Two sockets per thread (the poll path) and one (the blocking receive path).
        for listen in [&["127.0.0.1:0", "[::1]:0"][..], &["127.0.0.1:0"][..]] {
            let server = TestServer::start(listen, cores.clone(), Some(1), UnsyncPolicy::Answer);
            std::thread::sleep(Duration::from_millis(50));
            let (took, stopped) = server.stop();
            assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
            assert!(stopped.failures.is_empty(), "{:?}", stopped.failures);
            assert_eq!(stopped.responders.len(), 2);
        }
    }

    #[test]
    fn a_taken_address_fails_the_start_with_its_name() {
        let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let e = TestServer::start_at(vec![addr], vec![0], Some(1), UnsyncPolicy::Answer)
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            format!("cannot bind {addr}: Address already in use")
        );

        // A second strata on the same port (SO_REUSEPORT on both sides) is refused too.
        let first = TestServer::start(&["127.0.0.1:0"], vec![0], Some(1), UnsyncPolicy::Answer);
        let e = TestServer::start_at(vec![first.addr(0)], vec![0], Some(1), UnsyncPolicy::Answer)
            .err()
            .unwrap();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse, "{e}");
    }

    #[test]
    fn bad_socket_configs_are_refused() {
        let (_w, reader) = publish(snapshot(
            &ControlConfig {
                local_stratum: None,
                unsync_policy: UnsyncPolicy::Answer,
            },
            -20,
            0,
            NtpTimestamp::ZERO,
        ));
        let shutdown = Arc::new(AtomicBool::new(false));
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        for config in [
            SocketConfig {
                listen: vec![],
                cores: vec![0],
                batch_size: 1,
                interleaved: true,
                keys: None,
            },
            SocketConfig {
                listen: vec![addr],
                cores: vec![],
                batch_size: 1,
                interleaved: true,
                keys: None,
            },
            SocketConfig {
                listen: vec![addr],
                cores: vec![0],
                batch_size: 0,
                interleaved: true,
                keys: None,
            },
        ] {
            let e = run(&config, reader.clone(), shutdown.clone()).err().unwrap();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        }
    }
}

//! The loop of one socket responder thread: receive a batch, answer each datagram in place
//! through the shared pipeline (`crate::sys::pipeline`), stamp T3, send the batch back in one call.
//!
//! The thread owns its sockets, buffers and counters; it shares nothing writable with other
//! threads and takes no lock. The server state is read once per batch from the seqlock. It
//! checks the shutdown flag at least every [`IO_TIMEOUT`].

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::proto::interleave::XleaveTable;
use crate::proto::metrics::{CounterWriter, RxTimestampSource, TxTimestampSource};
use crate::proto::respond::Reply;
use crate::proto::state::StateReader;
use crate::sys::handoff::SymmetricSender;
use crate::sys::pipeline::{Datagrams, Pipeline, RxStamp};

use super::bind::{os_error_text, ServerSocket, IO_TIMEOUT};
use super::mmsg::Batch;
use super::txstamp::{ErrorQueue, TxStamp};

/// Error-queue reads per drain at most (each takes up to a batch of stamps).
const DRAIN_ROUNDS: usize = 4;

/// Interleaved mode on the socket path: the pipeline does it (`crate::sys::pipeline`); the path
/// reads the transmit times the kernel reports on each socket's error queue.
struct Interleave {
    /// One per socket (None where the kernel gives no transmit stamps).
    queues: Vec<Option<ErrorQueue>>,
}

/// One responder thread's sockets, buffers and counters.
pub struct Responder {
    name: String,
    sockets: Vec<ServerSocket>,
    pollfds: Vec<libc::pollfd>,
    batch: Batch,
    state: StateReader,
    pipeline: Pipeline<Datagrams, CounterWriter>,
    shutdown: Arc<AtomicBool>,
    reported_receive_error: bool,
    reported_send_error: bool,
    /// Each socket's SO_RXQ_OVFL count as last seen, to count what it grew by.
    kernel_drops: Vec<u32>,
    /// None: interleaved mode is off, and so are transmit stamps.
    interleave: Option<Interleave>,
}

impl Responder {
    /// Allocates everything the loop needs; call it on the thread that will run the loop, after
    /// pinning, so that the buffers are allocated near its core.
    pub fn new(
        name: String,
        sockets: Vec<ServerSocket>,
        batch_size: usize,
        state: StateReader,
        counters: CounterWriter,
        shutdown: Arc<AtomicBool>,
        symmetric: Option<SymmetricSender>,
    ) -> Responder {
        assert!(!sockets.is_empty());
        let pollfds = sockets
            .iter()
            .map(|s| libc::pollfd {
                fd: s.fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let kernel_drops = vec![0; sockets.len()];
        Responder {
            interleave: None,
            kernel_drops,
            name,
            sockets,
            pollfds,
            batch: Batch::new(batch_size),
            state,
            pipeline: Pipeline::new(Datagrams, counters, symmetric),
            shutdown,
            reported_receive_error: false,
            reported_send_error: false,
        }
    }

    /// Serves until the shutdown flag is set. Fails only if waiting for the sockets fails.
    /// Requests are admitted by `admitter` (None: everyone is served).
    /// NTS requests are answered with `nts` (None: as plain requests).
    pub fn with_nts(mut self, nts: Option<crate::proto::nts::NtsResponder>) -> Responder {
        self.pipeline = self.pipeline.with_nts(nts);
        self
    }

    /// Interleaved mode with `table` (shared by the threads of the path): transmit stamps are
    /// read from the error queues. None: off, every reply is basic.
    pub fn with_interleave(mut self, table: Option<Arc<XleaveTable>>) -> Responder {
        let batch_size = self.batch.capacity();
        self.interleave = table
            .as_ref()
            .map(|_| Interleave::new(&mut self.sockets, batch_size));
        self.pipeline = self.pipeline.with_interleave(table, batch_size);
        self
    }

    /// Requests with a MAC are answered with `keys` (None: as plain requests).
    pub fn with_keys(mut self, keys: Option<Arc<crate::proto::auth::KeyTable>>) -> Responder {
        self.pipeline = self.pipeline.with_keys(keys);
        self
    }

    /// Hardware receive stamps become T2 through the PHC line of the interface each datagram came
    /// in on (its pktinfo ifindex); `lines` has one per served interface with a PHC.
    pub fn with_phc_by_interface(
        mut self,
        lines: Vec<(u32, crate::proto::clock::phc::PhcLineReader)>,
    ) -> Responder {
        self.pipeline = self.pipeline.with_phc_by_interface(lines);
        self
    }

    pub fn with_admitter(mut self, admitter: Option<Arc<crate::proto::admission::Admitter>>) -> Responder {
        self.pipeline = self.pipeline.with_admitter(admitter);
        self
    }

    pub fn run(mut self) -> io::Result<()> {
        if self.sockets.len() == 1 {
            self.run_one();
            Ok(())
        } else {
            self.run_many()
        }
    }

    /// One socket: a blocking receive that returns as soon as one datagram is there (taking what
    /// else is queued, up to the batch size) or after the socket's receive timeout.
    fn run_one(&mut self) {
        while !self.shutdown.load(Ordering::Relaxed) {
            self.receive_and_serve(0, libc::MSG_WAITFORONE);
        }
    }

    /// Several sockets: take one batch from each in turn without waiting, so that a busy socket
    /// cannot starve the others, and wait in poll() only when all of them were empty.
    fn run_many(&mut self) -> io::Result<()> {
        while !self.shutdown.load(Ordering::Relaxed) {
            let mut served = false;
            for index in 0..self.sockets.len() {
                served |= self.receive_and_serve(index, libc::MSG_DONTWAIT);
            }
            if served {
                continue;
            }
            // SAFETY: `pollfds` is a live array of `len` pollfd structs; poll writes only revents.
            let rc = unsafe {
                libc::poll(
                    self.pollfds.as_mut_ptr(),
                    self.pollfds.len() as libc::nfds_t,
                    IO_TIMEOUT.as_millis() as libc::c_int,
                )
            };
            if rc > 0 {
                // Transmit stamps that came after their batch (a NIC's) wake poll with POLLERR.
                for index in 0..self.pollfds.len() {
                    if self.pollfds[index].revents & libc::POLLERR != 0 {
                        self.drain_tx_stamps(index, 0);
                    }
                }
            }
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("{}: poll: {}", self.name, os_error_text(&e)),
                    ));
                }
            }
        }
        Ok(())
    }

    /// One receive call on socket `index`, and the replies to what it brought. Returns whether
    /// anything arrived.
    fn receive_and_serve(&mut self, index: usize, flags: libc::c_int) -> bool {
        let fd = self.sockets[index].fd();
        let received = match self.batch.receive(fd, flags) {
            Ok(n) => n,
            Err(e) => {
                match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) => {}
                    _ => self.receive_failed(index, &e),
                }
                return false;
            }
        };
        // Read right after the receive: T2 for any datagram that came without a kernel stamp.
        let user_rx_ns = self.pipeline.clock_ns();
        self.serve(index, received, user_rx_ns);
        true
    }

    fn serve(&mut self, index: usize, received: usize, user_rx_ns: i64) {
        let use_pktinfo = self.sockets[index].pktinfo();
        self.pipeline.begin(&self.state, received);
        // The kernel's drop count rides on every datagram; the batch's last one has the latest.
        if let Some(now) = received
            .checked_sub(1)
            .and_then(|last| self.batch.datagram(last).meta.kernel_drops)
        {
            let grew = now.wrapping_sub(self.kernel_drops[index]);
            if grew > 0 {
                self.pipeline.counters().receive_buffer_drops(u64::from(grew));
            }
            self.kernel_drops[index] = now;
        }
        for i in 0..received {
            // Only looked up when needed: for admission, or the sender of a symmetric packet.
            let from = if self.pipeline.hands_off() || self.pipeline.admits() || self.pipeline.interleaves() {
                self.batch.source(i)
            } else {
                None
            };
            let datagram = self.batch.datagram(i);
            if datagram.truncated {
                let counters = self.pipeline.counters();
                counters.received(datagram.len);
                counters.truncated();
                continue;
            }
            let stamp = match datagram.meta.software_ns {
                Some(ns) => RxStamp {
                    ns,
                    source: RxTimestampSource::KernelSoftware,
                    hardware_ns: datagram.meta.hardware_ns,
                    ifindex: datagram.meta.pktinfo.and_then(|p| p.ifindex()),
                },
                None => RxStamp {
                    ns: user_rx_ns,
                    source: RxTimestampSource::UserSpace,
                    hardware_ns: datagram.meta.hardware_ns,
                    ifindex: datagram.meta.pktinfo.and_then(|p| p.ifindex()),
                },
            };
            let pktinfo = if use_pktinfo { datagram.meta.pktinfo } else { None };
            let admission = self.pipeline.admit(from);
            if let Some(reply) = self.pipeline.answer(datagram.payload, stamp, from, admission) {
                let k = self.batch.replies();
                self.batch.push_reply(i, reply.len, reply.kind, pktinfo);
                // Only the exchanges kept for an interleaved client need the real transmit time.
                if self.pipeline.exchange(k).is_some()
                    && self
                        .interleave
                        .as_ref()
                        .is_some_and(|x| x.queues[index].is_some())
                {
                    self.batch.stamp_last_reply();
                }
            }
        }
        let replies = self.batch.replies();
        if replies == 0 {
            return;
        }
        self.batch.prepare_send();
        // T3 as late as possible: one clock read for the batch, right before the one send call.
        let t3 = self.pipeline.transmit_time();
        for j in 0..replies {
            let (kind, len) = self.batch.reply_info(j);
            self.pipeline
                .stamp(self.batch.reply_mut(j), &Reply { len, kind }, t3);
        }
        let mut asked = 0;
        // The transmit time until the kernel's stamp replaces it.
        for j in 0..replies {
            if let Some(exchange) = self.pipeline.exchange(j) {
                self.pipeline.remember(exchange, t3);
                asked += 1;
            }
        }
        let (_, error) = send_replies(&mut self.batch, self.sockets[index].fd(), &mut self.pipeline);
        if let Some(e) = error {
            self.send_failed(index, &e);
        }
        if asked > 0 {
            self.drain_tx_stamps(index, asked);
        }
    }

    /// Reads the transmit stamps the kernel has for socket `index` into the interleaved table
    /// and the counters; `asked` replies that asked for one just went out on it, and each one
    /// whose software stamp is not there by now is counted as without one.
    fn drain_tx_stamps(&mut self, index: usize, asked: usize) {
        let Some(x) = &mut self.interleave else {
            return;
        };
        let fd = self.sockets[index].fd();
        let Some(queue) = &mut x.queues[index] else {
            for _ in 0..asked {
                self.pipeline.counters().tx_timestamp(TxTimestampSource::None);
            }
            return;
        };
        let pipeline = &mut self.pipeline;
        let mut software = 0;
        let result = queue.drain(fd, DRAIN_ROUNDS, |stamp: TxStamp| {
            if stamp.hardware {
                pipeline.counters().tx_timestamp(TxTimestampSource::Hardware);
            }
            let Some(ns) = stamp.software_ns else {
                return;
            };
            software += 1;
            match stamp.reply {
                Some((client, receive)) => {
                    pipeline.transmitted((client.ip(), receive), ns, TxTimestampSource::KernelSoftware);
                }
                None => pipeline
                    .counters()
                    .tx_timestamp(TxTimestampSource::KernelSoftware),
            }
        });
        for _ in software..asked {
            self.pipeline.counters().tx_timestamp(TxTimestampSource::None);
        }
        if let Err(e) = result {
            self.receive_failed(index, &e);
        }
    }

    fn receive_failed(&mut self, index: usize, e: &io::Error) {
        self.pipeline.counters().receive_error();
        if !self.reported_receive_error {
            self.reported_receive_error = true;
            log::warn!(
                "{}: receive on {} failed: {} (further receive errors are only counted)",
                self.name,
                self.sockets[index].local_addr(),
                os_error_text(e)
            );
        }
    }

    fn send_failed(&mut self, index: usize, e: &io::Error) {
        if !self.reported_send_error {
            self.reported_send_error = true;
            log::warn!(
                "{}: sending a reply from {} failed: {} (further send errors are only counted)",
                self.name,
                self.sockets[index].local_addr(),
                os_error_text(e)
            );
        }
    }
}

/// Takes (and clears) the error the kernel parked on the socket, if any.
fn take_socket_error(fd: RawFd) -> Option<io::Error> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid and writable; SO_ERROR writes one int.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            &mut value as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    (rc == 0 && value != 0).then(|| io::Error::from_raw_os_error(value))
}

/// Sends every queued reply of `batch` on `fd`, counting each one sent or failed, and returns
/// how many the kernel took and the first error (for the log).
///
/// sendmmsg stops at the first reply the kernel refuses. If that is the first one of the call,
/// the call fails with its error; otherwise it returns how many went out and parks the error on
/// the socket (where the next receive would report it). Either way the refused reply is counted
/// and skipped and the rest are sent with another call. A temporary shortage (EAGAIN, or a partial
/// send with no parked error) is retried from where it stopped, except that a call that takes
/// nothing skips one reply, so that the loop always ends.
pub fn send_replies(
    batch: &mut Batch,
    fd: RawFd,
    pipeline: &mut Pipeline<Datagrams, CounterWriter>,
) -> (usize, Option<io::Error>) {
    let total = batch.replies();
    let mut taken = 0;
    let mut first_error = None;
    let mut next = 0;
    while next < total {
        match batch.send(fd, next) {
            Ok(sent) if sent > 0 => {
                for j in next..next + sent {
                    let (kind, len) = batch.reply_info(j);
                    pipeline.sent(&Reply { len, kind });
                }
                taken += sent;
                next += sent;
                if next < total {
                    if let Some(e) = take_socket_error(fd) {
                        pipeline.send_failed();
                        first_error.get_or_insert(e);
                        next += 1;
                    }
                }
            }
            Ok(_) => {
                pipeline.send_failed();
                first_error.get_or_insert_with(|| io::Error::other("sendmmsg sent nothing"));
                next += 1;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                pipeline.send_failed();
                first_error.get_or_insert(e);
                next += 1;
            }
        }
    }
    (taken, first_error)
}

impl Interleave {
    /// Asks every socket for transmit stamps, and makes the buffers to read them with.
    fn new(sockets: &mut [ServerSocket], batch_size: usize) -> Interleave {
        Interleave {
            queues: sockets
                .iter_mut()
                .map(|s| s.enable_tx_timestamping().then(|| ErrorQueue::new(batch_size)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::metrics::counters;
    use crate::proto::respond::ReplyKind;
    use crate::sys::socket::bind::bind_reuseport;
    use crate::sys::socket::mmsg::PktInfo;
    use std::net::UdpSocket;
    use std::time::Duration;

    /// Three replies, the middle one from a source address this host does not have: the first
    /// goes out, the call stops, the refused one is counted and skipped, the third goes out, and
    /// the socket is left without a parked error.
    #[test]
    fn a_refused_reply_is_skipped_and_the_rest_are_sent() {
        let server = bind_reuseport("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr();
        let clients: Vec<UdpSocket> = (0..3).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        for (i, c) in clients.iter().enumerate() {
            c.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
            c.send_to(&[i as u8; 8], addr).unwrap();
        }
        let mut batch = Batch::new(8);
        let mut got = 0;
        while got < 3 {
            got += batch.receive(server.fd(), libc::MSG_WAITFORONE).unwrap();
        }
        // The datagrams may arrive in any order; find which slot came from which client.
        let slot_of: Vec<usize> = (0..3)
            .map(|i| (0..3).find(|&s| batch.datagram(s).payload[0] == i as u8).unwrap())
            .collect();
        let bad = PktInfo::V4 {
            ifindex: 0,
            spec_dst: [192, 0, 2, 1],
            dst: [192, 0, 2, 1],
        };
        for (i, &slot) in slot_of.iter().enumerate() {
            let pktinfo = if i == 1 { Some(bad) } else { None };
            batch.push_reply(slot, 8, ReplyKind::Time, pktinfo);
        }
        batch.prepare_send();
        let (writer, reader) = counters();
        let mut pipeline = Pipeline::new(Datagrams, writer, None);
        let (sent, e) = send_replies(&mut batch, server.fd(), &mut pipeline);
        let e = e.expect("an error for the bad reply");
        assert_eq!(sent, 2);
        // EINVAL or ENETUNREACH, depending on how routing meets the foreign source address.
        assert!(e.raw_os_error().is_some(), "{e}");
        let s = reader.snapshot();
        assert_eq!((s.replies_time, s.send_errors, s.bytes_out), (2, 1, 16));
        let mut buf = [0u8; 16];
        assert_eq!(clients[0].recv_from(&mut buf).unwrap().0, 8);
        assert!(clients[1].recv_from(&mut buf).is_err());
        assert_eq!(clients[2].recv_from(&mut buf).unwrap().0, 8);
        assert!(take_socket_error(server.fd()).is_none());

        // The next receive is clean.
        clients[0].send_to(b"again", addr).unwrap();
        assert_eq!(batch.receive(server.fd(), libc::MSG_WAITFORONE).unwrap(), 1);
    }
}

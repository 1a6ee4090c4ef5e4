//! The AF_XDP transport (xsk-rs): requests are whole Ethernet frames written straight into the
//! UMEM, from many simulated clients (addresses of `--src-net`, each with its own port), and the
//! replies come back to the same socket through [`super::xdp_prog::ReplySteering`].
//!
//! The UMEM is split for good: half its frames only ever carry replies (fill ring -> RX ring ->
//! back to the fill ring), half only requests (free list -> TX ring -> completion ring -> free
//! list). So a frame is always in exactly one place, and sending never waits for receiving.
//!
//! Requests leave on queue 0. Replies may come back on any receive queue (a veth peer picks the
//! queue from its own transmit queue, which a kernel-stack server chooses by flow hash), so
//! every other queue gets a receive-only socket of its own, drained by the same thread.
//!
//! The sockets are strata's own (`strata::sys::fastpath::xsk`: zero-copy first, copy mode when
//! the driver refuses it, need_wakeup, the copy-mode TX budget raised), opened with a UMEM
//! twice the size of strata's, half of it kept out of the fill ring for requests.

use std::io;
use std::net::SocketAddrV4;
use std::ptr;

use strata::proto::wire::ethernet::EthernetAddress;
use strata::sys::clock::read::read_clock_ns;
use strata::sys::fastpath::xsk::{QueueSocket, SocketOptions, FRAME_SIZE};
use xsk_rs::FrameDesc;

use super::frame::{self, SrcNet, HEADERS_LEN};
use super::{Reply, Transport};

/// Frames that carry replies; also the fill ring's size, so returning them never fails.
const RX_FRAMES: u32 = 4096;
/// Frames that carry requests; also the completion ring's size.
const TX_FRAMES: u32 = 4096;
/// Descriptors taken from the RX or completion ring per call.
const CONSUME_BATCH: usize = 256;
/// The payload length the per-flow headers are prepared for (a basic request); other lengths
/// get their headers rewritten per frame.
const TEMPLATE_PAYLOAD: usize = strata::proto::wire::ntp::HEADER_LEN;

/// Where and as whom an AF_XDP transport sends.
#[derive(Debug, Clone)]
pub struct XdpOptions {
    pub iface: String,
    pub queue: u32,
    pub src_mac: EthernetAddress,
    pub dst_mac: EthernetAddress,
    pub target: SocketAddrV4,
    pub src_net: SrcNet,
    /// The first global flow of this transport; it owns `flows` flows from there.
    pub first_flow: u32,
    pub flows: u32,
    pub batch: usize,
    /// The interface's receive queues: replies may arrive on any of them.
    pub rx_queues: u32,
}

/// One AF_XDP socket with its UMEM, rings and prepared headers.
pub struct XdpTransport {
    options: XdpOptions,
    /// The socket of queue 0, which sends and receives.
    socket: QueueSocket,
    /// Request frames not in the kernel's hands.
    free: Vec<FrameDesc>,
    /// Scratch descriptors for the RX and completion rings.
    scratch: Vec<FrameDesc>,
    /// Each flow's address and its prepared Ethernet/IPv4/UDP headers.
    flows: Box<[(SocketAddrV4, [u8; HEADERS_LEN])]>,
    /// The sockets of queues 1.., which only receive: every frame of their UMEMs circulates
    /// between the fill ring and the RX ring.
    others: Vec<QueueSocket>,
    /// Every receiving socket's descriptor (queue 0 first), for ppoll.
    pollfds: Vec<libc::pollfd>,
}

impl XdpTransport {
    /// Opens the socket on `options.iface` queue `options.queue`, and a receive-only socket on
    /// each other queue: zero-copy when the driver allows it, else copy mode (veth refuses
    /// zero-copy with EFAULT).
    pub fn open(options: XdpOptions) -> io::Result<XdpTransport> {
        let mut socket = QueueSocket::open(
            &options.iface,
            options.queue,
            &SocketOptions {
                frames: RX_FRAMES + TX_FRAMES,
                fill_frames: RX_FRAMES,
                comp_ring: TX_FRAMES,
                ..SocketOptions::default()
            },
        )?;
        // The request frames: the UMEM's frames outside the fill ring.
        let free = std::mem::take(&mut socket.spare);
        let flows = (0..options.flows)
            .map(|i| {
                let src = options.src_net.flow(options.first_flow + i);
                let mut headers = [0u8; HEADERS_LEN];
                frame::write_headers(
                    &mut headers,
                    options.src_mac,
                    options.dst_mac,
                    src,
                    options.target,
                    TEMPLATE_PAYLOAD,
                );
                (src, headers)
            })
            .collect();
        // The default descriptor is only a placeholder that consume() overwrites.
        let scratch = vec![FrameDesc::default(); CONSUME_BATCH];
        let receive_only = SocketOptions {
            frames: RX_FRAMES,
            fill_frames: RX_FRAMES,
            ..SocketOptions::default()
        };
        let others = (1..options.rx_queues)
            .map(|queue| QueueSocket::open(&options.iface, queue, &receive_only))
            .collect::<io::Result<Vec<_>>>()?;
        let pollfds = std::iter::once(socket.fd())
            .chain(others.iter().map(|o| o.fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        Ok(XdpTransport {
            options,
            socket,
            free,
            scratch,
            flows,
            others,
            pollfds,
        })
    }

    /// The receive-only sockets of queues 1.., to register in the XSKMAP.
    pub fn others(&self) -> &[QueueSocket] {
        &self.others
    }

    pub fn zero_copy(&self) -> bool {
        self.socket.zero_copy
    }

    /// The file descriptor to register in the XSKMAP.
    pub fn fd(&self) -> i32 {
        self.socket.fd()
    }

    /// Takes the frames whose transmission completed back into the free list.
    fn reclaim(&mut self) {
        loop {
            // SAFETY: the scratch descriptors are overwritten with frames of this UMEM.
            let n = unsafe { self.socket.comp.consume(&mut self.scratch) };
            // Never grows past its capacity: only TX_FRAMES frames exist to come back.
            self.free.extend_from_slice(&self.scratch[..n]);
            if n < self.scratch.len() {
                break;
            }
        }
    }

    /// Makes the kernel transmit what is on the TX ring. In copy mode each sendto sends at most
    /// a small budget of frames and answers EAGAIN while more are waiting, so it is repeated.
    fn kick(&mut self, frames: usize) -> io::Result<()> {
        if !self.socket.tx.needs_wakeup() {
            return Ok(());
        }
        let fd = self.socket.fd();
        for _ in 0..frames / 16 + 2 {
            // SAFETY: a zero-length sendto with null buffers is AF_XDP's documented TX kick.
            let rc = unsafe { libc::sendto(fd, ptr::null(), 0, libc::MSG_DONTWAIT, ptr::null(), 0) };
            if rc >= 0 {
                return Ok(());
            }
            match io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => continue,
                Some(libc::ENOBUFS) | Some(libc::EBUSY) | Some(libc::ENETDOWN) => return Ok(()),
                _ => return Err(io::Error::last_os_error()),
            }
        }
        Ok(())
    }
}

impl Transport for XdpTransport {
    fn flows(&self) -> usize {
        self.flows.len()
    }

    fn batch_capacity(&self) -> usize {
        self.options.batch
    }

    fn send(
        &mut self,
        flow: usize,
        count: usize,
        fill: &mut dyn FnMut(usize, &mut [u8]) -> usize,
    ) -> io::Result<usize> {
        self.reclaim();
        let count = count.min(self.options.batch).min(self.free.len());
        if count == 0 {
            return Ok(0);
        }
        let (src, headers) = self.flows[flow];
        let target = self.options.target;
        let start = self.free.len() - count;
        for i in 0..count {
            let desc = &mut self.free[start + i];
            // SAFETY: the frame is on the free list, so neither the kernel nor any ring holds it.
            let mut data = unsafe { self.socket.umem.data_mut(desc) };
            data.cursor().set_pos(FRAME_SIZE as usize);
            let buf = data.contents_mut();
            buf[..HEADERS_LEN].copy_from_slice(&headers);
            let len = fill(i, &mut buf[HEADERS_LEN..]);
            if len != TEMPLATE_PAYLOAD {
                frame::write_headers(buf, self.options.src_mac, self.options.dst_mac, src, target, len);
            }
            let frame_len = frame::finish(buf, &src, &target, len);
            data.cursor().set_pos(frame_len);
        }
        // SAFETY: the descriptors are this UMEM's free frames, written above; once produced
        // they are not touched until the completion ring gives them back.
        let sent = unsafe { self.socket.tx.produce(&self.free[start..]) };
        if sent == 0 {
            return Ok(0);
        }
        // All or nothing: produce() reserves the whole slice or none of it.
        self.free.truncate(start);
        self.kick(sent)?;
        Ok(sent)
    }

    fn receive(&mut self, timeout_ns: i64, on_reply: &mut dyn FnMut(Reply<'_>)) -> io::Result<usize> {
        self.reclaim();
        let mut n = self.drain(on_reply)?;
        if n == 0 && timeout_ns > 0 {
            for p in &mut self.pollfds {
                p.revents = 0;
            }
            let ts = libc::timespec {
                tv_sec: timeout_ns / 1_000_000_000,
                tv_nsec: timeout_ns % 1_000_000_000,
            };
            // SAFETY: `pollfds` is a live array of that many entries and `ts` a valid timespec;
            // a null mask leaves signals alone.
            let rc = unsafe {
                libc::ppoll(
                    self.pollfds.as_mut_ptr(),
                    self.pollfds.len() as libc::nfds_t,
                    &ts,
                    ptr::null(),
                )
            };
            if rc < 0 && io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return Err(io::Error::last_os_error());
            }
            n = self.drain(on_reply)?;
        }
        Ok(n)
    }
}

impl XdpTransport {
    /// Hands what every receiving socket holds to `on_reply`.
    fn drain(&mut self, on_reply: &mut dyn FnMut(Reply<'_>)) -> io::Result<usize> {
        let options = &self.options;
        let scratch = &mut self.scratch;
        let mut total = drain_one(&mut self.socket, scratch, options, on_reply)?;
        for o in &mut self.others {
            total += drain_one(o, scratch, options, on_reply)?;
        }
        Ok(total)
    }
}

/// Takes one socket's received frames, hands each to `on_reply` and returns them to its fill
/// ring.
#[inline]
fn drain_one(
    socket: &mut QueueSocket,
    scratch: &mut [FrameDesc],
    options: &XdpOptions,
    on_reply: &mut dyn FnMut(Reply<'_>),
) -> io::Result<usize> {
    // SAFETY: the scratch descriptors are overwritten with frames of this socket's UMEM.
    let n = unsafe { socket.rx.consume(scratch) };
    if n == 0 {
        socket.fill.retry();
        return Ok(0);
    }
    // No per-frame stamp in copy mode: one clock read for the batch, right after it arrived.
    let rx_ns = read_clock_ns(libc::CLOCK_REALTIME);
    let first = options.first_flow;
    for desc in &scratch[..n] {
        // SAFETY: the RX ring just handed us this frame; it goes back to the fill ring below.
        let data = unsafe { socket.umem.data(desc) };
        let bytes = data.contents();
        let Some(d) = frame::parse(bytes) else {
            continue;
        };
        // A reply to an address that is none of our flows is counted as from elsewhere.
        let flow = options
            .src_net
            .flow_of(d.dst)
            .and_then(|g| g.checked_sub(first))
            .filter(|&f| f < options.flows);
        on_reply(Reply {
            flow: flow.unwrap_or(0) as usize,
            from_target: flow.is_some() && d.src == options.target,
            payload: &bytes[d.payload],
            rx_ns,
        });
    }
    // SAFETY: these frames came from this socket's RX ring (so they are this UMEM's) and are no
    // longer read. Its fill ring is as large as its RX frame pool, so it has room for all of
    // them; were it to refuse some all the same, they would wait in the backlog, not be lost.
    unsafe { socket.fill.refill(&scratch[..n]) };
    if socket.fill.ring().needs_wakeup() {
        socket.fill.ring().wakeup(socket.rx.fd_mut(), 0)?;
    }
    Ok(n)
}

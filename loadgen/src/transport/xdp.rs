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
//! every other queue gets a receive-only socket of its own ([`RxOnly`]), drained by the same
//! thread.

use std::ffi::CString;
use std::io;
use std::net::SocketAddrV4;
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;
use std::ptr;

use strata::proto::wire::ethernet::EthernetAddress;
use strata::sys::clock::read::read_clock_ns;
use strata::sys::fastpath::xsk::FillRing;
use xsk_rs::config::{
    BindFlags, FrameSize, Interface as XskInterface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, TxQueue, Umem};

use super::frame::{self, SrcNet, HEADERS_LEN};
use super::{Reply, Transport};

/// Frames that carry replies; also the fill ring's size, so returning them never fails.
const RX_FRAMES: u32 = 4096;
/// Frames that carry requests; also the completion ring's size.
const TX_FRAMES: u32 = 4096;
/// RX and TX ring sizes.
const RING: u32 = 2048;
const FRAME_SIZE: u32 = 2048;
/// Descriptors taken from the RX or completion ring per call.
const CONSUME_BATCH: usize = 256;
/// `XDP_MAX_TX_SKB_BUDGET` (linux/if_xdp.h since 6.17; Debian's headers predate it): how many
/// frames one TX kick may turn into skbs in copy mode. The default, 32, makes a kick per 32
/// frames; raising it to the TX ring's size lets one kick send a whole batch.
const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;
/// `SOL_XDP` (linux/socket.h).
const SOL_XDP: libc::c_int = 283;
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
    umem: Umem,
    tx: TxQueue,
    rx: RxQueue,
    fill: FillRing,
    comp: CompQueue,
    /// Request frames not in the kernel's hands.
    free: Vec<FrameDesc>,
    /// Scratch descriptors for the RX and completion rings.
    scratch: Vec<FrameDesc>,
    /// Each flow's address and its prepared Ethernet/IPv4/UDP headers.
    flows: Box<[(SocketAddrV4, [u8; HEADERS_LEN])]>,
    /// The sockets of queues 1.., which only receive.
    others: Vec<RxOnly>,
    /// Every receiving socket's descriptor (queue 0 first), for ppoll.
    pollfds: Vec<libc::pollfd>,
    zero_copy: bool,
}

/// A receive-only socket on one of the other queues, with a UMEM of its own whose frames all
/// circulate between the fill ring and the RX ring.
pub struct RxOnly {
    queue: u32,
    umem: Umem,
    rx: RxQueue,
    fill: FillRing,
    // Kept open with the socket; nothing is ever sent on it.
    _tx: TxQueue,
    _comp: CompQueue,
}

impl RxOnly {
    /// The queue it is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Its descriptor, for the XSKMAP.
    pub fn fd(&self) -> i32 {
        self.rx.fd().as_raw_fd()
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(err) = cur {
        text.push_str(": ");
        text.push_str(&err.to_string());
        cur = err.source();
    }
    text
}

type Rings = (Umem, Vec<FrameDesc>, TxQueue, RxQueue, FillQueue, CompQueue);

fn open_rings(iface: &str, queue: u32, mode: BindFlags) -> io::Result<Rings> {
    let umem_config = UmemConfig::builder()
        .frame_size(FrameSize::new(FRAME_SIZE).expect("a valid frame size"))
        .fill_queue_size(QueueSize::new(RX_FRAMES).expect("a power of two"))
        .comp_queue_size(QueueSize::new(TX_FRAMES).expect("a power of two"))
        .build()
        .map_err(|e| io::Error::other(format!("UMEM config: {e}")))?;
    let (umem, frames) = Umem::new(
        umem_config,
        NonZeroU32::new(RX_FRAMES + TX_FRAMES).expect("non-zero"),
        false,
    )
    .map_err(|e| io::Error::other(format!("cannot create the UMEM: {}", error_chain(&e))))?;
    let ring = QueueSize::new(RING).expect("a power of two");
    let socket_config = SocketConfig::builder()
        .rx_queue_size(ring)
        .tx_queue_size(ring)
        // Our own program steers the replies; libxdp must not load its default one.
        .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
        .bind_flags(mode | BindFlags::XDP_USE_NEED_WAKEUP)
        .build();
    let name = CString::new(iface).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: the UMEM is new and shared with no other socket; the rings returned are used only
    // with this UMEM's frames.
    let (tx, rx, rings) =
        unsafe { xsk_rs::Socket::new(socket_config, &umem, &XskInterface::new(name), queue) }
            .map_err(|e| io::Error::other(error_chain(&e)))?;
    let (fill, comp) =
        rings.ok_or_else(|| io::Error::other("the UMEM's fill and completion rings were taken"))?;
    Ok((umem, frames, tx, rx, fill, comp))
}

/// Lets one TX kick send up to a ring's worth of frames (copy mode). Kernels before 6.17 do not
/// know the option and answer ENOPROTOOPT: they keep their budget of 32, which only costs more
/// kicks, so any failure is ignored.
fn raise_tx_budget(fd: libc::c_int) {
    let budget = RING as libc::c_int;
    // SAFETY: `budget` is a live c_int and its size is passed.
    unsafe {
        libc::setsockopt(
            fd,
            SOL_XDP,
            XDP_MAX_TX_SKB_BUDGET,
            (&budget as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// A receive-only socket on `queue`: all of its UMEM's frames go to the fill ring.
fn open_rx_only(iface: &str, queue: u32, mode: BindFlags) -> io::Result<RxOnly> {
    let (umem, frames, tx, rx, mut fill, comp) = open_rings(iface, queue, mode)
        .map_err(|e| io::Error::new(e.kind(), format!("{iface} queue {queue}: {e}")))?;
    let frames = &frames[..RX_FRAMES as usize];
    // SAFETY: these frames are this UMEM's and in no ring yet.
    let given = unsafe { fill.produce(frames) };
    if given != frames.len() {
        return Err(io::Error::other(format!(
            "{iface} queue {queue}: the fill ring took {given} of {} frames",
            frames.len()
        )));
    }
    Ok(RxOnly {
        queue,
        umem,
        rx,
        fill: FillRing::new(fill),
        _tx: tx,
        _comp: comp,
    })
}

impl XdpTransport {
    /// Opens the socket on `options.iface` queue `options.queue`: zero-copy when the driver
    /// allows it, else copy mode (veth refuses zero-copy with EFAULT).
    pub fn open(options: XdpOptions) -> io::Result<XdpTransport> {
        let (umem, mut frames, tx, rx, mut fill, comp, zero_copy) =
            match open_rings(&options.iface, options.queue, BindFlags::XDP_ZEROCOPY) {
                Ok((u, f, t, r, fi, c)) => (u, f, t, r, fi, c, true),
                Err(zc) => {
                    let (u, f, t, r, fi, c) = open_rings(&options.iface, options.queue, BindFlags::XDP_COPY)
                        .map_err(|e| {
                            io::Error::new(
                                e.kind(),
                                format!(
                                    "cannot open an AF_XDP socket on {} queue {}: {e} (zero-copy: {zc})",
                                    options.iface, options.queue
                                ),
                            )
                        })?;
                    (u, f, t, r, fi, c, false)
                }
            };
        raise_tx_budget(tx.fd().as_raw_fd());
        let free = frames.split_off(RX_FRAMES as usize);
        // SAFETY: these frames are this UMEM's and in no ring yet.
        let given = unsafe { fill.produce(&frames) };
        if given != frames.len() {
            return Err(io::Error::other(format!(
                "the fill ring took {given} of {} frames",
                frames.len()
            )));
        }
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
        let mut free_list = Vec::with_capacity(TX_FRAMES as usize);
        free_list.extend(free);
        let mode = if zero_copy {
            BindFlags::XDP_ZEROCOPY
        } else {
            BindFlags::XDP_COPY
        };
        let others = (1..options.rx_queues)
            .map(|queue| open_rx_only(&options.iface, queue, mode))
            .collect::<io::Result<Vec<_>>>()?;
        let pollfds = std::iter::once(rx.fd().as_raw_fd())
            .chain(others.iter().map(|o| o.fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        Ok(XdpTransport {
            options,
            umem,
            tx,
            rx,
            fill: FillRing::new(fill),
            comp,
            free: free_list,
            scratch,
            flows,
            others,
            pollfds,
            zero_copy,
        })
    }

    /// The receive-only sockets of queues 1.., to register in the XSKMAP.
    pub fn others(&self) -> &[RxOnly] {
        &self.others
    }

    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// The file descriptor to register in the XSKMAP.
    pub fn fd(&self) -> i32 {
        self.rx.fd().as_raw_fd()
    }

    /// Takes the frames whose transmission completed back into the free list.
    fn reclaim(&mut self) {
        loop {
            // SAFETY: the scratch descriptors are overwritten with frames of this UMEM.
            let n = unsafe { self.comp.consume(&mut self.scratch) };
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
        if !self.tx.needs_wakeup() {
            return Ok(());
        }
        let fd = self.tx.fd().as_raw_fd();
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
            let mut data = unsafe { self.umem.data_mut(desc) };
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
        let sent = unsafe { self.tx.produce(&self.free[start..]) };
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
        let mut total = drain_one(
            &self.umem,
            &mut self.rx,
            &mut self.fill,
            scratch,
            options,
            on_reply,
        )?;
        for o in &mut self.others {
            total += drain_one(&o.umem, &mut o.rx, &mut o.fill, scratch, options, on_reply)?;
        }
        Ok(total)
    }
}

/// Takes one socket's received frames, hands each to `on_reply` and returns them to its fill
/// ring.
#[inline]
fn drain_one(
    umem: &Umem,
    rx: &mut RxQueue,
    fill: &mut FillRing,
    scratch: &mut [FrameDesc],
    options: &XdpOptions,
    on_reply: &mut dyn FnMut(Reply<'_>),
) -> io::Result<usize> {
    // SAFETY: the scratch descriptors are overwritten with frames of this socket's UMEM.
    let n = unsafe { rx.consume(scratch) };
    if n == 0 {
        fill.retry();
        return Ok(0);
    }
    // No per-frame stamp in copy mode: one clock read for the batch, right after it arrived.
    let rx_ns = read_clock_ns(libc::CLOCK_REALTIME);
    let first = options.first_flow;
    for desc in &scratch[..n] {
        // SAFETY: the RX ring just handed us this frame; it goes back to the fill ring below.
        let data = unsafe { umem.data(desc) };
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
    unsafe { fill.refill(&scratch[..n]) };
    if fill.ring().needs_wakeup() {
        fill.ring().wakeup(rx.fd_mut(), 0)?;
    }
    Ok(n)
}

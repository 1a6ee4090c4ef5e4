//! One AF_XDP socket per receive queue, each with its own UMEM and rings (xsk-rs).
//!
//! Zero-copy is tried first; when the driver refuses it (veth answers EFAULT, drivers without
//! zero-copy EOPNOTSUPP or EINVAL) the socket is made again in copy mode on a fresh UMEM. Both
//! ask for need_wakeup, so that the kernel is only kicked when it says it must be. Busy polling
//! (SO_PREFER_BUSY_POLL, SO_BUSY_POLL, SO_BUSY_POLL_BUDGET) is set when asked for.
//!
//! Frame accounting: every UMEM frame is always in exactly one place (the fill ring, the
//! kernel, the RX ring, the responder's hands, the TX ring or the completion ring). The fill
//! ring is as large as the UMEM, so returning a frame to it can never fail.

use std::ffi::CString;
use std::io;
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;

use xsk_rs::config::{
    BindFlags, FrameSize, Interface as XskInterface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

use super::abi::META_LEN;

/// Frames per UMEM, and the size of the fill ring.
pub const FRAMES: u32 = 4096;
/// RX, TX and completion ring sizes.
pub const RING: u32 = 2048;
/// Bytes per frame: a page halves are plenty for NTP and keep two frames per page.
pub const FRAME_SIZE: u32 = 2048;

/// Busy-polling settings for `--busy-poll`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BusyPoll {
    /// SO_BUSY_POLL: microseconds to busy-poll in a blocking call.
    pub usecs: u32,
    /// SO_BUSY_POLL_BUDGET: packets per busy-poll round.
    pub budget: u32,
}

/// A queue's socket with its UMEM and the four rings.
pub struct QueueSocket {
    pub umem: Umem,
    pub tx: TxQueue,
    pub rx: RxQueue,
    pub fill: FillQueue,
    pub comp: CompQueue,
    /// The queue this socket is bound to.
    pub queue: u32,
    pub zero_copy: bool,
}

fn sizes() -> (QueueSize, QueueSize, FrameSize) {
    (
        QueueSize::new(FRAMES).expect("a power of two"),
        QueueSize::new(RING).expect("a power of two"),
        FrameSize::new(FRAME_SIZE).expect("a valid frame size"),
    )
}

impl QueueSocket {
    /// Opens the socket of `queue` on interface `name`, zero-copy when the driver allows it.
    pub fn open(name: &str, queue: u32, busy_poll: Option<BusyPoll>) -> io::Result<QueueSocket> {
        let socket = match Self::open_with(name, queue, BindFlags::XDP_ZEROCOPY) {
            Ok(s) => s,
            Err(zc) => {
                log::debug!("{name} queue {queue}: zero-copy bind failed ({zc}); using copy mode");
                Self::open_with(name, queue, BindFlags::XDP_COPY).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "cannot open the AF_XDP socket of {name} queue {queue}: {e} (zero-copy: {zc})"
                        ),
                    )
                })?
            }
        };
        if let Some(bp) = busy_poll {
            socket.set_busy_poll(bp)?;
        }
        socket.raise_tx_budget();
        Ok(socket)
    }

    /// In copy mode a TX kick turns at most a budget of frames into skbs (32 by default) and
    /// leaves the rest on the ring, so a batch of 64 replies needed several kicks and a burst
    /// could fill the TX ring. Since 6.17 the budget can be raised (XDP_MAX_TX_SKB_BUDGET,
    /// up to the ring's size); one kick then sends a whole batch. Older kernels answer
    /// ENOPROTOOPT and keep the default, which still works, with more kicks: ignored.
    fn raise_tx_budget(&self) {
        /// `SOL_XDP` and `XDP_MAX_TX_SKB_BUDGET` (linux/if_xdp.h; Debian's headers predate it).
        const SOL_XDP: libc::c_int = 283;
        const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;
        let budget = RING as libc::c_int;
        // SAFETY: `budget` is a live c_int and its size is passed.
        unsafe {
            libc::setsockopt(
                self.fd(),
                SOL_XDP,
                XDP_MAX_TX_SKB_BUDGET,
                (&budget as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }

    fn open_with(name: &str, queue: u32, mode: BindFlags) -> io::Result<QueueSocket> {
        let (fill_size, ring, frame_size) = sizes();
        let umem_config = UmemConfig::builder()
            .frame_size(frame_size)
            .fill_queue_size(fill_size)
            .comp_queue_size(ring)
            .build()
            .map_err(|e| io::Error::other(format!("UMEM config: {e}")))?;
        let (umem, frames) = Umem::new(umem_config, NonZeroU32::new(FRAMES).expect("non-zero"), false)
            .map_err(|e| io::Error::other(format!("cannot create the UMEM: {}", error_chain(&e))))?;
        let socket_config = SocketConfig::builder()
            .rx_queue_size(ring)
            .tx_queue_size(ring)
            // strata loads its own program; libxdp must not load its default one.
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(mode | BindFlags::XDP_USE_NEED_WAKEUP)
            .build();
        let c_name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: the UMEM is new and used by this socket only; the rings returned are used
        // only with frames of this UMEM.
        let (tx, rx, rings) = unsafe { Socket::new(socket_config, &umem, &XskInterface::new(c_name), queue) }
            .map_err(|e| io::Error::other(error_chain(&e)))?;
        let (mut fill, comp) =
            rings.ok_or_else(|| io::Error::other("the UMEM's fill and completion rings were taken"))?;
        // SAFETY: the frames are this UMEM's, and none is in use anywhere yet.
        let given = unsafe { fill.produce(&frames) };
        if given != frames.len() {
            return Err(io::Error::other(format!(
                "the fill ring took {given} of {} frames",
                frames.len()
            )));
        }
        Ok(QueueSocket {
            umem,
            tx,
            rx,
            fill,
            comp,
            queue,
            zero_copy: mode.contains(BindFlags::XDP_ZEROCOPY),
        })
    }

    pub fn fd(&self) -> i32 {
        self.rx.fd().as_raw_fd()
    }

    /// A duplicate of the socket's descriptor, for reading its XDP_STATISTICS from another
    /// thread ([`super::stats::XskStatsReader`]) while the responder owns the socket.
    pub fn stats_fd(&self) -> io::Result<std::os::fd::OwnedFd> {
        // SAFETY: the descriptor is open for as long as `self` (the socket) lives, which spans
        // this call; the borrow ends before it returns.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(self.fd()) };
        fd.try_clone_to_owned()
    }

    fn set_busy_poll(&self, bp: BusyPoll) -> io::Result<()> {
        for (option, value, what) in [
            (libc::SO_PREFER_BUSY_POLL, 1, "SO_PREFER_BUSY_POLL"),
            (libc::SO_BUSY_POLL, bp.usecs as libc::c_int, "SO_BUSY_POLL"),
            (
                libc::SO_BUSY_POLL_BUDGET,
                bp.budget as libc::c_int,
                "SO_BUSY_POLL_BUDGET",
            ),
        ] {
            // SAFETY: `value` is a live c_int and its size is passed.
            let rc = unsafe {
                libc::setsockopt(
                    self.fd(),
                    libc::SOL_SOCKET,
                    option,
                    (&value as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                let e = io::Error::last_os_error();
                return Err(io::Error::new(e.kind(), format!("{what}: {e}")));
            }
        }
        Ok(())
    }

    /// The metadata the program wrote in front of a received frame.
    ///
    /// # Safety
    /// `desc` must be a descriptor this socket's RX ring just returned and that has not been
    /// given back to the kernel.
    #[inline]
    pub unsafe fn meta(&self, desc: &FrameDesc) -> super::abi::Meta {
        // SAFETY (caller): the frame is ours. xsk-rs exposes no accessor for the XDP headroom,
        // where the kernel puts the metadata (the META_LEN bytes just before the frame's
        // data), so the read is made through the data slice's pointer, stepped back: those
        // bytes lie in the same frame of the same UMEM mapping (every frame starts with
        // XDP_PACKET_HEADROOM = 256 bytes of headroom), and the kernel wrote them before it
        // published the descriptor. Stepping back from a slice's pointer is outside what Rust's
        // aliasing model promises for that slice (the mapping itself is one allocation, which
        // is what the compiler relies on); xsk-rs keeps the UMEM base private, so there is no
        // pointer to the whole frame to derive this from instead.
        unsafe {
            let data = self.umem.data(desc);
            std::ptr::read_unaligned(data.contents().as_ptr().sub(META_LEN).cast())
        }
    }
}

/// An error and its sources, on one line.
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

//! One AF_XDP socket per receive queue, each with its own UMEM and rings (xsk-rs). strata's
//! responders use the default [`SocketOptions`]; strata-loadgen opens its sockets here too, with
//! a larger UMEM of which only part goes to the fill ring (the rest it sends from).
//!
//! Zero-copy is tried first; when the driver refuses it (veth answers EFAULT, drivers without
//! zero-copy EOPNOTSUPP or EINVAL) the socket is made again in copy mode on a fresh UMEM. Both
//! ask for need_wakeup, so that the kernel is only kicked when it says it must be. Busy polling
//! (SO_PREFER_BUSY_POLL, SO_BUSY_POLL, SO_BUSY_POLL_BUDGET) is set when asked for.
//!
//! Frame accounting: every UMEM frame is always in exactly one place (the fill ring, the
//! kernel, the RX ring, the responder's hands, the TX ring, the completion ring, or the
//! backlog of [`FillRing`]). The fill ring is as large as the UMEM (the part of it that
//! receives, see [`SocketOptions::fill_frames`]), so returning a frame to it should never fail; should it fail all the same, [`FillRing`] keeps the frames it refused and
//! offers them again first, so that none is lost.

use std::ffi::CString;
use std::io;
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;

use xsk_rs::config::{
    BindFlags, FrameSize, Interface as XskInterface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

use super::abi::{Meta, META_LEN};

/// Frames per UMEM, and the size of the fill ring (by default, see [`SocketOptions`]).
pub const FRAMES: u32 = 4096;
/// RX, TX and completion ring sizes (by default).
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

/// How a queue's socket is made. [`Default`] is what strata's responders use: [`FRAMES`] frames,
/// all of them in the fill ring, [`RING`]-sized RX, TX and completion rings, no busy polling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOptions {
    /// Frames in the UMEM.
    pub frames: u32,
    /// How many of them are given to the fill ring at open (to receive into), and the fill
    /// ring's size (a power of two, at most `frames`). The others are handed over in
    /// [`QueueSocket::spare`], to send from.
    pub fill_frames: u32,
    /// RX and TX ring sizes (a power of two); also how many frames one TX kick may send.
    pub ring: u32,
    /// Completion ring size (a power of two).
    pub comp_ring: u32,
    /// Busy polling (`--busy-poll`), if any.
    pub busy_poll: Option<BusyPoll>,
}

impl Default for SocketOptions {
    fn default() -> SocketOptions {
        SocketOptions {
            frames: FRAMES,
            fill_frames: FRAMES,
            ring: RING,
            comp_ring: RING,
            busy_poll: None,
        }
    }
}

/// A queue's socket with its UMEM and the four rings.
pub struct QueueSocket {
    pub umem: Umem,
    pub tx: TxQueue,
    pub rx: RxQueue,
    pub fill: FillRing,
    pub comp: CompQueue,
    /// The UMEM's frames that were not given to the fill ring (none with the default options):
    /// the caller's, in no ring.
    pub spare: Vec<FrameDesc>,
    /// The queue this socket is bound to.
    pub queue: u32,
    pub zero_copy: bool,
}

fn queue_size(n: u32, what: &str) -> io::Result<QueueSize> {
    QueueSize::new(n)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{what} size {n}: {e}")))
}

impl QueueSocket {
    /// Opens the socket of `queue` on interface `name`, zero-copy when the driver allows it.
    pub fn open(name: &str, queue: u32, options: &SocketOptions) -> io::Result<QueueSocket> {
        let socket = match Self::open_with(name, queue, options, BindFlags::XDP_ZEROCOPY) {
            Ok(s) => s,
            Err(zc) => {
                log::debug!("{name} queue {queue}: zero-copy bind failed ({zc}); using copy mode");
                Self::open_with(name, queue, options, BindFlags::XDP_COPY).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!(
                            "cannot open the AF_XDP socket of {name} queue {queue}: {e} (zero-copy: {zc})"
                        ),
                    )
                })?
            }
        };
        if let Some(bp) = options.busy_poll {
            socket.set_busy_poll(bp)?;
        }
        socket.raise_tx_budget(options.ring);
        Ok(socket)
    }

    /// In copy mode a TX kick turns at most a budget of frames into skbs (32 by default) and
    /// leaves the rest on the ring, so a batch of 64 replies needed several kicks and a burst
    /// could fill the TX ring. Since 6.17 the budget can be raised (XDP_MAX_TX_SKB_BUDGET,
    /// up to the ring's size); one kick then sends a whole batch. Older kernels answer
    /// ENOPROTOOPT and keep the default, which still works, with more kicks: ignored.
    fn raise_tx_budget(&self, ring: u32) {
        /// `SOL_XDP` and `XDP_MAX_TX_SKB_BUDGET` (linux/if_xdp.h; Debian's headers predate it).
        const SOL_XDP: libc::c_int = 283;
        const XDP_MAX_TX_SKB_BUDGET: libc::c_int = 9;
        let budget = ring as libc::c_int;
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

    fn open_with(
        name: &str,
        queue: u32,
        options: &SocketOptions,
        mode: BindFlags,
    ) -> io::Result<QueueSocket> {
        let fill_size = queue_size(options.fill_frames, "fill ring")?;
        let ring = queue_size(options.ring, "RX/TX ring")?;
        let comp_size = queue_size(options.comp_ring, "completion ring")?;
        let frame_size = FrameSize::new(FRAME_SIZE).expect("a valid frame size");
        let frame_count = NonZeroU32::new(options.frames)
            .filter(|n| n.get() >= options.fill_frames)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{} UMEM frames: fewer than the {} of the fill ring",
                        options.frames, options.fill_frames
                    ),
                )
            })?;
        let umem_config = UmemConfig::builder()
            .frame_size(frame_size)
            .fill_queue_size(fill_size)
            .comp_queue_size(comp_size)
            .build()
            .map_err(|e| io::Error::other(format!("UMEM config: {e}")))?;
        let (umem, mut frames) = Umem::new(umem_config, frame_count, false)
            .map_err(|e| io::Error::other(format!("cannot create the UMEM: {}", error_chain(&e))))?;
        let socket_config = SocketConfig::builder()
            .rx_queue_size(ring)
            .tx_queue_size(ring)
            // The caller loads its own program; libxdp must not load its default one.
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
        let spare = frames.split_off(options.fill_frames as usize);
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
            fill: FillRing::with_capacity(fill, frames.len()),
            comp,
            spare,
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

    /// The metadata the program wrote in front of a received frame (all zero, which no stamp
    /// is, when the frame has no room for it in front of its data).
    ///
    /// # Safety
    /// `desc` must be a descriptor this socket's RX ring just returned and that has not been
    /// given back to the kernel.
    #[inline]
    pub unsafe fn meta(&self, desc: &FrameDesc) -> Meta {
        // Where the UMEM mapping starts: the address (only; no pointer is made from it) of the
        // packet data minus the descriptor's offset of that data in the UMEM.
        // SAFETY: the caller guarantees that `desc` is a frame of this UMEM, which the kernel
        // has handed to us (RX) and does not write while we hold it.
        let data = unsafe { self.umem.data(desc) };
        let umem_base = data.contents().as_ptr().addr() - desc.addr();
        // SAFETY: `umem_base` is where this socket's UMEM mapping starts (above), and `desc` a
        // frame of it that is ours (the caller's contract), so `umem_base + desc.addr()` is the
        // start of that frame's packet data inside the mapping.
        unsafe { read_meta(umem_base, desc.addr()) }
    }
}

/// Reads the [`Meta`] in the XDP headroom just before the packet data at offset `data_offset`
/// of a UMEM that starts at address `umem_base`; all zero when the data starts less than
/// [`META_LEN`] bytes into its frame (then there is no headroom in front of it to read).
///
/// xsk-rs 0.11 only hands out slices of a frame's data segment and of the user headroom (none
/// here, at the start of the frame), never of the XDP headroom where the kernel puts the
/// metadata (`bpf_xdp_adjust_meta`: the META_LEN bytes right before the data), and it keeps the
/// UMEM's base pointer private. A pointer stepped back from the data slice would have that
/// slice's provenance, which does not cover the headroom: reading through it is undefined
/// behaviour even though the bytes are mapped. So the pointer is made from the address with
/// [`std::ptr::with_exposed_provenance`], which picks up the provenance of the whole mapping:
/// the UMEM is an anonymous mmap shared with the kernel, memory outside the control of the Rust
/// abstract machine (not its stack, heap or statics), which the standard library documents as
/// accessible through exposed provenance; and its base pointer is exposed besides, since
/// libxdp's `xsk_umem__create` casts it to an integer to register the area with the kernel
/// (`XDP_UMEM_REG`).
///
/// # Safety
/// `umem_base` must be the start address of a live memory area that an exposed provenance
/// covers (a UMEM mapping, see above; the tests expose a buffer of their own), `data_offset`
/// the offset of a frame's packet data in it (frames are [`FRAME_SIZE`] bytes, aligned to that
/// size, as in xsk-rs's aligned UMEM, and wholly inside the area), and the [`META_LEN`] bytes
/// before that data must not be written by anyone (userspace or kernel) during the call: the
/// frame must be the caller's.
#[inline]
unsafe fn read_meta(umem_base: usize, data_offset: usize) -> Meta {
    let in_frame = data_offset % FRAME_SIZE as usize;
    if in_frame < META_LEN {
        return Meta::default();
    }
    let meta = std::ptr::with_exposed_provenance::<Meta>(umem_base + data_offset - META_LEN);
    // SAFETY: the META_LEN bytes at `meta` lie inside the frame that holds the data (`in_frame`
    // is at least META_LEN, checked above), hence inside the mapping; the pointer's provenance
    // covers that mapping (exposed, see above); nobody writes the bytes during the read (the
    // frame is the caller's) and no Rust reference covers them (xsk-rs's slices cover the data
    // and the empty user headroom only); read_unaligned needs no alignment; and `Meta` is
    // `repr(C)` integers without padding, valid for every bit pattern.
    unsafe { meta.read_unaligned() }
}

/// Where frames are returned to the kernel for receiving: a UMEM's fill ring, and behind it a
/// backlog of the frames the ring refused, offered to the ring again (first) at the next call,
/// so that a refusal never loses a frame. The ring is as large as the frames that circulate
/// through it, so a refusal is not expected at all; each frame that had to wait is counted, and
/// the first is logged.
///
/// The backlog's room for every one of those frames is allocated up front: returning frames
/// never allocates (no more frames than those can ever wait).
pub struct FillRing<Q: FrameRing = FillQueue> {
    ring: Q,
    backlog: Vec<FrameDesc>,
    waited: u64,
}

/// A ring that takes frames, as the fill ring does (a seam for the tests).
pub trait FrameRing {
    /// Hands `frames` to the kernel; returns how many it took (xsk-rs's rings take a slice
    /// whole or not at all).
    ///
    /// # Safety
    /// As [`FillQueue::produce`]: the frames belong to the UMEM of this ring, and are in no
    /// other ring nor used anywhere else.
    unsafe fn produce(&mut self, frames: &[FrameDesc]) -> usize;

    /// A lower bound of the free slots, given that `wanted` are wanted (as
    /// [`FillQueue::nb_free`]).
    fn free(&mut self, wanted: usize) -> usize;
}

impl FrameRing for FillQueue {
    #[inline]
    unsafe fn produce(&mut self, frames: &[FrameDesc]) -> usize {
        // SAFETY: the caller's contract is FillQueue::produce's.
        unsafe { FillQueue::produce(self, frames) }
    }

    #[inline]
    fn free(&mut self, wanted: usize) -> usize {
        self.nb_free(wanted.min(u32::MAX as usize) as u32) as usize
    }
}

impl<Q: FrameRing> FillRing<Q> {
    /// The fill ring of a UMEM of the default [`FRAMES`] frames.
    pub fn new(ring: Q) -> FillRing<Q> {
        FillRing::with_capacity(ring, FRAMES as usize)
    }

    /// The fill ring of a UMEM of which `frames` frames circulate through it.
    pub fn with_capacity(ring: Q, frames: usize) -> FillRing<Q> {
        FillRing {
            ring,
            backlog: Vec::with_capacity(frames),
            waited: 0,
        }
    }

    /// Returns `frames` to the kernel: the backlog first, then these; what the ring does not
    /// take waits in the backlog for the next call (or [`FillRing::retry`]).
    ///
    /// # Safety
    /// The frames belong to this ring's UMEM and are the caller's: in no ring, not in the
    /// backlog already, and not used after this call.
    #[inline]
    pub unsafe fn refill(&mut self, frames: &[FrameDesc]) {
        self.retry();
        if frames.is_empty() {
            return;
        }
        let taken = if self.backlog.is_empty() {
            // SAFETY: the caller's contract (the frames are this UMEM's and the caller's).
            unsafe { Self::produce_into(&mut self.ring, frames) }
        } else {
            // The ring is still full: these wait behind the backlog.
            0
        };
        if taken < frames.len() {
            self.wait(&frames[taken..]);
        }
    }

    /// Offers the backlog to the ring again (a no-op when it is empty). Call it when no frames
    /// are being returned (idle), so that waiting frames do not wait for traffic.
    #[inline]
    pub fn retry(&mut self) {
        if self.backlog.is_empty() {
            return;
        }
        // SAFETY: the backlog holds only frames given to `refill` under its contract and not
        // taken by the ring since: this UMEM's, and nobody else's.
        let taken = unsafe { Self::produce_into(&mut self.ring, &self.backlog) };
        self.backlog.drain(..taken);
    }

    /// Frames waiting for room in the ring.
    pub fn backlog(&self) -> usize {
        self.backlog.len()
    }

    /// Frames that ever had to wait for room in the ring.
    pub fn waited(&self) -> u64 {
        self.waited
    }

    /// The ring itself (for its wakeup flag).
    pub fn ring(&self) -> &Q {
        &self.ring
    }

    /// Produces as many of `frames` (from the first) as the ring has room for; returns how many.
    ///
    /// # Safety
    /// As [`FrameRing::produce`].
    #[inline]
    unsafe fn produce_into(ring: &mut Q, frames: &[FrameDesc]) -> usize {
        let room = ring.free(frames.len()).min(frames.len());
        if room == 0 {
            return 0;
        }
        // SAFETY: a prefix of frames that the caller's contract covers.
        unsafe { ring.produce(&frames[..room]) }.min(room)
    }

    #[cold]
    fn wait(&mut self, frames: &[FrameDesc]) {
        if self.waited == 0 {
            log::warn!(
                "the UMEM fill ring refused {} frames; they wait and are offered again",
                frames.len()
            );
        }
        self.waited += frames.len() as u64;
        self.backlog.extend_from_slice(frames);
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

#[cfg(test)]
mod tests {
    use super::super::abi::META_MAGIC;
    use super::*;

    /// The bytes of `meta` as the program writes them (native order, `repr(C)`).
    fn meta_bytes(meta: &Meta) -> [u8; META_LEN] {
        let mut out = [0u8; META_LEN];
        out[0..8].copy_from_slice(&meta.xdp_tai_ns.to_ne_bytes());
        out[8..16].copy_from_slice(&meta.hw_ns.to_ne_bytes());
        out[16..20].copy_from_slice(&meta.magic.to_ne_bytes());
        out[20..24].copy_from_slice(&meta.flags.to_ne_bytes());
        out
    }

    #[test]
    fn metadata_is_read_from_the_headroom_in_front_of_the_data() {
        // Three frames laid out as a UMEM's, the data 256 bytes (XDP_PACKET_HEADROOM) into the
        // second frame, and at an odd offset into the third.
        let mut umem = vec![0u8; 3 * FRAME_SIZE as usize];
        let second = FRAME_SIZE as usize + 256;
        let third = 2 * FRAME_SIZE as usize + 101;
        let a = Meta {
            xdp_tai_ns: 0x0102_0304_0506_0708,
            hw_ns: 9,
            magic: META_MAGIC,
            flags: 1,
        };
        let b = Meta {
            xdp_tai_ns: 77,
            hw_ns: 0,
            magic: META_MAGIC,
            flags: 0,
        };
        umem[second - META_LEN..second].copy_from_slice(&meta_bytes(&a));
        umem[third - META_LEN..third].copy_from_slice(&meta_bytes(&b));
        // The frame before the data of the second frame is never read: poison it.
        umem[..FRAME_SIZE as usize].fill(0xee);
        let base = umem.as_ptr().expose_provenance();
        // SAFETY: `base` is the start of `umem`, exposed above; the offsets are data offsets in
        // it, and nothing writes `umem` during the reads.
        let (got_a, got_b) = unsafe { (read_meta(base, second), read_meta(base, third)) };
        assert_eq!(got_a, a);
        assert_eq!(got_b, b);
    }

    #[test]
    fn data_too_close_to_the_frame_start_has_no_metadata() {
        let umem = vec![0xffu8; 2 * FRAME_SIZE as usize];
        let base = umem.as_ptr().expose_provenance();
        for offset in [0, 1, META_LEN - 1] {
            // SAFETY: as above; nothing is read (the data leaves no room for metadata).
            let meta = unsafe { read_meta(base, FRAME_SIZE as usize + offset) };
            assert_eq!(meta, Meta::default(), "data {offset} bytes into its frame");
        }
        // Exactly enough room: read, and all ones is what is there.
        // SAFETY: as above.
        let meta = unsafe { read_meta(base, FRAME_SIZE as usize + META_LEN) };
        assert_eq!(meta.magic, u32::MAX);
    }

    /// A fill ring with `room` free slots that takes a slice whole or not at all, as xsk-rs's
    /// does, and records the frames it took (by their tag, kept in the options field).
    struct TestRing {
        room: usize,
        /// What `free` says: the true room, or (a stale cache) more than that.
        claims_more: bool,
        taken: Vec<u32>,
    }

    impl FrameRing for TestRing {
        unsafe fn produce(&mut self, frames: &[FrameDesc]) -> usize {
            if frames.len() > self.room {
                return 0;
            }
            self.room -= frames.len();
            self.taken.extend(frames.iter().map(|f| f.options()));
            frames.len()
        }

        fn free(&mut self, wanted: usize) -> usize {
            if self.claims_more {
                wanted
            } else {
                self.room
            }
        }
    }

    fn ring(room: usize, claims_more: bool) -> FillRing<TestRing> {
        FillRing::new(TestRing {
            room,
            claims_more,
            taken: Vec::new(),
        })
    }

    fn give(fill: &mut FillRing<TestRing>, frames: &[FrameDesc]) {
        // SAFETY: the test's frames belong to no UMEM or ring at all; TestRing only reads them.
        unsafe { fill.refill(frames) };
    }

    fn frames(tags: std::ops::Range<u32>) -> Vec<FrameDesc> {
        tags.map(|tag| {
            let mut desc = FrameDesc::default();
            desc.set_options(tag);
            desc
        })
        .collect()
    }

    #[test]
    fn refused_frames_wait_and_go_first_once_there_is_room() {
        let mut fill = ring(4, false);
        give(&mut fill, &frames(0..6));
        assert_eq!(fill.ring().taken, [0, 1, 2, 3]);
        assert_eq!((fill.backlog(), fill.waited()), (2, 2));

        // The ring is full: new frames wait behind the backlog.
        give(&mut fill, &frames(6..8));
        assert_eq!((fill.backlog(), fill.waited()), (4, 4));

        // Room for three: the oldest waiting frames go first.
        fill.ring.room = 3;
        fill.retry();
        assert_eq!(fill.ring().taken, [0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(fill.backlog(), 1);

        // Plenty of room: the last waiting frame, then the new ones.
        fill.ring.room = 100;
        give(&mut fill, &frames(8..10));
        assert_eq!(fill.ring().taken, (0..10).collect::<Vec<_>>());
        assert_eq!((fill.backlog(), fill.waited()), (0, 4));
        fill.retry();
        assert_eq!(fill.ring().taken.len(), 10, "a frame was given twice");
    }

    #[test]
    fn a_refusal_despite_claimed_room_loses_nothing() {
        // `free` says there is room (a stale count), the ring takes nothing.
        let mut fill = ring(0, true);
        give(&mut fill, &frames(0..5));
        give(&mut fill, &frames(5..8));
        fill.retry();
        assert!(fill.ring().taken.is_empty());
        assert_eq!((fill.backlog(), fill.waited()), (8, 8));
        fill.ring.room = 8;
        fill.retry();
        assert_eq!(fill.ring().taken, (0..8).collect::<Vec<_>>());
        assert_eq!(fill.backlog(), 0);
    }

    #[test]
    fn a_backlog_of_the_whole_umem_does_not_allocate() {
        let mut fill = ring(0, false);
        let capacity = fill.backlog.capacity();
        assert!(capacity >= FRAMES as usize);
        for chunk in frames(0..FRAMES).chunks(64) {
            give(&mut fill, chunk);
        }
        assert_eq!(fill.backlog(), FRAMES as usize);
        assert_eq!(fill.backlog.capacity(), capacity);
        fill.ring.room = FRAMES as usize;
        fill.retry();
        assert_eq!(fill.ring().taken, (0..FRAMES).collect::<Vec<_>>());
    }
}

//! The loop of one AF_XDP responder thread: take a batch from RX, rewrite each frame in place
//! into its reply through the shared pipeline (`crate::sys::pipeline`), read T3 once, stamp it into
//! every reply, submit the batch to TX, and return completed frames to the fill ring.
//!
//! The thread owns its socket, UMEM, rings and counters and shares nothing writable: no lock.
//! Every buffer is allocated in [`Responder::new`]; the loop allocates nothing. Syscalls are
//! per batch, never per packet: a `sendto` kick after submitting TX when the kernel asks for
//! one (need_wakeup; copy mode always does), and a `poll` (or, with busy polling, a
//! non-blocking `recvfrom`) only when RX is empty.
//!
//! Interleaved mode (the pipeline's, as on the socket path): the transmit time of a reply to an
//! interleaving client is the clock read after its batch was produced to the TX ring, right
//! before the kick that sends it (`af_xdp_kick`). That is a lower bound on when the frame went
//! to the driver, on every driver and in both modes: in copy mode the kernel's `xsk_sendmsg`
//! runs `__xsk_generic_xmit` (net/xdp/xsk.c), which builds an skb for each TX descriptor (up to
//! TX_BATCH_SIZE, 32, per call) and hands it to the driver with `__dev_direct_xmit` before the
//! syscall returns; in zero-copy mode the kick only wakes the driver, which sends after it.
//! The time after the kick, and the time the frame's completion is taken from the completion
//! ring, are upper bounds, and on veth far from the truth: veth delivers the frame to its peer
//! inside the xmit call, and the receive softirq runs when `__dev_direct_xmit` re-enables
//! bottom halves, still within the syscall, so the client has stamped its receive before the
//! kick returns, and the completion is posted only when the skb is freed. Measured with chronyd
//! `xleave` over veth (tests/xsk_timestamps_lab.rs), either made interleaved offsets worse than
//! basic ones (median 6.4-6.5 µs against 0.9-1.5 µs for the XDP program's basic replies).
//!
//! A NIC's own transmit stamp (XDP_TXMD_FLAGS_TIMESTAMP in the frame's TX metadata) needs the
//! UMEM registered with tx_metadata_len, which xsk-rs 0.11 cannot do (its UMEM config has no
//! such field); `xsk_features` reports whether the driver could.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use xsk_rs::FrameDesc;

use crate::proto::frame::FrameReply;
use crate::proto::interleave::XleaveTable;
use crate::proto::metrics::{CounterWriter, RxTimestampSource, TxTimestampSource};
use crate::proto::state::StateReader;
use crate::sys::handoff::SymmetricSender;
use crate::sys::pipeline::{Frames, Pipeline, RxStamp};

use super::abi::{Meta, KISS_DENY, KISS_RATE, KISS_RSTR, META_HW, META_KISS_SHIFT, META_MAGIC};
use super::xsk::QueueSocket;
use crate::proto::respond::{Admission, KissCode};

/// How long an idle responder waits in poll before it looks at the shutdown flag again.
const IDLE_POLL_MS: i32 = 100;
/// How long it waits while replies are still in flight (their completions are due soon).
const IN_FLIGHT_POLL_MS: i32 = 1;

/// What the XDP program's admission decided for a redirected request: the Kiss-o'-Death it
/// chose, or Serve (also for a frame whose metadata is not the program's).
pub fn admission_of(meta: &Meta) -> Admission {
    if meta.magic != META_MAGIC {
        return Admission::Serve;
    }
    match (meta.flags >> META_KISS_SHIFT) & 3 {
        KISS_RATE => Admission::Kiss(KissCode::Rate),
        KISS_DENY => Admission::Kiss(KissCode::Deny),
        KISS_RSTR => Admission::Kiss(KissCode::Rstr),
        _ => Admission::Serve,
    }
}

/// A metadata stamp older than this (against the clock read after the batch arrived) is not
/// this frame's: the headroom still held an earlier frame's metadata.
const MAX_STAMP_AGE_NS: i64 = 1_000_000_000;

/// Where a request's T2 comes from, given its metadata and the clock read right after the
/// batch arrived (CLOCK_TAI ns).
#[inline]
pub fn receive_stamp(meta: &Meta, batch_tai_ns: i64) -> RxStamp {
    let age = batch_tai_ns.wrapping_sub(meta.xdp_tai_ns as i64);
    if meta.magic != META_MAGIC || !(0..=MAX_STAMP_AGE_NS).contains(&age) {
        return RxStamp {
            ns: batch_tai_ns,
            source: RxTimestampSource::UserSpace,
            hardware_ns: None,
            ifindex: None,
        };
    }
    // The NIC's stamp is in its PHC's time: the pipeline maps it through the interface's line,
    // or falls back to the XDP-time stamp.
    RxStamp {
        ns: meta.xdp_tai_ns as i64,
        source: RxTimestampSource::Xdp,
        hardware_ns: (meta.flags & META_HW != 0).then_some(meta.hw_ns as i64),
        ifindex: None,
    }
}

/// One responder: a queue's socket, its batch buffers and its counters.
pub struct Responder {
    name: String,
    socket: QueueSocket,
    state: StateReader,
    pipeline: Pipeline<Frames, CounterWriter>,
    shutdown: Arc<AtomicBool>,
    busy_poll: bool,
    /// RX batch, then the replies' descriptors in place (`tx_len` of them).
    rx: Vec<FrameDesc>,
    replies: Vec<FrameReply>,
    tx: Vec<FrameDesc>,
    recycle: Vec<FrameDesc>,
    completed: Vec<FrameDesc>,
    /// Frames submitted to TX whose completion has not come back yet.
    in_flight: usize,
    reported_send_error: bool,
}

impl Responder {
    /// Allocates everything the loop needs; call it on the responder's own thread, after
    /// pinning.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        socket: QueueSocket,
        batch_size: usize,
        state: StateReader,
        counters: CounterWriter,
        shutdown: Arc<AtomicBool>,
        ntp_port: u16,
        busy_poll: bool,
        symmetric: Option<SymmetricSender>,
    ) -> Responder {
        Responder {
            name,
            socket,
            state,
            pipeline: Pipeline::new(Frames { ntp_port }, counters, symmetric),
            shutdown,
            busy_poll,
            rx: vec![FrameDesc::default(); batch_size],
            replies: Vec::with_capacity(batch_size),
            tx: Vec::with_capacity(batch_size),
            recycle: Vec::with_capacity(batch_size),
            completed: vec![FrameDesc::default(); super::xsk::RING as usize],
            in_flight: 0,
            reported_send_error: false,
        }
    }

    /// Interleaved mode with `table` (shared by every responder of the tier). None: off.
    pub fn with_interleave(mut self, table: Option<Arc<XleaveTable>>) -> Responder {
        self.pipeline = self.pipeline.with_interleave(table, self.rx.len());
        self
    }

    /// NTS requests are answered with `nts` (None: as plain requests).
    pub fn with_nts(mut self, nts: Option<crate::proto::nts::NtsResponder>) -> Responder {
        self.pipeline = self.pipeline.with_nts(nts);
        self
    }

    /// Hardware receive stamps become T2 through `phc`, the line of this queue's interface.
    pub fn with_phc(mut self, phc: Option<crate::proto::clock::phc::PhcLineReader>) -> Responder {
        self.pipeline = self.pipeline.with_phc(phc);
        self
    }

    /// Requests with a MAC are answered with `keys` (None: as plain requests).
    pub fn with_keys(mut self, keys: Option<Arc<crate::proto::auth::KeyTable>>) -> Responder {
        self.pipeline = self.pipeline.with_keys(keys);
        self
    }

    /// Serves until the shutdown flag is set.
    pub fn run(mut self) -> io::Result<()> {
        while !self.shutdown.load(Ordering::Relaxed) {
            self.reclaim_completions();
            // SAFETY: the descriptors are filled in by the RX ring of this socket's UMEM.
            let received = unsafe { self.socket.rx.consume(&mut self.rx) };
            if received > 0 {
                self.serve(received);
            } else {
                self.idle()?;
            }
        }
        Ok(())
    }

    /// Nothing to receive: kick TX if replies are waiting to go out, then wait for RX.
    fn idle(&mut self) -> io::Result<()> {
        self.socket.fill.retry();
        if self.in_flight > 0 && self.socket.tx.needs_wakeup() {
            // Copy mode sends at most a few dozen frames per kick: keep kicking until the
            // completions say everything went.
            self.kick_tx();
        }
        if self.busy_poll {
            // With SO_PREFER_BUSY_POLL a non-blocking receive call runs the driver's NAPI
            // poll in this thread instead of waiting for an interrupt.
            // SAFETY: a zero-length receive with null buffers only drives the socket.
            unsafe {
                libc::recvfrom(
                    self.socket.fd(),
                    std::ptr::null_mut(),
                    0,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                )
            };
            return Ok(());
        }
        let timeout = if self.in_flight > 0 {
            IN_FLIGHT_POLL_MS
        } else {
            IDLE_POLL_MS
        };
        match self.socket.rx.poll(timeout) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(io::Error::new(e.kind(), format!("{}: poll: {e}", self.name))),
        }
    }

    /// Returns the frames whose replies went out to the fill ring.
    #[inline]
    fn reclaim_completions(&mut self) {
        if self.in_flight == 0 {
            return;
        }
        // SAFETY: completions are frames of this socket's UMEM that the kernel is done with.
        let done = unsafe { self.socket.comp.consume(&mut self.completed) };
        if done > 0 {
            // SAFETY: these frames are ours again; the fill ring holds every frame of the UMEM,
            // so it has room.
            unsafe { self.socket.fill.refill(&self.completed[..done]) };
            self.in_flight -= done;
        }
    }

    #[inline]
    fn kick_tx(&mut self) {
        if let Err(e) = self.socket.tx.wakeup() {
            self.pipeline.send_failed();
            if !self.reported_send_error {
                self.reported_send_error = true;
                log::warn!(
                    "{}: TX wakeup failed: {e} (further errors are only counted)",
                    self.name
                );
            }
        }
    }

    fn serve(&mut self, received: usize) {
        self.pipeline.begin(&self.state, received);
        // The fallback T2 for a frame without metadata: the clock right after the batch came.
        let batch_tai_ns = self.pipeline.clock_ns();
        self.replies.clear();
        self.tx.clear();
        self.recycle.clear();
        for i in 0..received {
            let mut desc = self.rx[i];
            // SAFETY: `desc` came from this socket's RX ring and is not handed back yet.
            let meta = unsafe { self.socket.meta(&desc) };
            let stamp = receive_stamp(&meta, batch_tai_ns);
            // SAFETY: the frame is ours (just received), and no other reference to it exists.
            let mut data = unsafe { self.socket.umem.data_mut(&mut desc) };
            let admission = Ok(admission_of(&meta));
            match self.pipeline.answer(data.contents_mut(), stamp, None, admission) {
                Some(reply) => {
                    data.cursor().set_pos(reply.len);
                    self.replies.push(reply);
                    self.tx.push(desc);
                }
                None => self.recycle.push(desc),
            }
        }
        if !self.recycle.is_empty() {
            // SAFETY: dropped frames are ours; the fill ring has room for every frame.
            unsafe { self.socket.fill.refill(&self.recycle) };
        }
        if !self.tx.is_empty() {
            self.submit();
        }
    }

    /// Stamps T3 into every reply of the batch and hands the batch to TX.
    fn submit(&mut self) {
        let wanted = self.tx.len();
        if (self.socket.tx.nb_free(wanted as u32) as usize) < wanted {
            self.reclaim_completions();
        }
        let room = (self.socket.tx.nb_free(wanted as u32) as usize).min(wanted);
        // One clock read per batch, as late as possible. Replies TX has no room for are not
        // stamped (nor their response time recorded): they are counted as send errors below.
        let t3 = self.pipeline.transmit_time();
        for (desc, reply) in self.tx[..room].iter_mut().zip(&self.replies) {
            // SAFETY: the frame is ours until it is produced to TX below.
            let mut data = unsafe { self.socket.umem.data_mut(desc) };
            self.pipeline.stamp(data.contents_mut(), reply, t3);
        }
        // SAFETY: the frames are this UMEM's, hold complete replies, and are not used again
        // until the completion ring returns them.
        let produced = unsafe { self.socket.tx.produce(&self.tx[..room]) };
        for reply in &self.replies[..produced] {
            self.pipeline.sent(reply);
        }
        self.in_flight += produced;
        if produced < wanted {
            // TX is full: the kernel is behind. Drop the rest (their frames go back to the fill
            // ring) rather than wait, and count each one.
            for _ in produced..wanted {
                self.pipeline.send_failed();
            }
            // SAFETY: these frames were not produced; they are still ours.
            unsafe { self.socket.fill.refill(&self.tx[produced..]) };
        }
        if self.pipeline.interleaves() {
            self.remember_exchanges(produced, t3);
        }
        if self.socket.tx.needs_wakeup() {
            self.kick_tx();
        }
    }

    /// The replies to interleaving clients among the `produced` ones: remembered with T3, which
    /// the clock read now (the batch is in the TX ring, the kick is next) replaces.
    fn remember_exchanges(&mut self, produced: usize, t3: crate::proto::wire::NtpTimestamp) {
        let before_kick = self.pipeline.clock_ns();
        for k in 0..produced {
            if let Some(exchange) = self.pipeline.exchange(k) {
                self.pipeline.remember(exchange, t3);
                self.pipeline
                    .transmitted(exchange, before_kick, TxTimestampSource::AfXdpKick);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_decides_the_source_of_t2() {
        let meta = Meta {
            xdp_tai_ns: 5,
            hw_ns: 0,
            magic: META_MAGIC,
            flags: 0,
        };
        let stamp = |ns, source, hardware_ns| RxStamp {
            ns,
            source,
            hardware_ns,
            ifindex: None,
        };
        assert_eq!(receive_stamp(&meta, 9), stamp(5, RxTimestampSource::Xdp, None));
        let hw = Meta {
            hw_ns: 7,
            flags: META_HW,
            ..meta
        };
        assert_eq!(receive_stamp(&hw, 9), stamp(5, RxTimestampSource::Xdp, Some(7)));
        let foreign = Meta { magic: 0, ..meta };
        assert_eq!(
            receive_stamp(&foreign, 9),
            stamp(9, RxTimestampSource::UserSpace, None)
        );
        // An earlier frame's metadata left in the headroom, or one from the future.
        let old = 5 + MAX_STAMP_AGE_NS + 1;
        assert_eq!(
            receive_stamp(&meta, old),
            stamp(old, RxTimestampSource::UserSpace, None)
        );
        assert_eq!(
            receive_stamp(&meta, 4),
            stamp(4, RxTimestampSource::UserSpace, None)
        );
    }
}

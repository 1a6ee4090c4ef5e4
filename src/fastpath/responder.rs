//! The loop of one AF_XDP responder thread: take a batch from RX, rewrite each frame in place
//! into its reply, read T3 once, stamp it into every reply, submit the batch to TX, and return
//! completed frames to the fill ring.
//!
//! The thread owns its socket, UMEM, rings and counters and shares nothing writable: no lock.
//! Every buffer is allocated in [`Responder::new`]; the loop allocates nothing. Syscalls are
//! per batch, never per packet: a `sendto` kick after submitting TX when the kernel asks for
//! one (need_wakeup; copy mode always does), and a `poll` (or, with busy polling, a
//! non-blocking `recvfrom`) only when RX is empty.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use xsk_rs::FrameDesc;

use crate::clock::read::read_clock_ns;
use crate::clock::{Clock, FixedClock, SystemClock};
use crate::control::handoff::SymmetricSender;
use crate::frame::{reply_in_place, request_source, stamp_transmit_in_frame, FrameDrop, FrameReply};
use crate::metrics::{CounterWriter, RxTimestampSource};
use crate::respond::{Admission, DropReason, ReplyKind};
use crate::state::StateReader;
use crate::wire::ntp;

use super::abi::{Meta, META_HW, META_MAGIC};
use super::xsk::QueueSocket;

/// How long an idle responder waits in poll before it looks at the shutdown flag again.
const IDLE_POLL_MS: i32 = 100;
/// How long it waits while replies are still in flight (their completions are due soon).
const IN_FLIGHT_POLL_MS: i32 = 1;

/// A metadata stamp older than this (against the clock read after the batch arrived) is not
/// this frame's: the headroom still held an earlier frame's metadata.
const MAX_STAMP_AGE_NS: i64 = 1_000_000_000;

/// Where a request's T2 comes from, given its metadata and the clock read right after the
/// batch arrived: (CLOCK_TAI ns, source, whether a hardware stamp was there but unused).
#[inline]
pub fn receive_stamp(meta: &Meta, batch_tai_ns: i64) -> (i64, RxTimestampSource, bool) {
    let age = batch_tai_ns.wrapping_sub(meta.xdp_tai_ns as i64);
    if meta.magic != META_MAGIC || !(0..=MAX_STAMP_AGE_NS).contains(&age) {
        return (batch_tai_ns, RxTimestampSource::UserSpace, false);
    }
    // A hardware stamp needs the PHC-to-TAI mapping (see hwstamp.rs), which is not published
    // yet: report it as seen and unused, and use the XDP-time stamp.
    let hardware_seen = meta.flags & META_HW != 0;
    (meta.xdp_tai_ns as i64, RxTimestampSource::Xdp, hardware_seen)
}

/// One responder: a queue's socket, its batch buffers and its counters.
pub struct Responder {
    name: String,
    socket: QueueSocket,
    state: StateReader,
    counters: CounterWriter,
    shutdown: Arc<AtomicBool>,
    ntp_port: u16,
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
    /// Where symmetric packets (modes 1, 2) go: the control thread's peers. Never waits.
    symmetric: Option<SymmetricSender>,
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
    ) -> Responder {
        Responder {
            name,
            socket,
            state,
            counters,
            shutdown,
            ntp_port,
            busy_poll,
            rx: vec![FrameDesc::default(); batch_size],
            replies: Vec::with_capacity(batch_size),
            tx: Vec::with_capacity(batch_size),
            recycle: Vec::with_capacity(batch_size),
            completed: vec![FrameDesc::default(); super::xsk::RING as usize],
            in_flight: 0,
            reported_send_error: false,
            symmetric: None,
        }
    }

    /// Hands symmetric packets to the control thread (see `control::handoff`).
    pub fn with_symmetric(mut self, symmetric: Option<SymmetricSender>) -> Responder {
        self.symmetric = symmetric;
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
            self.counters.send_error();
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
        let published = self.state.read();
        // The fallback T2 for a frame without metadata: the clock right after the batch came.
        let batch_tai_ns = read_clock_ns(libc::CLOCK_TAI);
        // respond() writes a T3 that is overwritten below, after the whole batch is built.
        let placeholder = FixedClock(published.clock.ntp_from_tai(batch_tai_ns));
        self.counters.batch(received);
        self.replies.clear();
        self.tx.clear();
        self.recycle.clear();
        for i in 0..received {
            let mut desc = self.rx[i];
            let len = desc.lengths().data();
            self.counters.received(len);
            // SAFETY: `desc` came from this socket's RX ring and is not handed back yet.
            let meta = unsafe { self.socket.meta(&desc) };
            let (rx_ns, source, hardware_seen) = receive_stamp(&meta, batch_tai_ns);
            let rx_time = published.clock.ntp_from_tai(rx_ns);
            // SAFETY: the frame is ours (just received), and no other reference to it exists.
            let mut data = unsafe { self.socket.umem.data_mut(&mut desc) };
            match reply_in_place(
                data.contents_mut(),
                rx_time,
                Admission::Serve,
                &published.server,
                &placeholder,
                self.ntp_port,
            ) {
                Ok(reply) => {
                    data.cursor().set_pos(reply.len);
                    if hardware_seen {
                        self.counters.hardware_stamp_unused();
                    }
                    self.counters.rx_timestamp(source);
                    self.replies.push(reply);
                    self.tx.push(desc);
                }
                Err(reason) => {
                    if let (FrameDrop::Ntp(DropReason::Symmetric), Some(tx)) = (reason, &self.symmetric) {
                        // The frame is unchanged on a drop; the peer's packet goes to the control
                        // thread with its receive time on CLOCK_REALTIME, as the handoff expects.
                        if let Some((from, ntp)) = request_source(data.contents_mut(), self.ntp_port) {
                            let realtime_ns = rx_ns - published.clock.tai_minus_utc as i64 * 1_000_000_000;
                            tx.offer(from, realtime_ns, ntp);
                        }
                    }
                    self.counters.dropped_frame(reason);
                    self.recycle.push(desc);
                }
            }
        }
        if !self.recycle.is_empty() {
            // SAFETY: dropped frames are ours; the fill ring has room for every frame.
            unsafe { self.socket.fill.refill(&self.recycle) };
        }
        if !self.tx.is_empty() {
            self.submit(&SystemClock::new(published.clock));
        }
    }

    /// Stamps T3 into every reply of the batch and hands the batch to TX.
    fn submit(&mut self, clock: &SystemClock) {
        let wanted = self.tx.len();
        if (self.socket.tx.nb_free(wanted as u32) as usize) < wanted {
            self.reclaim_completions();
        }
        let room = (self.socket.tx.nb_free(wanted as u32) as usize).min(wanted);
        // One clock read per batch, as late as possible.
        let t3 = clock.now();
        for (desc, reply) in self.tx[..room].iter_mut().zip(&self.replies) {
            // SAFETY: the frame is ours until it is produced to TX below.
            let mut data = unsafe { self.socket.umem.data_mut(desc) };
            let frame = data.contents_mut();
            stamp_transmit_in_frame(frame, reply, t3);
            if !matches!(reply.kind, ReplyKind::Kiss(_)) {
                // T2 is in the reply already (its receive timestamp), on the same clock as T3.
                // Recorded per stamped reply: one TX then has no room for is also counted as a
                // send error.
                let t2 = ntp::Packet::new_unchecked(&frame[reply.ntp_offset..]).receive_timestamp();
                self.counters.response_time(t3.diff_nanos(t2));
            }
        }
        // SAFETY: the frames are this UMEM's, hold complete replies, and are not used again
        // until the completion ring returns them.
        let produced = unsafe { self.socket.tx.produce(&self.tx[..room]) };
        for reply in &self.replies[..produced] {
            self.counters.replied(reply.kind, reply.len);
        }
        self.in_flight += produced;
        if produced < wanted {
            // TX is full: the kernel is behind. Drop the rest (their frames go back to the fill
            // ring) rather than wait, and count each one.
            for _ in produced..wanted {
                self.counters.send_error();
            }
            // SAFETY: these frames were not produced; they are still ours.
            unsafe { self.socket.fill.refill(&self.tx[produced..]) };
        }
        if self.socket.tx.needs_wakeup() {
            self.kick_tx();
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
        assert_eq!(receive_stamp(&meta, 9), (5, RxTimestampSource::Xdp, false));
        let hw = Meta {
            hw_ns: 7,
            flags: META_HW,
            ..meta
        };
        assert_eq!(receive_stamp(&hw, 9), (5, RxTimestampSource::Xdp, true));
        let foreign = Meta { magic: 0, ..meta };
        assert_eq!(
            receive_stamp(&foreign, 9),
            (9, RxTimestampSource::UserSpace, false)
        );
        // An earlier frame's metadata left in the headroom, or one from the future.
        let old = 5 + MAX_STAMP_AGE_NS + 1;
        assert_eq!(
            receive_stamp(&meta, old),
            (old, RxTimestampSource::UserSpace, false)
        );
        assert_eq!(receive_stamp(&meta, 4), (4, RxTimestampSource::UserSpace, false));
    }
}

//! Per-responder packet counters.
//!
//! Each responder thread owns one [`CounterWriter`]: its block sits on its own cache lines
//! (`#[repr(align(128))]`, so neither the adjacent-line prefetcher nor another thread's block
//! shares them) and only that thread ever stores to it. A write is a relaxed load and a relaxed
//! store, not a locked read-modify-write: with a single writer nothing can be lost, and the line
//! never bounces between cores while the thread is busy. Readers ([`CounterReader`], any number,
//! any thread) copy the block into a plain [`CounterSnapshot`]; snapshots of several responders
//! add up with `+` or `Sum` into the server's totals.
//!
//! Every array in a snapshot is indexed by an enumeration with a stable label
//! ([`DropReason::label`], [`KissCode`] codes, [`RxTimestampSource::label`]), so an exporter can
//! turn each one into a labelled metric family without knowing the fields one by one.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::histogram::{self, BATCH_BUCKETS, RESPONSE_BUCKETS};
use crate::proto::clock::phc::HardwareUnused;
use crate::proto::frame::FrameDrop;
use crate::proto::nts::NtsRefusal;
use crate::proto::respond::{DropReason, KissCode, ReplyKind};

/// How many drop reasons `respond()` can give.
pub const DROP_REASONS: usize = DropReason::ALL.len();
/// How many frame-level reasons (before `respond()`) the AF_XDP path can drop a frame for.
pub const FRAME_DROP_REASONS: usize = FrameDrop::FRAME_LEVEL.len();
/// How many Kiss-o'-Death codes a reply can carry.
pub const KISS_CODES: usize = KissCode::ALL.len();

/// Position of a kiss code in [`KissCode::ALL`], for counter arrays.
pub const fn kiss_index(code: KissCode) -> usize {
    match code {
        KissCode::Rate => 0,
        KissCode::Deny => 1,
        KissCode::Rstr => 2,
        KissCode::Ntsn => 3,
    }
}

/// Where a request's receive timestamp (T2) came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RxTimestampSource {
    /// The kernel's software stamp, taken when the packet entered the stack.
    KernelSoftware,
    /// A NIC hardware stamp, mapped to NTP time.
    KernelHardware,
    /// No kernel stamp arrived: the clock read right after the batch was received.
    UserSpace,
    /// The XDP program's stamp (`bpf_ktime_get_tai_ns()` as the frame reached the driver).
    Xdp,
}

impl RxTimestampSource {
    pub const ALL: [RxTimestampSource; 4] = [
        RxTimestampSource::KernelSoftware,
        RxTimestampSource::KernelHardware,
        RxTimestampSource::UserSpace,
        RxTimestampSource::Xdp,
    ];

    /// A stable, low-cardinality label for logs and metrics.
    pub const fn label(self) -> &'static str {
        match self {
            RxTimestampSource::KernelSoftware => "kernel_software",
            RxTimestampSource::KernelHardware => "kernel_hardware",
            RxTimestampSource::UserSpace => "user_space",
            RxTimestampSource::Xdp => "xdp",
        }
    }

    /// Position in [`RxTimestampSource::ALL`], for counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// Where the transmit time of a sent reply came from, once the kernel reported on it (the socket
/// path asks for transmit stamps; interleaved replies carry them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxTimestampSource {
    /// The kernel's software stamp, taken as the packet went to the driver.
    KernelSoftware,
    /// A NIC hardware stamp arrived (in the NIC's clock: not usable until the PHC is mapped to
    /// the served time, so the software stamp, when there is one, is used instead).
    Hardware,
    /// No stamp arrived for the reply: its transmit time is the one read before sending.
    None,
}

impl TxTimestampSource {
    pub const ALL: [TxTimestampSource; 3] = [
        TxTimestampSource::KernelSoftware,
        TxTimestampSource::Hardware,
        TxTimestampSource::None,
    ];

    /// A stable, low-cardinality label for logs and metrics.
    pub const fn label(self) -> &'static str {
        match self {
            TxTimestampSource::KernelSoftware => "kernel_software",
            TxTimestampSource::Hardware => "hardware",
            TxTimestampSource::None => "none",
        }
    }

    /// Position in [`TxTimestampSource::ALL`], for counter arrays.
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// The shared block. Only the owning [`CounterWriter`] stores to it.
#[repr(align(128))]
#[derive(Default)]
struct Block {
    requests: AtomicU64,
    bytes_in: AtomicU64,
    replies_time: AtomicU64,
    replies_unsynchronized: AtomicU64,
    replies_authenticated: AtomicU64,
    replies_kiss: [AtomicU64; KISS_CODES],
    bytes_out: AtomicU64,
    drops: [AtomicU64; DROP_REASONS],
    frame_drops: [AtomicU64; FRAME_DROP_REASONS],
    truncated: AtomicU64,
    rx_timestamps: [AtomicU64; RxTimestampSource::ALL.len()],
    hardware_stamps_unused: [AtomicU64; HardwareUnused::ALL.len()],
    tx_timestamps: [AtomicU64; TxTimestampSource::ALL.len()],
    replies_interleaved: AtomicU64,
    replies_crypto_nak: AtomicU64,
    /// NTS requests refused, by [`NtsRefusal::ALL`] (the first three got a NAK).
    nts_refusals: [AtomicU64; NtsRefusal::ALL.len()],
    receive_errors: AtomicU64,
    receive_buffer_drops: AtomicU64,
    send_errors: AtomicU64,
    batches: AtomicU64,
    batched_requests: AtomicU64,
    /// Batches by size, one plain count per bucket of [`histogram::batch_bucket`].
    batch_sizes: [AtomicU64; BATCH_BUCKETS],
    /// Replies by T3 − T2, one plain count per bucket of [`histogram::response_bucket`].
    response_times: [AtomicU64; RESPONSE_BUCKETS],
    response_time_sum_ns: AtomicU64,
}

/// Makes one counter block: the writer for its responder thread and a first reader.
pub fn counters() -> (CounterWriter, CounterReader) {
    let block = Arc::new(Block::default());
    (CounterWriter { block: block.clone() }, CounterReader { block })
}

/// The one writing handle of a counter block. Not `Clone`, and every method takes `&mut self`, so
/// the type system keeps the block single-writer.
pub struct CounterWriter {
    block: Arc<Block>,
}

/// Adds to a counter that only this thread writes: a plain load and store, no locked instruction.
#[inline(always)]
fn bump(cell: &AtomicU64, n: u64) {
    cell.store(cell.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

impl CounterWriter {
    /// A datagram of `bytes` bytes arrived (whatever happens to it next).
    #[inline]
    pub fn received(&mut self, bytes: usize) {
        bump(&self.block.requests, 1);
        bump(&self.block.bytes_in, bytes as u64);
    }

    /// A reply of `bytes` bytes was handed to the kernel.
    #[inline]
    pub fn replied(&mut self, kind: ReplyKind, bytes: usize) {
        let b = &self.block;
        match kind {
            ReplyKind::Time => bump(&b.replies_time, 1),
            ReplyKind::Unsynchronized => bump(&b.replies_unsynchronized, 1),
            // Counted with the time or unsynchronized replies, and on their own.
            ReplyKind::Authenticated { synchronized } => {
                bump(&b.replies_authenticated, 1);
                if synchronized {
                    bump(&b.replies_time, 1)
                } else {
                    bump(&b.replies_unsynchronized, 1)
                }
            }
            // Counted with the time or unsynchronized replies, and on their own.
            ReplyKind::Interleaved { synchronized } => {
                bump(&b.replies_interleaved, 1);
                if synchronized {
                    bump(&b.replies_time, 1)
                } else {
                    bump(&b.replies_unsynchronized, 1)
                }
            }
            // Counted with the time or unsynchronized replies, and on their own.
            ReplyKind::CryptoNak { synchronized } => {
                bump(&b.replies_crypto_nak, 1);
                if synchronized {
                    bump(&b.replies_time, 1)
                } else {
                    bump(&b.replies_unsynchronized, 1)
                }
            }
            ReplyKind::Kiss(code) => bump(&b.replies_kiss[kiss_index(code)], 1),
        }
        bump(&b.bytes_out, bytes as u64);
    }

    /// `respond()` refused a request.
    #[inline]
    pub fn dropped(&mut self, reason: DropReason) {
        bump(&self.block.drops[reason.index()], 1);
    }

    /// A whole frame (AF_XDP path) was not answered: a frame-level reason, or `respond()`'s.
    #[inline]
    pub fn dropped_frame(&mut self, reason: FrameDrop) {
        match reason {
            FrameDrop::Ntp(reason) => self.dropped(reason),
            other => bump(&self.block.frame_drops[other.index()], 1),
        }
    }

    /// A datagram was larger than the receive buffer and was dropped unread.
    #[inline]
    pub fn truncated(&mut self) {
        bump(&self.block.truncated, 1);
    }

    /// The receive timestamp of one request came from `source`.
    #[inline]
    pub fn rx_timestamp(&mut self, source: RxTimestampSource) {
        bump(&self.block.rx_timestamps[source.index()], 1);
    }

    /// An NTS request was refused (NAKed, or dropped as malformed).
    #[inline]
    pub fn nts_refused(&mut self, why: NtsRefusal) {
        bump(&self.block.nts_refusals[why as usize], 1);
    }

    /// The kernel reported the transmit stamp of a sent reply (or that none came).
    #[inline]
    pub fn tx_timestamp(&mut self, source: TxTimestampSource) {
        bump(&self.block.tx_timestamps[source.index()], 1);
    }

    /// A hardware receive stamp arrived but could not be used (`why`: the PHC-to-TAI mapping's
    /// state); the request was answered with the software stamp.
    #[inline]
    pub fn hardware_stamp_unused(&mut self, why: HardwareUnused) {
        bump(&self.block.hardware_stamps_unused[why.index()], 1);
    }

    /// A receive call failed with something other than "nothing to read".
    #[inline]
    pub fn receive_error(&mut self) {
        bump(&self.block.receive_errors, 1);
    }

    /// The kernel dropped `n` datagrams for this responder's socket before it read them (its
    /// receive buffer was full: SO_RXQ_OVFL).
    #[inline]
    pub fn receive_buffer_drops(&mut self, n: u64) {
        bump(&self.block.receive_buffer_drops, n);
    }

    /// A reply could not be sent.
    #[inline]
    pub fn send_error(&mut self) {
        bump(&self.block.send_errors, 1);
    }

    /// One receive call returned `size` datagrams.
    #[inline]
    pub fn batch(&mut self, size: usize) {
        bump(&self.block.batches, 1);
        bump(&self.block.batched_requests, size as u64);
        bump(&self.block.batch_sizes[histogram::batch_bucket(size)], 1);
    }

    /// A reply left `ns` nanoseconds after its request arrived (T3 − T2).
    #[inline]
    pub fn response_time(&mut self, ns: i64) {
        bump(&self.block.response_times[histogram::response_bucket(ns)], 1);
        bump(&self.block.response_time_sum_ns, ns.max(0) as u64);
    }

    /// Another reader of this block.
    pub fn reader(&self) -> CounterReader {
        CounterReader {
            block: self.block.clone(),
        }
    }
}

/// A reading handle; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct CounterReader {
    block: Arc<Block>,
}

impl fmt::Debug for CounterReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CounterReader").field(&self.snapshot()).finish()
    }
}

fn load_all<const N: usize>(cells: &[AtomicU64; N]) -> [u64; N] {
    std::array::from_fn(|i| cells[i].load(Ordering::Relaxed))
}

impl CounterReader {
    /// The counters as they are now. Each value is exact; values read at slightly different
    /// moments may disagree by the packets in flight (a request counted, its reply not yet).
    pub fn snapshot(&self) -> CounterSnapshot {
        let b = &self.block;
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CounterSnapshot {
            requests: load(&b.requests),
            bytes_in: load(&b.bytes_in),
            replies_time: load(&b.replies_time),
            replies_unsynchronized: load(&b.replies_unsynchronized),
            replies_authenticated: load(&b.replies_authenticated),
            replies_kiss: load_all(&b.replies_kiss),
            bytes_out: load(&b.bytes_out),
            drops: load_all(&b.drops),
            frame_drops: load_all(&b.frame_drops),
            truncated: load(&b.truncated),
            rx_timestamps: load_all(&b.rx_timestamps),
            hardware_stamps_unused: load_all(&b.hardware_stamps_unused),
            tx_timestamps: load_all(&b.tx_timestamps),
            replies_interleaved: load(&b.replies_interleaved),
            replies_crypto_nak: load(&b.replies_crypto_nak),
            nts_refusals: std::array::from_fn(|i| load(&b.nts_refusals[i])),
            receive_errors: load(&b.receive_errors),
            receive_buffer_drops: load(&b.receive_buffer_drops),
            send_errors: load(&b.send_errors),
            batches: load(&b.batches),
            batched_requests: load(&b.batched_requests),
            batch_sizes: load_all(&b.batch_sizes),
            response_times: load_all(&b.response_times),
            response_time_sum_ns: load(&b.response_time_sum_ns),
        }
    }
}

/// A copy of one block's counters, or the sum of several.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// Datagrams received (every one, including those dropped or truncated).
    pub requests: u64,
    pub bytes_in: u64,
    /// Replies sent carrying synchronized time.
    pub replies_time: u64,
    /// Replies sent marked unsynchronized (LI=3, stratum 16).
    pub replies_unsynchronized: u64,
    /// Of the time and unsynchronized replies, those authenticated with NTS.
    pub replies_authenticated: u64,
    /// Kiss-o'-Death replies sent, indexed like [`KissCode::ALL`].
    pub replies_kiss: [u64; KISS_CODES],
    pub bytes_out: u64,
    /// Requests `respond()` refused, indexed like [`DropReason::ALL`].
    pub drops: [u64; DROP_REASONS],
    /// Frames the AF_XDP path dropped before `respond()`, indexed like [`FrameDrop::FRAME_LEVEL`].
    pub frame_drops: [u64; FRAME_DROP_REASONS],
    /// Datagrams larger than the receive buffer, dropped by the socket path.
    pub truncated: u64,
    /// Requests by the source of their receive timestamp, indexed like [`RxTimestampSource::ALL`].
    pub rx_timestamps: [u64; RxTimestampSource::ALL.len()],
    /// Hardware receive stamps that arrived but were not used, indexed like
    /// [`HardwareUnused::ALL`].
    pub hardware_stamps_unused: [u64; HardwareUnused::ALL.len()],
    /// Sent replies by the source of their transmit stamp, indexed like
    /// [`TxTimestampSource::ALL`].
    pub tx_timestamps: [u64; TxTimestampSource::ALL.len()],
    /// Of the time and unsynchronized replies, those sent in interleaved mode.
    pub replies_interleaved: u64,
    /// Of the time and unsynchronized replies, crypto-NAKs (a MAC with a key we do not have).
    pub replies_crypto_nak: u64,
    /// NTS requests refused, indexed like [`NtsRefusal::ALL`].
    pub nts_refusals: [u64; NtsRefusal::ALL.len()],
    pub receive_errors: u64,
    /// Datagrams the kernel dropped before the responder read them (receive buffer full).
    pub receive_buffer_drops: u64,
    /// Replies that failed to send.
    pub send_errors: u64,
    /// Receive calls that returned at least one datagram.
    pub batches: u64,
    /// Datagrams those calls returned (the mean batch size is this over `batches`).
    pub batched_requests: u64,
    /// Batches per size bucket (not cumulative), bounds from [`histogram::batch_bound`].
    pub batch_sizes: [u64; BATCH_BUCKETS],
    /// Replies per response time bucket (not cumulative), bounds from
    /// [`histogram::response_bound_seconds`].
    pub response_times: [u64; RESPONSE_BUCKETS],
    /// Sum of the response times recorded, in nanoseconds.
    pub response_time_sum_ns: u64,
}

impl CounterSnapshot {
    /// All replies sent, of every kind.
    pub fn replies(&self) -> u64 {
        self.replies_time + self.replies_unsynchronized + self.replies_kiss.iter().sum::<u64>()
    }

    /// All requests dropped, by `respond()`, as truncated, or (AF_XDP) as a bad frame.
    pub fn dropped(&self) -> u64 {
        self.drops.iter().sum::<u64>() + self.frame_drops.iter().sum::<u64>() + self.truncated
    }

    pub fn frame_drop_count(&self, reason: FrameDrop) -> u64 {
        match reason {
            FrameDrop::Ntp(reason) => self.drop_count(reason),
            other => self.frame_drops[other.index()],
        }
    }

    pub fn drop_count(&self, reason: DropReason) -> u64 {
        self.drops[reason.index()]
    }

    pub fn kiss_count(&self, code: KissCode) -> u64 {
        self.replies_kiss[kiss_index(code)]
    }

    /// Hardware receive stamps not used, whatever the reason.
    pub fn hardware_stamps_unused_total(&self) -> u64 {
        self.hardware_stamps_unused
            .iter()
            .fold(0, |a, n| a.wrapping_add(*n))
    }

    pub fn rx_timestamp_count(&self, source: RxTimestampSource) -> u64 {
        self.rx_timestamps[source.index()]
    }

    pub fn tx_timestamp_count(&self, source: TxTimestampSource) -> u64 {
        self.tx_timestamps[source.index()]
    }

    /// Replies whose response time was recorded (the histogram's count).
    pub fn response_count(&self) -> u64 {
        self.response_times.iter().sum()
    }

    /// Mean datagrams per receive call, if there was any.
    pub fn mean_batch(&self) -> Option<f64> {
        (self.batches > 0).then(|| self.batched_requests as f64 / self.batches as f64)
    }
}

fn add_arrays<const N: usize>(a: &mut [u64; N], b: &[u64; N]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x = x.wrapping_add(*y);
    }
}

impl AddAssign for CounterSnapshot {
    fn add_assign(&mut self, o: CounterSnapshot) {
        self.requests = self.requests.wrapping_add(o.requests);
        self.bytes_in = self.bytes_in.wrapping_add(o.bytes_in);
        self.replies_time = self.replies_time.wrapping_add(o.replies_time);
        self.replies_unsynchronized = self.replies_unsynchronized.wrapping_add(o.replies_unsynchronized);
        self.replies_authenticated = self.replies_authenticated.wrapping_add(o.replies_authenticated);
        add_arrays(&mut self.replies_kiss, &o.replies_kiss);
        self.bytes_out = self.bytes_out.wrapping_add(o.bytes_out);
        add_arrays(&mut self.drops, &o.drops);
        add_arrays(&mut self.frame_drops, &o.frame_drops);
        self.truncated = self.truncated.wrapping_add(o.truncated);
        add_arrays(&mut self.rx_timestamps, &o.rx_timestamps);
        add_arrays(&mut self.hardware_stamps_unused, &o.hardware_stamps_unused);
        add_arrays(&mut self.tx_timestamps, &o.tx_timestamps);
        self.replies_interleaved = self.replies_interleaved.wrapping_add(o.replies_interleaved);
        self.replies_crypto_nak = self.replies_crypto_nak.wrapping_add(o.replies_crypto_nak);
        for (a, b) in self.nts_refusals.iter_mut().zip(o.nts_refusals) {
            *a = a.wrapping_add(b);
        }
        self.receive_errors = self.receive_errors.wrapping_add(o.receive_errors);
        self.receive_buffer_drops = self.receive_buffer_drops.wrapping_add(o.receive_buffer_drops);
        self.send_errors = self.send_errors.wrapping_add(o.send_errors);
        self.batches = self.batches.wrapping_add(o.batches);
        self.batched_requests = self.batched_requests.wrapping_add(o.batched_requests);
        add_arrays(&mut self.batch_sizes, &o.batch_sizes);
        add_arrays(&mut self.response_times, &o.response_times);
        self.response_time_sum_ns = self.response_time_sum_ns.wrapping_add(o.response_time_sum_ns);
    }
}

impl Add for CounterSnapshot {
    type Output = CounterSnapshot;

    fn add(mut self, o: CounterSnapshot) -> CounterSnapshot {
        self += o;
        self
    }
}

impl Sum for CounterSnapshot {
    fn sum<I: Iterator<Item = CounterSnapshot>>(iter: I) -> CounterSnapshot {
        iter.fold(CounterSnapshot::default(), Add::add)
    }
}

/// One line for logs: totals first, then every non-zero breakdown.
impl fmt::Display for CounterSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} requests ({} bytes), {} replies ({} bytes: {} time, {} unsynchronized",
            self.requests,
            self.bytes_in,
            self.replies(),
            self.bytes_out,
            self.replies_time,
            self.replies_unsynchronized
        )?;
        if self.replies_authenticated > 0 {
            write!(f, ", {} NTS-authenticated", self.replies_authenticated)?;
        }
        if self.replies_interleaved > 0 {
            write!(f, ", {} interleaved", self.replies_interleaved)?;
        }
        if self.replies_crypto_nak > 0 {
            write!(f, ", {} crypto-NAKs", self.replies_crypto_nak)?;
        }
        for (code, n) in KissCode::ALL.iter().zip(&self.replies_kiss) {
            if *n > 0 {
                let code = code.code();
                write!(f, ", {n} kiss {}", String::from_utf8_lossy(&code))?;
            }
        }
        write!(f, "), {} dropped", self.dropped())?;
        let mut first = true;
        for (reason, n) in DropReason::ALL.iter().zip(&self.drops) {
            if *n > 0 {
                f.write_str(if first { " (" } else { ", " })?;
                write!(f, "{} {n}", reason.label())?;
                first = false;
            }
        }
        for (reason, n) in FrameDrop::FRAME_LEVEL.iter().zip(&self.frame_drops) {
            if *n > 0 {
                f.write_str(if first { " (" } else { ", " })?;
                write!(f, "{} {n}", reason.label())?;
                first = false;
            }
        }
        if self.truncated > 0 {
            f.write_str(if first { " (" } else { ", " })?;
            write!(f, "truncated {}", self.truncated)?;
            first = false;
        }
        if !first {
            f.write_str(")")?;
        }
        f.write_str(", rx timestamps:")?;
        for (source, n) in RxTimestampSource::ALL.iter().zip(&self.rx_timestamps) {
            write!(f, " {} {n}", source.label())?;
        }
        if self.hardware_stamps_unused_total() > 0 {
            f.write_str(" (hardware seen, unused:")?;
            for (why, n) in HardwareUnused::ALL.iter().zip(&self.hardware_stamps_unused) {
                if *n > 0 {
                    write!(f, " {} {n}", why.label())?;
                }
            }
            f.write_str(")")?;
        }
        if self.tx_timestamps.iter().any(|n| *n > 0) {
            f.write_str(", tx timestamps:")?;
            for (source, n) in TxTimestampSource::ALL.iter().zip(&self.tx_timestamps) {
                write!(f, " {} {n}", source.label())?;
            }
        }
        write!(
            f,
            ", {} receive errors, {} send errors, {} batches",
            self.receive_errors, self.send_errors, self.batches
        )?;
        if self.receive_buffer_drops > 0 {
            write!(
                f,
                ", {} dropped by the kernel (receive buffer full)",
                self.receive_buffer_drops
            )?;
        }
        if let Some(mean) = self.mean_batch() {
            write!(f, " (mean {mean:.1})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    #[test]
    fn block_is_cache_line_isolated() {
        assert_eq!(std::mem::align_of::<Block>(), 128);
        assert_eq!(std::mem::size_of::<Block>() % 128, 0);
    }

    #[test]
    fn writer_methods_land_in_their_fields() {
        let (mut w, r) = counters();
        w.received(48);
        w.received(60);
        w.replied(ReplyKind::Time, 48);
        w.replied(ReplyKind::Unsynchronized, 48);
        w.replied(ReplyKind::Kiss(KissCode::Rate), 48);
        w.dropped(DropReason::Control);
        w.dropped(DropReason::Control);
        w.truncated();
        w.rx_timestamp(RxTimestampSource::KernelSoftware);
        w.rx_timestamp(RxTimestampSource::UserSpace);
        w.rx_timestamp(RxTimestampSource::Xdp);
        w.dropped_frame(FrameDrop::BadUdpChecksum);
        w.dropped_frame(FrameDrop::Ntp(DropReason::Control));
        w.hardware_stamp_unused(HardwareUnused::Stale);
        w.receive_error();
        w.send_error();
        w.batch(2);
        w.response_time(3_000);
        w.response_time(-1);
        let s = r.snapshot();
        assert_eq!(s.requests, 2);
        assert_eq!(s.bytes_in, 108);
        assert_eq!(s.replies(), 3);
        assert_eq!(s.bytes_out, 144);
        assert_eq!(s.kiss_count(KissCode::Rate), 1);
        assert_eq!(s.kiss_count(KissCode::Deny), 0);
        assert_eq!(s.drop_count(DropReason::Control), 3);
        assert_eq!(s.frame_drop_count(FrameDrop::BadUdpChecksum), 1);
        assert_eq!(s.frame_drop_count(FrameDrop::NotIp), 0);
        assert_eq!(s.dropped(), 5);
        assert_eq!(s.rx_timestamp_count(RxTimestampSource::Xdp), 1);
        assert_eq!(s.rx_timestamp_count(RxTimestampSource::KernelSoftware), 1);
        assert_eq!(s.rx_timestamp_count(RxTimestampSource::KernelHardware), 0);
        assert_eq!(s.rx_timestamp_count(RxTimestampSource::UserSpace), 1);
        assert_eq!(s.hardware_stamps_unused[HardwareUnused::Stale.index()], 1);
        assert_eq!(s.hardware_stamps_unused[HardwareUnused::NoMapping.index()], 0);
        assert_eq!(
            (s.hardware_stamps_unused_total(), s.receive_errors, s.send_errors),
            (1, 1, 1)
        );
        assert_eq!(s.mean_batch(), Some(2.0));
        assert_eq!(s.batch_sizes[histogram::batch_bucket(2)], 1);
        assert_eq!(s.batch_sizes.iter().sum::<u64>(), s.batches);
        assert_eq!(s.response_count(), 2);
        assert_eq!(s.response_times[0], 1);
        assert_eq!(s.response_times[histogram::response_bucket(3_000)], 1);
        assert_eq!(s.response_time_sum_ns, 3_000);
        let line = s.to_string();
        assert!(line.contains("control_mode 3"), "{line}");
        assert!(line.contains("bad_udp_checksum 1"), "{line}");
        assert!(line.contains("truncated 1"), "{line}");
        assert!(line.contains("1 kiss RATE"), "{line}");
    }

    #[test]
    fn snapshots_add_field_by_field() {
        let a = CounterSnapshot {
            requests: 1,
            drops: [1; DROP_REASONS],
            replies_kiss: [1, 2, 3, 4],
            batches: 4,
            ..Default::default()
        };
        let b = CounterSnapshot {
            requests: 10,
            drops: [2; DROP_REASONS],
            replies_kiss: [10, 20, 30, 40],
            send_errors: 5,
            ..Default::default()
        };
        let c = a + b;
        assert_eq!(c.requests, 11);
        assert_eq!(c.drops, [3; DROP_REASONS]);
        assert_eq!(c.replies_kiss, [11, 22, 33, 44]);
        assert_eq!((c.batches, c.send_errors), (4, 5));
        assert_eq!([a, b].into_iter().sum::<CounterSnapshot>(), c);
    }

    #[test]
    fn labels_are_unique() {
        let mut labels: Vec<_> = RxTimestampSource::ALL.iter().map(|s| s.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), RxTimestampSource::ALL.len());
        for (i, s) in RxTimestampSource::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
        }
        for (i, k) in KissCode::ALL.iter().enumerate() {
            assert_eq!(kiss_index(*k), i);
        }
    }

    /// Several threads each write only their own block while a reader keeps summing: the reader
    /// never sees a counter go backwards, and the final sum is exact.
    #[test]
    fn concurrent_single_writers_sum_exactly() {
        const THREADS: usize = 3;
        const ROUNDS: u64 = 200_000;
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        let mut writers = Vec::new();
        for t in 0..THREADS {
            let (mut w, r) = counters();
            readers.push(r);
            writers.push(std::thread::spawn(move || {
                for i in 0..ROUNDS {
                    w.received(48);
                    if i % 2 == 0 {
                        w.replied(ReplyKind::Time, 48);
                    } else {
                        w.dropped(DropReason::ALL[t % DROP_REASONS]);
                    }
                    w.batch(1);
                }
            }));
        }
        let watcher = {
            let readers = readers.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut last = CounterSnapshot::default();
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) || reads < 100 {
                    let total: CounterSnapshot = readers.iter().map(|r| r.snapshot()).sum();
                    assert!(total.requests >= last.requests);
                    assert!(total.replies_time >= last.replies_time);
                    assert!(total.dropped() >= last.dropped());
                    assert!(total.requests <= THREADS as u64 * ROUNDS);
                    last = total;
                    reads += 1;
                }
            })
        };
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        watcher.join().unwrap();
        let total: CounterSnapshot = readers.iter().map(|r| r.snapshot()).sum();
        let n = THREADS as u64 * ROUNDS;
        assert_eq!(total.requests, n);
        assert_eq!(total.bytes_in, 48 * n);
        assert_eq!(total.replies_time, n / 2);
        assert_eq!(total.dropped(), n / 2);
        assert_eq!(total.batches, n);
        assert_eq!(total.batched_requests, n);
        for (t, r) in readers.iter().enumerate() {
            assert_eq!(
                r.snapshot().drop_count(DropReason::ALL[t % DROP_REASONS]),
                ROUNDS / 2
            );
        }
    }
}

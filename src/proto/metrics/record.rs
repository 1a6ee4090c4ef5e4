//! The calls a responder makes to record one batch, as a trait: [`CounterWriter`] records, and
//! [`NoRecord`] does nothing. The shared pipeline (`crate::sys::pipeline`) records through it, so
//! that a benchmark can run the real per-batch routine with and without recording and report
//! what the counters cost (bench/metrics.rs).

use super::counters::{CounterWriter, RxTimestampSource};
use crate::proto::clock::phc::HardwareUnused;
use crate::proto::frame::FrameDrop;
use crate::proto::nts::NtsRefusal;
use crate::proto::respond::{DropReason, ReplyKind};

/// What a responder records, call by call.
pub trait Record {
    fn batch(&mut self, size: usize);
    fn received(&mut self, bytes: usize);
    fn rx_timestamp(&mut self, source: RxTimestampSource);
    fn replied(&mut self, kind: ReplyKind, bytes: usize);
    fn dropped(&mut self, reason: DropReason);
    fn response_time(&mut self, ns: i64);
    fn dropped_frame(&mut self, reason: FrameDrop);
    fn hardware_stamp_unused(&mut self, why: HardwareUnused);
    fn send_error(&mut self);
    fn nts_refused(&mut self, why: NtsRefusal);
}

impl Record for CounterWriter {
    #[inline(always)]
    fn batch(&mut self, size: usize) {
        CounterWriter::batch(self, size)
    }
    #[inline(always)]
    fn received(&mut self, bytes: usize) {
        CounterWriter::received(self, bytes)
    }
    #[inline(always)]
    fn rx_timestamp(&mut self, source: RxTimestampSource) {
        CounterWriter::rx_timestamp(self, source)
    }
    #[inline(always)]
    fn replied(&mut self, kind: ReplyKind, bytes: usize) {
        CounterWriter::replied(self, kind, bytes)
    }
    #[inline(always)]
    fn dropped(&mut self, reason: DropReason) {
        CounterWriter::dropped(self, reason)
    }
    #[inline(always)]
    fn response_time(&mut self, ns: i64) {
        CounterWriter::response_time(self, ns)
    }
    #[inline(always)]
    fn dropped_frame(&mut self, reason: FrameDrop) {
        CounterWriter::dropped_frame(self, reason)
    }
    #[inline(always)]
    fn hardware_stamp_unused(&mut self, why: HardwareUnused) {
        CounterWriter::hardware_stamp_unused(self, why)
    }
    #[inline(always)]
    fn send_error(&mut self) {
        CounterWriter::send_error(self)
    }
    #[inline(always)]
    fn nts_refused(&mut self, why: NtsRefusal) {
        CounterWriter::nts_refused(self, why)
    }
}

/// Records nothing: the baseline of the counters' cost.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRecord;

impl Record for NoRecord {
    #[inline(always)]
    fn batch(&mut self, _: usize) {}
    #[inline(always)]
    fn received(&mut self, _: usize) {}
    #[inline(always)]
    fn rx_timestamp(&mut self, _: RxTimestampSource) {}
    #[inline(always)]
    fn replied(&mut self, _: ReplyKind, _: usize) {}
    #[inline(always)]
    fn dropped(&mut self, _: DropReason) {}
    #[inline(always)]
    fn response_time(&mut self, _: i64) {}
    #[inline(always)]
    fn dropped_frame(&mut self, _: FrameDrop) {}
    #[inline(always)]
    fn hardware_stamp_unused(&mut self, _: HardwareUnused) {}
    #[inline(always)]
    fn send_error(&mut self) {}
    #[inline(always)]
    fn nts_refused(&mut self, _: NtsRefusal) {}
}

//! The counters the responders write and everyone else reads, lock-free.
//!
//! Each responder owns a [`CounterWriter`]; the I/O path hands out a [`ResponderCounters`] per
//! responder (which thread, which core, its [`CounterReader`]) so that logs, `strata status` and
//! the Prometheus exporter can read per-responder values and sum them.
//!
//! - [`counters`], [`histogram`]: the responders' single-writer counter blocks and bucket layouts;
//! - [`record`]: the recording calls as a trait, so a bench can run without counters.

pub mod counters;
pub mod histogram;
pub mod record;

pub use counters::{
    counters, kiss_index, CounterReader, CounterSnapshot, CounterWriter, RxTimestampSource,
    TxTimestampSource, DROP_REASONS, KISS_CODES,
};

/// The counters of one responder thread and where it runs.
#[derive(Debug, Clone)]
pub struct ResponderCounters {
    /// Which I/O path the responder belongs to ("socket", later "xdp"): a metric label.
    pub path: &'static str,
    /// The responder's index within its path, from 0.
    pub index: usize,
    /// The CPU it is pinned to.
    pub core: usize,
    pub counters: CounterReader,
}

impl ResponderCounters {
    pub fn snapshot(&self) -> CounterSnapshot {
        self.counters.snapshot()
    }
}

/// The sum over several responders.
pub fn total<'a>(responders: impl IntoIterator<Item = &'a ResponderCounters>) -> CounterSnapshot {
    responders.into_iter().map(ResponderCounters::snapshot).sum()
}

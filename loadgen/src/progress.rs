//! Live counters for the progress line: each worker publishes its step's totals with relaxed
//! stores after every batch (one uncontended cache line per worker), and the main thread reads
//! them about once a second.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};

/// One worker's counters, padded to a cache line so that workers never share one.
#[derive(Debug, Default)]
#[repr(align(64))]
pub struct Live {
    sent: AtomicU64,
    received: AtomicU64,
}

impl Live {
    #[inline]
    pub fn publish(&self, sent: u64, received: u64) {
        self.sent.store(sent, Ordering::Relaxed);
        self.received.store(received, Ordering::Relaxed);
    }

    pub fn read(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
        )
    }
}

/// Writes the progress line on stderr: rewritten in place on a terminal, one line per update
/// otherwise (a log file should not fill up with carriage returns).
pub struct ProgressLine {
    tty: bool,
    dirty: bool,
}

impl ProgressLine {
    pub fn new() -> ProgressLine {
        ProgressLine {
            tty: std::io::stderr().is_terminal(),
            dirty: false,
        }
    }

    pub fn show(&mut self, step: usize, steps: usize, rate: f64, elapsed_s: f64, sent: u64, received: u64) {
        let line = format!(
            "step {}/{steps}  offered {:.0}/s  {elapsed_s:5.1} s  sent {sent}  received {received}  ({:.0}/s)",
            step + 1,
            rate,
            sent as f64 / elapsed_s.max(1e-3),
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
            self.dirty = true;
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    /// Ends the line on a terminal, before anything else is printed.
    pub fn clear(&mut self) {
        if self.dirty {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            self.dirty = false;
        }
    }
}

impl Default for ProgressLine {
    fn default() -> Self {
        ProgressLine::new()
    }
}

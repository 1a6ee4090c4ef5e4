//! The slow path: the one thread that decides what the responders serve and publishes it.
//!
//! For now it measures the clock's precision at start, builds the server state from the
//! configuration (a local reference at a fixed stratum, or unsynchronized) and the clock
//! parameters (the kernel's clock uncorrected, with the kernel's TAI − UTC offset), publishes them
//! through the seqlock, and refreshes them about once a second: the reference time of the local
//! reference (so that the root dispersion that replies grow at 15 ppm since it stays small) and
//! the TAI offset (which changes when a leap second is inserted or someone sets it). Upstream
//! polling and discipline come here later. The decisions are pure functions in [`local`].

pub mod discipline;
pub mod engine;
pub mod events;
pub mod filter;
pub mod local;
pub mod packet;
pub mod refid;
pub mod regress;
pub mod select;
pub mod source;
pub mod spec;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::clock::precision::measure_precision;
use crate::clock::read::kernel_tai_offset;
use crate::clock::{Clock, ClockParams, SystemClock};
use crate::metrics::board::{ControlStatus, StatusBoard, SyncStatus};
use crate::state::{self, Published, StateReader, StateWriter};
use crate::wire::NtpTimestamp;

pub use local::ControlConfig;

/// How often the published snapshot is refreshed.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// The longest the thread sleeps before it looks at the shutdown flag again.
const SHUTDOWN_CHECK: Duration = Duration::from_millis(100);

/// The running control thread and what it publishes.
pub struct Control {
    reader: StateReader,
    /// What `/metrics` and `strata status` show of this thread (sync state, sources). A thread
    /// that runs an [`engine::Engine`] publishes `ControlStatus::from_engine` here after
    /// each tick.
    board: StatusBoard,
    precision: i8,
    thread: JoinHandle<()>,
}

/// The kernel's time now, in NTP time, converted with the TAI offset `tai_minus_utc`.
fn now(tai_minus_utc: i32) -> NtpTimestamp {
    SystemClock::new(ClockParams::identity(tai_minus_utc)).now()
}

/// Measures the precision, publishes the first snapshot and starts the thread. The snapshot is
/// in place before this returns, so responders started afterwards never see an empty state.
pub fn start(config: ControlConfig, shutdown: Arc<AtomicBool>) -> io::Result<Control> {
    let precision = measure_precision();
    let tai = kernel_tai_offset();
    let (writer, reader) = state::publish(local::snapshot(&config, precision, tai, now(tai)));
    // Without upstream sources the state never changes: a local reference or unsynchronized.
    let board = StatusBoard::new(ControlStatus {
        sync: if config.local_stratum.is_some() {
            SyncStatus::Local
        } else {
            SyncStatus::Unsynchronized
        },
        sources: Vec::new(),
    });
    let thread = thread::Builder::new()
        .name("strata-control".into())
        .spawn(move || refresh_loop(config, precision, tai, writer, &shutdown))?;
    Ok(Control {
        reader,
        board,
        precision,
        thread,
    })
}

fn refresh_loop(
    config: ControlConfig,
    precision: i8,
    mut tai: i32,
    mut writer: StateWriter,
    shutdown: &AtomicBool,
) {
    let mut last: Published = writer.reader().read();
    let mut next = Instant::now() + REFRESH_INTERVAL;
    while !shutdown.load(Ordering::Relaxed) {
        let wall = Instant::now();
        if wall < next {
            thread::sleep((next - wall).min(SHUTDOWN_CHECK));
            continue;
        }
        next += REFRESH_INTERVAL;
        if next <= wall {
            // The thread was held up for more than an interval: restart the rhythm from now.
            next = wall + REFRESH_INTERVAL;
        }
        let kernel_tai = kernel_tai_offset();
        if kernel_tai != tai {
            log::info!("kernel TAI-UTC offset changed from {tai} s to {kernel_tai} s");
            tai = kernel_tai;
        }
        let snapshot = local::snapshot(&config, precision, tai, now(tai));
        // An unsynchronized state does not change with time; publish only what changed.
        if snapshot != last {
            writer.publish(&snapshot);
            last = snapshot;
        }
    }
}

impl Control {
    /// A reader of the published snapshot; clone one per responder.
    pub fn reader(&self) -> StateReader {
        self.reader.clone()
    }

    /// Where this thread publishes its status for the observers.
    pub fn status_board(&self) -> StatusBoard {
        self.board.clone()
    }

    /// The precision measured at start (log2 seconds).
    pub fn precision(&self) -> i8 {
        self.precision
    }

    /// The snapshot as published now.
    pub fn published(&self) -> Published {
        self.reader.read()
    }

    /// Waits for the thread to stop (after the shutdown flag was set).
    pub fn join(self) -> thread::Result<()> {
        self.thread.join()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::UnsyncPolicy;

    #[test]
    fn publishes_at_once_refreshes_and_stops() {
        let shutdown = Arc::new(AtomicBool::new(false));
        let config = ControlConfig {
            local_stratum: Some(1),
            unsync_policy: UnsyncPolicy::Answer,
        };
        let control = start(config, shutdown.clone()).unwrap();
        let first = control.published();
        assert!(first.server.synchronized);
        assert_eq!(first.server.stratum, 1);
        assert_eq!(first.server.precision, control.precision());
        assert_eq!(first.clock.tai_minus_utc, kernel_tai_offset());
        let age = now(kernel_tai_offset()).diff_nanos(first.server.reference_time);
        assert!((0..1_000_000_000).contains(&age), "reference time {age} ns old");

        // Within about two intervals the reference time moves forward.
        let reader = control.reader();
        let deadline = Instant::now() + 3 * REFRESH_INTERVAL;
        while reader.read().server.reference_time == first.server.reference_time {
            assert!(Instant::now() < deadline, "reference time never refreshed");
            thread::sleep(Duration::from_millis(50));
        }
        let refreshed = reader.read().server.reference_time;
        let step = refreshed.diff_nanos(first.server.reference_time);
        assert!((500_000_000..2_500_000_000).contains(&step), "{step} ns");

        let stopping = Instant::now();
        shutdown.store(true, Ordering::Relaxed);
        control.join().unwrap();
        assert!(stopping.elapsed() < Duration::from_millis(500));
    }

    #[test]
    fn unsynchronized_start() {
        let shutdown = Arc::new(AtomicBool::new(true));
        let config = ControlConfig {
            local_stratum: None,
            unsync_policy: UnsyncPolicy::Drop,
        };
        let control = start(config, shutdown).unwrap();
        let p = control.published();
        assert!(!p.server.synchronized);
        assert_eq!(p.server.stratum, 16);
        assert_eq!(p.server.unsync_policy, UnsyncPolicy::Drop);
        control.join().unwrap();
    }
}

//! The slow path: the one thread that decides what the responders serve and publishes it.
//!
//! It polls the upstream sources, filters, selects and combines their measurements,
//! disciplines strata's clock model and publishes the server state with it through the
//! seqlock, which the responders read without locks. The logic is the pure engine of
//! `crate::proto::control`, which takes the time as an argument; the thread around it
//! ([`client`]) does the I/O: sockets, name resolution ([`resolve`]), the symmetric packets the
//! responders hand over (`crate::sys::handoff`), the logs ([`statslog`]), adjtimex
//! (`crate::sys::adjtimex`).
//!
//! Without sources the engine serves the local reference (`--local-stratum`) or stays
//! unsynchronized, refreshing the local reference's reference time every second, as
//! [`local`] describes.

pub mod client;
pub mod constraint_fetch;
pub mod event_log;
pub mod leapfile;
pub mod nts_source;
pub mod queries;
pub mod refclock;
pub mod resolve;
pub mod rtc;
pub mod statslog;

use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};

use crate::daemon::observe::board::{ControlStatus, StatusBoard};
use crate::daemon::observe::leap_status::LeapSecondStatus;
use crate::proto::clock::ClockParams;
use crate::proto::control::leapplan::LeapHandling;
use crate::proto::state::{self, Published, StateMirror, StateReader};
use crate::sys::clock::precision::measure_precision;
use crate::sys::clock::read::{kernel_tai_offset, read_clock_ns};

use crate::proto::control::discipline::DEFAULT_STEP_THRESHOLD;
use crate::proto::control::engine::{Engine, EngineConfig};
use crate::sys::handoff::{self, SymmetricSender};
use client::Shell;
use statslog::StatsLog;

pub use crate::proto::control::settings::{ControlConfig, UpstreamConfig};

/// The running control thread and what it publishes.
pub struct Control {
    reader: StateReader,
    /// What `/metrics` and `strata status` show of this thread (sync state, sources). A thread
    /// that runs an [`engine::Engine`] publishes `ControlStatus::from_engine` here after
    /// each tick.
    board: StatusBoard,
    precision: i8,
    symmetric: SymmetricSender,
    /// Where mode-6 replies leave from, once the path runs.
    reply_sockets: queries::ReplySockets,
    mirrors: Mirrors,
    thread: JoinHandle<()>,
}

/// Where else each publication goes (the XDP programs' state maps), added once the paths run.
/// Locked by the control thread once per publication and by [`Control::add_mirror`]: never on
/// a responder's path.
pub(crate) type Mirrors = Arc<Mutex<Vec<Box<dyn StateMirror>>>>;

/// Where the control thread publishes: the responders' seqlock, then every mirror.
pub(crate) struct Publisher {
    writer: state::StateWriter,
    mirrors: Mirrors,
}

impl Publisher {
    pub(crate) fn publish(&mut self, published: &Published) {
        self.writer.publish(published);
        let mut mirrors = self.mirrors.lock().unwrap_or_else(|e| e.into_inner());
        for mirror in mirrors.iter_mut() {
            mirror.mirror(published);
        }
    }
}

/// Measures the precision, publishes the first snapshot and starts the thread. The snapshot is
/// in place before this returns, so responders started afterwards never see an empty state.
pub fn start(config: ControlConfig, shutdown: Arc<AtomicBool>) -> io::Result<Control> {
    let precision = measure_precision();
    let up = &config.upstream;
    let leap_file = leapfile::LeapFile::load(up.leap_seconds_list.as_deref());
    if up.discipline_system {
        set_tai_from_list(&leap_file);
    }
    let tai = kernel_tai_offset();
    let engine_config = EngineConfig {
        local_stratum: config.local_stratum,
        unsync_policy: config.unsync_policy,
        max_distance: up.max_distance.as_secs_f64(),
        minsources: up.minsources,
        step_threshold: DEFAULT_STEP_THRESHOLD,
        limits: up.step_limits(),
        precision,
        tai_minus_utc: tai,
        leap: up.leap,
    };
    let selectable = up.selectable_sources();
    if selectable > 0 && selectable < up.minsources {
        log::warn!(
            "{selectable} selectable source(s) configured but minsources is {}: strata will not \
             serve synchronized time from them; add sources or set minsources = {selectable}",
            up.minsources
        );
    }
    let mut engine = Engine::new(
        engine_config,
        ClockParams::identity(tai),
        read_clock_ns(libc::CLOCK_REALTIME),
    );
    if let Some(keys) = &up.keys {
        engine.set_keys(keys.clone());
    }
    // Reference clocks: a driver that cannot be opened stops the start, as a bad flag would.
    let mut refclocks = Vec::new();
    for (index, spec) in up.refclocks.iter().enumerate() {
        let driver =
            refclock::Refclock::open(spec).map_err(|e| io::Error::new(e.kind(), format!("{spec}: {e}")))?;
        let id = engine.add_refclock(spec, index, read_clock_ns(libc::CLOCK_REALTIME));
        log::info!(
            "{spec}: reading as {} refid {}",
            spec.pseudo_addr(index).ip(),
            String::from_utf8_lossy(&spec.refid(index)).trim_end_matches('\0')
        );
        refclocks.push((id, driver));
    }
    // The list before the first publication, so that a leap it schedules is served from the
    // start.
    engine.set_leap_list(leap_file.list().cloned(), read_clock_ns(libc::CLOCK_REALTIME));
    // The same structured lines as every later event (the first sync_state among them).
    for event in engine.take_events() {
        client::log_event(&event);
    }
    let (writer, reader) = state::publish(engine.published());
    let now = read_clock_ns(libc::CLOCK_REALTIME);
    let leap_status = leap_file.status(now.div_euclid(1_000_000_000));
    leapfile::log_at_start(&leap_status);
    if let LeapHandling::Smear { window_s } = up.leap.handling {
        log::warn!(
            "leap seconds are smeared over {window_s} s: this server must not serve the public \
             pool, nor clients that also get time from servers that do not smear"
        );
    }
    let board = StatusBoard::new(ControlStatus {
        leap: LeapSecondStatus::new(&engine.leap_status(now), &leap_status, tai),
        leap_list: leap_status,
        ..ControlStatus::from_engine(&engine, now)
    });
    let statslog = match &up.log_dir {
        Some(dir) => Some(StatsLog::open(dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot open the logs in {}: {e}", dir.display()),
            )
        })?),
        None => None,
    };
    // Symmetric packets and mode-6 queries reach the responders, which hand them over.
    let (symmetric_tx, symmetric_rx) = handoff::channel(&config.monitor);
    let reply_sockets = queries::ReplySockets::default();
    let mirrors = Mirrors::default();
    let shell = Shell::new(
        engine,
        Publisher {
            writer,
            mirrors: mirrors.clone(),
        },
        board.clone(),
        up.sources.clone(),
        Some(symmetric_rx),
        statslog,
        up.discipline_system,
    )
    .with_leap_file(leap_file)
    .with_trust(up.nts_trusted_certs.as_deref(), up.constraints.clone())
    .with_refclocks(refclocks)
    .with_rtc(
        up.rtc_sync
            .then(|| rtc::RtcUpkeep::open(crate::sys::rtc::RTC_DEVICE, read_clock_ns(libc::CLOCK_REALTIME))),
    )
    .with_queries(queries::Queries::new(
        reply_sockets.clone(),
        config.monitor.clone(),
    ));
    // With discipline_system or rtc_sync this thread alone keeps CAP_SYS_TIME when `user` switches the
    // process away from root (crate::daemon::run_as); it trims itself to that in its loop.
    let keep = crate::daemon::run_as::control_thread_keeps(up.discipline_system || up.rtc_sync);
    let thread = thread::Builder::new()
        .name("strata-control".into())
        .spawn(move || {
            if let Some(cap) = keep {
                if let Err(e) = crate::sys::privilege::keep_in_this_thread(cap) {
                    log::warn!("the control thread cannot keep {cap} across the switch of user: {e}");
                }
            }
            shell.run(&shutdown)
        })?;
    Ok(Control {
        reader,
        board,
        precision,
        symmetric: symmetric_tx,
        reply_sockets,
        mirrors,
        thread,
    })
}

/// With `--discipline-system`: the kernel's TAI offset set to what a current list says (as
/// chrony does from `leapsectz`), before anything reads CLOCK_TAI with the old one.
fn set_tai_from_list(leap_file: &leapfile::LeapFile) {
    let now = read_clock_ns(libc::CLOCK_REALTIME).div_euclid(1_000_000_000);
    let status = leap_file.status(now);
    let (crate::daemon::observe::board::LeapListState::Valid, Some(tai)) =
        (status.state, status.tai_minus_utc)
    else {
        return;
    };
    let kernel = kernel_tai_offset();
    if kernel == tai {
        return;
    }
    match crate::sys::kernel_leap::set_kernel_tai(tai) {
        Ok(()) => log::info!("kernel TAI-UTC offset set from {kernel} s to {tai} s (the leap-seconds list)"),
        Err(e) => log::warn!("cannot set the kernel's TAI-UTC offset to {tai} s: {e}"),
    }
}

impl Control {
    /// A reader of the published snapshot; clone one per responder.
    pub fn reader(&self) -> StateReader {
        self.reader.clone()
    }

    /// The end the responders hand symmetric packets and mode-6 queries to.
    pub fn symmetric_sender(&self) -> SymmetricSender {
        self.symmetric.clone()
    }

    /// The sockets of the server port mode-6 replies are to leave from (the path's own, or
    /// sockets bound for this on the XDP path).
    pub fn set_reply_sockets(&self, sockets: Vec<crate::sys::socket::reply::ReplySocket>) {
        *self.reply_sockets.lock().unwrap_or_else(|e| e.into_inner()) = sockets;
    }

    /// Where this thread publishes its status for the observers.
    pub fn status_board(&self) -> StatusBoard {
        self.board.clone()
    }

    /// The precision measured at start (log2 seconds).
    pub fn precision(&self) -> i8 {
        self.precision
    }

    /// Adds a mirror of every publication: it gets the current snapshot now, then each new one.
    pub fn add_mirror(&self, mut mirror: Box<dyn StateMirror>) {
        // Under the lock, so that a publication cannot fall between this read and the push.
        let mut mirrors = self.mirrors.lock().unwrap_or_else(|e| e.into_inner());
        mirror.mirror(&self.reader.read());
        mirrors.push(mirror);
    }

    /// The snapshot as published now.
    pub fn published(&self) -> Published {
        self.reader.read()
    }

    /// Whether the thread has ended (before a shutdown: it panicked).
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the thread to stop (after the shutdown flag was set).
    pub fn join(self) -> thread::Result<()> {
        self.thread.join()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::clock::Clock;
    use crate::proto::state::UnsyncPolicy;
    use crate::proto::wire::NtpTimestamp;
    use crate::sys::clock::SystemClock;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    const REFRESH_INTERVAL: Duration = Duration::from_secs(1);

    fn now(tai_minus_utc: i32) -> NtpTimestamp {
        SystemClock::new(ClockParams::identity(tai_minus_utc)).now()
    }

    #[test]
    fn publishes_at_once_refreshes_and_stops() {
        let shutdown = Arc::new(AtomicBool::new(false));
        let config = ControlConfig::local(Some(1), UnsyncPolicy::Answer);
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
        let config = ControlConfig::local(None, UnsyncPolicy::Drop);
        let control = start(config, shutdown).unwrap();
        let p = control.published();
        assert!(!p.server.synchronized);
        assert_eq!(p.server.stratum, 16);
        assert_eq!(p.server.unsync_policy, UnsyncPolicy::Drop);
        control.join().unwrap();
    }
}

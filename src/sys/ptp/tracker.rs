//! The PHC mapping of each served interface, kept current and published: a thread of the
//! control side reads a cross-stamp from each interface's PHC a few times a second, puts its
//! system side on CLOCK_TAI as the served time defines it (CLOCK_REALTIME + the published
//! TAI − UTC, the offset [`ClockParams::ntp_from_tai`] takes off again), feeds it to the
//! interface's [`PhcMapping`] and publishes the mapping's [`PhcLine`] to the interface's
//! responders through a seqlock. The quality of every mapping, and why an interface has none,
//! goes to a [`PhcBoard`] that `strata status` and /metrics read.
//!
//! Its own thread, not the control thread's loop: a cross-stamp wants a thread that is not
//! busy elsewhere when it reads (the bracket grows with every interruption), and its cadence
//! is not the control loop's.
//!
//! [`ClockParams::ntp_from_tai`]: crate::proto::clock::ClockParams::ntp_from_tai

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{CrossStampSource, Method, PtpDevice};
use crate::proto::clock::phc::{Added, CrossStamp, PhcLine, PhcLineWriter, PhcMapping};
use crate::proto::state::StateReader;

/// How often each PHC is read.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The mapping is used only while the cross-stamps' jitter (RMS residual around the line) is
/// within this: a worse mapping would add more error to a hardware stamp than the XDP-time
/// stamp it replaces has (the program runs a few microseconds after the NIC stamped the frame).
pub const MAX_JITTER_NS: f64 = 1_000.0;

const SECOND: i64 = 1_000_000_000;

/// Another place a published line must reach: the XDP program's PHC map
/// (`crate::sys::fastpath::phc_map`).
pub trait LineMirror: Send {
    fn mirror(&mut self, line: &PhcLine);
}

/// One PHC being followed.
pub struct PhcTracker {
    source: Box<dyn CrossStampSource>,
    mapping: PhcMapping,
    writer: PhcLineWriter,
    mirrors: Vec<Box<dyn LineMirror>>,
    method: Option<Method>,
    reads: u64,
    read_errors: u64,
    last_error: Option<String>,
    /// CLOCK_TAI of the last sample the line took: its age. Rejected samples do not make it
    /// younger, so a run of bad readings ages the line out as failed reads do.
    fitted_tai_ns: i64,
    /// CLOCK_TAI of the last reading, taken or not.
    last_read_tai_ns: i64,
}

impl PhcTracker {
    pub fn new(source: Box<dyn CrossStampSource>, writer: PhcLineWriter) -> PhcTracker {
        PhcTracker {
            source,
            mapping: PhcMapping::new(MAX_JITTER_NS),
            writer,
            mirrors: Vec::new(),
            method: None,
            reads: 0,
            read_errors: 0,
            last_error: None,
            fitted_tai_ns: 0,
            last_read_tai_ns: 0,
        }
    }

    /// Reads one cross-stamp, adds it and publishes the line. `tai_minus_utc`: the published
    /// clock parameters' (what the responders will subtract again). A failed read publishes
    /// nothing and a rejected sample leaves the line's age as it was: the line ages and the
    /// responders stop using it after `MAX_LINE_AGE_NS`.
    pub fn poll(&mut self, tai_minus_utc: i32) -> Option<Added> {
        self.reads += 1;
        let reading = match self.source.read() {
            Ok(reading) => reading,
            Err(e) => {
                self.read_errors += 1;
                self.last_error = Some(e.to_string());
                return None;
            }
        };
        self.last_error = None;
        self.method = Some(reading.method);
        let offset = tai_minus_utc as i64 * SECOND;
        let stamp = CrossStamp {
            sys_ns: reading.stamp.sys_ns + offset,
            ..reading.stamp
        };
        self.last_read_tai_ns = stamp.sys_ns;
        let added = self.mapping.add(stamp);
        if added != Added::Rejected {
            self.fitted_tai_ns = stamp.sys_ns;
        }
        let line = PhcLine::of(&self.mapping, self.fitted_tai_ns);
        self.writer.publish(&line);
        for mirror in &mut self.mirrors {
            mirror.mirror(&line);
        }
        Some(added)
    }

    /// Publishes every line to `mirror` too.
    pub fn add_mirror(&mut self, mirror: Box<dyn LineMirror>) {
        self.mirrors.push(mirror);
    }

    pub fn mapping(&self) -> &PhcMapping {
        &self.mapping
    }

    /// The status line of `interface`.
    pub fn status(&self, interface: &str) -> PhcStatus {
        let q = self.mapping.quality();
        // What the responders make of the line as of the last reading.
        let line = PhcLine::of(&self.mapping, self.fitted_tai_ns);
        let verdict = line.tai_ns(line.phc_ref_ns, self.last_read_tai_ns);
        let reason = match (verdict, &self.last_error) {
            (_, Some(e)) => Some(format!("last read failed: {e}")),
            (Err(why), None) => Some(why.label().to_string()),
            (Ok(_), None) => None,
        };
        PhcStatus {
            interface: interface.to_string(),
            device: Some(self.source.path().display().to_string()),
            method: self.method.map(|m| m.label().to_string()),
            samples: q.samples,
            offset_ns: q.offset_ns,
            frequency_ppm: q.frequency_ppm,
            jitter_ns: q.jitter_ns,
            rejected: q.rejected,
            steps: q.steps,
            reads: self.reads,
            read_errors: self.read_errors,
            usable: reason.is_none(),
            reason,
        }
    }
}

/// One served interface's PHC, or why it has none.
pub struct PhcWatch {
    pub interface: String,
    pub phc: Result<PhcTracker, String>,
}

impl PhcWatch {
    /// Opens the interface's PHC, given its index as ETHTOOL_GET_TS_INFO said
    /// (`crate::sys::fastpath::hwstamp::phc_index`); its line is published through `writer`.
    /// Without one, the reason is kept for `strata status`.
    pub fn for_interface(
        interface: &str,
        phc_index: io::Result<Option<u32>>,
        writer: PhcLineWriter,
    ) -> PhcWatch {
        let phc = match phc_index {
            Err(e) => Err(format!("ETHTOOL_GET_TS_INFO: {e}")),
            Ok(None) => Err("no PHC (the driver reports none)".to_string()),
            Ok(Some(index)) => PtpDevice::open(&PtpDevice::path_of_index(index))
                .map(|device| PhcTracker::new(Box::new(device), writer))
                .map_err(|e| e.to_string()),
        };
        PhcWatch {
            interface: interface.to_string(),
            phc,
        }
    }

    pub fn status(&self) -> PhcStatus {
        match &self.phc {
            Ok(tracker) => tracker.status(&self.interface),
            Err(why) => PhcStatus::none(&self.interface, why),
        }
    }
}

/// A PHC mapping's state as `strata status` and /metrics show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhcStatus {
    pub interface: String,
    /// /dev/ptpN; None: the interface has no PHC (`reason` says why).
    pub device: Option<String>,
    /// precise, extended or plain: the ioctl the cross-stamps come from.
    pub method: Option<String>,
    pub samples: usize,
    /// The last sample's distance from the line, ns.
    pub offset_ns: f64,
    /// The PHC's frequency against the system clock, ppm.
    pub frequency_ppm: f64,
    /// RMS residual of the cross-stamps around the line, ns.
    pub jitter_ns: f64,
    pub rejected: u64,
    pub steps: u64,
    pub reads: u64,
    pub read_errors: u64,
    /// Hardware stamps of this interface become T2.
    pub usable: bool,
    /// Why not, when not.
    pub reason: Option<String>,
}

impl PhcStatus {
    /// An interface whose hardware stamps cannot be used at all, and why.
    pub fn none(interface: &str, why: &str) -> PhcStatus {
        PhcStatus {
            interface: interface.to_string(),
            device: None,
            method: None,
            samples: 0,
            offset_ns: 0.0,
            frequency_ppm: 0.0,
            jitter_ns: 0.0,
            rejected: 0,
            steps: 0,
            reads: 0,
            read_errors: 0,
            usable: false,
            reason: Some(why.to_string()),
        }
    }
}

/// Where the poller leaves the statuses; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct PhcBoard(Arc<Mutex<Vec<PhcStatus>>>);

impl PhcBoard {
    pub fn publish(&self, statuses: Vec<PhcStatus>) {
        // Readers only clone: a poisoned lock still holds a whole value.
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = statuses;
    }

    pub fn read(&self) -> Vec<PhcStatus> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Polls every watched PHC until `shutdown`, publishing lines and statuses. Returns None (and
/// starts nothing) when no interface has a PHC: their statuses are published once.
pub fn start(
    mut watches: Vec<PhcWatch>,
    state: StateReader,
    board: PhcBoard,
    shutdown: Arc<AtomicBool>,
) -> io::Result<Option<JoinHandle<()>>> {
    board.publish(watches.iter().map(PhcWatch::status).collect());
    if watches.iter().all(|w| w.phc.is_err()) {
        return Ok(None);
    }
    std::thread::Builder::new()
        .name("strata-phc".into())
        .spawn(move || {
            while !shutdown.load(Ordering::Relaxed) {
                let tai_minus_utc = state.read().clock.tai_minus_utc;
                for watch in &mut watches {
                    if let Ok(tracker) = &mut watch.phc {
                        if tracker.poll(tai_minus_utc) == Some(Added::Stepped) {
                            log::warn!(
                                "{}: the PHC or the system clock stepped; the mapping starts over",
                                watch.interface
                            );
                        }
                    }
                }
                board.publish(watches.iter().map(PhcWatch::status).collect());
                std::thread::sleep(POLL_INTERVAL);
            }
        })
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::super::sim::{SharedPhc, SimConfig};
    use super::*;
    use crate::proto::clock::phc::HardwareUnused;
    use crate::proto::clock::seqlock::seqlock;

    const TAI_MINUS_UTC: i32 = 37;

    fn tracked(config: SimConfig) -> (SharedPhc, PhcTracker, crate::proto::clock::phc::PhcLineReader) {
        let sim = SharedPhc::new(config);
        let (writer, reader) = seqlock(PhcLine::NONE);
        let tracker = PhcTracker::new(Box::new(sim.clone()), writer);
        (sim, tracker, reader)
    }

    fn run(sim: &SharedPhc, tracker: &mut PhcTracker, polls: usize) {
        for _ in 0..polls {
            tracker.poll(TAI_MINUS_UTC);
            sim.lock().advance(POLL_INTERVAL.as_nanos() as i64);
        }
    }

    #[test]
    fn the_published_line_maps_the_phc_to_tai_within_the_jitter() {
        for method in Method::ALL {
            let (sim, mut tracker, reader) = tracked(SimConfig {
                method,
                ..SimConfig::default()
            });
            assert_eq!(reader.read().unusable, Some(HardwareUnused::NoMapping));
            run(&sim, &mut tracker, 40);
            let line = reader.read();
            let sim = sim.lock();
            let now_tai = sim.now_ns() + TAI_MINUS_UTC as i64 * SECOND;
            // A frame the NIC stamped 100 µs ago.
            let sys = sim.now_ns() - 100_000;
            let phc = sim.phc_at(sys);
            let tai = line.tai_ns(phc, now_tai).expect("usable");
            let truth = sys + TAI_MINUS_UTC as i64 * SECOND;
            // The simulated read instant is within 20 ns of the bracket's middle.
            assert!((tai - truth).abs() <= 25, "{method}: {} ns off", tai - truth);
            let status = tracker.status("eth0");
            assert!(status.usable, "{status:?}");
            assert_eq!(status.method.as_deref(), Some(method.label()));
            assert!((status.frequency_ppm + 12.5).abs() < 0.1, "{status:?}");
        }
    }

    #[test]
    fn every_line_reaches_the_mirrors_too() {
        struct Last(Arc<Mutex<Option<PhcLine>>>);
        impl LineMirror for Last {
            fn mirror(&mut self, line: &PhcLine) {
                *self.0.lock().unwrap() = Some(*line);
            }
        }
        let (sim, mut tracker, reader) = tracked(SimConfig::default());
        let last = Arc::new(Mutex::new(None));
        tracker.add_mirror(Box::new(Last(last.clone())));
        run(&sim, &mut tracker, 8);
        assert_eq!(*last.lock().unwrap(), Some(reader.read()));
        assert_eq!(reader.read().unusable, None);
    }

    #[test]
    fn a_phc_step_is_followed_after_a_few_rejected_samples() {
        let (sim, mut tracker, reader) = tracked(SimConfig::default());
        run(&sim, &mut tracker, 20);
        sim.lock().step_phc(1_000_000);
        run(&sim, &mut tracker, 10);
        let status = tracker.status("eth0");
        assert_eq!(status.steps, 1, "{status:?}");
        let line = reader.read();
        let sim = sim.lock();
        let sys = sim.now_ns();
        let tai = line
            .tai_ns(sim.phc_at(sys), sys + TAI_MINUS_UTC as i64 * SECOND)
            .unwrap();
        assert!((tai - sys - TAI_MINUS_UTC as i64 * SECOND).abs() <= 25);
    }

    #[test]
    fn a_run_of_rejected_samples_ages_the_line_out() {
        let (sim, mut tracker, reader) = tracked(SimConfig::default());
        run(&sim, &mut tracker, 20);
        // From now on every reading is off the line by a different amount (never one step):
        // each is rejected, and the line stops being used once it is too old.
        let (mut polls, mut applied) = (0, 0);
        for i in 0..60i64 {
            let off = if i % 2 == 0 {
                50_000 + 1_000 * i
            } else {
                -50_000 - 1_000 * i
            };
            sim.lock().step_phc(off - applied);
            applied = off;
            tracker.poll(TAI_MINUS_UTC);
            sim.lock().advance(POLL_INTERVAL.as_nanos() as i64);
            polls += 1;
        }
        let status = tracker.status("eth0");
        assert_eq!(status.steps, 0, "{status:?}");
        assert!(status.rejected >= polls - 1, "{status:?}");
        let now = sim.lock().now_ns() + TAI_MINUS_UTC as i64 * SECOND;
        assert_eq!(reader.read().tai_ns(0, now), Err(HardwareUnused::Stale));
        assert!(!status.usable);
        assert_eq!(status.reason.as_deref(), Some("stale"));
    }

    #[test]
    fn noisy_brackets_make_the_mapping_unusable_and_say_so() {
        let (sim, mut tracker, reader) = tracked(SimConfig {
            bracket_ns: 20_000,
            jitter_ns: 8_000,
            ..SimConfig::default()
        });
        run(&sim, &mut tracker, 30);
        let status = tracker.status("eth0");
        assert!(!status.usable);
        assert_eq!(status.reason.as_deref(), Some("too_noisy"));
        let now = sim.lock().now_ns() + TAI_MINUS_UTC as i64 * SECOND;
        assert_eq!(reader.read().tai_ns(0, now), Err(HardwareUnused::TooNoisy));
    }

    #[test]
    fn a_failing_device_is_reported_and_its_line_goes_stale() {
        let (sim, mut tracker, reader) = tracked(SimConfig::default());
        run(&sim, &mut tracker, 10);
        sim.lock().fail(Some(io::ErrorKind::NotFound));
        run(&sim, &mut tracker, 60);
        let status = tracker.status("eth0");
        assert!(!status.usable);
        assert!(status.reason.unwrap().contains("simulated failure"));
        assert_eq!(status.read_errors, 60);
        let now = sim.lock().now_ns() + TAI_MINUS_UTC as i64 * SECOND;
        assert_eq!(reader.read().tai_ns(0, now), Err(HardwareUnused::Stale));
    }

    #[test]
    fn an_interface_without_a_phc_says_so() {
        let (writer, _) = seqlock(PhcLine::NONE);
        let watch = PhcWatch::for_interface("veth0", Ok(None), writer);
        let status = watch.status();
        assert_eq!(status.device, None);
        assert!(!status.usable);
        assert_eq!(status.reason.as_deref(), Some("no PHC (the driver reports none)"));
    }

    #[test]
    fn a_phc_that_cannot_be_opened_is_named() {
        let (writer, _) = seqlock(PhcLine::NONE);
        let watch = PhcWatch::for_interface("eth9", Ok(Some(250)), writer);
        let reason = watch.status().reason.unwrap();
        assert!(reason.contains("/dev/ptp250"), "{reason}");
        let (writer, _) = seqlock(PhcLine::NONE);
        let failed = io::Error::from_raw_os_error(libc::ENODEV);
        let reason = PhcWatch::for_interface("eth9", Err(failed), writer)
            .status()
            .reason
            .unwrap();
        assert!(reason.starts_with("ETHTOOL_GET_TS_INFO"), "{reason}");
    }
}

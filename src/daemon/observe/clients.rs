//! The client watch: a thread that drains the sampled requests of every tier (the XDP programs'
//! rings and the socket path's) four times a second into the summary of the most active
//! clients (proto::admission::talkers), which `strata clients` reads through the report.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::proto::admission::talkers::{Talker, TopTalkers};
use crate::proto::admission::Admitter;
use crate::sys::fastpath::SampleReader;

/// Clients the summary keeps (about 100 bytes each).
pub const CAPACITY: usize = 4096;
/// How often the rings are drained.
const TICK: Duration = Duration::from_millis(250);

/// The summary, shared with the report.
pub struct ClientWatch {
    talkers: Mutex<TopTalkers>,
    started: Instant,
    /// Samples lost on the way (a ring overwritten before it was read, a record that did not
    /// parse).
    lost: AtomicU64,
    shift: u8,
}

impl ClientWatch {
    /// The `n` most active clients now.
    pub fn top(&self, n: usize) -> Vec<Talker> {
        let now = self.started.elapsed().as_secs_f64();
        // A poisoned lock means the watch thread panicked mid-update: the summary is still a
        // summary, so it is shown.
        let talkers = self.talkers.lock().unwrap_or_else(|e| e.into_inner());
        talkers.top(n, now)
    }

    /// 1 in 2^shift requests are sampled.
    pub fn shift(&self) -> u8 {
        self.shift
    }

    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

/// Starts the watch over `xdp` (each XDP program's ring) and the socket path's `admitter`'s
/// ring, sampled 1 in 2^`shift`, keys shown with the prefixes given.
pub fn start(
    mut xdp: Vec<SampleReader>,
    admitter: Option<Arc<Admitter>>,
    shift: u8,
    prefixes: (u8, u8),
    shutdown: Arc<AtomicBool>,
) -> std::io::Result<(Arc<ClientWatch>, JoinHandle<()>)> {
    let watch = Arc::new(ClientWatch {
        talkers: Mutex::new(TopTalkers::new(CAPACITY, shift, prefixes.0, prefixes.1)),
        started: Instant::now(),
        lost: AtomicU64::new(0),
        shift,
    });
    let w = watch.clone();
    let thread = thread::Builder::new()
        .name("strata-clients".into())
        .spawn(move || {
            let mut next = 0u64;
            while !shutdown.load(Ordering::Relaxed) {
                let now = w.started.elapsed().as_secs_f64();
                let mut lost = 0;
                {
                    let mut talkers = w.talkers.lock().unwrap_or_else(|e| e.into_inner());
                    for ring in &mut xdp {
                        lost += ring.drain(|s| talkers.record(s, now));
                    }
                    if let Some(samples) = admitter.as_ref().and_then(|a| a.samples.as_ref()) {
                        lost += samples.ring.drain(&mut next, |s| talkers.record(s, now));
                    }
                }
                w.lost.fetch_add(lost, Ordering::Relaxed);
                thread::sleep(TICK);
            }
        })?;
    Ok((watch, thread))
}

//! The responder threads of one path: each spawned, pinned to its core, its counter block
//! registered for the observers, watched while the server runs, and joined at the end. Every
//! path (socket, AF_XDP) starts its responders through one [`ResponderPool`].

use std::any::Any;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crate::proto::metrics::{self, CounterSnapshot, CounterWriter, ResponderCounters};
use crate::sys::pipeline::MAX_BATCH_SIZE;

/// Checks what every path's responders need: a core to run on and a batch size in range.
pub fn check_responders(cores: &[usize], batch_size: usize) -> io::Result<()> {
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
    if cores.is_empty() {
        return Err(invalid("no core to run a responder on".into()));
    }
    if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
        return Err(invalid(format!(
            "batch size {batch_size} is out of range 1..={MAX_BATCH_SIZE}"
        )));
    }
    Ok(())
}

/// The running responder threads of one path.
pub struct ResponderPool {
    /// The path's name in counters, thread names and messages ("socket", "xdp").
    path: &'static str,
    shutdown: Arc<AtomicBool>,
    responders: Vec<ResponderCounters>,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

impl ResponderPool {
    /// An empty pool whose threads stop when `shutdown` is set.
    pub fn new(path: &'static str, shutdown: Arc<AtomicBool>) -> ResponderPool {
        ResponderPool {
            path,
            shutdown,
            responders: Vec::new(),
            threads: Vec::new(),
        }
    }

    /// Starts responder `index` on `core`: the thread pins itself, then runs `body` with its
    /// name and its own counter block (which the pool registers for the observers). If the
    /// thread cannot be started, the pool is stopped (the shutdown flag set, the threads
    /// started so far joined) and the error returned.
    pub fn spawn<F>(&mut self, index: usize, core: usize, name: String, body: F) -> io::Result<()>
    where
        F: FnOnce(String, CounterWriter) -> io::Result<()> + Send + 'static,
    {
        let (writer, reader) = metrics::counters();
        let spawned = thread::Builder::new()
            .name(format!("strata-{}-{index}", thread_tag(self.path)))
            .spawn(move || {
                if !core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
                    log::warn!("{name}: could not pin the thread to CPU {core}; running unpinned");
                }
                body(name, writer)
            });
        match spawned {
            Ok(handle) => {
                self.threads.push(handle);
                self.responders.push(ResponderCounters {
                    path: self.path,
                    index,
                    core,
                    counters: reader,
                });
                Ok(())
            }
            Err(e) => {
                self.shutdown.store(true, Ordering::Relaxed);
                for thread in self.threads.drain(..) {
                    let _ = thread.join();
                }
                Err(io::Error::new(
                    e.kind(),
                    format!("cannot start {} responder thread {index}: {e}", self.path),
                ))
            }
        }
    }

    /// The flag that stops the threads (for their loops to watch).
    pub fn shutdown(&self) -> Arc<AtomicBool> {
        self.shutdown.clone()
    }

    /// The counters of each responder thread.
    pub fn responders(&self) -> &[ResponderCounters] {
        &self.responders
    }

    /// The counters of all threads together.
    pub fn total(&self) -> CounterSnapshot {
        metrics::total(&self.responders)
    }

    /// Whether some thread has ended (before shutdown, that is a failure).
    pub fn any_finished(&self) -> bool {
        self.threads.iter().any(|t| t.is_finished())
    }

    /// Waits for every thread to end (after the shutdown flag was set). Returns each
    /// responder's counters as they were at the end, and what went wrong in threads that
    /// failed or panicked.
    pub fn join(self) -> (Vec<ResponderCounters>, Vec<String>) {
        let mut failures = Vec::new();
        for (index, thread) in self.threads.into_iter().enumerate() {
            match thread.join() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => failures.push(e.to_string()),
                Err(panic) => failures.push(format!(
                    "{} responder {index} panicked: {}",
                    self.path,
                    panic_text(&*panic)
                )),
            }
        }
        (self.responders, failures)
    }
}

/// The short name in thread names (`strata-sock-0`, `strata-xdp-0`), as before the pool.
fn thread_tag(path: &str) -> &str {
    match path {
        "socket" => "sock",
        other => other,
    }
}

fn panic_text(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_run_with_their_counters_and_failures_are_reported() {
        let shutdown = Arc::new(AtomicBool::new(false));
        let mut pool = ResponderPool::new("socket", shutdown.clone());
        let stop = shutdown.clone();
        pool.spawn(0, 0, "a".into(), move |name, mut counters| {
            assert_eq!(name, "a");
            assert_eq!(thread::current().name(), Some("strata-sock-0"));
            counters.received(48);
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(std::time::Duration::from_millis(5));
            }
            Ok(())
        })
        .unwrap();
        pool.spawn(1, 0, "b".into(), |_, _| Err(io::Error::other("b failed")))
            .unwrap();
        pool.spawn(2, 0, "c".into(), |_, _| panic!("c panicked")).unwrap();
        assert_eq!(pool.responders().len(), 3);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !pool.any_finished() {
            assert!(std::time::Instant::now() < deadline);
            thread::sleep(std::time::Duration::from_millis(5));
        }
        // The counters of a running thread are visible.
        while pool.total().requests != 1 {
            assert!(std::time::Instant::now() < deadline);
            thread::sleep(std::time::Duration::from_millis(5));
        }
        shutdown.store(true, Ordering::Relaxed);
        let (responders, failures) = pool.join();
        assert_eq!(responders.len(), 3);
        assert_eq!(responders[0].counters.snapshot().requests, 1);
        assert_eq!(failures.len(), 2, "{failures:?}");
        assert_eq!(failures[0], "b failed");
        assert_eq!(failures[1], "socket responder 2 panicked: c panicked");
    }
}

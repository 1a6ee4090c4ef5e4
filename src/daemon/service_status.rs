//! What systemd is told (Type=notify): READY=1 once strata serves, a STATUS= line whenever the
//! synchronization state changes, WATCHDOG=1 at half the watchdog interval while the responders
//! run, STOPPING=1 at shutdown. Without $NOTIFY_SOCKET nothing is sent.

use std::time::{Duration, Instant};

use crate::daemon::observe::report::refid_text;
use crate::proto::state::{ServerState, StateReader};
use crate::sys::notify::Notifier;

pub struct ServiceStatus {
    notifier: Notifier,
    state: StateReader,
    /// The STATUS= line last sent.
    said: String,
    next_ping: Option<Instant>,
}

/// The state in one line, as `systemctl status` shows it.
pub fn describe(s: &ServerState) -> String {
    if s.synchronized {
        let refid = refid_text(s.reference_id, s.stratum <= 1 || s.reference_id == *b"LOCL");
        format!("synchronized, stratum {}, reference {refid}", s.stratum)
    } else {
        "not synchronized (clients get leap indicator 3, stratum 16, or nothing)".to_string()
    }
}

impl ServiceStatus {
    pub fn new(notifier: Notifier, state: StateReader) -> ServiceStatus {
        ServiceStatus {
            notifier,
            state,
            said: String::new(),
            next_ping: None,
        }
    }

    fn warn(e: std::io::Error) {
        log::warn!("cannot notify systemd: {e}");
    }

    /// READY=1, with the state; starts the watchdog pings.
    pub fn ready(&mut self) {
        self.said = describe(&self.state.read().server);
        if let Err(e) = self.notifier.ready(&format!("serving; {}", self.said)) {
            Self::warn(e);
        }
        if let Some(interval) = self.notifier.watchdog() {
            log::info!("systemd watchdog: a ping every {:?}", interval / 2);
            self.next_ping = Some(Instant::now());
        }
    }

    /// Called from the main loop while the responders run: a STATUS= line when the state
    /// changed, WATCHDOG=1 when due.
    pub fn tick(&mut self) {
        if !self.notifier.enabled() {
            return;
        }
        let now = describe(&self.state.read().server);
        if now != self.said {
            if let Err(e) = self.notifier.status(&format!("serving; {now}")) {
                Self::warn(e);
            }
            self.said = now;
        }
        if let (Some(due), Some(interval)) = (self.next_ping, self.notifier.watchdog()) {
            if Instant::now() >= due {
                if let Err(e) = self.notifier.watchdog_ping() {
                    Self::warn(e);
                }
                self.next_ping = Some(Instant::now() + (interval / 2).max(Duration::from_millis(100)));
            }
        }
    }

    /// RELOADING=1 before a reload, READY=1 after it.
    pub fn reloading(&self) {
        if let Err(e) = self.notifier.reloading() {
            Self::warn(e);
        }
    }

    pub fn reloaded(&mut self) {
        let status = format!("serving; {}", describe(&self.state.read().server));
        if let Err(e) = self.notifier.ready(&status) {
            Self::warn(e);
        }
    }

    pub fn stopping(&self) {
        if let Err(e) = self.notifier.stopping("shutting down") {
            Self::warn(e);
        }
    }
}

//! The signals `strata serve` answers: SIGTERM, SIGINT and SIGUSR1 ask for a clean shutdown (a
//! second one while shutting down ends the process at once, exit code 1); SIGHUP asks for the
//! configuration to be read again. The handlers only set flags; the main loop acts on them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};

/// The flags the handlers set.
pub struct Signals {
    /// Set by SIGTERM, SIGINT, SIGUSR1 (and by the server itself when a thread fails).
    pub shutdown: Arc<AtomicBool>,
    reload: Arc<AtomicBool>,
}

impl Signals {
    /// Installs the handlers.
    pub fn install() -> Result<Signals, String> {
        let shutdown = Arc::new(AtomicBool::new(false));
        let reload = Arc::new(AtomicBool::new(false));
        let cannot = |e: std::io::Error| format!("cannot install the signal handlers: {e}");
        for signal in [SIGINT, SIGTERM, SIGUSR1] {
            signal_hook::flag::register_conditional_shutdown(signal, 1, shutdown.clone()).map_err(cannot)?;
            signal_hook::flag::register(signal, shutdown.clone()).map_err(cannot)?;
        }
        signal_hook::flag::register(SIGHUP, reload.clone()).map_err(cannot)?;
        Ok(Signals { shutdown, reload })
    }

    /// Whether a SIGHUP came since the last call.
    pub fn take_reload(&self) -> bool {
        self.reload.swap(false, Ordering::Relaxed)
    }
}

//! SIGHUP: the configuration is read again (the same file and flags as at start) and compared
//! with the running one. A configuration with an error changes nothing; the log level (and
//! format) are applied at once; every other changed setting is named, as needing a restart.
//!
//! Why so little is live: the access list, the rate limiter and its secret live in the XDP
//! program's maps and in the socket path's shared admitter, which have no update path yet; the
//! addresses, interfaces, cores and sockets are the shape of the running threads. Saying so is
//! better than applying half a change.

use log::LevelFilter;

use crate::daemon::config::{ConfigError, LogFormat, ServerConfig};

/// Reads the configuration again, as at start.
pub type Loader = Box<dyn Fn() -> Result<ServerConfig, ConfigError> + Send>;

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// The settings applied live, as `name: old -> new`.
    pub applied: Vec<String>,
    /// The settings that changed but take effect only at the next start.
    pub need_restart: Vec<&'static str>,
}

/// How the logger's level and format are changed live.
pub trait LogControl {
    fn set_level(&self, level: LevelFilter);
    fn set_format(&self, format: LogFormat);
}

/// Compares `new` with `running`, applies what can be applied, and makes `running` the
/// configuration in force (the settings that need a restart keep their running values).
pub fn apply(running: &mut ServerConfig, new: ServerConfig, log: &dyn LogControl) -> Outcome {
    let mut out = Outcome::default();
    if new.log_level != running.log_level {
        let level = new.log_level.unwrap_or(LevelFilter::Info);
        out.applied.push(format!(
            "log_level: {} -> {}",
            running.log_level.unwrap_or(LevelFilter::Info),
            level
        ));
        log.set_level(level);
        running.log_level = new.log_level;
    }
    if new.log_format != running.log_format {
        out.applied
            .push(format!("log_format: {:?} -> {:?}", running.log_format, new.log_format).to_lowercase());
        log.set_format(new.log_format);
        running.log_format = new.log_format;
    }
    let changed = |name: &'static str, differs: bool, out: &mut Outcome| {
        if differs {
            out.need_restart.push(name);
        }
    };
    let (r, n) = (&*running, &new);
    changed("listen", r.listen != n.listen, &mut out);
    changed("cores", r.cores != n.cores, &mut out);
    changed("local_stratum", r.local_stratum != n.local_stratum, &mut out);
    changed("mode", r.mode != n.mode, &mut out);
    changed("unsynchronized", r.unsynchronized != n.unsynchronized, &mut out);
    changed("batch_size", r.batch_size != n.batch_size, &mut out);
    changed("user", r.user != n.user, &mut out);
    changed("iface", r.interfaces != n.interfaces, &mut out);
    changed("ntp_port", r.ntp_port != n.ntp_port, &mut out);
    changed("busy_poll", r.busy_poll != n.busy_poll, &mut out);
    changed("xdp_answer", r.xdp_answer != n.xdp_answer, &mut out);
    changed(
        "allow, deny, deny_action and rate_limit*",
        r.admission != n.admission,
        &mut out,
    );
    changed("metrics", r.metrics != n.metrics, &mut out);
    changed("control", r.control != n.control, &mut out);
    changed(
        "server, pool, peer and the discipline settings",
        r.upstream != n.upstream,
        &mut out,
    );
    out
}

/// Logs the outcome: one line for what was applied, one for what waits for a restart.
pub fn log_outcome(result: &Result<Outcome, ConfigError>) {
    match result {
        Err(e) => log::error!("reload (SIGHUP): the configuration has an error, nothing changed: {e}"),
        Ok(o) if o.applied.is_empty() && o.need_restart.is_empty() => {
            log::info!("reload (SIGHUP): the configuration is unchanged")
        }
        Ok(o) => {
            if !o.applied.is_empty() {
                log::info!("reload (SIGHUP): applied {}", o.applied.join(", "));
            }
            if !o.need_restart.is_empty() {
                log::warn!(
                    "reload (SIGHUP): changed but applied only at the next restart: {}",
                    o.need_restart.join("; ")
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct Recorder(RefCell<Vec<String>>);

    impl LogControl for Recorder {
        fn set_level(&self, level: LevelFilter) {
            self.0.borrow_mut().push(format!("level {level}"));
        }
        fn set_format(&self, format: LogFormat) {
            self.0.borrow_mut().push(format!("format {format:?}"));
        }
    }

    fn config(flags: &[&str]) -> ServerConfig {
        use clap::Parser;
        let cli = crate::daemon::cli::Cli::try_parse_from(["strata", "serve"].iter().chain(flags)).unwrap();
        let crate::daemon::cli::Command::Serve(args) = cli.command else {
            unreachable!()
        };
        let machine = crate::daemon::config::Machine {
            allowed: vec![0, 1],
            configured: 2,
        };
        ServerConfig::resolve(None, &args.flags, &machine).unwrap()
    }

    #[test]
    fn the_log_level_applies_and_the_rest_is_named() {
        let mut running = config(&["--local-stratum", "2"]);
        let before = running.clone();
        let log = Recorder::default();
        let out = apply(&mut running, before.clone(), &log);
        assert_eq!(out, Outcome::default());
        assert!(log.0.borrow().is_empty());

        let new = config(&[
            "--local-stratum",
            "3",
            "--log-level",
            "debug",
            "--deny",
            "192.0.2.0/24",
        ]);
        let out = apply(&mut running, new, &log);
        assert_eq!(out.applied, vec!["log_level: INFO -> DEBUG"]);
        assert_eq!(
            out.need_restart,
            vec!["local_stratum", "allow, deny, deny_action and rate_limit*"]
        );
        assert_eq!(*log.0.borrow(), vec!["level DEBUG"]);
        // What needs a restart keeps its running value.
        assert_eq!(running.local_stratum, Some(2));
        assert_eq!(running.admission, before.admission);
        assert_eq!(running.log_level, Some(LevelFilter::Debug));
    }
}

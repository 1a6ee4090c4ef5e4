//! SIGHUP: the configuration is read again (the same file and flags as at start) and compared
//! with the running one. (NTS certificates and keys are not its business: the NTS-KE service
//! reads their files again when they change.) A configuration with an error changes nothing; the log level (and
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
    // Every field named, so that a new setting cannot be left out of this list unnoticed.
    let ServerConfig {
        listen,
        cores,
        local_stratum,
        mode,
        path: _, // follows mode and iface
        unsynchronized,
        batch_size,
        log_level: _,
        log_format: _,
        user,
        interfaces,
        ntp_port,
        force: _, // a flag for the moment of the start
        busy_poll,
        xdp_answer,
        admission,
        metrics,
        control,
        upstream,
        nts,
    } = new;
    let r = &*running;
    for (name, differs) in [
        ("listen", r.listen != listen),
        ("cores", r.cores != cores),
        ("local_stratum", r.local_stratum != local_stratum),
        ("mode", r.mode != mode),
        ("unsynchronized", r.unsynchronized != unsynchronized),
        ("batch_size", r.batch_size != batch_size),
        ("user", r.user != user),
        ("iface", r.interfaces != interfaces),
        ("ntp_port", r.ntp_port != ntp_port),
        ("busy_poll", r.busy_poll != busy_poll),
        ("xdp_answer", r.xdp_answer != xdp_answer),
        (
            "allow, deny, deny_action, rate_limit* and clients_sample",
            r.admission != admission,
        ),
        ("metrics", r.metrics != metrics),
        ("control", r.control != control),
        (
            "server, pool, peer, the discipline and leap settings",
            r.upstream != upstream,
        ),
        // The certificate and key files themselves are read again when they change.
        ("nts_*", r.nts != nts),
    ] {
        if differs {
            out.need_restart.push(name);
        }
    }
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
            vec![
                "local_stratum",
                "allow, deny, deny_action, rate_limit* and clients_sample"
            ]
        );
        assert_eq!(*log.0.borrow(), vec!["level DEBUG"]);
        // What needs a restart keeps its running value.
        assert_eq!(running.local_stratum, Some(2));
        assert_eq!(running.admission, before.admission);
        assert_eq!(running.log_level, Some(LevelFilter::Debug));
    }
}

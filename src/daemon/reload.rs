//! SIGHUP: the configuration is read again (the same file and flags as at start) and compared
//! with the running one. (NTS certificates and keys are not its business: the NTS-KE service
//! reads their files again when they change.) A configuration with an error changes nothing; the
//! log level and format, and the access list (`allow`, `deny`, `deny_action`), are applied at
//! once; every other changed setting is named, as needing a restart.
//!
//! Why not more: the rate limiter's table is sized and keyed at start (its size, prefixes and
//! secret shape the XDP program's map), and the addresses, interfaces, cores and sockets are the
//! shape of the running threads. Saying so is better than applying half a change.

use log::LevelFilter;

use crate::daemon::config::{ConfigError, LogFormat, ServerConfig};
use crate::proto::admission::{AclAction, DenyAction, Prefix};

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

/// An access list as the configuration gives it.
pub type Rules = [(Prefix, AclAction)];

/// How the access list is replaced live (the XDP programs' tries, the socket path's admitter).
pub trait AdmissionControl {
    fn set_access_rules(&mut self, old: &Rules, new: &Rules, deny_action: DenyAction) -> Result<(), String>;
}

/// Nothing to apply the access list to (no path admits: a restart is needed).
pub struct NoAdmission;

impl AdmissionControl for NoAdmission {
    fn set_access_rules(&mut self, _: &Rules, _: &Rules, _: DenyAction) -> Result<(), String> {
        Err("this server started without any admission on its path".into())
    }
}

/// Compares `new` with `running`, applies what can be applied, and makes `running` the
/// configuration in force (the settings that need a restart keep their running values).
pub fn apply(
    running: &mut ServerConfig,
    new: ServerConfig,
    log: &dyn LogControl,
    admission_control: &mut dyn AdmissionControl,
) -> Outcome {
    let mut out = Outcome::default();
    // The access list alone is live; the rest of admission needs a restart.
    let (old_a, new_a) = (&running.admission, &new.admission);
    if (&new_a.rules, new_a.deny_action) != (&old_a.rules, old_a.deny_action) {
        match admission_control.set_access_rules(&old_a.rules, &new_a.rules, new_a.deny_action) {
            Ok(()) => {
                out.applied.push(format!(
                    "access list: {} -> {} rule(s), deny_action {:?} -> {:?}",
                    old_a.rules.len(),
                    new_a.rules.len(),
                    old_a.deny_action,
                    new_a.deny_action
                ));
                running.admission.rules = new_a.rules.clone();
                running.admission.deny_action = new_a.deny_action;
            }
            Err(e) => {
                log::error!("reload (SIGHUP): the access list cannot be replaced live: {e}");
                out.need_restart.push("allow, deny and deny_action");
            }
        }
    }
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
        key_file,
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
            "rate_limit* and clients_sample",
            crate::daemon::config::AdmissionConfig {
                rules: r.admission.rules.clone(),
                deny_action: r.admission.deny_action,
                ..admission
            } != r.admission,
        ),
        ("metrics", r.metrics != metrics),
        ("control", r.control != control),
        (
            "server, pool, peer, the discipline and leap settings",
            r.upstream != upstream,
        ),
        // The certificate and key files themselves are read again when they change.
        ("nts_*", r.nts != nts),
        ("key_file (or the keys in it)", r.key_file != key_file),
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

    /// Records the access lists it is given.
    #[derive(Default)]
    struct Rules(Vec<usize>);

    impl AdmissionControl for Rules {
        fn set_access_rules(
            &mut self,
            _: &super::Rules,
            new: &super::Rules,
            _: DenyAction,
        ) -> Result<(), String> {
            self.0.push(new.len());
            Ok(())
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
        let mut rules = Rules::default();
        let out = apply(&mut running, before.clone(), &log, &mut rules);
        assert_eq!(out, Outcome::default());
        assert!(log.0.borrow().is_empty());

        let new = config(&[
            "--local-stratum",
            "3",
            "--log-level",
            "debug",
            "--deny",
            "192.0.2.0/24",
            "--rate-limit-burst",
            "4",
        ]);
        let out = apply(&mut running, new, &log, &mut rules);
        assert_eq!(
            out.applied,
            vec![
                "access list: 0 -> 1 rule(s), deny_action Drop -> Drop",
                "log_level: INFO -> DEBUG"
            ]
        );
        assert_eq!(
            out.need_restart,
            vec!["local_stratum", "rate_limit* and clients_sample"]
        );
        assert_eq!(*log.0.borrow(), vec!["level DEBUG"]);
        assert_eq!(rules.0, vec![1]);
        // What needs a restart keeps its running value; the access list is the new one.
        assert_eq!(running.local_stratum, Some(2));
        assert_eq!(running.admission.limiter, before.admission.limiter);
        assert_eq!(running.admission.rules.len(), 1);
        assert_eq!(running.log_level, Some(LevelFilter::Debug));
        // A path that cannot take it: named as needing a restart.
        let mut running = before.clone();
        let out = apply(
            &mut running,
            config(&["--local-stratum", "2", "--allow", "10.0.0.0/8"]),
            &log,
            &mut NoAdmission,
        );
        assert_eq!(out.need_restart, vec!["allow, deny and deny_action"]);
        assert!(running.admission.rules.is_empty());
    }
}
